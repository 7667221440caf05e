//! Where a binlog stream starts (docs/cdc.md, "Failover"): from the GTID
//! state of a position that has one, which every server of the topology
//! understands, so a job follows a failover to a replica; else from its
//! binlog file and offset, which only the server that wrote them does.
//!
//! MariaDB takes the state as `@slave_connect_state` (strict: a GTID the
//! server's binlog lacks is refused) with `COM_BINLOG_DUMP` from no file;
//! MySQL (`gtid_mode = ON`) as the GTID set of `COM_BINLOG_DUMP_GTID`.
//! The server then picks the binlog file and names it in the stream's
//! first (artificial) rotate event.

use mysql_async::{BinlogStreamRequest, Sid};

use crate::contract::{CdcError, GtidState, Position};

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
        if let Resume::MariaDbGtid(state) = self {
            // The state's text is digits, '-' and ','.
            statements.push(format!("SET @slave_connect_state = '{state}'"));
            statements.push("SET @slave_gtid_strict_mode = 1".to_owned());
        }
        statements
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
        let Resume::MySqlGtid(sids) = Resume::after(&at(Some(set))).unwrap() else {
            panic!("not by GTID set");
        };
        let sent: Vec<(String, Vec<(u64, u64)>)> = sids
            .iter()
            .map(|sid| {
                let ranges = sid.intervals().iter().map(|i: &GnoInterval| (i.start(), i.end())).collect();
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
