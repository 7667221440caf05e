//! GTID states (docs/cdc.md, "Failover"): which transactions a binlog
//! position includes, in MariaDB's form (one `domain-server-sequence` per
//! replication domain, like `@@gtid_binlog_pos`) or MySQL's (a GTID set,
//! `uuid:1-100:105,uuid2:1-7`, like `@@gtid_executed`). Unlike a binlog
//! file and offset they mean the same on every server of a replication
//! topology: a stream resumes from one after a failover, and positions
//! that have them compare by them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The transactions a position includes, by their GTIDs. Stored as its
/// text, which is what the server takes back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GtidState {
    /// MariaDB: each domain's last transaction, `(server_id, sequence)`;
    /// a domain includes every sequence number up to its last one.
    domains: BTreeMap<u32, (u32, u64)>,
    /// MySQL: each source's (`uuid` or `uuid:tag`, lowercase) sorted,
    /// disjoint, inclusive ranges of transaction numbers.
    sources: BTreeMap<String, Vec<(u64, u64)>>,
}

impl GtidState {
    /// Reads a state's text: comma-separated MariaDB GTIDs or MySQL GTID
    /// set entries (blank: no transaction).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut state = GtidState::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.contains(':') {
                state.add_set_entry(entry)?;
            } else {
                let (domain, server, sequence) = mariadb_gtid(entry)?;
                state.domains.insert(domain, (server, sequence));
            }
        }
        Ok(state)
    }

    /// Whether no transaction is in the state.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.sources.is_empty()
    }

    /// Whether this is a MySQL GTID set (else MariaDB's per-domain form).
    pub fn is_mysql(&self) -> bool {
        !self.sources.is_empty()
    }

    /// The MySQL sources and their ranges, `(uuid[:tag], [(first, last)])`.
    pub fn mysql_sources(&self) -> impl Iterator<Item = (&str, &[(u64, u64)])> {
        self.sources
            .iter()
            .map(|(sid, ranges)| (sid.as_str(), ranges.as_slice()))
    }

    /// The state after one more transaction, `gtid` (MariaDB
    /// `domain-server-sequence`, which becomes its domain's last; MySQL
    /// `uuid:number`, added to its source's ranges).
    pub fn with(&self, gtid: &str) -> Result<Self, String> {
        let mut state = self.clone();
        if gtid.contains(':') {
            state.add_set_entry(gtid)?;
        } else {
            let (domain, server, sequence) = mariadb_gtid(gtid)?;
            state.domains.insert(domain, (server, sequence));
        }
        Ok(state)
    }

    /// Whether every transaction of `other` is in this state: per MariaDB
    /// domain, a sequence number at least as high (whichever server wrote
    /// it); per MySQL source, ranges that cover `other`'s.
    pub fn includes(&self, other: &GtidState) -> bool {
        other
            .domains
            .iter()
            .all(|(domain, (_, sequence))| self.domains.get(domain).is_some_and(|(_, mine)| mine >= sequence))
            && other.sources.iter().all(|(sid, ranges)| {
                let mine = self.sources.get(sid).map(Vec::as_slice).unwrap_or_default();
                ranges
                    .iter()
                    .all(|&(first, last)| mine.iter().any(|&(from, to)| from <= first && last <= to))
            })
    }

    /// Whether the state may hold only its last transaction, as positions
    /// committed by Sluice before GTID failover did (docs/cdc.md,
    /// "Failover"): one MariaDB domain, or one MySQL transaction numbered
    /// above 1 (an executed set starts at 1).
    pub fn may_be_last_only(&self) -> bool {
        match (self.domains.len(), self.sources.iter().next()) {
            (1, None) => true,
            (0, Some((_, ranges))) => {
                self.sources.len() == 1 && matches!(ranges[..], [(n, last)] if n == last && n > 1)
            }
            _ => false,
        }
    }

    /// Whether this state, a server's at the position where `last_only`
    /// was taken, completes it: it includes `last_only`, and each of
    /// `last_only`'s MariaDB domains ends at the same transaction (the
    /// same server id), so that both are of the same binlog.
    pub fn completes(&self, last_only: &GtidState) -> bool {
        self.includes(last_only)
            && last_only
                .domains
                .iter()
                .all(|(domain, last)| self.domains.get(domain) == Some(last))
    }

    /// Adds a MySQL GTID set entry: `uuid[:tag]:range[:range...]`, a range
    /// `n` or `n-m`.
    fn add_set_entry(&mut self, entry: &str) -> Result<(), String> {
        let invalid = || format!("\"{entry}\" is not a GTID set entry (uuid:n-m)");
        let mut parts = entry.split(':');
        let mut sid = parts.next().and_then(uuid).ok_or_else(invalid)?;
        let mut ranges = Vec::new();
        for part in parts {
            let range = match part.split_once('-') {
                Some((first, last)) => (first.parse(), last.parse()),
                None => (part.parse(), part.parse()),
            };
            match range {
                (Ok(first), Ok(last)) if first <= last => ranges.push((first, last)),
                _ if ranges.is_empty() && part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => {
                    // A tag (MySQL 8.4): part of the source's name.
                    sid = format!("{sid}:{}", part.to_ascii_lowercase());
                }
                _ => return Err(invalid()),
            }
        }
        if ranges.is_empty() {
            return Err(invalid());
        }
        let merged = self.sources.entry(sid).or_default();
        merged.extend(ranges);
        merged.sort_unstable();
        *merged = merged
            .iter()
            .fold(Vec::new(), |mut out: Vec<(u64, u64)>, &(first, last)| {
                match out.last_mut() {
                    Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
                    _ => out.push((first, last)),
                }
                out
            });
        Ok(())
    }
}

