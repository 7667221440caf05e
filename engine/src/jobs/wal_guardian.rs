//! The WAL guardian (docs/cdc.md): a replication slot that holds back more
//! change log than its job's `max_retained_wal`, that lost log the job
//! still needs, or that is gone is given up: dropped, the job marked
//! `needs resync`, and the run failed (not transiently: only `RESYNC ETL
//! JOB` heals it). It looks at the slot before a run streams, while a
//! continuous stream runs each time the stream measures its `lag_bytes`,
//! and between runs once a minute at the slot of every CDC job not running
//! (paused, failing, waiting for its schedule): their `lag_bytes` keeps
//! up with what the source writes, and a slot past the limit is given up
//! by a run of its own (trigger `guardian`) that fails with the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_catalog::{Catalog, CdcPhase, CdcState, JobRecord, RunTrigger};
use tracing::{info, warn};

use super::JobManager;
use super::cdc::capture_error;
use super::runner::Work;
use super::settings::bytes_text;
use crate::contract::{CdcError, ChangeSource, Retention};
use crate::error::EngineError;

/// The shortest time between two measurements of the log a slot holds
/// back (a query at the source, and the guardian's look at the slot),
/// while a continuous stream runs and between runs; a stream also returns
/// freed memory to the system this often. `SLUICE_CDC_MEASURE_SECONDS`
/// changes it, for tests.
const MEASURE_EVERY: Duration = Duration::from_secs(60);

