//! Runs of ETL jobs and the watermarks they advance.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// A scheduled tick that came while the job was still running.
    Skipped,
}

impl RunStatus {
    /// The lower-case name shown in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Skipped => "skipped",
        }
    }

    /// True once the run can no longer change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled | RunStatus::Skipped
        )
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    Manual,
    Schedule,
    /// The scheduler retrying a failed run.
    Retry,
}

impl RunTrigger {
    /// The lower-case name shown in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Manual => "manual",
            RunTrigger::Schedule => "schedule",
            RunTrigger::Retry => "retry",
        }
    }
}

/// One run of a job. The incremental window `(watermark_from,
/// watermark_to]` is fixed and saved before any data moves, so a retry of the
/// same run reads the same rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: u64,
    pub job: String,
    pub status: RunStatus,
    pub trigger: RunTrigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rows: u64,
    pub bytes: u64,
    /// The exclusive lower bound of the window, as cursor text.
    pub watermark_from: Option<String>,
    /// The inclusive upper bound of the window, as cursor text.
    pub watermark_to: Option<String>,
    pub error: Option<String>,
}

impl RunRecord {
    /// A new run in `Running` state.
    pub fn start(id: u64, job: &str, trigger: RunTrigger) -> Self {
        Self {
            id,
            job: job.into(),
            status: RunStatus::Running,
            trigger,
            started_at: Utc::now(),
            finished_at: None,
            rows: 0,
            bytes: 0,
            watermark_from: None,
            watermark_to: None,
            error: None,
        }
    }
}

/// Runs are keyed by zero-padded id so that key order is run order.
pub fn run_key(id: u64) -> String {
    format!("{id:020}")
}

impl Record for RunRecord {
    const FAMILY: &'static str = "runs";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        run_key(self.id)
    }
}

/// How far a job has loaded: the cursor value of the last committed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub job: String,
    /// The cursor value, as text.
    pub value: String,
    /// The run that committed it.
    pub run_id: u64,
    pub updated_at: DateTime<Utc>,
}

impl Record for Watermark {
    const FAMILY: &'static str = "watermarks";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.job.clone()
    }
}