/// A MySQL source's UUID as the server spells it in GTID sets (lowercase,
/// hyphenated) from that or 32 bare hex digits.
fn uuid(text: &str) -> Option<String> {
    let hex: String = text.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// A MariaDB GTID's `(domain, server_id, sequence)`.
fn mariadb_gtid(text: &str) -> Result<(u32, u32, u64), String> {
    let mut parts = text.split('-');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(domain), Some(server), Some(sequence), None) => {
            match (domain.parse(), server.parse(), sequence.parse()) {
                (Ok(domain), Ok(server), Ok(sequence)) => Ok((domain, server, sequence)),
                _ => Err(format!("\"{text}\" is not a MariaDB GTID (domain-server-sequence)")),
            }
        }
        _ => Err(format!("\"{text}\" is not a MariaDB GTID (domain-server-sequence)")),
    }
}

impl fmt::Display for GtidState {
    /// The server's own spelling: `0-1-77,1-2-5`, `uuid:1-5:7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mariadb = self
            .domains
            .iter()
            .map(|(domain, (server, sequence))| format!("{domain}-{server}-{sequence}"));
        let mysql = self.sources.iter().map(|(sid, ranges)| {
            let ranges: Vec<String> = ranges
                .iter()
                .map(|&(first, last)| match first == last {
                    true => first.to_string(),
                    false => format!("{first}-{last}"),
                })
                .collect();
            format!("{sid}:{}", ranges.join(":"))
        });
        f.write_str(&mariadb.chain(mysql).collect::<Vec<_>>().join(","))
    }
}

impl TryFrom<String> for GtidState {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        GtidState::parse(&text)
    }
}

