//! One run of a job: plan the window, stream the rows into the destination,
//! commit the destination with the watermark, then record both in the
//! catalog. The watermark moves only after the destination committed.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::{FutureExt, StreamExt, TryStreamExt};
use sluice_catalog::{CdcMode, JobRecord, LoadType, RunRecord, RunStatus, RunTrigger, Watermark};
use tokio::sync::Notify;
use tracing::{Instrument, error, info, info_span, warn};

use super::cluster::Placement;
use super::cluster::coordinate::ClusterExtract;
use super::dedupe::Deduper;
use super::define::JobColumns;
use super::file_mark::Boundary;
use super::plan::{self, RunPlan};
use super::progress::{LiveProgress, LiveRun, RunPhase};
use super::reconcile::INTERRUPTED;
use super::verify::CursorWindow;
use super::{ActiveRun, JobManager, continuous, schema_changes, split, whole_files, window};
use crate::contract::{ScanPiece, WriteMode};
use crate::error::EngineError;
use crate::failpoint;

/// How far a running run has got.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub run_id: u64,
    pub rows: u64,
    pub elapsed: Duration,
}

/// A finished run, as recorded in the catalog.
pub type RunSummary = RunRecord;

/// What a run does.
#[derive(Debug, Clone)]
pub(super) enum Work {
    /// Load the next window (or the snapshot).
    Load,
    /// Load a cursor window again in place of the destination's rows.
    Repair(CursorWindow),
    /// A CDC job's fresh snapshot from a new slot (`RESYNC ETL JOB`).
    Resync(CdcMode),
    /// The WAL guardian's look at an idle CDC job's slot, which it gives
    /// up if it is still past its limit, lost or gone.
    GuardSlot,
}

/// Where a run's record comes from.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// A new run, saved as running now.
    New(RunTrigger),
    /// A run the scheduler queued, which keeps its id.
    Queued(u64),
}

/// Removes a job from the running set when its run ends, however it ends.
pub(crate) struct RunningGuard<'a> {
    manager: &'a JobManager,
    job: String,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.manager
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.job);
    }
}

/// Hands a run to reconciliation (the unsettled set) if its task stops
/// before the run's end was recorded, as when the future is dropped.
struct UnsettledUnlessRecorded<'a> {
    manager: &'a JobManager,
    run_id: u64,
    recorded: bool,
}

impl Drop for UnsettledUnlessRecorded<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.manager
                .unsettled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(self.run_id);
        }
    }
}

