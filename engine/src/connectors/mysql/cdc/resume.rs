//! Where a binlog stream starts (docs/cdc.md, "Failover"): from the GTID
//! state of a position that has one, which every server of the topology
//! understands, so a job follows a failover to a replica; else from its
//! binlog file and offset, which only the server that wrote them does.
//!
//! MariaDB takes the state as `@slave_connect_state` (strict: a GTID the
//! server's binlog lacks is refused) with `COM_BINLOG_DUMP` from no file;
//! MySQL (`gtid_mode = ON`) as the GTID set of `COM_BINLOG_DUMP_GTID`,
//! with heartbeats that carry its position past what it passes over.
//! The server then picks the binlog file and names it in the stream's
//! first (artificial) rotate event.

use mysql_async::{BinlogStreamRequest, Sid};

use super::stream::binlog_error;
use crate::contract::{CdcError, GtidState, Position};

/// The error a server refuses a replica's start with: a purged file, a
/// GTID state it does not hold (`ER_MASTER_FATAL_ERROR_READING_BINLOG`).
const REFUSED: u16 = 1236;

/// How a stream asks the server for the binlog after a position.
#[derive(Debug, PartialEq)]
pub(super) enum Resume {
    /// From a binlog file and offset.
    File { file: String, offset: u64 },
    /// MariaDB, from a GTID state (`domain-server-sequence`, ...).
    MariaDbGtid(String),
    /// MySQL, from an executed GTID set.
    MySqlGtid(Vec<Sid<'static>>),
}

impl Resume {
    /// From `position`'s GTID state where it has one with a transaction in
    /// it, else from its file and offset.
    pub(super) fn after(position: &Position) -> Result<Self, CdcError> {
        let Position::MySql { file, end, gtid, .. } = position else {
            return Err(CdcError::Unsupported(format!(
                "{} is not a binlog position",
                position.to_json()
            )));
        };
        Ok(match gtid {
            Some(state) if state.is_mysql() => Resume::MySqlGtid(sids(state)?),
            Some(state) if !state.is_empty() => Resume::MariaDbGtid(state.to_string()),
            _ => Resume::File {
                file: file.clone(),
                offset: *end,
            },
        })
    }

    /// Whether the stream starts from a GTID state.
    pub(super) fn by_gtid(&self) -> bool {
        !matches!(self, Resume::File { .. })
    }

    /// The statements the replication session runs before it asks: MariaDB
    /// sends its GTID events (instead of `BEGIN` queries) to a replica
    /// that says it understands them, and takes the state to start from.
    pub(super) fn session(&self) -> Vec<String> {
        let mut statements = vec!["SET @mariadb_slave_capability = 4".to_owned()];
        match self {
            Resume::MariaDbGtid(state) => {
                // The state's text is digits, '-' and ','.
                statements.push(format!("SET @slave_connect_state = '{state}'"));
                statements.push("SET @slave_gtid_strict_mode = 1".to_owned());
            }
            // MySQL sends no event for the transactions it passes over:
            // heartbeats (every second, in nanoseconds) say where it is.
            Resume::MySqlGtid(_) => statements.push(format!("SET @master_heartbeat_period = {}", 1_000_000_000u64)),
            Resume::File { .. } => {}
        }
        statements
    }

    /// Why the server's refusal `err` of a start from a GTID state means
    /// that job `job` needs a resync, if it does: its binlog does not hold
    /// the state (purged, or another server's).
    pub(super) fn lost(&self, err: &mysql_async::Error) -> Option<String> {
        match (self, err) {
            (Resume::MariaDbGtid(_) | Resume::MySqlGtid(_), mysql_async::Error::Server(refused))
                if refused.code == REFUSED =>
            {
                Some(format!(
                    "the source's binlog does not hold the GTID state {} the job continues from (purged, or a \
                     server that does not replicate the job's old source or has not replicated all it read): {}",
                    self.state(),
                    refused.message
                ))
            }
            _ => None,
        }
    }

    /// A failure to start the stream: `needs resync` when the server
    /// refuses the job's GTID state ([`Resume::lost`]).
    pub(super) fn failed(&self, job: &str, err: mysql_async::Error) -> CdcError {
        match self.lost(&err) {
            Some(reason) => CdcError::NeedsResync {
                job: job.to_owned(),
                reason,
            },
            None => binlog_error(err),
        }
    }

