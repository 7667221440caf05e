//! `REPAIR ETL JOB name FROM 'a' TO 'b'`: the rows of the cursor window
//! `[a, b)` extracted again and put in place of the destination's rows of
//! that window in one commit (the warehouse: a new version of the table;
//! BigQuery: one multi-statement transaction). A repair is a run of the job (trigger
//! `repair`): it never overlaps another run of the job, and it leaves the
//! watermark where it is (rows past the watermark stay for the next run).

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use sluice_catalog::{LoadType, RunRecord, RunTrigger, Watermark};
use tokio::sync::Notify;

use super::plan::window_filter;
use super::runner::{Progress, RunSummary, Work, conform};
use super::verify::{CursorWindow, source_type};
use super::{ActiveRun, JobManager, window};
use crate::contract::{LoadTransaction, ScanRequest, WriteMode};
use crate::error::EngineError;

impl JobManager {
    /// Repairs window `[from, to)` of job `name`'s cursor (see the module
    /// documentation); fails with [`EngineError::JobRunning`] while the job
    /// runs.
    pub async fn repair_job(
        &self,
        name: &str,
        from: String,
        to: String,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<RunSummary, EngineError> {
        let job = self.catalog().job(name)?;
        if job.load == LoadType::Snapshot {
            return Err(EngineError::OperationNotSupported {
                operation: "REPAIR",
                job: name.to_owned(),
                reason: "a SNAPSHOT job replaces its whole table on every run; RUN ETL JOB instead".into(),
            });
        }
        if self.catalog().watermark(name)?.is_none() {
            return Err(EngineError::NothingLoaded { job: name.to_owned() });
        }
        let window = CursorWindow {
            from: Some(from),
            to: Some(to),
        };
        self.run_work(name, RunTrigger::Repair, Work::Repair(window), progress)
            .await
    }

    /// The body of a repair run; returns no watermark (it does not move).
    pub(super) async fn repair(
        &self,
        job: &sluice_catalog::JobRecord,
        run: &mut RunRecord,
        active: &ActiveRun,
        within: &CursorWindow,
    ) -> Result<Option<Watermark>, EngineError> {
        let (source, columns) = self.source_columns(job).await?;
        let loaded = self.loaded(job, &columns)?;
        let mark = self
            .catalog()
            .watermark(&job.name)?
            .ok_or_else(|| EngineError::NothingLoaded { job: job.name.clone() })?;
        let Some(cursor) = loaded else {
            return Err(EngineError::NothingLoaded { job: job.name.clone() });
        };
        let bound = |text: &Option<String>, data_type| window::parse(text.as_deref().unwrap_or_default(), data_type);
        let cursor_type = source_type(&columns, cursor.position);
        let (from, to) = (bound(&within.from, cursor_type)?, bound(&within.to, cursor_type)?);
        if from >= to {
            return Err(EngineError::InvalidJob {
                message: format!(
                    "REPAIR ETL JOB {}: FROM '{}' must come before TO '{}'",
                    job.name,
                    window::text(&from),
                    window::text(&to)
                ),
            });
        }
        // Rows past the watermark are the next run's.
        let filter = window_filter(
            source.dialect(),
            &cursor.name,
            [(">=", Some(&from)), ("<", Some(&to)), ("<=", Some(&cursor.upper))],
        )?;
        run.watermark_from = Some(window::text(&from));
        run.watermark_to = Some(window::text(&to));
        self.catalog().update_run(run)?;

        let destination = self.destination(job.destination.connection.as_deref())?;
        let loaded_type = columns.schema.field(cursor.position).data_type();
        let (kept_from, kept_to) = (
            window::parse(&window::text(&from), loaded_type)?,
            window::parse(&window::text(&to), loaded_type)?,
        );
        let table = &job.destination.table;
        // A destination that replaces a window in place does it at commit;
        // any other gets the rows outside the window, of the version this
        // load replaces (the job's runs are the table's only writers, and
        // this is one), and the window, as a new version of the table.
        let (mut transaction, kept) = match destination
            .begin_window_replace(table, run.id, &cursor.name, &kept_from, &kept_to)
            .await?
        {
            Some(transaction) => (transaction, None),
            None => {
                let kept = destination
                    .rows_outside(table, &cursor.name, &kept_from, &kept_to)
                    .await?;
                (destination.begin(table, run.id, WriteMode::Replace).await?, Some(kept))
            }
        };
        active.progress.track(transaction.shipping());
        let copied = async {
            if let Some(kept) = kept {
                copy(kept, &mut *transaction, &active.cancel, run.id, Ok).await?;
            }
            let request = ScanRequest {
                batch_rows: Some(job.batch_rows as usize),
                columns: columns.indexes.clone(),
                filter,
                limit: None,
                offset: 0,
                segment: None,
            };
            let scan = source
                .scan(&columns.description, &request)
                .await
                .map_err(|error| EngineError::Source {
                    connection: job.source.connection.clone(),
                    error,
                })?;
            copy(scan, &mut *transaction, &active.cancel, run.id, |batch| {
                conform(batch, &columns)
            })
            .await
        }
        .await;
        match copied {
            Ok(rows) => {
                run.rows = rows;
                active.progress.set_rows(rows);
            }
            Err(e) => {
                if let Err(abort) = transaction.abort().await {
                    tracing::warn!(error = %abort, "could not discard the partial repair");
                }
                return Err(e);
            }
        }
        // The destination keeps recording the job's watermark, unmoved.
        let report = transaction.commit(Some(mark.value)).await?;
        crate::failpoint::hit("after_repair_commit")?;
        run.bytes = report.bytes;
        Ok(None)
    }
}

/// Writes every batch of `stream`, shaped by `shape`, into `transaction`;
/// returns the rows written. Stops when `cancel` is signalled.
async fn copy(
    mut stream: SendableRecordBatchStream,
    transaction: &mut dyn LoadTransaction,
    cancel: &Notify,
    run_id: u64,
    shape: impl Fn(RecordBatch) -> Result<RecordBatch, EngineError>,
) -> Result<u64, EngineError> {
    let mut rows = 0;
    loop {
        let batch = tokio::select! {
            batch = stream.next() => batch,
            () = cancel.notified() => return Err(EngineError::Cancelled { run_id }),
        };
        let Some(batch) = batch else { return Ok(rows) };
        let batch = shape(batch.map_err(|e| EngineError::Extract { message: e.to_string() })?)?;
        rows += batch.num_rows() as u64;
        transaction.write(batch).await?;
    }
}
