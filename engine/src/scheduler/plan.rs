//! The scheduler's decision for one job at one moment, as a pure function
//! of the job, its saved state, the time and whether it is running.

use chrono::{DateTime, Utc};
use sluice_catalog::{CatchUp, JobRecord, PendingRetry, RunTrigger, ScheduleState};

use super::Schedule;
use super::retry::Backoff;

/// What the scheduler knows about one job.
pub(super) struct Situation<'a> {
    pub job: &'a JobRecord,
    pub schedule: &'a Schedule,
    pub state: Option<&'a ScheduleState>,
    pub now: DateTime<Utc>,
    /// When this scheduler started: ticks due before it were missed while
    /// Sluice was down.
    pub started_at: DateTime<Utc>,
    /// The job's run in progress, if any.
    pub running: Option<u64>,
    /// A CDC job whose slot was given up (`needs resync`): its runs fail
    /// until `RESYNC ETL JOB`.
    pub needs_resync: bool,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// Nothing is due.
    Wait,
    /// Start a run; `attempt` counts retries of the same failed tick.
    Run {
        trigger: RunTrigger,
        attempt: u32,
        due: DateTime<Utc>,
    },
    /// Record a tick that will not run, and why.
    Skip { reason: String },
}

/// The action, and the state to save once it is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    pub state: ScheduleState,
    pub action: Action,
}

pub(super) fn decide(s: &Situation<'_>) -> Decision {
    let planned = |next_run_at| ScheduleState {
        job: s.job.name.clone(),
        schedule: s.job.schedule.clone(),
        next_run_at,
        retry: None,
    };
    let wait = |state| Decision {
        state,
        action: Action::Wait,
    };
    if s.job.paused || s.schedule.is_manual() {
        return wait(planned(None));
    }
    if s.schedule.is_continuous() {
        return decide_continuous(s);
    }
    // A new job, a changed schedule or a resumed job: plan from now, so a
    // change never fires a burst of old ticks.
    let Some(state) = s
        .state
        .filter(|state| state.schedule == s.job.schedule && state.next_run_at.is_some())
    else {
        return wait(planned(s.schedule.next_after(s.now)));
    };
    let due = match state.due_at() {
        Some(due) if due <= s.now => due,
        _ => return wait(state.clone()),
    };
    // Every tick missed so far is settled by what happens now.
    let next = planned(s.schedule.next_after(s.now));
    let retry = state.retry.filter(|r| r.at <= s.now);
    let tick = state.next_run_at.filter(|t| *t <= s.now);
    if let Some(run_id) = s.running {
        return Decision {
            state: next,
            action: Action::Skip {
                reason: format!("run {run_id} of this job was still running"),
            },
        };
    }
    if retry.is_none() && s.job.catch_up == CatchUp::Skip && tick.is_some_and(|t| t < s.started_at) {
        return Decision {
            state: next,
            action: Action::Skip {
                reason: "missed while Sluice was down (catch_up = 'skip')".into(),
            },
        };
    }
    let (trigger, attempt) = match (tick, retry) {
        (None, Some(retry)) => (RunTrigger::Retry, retry.attempt),
        (_, retry) => (RunTrigger::Schedule, retry.map_or(0, |r| r.attempt)),
    };
    Decision {
        state: next,
        action: Action::Run { trigger, attempt, due },
    }
}

/// A `CONTINUOUS` job (not paused) has no ticks: its stream runs whenever
/// it is not running, after a failure once its retry is due, and not at
/// all while it needs a resync (`RESYNC ETL JOB` runs it, then the stream
/// starts again).
fn decide_continuous(s: &Situation<'_>) -> Decision {
    let retry = s
        .state
        .filter(|state| state.schedule == s.job.schedule)
        .and_then(|state| state.retry);
    let state = |retry| ScheduleState {
        job: s.job.name.clone(),
        schedule: s.job.schedule.clone(),
        next_run_at: None,
        retry,
    };
    match retry {
        // Its end wakes the scheduler up.
        _ if s.running.is_some() => Decision {
            state: state(retry),
            action: Action::Wait,
        },
        // The resync's end wakes the scheduler up.
        _ if s.needs_resync => Decision {
            state: state(None),
            action: Action::Wait,
        },
        Some(retry) if retry.at > s.now => Decision {
            state: state(Some(retry)),
            action: Action::Wait,
        },
        Some(retry) => Decision {
            state: state(None),
            action: Action::Run {
                trigger: RunTrigger::Retry,
                attempt: retry.attempt,
                due: retry.at,
            },
        },
        None => Decision {
            state: state(None),
            action: Action::Run {
                trigger: RunTrigger::Schedule,
                attempt: 0,
                due: s.now,
            },
        },
    }
}

/// The retry owed after a `CONTINUOUS` job's stream failed at `now` in
/// attempt `attempt` (0 for a stream that had been running for a while):
/// one after a backoff that grows with the failures in a row, unless the
/// job needs a resync (no retry can succeed before it).
pub(super) fn continuous_retry(
    attempt: u32,
    needs_resync: bool,
    now: DateTime<Utc>,
    backoff: &Backoff,
) -> Option<PendingRetry> {
    let attempt = attempt.saturating_add(1);
    (!needs_resync).then(|| PendingRetry {
        attempt,
        at: now + backoff.delay(attempt),
    })
}

/// The retry owed after scheduled attempt `attempt` failed at `now`, if the
/// error is transient and the job has retries left.
pub(super) fn retry_after_failure(
    job: &JobRecord,
    attempt: u32,
    transient: bool,
    now: DateTime<Utc>,
    backoff: &Backoff,
) -> Option<PendingRetry> {
    (transient && attempt < job.max_retries).then(|| {
        let attempt = attempt + 1;
        PendingRetry {
            attempt,
            at: now + backoff.delay(attempt),
        }
    })
}

#[cfg(test)]
mod tests;
