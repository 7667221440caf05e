//! Parallel scans (`WITH (parallelism = n)`, a cluster's parts) in one
//! snapshot. MySQL and MariaDB cannot hand a snapshot to another session,
//! so the table is frozen while the parts open theirs: a coordinating
//! session takes `LOCK TABLES ... READ` (writers wait; readers do not),
//! holds a named lock that says so (`GET_LOCK`), and reads the split
//! column's range. Each part then starts `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT`, checks that the freeze is still held (so its
//! snapshot began inside it and equals every other part's), takes a named
//! lock of its own, and streams one `SELECT` of its range. The coordinator
//! thaws the table as soon as it has seen every part's lock held, or after
//! [`freeze::FREEZE_LIMIT`]; a part that starts later fails with SQLSTATE
//! 40001 (the run retries) instead of reading another snapshot
//! ([`crate::sources::freeze`] holds what SQL Server shares).

use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::SendableRecordBatchStream;
use futures::future::BoxFuture;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tracing::debug;

use super::dialect::MysqlDialect;
use super::endpoint::{Endpoint, query_error};
use super::source::{quoted_table, scan_on, scan_query, session};
use crate::contract::{Dialect, ScanRequest, SourceError, SplitScan, TableDescription};
use crate::sources::freeze;
use crate::sources::key_ranges::{part_request, ranges, read_here, split_parts};

/// The longest the coordinator waits for the table lock (for transactions
/// writing the table to end).
const LOCK_WAIT_SECONDS: u32 = 60;

/// MySQL's error for a privilege the user lacks on a table (`LOCK TABLES`).
const ER_TABLEACCESS_DENIED_ERROR: u16 = 1142;
/// ... and on a database.
const ER_DBACCESS_DENIED_ERROR: u16 = 1044;
/// A lock wait that timed out.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// One condition per range of the split column's values now on `conn`.
async fn conditions(
    conn: &mut Conn,
    description: &TableDescription,
    request: &ScanRequest,
    split: usize,
    parts: usize,
) -> Result<Vec<Option<String>>, SourceError> {
    let (column, table, filter) = split_parts(&MysqlDialect, description, request, split)?;
    let range: Option<(Option<i64>, Option<i64>)> = conn
        .query_first(format!(
            "SELECT CAST(MIN({column}) AS SIGNED), CAST(MAX({column}) AS SIGNED) FROM {table}{filter}"
        ))
        .await
        .map_err(query_error)?;
    Ok(match range {
        Some((Some(min), Some(max))) => ranges(&column, min, max, parts),
        _ => vec![None],
    })
}

/// The queries the parts of a parallel scan would run now (the split
/// column's range read outside any freeze), for EXPLAIN.
pub(super) async fn queries(
    endpoint: &Endpoint,
    timeout: Duration,
    description: &TableDescription,
    request: &ScanRequest,
    split: usize,
    parts: usize,
) -> Result<Vec<String>, SourceError> {
    let mut conn = session(endpoint, timeout).await?;
    let conditions = conditions(&mut conn, description, request, split, parts).await;
    let _ = conn.disconnect().await;
    Ok((conditions?.into_iter())
        .map(|condition| scan_query(description, &part_request(request, condition)))
        .collect())
}

/// Freezes the table and plans `request` as up to `parts` ranges of
/// column `split`, each to be read by [`scan_part`] in the freeze's
/// snapshot; the freeze ends when every part has opened its snapshot,
/// after [`freeze::FREEZE_LIMIT`], or when the returned [`SplitScan`] drops.
pub(super) async fn split(
    endpoint: &Endpoint,
    timeout: Duration,
    description: &TableDescription,
    request: &ScanRequest,
    split: usize,
    parts: usize,
) -> Result<SplitScan, SourceError> {
    let mut conn = session(endpoint, timeout).await?;
    let freeze = freeze::new_name();
    let frozen = async {
        lock_table(&mut conn, description).await?;
        conn.exec_drop("DO GET_LOCK(?, 0)", (freeze.as_str(),))
            .await
            .map_err(query_error)?;
        conditions(&mut conn, description, request, split, parts).await
    }
    .await;
    let conditions = match frozen {
        Ok(conditions) => conditions,
        Err(error) => {
            let _ = conn.disconnect().await;
            return Err(error);
        }
    };
    debug!(table = %description.table, ranges = conditions.len(), %freeze, "MySQL table frozen for a split scan");
    Ok(freeze::split(conn, freeze, request, conditions, watch, thaw))
}

