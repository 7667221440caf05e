//! What a crash or a restore left behind: runs still `running` in the
//! catalog (from an earlier process, or a run whose end could not be
//! recorded), settled with what their destination committed; runs still
//! `queued`, which never started; and watermarks that differ from what the
//! destination's last load recorded.

use std::collections::BTreeSet;

use chrono::Utc;
use sluice_catalog::{LoadType, RunRecord, RunStatus, RunTrigger, Watermark};
use tracing::{info, warn};

use super::JobManager;
use crate::error::EngineError;
use crate::failpoint;

/// Why a run that ended without a recorded end and without a committed
/// load was marked failed.
pub(super) const INTERRUPTED: &str = "interrupted: Sluice stopped during the run; nothing of it was committed";

impl JobManager {
    /// Settles runs that were in progress when Sluice stopped (see
    /// [`settle_run`](Self::settle_run)). A run whose destination cannot answer now
    /// (a remote warehouse out of reach) stays unsettled and is asked again
    /// before its job's next run, so that start-up does not depend on it.
    /// Returns the runs marked failed, for the scheduler to re-run.
    pub async fn reconcile(&self) -> Result<Vec<RunRecord>, EngineError> {
        let mut interrupted = Vec::new();
        for run in self.catalog().runs(None)?.into_iter().filter(|r| !r.status.is_final()) {
            let (job, run_id) = (run.job.clone(), run.id);
            if run.status == RunStatus::Queued {
                // Never started: the scheduler plans the tick again.
                self.end_queued_run(run_id, RunStatus::Skipped, "Sluice stopped before the run started")?;
                continue;
            }
            match self.settle_run(run, INTERRUPTED).await {
                Ok(failed) => interrupted.extend(failed),
                Err(e) => {
                    warn!(job = %job, run_id, error = %e, "could not settle an interrupted run; will retry before the job runs again");
                    self.unsettled.lock().unwrap_or_else(|p| p.into_inner()).insert(run_id);
                }
            }
        }
        self.align_watermarks().await?;
        Ok(interrupted)
    }

