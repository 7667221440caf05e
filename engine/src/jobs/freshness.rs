//! How old the newest data a job committed to its destination is, and
//! whether that exceeds the job's `freshness_target`.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use sluice_catalog::{CdcState, JobRecord, LoadType, RunRecord, RunStatus, Watermark};

/// Now minus the newest data committed: for an incremental job with a
/// timestamp or date cursor, the committed watermark (a cursor without a
/// time zone is read as UTC, a date as its midnight); for a CDC job, when
/// its destination was last known to hold everything the source had
/// committed (`cdc`, renewed while a `CONTINUOUS` stream runs) or the end
/// of its last successful run, whichever is later; otherwise (snapshots,
/// integer cursors) the end of the last successful run. `None` when nothing
/// was committed yet.
pub fn freshness(
    job: &JobRecord,
    watermark: Option<&Watermark>,
    runs: &[RunRecord],
    cdc: Option<&CdcState>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let newest = match (&job.load, watermark) {
        (LoadType::Incremental { .. }, Some(w)) => cursor_time(&w.value).or_else(|| last_success(runs)),
        (LoadType::Incremental { .. }, None) => None,
        (LoadType::Cdc { .. }, _) => last_success(runs).max(cdc.and_then(CdcState::caught_up_at)),
        (LoadType::Snapshot, _) => last_success(runs),
    }?;
    Some((now - newest).max(Duration::zero()))
}

/// Whether the job has a freshness target and its data (or, before its
/// first commit, the job itself) is older than that.
pub fn is_stale(job: &JobRecord, freshness: Option<Duration>, now: DateTime<Utc>) -> bool {
    let Some(target) = job.freshness_target_seconds else {
        return false;
    };
    let age = freshness.unwrap_or(now - job.created_at);
    age.num_seconds() > target as i64
}

/// A cursor value as stored in a watermark, read as an instant.
fn cursor_time(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// When the last successful run finished.
fn last_success(runs: &[RunRecord]) -> Option<DateTime<Utc>> {
    runs.iter()
        .rev()
        .find(|r| r.status == RunStatus::Succeeded)
        .and_then(|r| r.finished_at)
}

#[cfg(test)]
mod tests {
    use sluice_catalog::{IncrementalStart, RunTrigger};

    use super::*;
    use crate::jobs::health::tests::job;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn watermark(value: &str) -> Watermark {
        Watermark {
            job: "j".into(),
            value: value.into(),
            run_id: 1,
            updated_at: at("2024-05-01T00:00:00Z"),
        }
    }

    fn succeeded_at(finished: &str) -> RunRecord {
        let mut run = RunRecord::start(1, "j", RunTrigger::Manual);
        run.status = RunStatus::Succeeded;
        run.finished_at = Some(at(finished));
        run
    }

    fn incremental() -> JobRecord {
        let mut job = job();
        job.load = LoadType::Incremental {
            cursor: "updated_at".into(),
            start: IncrementalStart::All,
            lookback: None,
        };
        job
    }

    #[test]
    fn an_incremental_job_is_as_old_as_its_newest_cursor_value() {
        let now = at("2024-05-01T12:00:00Z");
        let runs = [succeeded_at("2024-05-01T11:59:00Z")];
        for (value, hours) in [
            ("2024-05-01T10:00:00Z", 2),
            ("2024-05-01T10:00:00.123456", 1),
            ("2024-05-01 09:00:00", 3),
            ("2024-05-01", 12),
        ] {
            let age = freshness(&incremental(), Some(&watermark(value)), &runs, None, now).unwrap();
            assert_eq!(age.num_hours(), hours, "{value}");
        }
        // An integer cursor says nothing of time: the last commit does.
        let age = freshness(&incremental(), Some(&watermark("42")), &runs, None, now).unwrap();
        assert_eq!(age.num_seconds(), 60);
        assert_eq!(freshness(&incremental(), None, &runs, None, now), None);
        // A cursor in the future is fresh, not negative.
        let age = freshness(
            &incremental(),
            Some(&watermark("2024-06-01T00:00:00Z")),
            &runs,
            None,
            now,
        )
        .unwrap();
        assert_eq!(age, Duration::zero());
    }

    #[test]
    fn a_snapshot_is_as_old_as_its_last_successful_run() {
        let now = at("2024-05-01T12:00:00Z");
        let mut failed = succeeded_at("2024-05-01T11:30:00Z");
        failed.status = RunStatus::Failed;
        let runs = [succeeded_at("2024-05-01T11:00:00Z"), failed];
        assert_eq!(freshness(&job(), None, &runs, None, now).unwrap().num_minutes(), 60);
        assert_eq!(freshness(&job(), None, &[], None, now), None);
    }

    #[test]
    fn a_cdc_job_is_as_old_as_the_moment_it_was_last_caught_up() {
        let now = at("2024-05-01T12:00:00Z");
        let mut cdc_job = job();
        cdc_job.load = LoadType::Cdc {
            mode: sluice_catalog::CdcMode::Merge,
        };
        let runs = [succeeded_at("2024-05-01T10:00:00Z")];
        // A stream running since: its beat 5 s ago found it 1.5 s behind.
        let mut state = CdcState::new("j");
        state.checked_at = Some(at("2024-05-01T11:59:55Z"));
        state.lag_seconds = Some(1.5);
        let age = freshness(&cdc_job, None, &runs, Some(&state), now).unwrap();
        assert_eq!(age.num_milliseconds(), 6_500);
        // Without a measurement, or one older than the last run: the run.
        assert_eq!(freshness(&cdc_job, None, &runs, None, now).unwrap().num_hours(), 2);
        state.checked_at = Some(at("2024-05-01T09:00:00Z"));
        assert_eq!(
            freshness(&cdc_job, None, &runs, Some(&state), now).unwrap().num_hours(),
            2
        );
        assert_eq!(freshness(&cdc_job, None, &[], None, now), None);
    }

    #[test]
    fn stale_only_past_a_target() {
        let now = at("2024-05-01T12:00:00Z");
        let mut job = job();
        assert!(!is_stale(&job, Some(Duration::days(30)), now));
        job.freshness_target_seconds = Some(3600);
        assert!(!is_stale(&job, Some(Duration::seconds(3600)), now));
        assert!(is_stale(&job, Some(Duration::seconds(3601)), now));
        // Nothing committed yet: the job's own age counts.
        job.created_at = now - Duration::minutes(10);
        assert!(!is_stale(&job, None, now));
        job.created_at = now - Duration::hours(2);
        assert!(is_stale(&job, None, now));
    }
}
