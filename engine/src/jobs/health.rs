//! Whether a job is healthy, from its recent runs and its connections.

use sluice_catalog::{JobRecord, RunRecord, RunStatus};

/// Failed runs in a row after which a job is `failing`.
pub const FAILING_AFTER: u32 = 3;

/// A job's health, as `sluice.jobs` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// The last runs failed; `consecutive` of them in a row.
    Failing {
        consecutive: u32,
    },
    /// A connection the job uses failed its last test.
    ConnectionFailed {
        connection: String,
    },
    /// The newest data at the destination is older than the job's
    /// `freshness_target`.
    Stale,
    /// The last run loaded rows the commit guard could not vouch for (see
    /// the run's `guard_warning`), or the destination table has spent 80 %
    /// of its daily table operations.
    Degraded,
}

impl Health {
    /// The lower-case name shown in SQL.
    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Failing { .. } => "failing",
            Health::ConnectionFailed { .. } => "connection_failed",
            Health::Stale => "stale",
            Health::Degraded => "degraded",
        }
    }

    /// Judges a job from its finished runs (oldest first; skipped ticks
    /// ignored), the names of connections whose last test failed, whether
    /// its data is older than its freshness target, the table operations
    /// its destination table spent today, if counted, and whether it is a
    /// CDC job that needs a resync (failing: its runs fail until then, and
    /// a `CONTINUOUS` one is not retried).
    pub fn of(
        job: &JobRecord,
        runs: &[RunRecord],
        failed_connections: &[String],
        stale: bool,
        table_ops_today: Option<super::TableOpsToday>,
        needs_resync: bool,
    ) -> Self {
        let consecutive = consecutive_failures(runs);
        if consecutive >= FAILING_AFTER || needs_resync {
            return Health::Failing { consecutive };
        }
        match job.connections().find(|c| failed_connections.iter().any(|f| f == c)) {
            Some(connection) => Health::ConnectionFailed {
                connection: connection.into(),
            },
            None if stale => Health::Stale,
            None if last_run_guard_warned(runs) => Health::Degraded,
            None if table_ops_today.is_some_and(|ops| ops.near_limit()) => Health::Degraded,
            None => Health::Healthy,
        }
    }
}

/// Failed runs at the end of `runs` (oldest first). Skipped ticks and runs
/// not finished yet (queued or running) are ignored: a retry in progress
/// does not make a failing job healthy.
pub fn consecutive_failures(runs: &[RunRecord]) -> u32 {
    runs.iter()
        .rev()
        .filter(|r| r.status.is_final() && r.status != RunStatus::Skipped)
        .take_while(|r| r.status == RunStatus::Failed)
        .count() as u32
}

/// Whether the last finished run carries a commit-guard warning.
fn last_run_guard_warned(runs: &[RunRecord]) -> bool {
    runs.iter()
        .rev()
        .find(|r| r.status.is_final() && r.status != RunStatus::Skipped)
        .is_some_and(|r| r.guard_warning.is_some())
}

#[cfg(test)]
pub(super) mod tests {
    use chrono::Utc;
    use sluice_catalog::RunStatus::{Failed, Queued, Running, Skipped, Succeeded};
    use sluice_catalog::{JobDestination, JobSource, LoadType, RunTrigger, since_last_success};

    use super::*;

