//! Parallel scans (`WITH (parallelism = n)`): one coordinating session opens
//! a repeatable-read transaction, exports its snapshot and reads the split
//! column's range under the scan's filter; `n` sessions import that snapshot
//! and each `COPY`s one key range, so together they read exactly the rows a
//! single scan would. Their batches are merged as they arrive, each stream
//! decoded in its own task. A CDC first load reads the same way in the
//! snapshot its replication slot exported (`scan_in_snapshot`). A cluster
//! reads the same ranges in other processes (`split`): the coordinating
//! session stays open, holding the snapshot, while they import it.

use datafusion::execution::SendableRecordBatchStream;
use tracing::debug;

use super::PgConnection;
use super::dialect::DIALECT;
use super::source::{SCAN_SESSION, copy, prepare, query};
use super::{Endpoint, query_error};
use crate::contract::{ScanPart, ScanRequest, SourceError, SplitScan, TableDescription};
use crate::sources::key_ranges::{merge, part_request, ranges, split_parts};

/// The queries the range streams of a parallel scan would run now (the
/// split column's range read outside a snapshot), for EXPLAIN.
pub(super) async fn queries(
    endpoint: &Endpoint,
    description: &TableDescription,
    request: &ScanRequest,
    split: usize,
    parts: usize,
) -> Result<Vec<String>, SourceError> {
    let (column, table, filter) = split_parts(&DIALECT, description, request, split)?;
    let connection = endpoint.connect().await?;
    let row = async {
        connection.client.batch_execute(SCAN_SESSION).await?;
        connection
            .client
            .query_one(
                &format!("SELECT min({column})::int8, max({column})::int8 FROM {table}{filter}"),
                &[],
            )
            .await
    }
    .await;
    connection.close();
    let row = row.map_err(query_error)?;
    let conditions = match (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1)) {
        (Some(min), Some(max)) => ranges(&column, min, max, parts),
        _ => vec![None],
    };
    Ok(conditions
        .into_iter()
        .map(|condition| query(description, &part_request(request, condition)))
        .collect())
}

/// Streams `request` as up to `parts` range scans over column `split`.
pub(super) async fn scan(
    endpoint: &Endpoint,
    description: &TableDescription,
    request: &ScanRequest,
    split: usize,
    parts: usize,
) -> Result<SendableRecordBatchStream, SourceError> {
    scan_in_snapshot(endpoint, None, description, request, Some((split, parts))).await
}

/// The set-up of a session reading in exported snapshot `snapshot`.
fn snapshot_setup(snapshot: &str) -> String {
    format!(
        "{SCAN_SESSION}; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
        snapshot.replace('\'', "''")
    )
}

/// Streams `request` in one snapshot: `snapshot` when given (one a
/// replication slot exported), else one the coordinating session exports.
/// With `split = Some((column, parts))` up to `parts` range scans over that
/// column; without, one `COPY`. Returns once every stream's `COPY` has
/// started, i.e. imported the snapshot: its exporter may end then.
pub(super) async fn scan_in_snapshot(
    endpoint: &Endpoint,
    snapshot: Option<&str>,
    description: &TableDescription,
    request: &ScanRequest,
    split: Option<(usize, usize)>,
) -> Result<SendableRecordBatchStream, SourceError> {
    let Some((split, parts)) = split else {
        let setup = snapshot.map_or_else(|| SCAN_SESSION.to_owned(), snapshot_setup);
        return copy(endpoint.connect().await?, &setup, prepare(description, request)?).await;
    };
    let (coordinator, snapshot, conditions) =
        export_ranges(endpoint, snapshot, description, request, (split, parts)).await?;
    debug!(table = %description.table, ranges = conditions.len(), "PostgreSQL parallel scan");
    let setup = snapshot_setup(&snapshot);
    let mut streams = Vec::with_capacity(conditions.len());
    for condition in conditions {
        let prepared = prepare(description, &part_request(request, condition))?;
        // Every stream has imported the snapshot once its COPY started.
        streams.push(copy(endpoint.connect().await?, &setup, prepared).await?);
    }
    coordinator.close();

    Ok(merge(streams))
}

/// Plans `request` as up to `parts` range requests over column `split` in
/// one exported snapshot, for other processes to read with [`scan_part`];
/// the snapshot stays importable until the returned [`SplitScan`] drops.
pub(super) async fn split(
    endpoint: &Endpoint,
    description: &TableDescription,
    request: &ScanRequest,
    split: usize,
    parts: usize,
) -> Result<SplitScan, SourceError> {
    let (coordinator, snapshot, conditions) =
        export_ranges(endpoint, None, description, request, (split, parts)).await?;
    debug!(table = %description.table, ranges = conditions.len(), %snapshot, "PostgreSQL split scan");
    Ok(SplitScan {
        parts: conditions
            .into_iter()
            .map(|condition| ScanPart {
                request: part_request(request, condition),
                snapshot: Some(snapshot.clone()),
            })
            .collect(),
        hold: Box::new(coordinator),
    })
}

/// Streams one part of [`split`] in its `snapshot`.
pub(super) async fn scan_part(
    endpoint: &Endpoint,
    description: &TableDescription,
    part: &ScanRequest,
    snapshot: Option<&str>,
) -> Result<SendableRecordBatchStream, SourceError> {
    scan_in_snapshot(endpoint, snapshot, description, part, None).await
}

/// Opens the coordinating session in `snapshot` (else a repeatable-read
/// transaction whose snapshot it exports) and splits the split column's
/// range under the scan's filter: the session, the snapshot's name and
/// one condition per range.
async fn export_ranges(
    endpoint: &Endpoint,
    snapshot: Option<&str>,
    description: &TableDescription,
    request: &ScanRequest,
    (split, parts): (usize, usize),
) -> Result<(PgConnection, String, Vec<Option<String>>), SourceError> {
    let (column, table, filter) = split_parts(&DIALECT, description, request, split)?;
    let coordinator = endpoint.connect().await?;
    let (setup, exported) = match snapshot {
        Some(snapshot) => (
            snapshot_setup(snapshot),
            format!("'{}'::text", snapshot.replace('\'', "''")),
        ),
        None => (
            format!("{SCAN_SESSION}; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
            "pg_export_snapshot()".to_owned(),
        ),
    };
    let range = async {
        coordinator.client.batch_execute(&setup).await?;
        coordinator
            .client
            .query_one(
                &format!("SELECT {exported}, min({column})::int8, max({column})::int8 FROM {table}{filter}"),
                &[],
            )
            .await
    }
    .await;
    // Sessions dropped on an early return end with their transactions.
    let row = range.map_err(query_error)?;
    let snapshot: String = row.get(0);
    let conditions = match (row.get::<_, Option<i64>>(1), row.get::<_, Option<i64>>(2)) {
        (Some(min), Some(max)) => ranges(&column, min, max, parts),
        _ => vec![None],
    };
    Ok((coordinator, snapshot, conditions))
}
