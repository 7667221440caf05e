use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_catalog::{
    CatchUp, JobDestination, JobRecord, JobSource, LoadType, PendingRetry, RunTrigger, ScheduleState,
};

use super::{Action, Situation, continuous_retry, decide, retry_after_failure};
use crate::schedule::Schedule;
use crate::scheduler::Backoff;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn job(schedule: &str) -> JobRecord {
    JobRecord {
        name: "j".into(),
        source: JobSource {
            connection: "src".into(),
            schema: "public".into(),
            table: "t".into(),
            columns: None,
        },
        destination: JobDestination {
            connection: None,
            table: "bq_t".into(),
        },
        load: LoadType::Snapshot,
        column_overrides: vec![],
        schedule: schedule.parse::<Schedule>().unwrap().to_string(),
        batch_rows: 8192,
        parallelism: None,
        execution: Default::default(),
        max_retries: 3,
        catch_up: CatchUp::Once,
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
        paused: false,
        created_at: at("2026-01-01T00:00:00Z"),
        updated_at: at("2026-01-01T00:00:00Z"),
    }
}

fn state(job: &JobRecord, next: Option<&str>, retry: Option<(u32, &str)>) -> ScheduleState {
    ScheduleState {
        job: job.name.clone(),
        schedule: job.schedule.clone(),
        next_run_at: next.map(at),
        retry: retry.map(|(attempt, when)| PendingRetry { attempt, at: at(when) }),
    }
}

/// The decision at `now` for a scheduler started at 00:00.
fn decide_at(job: &JobRecord, state: Option<&ScheduleState>, now: &str, running: Option<u64>) -> super::Decision {
    decide_for(job, state, now, running, false)
}

fn decide_for(
    job: &JobRecord,
    state: Option<&ScheduleState>,
    now: &str,
    running: Option<u64>,
    needs_resync: bool,
) -> super::Decision {
    let schedule: Schedule = job.schedule.parse().unwrap();
    decide(&Situation {
        job,
        schedule: &schedule,
        state,
        now: at(now),
        started_at: at("2026-03-01T00:00:00Z"),
        running,
        needs_resync,
    })
}

#[test]
fn a_new_job_is_planned_from_now_and_fires_when_due() {
    let job = job("EVERY 15 MINUTES");
    let first = decide_at(&job, None, "2026-03-01T10:07:00Z", None);
    assert_eq!(first.action, Action::Wait);
    assert_eq!(first.state.next_run_at, Some(at("2026-03-01T10:15:00Z")));

    let early = decide_at(&job, Some(&first.state), "2026-03-01T10:14:59Z", None);
    assert_eq!(early.action, Action::Wait);
    assert_eq!(early.state, first.state);

    let due = decide_at(&job, Some(&first.state), "2026-03-01T10:15:00.250Z", None);
    assert_eq!(
        due.action,
        Action::Run {
            trigger: RunTrigger::Schedule,
            attempt: 0,
            due: at("2026-03-01T10:15:00Z")
        }
    );
    assert_eq!(due.state.next_run_at, Some(at("2026-03-01T10:30:00Z")));
}

#[test]
fn manual_and_paused_jobs_are_never_due() {
    let manual = job("MANUAL");
    let d = decide_at(&manual, None, "2026-03-01T10:00:00Z", None);
    assert_eq!((d.action, d.state.next_run_at), (Action::Wait, None));

    let mut paused = job("EVERY 5 MINUTES");
    let planned = state(&paused, Some("2026-03-01T09:00:00Z"), Some((1, "2026-03-01T09:01:00Z")));
    paused.paused = true;
    let d = decide_at(&paused, Some(&planned), "2026-03-01T10:00:00Z", None);
    assert_eq!(d.action, Action::Wait);
    assert_eq!((d.state.next_run_at, d.state.retry), (None, None));

    // Resumed: planned from now, the ticks missed while paused do not fire.
    paused.paused = false;
    let resumed = decide_at(&paused, Some(&d.state), "2026-03-01T10:02:00Z", None);
    assert_eq!(resumed.action, Action::Wait);
    assert_eq!(resumed.state.next_run_at, Some(at("2026-03-01T10:05:00Z")));
}