    pub(in crate::jobs) fn job() -> JobRecord {
        JobRecord {
            name: "j".into(),
            source: JobSource {
                connection: "shop".into(),
                schema: "public".into(),
                table: "t".into(),
                columns: None,
            },
            destination: JobDestination {
                connection: Some("wh".into()),
                table: "t".into(),
            },
            load: LoadType::Snapshot,
            column_overrides: vec![],
            schedule: "MANUAL".into(),
            batch_rows: 8192,
            max_retries: 3,
            catch_up: Default::default(),
            layout: Default::default(),
            guard: Default::default(),
            on_schema_change: Default::default(),
            verify: Default::default(),
            columns: Vec::new(),
            freshness_target_seconds: None,
            labels: Default::default(),
            source_settings: Default::default(),
            reload: false,
            cdc: Default::default(),
            parallelism: None,
            execution: Default::default(),
            paused: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn runs(statuses: &[RunStatus]) -> Vec<RunRecord> {
        statuses
            .iter()
            .enumerate()
            .map(|(i, status)| {
                let mut run = RunRecord::start(i as u64 + 1, "j", RunTrigger::Schedule);
                run.status = *status;
                run
            })
            .collect()
    }

    proptest::proptest! {
        /// Health, streak, guard warning and freshness read from the runs
        /// the catalog lists for a job (`since_last_success`, what its
        /// in-memory copy keeps) equal those read from the whole history.
        #[test]
        fn the_deciding_runs_decide_as_the_whole_history_does(
            statuses in proptest::collection::vec(0..6usize, 0..40),
            warned in proptest::collection::vec(proptest::bool::ANY, 40),
        ) {
            let all = [Succeeded, Failed, Skipped, Queued, Running, RunStatus::Cancelled];
            let mut history = runs(&statuses.iter().map(|&s| all[s]).collect::<Vec<_>>());
            for (run, warned) in history.iter_mut().zip(&warned) {
                run.finished_at = Some(Utc::now() - chrono::Duration::minutes(100 - run.id as i64));
                run.guard_warning = warned.then(|| "late commits".to_owned());
            }
            let deciding = since_last_success(history.iter().rev().cloned().map(Ok::<_, ()>)).unwrap();
            let job = job();
            let now = Utc::now();
            proptest::prop_assert_eq!(
                Health::of(&job, &history, &[], false, None, false),
                Health::of(&job, &deciding, &[], false, None, false)
            );
            proptest::prop_assert_eq!(consecutive_failures(&history), consecutive_failures(&deciding));
            proptest::prop_assert_eq!(
                crate::jobs::freshness(&job, None, &history, None, now),
                crate::jobs::freshness(&job, None, &deciding, None, now)
            );
            proptest::prop_assert_eq!(history.last().map(|r| r.id), deciding.last().map(|r| r.id));
        }
    }

    #[test]
    fn failing_after_three_failures_in_a_row_skips_ignored() {
        let job = job();
        assert_eq!(
            Health::of(&job, &runs(&[Failed, Failed, Succeeded]), &[], false, None, false),
            Health::Healthy
        );
        assert_eq!(
            Health::of(
                &job,
                &runs(&[Succeeded, Failed, Skipped, Failed, Skipped, Failed]),
                &[],
                false,
                None,
                false
            ),
            Health::Failing { consecutive: 3 }
        );
        assert_eq!(consecutive_failures(&runs(&[Failed, Succeeded, Failed, Failed])), 2);
    }

    #[test]
    fn a_cdc_job_that_needs_a_resync_is_failing_from_its_first_failure() {
        let job = job();
        assert_eq!(
            Health::of(&job, &runs(&[Succeeded, Failed]), &[], false, None, true),
            Health::Failing { consecutive: 1 }
        );
    }

    #[test]
    fn unfinished_runs_do_not_end_a_failing_streak() {
        let job = job();
        for unfinished in [Queued, Running] {
            assert_eq!(
                Health::of(
                    &job,
                    &runs(&[Failed, Failed, Failed, unfinished]),
                    &[],
                    false,
                    None,
                    false
                ),
                Health::Failing { consecutive: 3 }
            );
        }
        assert_eq!(
            Health::of(
                &job,
                &runs(&[Failed, Failed, Failed, Succeeded, Running]),
                &[],
                false,
                None,
                false
            ),
            Health::Healthy
        );
    }

    #[test]
    fn a_failed_connection_of_the_job_shows() {
        let job = job();
        assert_eq!(
            Health::of(&job, &runs(&[Succeeded]), &["wh".into()], false, None, false),
            Health::ConnectionFailed {
                connection: "wh".into()
            }
        );
        assert_eq!(
            Health::of(&job, &[], &["other".into()], false, None, false),
            Health::Healthy
        );
        // Failing runs say more than a failed connection.
        assert_eq!(
            Health::of(
                &job,
                &runs(&[Failed, Failed, Failed]),
                &["shop".into()],
                false,
                None,
                false
            )
            .as_str(),
            "failing"
        );
    }

    #[test]
    fn a_table_near_its_daily_table_operations_is_degraded() {
        let ops = |spent| crate::jobs::TableOpsToday {
            spent,
            limit: 1500,
            service: "BigQuery",
        };
        let job = job();
        assert_eq!(
            Health::of(&job, &runs(&[Succeeded]), &[], false, Some(ops(1199)), false),
            Health::Healthy
        );
        assert_eq!(
            Health::of(&job, &runs(&[Succeeded]), &[], false, Some(ops(1200)), false),
            Health::Degraded
        );
    }
}