/// Takes the table's read lock, explaining the privilege or the wait it
/// needs when it cannot.
async fn lock_table(conn: &mut Conn, description: &TableDescription) -> Result<(), SourceError> {
    let table = quoted_table(description);
    conn.query_drop(format!("SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}"))
        .await
        .map_err(query_error)?;
    let locked = conn.query_drop(format!("LOCK TABLES {table} READ")).await;
    match locked {
        Err(mysql_async::Error::Server(e))
            if [ER_TABLEACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR].contains(&e.code) =>
        {
            Err(SourceError::Query {
                code: Some("42501".into()),
                message: format!(
                    "a parallel read of {} locks the table for a moment (LOCK TABLES ... READ) so that every \
                     stream reads one snapshot, and the server refused: {}; GRANT LOCK TABLES ON {}.* to the \
                     connection's user, or leave out parallelism",
                    description.table,
                    e.message,
                    MysqlDialect.quote_ident(&description.table.schema)
                ),
            })
        }
        Err(mysql_async::Error::Server(e)) if e.code == ER_LOCK_WAIT_TIMEOUT => Err(SourceError::Query {
            code: Some("55P03".into()),
            message: format!(
                "a parallel read of {} waited {LOCK_WAIT_SECONDS} s for transactions writing the table to end, \
                 to lock it for a moment (LOCK TABLES ... READ); try again when they have",
                description.table
            ),
        }),
        other => other.map_err(query_error),
    }
}

/// Which of the parts' named locks another session holds.
fn watch<'a>(conn: &'a mut Conn, parts: &'a [String]) -> BoxFuture<'a, Result<Vec<bool>, SourceError>> {
    Box::pin(async move {
        let held = format!("SELECT {}", vec!["IS_USED_LOCK(?) IS NOT NULL"; parts.len()].join(", "));
        let row: Option<mysql_async::Row> = conn
            .exec_first(held.as_str(), parts.to_vec())
            .await
            .map_err(query_error)?;
        Ok((0..parts.len())
            .map(|i| row.as_ref().and_then(|row| row.get::<bool, _>(i)).unwrap_or(false))
            .collect())
    })
}

/// Ends the freeze: its named lock first, so that no part starts inside
/// the freeze's name after the table's lock is gone.
fn thaw(mut conn: Conn, freeze: String) -> BoxFuture<'static, Result<(), SourceError>> {
    Box::pin(async move {
        let thawed = conn
            .exec_drop("DO RELEASE_LOCK(?)", (freeze.as_str(),))
            .await
            .and(conn.query_drop("UNLOCK TABLES").await);
        let _ = conn.disconnect().await;
        thawed.map_err(query_error)
    })
}

/// Streams one part of [`split`]: `snapshot` is its place in the freeze
/// (`None`: an ordinary scan).
pub(super) async fn scan_part(
    endpoint: &Arc<Endpoint>,
    timeout: Duration,
    description: &TableDescription,
    part: &ScanRequest,
    snapshot: Option<&str>,
) -> Result<SendableRecordBatchStream, SourceError> {
    let mut conn = session(endpoint, timeout).await?;
    if let Some(token) = snapshot
        && let Err(error) = join_freeze(&mut conn, description, token).await
    {
        let _ = conn.disconnect().await;
        return Err(error);
    }
    scan_on(conn, endpoint, timeout, description, part).await
}

/// Opens `conn`'s snapshot inside the freeze `token` names and takes the
/// part's lock; refuses if the freeze has ended.
async fn join_freeze(conn: &mut Conn, description: &TableDescription, token: &str) -> Result<(), SourceError> {
    let freeze = freeze::freeze_of(token)?;
    for statement in [
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    ] {
        conn.query_drop(statement).await.map_err(query_error)?;
    }
    let frozen: Option<Option<u64>> = conn
        .exec_first("SELECT IS_USED_LOCK(?)", (freeze,))
        .await
        .map_err(query_error)?;
    if frozen.flatten().is_none() {
        return Err(freeze::ended(description));
    }
    let joined: Option<Option<u64>> = conn
        .exec_first("SELECT GET_LOCK(?, 0)", (token,))
        .await
        .map_err(query_error)?;
    if joined.flatten() != Some(1) {
        return Err(freeze::taken(token, description));
    }
    Ok(())
}

/// Streams `request` as up to `parts` range scans over column `split`,
/// all in one snapshot (a [`split`] whose parts are read here).
pub(super) async fn scan(
    endpoint: &Arc<Endpoint>,
    timeout: Duration,
    description: &TableDescription,
    request: &ScanRequest,
    split_column: usize,
    parts: usize,
) -> Result<SendableRecordBatchStream, SourceError> {
    let planned = split(endpoint, timeout, description, request, split_column, parts).await?;
    debug!(table = %description.table, ranges = planned.parts.len(), "MySQL parallel scan");
    read_here(planned, |part| async move {
        scan_part(endpoint, timeout, description, &part.request, part.snapshot.as_deref()).await
    })
    .await
}
