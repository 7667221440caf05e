//! Parallel scans (`WITH (parallelism = n)`, a cluster's parts) in one
//! snapshot. SQL Server cannot hand a snapshot to another session, so the
//! table is frozen while the parts open theirs: a coordinating session
//! holds a shared table lock in a transaction (`SELECT ... WITH (TABLOCK,
//! HOLDLOCK)`: writers wait, readers do not), holds an application lock
//! that says so (`sp_getapplock`), and reads the split column's range.
//! Each part then begins a `SNAPSHOT` transaction and reads the table once
//! (its snapshot starts there), checks that the freeze is still held (so
//! its snapshot began inside it and equals every other part's), takes an
//! application lock of its own, and streams one `SELECT` of its range. The
//! coordinator thaws the table as soon as it has seen every part's lock
//! held, or after [`freeze::FREEZE_LIMIT`]; a part that starts later fails
//! with SQLSTATE 40001 (the run retries) instead of reading another
//! snapshot ([`crate::sources::freeze`] holds what MySQL shares). The
//! database must allow snapshot isolation.

use std::time::Duration;

use datafusion::execution::SendableRecordBatchStream;
use futures::future::BoxFuture;
use tiberius::error::Error as TdsError;
use tracing::debug;

use super::dialect::SqlServerDialect;
use super::endpoint::{Session, query_error};
use super::metadata::{integer, rows, text};
use super::source::SqlServerSource;
use crate::contract::{ScanRequest, Source, SourceError, SplitScan, TableDescription};
use crate::sources::freeze;
use crate::sources::key_ranges::{part_request, ranges, split_parts};

/// The longest the coordinator waits for the table lock (for transactions
/// writing the table to end).
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// SQL Server's error for a lock request that timed out.
const LOCK_TIMEOUT: u32 = 1222;
/// ... and for a snapshot transaction in a database that does not allow one.
const SNAPSHOT_NOT_ALLOWED: u32 = 3952;

/// One condition per range of the split column's values now on `client`.
async fn conditions(
    client: &mut Session,
    description: &TableDescription,
    request: &ScanRequest,
    split: usize,
    parts: usize,
) -> Result<Vec<Option<String>>, SourceError> {
    let (column, table, filter) = split_parts(&SqlServerDialect, description, request, split)?;
    let range = rows(
        client,
        &format!("SELECT CAST(MIN({column}) AS bigint), CAST(MAX({column}) AS bigint) FROM {table}{filter}"),
        &[],
    )
    .await?;
    let bound = |i| range.first().and_then(|row| integer(row, i));
    Ok(match (bound(0), bound(1)) {
        (Some(min), Some(max)) => ranges(&column, min, max, parts),
        _ => vec![None],
    })
}

/// The queries the parts of a parallel scan would run now (the split
/// column's range read outside any freeze), for EXPLAIN.
pub(super) async fn queries(
    source: &SqlServerSource,
    description: &TableDescription,
    request: &ScanRequest,
    split: usize,
    parts: usize,
) -> Result<Vec<String>, SourceError> {
    let mut client = source.session().await?;
    let conditions = conditions(&mut client, description, request, split, parts).await;
    drop(client);
    Ok((conditions?.into_iter())
        .map(|condition| source.scan_query(description, &part_request(request, condition)))
        .collect())
}

/// Freezes the table and plans `request` as up to `parts` ranges of
/// column `split`, each to be read by [`scan_part`] in the freeze's
/// snapshot; the freeze ends when every part has opened its snapshot,
/// after [`freeze::FREEZE_LIMIT`], or when the returned [`SplitScan`] drops.
pub(super) async fn split(
    source: &SqlServerSource,
    description: &TableDescription,
    request: &ScanRequest,
    split: usize,
    parts: usize,
) -> Result<SplitScan, SourceError> {
    let mut client = source.session().await?;
    let freeze = freeze::new_name();
    let conditions = async {
        lock_table(&mut client, description).await?;
        if !take_lock(&mut client, &freeze).await? {
            return Err(SourceError::Query {
                code: Some("55P03".into()),
                message: format!("application lock {freeze} is held by another session"),
            });
        }
        conditions(&mut client, description, request, split, parts).await
    }
    .await?;
    debug!(table = %description.table, ranges = conditions.len(), %freeze, "SQL Server table frozen for a split scan");
    Ok(freeze::split(client, freeze, request, conditions, watch, thaw))
}