impl From<GtidState> for String {
    fn from(state: GtidState) -> String {
        state.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4d22fa47-71ca-11e1-9e33-c80aa9429562";

    fn state(text: &str) -> GtidState {
        GtidState::parse(text).unwrap()
    }

    #[test]
    fn mariadb_states_keep_each_domains_last_transaction() {
        let two = state("0-1-77, 1-2-5");
        assert_eq!(two.to_string(), "0-1-77,1-2-5");
        assert!(!two.is_mysql());
        let next = two.with("1-2-6").unwrap().with("0-3-78").unwrap();
        assert_eq!(
            next.to_string(),
            "0-3-78,1-2-6",
            "another server id takes its domain on"
        );
        assert_eq!(state("").with("0-1-1").unwrap().to_string(), "0-1-1");
        assert!(state("").is_empty());
        assert!(GtidState::parse("0-1").is_err());
        assert!(GtidState::parse("0-1-x").is_err());
    }

    #[test]
    fn mariadb_states_include_lower_sequences_per_domain_whichever_server() {
        let committed = state("0-1-10,1-2-5");
        assert!(committed.includes(&state("0-1-10")));
        assert!(committed.includes(&state("0-1-9,1-2-5")));
        assert!(
            !committed.includes(&state("0-7-11")),
            "a new primary's next transaction"
        );
        assert!(
            state("0-7-11,1-2-5").includes(&committed),
            "the old primary's, after the switch"
        );
        assert!(!committed.includes(&state("0-1-11")));
        assert!(
            !committed.includes(&state("0-1-10,1-2-6")),
            "one domain ahead is enough"
        );
        assert!(!committed.includes(&state("0-1-3,2-1-1")), "a domain it has not seen");
        assert!(committed.includes(&GtidState::default()));
    }

    #[test]
    fn mysql_sets_merge_ranges_and_include_covered_ones() {
        let set = state(&format!("{}:1-5:7,{B}:1-3", A.to_uppercase()));
        assert!(set.is_mysql());
        assert_eq!(set.to_string(), format!("{A}:1-5:7,{B}:1-3"));
        let filled = set.with(&format!("{A}:6")).unwrap();
        assert_eq!(
            filled.to_string(),
            format!("{A}:1-7,{B}:1-3"),
            "6 joins the ranges around it"
        );
        assert!(filled.includes(&state(&format!("{A}:2-7"))));
        assert!(!set.includes(&state(&format!("{A}:6"))), "a gap is not included");
        assert!(!set.includes(&state(&format!("{B}:4"))));
        assert!(!set.includes(&state("0-1-1")), "another flavour's transaction");
        let tagged = state(&format!("{A}:audit:1-2"));
        assert_eq!(tagged.to_string(), format!("{A}:audit:1-2"));
        assert!(
            !tagged.includes(&state(&format!("{A}:1"))),
            "tagged GTIDs are their own source"
        );
        assert_eq!(
            set.with(&format!("{}:8", A.replace('-', ""))).unwrap().to_string(),
            format!("{A}:1-5:7-8,{B}:1-3"),
            "a GTID event's bare UUID is the set's source"
        );
        assert!(GtidState::parse(&format!("{A}:5-1")).is_err());
        assert!(GtidState::parse("abc:1").is_err());
    }

    #[test]
    fn states_of_one_transaction_may_be_an_older_builds_and_are_completed_by_the_servers() {
        assert!(state("0-1-77").may_be_last_only());
        assert!(!state("0-1-77,1-2-5").may_be_last_only());
        assert!(state(&format!("{A}:42")).may_be_last_only());
        assert!(!state(&format!("{A}:1")).may_be_last_only(), "a whole set");
        assert!(!state(&format!("{A}:1-42")).may_be_last_only());
        assert!(!state(&format!("{A}:42,{B}:3")).may_be_last_only());
        assert!(!GtidState::default().may_be_last_only());

        let server = state("0-1-77,1-2-5");
        assert!(server.completes(&state("0-1-77")));
        assert!(!server.completes(&state("0-1-76")), "another point of the binlog");
        assert!(!server.completes(&state("0-3-77")), "another server's transaction 77");
        assert!(state(&format!("{A}:1-42,{B}:1-3")).completes(&state(&format!("{A}:42"))));
        assert!(!state(&format!("{A}:1-41")).completes(&state(&format!("{A}:42"))));
    }

    #[test]
    fn states_are_stored_as_their_text() {
        let two = state("0-1-77,1-2-5");
        assert_eq!(serde_json::to_string(&two).unwrap(), r#""0-1-77,1-2-5""#);
        assert_eq!(serde_json::from_str::<GtidState>(r#""0-1-77,1-2-5""#).unwrap(), two);
        assert!(serde_json::from_str::<GtidState>(r#""nonsense""#).is_err());
    }
}