#[test]
fn a_changed_schedule_is_replanned_without_firing() {
    let old = job("EVERY 5 MINUTES");
    let planned = state(&old, Some("2026-03-01T09:00:00Z"), None);
    let new = job("DAILY AT '06:00'");
    let d = decide_at(&new, Some(&planned), "2026-03-01T10:00:00Z", None);
    assert_eq!(d.action, Action::Wait);
    assert_eq!(d.state.schedule, "DAILY AT '06:00'");
    assert_eq!(d.state.next_run_at, Some(at("2026-03-02T06:00:00Z")));
}

#[test]
fn a_tick_while_running_is_skipped_and_the_next_one_planned() {
    let job = job("EVERY 5 MINUTES");
    let planned = state(&job, Some("2026-03-01T10:05:00Z"), None);
    let d = decide_at(&job, Some(&planned), "2026-03-01T10:05:01Z", Some(41));
    assert_eq!(
        d.action,
        Action::Skip {
            reason: "run 41 of this job was still running".into()
        }
    );
    assert_eq!(d.state.next_run_at, Some(at("2026-03-01T10:10:00Z")));
}

#[test]
fn ticks_missed_while_down_fire_once_by_default() {
    // Down from 06:00 to after 10:00 (scheduler started at 00:00 is before
    // the tick here, so use a tick before the start for catch-up).
    let job = job("HOURLY");
    let planned = state(&job, Some("2026-02-28T20:00:00Z"), None);
    let d = decide_at(&job, Some(&planned), "2026-03-01T00:00:30Z", None);
    assert!(
        matches!(
            d.action,
            Action::Run {
                trigger: RunTrigger::Schedule,
                ..
            }
        ),
        "{d:?}"
    );
    // One run for all missed ticks: the next one is in the future.
    assert_eq!(d.state.next_run_at, Some(at("2026-03-01T01:00:00Z")));
}

#[test]
fn ticks_missed_while_down_are_dropped_with_catch_up_skip() {
    let mut job = job("HOURLY");
    job.catch_up = CatchUp::Skip;
    let planned = state(&job, Some("2026-02-28T20:00:00Z"), None);
    let d = decide_at(&job, Some(&planned), "2026-03-01T00:00:30Z", None);
    assert!(
        matches!(&d.action, Action::Skip { reason } if reason.contains("catch_up")),
        "{d:?}"
    );
    assert_eq!(d.state.next_run_at, Some(at("2026-03-01T01:00:00Z")));

    // A tick that falls due while Sluice is up still runs.
    let d = decide_at(&job, Some(&d.state), "2026-03-01T01:00:00Z", None);
    assert!(matches!(d.action, Action::Run { .. }), "{d:?}");
}

#[test]
fn a_pending_retry_fires_before_the_next_tick() {
    let job = job("DAILY AT '06:00'");
    let planned = state(&job, Some("2026-03-02T06:00:00Z"), Some((2, "2026-03-01T10:01:00Z")));
    let d = decide_at(&job, Some(&planned), "2026-03-01T10:01:00Z", None);
    assert_eq!(
        d.action,
        Action::Run {
            trigger: RunTrigger::Retry,
            attempt: 2,
            due: at("2026-03-01T10:01:00Z")
        }
    );
    assert_eq!(d.state.next_run_at, Some(at("2026-03-02T06:00:00Z")));
    assert_eq!(d.state.retry, None, "the retry is consumed");
}

#[test]
fn retries_only_transient_failures_and_only_max_retries_times() {
    let backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(3600),
    };
    let job = job("HOURLY");
    let now = at("2026-03-01T10:00:00Z");
    assert_eq!(retry_after_failure(&job, 0, false, now, &backoff), None);
    let first = retry_after_failure(&job, 0, true, now, &backoff).unwrap();
    assert_eq!(first.attempt, 1);
    let wait = (first.at - now).num_milliseconds();
    assert!((8_000..=12_000).contains(&wait), "{wait}");
    let third = retry_after_failure(&job, 2, true, now, &backoff).unwrap();
    assert_eq!(third.attempt, 3);
    let wait = (third.at - now).num_milliseconds();
    assert!((32_000..=48_000).contains(&wait), "{wait}");
    assert_eq!(
        retry_after_failure(&job, 3, true, now, &backoff),
        None,
        "max_retries = 3"
    );
}