/// Begins the coordinator's transaction and takes the table's shared lock
/// in it, explaining the wait when it times out.
async fn lock_table(client: &mut Session, description: &TableDescription) -> Result<(), SourceError> {
    let sql = format!(
        "SET LOCK_TIMEOUT {}; BEGIN TRANSACTION; SELECT TOP (1) 1 FROM {} WITH (TABLOCK, HOLDLOCK)",
        LOCK_WAIT.as_millis(),
        SqlServerSource::from(description)
    );
    match run(client, &sql).await {
        Err(TdsError::Server(e)) if e.code() == LOCK_TIMEOUT => Err(SourceError::Query {
            code: Some("55P03".into()),
            message: format!(
                "a parallel read of {} waited {} s for transactions writing the table to end, to lock it for a \
                 moment (SELECT ... WITH (TABLOCK, HOLDLOCK)); try again when they have",
                description.table,
                LOCK_WAIT.as_secs()
            ),
        }),
        other => other.map(drop).map_err(query_error),
    }
}

/// Runs a batch and reads all it returns.
async fn run(client: &mut Session, sql: &str) -> Result<Vec<Vec<tiberius::Row>>, TdsError> {
    client.simple_query(sql).await?.into_results().await
}

/// `name` as a T-SQL Unicode string literal.
fn literal(name: &str) -> String {
    format!("N'{}'", name.replace('\'', "''"))
}

/// Takes the session's exclusive application lock `resource` if no other
/// session holds it; whether it is now held.
async fn take_lock(client: &mut Session, resource: &str) -> Result<bool, SourceError> {
    let resource = literal(resource);
    let sql = format!(
        "EXEC sp_getapplock @Resource = {resource}, @LockMode = 'Exclusive', @LockOwner = 'Session', \
         @LockTimeout = 0; SELECT APPLOCK_MODE('public', {resource}, 'Session')"
    );
    match run(client, &sql).await {
        Ok(results) => {
            let mode = results
                .last()
                .and_then(|rows| rows.first())
                .and_then(|row| text(row, 0));
            Ok(mode.as_deref() == Some("Exclusive"))
        }
        Err(TdsError::Server(e)) if e.code() == LOCK_TIMEOUT => Ok(false),
        Err(error) => Err(query_error(error)),
    }
}

/// For each of `resources`, whether another session holds it.
fn watch<'a>(client: &'a mut Session, resources: &'a [String]) -> BoxFuture<'a, Result<Vec<bool>, SourceError>> {
    Box::pin(async move {
        let tests: Vec<String> = (resources.iter())
            .map(|r| format!("APPLOCK_TEST('public', {}, 'Shared', 'Session')", literal(r)))
            .collect();
        let found = rows(client, &format!("SELECT {}", tests.join(", ")), &[]).await?;
        Ok((0..resources.len())
            .map(|i| found.first().and_then(|row| integer(row, i)) == Some(0))
            .collect())
    })
}

/// Ends the freeze: its application lock first, so that no part starts
/// inside the freeze's name after the table's lock is gone.
fn thaw(mut client: Session, freeze: String) -> BoxFuture<'static, Result<(), SourceError>> {
    Box::pin(async move {
        let thaw = format!(
            "EXEC sp_releaseapplock @Resource = {}, @LockOwner = 'Session'; COMMIT TRANSACTION",
            literal(&freeze)
        );
        let thawed = run(&mut client, &thaw).await.map(drop);
        let _ = client.close().await;
        thawed.map_err(query_error)
    })
}

/// Streams one part of [`split`]: `snapshot` is its place in the freeze
/// (`None`: an ordinary scan).
pub(super) async fn scan_part(
    source: &SqlServerSource,
    description: &TableDescription,
    part: &ScanRequest,
    snapshot: Option<&str>,
) -> Result<SendableRecordBatchStream, SourceError> {
    let reader = source.reader(description, part)?;
    let mut client = source.session().await?;
    if let Some(token) = snapshot {
        join_freeze(&mut client, description, token).await?;
    }
    Ok(reader.stream(client))
}

/// Opens `client`'s snapshot inside the freeze `token` names and takes the
/// part's lock; refuses if the freeze has ended.
async fn join_freeze(client: &mut Session, description: &TableDescription, token: &str) -> Result<(), SourceError> {
    let freeze = freeze::freeze_of(token)?;
    // The snapshot starts at the transaction's first read of data.
    let begin = format!(
        "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; SELECT TOP (1) 1 FROM {}",
        SqlServerSource::from(description)
    );
    match run(client, &begin).await {
        Err(TdsError::Server(e)) if e.code() == SNAPSHOT_NOT_ALLOWED => {
            return Err(SourceError::Query {
                code: Some("55000".into()),
                message: format!(
                    "a parallel read of {} reads every stream in one SNAPSHOT transaction, and the database does not \
                     allow snapshot isolation: ALTER DATABASE ... SET ALLOW_SNAPSHOT_ISOLATION ON, or leave out \
                     parallelism",
                    description.table
                ),
            });
        }
        other => other.map_err(query_error)?,
    };
    if !watch(client, &[freeze.to_owned()]).await?[0] {
        return Err(freeze::ended(description));
    }
    if !take_lock(client, token).await? {
        return Err(freeze::taken(token, description));
    }
    Ok(())
}