impl JobManager {
    /// The run in progress for a job, if any.
    pub fn running_run(&self, job: &str) -> Option<u64> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(job)
            .map(|a| a.run_id)
    }

    /// Progress of every run in progress.
    pub fn live_runs(&self) -> Vec<LiveRun> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|active| active.progress.snapshot(active.run_id))
            .collect()
    }

    /// Asks a running run to stop; it ends `cancelled` with nothing
    /// committed (a continuous job's stream commits the transactions it
    /// holds and ends; the scheduler starts it again unless the job is
    /// paused). A queued run is cancelled before it starts.
    pub fn cancel_run(&self, run_id: u64) -> Result<(), EngineError> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(active) = running.values().find(|a| a.run_id == run_id) {
            active.cancel.notify_one();
            return Ok(());
        }
        drop(running);
        let run = self.catalog().run(run_id)?;
        if run.status == RunStatus::Queued
            && self.end_queued_run(run_id, RunStatus::Cancelled, "cancelled before it started")?
        {
            return Ok(());
        }
        Err(EngineError::RunNotRunning {
            run_id,
            status: self.catalog().run(run_id)?.status.as_str(),
        })
    }

    /// Cancels the running run of `job`, or else its oldest queued run;
    /// returns the run's id.
    pub fn cancel_job(&self, job: &str) -> Result<u64, EngineError> {
        self.catalog().job(job)?;
        if let Some(run_id) = self.running_run(job) {
            self.cancel_run(run_id)?;
            return Ok(run_id);
        }
        let queued = self
            .catalog()
            .runs(Some(job))?
            .into_iter()
            .filter(|r| r.status == RunStatus::Queued)
            .map(|r| r.id);
        for run_id in queued {
            if self.end_queued_run(run_id, RunStatus::Cancelled, "cancelled before it started")? {
                return Ok(run_id);
            }
        }
        Err(EngineError::JobNotRunning { job: job.into() })
    }

    /// Ends a queued run without running it (see
    /// [`Catalog::end_queued_run`](sluice_catalog::Catalog::end_queued_run));
    /// false if it was no longer queued.
    pub(crate) fn end_queued_run(&self, run_id: u64, status: RunStatus, reason: &str) -> Result<bool, EngineError> {
        let Some(run) = self.catalog().end_queued_run(run_id, status, reason)? else {
            return Ok(false);
        };
        self.metrics.run_finished(self.catalog().namespace_name(), &run);
        Ok(true)
    }

    /// Marks `job` as running run `run_id` until the guard is dropped (run
    /// 0: an edit that no run may overlap); refused while it runs.
    pub(super) fn claim(&self, job: &str, run_id: u64) -> Result<(RunningGuard<'_>, ActiveRun), EngineError> {
        self.claim_as(job, run_id, false)
    }

    /// [`claim`](Self::claim), for a continuous job's stream when
    /// `continuous`.
    fn claim_as(&self, job: &str, run_id: u64, continuous: bool) -> Result<(RunningGuard<'_>, ActiveRun), EngineError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = running.get(job) {
            return Err(EngineError::JobRunning {
                job: job.into(),
                run_id: existing.run_id,
            });
        }
        let active = ActiveRun {
            run_id,
            continuous,
            cancel: Arc::new(Notify::new()),
            progress: Arc::new(LiveProgress::new()),
        };
        running.insert(job.into(), active.clone());
        Ok((
            RunningGuard {
                manager: self,
                job: job.into(),
            },
            active,
        ))
    }

    /// Runs a job now and waits for the end. `progress` is called after
    /// every batch.
    pub async fn run_job(
        &self,
        name: &str,
        trigger: RunTrigger,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<RunSummary, EngineError> {
        self.run_as(name, Start::New(trigger), Work::Load, progress).await
    }

    /// Runs `work` on job `name` as a new run started by `trigger`.
    pub(super) async fn run_work(
        &self,
        name: &str,
        trigger: RunTrigger,
        work: Work,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<RunSummary, EngineError> {
        self.run_as(name, Start::New(trigger), work, progress).await
    }

    /// Runs queued run `run_id` of job `name` now (see
    /// [`Catalog::queue_run`](sluice_catalog::Catalog::queue_run)). If the
    /// job is running already the queued run ends `skipped`; one cancelled
    /// while queued is [`EngineError::RunNotQueued`].
    pub async fn run_queued(&self, name: &str, run_id: u64) -> Result<RunSummary, EngineError> {
        self.run_as(name, Start::Queued(run_id), Work::Load, &|_| {}).await
    }

    async fn run_as(
        &self,
        name: &str,
        start: Start,
        work: Work,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<RunSummary, EngineError> {
        let job = self.catalog().job(name)?;
        if let Some(existing) = self.running_run(name) {
            if let Start::Queued(queued) = start {
                let reason = format!("run {existing} of this job was still running");
                self.end_queued_run(queued, RunStatus::Skipped, &reason)?;
            }
            return Err(EngineError::JobRunning {
                job: name.into(),
                run_id: existing,
            });
        }
        if let Err(e) = self.settle_interrupted(name).await {
            if let Start::Queued(queued) = start {
                self.end_queued_run(queued, RunStatus::Failed, &e.to_string())?;
            }
            return Err(e);
        }
        let mut run = match start {
            Start::New(trigger) => self.catalog().start_run(name, trigger)?,
            Start::Queued(run_id) => {
                self.catalog()
                    .start_queued_run(run_id)?
                    .ok_or_else(|| EngineError::RunNotQueued {
                        run_id,
                        status: self.catalog().run(run_id).map_or("gone", |r| r.status.as_str()),
                    })?
            }
        };
        let continuous = matches!(work, Work::Load) && continuous::streams(&job, run.trigger);
        let (guard, active) = match self.claim_as(name, run.id, continuous) {
            Ok(claimed) => claimed,
            Err(e) => {
                run.status = RunStatus::Cancelled;
                run.error = Some(e.to_string());
                run.finished_at = Some(Utc::now());
                self.catalog().finish_run(&run, None)?;
                return Err(e);
            }
        };
        progress(Progress {
            run_id: run.id,
            rows: 0,
            elapsed: Duration::ZERO,
        });
        let run_id = run.id;
        let mut unsettled = UnsettledUnlessRecorded {
            manager: self,
            run_id,
            recorded: false,
        };
        let span = info_span!("etl_run", job = name, run_id);
        let work = async {
            match &work {
                Work::Load => self.execute(&job, &mut run, &active, progress).await,
                Work::Repair(window) => self.repair(&job, &mut run, &active, window).await,
                Work::Resync(mode) => self
                    .execute_cdc(&job, *mode, &mut run, &active, true)
                    .await
                    .map(|()| None),
                Work::GuardSlot => self.guard_idle_slot(&job).await.map(|()| None),
            }
        };
        let result = AssertUnwindSafe(work.instrument(span))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(EngineError::RunPanicked {
                    run_id,
                    message: panic_message(panic.as_ref()),
                })
            });
        run.finished_at = Some(Utc::now());
        if let Some(shipped) = active.progress.shipped() {
            run.bytes_uploaded = Some(shipped.bytes_uploaded);
            run.load_jobs_done = shipped.jobs.map(|jobs| jobs.done);
            run.load_jobs_total = shipped.jobs.map(|jobs| jobs.total);
            run.table_ops = shipped.jobs.map(|_| shipped.table_ops);
        }
        let outcome = match result {
            // The panic may have come after the destination committed:
            // settle it as a crash would be, from what the destination says.
            Err(panicked @ EngineError::RunPanicked { .. }) => {
                error!(job = name, run_id, error = %panicked, "run panicked");
                let reason = format!("interrupted: {panicked}");
                if let Some(settled) = self.settle_abandoned(run_id, &reason).await {
                    run = settled;
                }
                Err(panicked)
            }
            result => match self.record_end(name, &mut run, &result) {
                Ok(()) => result.map(|_| run.clone()),
                Err(write) => {
                    warn!(job = name, run_id, error = %write, "could not record how the run ended; settling it as after a crash");
                    let reason = result
                        .as_ref()
                        .err()
                        .map_or(INTERRUPTED.to_owned(), ToString::to_string);
                    match self.settle_abandoned(run_id, &reason).await {
                        Some(settled) => {
                            run = settled;
                            result.map(|_| run.clone())
                        }
                        None => Err(write),
                    }
                }
            },
        };
        unsettled.recorded = true;
        if run.table_ops.is_some_and(|ops| ops > 0) {
            self.warn_of_table_ops(&job);
        }
        drop(guard);
        // Off the runtime's threads: trimming a large heap takes a moment.
        tokio::task::spawn_blocking(crate::memory::release_freed);
        if let Some(alerts) = self.alerts() {
            alerts.run_ended(&run);
        }
        // A stream counted its rows and bytes as it committed them.
        let counted = match active.continuous {
            true => RunRecord {
                rows: 0,
                bytes: 0,
                ..run.clone()
            },
            false => run.clone(),
        };
        self.metrics.run_finished(self.catalog().namespace_name(), &counted);
        self.prune_runs(name);
        self.notify_run_ended(name);
        outcome
    }

    /// Logs a warning when the job's destination table has spent 80 % of
    /// its daily table operations.
    fn warn_of_table_ops(&self, job: &JobRecord) {
        match super::table_ops_today(self.catalog(), job, Utc::now()) {
            Ok(Some(ops)) => {
                if let Some(warning) = super::table_ops_warning(job, ops) {
                    warn!(job = %job.name, spent = ops.spent, "{warning}");
                }
            }
            Ok(None) => {}
            Err(e) => warn!(job = %job.name, error = %e, "could not read the table operations spent today"),
        }
    }

    /// Records how a run ended, with its watermark when it succeeded; an
    /// error is the failed catalog write.
    fn record_end(
        &self,
        name: &str,
        run: &mut RunRecord,
        result: &Result<Option<Watermark>, EngineError>,
    ) -> Result<(), EngineError> {
        match result {
            Ok(watermark) => {
                run.status = RunStatus::Succeeded;
                failpoint::hit("catalog_finish_run")?;
                self.catalog().finish_run(run, watermark.as_ref())?;
                info!(
                    job = name,
                    run_id = run.id,
                    rows = run.rows,
                    bytes = run.bytes,
                    "run succeeded"
                );
            }
            Err(e) => {
                run.status = if matches!(e, EngineError::Cancelled { .. }) {
                    RunStatus::Cancelled
                } else {
                    RunStatus::Failed
                };
                run.error = Some(e.to_string());
                run.sqlstate = e.sqlstate();
                failpoint::hit("catalog_finish_run")?;
                self.catalog().finish_run(run, None)?;
                warn!(job = name, run_id = run.id, error = %e, "run failed");
            }
        }
        Ok(())
    }

    /// Moves the rows; returns the watermark to record with the run.
    async fn execute(
        &self,
        job: &JobRecord,
        run: &mut RunRecord,
        active: &ActiveRun,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Option<Watermark>, EngineError> {
        failpoint::hit("run_start")?;
        if let LoadType::Cdc { mode } = job.load {
            // The destination holds the position: no watermark to record.
            self.execute_cdc(job, mode, run, active, false).await?;
            return Ok(None);
        }
        let started = Instant::now();
        let cancel = &active.cancel;
        let live = &active.progress;
        // Until data moves, a source may wait (a locked table); a cancel
        // does not wait with it.
        let (source, columns) = unless_cancelled(cancel, run.id, self.source_columns(job)).await?;
        // Before anything moves: a change the job does not follow fails here.
        let evolution = schema_changes::compare(job, &columns)?;
        if job.load == LoadType::Snapshot {
            live.expect_rows(columns.description.estimated_rows.and_then(|n| u64::try_from(n).ok()));
        }

        // Plan: fix the lower bound and save it before any data moves.
        let watermark = self.catalog().watermark(&job.name)?.map(|mark| mark.value);
        let plan = unless_cancelled(
            cancel,
            run.id,
            plan::plan(job, watermark.as_deref(), &*source, columns, run.started_at),
        )
        .await?;
        if let Some(decision) = &plan.guard {
            run.guard_cap = decision.cap.as_ref().map(window::text);
            run.guard_reason = Some(decision.reason.clone());
            if let Some(warning) = &decision.warning {
                warn!(job = %job.name, run_id = run.id, "{warning}");
            }
            run.guard_warning = decision.warning.clone();
        }
        let lookback = RunPlan::lookback(job);
        let RunPlan {
            columns,
            mode,
            cursor,
            low,
            read_from,
            files,
            request,
            ..
        } = plan;
        let mut boundary = match files {
            Some(_) => Some(Boundary::new(low.clone(), watermark.as_deref())?),
            None => None,
        };
        run.watermark_from = low.as_ref().map(window::text);
        self.catalog().update_run(run)?;

        let destination = self.destination(job.destination.connection.as_deref())?;
        schema_changes::apply(
            self.catalog(),
            job,
            (run.id, 0),
            destination.as_ref(),
            &evolution,
            &evolution.target,
        )
        .await?;
        let mut transaction = destination.begin(&job.destination.table, run.id, mode).await?;
        live.track(transaction.shipping());
        // Keys read after `begin`: a load committed in between makes this
        // run's commit fail, so they are those of the version it builds on.
        // A load that replaces the table's rows keeps none of them: nothing
        // to skip.
        let mut deduper = match (lookback, &cursor) {
            (Some(lookback), Some((cursor, _))) if mode == WriteMode::Append => {
                let mut deduper = Deduper::new(&columns.schema, &lookback.dedupe_on)?;
                deduper
                    .remember(
                        destination
                            .loaded_keys(&job.destination.table, &lookback.dedupe_on, cursor, read_from.as_ref())
                            .await?,
                    )
                    .await?;
                Some(deduper)
            }
            _ => None,
        };
        let cursor_position = cursor.as_ref().map(|c| c.1);
        let whole = whole_files::schema(job, &columns, &request, &evolution, transaction.as_ref());
        let splits = split::split_column(&columns.description, cursor.as_ref().map(|c| c.0.as_str())).is_ok();
        let server_only = Self::server_only(deduper.is_some());
        let shared = transaction.shared_target(&evolution.target);
        let placed = match self.placement(job, &*source, shared.is_some(), splits, server_only)? {
            Placement::Cluster => shared,
            Placement::Local(reason) => {
                if let Some(reason) = reason {
                    info!(job = %job.name, run_id = run.id, "runs on this server: {reason}");
                }
                None
            }
        };
        live.set_phase(RunPhase::Extracting);
        let copied = async {
            if let Some(target) = placed {
                let plan = ClusterExtract {
                    job,
                    source: &*source,
                    columns: &columns,
                    request: &request,
                    cursor: cursor.as_ref(),
                    files,
                    evolution: &evolution,
                };
                let extracted = self
                    .extract_on_cluster(plan, run, target, transaction.as_mut(), live, cancel)
                    .await?;
                if let Some(boundary) = &mut boundary {
                    boundary.absorb(extracted.high.clone(), extracted.high_files);
                }
                run.rows = extracted.rows;
                progress(Progress {
                    run_id: run.id,
                    rows: run.rows,
                    elapsed: started.elapsed(),
                });
                return Ok(extracted.high);
            }
            let open = async {
                let scan = match job.parallelism.filter(|&n| n > 1) {
                    Some(parts) if source.scans_in_segments() => {
                        source
                            .scan_segments(&columns.description, &request, parts as usize)
                            .await
                    }
                    Some(parts) => {
                        let split = split::split_column(&columns.description, cursor.as_ref().map(|c| c.0.as_str()))?;
                        source
                            .scan_parallel(&columns.description, &request, split, parts as usize)
                            .await
                    }
                    None => {
                        if let Some(whole) = &whole {
                            match source.scan_pieces(&columns.description, &request, whole).await {
                                Ok(Some(pieces)) => return Ok(Ok(pieces)),
                                Ok(None) => {}
                                Err(e) => return Ok(Err(e)),
                            }
                        }
                        source.scan(&columns.description, &request).await
                    }
                };
                Ok(scan.map(|batches| batches.map_ok(ScanPiece::Rows).boxed()))
            };
            let scan = unless_cancelled(cancel, run.id, open).await?;
            let mut stream = scan.map_err(|error| EngineError::Source {
                connection: job.source.connection.clone(),
                error,
            })?;
            let mut high = None;
            loop {
                let piece = tokio::select! {
                    piece = stream.next() => piece,
                    () = cancel.notified() => return Err(EngineError::Cancelled { run_id: run.id }),
                };
                let Some(piece) = piece else { break };
                let mut batch = match piece.map_err(|e| EngineError::from_scan(&job.source.connection, e))? {
                    ScanPiece::Rows(batch) => batch,
                    ScanPiece::File(file) => {
                        live.add_bytes_read(file.meta.size);
                        live.set_files(source.files_read());
                        run.rows += file.rows;
                        live.set_rows(run.rows);
                        transaction.copy_file(file).await?;
                        progress(Progress {
                            run_id: run.id,
                            rows: run.rows,
                            elapsed: started.elapsed(),
                        });
                        continue;
                    }
                };
                if let (Some(files), Some(boundary), Some(position)) = (files, &mut boundary, cursor_position) {
                    boundary.observe(batch.column(position), batch.column(files.position))?;
                    batch = files.strip(batch);
                }
                let batch = conform(batch, &columns)?;
                live.add_bytes_read(batch.get_array_memory_size() as u64);
                live.set_files(source.files_read());
                if let Some(position) = cursor_position {
                    high = window::greater(high, window::column_max(batch.column(position)));
                }
                let batch = match &mut deduper {
                    Some(deduper) => deduper.retain_new(batch)?,
                    None => batch,
                };
                if batch.num_rows() == 0 {
                    continue;
                }
                run.rows += batch.num_rows() as u64;
                live.set_rows(run.rows);
                transaction.write(evolution.arrange(batch)?).await?;
                progress(Progress {
                    run_id: run.id,
                    rows: run.rows,
                    elapsed: started.elapsed(),
                });
            }
            live.set_files(source.files_read());
            Ok::<_, EngineError>(high)
        }
        .await;
        let high = match copied {
            Ok(high) => high,
            Err(e) => {
                if let Err(abort) = transaction.abort().await {
                    warn!(error = %abort, "could not discard the partial load");
                }
                return Err(e);
            }
        };
        if let Some(deduper) = &deduper {
            info!(
                skipped = deduper.skipped,
                "rows re-read within the lookback window were already loaded"
            );
        }
        // The window's upper bound: the largest cursor value read, or the
        // lower bound when no rows arrived.
        let reached = window::greater(low, high);
        run.watermark_to = match &boundary {
            Some(boundary) => boundary.watermark(),
            None => reached.as_ref().map(window::text),
        };
        self.catalog().update_run(run)?;
        live.set_phase(RunPhase::Committing);
        let report = transaction.commit(run.watermark_to.clone()).await?;
        failpoint::hit("after_destination_commit")?;
        run.bytes = report.bytes;
        Ok(run
            .watermark_to
            .clone()
            .filter(|_| cursor.is_some())
            .map(|value| Watermark {
                job: job.name.clone(),
                value,
                run_id: run.id,
                updated_at: Utc::now(),
            }))
    }
}

/// The message a panic carried, when it is text.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Casts a source batch to the job's destination schema (type overrides).
pub(super) fn conform(batch: RecordBatch, columns: &JobColumns) -> Result<RecordBatch, EngineError> {
    conform_to(batch, &columns.schema)
}

/// Casts a source batch to `schema`, column by column.
pub(super) fn conform_to(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, EngineError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let arrays = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(array, field)| {
            if array.data_type() == field.data_type() {
                Ok(array.clone())
            } else {
                crate::type_mapping::interval::cast_value(array, field.data_type(), field.name()).map_err(|e| {
                    EngineError::Extract {
                        message: format!(
                            "column \"{}\" cannot be converted to {}: {e}",
                            field.name(),
                            field.data_type()
                        ),
                    }
                })
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), arrays).map_err(|e| EngineError::Extract { message: e.to_string() })
}

#[cfg(test)]
impl JobManager {
    /// Marks `job` as running (as run 0) until the guard is dropped.
    pub(crate) fn hold_running(&self, job: &str) -> RunningGuard<'_> {
        self.claim(job, 0).expect("the job is not running").0
    }
}

/// `work`, or [`EngineError::Cancelled`] as soon as the run is cancelled.
async fn unless_cancelled<T>(
    cancel: &Notify,
    run_id: u64,
    work: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    tokio::select! {
        result = work => result,
        () = cancel.notified() => Err(EngineError::Cancelled { run_id }),
    }
}
