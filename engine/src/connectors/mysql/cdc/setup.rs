//! What a job needs at the source before it streams: the set-up checks
//! (binlog settings, the privileges a replica needs, the table's key and
//! columns; each failure a typed [`CdcError`] with its SQLSTATE), the
//! job's replica `server_id`, the binlog head a drain stops at, and how
//! much binlog the job is behind.

use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use sluice_catalog::{CdcMode, CdcState};

use super::super::endpoint::query_error;
use super::super::{metadata, source};
use super::MysqlChangeSource;
use super::resume::Resume;
use super::stream::{binlog_error, checksums, gtid_start};
use super::values::{BinlogColumn, fraction_digits, refuse_time_fraction};
use super::whole_state;
use crate::cdc::source_object_name;
use crate::contract::{Capture, CdcError, Position, Retention, SourceError, TableDescription, TableRef};

/// MySQL's errors for a missing privilege on an open connection:
/// `ER_SPECIFIC_ACCESS_DENIED_ERROR`, and `ER_ACCESS_DENIED_ERROR`, which
/// MariaDB answers a replica registration without REPLICATION SLAVE with.
const ACCESS_DENIED: [u16; 2] = [1227, 1045];

/// The replica ids Sluice's jobs use: above the ids people give servers.
const SERVER_IDS: std::ops::Range<u32> = 1_000_000_000..(1 << 31);

/// The `server_id` job `job` of Sluice `instance` registers as: stable
/// (a server drops an older replica connection with the same id, so a
/// stream a killed Sluice left behind does not linger) and distinct per
/// job.
pub(super) fn server_id(instance: &str, job: &str) -> u32 {
    let name = source_object_name(instance, job);
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let n = u32::from_be_bytes(digest.as_ref()[..4].try_into().expect("4 bytes"));
    SERVER_IDS.start + n % (SERVER_IDS.end - SERVER_IDS.start)
}

/// A failed statement on an open connection.
fn failed(err: mysql_async::Error) -> CdcError {
    CdcError::Source(query_error(err))
}

/// Whether the server refused `err` for a missing privilege.
fn access_denied(err: &mysql_async::Error) -> bool {
    matches!(err, mysql_async::Error::Server(server) if ACCESS_DENIED.contains(&server.code))
}

/// The binlog's head, `SHOW MASTER STATUS`: where the next event goes.
pub(super) async fn head(conn: &mut Conn) -> Result<(String, u64), CdcError> {
    let row: Option<Row> = conn.query_first("SHOW MASTER STATUS").await.map_err(failed)?;
    let row = row.ok_or_else(|| CdcError::BinlogSetting {
        setting: "log_bin",
        found: "OFF".into(),
        wanted: "ON",
    })?;
    match (row.get_opt::<String, _>(0), row.get_opt::<u64, _>(1)) {
        (Some(Ok(file)), Some(Ok(position))) => Ok((file, position)),
        _ => Err(CdcError::Unsupported(format!(
            "unexpected SHOW MASTER STATUS row {row:?}"
        ))),
    }
}

/// The binlog settings, the privileges of a replica, the table's key (in
/// `MERGE`) and columns, in that order. Returns a notice when the table
/// map carries no column names (`binlog_row_metadata` other than FULL).
pub(super) async fn check(changes: &MysqlChangeSource, capture: &Capture) -> Result<Vec<String>, CdcError> {
    let mut conn = source::session(&changes.endpoint, changes.timeout).await?;
    let result = check_on(changes, &mut conn, capture).await;
    let _ = conn.disconnect().await;
    result
}