/// [`MEASURE_EVERY`], or what `SLUICE_CDC_MEASURE_SECONDS` says.
pub(super) fn measure_every() -> Duration {
    std::env::var("SLUICE_CDC_MEASURE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(MEASURE_EVERY, Duration::from_secs)
}

/// How long the between-runs watch waits between two looks (at least a
/// second, whatever the setting).
pub fn idle_watch_every() -> Duration {
    measure_every().max(Duration::from_secs(1))
}

/// What the guardian decides from `retention`, what the source says the
/// job's slot holds back (`None` when the slot does not exist): keep the
/// slot, with the bytes the destination is behind (`lag_bytes`), or give
/// it up, for the reason returned.
pub(super) fn judge(job: &JobRecord, state: &CdcState, retention: Option<Retention>) -> Result<Option<u64>, String> {
    let slot = state.slot.as_deref().unwrap_or_default();
    let limit = job.cdc.max_retained_wal();
    match retention {
        None => Err(format!(
            "its replication slot \"{slot}\" no longer exists at the source"
        )),
        Some(Retention { lost: Some(reason), .. }) => Err(reason),
        Some(Retention { held: Some(held), .. }) if held > limit => Err(format!(
            "its replication slot \"{slot}\" held {held} bytes of WAL, more than max_retained_wal ({}); Sluice \
             dropped the slot so that the source's disk does not fill",
            bytes_text(limit)
        )),
        Some(retention) => Ok(retention.behind),
    }
}

/// Before a run streams: keeps the slot (recording `lag_bytes` in
/// `state`) or gives it up and fails.
pub(super) async fn check(
    job: &JobRecord,
    changes: &dyn ChangeSource,
    catalog: &Catalog,
    state: &mut CdcState,
) -> Result<(), EngineError> {
    let retention = changes.retained(state).await.map_err(capture_error(job))?;
    match judge(job, state, retention) {
        Ok(behind) => {
            state.lag_bytes = behind;
            Ok(())
        }
        Err(reason) => Err(give_up(job, changes, catalog, state, reason).await),
    }
}

/// Gives the job's slot up for `reason`: releases it at the source (a
/// stream must have let go of it), marks the job `needs resync` and saves
/// `state`. Returns the error the run fails with.
pub(super) async fn give_up(
    job: &JobRecord,
    changes: &dyn ChangeSource,
    catalog: &Catalog,
    state: &mut CdcState,
    reason: String,
) -> EngineError {
    let failed = capture_error(job);
    if let Err(e) = changes.release(state).await {
        return failed(e);
    }
    warn!(job = %job.name, slot = ?state.slot, reason = %reason, "gave up the job's replication slot");
    state.phase = CdcPhase::NeedsResync { reason: reason.clone() };
    state.lag_bytes = None;
    if let Err(e) = catalog.set_cdc_state(state) {
        return e.into();
    }
    failed(CdcError::NeedsResync {
        job: job.name.clone(),
        reason,
    })
}

impl JobManager {
    /// The guardian between runs: measures the slot of every CDC job that
    /// streams from a committed position and is not running (nor held
    /// stopped by a statement), one session per source connection. Saves
    /// each one's `lag_bytes`; gives up, by a run with trigger `guardian`,
    /// each slot the guardian would give up before a run. Returns the jobs
    /// whose slots it gave up. A source that cannot be reached is tried
    /// again at the next look.
    pub async fn watch_idle_slots(&self) -> Result<Vec<String>, EngineError> {
        let mut by_connection: BTreeMap<String, Vec<(JobRecord, CdcState)>> = BTreeMap::new();
        for state in self.catalog().cdc_states()? {
            if state.phase != CdcPhase::Streaming || !self.idle(&state.job) {
                continue;
            }
            if let Some(job) = self.catalog().find_job(&state.job)? {
                by_connection
                    .entry(job.source.connection.clone())
                    .or_default()
                    .push((job, state));
            }
        }
        let mut given_up = Vec::new();
        for (connection, jobs) in by_connection {
            let changes = match self.connections.change_source(&connection) {
                Ok(changes) => changes,
                Err(e) => {
                    warn!(connection, error = %e, "cannot look at the change log CDC jobs hold back");
                    continue;
                }
            };
            for (job, state) in jobs {
                let retention = match changes.retained(&state).await {
                    Ok(retention) => retention,
                    Err(e) => {
                        warn!(job = %job.name, error = %e, "cannot measure the change log the job holds back");
                        continue;
                    }
                };
                match judge(&job, &state, retention) {
                    Ok(behind) => {
                        // Only while still idle and streaming: a run that
                        // started meanwhile measures for itself.
                        if self.idle(&job.name) {
                            self.catalog().update_cdc_state(&job.name, |saved| {
                                if saved.phase == CdcPhase::Streaming {
                                    saved.lag_bytes = behind;
                                }
                            })?;
                        }
                    }
                    Err(reason) => {
                        info!(job = %job.name, reason = %reason, "the WAL guardian gives up an idle job's slot");
                        match self
                            .run_work(&job.name, RunTrigger::Guardian, Work::GuardSlot, &|_| {})
                            .await
                        {
                            // A run started meanwhile: it looks at the slot first.
                            Err(EngineError::JobRunning { .. }) => {}
                            _ if self.needs_resync(&job.name)? => given_up.push(job.name),
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(given_up)
    }

    /// Whether `job` neither runs nor is held stopped by a statement.
    fn idle(&self, job: &str) -> bool {
        self.running_run(job).is_none() && !self.stream_held(job)
    }

    /// The run the between-runs watch starts for a slot it would give up:
    /// looks again, now that no other run can start, and gives the slot up
    /// (the run fails with the reason) or, when the slot is back within its
    /// limit, records its `lag_bytes` (the run succeeds, changing nothing).
    pub(super) async fn guard_idle_slot(&self, job: &JobRecord) -> Result<(), EngineError> {
        let Some(mut state) = self.catalog().cdc_state(&job.name)? else {
            return Ok(());
        };
        if state.phase != CdcPhase::Streaming {
            return Ok(());
        }
        let changes = self.connections.change_source(&job.source.connection)?;
        check(job, &*changes, self.catalog(), &mut state).await?;
        self.catalog().set_cdc_state(&state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(held: Option<u64>, behind: Option<u64>, lost: Option<&str>) -> Option<Retention> {
        Some(Retention {
            held,
            behind,
            lost: lost.map(str::to_owned),
        })
    }

    #[test]
    fn a_slot_is_kept_up_to_the_limit_and_given_up_past_it_lost_or_gone() {
        let mut job = crate::jobs::health::tests::job();
        let limit = 1 << 20;
        job.cdc.max_retained_wal = Some(limit);
        let mut state = CdcState::new("j");
        state.slot = Some("s".into());
        let judge = |retention| judge(&job, &state, retention);
        assert_eq!(judge(retention(Some(limit), Some(7), None)), Ok(Some(7)));
        // MySQL holds nothing back for a job: only a purge gives it up.
        assert_eq!(judge(retention(None, Some(7), None)), Ok(Some(7)));
        let past = judge(retention(Some(limit + 1), Some(7), None)).unwrap_err();
        assert!(
            past.contains("\"s\" held 1048577 bytes") && past.contains("more than max_retained_wal (1 MB)"),
            "{past}"
        );
        assert_eq!(
            judge(retention(Some(1), Some(1), Some("wal_status = lost"))),
            Err("wal_status = lost".to_owned())
        );
        let gone = judge(None).unwrap_err();
        assert!(gone.contains("\"s\" no longer exists"), "{gone}");
    }
}