    /// Aligns each incremental job's watermark with the one its
    /// destination's last committed load recorded, where the destination
    /// records it (the local warehouse in its manifest, BigQuery in the
    /// table's labels). They differ when
    /// the catalog was restored from a backup (it is behind: its runs would
    /// load rows again) or the table was (it is ahead: rows would be
    /// missing); the destination holds exactly the rows up to its
    /// watermark, so the next run reads from there. Loads from before the
    /// job was created (a table kept from a dropped job) are not adopted.
    async fn align_watermarks(&self) -> Result<(), EngineError> {
        let pending: BTreeSet<String> = self
            .unsettled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|&run_id| self.catalog().run(run_id).ok().map(|run| run.job))
            .collect();
        for job in self.catalog().jobs()? {
            if !matches!(job.load, LoadType::Incremental { .. }) || pending.contains(&job.name) {
                continue;
            }
            let last = match self.destination(job.destination.connection.as_deref()) {
                Ok(destination) => destination
                    .last_commit(&job.destination.table)
                    .await
                    .map_err(EngineError::from),
                Err(e) => Err(e),
            };
            let state = match last {
                Ok(Some(state)) => state,
                Ok(None) => continue,
                Err(e) => {
                    warn!(job = %job.name, error = %e, "could not compare the watermark with the destination's");
                    continue;
                }
            };
            let Some(value) = state.watermark else { continue };
            if state.committed_at.is_some_and(|at| at < job.created_at) {
                continue;
            }
            let ours = self.catalog().watermark(&job.name)?;
            if ours.as_ref().is_some_and(|w| w.value == value) || self.moved_since(&job.name, state.run_id)? {
                continue;
            }
            warn!(
                job = %job.name,
                catalog = ours.as_ref().map_or("none", |w| w.value.as_str()),
                destination = %value,
                run_id = state.run_id,
                "the catalog's watermark differs from the one the destination's last load recorded \
                 (a catalog or table restored from a backup?); the job continues from the destination's"
            );
            self.catalog().set_watermark(&Watermark {
                job: job.name.clone(),
                value,
                run_id: state.run_id,
                updated_at: Utc::now(),
            })?;
        }
        Ok(())
    }

    /// Whether the watermark of `job` was moved by hand (`ALTER ETL JOB ...
    /// SET | RESET WATERMARK`, a change of load type) after run `run_id`
    /// committed: the catalog's watermark is then the one to keep.
    fn moved_since(&self, job: &str, run_id: u64) -> Result<bool, EngineError> {
        for run in self.catalog().runs_newest_first(job) {
            let run = run?;
            if run.id <= run_id {
                return Ok(false);
            }
            if run.trigger == RunTrigger::Watermark {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Settles the interrupted runs of `job` that start-up could not; an
    /// error stops the job's next run, which could otherwise load twice.
    pub(super) async fn settle_interrupted(&self, job: &str) -> Result<(), EngineError> {
        let pending: Vec<u64> = self
            .unsettled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        for run_id in pending {
            let run = self.catalog().run(run_id)?;
            if run.job != job {
                continue;
            }
            if !run.status.is_final() {
                self.settle_run(run, INTERRUPTED).await?;
            }
            self.unsettled.lock().unwrap_or_else(|p| p.into_inner()).remove(&run_id);
        }
        Ok(())
    }

    /// Settles run `run_id`, whose task ended without recording its end (it
    /// panicked, or the catalog write failed), as a crash would be settled;
    /// returns the settled run. When that fails too the run stays
    /// unsettled, and the job does not run again before it is settled.
    pub(super) async fn settle_abandoned(&self, run_id: u64, reason: &str) -> Option<RunRecord> {
        self.unsettled.lock().unwrap_or_else(|p| p.into_inner()).insert(run_id);
        let settled = async {
            let run = self.catalog().run(run_id)?;
            if !run.status.is_final() {
                self.settle_run(run, reason).await?;
            }
            Ok::<_, EngineError>(self.catalog().run(run_id)?)
        }
        .await;
        match settled {
            Ok(run) => {
                self.unsettled.lock().unwrap_or_else(|p| p.into_inner()).remove(&run_id);
                Some(run)
            }
            Err(e) => {
                warn!(run_id, error = %e, "could not settle the run; will retry before the job runs again");
                None
            }
        }
    }

    /// A run whose load the destination committed is recorded as succeeded
    /// with its watermark (the crash came between the destination commit and
    /// the catalog update); any other is marked failed with `reason`,
    /// nothing of it visible, and returned.
    async fn settle_run(&self, mut run: RunRecord, reason: &str) -> Result<Option<RunRecord>, EngineError> {
        run.finished_at = Some(Utc::now());
        let committed = match self.catalog().find_job(&run.job)? {
            Some(job) => {
                let destination = self.destination(job.destination.connection.as_deref())?;
                destination
                    .committed_run(&job.destination.table, run.id)
                    .await?
                    .map(|state| (job, state))
            }
            None => None,
        };
        match committed {
            Some((job, state)) => {
                run.status = RunStatus::Succeeded;
                // The run saved its watermark before the destination
                // committed; destinations that record it may say it too.
                // A repair never moves the watermark (its `watermark_to` is
                // the end of the repaired window).
                let watermark = match (&job.load, state.watermark.or_else(|| run.watermark_to.clone())) {
                    _ if run.trigger == RunTrigger::Repair => None,
                    (LoadType::Incremental { .. }, Some(value)) => Some(Watermark {
                        job: job.name.clone(),
                        value,
                        run_id: run.id,
                        updated_at: Utc::now(),
                    }),
                    _ => None,
                };
                failpoint::hit("catalog_finish_run")?;
                self.catalog().finish_run(&run, watermark.as_ref())?;
                info!(job = %run.job, run_id = run.id, "adopted a run the destination had committed before a restart");
                Ok(None)
            }
            None => {
                run.status = RunStatus::Failed;
                run.error = Some(reason.to_owned());
                failpoint::hit("catalog_finish_run")?;
                self.catalog().finish_run(&run, None)?;
                warn!(job = %run.job, run_id = run.id, "marked an interrupted run failed");
                Ok(Some(run))
            }
        }
    }
}
