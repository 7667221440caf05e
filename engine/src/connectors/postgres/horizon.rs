//! The commit guard's reading of a PostgreSQL source: its clock, the
//! transactions open in other sessions of the database, and on a replica its
//! replay point, in one query.

use tokio_postgres::Client;

use super::query_error;
use crate::contract::{CommitHorizon, OpenTransaction, SourceError, SourceInstant};

/// Each instant as UTC and as the wall time of the session's (the server's
/// default) time zone, in microseconds. Sessions of other backends that hold
/// a transaction open count, whether or not they have written yet: a
/// `DEFAULT now()` row is stamped with its transaction's start. Autovacuum,
/// WAL senders and Sluice's own read-only scan sessions (which never hold a
/// transaction id) write no user rows.
///
/// On a replica the primary's open transactions cannot be seen; its replay
/// point stands in: the last replayed commit while WAL it received waits to
/// be replayed, its clock once it has replayed everything (an idle primary
/// writes no commits, so the last one would hold the cap back for ever).
const HORIZON: &str = "\
WITH clock AS (SELECT now() AS now, current_setting('TimeZone') AS tz), \
txn AS (SELECT pid, xact_start FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND datname = current_database() AND xact_start IS NOT NULL \
           AND backend_type NOT IN ('autovacuum worker', 'walsender') \
           AND NOT (application_name = 'sluice' AND backend_xid IS NULL)), \
replay AS (SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL \
                       WHEN pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn() \
                         THEN pg_last_xact_replay_timestamp() \
                       ELSE now() END AS at) \
SELECT (extract(epoch FROM clock.now) * 1000000)::int8, \
       (extract(epoch FROM clock.now AT TIME ZONE clock.tz) * 1000000)::int8, \
       (SELECT array_agg(pid::int8 ORDER BY xact_start) FROM txn), \
       (SELECT array_agg((extract(epoch FROM xact_start) * 1000000)::int8 ORDER BY xact_start) FROM txn), \
       (SELECT array_agg((extract(epoch FROM xact_start AT TIME ZONE clock.tz) * 1000000)::int8 ORDER BY xact_start) FROM txn), \
       (extract(epoch FROM replay.at) * 1000000)::int8, \
       (extract(epoch FROM replay.at AT TIME ZONE clock.tz) * 1000000)::int8, \
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
         OR pg_has_role(current_user, 'pg_read_all_stats', 'member') \
FROM clock, replay";

/// Reads the commit horizon on `client` (a session of its own, outside any
/// scan's snapshot).
pub(super) async fn read(client: &Client) -> Result<CommitHorizon, SourceError> {
    let row = client.query_one(HORIZON, &[]).await.map_err(query_error)?;
    let instant = |utc: i64, wall: i64| SourceInstant {
        utc_micros: utc,
        wall_micros: wall,
    };
    let pids: Vec<i64> = row.get::<_, Option<Vec<i64>>>(2).unwrap_or_default();
    let utc: Vec<i64> = row.get::<_, Option<Vec<i64>>>(3).unwrap_or_default();
    let wall: Vec<i64> = row.get::<_, Option<Vec<i64>>>(4).unwrap_or_default();
    let open = pids
        .into_iter()
        .zip(utc.into_iter().zip(wall))
        .map(|(holder, (utc, wall))| OpenTransaction {
            holder,
            started: instant(utc, wall),
        })
        .collect();
    let replay = match (row.get::<_, Option<i64>>(5), row.get::<_, Option<i64>>(6)) {
        (Some(utc), Some(wall)) => Some(instant(utc, wall)),
        _ => None,
    };
    let sees_all: Option<bool> = row.get(7);
    Ok(CommitHorizon {
        now: instant(row.get(0), row.get(1)),
        open,
        replay,
        blind: (!sees_all.unwrap_or(false)).then(|| "pg_read_all_stats".to_owned()),
        uploads_in_flight: false,
    })
}
