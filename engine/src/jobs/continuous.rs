//! `CONTINUOUS` CDC jobs (docs/cdc.md): the scheduler keeps one run of each
//! open, a stream that commits micro-batches until it is stopped. A stop
//! (`PAUSE`, `ALTER`, `CANCEL`) commits the complete transactions it holds
//! and ends the run; statements that must not overlap the stream (`DROP`,
//! `RESYNC`, edits) hold the job so the scheduler does not start it again
//! until they are done.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_catalog::{JobRecord, LoadType, RunTrigger, Transaction};

use super::{Changes, JobManager};
use crate::error::EngineError;

/// The stored schedule text of a `CONTINUOUS` job.
const CONTINUOUS: &str = "CONTINUOUS";

/// The longest a statement waits for a job's stream to stop.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// Whether `job` is `CONTINUOUS`.
pub(crate) fn is_continuous(job: &JobRecord) -> bool {
    job.schedule == CONTINUOUS
}

/// Whether a run of `job` started by `trigger` is its continuous stream:
/// the scheduler's runs of a `CONTINUOUS` CDC job. A manual run drains
/// what is committed and ends, as on a schedule.
pub(super) fn streams(job: &JobRecord, trigger: RunTrigger) -> bool {
    is_continuous(job)
        && matches!(job.load, LoadType::Cdc { .. })
        && matches!(trigger, RunTrigger::Schedule | RunTrigger::Retry)
}

/// Keeps the scheduler from starting a job's stream while it lives.
pub(super) struct StreamHold {
    held: Arc<Mutex<HashMap<String, usize>>>,
    changes: Arc<Changes>,
    job: String,
}

impl StreamHold {
    /// Keeps the stream stopped until the current transaction block ends
    /// (`COMMIT`, `ROLLBACK`, a `ROLLBACK TO` a savepoint set before, a
    /// disconnect), not only while the statement runs: a stream started
    /// meanwhile would follow the definition committed before the block.
    fn until_transaction_ends(self) {
        let hold = Arc::new(Mutex::new(Some(self)));
        let on_rollback = Arc::clone(&hold);
        let end = |hold: Arc<Mutex<Option<StreamHold>>>| async move {
            drop(hold.lock().unwrap_or_else(|p| p.into_inner()).take());
        };
        Transaction::after_commit(Box::pin(end(hold)));
        Transaction::on_rollback(Box::pin(end(on_rollback)));
    }
}

impl Drop for StreamHold {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(holds) = held.get_mut(&self.job) {
            *holds -= 1;
            if *holds == 0 {
                held.remove(&self.job);
            }
        }
        drop(held);
        // The scheduler looks at the job again.
        self.changes.definitions_changed();
    }
}

impl JobManager {
    /// Whether a statement holds `job`'s stream stopped, or Sluice is
    /// shutting down (the scheduler then treats the job as running).
    pub fn stream_held(&self, job: &str) -> bool {
        self.closing.load(Ordering::Relaxed) || self.held.lock().unwrap_or_else(|p| p.into_inner()).contains_key(job)
    }

    /// At shutdown: stops every continuous stream (each commits what it
    /// holds and ends `succeeded`) and waits up to `wait` for them to end;
    /// no stream starts again.
    pub async fn stop_streams(&self, wait: Duration) {
        self.closing.store(true, Ordering::Relaxed);
        let streams: Vec<String> = {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running
                .iter()
                .filter(|(_, active)| active.continuous)
                .map(|(job, active)| {
                    active.cancel.notify_one();
                    job.clone()
                })
                .collect()
        };
        let deadline = Instant::now() + wait;
        while streams.iter().any(|job| self.running_stream(job).is_some()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The run id of `job`'s continuous stream, if it runs.
    pub fn running_stream(&self, job: &str) -> Option<u64> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .get(job)
            .filter(|active| active.continuous)
            .map(|active| active.run_id)
    }

    /// Asks `job`'s continuous stream, if it runs, to commit what it holds
    /// and end; the scheduler starts it again unless the job is paused or
    /// no longer `CONTINUOUS`. Returns the stream's run id.
    pub(super) fn stop_stream(&self, job: &str) -> Option<u64> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let active = running.get(job).filter(|active| active.continuous)?;
        active.cancel.notify_one();
        Some(active.run_id)
    }

    /// Inside a transaction block, keeps `job`'s stream from starting until
    /// the block ends; nothing outside a block.
    pub(super) fn hold_until_transaction_ends(&self, job: &str) {
        if Transaction::active() {
            self.new_hold(job).until_transaction_ends();
        }
    }

    /// Counts a hold on `job`'s stream.
    fn new_hold(&self, job: &str) -> StreamHold {
        // Counted: a statement may hold a job another statement of it holds
        // (`CREATE OR REPLACE` dropping the job it replaces).
        *self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(job.to_owned())
            .or_default() += 1;
        StreamHold {
            held: Arc::clone(&self.held),
            changes: Arc::clone(&self.changes),
            job: job.to_owned(),
        }
    }

    /// Stops `job`'s stream, if it runs, and keeps the scheduler from
    /// starting it again until the hold is dropped. A run that is not the
    /// stream is left alone (the caller's claim refuses it).
    /// Inside a transaction block the stream stays stopped until the block
    /// ends ([`StreamHold::until_transaction_ends`]).
    pub(super) async fn hold_stream(&self, job: &str) -> Result<StreamHold, EngineError> {
        let hold = self.new_hold(job);
        self.hold_until_transaction_ends(job);
        let Some(run_id) = self.stop_stream(job) else {
            return Ok(hold);
        };
        let deadline = Instant::now() + STOP_WAIT;
        while self.running_run(job) == Some(run_id) {
            if Instant::now() >= deadline {
                return Err(EngineError::JobRunning {
                    job: job.to_owned(),
                    run_id,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(hold)
    }
}
