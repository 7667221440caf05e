//! The commit guard's reading of a Redshift source: its clock and the
//! transactions open in other sessions of the database (`svv_transactions`,
//! one row per lock, so grouped by session), in one query. Redshift keeps
//! time in UTC: the session is set to UTC and both instants of each reading
//! are its UTC value, so a `timestamp` cursor is taken to hold UTC times.
//!
//! `svv_transactions` shows a user only its own transactions unless it is a
//! superuser or has `SYSLOG ACCESS UNRESTRICTED`; without either the reading
//! says the guard is blind, and runs record that they ran unguarded.

use chrono::NaiveDateTime;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::connectors::postgres::query_error;
use crate::sources::{CommitHorizon, OpenTransaction, SourceError, SourceInstant};

/// The clock, whether the user is a superuser or has unrestricted system
/// table access (`svl_user_info` may show a non-superuser nothing: then
/// the reading says blind), and each other session with an open transaction
/// and its start (none: one row with NULLs).
const HORIZON: &str = "SET timezone TO 'UTC'; \
SELECT c.now, s.super, u.unrestricted, t.pid, t.started \
FROM (SELECT getdate() AS now) c \
CROSS JOIN (SELECT bool_or(usesuper) AS super FROM pg_user WHERE usename = current_user) s \
CROSS JOIN (SELECT bool_or(syslogaccess = 'UNRESTRICTED') AS unrestricted \
            FROM svl_user_info WHERE usename = current_user) u \
LEFT JOIN (SELECT pid, min(txn_start) AS started FROM svv_transactions \
           WHERE pid <> pg_backend_pid() AND txn_db = current_database() GROUP BY pid) t ON 1 = 1 \
ORDER BY t.started";

/// What a user needs to see other users' transactions.
const GRANT: &str = "SYSLOG ACCESS UNRESTRICTED (ALTER USER ... SYSLOG ACCESS UNRESTRICTED)";

/// Reads the commit horizon on `client` (a session of its own).
pub(super) async fn read(client: &Client) -> Result<CommitHorizon, SourceError> {
    let rows: Vec<_> = client
        .simple_query(HORIZON)
        .await
        .map_err(query_error)?
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect();
    let first = rows.first().ok_or_else(|| unexpected("no row"))?;
    let now = instant(first.get(0).ok_or_else(|| unexpected("no clock"))?)?;
    let sees_all = first.get(1) == Some("t") || first.get(2) == Some("t");
    let mut open = Vec::new();
    for row in &rows {
        if let (Some(pid), Some(started)) = (row.get(3), row.get(4)) {
            open.push(OpenTransaction {
                holder: pid.parse().map_err(|_| unexpected(pid))?,
                started: instant(started)?,
            });
        }
    }
    Ok(CommitHorizon {
        now,
        open,
        replay: None,
        blind: (!sees_all).then(|| GRANT.to_owned()),
        uploads_in_flight: false,
    })
}

/// A `timestamp` in the session's ISO text, as UTC.
fn instant(text: &str) -> Result<SourceInstant, SourceError> {
    let time = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map_err(|_| unexpected(text))?;
    let micros = time.and_utc().timestamp_micros();
    Ok(SourceInstant {
        utc_micros: micros,
        wall_micros: micros,
    })
}

fn unexpected(what: &str) -> SourceError {
    SourceError::Query {
        code: None,
        message: format!("unexpected answer from svv_transactions: {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_read_as_utc_with_or_without_fractions() {
        assert_eq!(instant("1970-01-01 00:00:01").unwrap().utc_micros, 1_000_000);
        let i = instant("1970-01-01 00:00:00.25").unwrap();
        assert_eq!((i.utc_micros, i.wall_micros), (250_000, 250_000));
        assert!(instant("yesterday").is_err());
    }
}
