//! A CDC run's pass over the change log (docs/cdc.md): it applies whole
//! transactions in micro-batches, each committed at the destination with
//! its position and only then confirmed to the source.
//!
//! - A **scheduled or manual run** drains what was committed when it began:
//!   it writes a marker into the log and ends when the marker arrives.
//! - A **continuous stream** has no end: every `flush_interval` it writes a
//!   beat marker; when one arrives, every transaction committed before it
//!   is committed at the destination, which is how the stream knows its lag
//!   (and, on an idle source, lets the slot move on). A stop commits the
//!   complete transactions it holds and ends the run. At most once a
//!   minute, after a beat, it measures the log its slot holds back, and the
//!   WAL guardian may give the slot up: the run then fails, the job needs
//!   a resync.
//!
//! A batch commits at the first transaction end after `flush_rows` change
//! rows, or once its oldest complete transaction has waited
//! `flush_interval`. A transaction the destination already holds is
//! skipped, so a crash anywhere re-delivers from there without duplicates.

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use sluice_catalog::{CdcState, JobRecord, RunRecord};
use tokio::time::Instant;
use tracing::{info, warn};

use super::ActiveRun;
use super::cdc::capture_error;
use super::cdc_schema::by_name;
use super::wal_guardian;
use crate::contract::{
    Capture, CdcError, ChangeEvent, ChangeSource, ChangeSpec, ChangeStream, Destination, LoadTransaction, Position,
};
use crate::error::EngineError;
use crate::failpoint;
use crate::metrics::EngineMetrics;

/// What a drain works with.
pub(super) struct Drain<'a> {
    pub job: &'a JobRecord,
    pub capture: &'a Capture,
    pub changes: &'a dyn ChangeSource,
    pub destination: &'a dyn Destination,
    pub spec: &'a ChangeSpec,
    /// The change rows the destination takes.
    pub rows: &'a SchemaRef,
    pub active: &'a ActiveRun,
    pub catalog: &'a sluice_catalog::Catalog,
    pub metrics: &'a EngineMetrics,
}

/// How a drain ended.
pub(super) struct Drained {
    /// The position the destination holds.
    pub committed: Position,
    /// When the destination last held everything the source had committed
    /// (the drain's marker, or a stream's last beat), if known.
    pub caught_up_at: Option<DateTime<Utc>>,
    /// The stream met a newer definition of the table (what changed)
    /// and stopped before it: follow it and drain on from `committed`.
    pub schema_changed: Option<String>,
}

/// Seconds from `from` to `to`, never negative.
pub(super) fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

/// A beat marker written and not yet arrived.
struct Beat {
    prefix: String,
    written_at: DateTime<Utc>,
}

/// Why the event loop returned.
enum Ended {
    /// The drain's marker arrived, or a continuous stream was stopped.
    Done,
    /// The WAL guardian gives the slot up, for this reason.
    GiveUp(String),
    /// The table's definition changed (what changed): the transaction
    /// that uses it is not applied.
    SchemaChanged(String),
}

/// What woke the drain.
enum Wake {
    Event(Result<Option<ChangeEvent>, CdcError>),
    Timer,
    Stop,
}

