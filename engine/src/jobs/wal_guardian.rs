//! The WAL guardian (docs/cdc.md): a replication slot that holds back more
//! change log than its job's `max_retained_wal`, that lost log the job
//! still needs, or that is gone is given up: dropped, the job marked
//! `needs resync`, and the run failed (not transiently: only `RESYNC ETL
//! JOB` heals it). It looks at the slot before a run streams and, while a
//! continuous stream runs, each time the stream measures its `lag_bytes`.

use sluice_catalog::{Catalog, CdcPhase, CdcState, JobRecord};
use tracing::warn;

use super::cdc::capture_error;
use super::settings::bytes_text;
use crate::contract::{CdcError, ChangeSource, Retention};
use crate::error::EngineError;

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