async fn check_on(changes: &MysqlChangeSource, conn: &mut Conn, capture: &Capture) -> Result<Vec<String>, CdcError> {
    let settings: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('log_bin', 'binlog_format', 'binlog_row_image', 'log_bin_compress', 'binlog_row_metadata')",
        )
        .await
        .map_err(failed)?;
    let setting = |name: &str| {
        settings
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    for (name, wanted) in [
        ("log_bin", "ON"),
        ("binlog_format", "ROW"),
        ("binlog_row_image", "FULL"),
        ("log_bin_compress", "OFF"),
    ] {
        match setting(name) {
            Some(found) if !found.eq_ignore_ascii_case(wanted) => {
                return Err(CdcError::BinlogSetting {
                    setting: name,
                    found,
                    wanted,
                });
            }
            // log_bin_compress is MariaDB's only.
            None if name != "log_bin_compress" => {
                return Err(CdcError::Unsupported(format!("the server does not report {name}")));
            }
            _ => {}
        }
    }
    let user: String = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(failed)?
        .unwrap_or_default();
    let user = quoted_user(&user);
    let denied = |privilege| CdcError::NoBinlogPrivilege {
        user: user.clone(),
        privilege,
    };
    match conn.query_drop("SHOW MASTER STATUS").await {
        Err(e) if access_denied(&e) => return Err(denied("REPLICATION CLIENT")),
        other => other.map_err(failed)?,
    }
    let (file, offset) = head(conn).await?;
    match probe_replication(changes, &Resume::File { file, offset }).await {
        Err(e) if access_denied(&e) => return Err(denied("REPLICATION SLAVE")),
        other => other.map(drop).map_err(failed)?,
    }
    let table = &capture.description.table;
    let whole = describe_whole(conn, table).await?;
    if capture.mode == CdcMode::Merge && !whole.columns.iter().any(|c| c.primary_key_position.is_some()) {
        return Err(CdcError::NoPrimaryKey { table: table.clone() });
    }
    // The binlog decoder reads every column of a row, the job's or not.
    for column in &whole.columns {
        if source::base_type(column) == "time" {
            refuse_time_fraction(&column.name, fraction_digits(column))?;
        }
    }
    for column in &capture.description.columns {
        BinlogColumn::of(column)?;
    }
    let mut notices = Vec::new();
    let metadata = setting("binlog_row_metadata");
    if !metadata.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("FULL")) {
        notices.push(format!(
            "binlog_row_metadata is {}: the binlog does not name the columns of a row, so a column added or dropped \
             at the source while older changes wait to be read stops the job until RESYNC ETL JOB. SET GLOBAL \
             binlog_row_metadata = FULL (MariaDB 10.5 and later, MySQL 8.0.1 and later) to follow such changes",
            metadata.as_deref().unwrap_or("not available")
        ));
    }
    Ok(notices)
}

/// Every column of `table`, the job's or not.
pub(super) async fn describe_whole(conn: &mut Conn, table: &TableRef) -> Result<TableDescription, CdcError> {
    let info = metadata::table(conn, table)
        .await?
        .ok_or_else(|| SourceError::NotFound {
            kind: "table",
            name: table.to_string(),
            nearby: Vec::new(),
        })?;
    Ok(metadata::describe(conn, info).await?)
}

/// `'user'@'host'` of `CURRENT_USER()`'s `user@host`.
fn quoted_user(current: &str) -> String {
    let (user, host) = current.rsplit_once('@').unwrap_or((current, "%"));
    format!("'{user}'@'{host}'")
}

/// Starts reading the binlog from `resume` as a replica would, without
/// waiting for more: the server refuses a replica without REPLICATION
/// SLAVE, and a GTID state its binlog does not hold, at its first event.
/// A stream from a GTID state reads on until it knows where on this
/// server it starts ([`gtid_start`]), which it returns.
async fn probe_replication(
    changes: &MysqlChangeSource,
    resume: &Resume,
) -> Result<Option<(String, u64)>, mysql_async::Error> {
    let mut conn = changes
        .endpoint
        .connect(changes.timeout)
        .await
        .map_err(|failure| mysql_async::Error::Other(Box::new(failure)))?;
    for statement in resume.session() {
        conn.query_drop(statement).await?;
    }
    // Only a stream from a GTID state reads the rotate event's name.
    let checksums = match resume.by_gtid() {
        true => Some(checksums(&mut conn).await?),
        false => None,
    };
    // A random id: another replica with the same id would be disconnected.
    let id = SERVER_IDS.start - 1 - (rand::random::<u32>() % 1_000_000);
    let mut stream = conn.get_binlog_stream(resume.request(id).with_non_blocking()).await?;
    let start = match checksums {
        Some(checksums) => gtid_start(&mut stream, checksums).await,
        None => stream.next().await.transpose().map(|_| None),
    };
    let _ = stream.close().await;
    start
}

/// Whether `(file, end)` of `position` (a position with a GTID state) is
/// a place in this server's binlog rather than another server's, after a
/// failover: MariaDB's state there completes the position's. A MySQL
/// server with the file is taken at its word (asking would read the file's
/// events).
async fn same_binlog(conn: &mut Conn, position: &Position) -> Result<bool, CdcError> {
    let Position::MySql {
        file,
        end,
        gtid: Some(state),
        ..
    } = position
    else {
        return Ok(true);
    };
    if state.is_mysql() {
        return Ok(true);
    }
    let here = whole_state::mariadb_state(conn, file, *end).await?;
    Ok(here.is_some_and(|here| here.completes(state)))
}