impl Drain<'_> {
    /// Applies the transactions committed after `from`: up to a marker
    /// written now, or, for a continuous stream, until it is stopped.
    pub(super) async fn run(
        &self,
        state: &mut CdcState,
        from: Position,
        run: &mut RunRecord,
    ) -> Result<Drained, EngineError> {
        let failed = capture_error(self.job);
        let run_id = run.id;
        let continuous = self.active.continuous;
        let cancel = &self.active.cancel;
        let opened = async {
            let stream = self.changes.stream(self.capture, state, &from).await?;
            if !continuous {
                self.changes.mark(&drain_marker(run.id)).await?;
            }
            Ok::<_, CdcError>(stream)
        };
        let started_at = Utc::now();
        let mut stream = tokio::select! {
            stream = opened => match stream {
                Ok(stream) => stream,
                // The source cannot stream from the job's position (a
                // MySQL/MariaDB GTID state it does not hold).
                Err(CdcError::NeedsResync { reason, .. }) => {
                    return Err(wal_guardian::give_up(self.job, self.changes, self.catalog, state, reason).await);
                }
                Err(e) => return Err(failed(e)),
            },
            () = cancel.notified() => {
                return if continuous {
                    Ok(Drained { committed: from, caught_up_at: None, schema_changed: None })
                } else {
                    Err(EngineError::Cancelled { run_id })
                };
            }
        };
        let mut batch = Batch {
            destination: self.destination,
            table: &self.job.destination.table,
            spec: self.spec,
            schema: self.rows,
            run_id: run.id,
            open: None,
            rows: 0,
            last: from.clone(),
            committed: from,
            staged_since: None,
        };
        let mut caught_up_at = (!continuous).then_some(started_at);
        let ended = self.pass(&mut *stream, &mut batch, state, run, &mut caught_up_at).await;
        if !matches!(ended, Ok(Ended::Done)) {
            // What is committed stays; what is not comes again after a
            // resync's snapshot, or from the source next time.
            run.rows -= batch.rows;
            if let Some(open) = batch.open.take()
                && let Err(abort) = open.abort().await
            {
                warn!(error = %abort, "could not discard the uncommitted change batch");
            }
        }
        let (give_up, schema_changed) = match ended {
            Ok(Ended::Done) => (None, None),
            Ok(Ended::GiveUp(reason)) => (Some(reason), None),
            Ok(Ended::SchemaChanged(detail)) => (None, Some(detail)),
            Err(e) => return Err(e),
        };
        if let Err(e) = stream.close().await {
            warn!(job = %self.job.name, error = %e, "could not close the change stream");
        }
        if let Some(reason) = give_up {
            // The closed stream has let go of the slot.
            return Err(wal_guardian::give_up(self.job, self.changes, self.catalog, state, reason).await);
        }
        Ok(Drained {
            committed: batch.committed,
            caught_up_at,
            schema_changed,
        })
    }

    /// The event loop: returns once the drain's marker arrived (everything
    /// before it committed), a continuous stream was stopped, or the WAL
    /// guardian gives a continuous stream's slot up.
    async fn pass(
        &self,
        stream: &mut dyn ChangeStream,
        batch: &mut Batch<'_>,
        state: &mut CdcState,
        run: &mut RunRecord,
        caught_up_at: &mut Option<DateTime<Utc>>,
    ) -> Result<Ended, EngineError> {
        let failed = capture_error(self.job);
        let continuous = self.active.continuous;
        let interval = self.job.cdc.flush_interval();
        let measure_every = wal_guardian::measure_every();
        let flush_rows = self.job.cdc.flush_rows();
        let marker = drain_marker(run.id);
        let mut beats = 0u64;
        let mut beat: Option<Beat> = None;
        let mut next_beat = Instant::now() + interval;
        let mut measured = Instant::now();
        // Inside a transaction the destination does not hold yet.
        let mut applying = false;
        let mut skipping = false;
        loop {
            let flush_at = batch.staged_since.filter(|_| !applying).map(|at| at + interval);
            let beat_at = (continuous && beat.is_none()).then_some(next_beat);
            let wake_at = flush_at.into_iter().chain(beat_at).min();
            let wake = tokio::select! {
                biased;
                () = self.active.cancel.notified() => Wake::Stop,
                () = sleep_until(wake_at) => Wake::Timer,
                event = stream.next() => Wake::Event(event),
            };
            let event = match wake {
                Wake::Stop if continuous => {
                    // What is complete commits; a transaction half read
                    // comes again from the source next time.
                    if applying {
                        if let Some(open) = batch.open.take() {
                            open.abort().await?;
                        }
                    } else {
                        self.flush(batch, stream, run).await?;
                    }
                    info!(job = %self.job.name, run_id = run.id, "the job's stream stopped");
                    return Ok(Ended::Done);
                }
                Wake::Stop => return Err(EngineError::Cancelled { run_id: run.id }),
                Wake::Timer => {
                    let now = Instant::now();
                    if flush_at.is_some_and(|at| at <= now) {
                        self.flush(batch, stream, run).await?;
                        self.progress(run);
                    }
                    if beat_at.is_some_and(|at| at <= now) {
                        beats += 1;
                        let prefix = format!("sluice.beat.{}.{beats}", run.id);
                        let written_at = Utc::now();
                        self.changes.mark(&prefix).await.map_err(&failed)?;
                        beat = Some(Beat { prefix, written_at });
                        next_beat = now + interval;
                    }
                    continue;
                }
                Wake::Event(event) => event.map_err(&failed)?.ok_or_else(|| {
                    failed(CdcError::Replication {
                        code: None,
                        message: "the source ended the change stream".into(),
                    })
                })?,
            };
            match event {
                ChangeEvent::Begin { key, .. } => {
                    skipping = batch.committed.contains(&key);
                    applying = !skipping;
                }
                ChangeEvent::Rows(rows) if !skipping => {
                    run.rows += rows.num_rows() as u64;
                    batch.write(rows).await?;
                }
                ChangeEvent::Commit { resume } if !skipping => {
                    applying = false;
                    batch.last = resume;
                    batch.staged_since.get_or_insert_with(Instant::now);
                    if batch.rows >= flush_rows {
                        self.flush(batch, stream, run).await?;
                    }
                    self.progress(run);
                }
                ChangeEvent::Commit { .. } => skipping = false,
                ChangeEvent::SchemaChanged { detail } if !skipping => return Ok(Ended::SchemaChanged(detail)),
                ChangeEvent::Marker { prefix, .. } if !continuous && prefix == marker => {
                    self.flush(batch, stream, run).await?;
                    return Ok(Ended::Done);
                }
                ChangeEvent::Marker { prefix, at } if beat.as_ref().is_some_and(|b| b.prefix == prefix) => {
                    let written_at = beat.take().map(|b| b.written_at).expect("matched above");
                    if applying {
                        // Not expected (markers come between transactions):
                        // the next beat settles it.
                        continue;
                    }
                    self.flush(batch, stream, run).await?;
                    // Nothing after the destination's position and before
                    // the beat concerns the job: the source may free it.
                    stream.confirm(&at);
                    *caught_up_at = Some(written_at);
                    let measure = measured.elapsed() >= measure_every;
                    if measure {
                        measured = Instant::now();
                        // A run's end gives freed memory back to the
                        // system; a stream does not end.
                        tokio::task::spawn_blocking(crate::memory::release_freed);
                    }
                    if let Some(reason) = self.record_beat(state, &batch.committed, written_at, measure).await? {
                        return Ok(Ended::GiveUp(reason));
                    }
                    self.progress(run);
                }
                _ => {}
            }
        }
    }

    /// Saves a continuous stream's position and lag after a beat; with
    /// `measure`, also the log its slot holds back, unless the WAL guardian
    /// gives the slot up: returns why, and saves nothing.
    async fn record_beat(
        &self,
        state: &mut CdcState,
        committed: &Position,
        caught_up_at: DateTime<Utc>,
        measure: bool,
    ) -> Result<Option<String>, EngineError> {
        let now = Utc::now();
        state.position = Some(committed.to_json());
        state.lag_seconds = Some(seconds_between(caught_up_at, now));
        state.checked_at = Some(now);
        if measure {
            match self.changes.retained(state).await {
                Ok(retention) => match wal_guardian::judge(self.job, state, retention) {
                    Ok(behind) => state.lag_bytes = behind,
                    Err(reason) => return Ok(Some(reason)),
                },
                Err(e) => warn!(job = %self.job.name, error = %e, "could not measure the WAL the slot holds back"),
            }
        }
        self.catalog.set_cdc_state(state)?;
        Ok(None)
    }

    /// Commits what `batch` holds complete (see [`Batch::flush`]); counts
    /// its bytes in the run, and for a stream in the metrics.
    async fn flush(
        &self,
        batch: &mut Batch<'_>,
        stream: &mut dyn ChangeStream,
        run: &mut RunRecord,
    ) -> Result<(), EngineError> {
        let (rows, bytes) = batch.flush(stream).await?;
        run.bytes += bytes;
        if self.active.continuous && rows > 0 {
            self.metrics
                .stream_committed(self.catalog.namespace_name(), &self.job.name, rows, bytes);
        }
        Ok(())
    }

    fn progress(&self, run: &RunRecord) {
        self.active.progress.set_rows(run.rows);
    }
}