#[test]
fn a_continuous_job_runs_whenever_it_is_not_running_and_never_skips() {
    let job = job("CONTINUOUS");
    let start = decide_at(&job, None, "2026-03-01T10:07:00Z", None);
    assert_eq!(
        start.action,
        Action::Run {
            trigger: RunTrigger::Schedule,
            attempt: 0,
            due: at("2026-03-01T10:07:00Z")
        }
    );
    assert_eq!(
        start.state.due_at(),
        None,
        "no tick: the stream's end wakes the scheduler"
    );

    // While its stream runs (or a statement holds it), nothing happens: no skip record.
    let running = decide_at(&job, Some(&start.state), "2026-03-01T11:00:00Z", Some(7));
    assert_eq!(running.action, Action::Wait);
    let held = decide_at(&job, Some(&start.state), "2026-03-01T11:00:00Z", Some(0));
    assert_eq!(held.action, Action::Wait);

    // A stream that ended (stopped by ALTER) starts again at once.
    let again = decide_at(&job, Some(&running.state), "2026-03-01T11:00:01Z", None);
    assert!(matches!(
        again.action,
        Action::Run {
            trigger: RunTrigger::Schedule,
            ..
        }
    ));

    // After a failure it waits for its retry, then runs it.
    let failed = state(&job, None, Some((2, "2026-03-01T11:05:00Z")));
    let waiting = decide_at(&job, Some(&failed), "2026-03-01T11:01:00Z", None);
    assert_eq!(waiting.action, Action::Wait);
    assert_eq!(waiting.state.due_at(), Some(at("2026-03-01T11:05:00Z")));
    let retried = decide_at(&job, Some(&failed), "2026-03-01T11:05:00Z", None);
    assert_eq!(
        retried.action,
        Action::Run {
            trigger: RunTrigger::Retry,
            attempt: 2,
            due: at("2026-03-01T11:05:00Z")
        }
    );
    assert_eq!(retried.state.retry, None);

    // Paused: stopped, and nothing is owed.
    let mut paused = job.clone();
    paused.paused = true;
    let d = decide_at(&paused, Some(&failed), "2026-03-01T11:06:00Z", None);
    assert_eq!((d.action, d.state.due_at()), (Action::Wait, None));
}

#[test]
fn a_failed_stream_is_always_retried_with_a_growing_backoff() {
    let backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(60),
    };
    let now = at("2026-03-01T10:00:00Z");
    // Retries are not limited by max_retries: a stream is meant to be on.
    for (attempt, nominal) in [(0, 10.0), (1, 20.0), (5, 60.0), (50, 60.0)] {
        let retry = continuous_retry(attempt, false, now, &backoff).unwrap();
        assert_eq!(retry.attempt, attempt + 1);
        let wait = (retry.at - now).num_milliseconds() as f64 / 1000.0;
        assert!((nominal * 0.8..=nominal * 1.2).contains(&wait), "{attempt}: {wait}");
    }
}

#[test]
fn a_continuous_job_that_needs_a_resync_waits_for_it() {
    let backoff = Backoff::default();
    // No retry is planned: none could succeed before the resync.
    assert_eq!(continuous_retry(0, true, at("2026-03-01T10:00:00Z"), &backoff), None);
    let job = job("CONTINUOUS");
    for state in [None, Some(state(&job, None, Some((2, "2026-03-01T10:05:00Z"))))] {
        let waiting = decide_for(&job, state.as_ref(), "2026-03-01T11:00:00Z", None, true);
        assert_eq!(waiting.action, Action::Wait);
        assert_eq!(waiting.state.due_at(), None, "the resync's end wakes the scheduler");
    }
    // Resynced: the stream starts again at once.
    let resynced = decide_for(&job, None, "2026-03-01T11:00:00Z", None, false);
    assert!(matches!(
        resynced.action,
        Action::Run {
            trigger: RunTrigger::Schedule,
            ..
        }
    ));
}
