//! The scheduler's state of one job: when it fires next and whether a
//! failed run is waiting for a retry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// When the scheduler runs a job next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    pub job: String,
    /// The schedule text `next_run_at` was computed from; a job whose
    /// schedule differs is re-planned.
    pub schedule: String,
    /// The next regular tick; `None` for MANUAL or paused jobs.
    pub next_run_at: Option<DateTime<Utc>>,
    /// A retry of a failed run waiting for its time, if any.
    pub retry: Option<PendingRetry>,
}

/// A retry the scheduler owes a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRetry {
    /// 1 for the first retry.
    pub attempt: u32,
    pub at: DateTime<Utc>,
}

impl ScheduleState {
    /// The earliest time the job is due, regular tick or retry.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match (self.next_run_at, self.retry.map(|r| r.at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Record for ScheduleState {
    const FAMILY: &'static str = "schedules";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.job.clone()
    }
}