/// The binlog bytes after the job's committed position; `lost` when the
/// file that position is in is not on the server (purged) and, for a
/// position with a GTID state (whose file may be another server's, after
/// a failover), the server also refuses to stream from the state. The
/// source holds nothing back for a job (`held` is `None`).
pub(super) async fn retained(changes: &MysqlChangeSource, state: &CdcState) -> Result<Option<Retention>, CdcError> {
    let Some(position @ Position::MySql { .. }) = state
        .position
        .as_deref()
        .map(Position::from_json)
        .transpose()
        .map_err(CdcError::Unsupported)?
    else {
        // Nothing committed yet: nothing to be behind.
        return Ok(Some(Retention {
            held: None,
            behind: None,
            lost: None,
        }));
    };
    let resume = Resume::after(&position)?;
    let (logs, here): (Vec<Row>, bool) = changes
        .kept
        .run(
            async || Ok(source::session(&changes.endpoint, changes.timeout).await?),
            async |conn: &mut Conn| {
                let logs = conn.query("SHOW BINARY LOGS").await.map_err(failed)?;
                let here = !resume.by_gtid() || same_binlog(conn, &position).await?;
                Ok((logs, here))
            },
        )
        .await?;
    let logs: Vec<(String, u64)> = logs
        .into_iter()
        .filter_map(|row| Some((row.get_opt::<String, _>(0)?.ok()?, row.get_opt::<u64, _>(1)?.ok()?)))
        .collect();
    let Position::MySql { file, end, .. } = &position else {
        unreachable!("matched above")
    };
    let retention = behind(&logs, file, *end);
    if !resume.by_gtid() || (here && retention.lost.is_none()) {
        return Ok(Some(retention));
    }
    // The file of a position with a GTID state may be another server's
    // (after a failover): ask this server where it streams from the state.
    match probe_replication(changes, &resume).await {
        Ok(start) => Ok(Some(match start {
            Some((file, offset)) => Retention {
                lost: None,
                ..behind(&logs, &file, offset)
            },
            None => Retention {
                held: None,
                behind: None,
                lost: None,
            },
        })),
        Err(e) => match resume.lost(&e) {
            Some(lost) => Ok(Some(Retention {
                lost: Some(match retention.lost {
                    Some(purged) => format!("{purged}; and {lost}"),
                    None => lost,
                }),
                ..retention
            })),
            None => Err(binlog_error(e)),
        },
    }
}

/// The binlog after `(file, end)` among `logs` (`SHOW BINARY LOGS`).
fn behind(logs: &[(String, u64)], file: &str, end: u64) -> Retention {
    match logs.iter().position(|(name, _)| name == file) {
        None => Retention {
            held: None,
            behind: None,
            lost: Some(format!(
                "the binlog file {file} it continues from is no longer on the source (purged: \
                 binlog_expire_logs_seconds, expire_logs_days or PURGE BINARY LOGS)"
            )),
        },
        Some(i) => Retention {
            held: None,
            behind: Some(logs[i].1.saturating_sub(end) + logs[i + 1..].iter().map(|(_, size)| size).sum::<u64>()),
            lost: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_stable_distinct_and_in_sluices_range() {
        let a = server_id("0123456789abcdef", "orders");
        assert_eq!(a, server_id("0123456789abcdef", "orders"));
        assert_ne!(a, server_id("0123456789abcdef", "orders_eu"));
        assert!(SERVER_IDS.contains(&a), "{a}");
    }

    #[test]
    fn the_binlog_behind_a_position_counts_later_files_whole() {
        let logs = [
            ("bin.000001".to_owned(), 1000),
            ("bin.000002".to_owned(), 500),
            ("bin.000003".to_owned(), 300),
        ];
        assert_eq!(behind(&logs, "bin.000002", 400).behind, Some(100 + 300));
        assert_eq!(behind(&logs, "bin.000003", 300).behind, Some(0));
        let purged = behind(&logs, "bin.000000", 4);
        assert!(purged.lost.unwrap().contains("bin.000000"));
    }

    #[test]
    fn users_are_quoted_for_grant() {
        assert_eq!(quoted_user("etl@%"), "'etl'@'%'");
        assert_eq!(quoted_user("a@b@localhost"), "'a@b'@'localhost'");
    }
}
