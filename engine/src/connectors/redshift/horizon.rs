//! The commit guard's reading of a Redshift source: its clock and the
//! transactions open in other sessions of the database (`svv_transactions`,
//! one row per lock, so grouped by session), in a few short queries. Redshift keeps
//! time in UTC: the session is set to UTC and both instants of each reading
//! are its UTC value, so a `timestamp` cursor is taken to hold UTC times.
//!
//! `svv_transactions` shows a user only its own transactions unless it is a
//! superuser or has `SYSLOG ACCESS UNRESTRICTED`; without either the reading
//! says the guard is blind, and runs record that they ran unguarded.

use chrono::NaiveDateTime;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::connectors::postgres::query_error;
use crate::contract::{CommitHorizon, OpenTransaction, SourceError, SourceInstant};

/// The statements of one reading, each a query of its own (system views
/// of the leader node and of the compute nodes are never joined), in this
/// order: the clock first, so a transaction that starts after it stamps its
/// rows later; then whether the user is a superuser or has unrestricted
/// system table access (`svl_user_info` may show a non-superuser nothing:
/// the reading then says blind); then the other sessions with an open
/// transaction, oldest first.
const CLOCK: &str = "SET timezone TO 'UTC'; SELECT getdate()";
const SUPERUSER: &str = "SELECT usesuper FROM pg_user WHERE usename = current_user";
const UNRESTRICTED: &str = "SELECT syslogaccess FROM svl_user_info WHERE usename = current_user";
const OPEN: &str = "SELECT pid, min(txn_start) AS started FROM svv_transactions \
                    WHERE pid <> pg_backend_pid() AND txn_db = current_database() GROUP BY pid ORDER BY started";

/// What a user needs to see other users' transactions.
const GRANT: &str = "SYSLOG ACCESS UNRESTRICTED (ALTER USER ... SYSLOG ACCESS UNRESTRICTED)";

/// Reads the commit horizon on `client` (a session of its own).
pub(super) async fn read(client: &Client) -> Result<CommitHorizon, SourceError> {
    let clock = rows(client, CLOCK).await?;
    let now = instant(
        clock
            .first()
            .and_then(|r| r.get(0))
            .ok_or_else(|| unexpected("no clock"))?,
    )?;
    let superuser = rows(client, SUPERUSER).await?.first().and_then(|r| r.get(0)) == Some("t");
    let unrestricted = rows(client, UNRESTRICTED)
        .await?
        .first()
        .and_then(|r| r.get(0))
        .is_some_and(|access| access.eq_ignore_ascii_case("UNRESTRICTED"));
    let mut open = Vec::new();
    for row in rows(client, OPEN).await? {
        let (Some(pid), Some(started)) = (row.get(0), row.get(1)) else {
            continue;
        };
        open.push(OpenTransaction {
            holder: pid.parse().map_err(|_| unexpected(pid))?,
            started: instant(started)?,
        });
    }
    Ok(CommitHorizon {
        now,
        open,
        replay: None,
        blind: (!(superuser || unrestricted)).then(|| GRANT.to_owned()),
        uploads_in_flight: false,
    })
}

async fn rows(client: &Client, sql: &str) -> Result<Vec<SimpleQueryRow>, SourceError> {
    Ok(client
        .simple_query(sql)
        .await
        .map_err(query_error)?
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect())
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
        message: format!("unexpected answer while reading open transactions: {what}"),
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