/// The marker a scheduled or manual run drains up to.
fn drain_marker(run_id: u64) -> String {
    format!("sluice.drain.{run_id}")
}

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The micro-batch a drain is filling.
struct Batch<'a> {
    destination: &'a dyn Destination,
    table: &'a str,
    spec: &'a ChangeSpec,
    /// The change rows `open` takes.
    schema: &'a SchemaRef,
    run_id: u64,
    open: Option<Box<dyn LoadTransaction>>,
    /// Change rows in `open`.
    rows: u64,
    /// The resume point of the last complete transaction seen.
    last: Position,
    /// What the destination holds.
    committed: Position,
    /// When the oldest complete transaction not yet committed ended.
    staged_since: Option<Instant>,
}

impl Batch<'_> {
    async fn write(&mut self, rows: RecordBatch) -> Result<(), EngineError> {
        if self.open.is_none() {
            self.open = Some(
                self.destination
                    .begin_changes(self.table, self.run_id, self.spec)
                    .await?,
            );
        }
        self.rows += rows.num_rows() as u64;
        let open = self.open.as_mut().expect("opened above");
        open.write(by_name(&rows, self.schema)?).await?;
        Ok(())
    }

    /// Commits the complete transactions with their position, then
    /// confirms it to the source; returns the change rows and bytes
    /// committed. Call between transactions only.
    async fn flush(&mut self, stream: &mut dyn ChangeStream) -> Result<(u64, u64), EngineError> {
        if self.last == self.committed {
            return Ok((0, 0));
        }
        let open = match self.open.take() {
            Some(open) => open,
            // Transactions of other tables only: record the position alone.
            None => {
                self.destination
                    .begin_changes(self.table, self.run_id, self.spec)
                    .await?
            }
        };
        failpoint::hit("cdc_before_batch_commit")?;
        let report = open.commit(Some(self.last.to_json())).await?;
        failpoint::hit("cdc_after_batch_commit")?;
        stream.confirm(&self.last);
        self.committed = self.last.clone();
        let rows = std::mem::take(&mut self.rows);
        self.staged_since = None;
        Ok((rows, report.bytes))
    }
}