    /// The GTID state the stream starts from, as the server spells it.
    fn state(&self) -> String {
        match self {
            Resume::File { .. } => String::new(),
            Resume::MariaDbGtid(state) => state.clone(),
            Resume::MySqlGtid(sids) => sids.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        }
    }

    /// The request of replica `server_id`.
    pub(super) fn request(&self, server_id: u32) -> BinlogStreamRequest<'_> {
        let request = BinlogStreamRequest::new(server_id);
        match self {
            Resume::File { file, offset } => request.with_filename(file.as_bytes()).with_pos(*offset),
            Resume::MariaDbGtid(_) => request.with_filename(b"").with_pos(4u64),
            Resume::MySqlGtid(sids) => request
                .with_gtid()
                .with_filename(b"")
                .with_pos(4u64)
                .with_gtid_set(sids.iter().cloned()),
        }
    }
}

/// A MySQL GTID set as the SIDs of `COM_BINLOG_DUMP_GTID` (ranges end
/// exclusive on the wire).
fn sids(state: &GtidState) -> Result<Vec<Sid<'static>>, CdcError> {
    state
        .mysql_sources()
        .map(|(source, ranges)| {
            let text: Vec<String> = ranges.iter().map(|(first, last)| format!("{first}-{last}")).collect();
            let sid: Sid<'static> = format!("{source}:{}", text.join(":"))
                .parse()
                .map_err(|e| CdcError::Unsupported(format!("GTID set entry {source}: {e}")))?;
            Ok(sid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use mysql_async::GnoInterval;

    use super::*;

    fn at(gtid: Option<&str>) -> Position {
        Position::MySql {
            file: "bin.000003".into(),
            begin: 100,
            end: 200,
            gtid: gtid.map(|g| GtidState::parse(g).unwrap()),
            shift: 0,
        }
    }

    #[test]
    fn mariadb_states_resume_by_gtid_in_strict_mode() {
        let resume = Resume::after(&at(Some("0-1-10,1-2-5"))).unwrap();
        assert_eq!(resume, Resume::MariaDbGtid("0-1-10,1-2-5".into()));
        assert!(resume.by_gtid());
        assert_eq!(
            resume.session(),
            [
                "SET @mariadb_slave_capability = 4",
                "SET @slave_connect_state = '0-1-10,1-2-5'",
                "SET @slave_gtid_strict_mode = 1",
            ]
        );
    }

    #[test]
    fn positions_without_a_state_resume_by_file_and_offset() {
        for position in [at(None), at(Some(""))] {
            let resume = Resume::after(&position).unwrap();
            assert_eq!(
                resume,
                Resume::File {
                    file: "bin.000003".into(),
                    offset: 200
                }
            );
            assert!(!resume.by_gtid());
            assert_eq!(resume.session(), ["SET @mariadb_slave_capability = 4"]);
        }
        assert!(Resume::after(&Position::postgres_snapshot(1)).is_err());
    }

    #[test]
    fn mysql_sets_resume_by_com_binlog_dump_gtid_with_their_sids() {
        let set = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,4d22fa47-71ca-11e1-9e33-c80aa9429562:1-3";
        let resume = Resume::after(&at(Some(set))).unwrap();
        assert_eq!(
            resume.session(),
            [
                "SET @mariadb_slave_capability = 4",
                "SET @master_heartbeat_period = 1000000000"
            ]
        );
        let Resume::MySqlGtid(sids) = resume else {
            panic!("not by GTID set");
        };
        let sent: Vec<(String, Vec<(u64, u64)>)> = sids
            .iter()
            .map(|sid| {
                let ranges = sid
                    .intervals()
                    .iter()
                    .map(|i: &GnoInterval| (i.start(), i.end()))
                    .collect();
                (sid.to_string(), ranges)
            })
            .collect();
        assert_eq!(
            sent,
            [
                (
                    "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7".to_owned(),
                    vec![(1, 6), (7, 8)]
                ),
                ("4d22fa47-71ca-11e1-9e33-c80aa9429562:1-3".to_owned(), vec![(1, 4)]),
            ],
            "ranges go on the wire end exclusive"
        );
    }
}
