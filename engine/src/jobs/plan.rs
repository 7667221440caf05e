//! The window a run reads and the scan that reads it, planned from the job,
//! its watermark and the commit guard. Runs and `EXPLAIN ETL JOB` plan
//! through the same function, so EXPLAIN shows exactly what a run would do.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::scalar::ScalarValue;
use sluice_catalog::{JobRecord, LoadType, Lookback};

use super::define::JobColumns;
use super::file_mark::{self, FileOrigin};
use super::{JobManager, guard, schema_changes, window};
use crate::contract::{Dialect, ScanRequest, Source, TableRef, WriteMode};
use crate::error::EngineError;

/// What the next run of a job reads.
pub(super) struct RunPlan {
    pub columns: JobColumns,
    pub mode: WriteMode,
    /// The cursor's name and position among the loaded columns.
    pub cursor: Option<(String, usize)>,
    /// The exclusive lower bound: the watermark, or the job's start.
    pub low: Option<ScalarValue>,
    /// Where reading starts: `low` moved back by the lookback window.
    pub read_from: Option<ScalarValue>,
    /// The commit guard's decision, for cursors.
    pub guard: Option<guard::Decision>,
    /// Where the scan has each row's file, when the cursor is a file
    /// source's `_modified_at` (see [`file_mark`]).
    pub files: Option<FileOrigin>,
    /// The scan: the loaded columns and the window as a source filter.
    pub request: ScanRequest,
}

impl RunPlan {
    /// The job's `LOOKBACK ... DEDUPE ON`, if any.
    pub fn lookback(job: &JobRecord) -> Option<&Lookback> {
        match &job.load {
            LoadType::Incremental {
                lookback: Some(lookback),
                ..
            } => Some(lookback),
            _ => None,
        }
    }

    /// The guard's cap, when one applies.
    pub fn cap(&self) -> Option<&ScalarValue> {
        self.guard.as_ref().and_then(|d| d.cap.as_ref())
    }
}

impl JobManager {
    /// The job's source and its loaded columns, resolved against the
    /// source's table as it is now.
    pub(super) async fn source_columns(&self, job: &JobRecord) -> Result<(Arc<dyn Source>, JobColumns), EngineError> {
        let source = self
            .connections
            .source_with(&job.source.connection, &job.source_settings)?;
        let table = TableRef {
            schema: job.source.schema.clone(),
            name: job.source.table.clone(),
        };
        let description = self
            .connections
            .describe_with(&job.source.connection, &table, &job.source_settings)
            .await?;
        let columns = JobColumns::resolve(&schema_changes::without_dropped(job, &description), description)?;
        Ok((source, columns))
    }
}

/// Plans the next run of `job` over `columns` of `source`, as if it started
/// at `now`; asks the source for open transactions when the guard applies.
pub(super) async fn plan(
    job: &JobRecord,
    watermark: Option<&str>,
    source: &dyn Source,
    columns: JobColumns,
    now: DateTime<Utc>,
) -> Result<RunPlan, EngineError> {
    let (mode, cursor, low) = match &job.load {
        LoadType::Snapshot => (WriteMode::Replace, None, None),
        LoadType::Cdc { .. } => {
            return Err(EngineError::InvalidJob {
                message: format!("ETL job \"{}\" captures changes: it has no scan plan", job.name),
            });
        }
        LoadType::Incremental { cursor, start, .. } => {
            let position = columns.position(cursor).ok_or_else(|| EngineError::InvalidJob {
                message: format!("the cursor column \"{cursor}\" is no longer loaded"),
            })?;
            let cursor_type = columns.description.columns[columns.indexes[position]]
                .mapping
                .arrow
                .clone();
            let (mode, low) = match watermark {
                Some(mark) => (WriteMode::Append, Some(window::parse(mark, &cursor_type)?)),
                // A job re-based by hand loads its start window again in
                // place of the rows it had.
                None if job.reload => (WriteMode::Replace, window::first_low(start, &cursor_type, now)?),
                None => (WriteMode::Append, window::first_low(start, &cursor_type, now)?),
            };
            (mode, Some((cursor.clone(), position)), low)
        }
    };
    // A lookback run starts reading that much before the watermark.
    let read_from = match (&low, RunPlan::lookback(job)) {
        (Some(low), Some(lookback)) => Some(window::minus(low, &lookback.window)?),
        _ => low.clone(),
    };
    // The commit guard's cap, read before the scan takes its snapshot.
    let guard = match &cursor {
        Some((_, position)) => Some(guard::read(job, source, columns.schema.field(*position).data_type()).await?),
        None => None,
    };
    // Files by `_modified_at` without a lookback: the watermark names the
    // files read at its time, and the scan reads each row's file.
    let file_column = match (&cursor, RunPlan::lookback(job)) {
        (Some((_, position)), None) => FileOrigin::column(&columns, *position),
        _ => None,
    };
    let mut scanned = columns.indexes.clone();
    let files = file_column.map(|column| match scanned.iter().position(|&i| i == column) {
        Some(position) => FileOrigin {
            position,
            appended: false,
        },
        None => {
            scanned.push(column);
            FileOrigin {
                position: scanned.len() - 1,
                appended: true,
            }
        }
    });
    let filter = match &cursor {
        Some((name, _)) => {
            let cap = guard.as_ref().and_then(|d| d.cap.as_ref());
            let dialect = source.dialect();
            match (&files, &low, watermark) {
                (Some(_), Some(low), Some(mark)) => {
                    let lower = file_mark::lower_bound(dialect, name, low, &file_mark::files(mark)?)?;
                    let upper = window_filter(dialect, name, [("<=", cap)])?;
                    Some(upper.map_or_else(|| lower.clone(), |upper| format!("{lower} AND {upper}")))
                }
                _ => window_filter(dialect, name, [(">", read_from.as_ref()), ("<=", cap)])?,
            }
        }
        None => None,
    };
    let request = ScanRequest {
        batch_rows: Some(job.batch_rows as usize),
        columns: scanned,
        filter,
        limit: None,
        offset: 0,
        segment: None,
    };
    Ok(RunPlan {
        columns,
        mode,
        cursor,
        low,
        read_from,
        guard,
        files,
        request,
    })
}

/// `cursor op value AND ...` in `dialect` for the bounds that are given;
/// `None` when none is.
pub(super) fn window_filter<'a>(
    dialect: &dyn Dialect,
    cursor: &str,
    bounds: impl IntoIterator<Item = (&'static str, Option<&'a ScalarValue>)>,
) -> Result<Option<String>, EngineError> {
    let conditions = bounds
        .into_iter()
        .filter_map(|(op, value)| value.map(|v| (op, v)))
        .map(|(op, value)| {
            dialect
                .bound_condition(&dialect.quote_ident(cursor), op, value)
                .ok_or_else(|| EngineError::InvalidJob {
                    message: format!("cannot write the cursor value {value} as a literal for the source"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((!conditions.is_empty()).then(|| conditions.join(" AND ")))
}
