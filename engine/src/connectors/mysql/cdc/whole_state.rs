//! Positions that Sluice committed before it kept whole GTID states hold
//! the GTID of their last transaction only (docs/cdc.md, "Failover"). For
//! a MariaDB source with one replication domain that is the whole state,
//! but with several a stream from it would read the other domains' changes
//! again, and a MySQL set of one transaction asks for every earlier one.
//! While the server that wrote such a position still has its binlog file,
//! it says what the whole state there is: MariaDB `BINLOG_GTID_POS(file,
//! offset)`; MySQL the file's `Previous_gtids` and the GTIDs logged in it
//! up to the offset (`SHOW BINLOG EVENTS`). A stream then starts from that
//! state, and its commits store it.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::stream::binlog_error;
use crate::contract::{CdcError, GtidState, Position};

/// `position` with its GTID state completed where it may hold only its
/// last transaction and the server has the position's binlog file; else
/// `position` as it is.
pub(super) async fn complete(conn: &mut Conn, position: &Position) -> Result<Position, CdcError> {
    let Position::MySql {
        file,
        end,
        gtid: Some(last_only),
        ..
    } = position
    else {
        return Ok(position.clone());
    };
    if !last_only.may_be_last_only() {
        return Ok(position.clone());
    }
    let server = match last_only.is_mysql() {
        true => mysql_state(conn, file, *end, last_only).await?,
        false => mariadb_state(conn, file, *end).await?,
    };
    match server {
        Some(whole) if whole.completes(last_only) => {
            if whole != *last_only {
                tracing::info!(%file, end, from = %last_only, to = %whole, "completed an older build's GTID state");
            }
            let mut completed = position.clone();
            if let Position::MySql { gtid, .. } = &mut completed {
                *gtid = Some(whole);
            }
            Ok(completed)
        }
        other => {
            if other.is_some() {
                tracing::warn!(%file, end, state = %last_only, "the binlog file here is another server's: the GTID state is kept as it is");
            }
            Ok(position.clone())
        }
    }
}

/// MariaDB's GTID state at `(file, end)`, `None` where the server has no
/// such file (`BINLOG_GTID_POS` gives NULL).
pub(super) async fn mariadb_state(conn: &mut Conn, file: &str, end: u64) -> Result<Option<GtidState>, CdcError> {
    let text: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, end))
        .await
        .map_err(binlog_error)?;
    text.flatten()
        .map(|text| GtidState::parse(&text))
        .transpose()
        .map_err(CdcError::Unsupported)
}

/// MySQL's executed GTID set at `(file, end)`, where the last transaction
/// logged before `end` is `last_only`'s; `None` where the server has no
/// such file (it refuses the statement) or that transaction differs.
async fn mysql_state(
    conn: &mut Conn,
    file: &str,
    end: u64,
    last_only: &GtidState,
) -> Result<Option<GtidState>, CdcError> {
    let statement = format!(
        "SHOW BINLOG EVENTS IN '{}'",
        file.replace('\\', "\\\\").replace('\'', "''")
    );
    // Read as it streams: a binlog file holds up to a gigabyte of events.
    let mut reading = StateAt::new(end);
    match conn.query_iter(statement).await {
        Ok(mut result) => {
            result
                .for_each(|row| {
                    let field = |i: usize| row.get_opt::<String, _>(i).and_then(Result::ok);
                    if let (Some(kind), Some(end_pos), Some(info)) = (field(2), row.get_opt::<u64, _>(4), field(5)) {
                        reading.event(&kind, end_pos.unwrap_or(u64::MAX), &info);
                    }
                })
                .await
                .map_err(binlog_error)?;
        }
        Err(mysql_async::Error::Server(missing)) => {
            tracing::debug!(%file, error = %missing.message, "no binlog file to complete a GTID state from");
            return Ok(None);
        }
        Err(e) => return Err(binlog_error(e)),
    }
    Ok(reading
        .finish()
        .filter(|(_, last)| last == last_only)
        .map(|(state, _)| state))
}

/// The GTID set after the events of a MySQL binlog file (`SHOW BINLOG
/// EVENTS`: type, end offset, info) that end at or before `end`, with the
/// last transaction among them, read one event at a time.
struct StateAt {
    end: u64,
    /// `None` once an event could not be read: no state to trust.
    state: Option<GtidState>,
    last: Option<GtidState>,
    /// An event past `end` was met: the rest are passed over.
    passed: bool,
}

impl StateAt {
    fn new(end: u64) -> Self {
        Self {
            end,
            state: Some(GtidState::default()),
            last: None,
            passed: false,
        }
    }

    /// The file's next event.
    fn event(&mut self, kind: &str, event_end: u64, info: &str) {
        self.passed |= event_end > self.end;
        let Some(state) = self.state.take_if(|_| !self.passed) else {
            return;
        };
        self.state = match kind {
            "Previous_gtids" => GtidState::parse(info).ok(),
            "Gtid" => {
                // SET @@SESSION.GTID_NEXT= 'uuid:n'
                let gtid = info.split('\'').nth(1);
                self.last = gtid.and_then(|g| GtidState::parse(g).ok());
                gtid.and_then(|g| state.with(g).ok())
            }
            _ => Some(state),
        };
    }

    /// The state and its last transaction, if both are known.
    fn finish(self) -> Option<(GtidState, GtidState)> {
        Some((self.state?, self.last?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4d22fa47-71ca-11e1-9e33-c80aa9429562";

    fn event(kind: &str, end: u64, info: &str) -> (String, u64, String) {
        (kind.to_owned(), end, info.to_owned())
    }

    #[test]
    fn a_mysql_files_previous_set_and_gtids_give_the_state_at_an_offset() {
        let events = [
            event("Format_desc", 126, "Server ver: 8.0.36, Binlog ver: 4"),
            event("Previous_gtids", 197, &format!("{A}:1-40,\n{B}:1-3")),
            event("Gtid", 276, &format!("SET @@SESSION.GTID_NEXT= '{A}:41'")),
            event("Query", 351, "BEGIN"),
            event("Xid", 420, "COMMIT /* xid=9 */"),
            event("Gtid", 499, &format!("SET @@SESSION.GTID_NEXT= '{A}:42'")),
            event("Query", 574, "BEGIN"),
            event("Xid", 640, "COMMIT /* xid=12 */"),
            event("Gtid", 719, &format!("SET @@SESSION.GTID_NEXT= '{A}:43'")),
        ];
        let state_at = |events: &[(String, u64, String)], end: u64| {
            let mut reading = StateAt::new(end);
            for (kind, event_end, info) in events {
                reading.event(kind, *event_end, info);
            }
            reading.finish()
        };
        let (state, last) = state_at(&events, 640).unwrap();
        assert_eq!(state.to_string(), format!("{A}:1-42,{B}:1-3"));
        assert_eq!(last.to_string(), format!("{A}:42"));
        assert!(state.completes(&GtidState::parse(&format!("{A}:42")).unwrap()));
        let (_, earlier) = state_at(&events, 420).unwrap();
        assert_eq!(earlier.to_string(), format!("{A}:41"));
        assert!(
            state_at(&events[..2], 640).is_none(),
            "no transaction logged in the file yet"
        );
    }
}
