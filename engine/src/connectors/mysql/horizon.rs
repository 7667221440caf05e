//! The commit guard's reading of a MySQL/MariaDB source: its clock and the
//! InnoDB transactions open in other sessions.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::endpoint::query_error;
use crate::contract::{CommitHorizon, OpenTransaction, SourceError, SourceInstant};

/// The clock, one second back, as UTC and as wall time in the session's
/// (the server's default) time zone, in microseconds.
///
/// `information_schema.innodb_trx` is a cache that InnoDB refreshes at most
/// every 100 ms, so a transaction that began just before this reading can be
/// missing from it (and one that just committed can still be listed, which
/// only holds the cap back). Taking the clock a second back keeps the rows of
/// such a transaction above the cap: they wait for the next run.
const CLOCK: &str = "SELECT CAST(UNIX_TIMESTAMP(NOW(6) - INTERVAL 1 SECOND) * 1000000 AS SIGNED), \
                     TIMESTAMPDIFF(MICROSECOND, '1970-01-01', NOW(6) - INTERVAL 1 SECOND)";

/// Open InnoDB transactions of other sessions that can write, oldest first.
const OPEN: &str = "SELECT trx_mysql_thread_id, CAST(UNIX_TIMESTAMP(trx_started) * 1000000 AS SIGNED), \
                    TIMESTAMPDIFF(MICROSECOND, '1970-01-01', trx_started) \
                    FROM information_schema.innodb_trx \
                    WHERE trx_mysql_thread_id <> CONNECTION_ID() AND trx_is_read_only = 0 \
                    ORDER BY trx_started";

/// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: `innodb_trx` needs `PROCESS`.
const ACCESS_DENIED: u16 = 1227;

/// Reads the commit horizon on `conn`, a session left in the server's
/// default time zone.
pub(super) async fn read(conn: &mut Conn) -> Result<CommitHorizon, SourceError> {
    let (utc, wall): (i64, i64) =
        conn.query_first(CLOCK)
            .await
            .map_err(query_error)?
            .ok_or_else(|| SourceError::Query {
                code: None,
                message: "the source did not tell its clock".into(),
            })?;
    let (open, blind) = match conn.query::<(i64, i64, i64), _>(OPEN).await {
        Ok(rows) => (rows, None),
        Err(mysql_async::Error::Server(e)) if e.code == ACCESS_DENIED => (Vec::new(), Some("PROCESS".to_owned())),
        Err(e) => return Err(query_error(e)),
    };
    Ok(CommitHorizon {
        now: SourceInstant {
            utc_micros: utc,
            wall_micros: wall,
        },
        open: open
            .into_iter()
            .map(|(holder, utc, wall)| OpenTransaction {
                holder,
                started: SourceInstant {
                    utc_micros: utc,
                    wall_micros: wall,
                },
            })
            .collect(),
        replay: None,
        blind,
        uploads_in_flight: false,
    })
}
