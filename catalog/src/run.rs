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
    /// `REPAIR ETL JOB`: one cursor window loaded again.
    Repair,
    /// `ALTER ETL JOB`: the watermark moved by hand (`SET` or `RESET
    /// WATERMARK`, a change of load type); nothing was loaded.
    Watermark,
    /// `RESYNC ETL JOB`: a CDC job's fresh snapshot and new replication slot.
    Resync,
    /// The WAL guardian giving up the replication slot of a CDC job that
    /// was not running (paused, failing, between scheduled runs).
    Guardian,
}

impl RunTrigger {
    /// The lower-case name shown in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Manual => "manual",
            RunTrigger::Schedule => "schedule",
            RunTrigger::Retry => "retry",
            RunTrigger::Repair => "repair",
            RunTrigger::Watermark => "watermark",
            RunTrigger::Resync => "resync",
            RunTrigger::Guardian => "guardian",
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
    /// Bytes the load uploaded, from destinations that report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_uploaded: Option<u64>,
    /// Load jobs finished, from destinations that run load jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_jobs_done: Option<u64>,
    /// Load jobs submitted, from destinations that run load jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_jobs_total: Option<u64>,
    /// The SQLSTATE of `error`, for runs that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// The commit guard's cap on the cursor, as cursor text, when one applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_cap: Option<String>,
    /// What set the cap, or why the run was not guarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_reason: Option<String>,
    /// Set when the guard let rows through that an open transaction could
    /// still precede: it was held open past `guard_max_hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_warning: Option<String>,
    /// Table operations the run spent on its destination table (jobs that
    /// write it, failed ones too), from destinations with a daily quota of
    /// them (BigQuery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_ops: Option<u64>,
    /// A run on a cluster: its tasks, those done, and the executors that
    /// ran them (`id (tasks), ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_done: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executors: Option<String>,
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
            bytes_uploaded: None,
            load_jobs_done: None,
            load_jobs_total: None,
            sqlstate: None,
            guard_cap: None,
            guard_reason: None,
            guard_warning: None,
            table_ops: None,
            tasks_done: None,
            tasks_total: None,
            executors: None,
        }
    }
}

/// The runs that decide a job's health, freshness, failure streak and last
/// error, from its runs given newest first: its newest runs back to and
/// including the newest successful one, returned oldest first. Everything
/// the engine judges a job by lies in that range, so a job with a long
/// history costs a read of its latest runs only.
pub fn since_last_success<E>(newest_first: impl Iterator<Item = Result<RunRecord, E>>) -> Result<Vec<RunRecord>, E> {
    let mut runs = Vec::new();
    for run in newest_first {
        let run = run?;
        let succeeded = run.status == RunStatus::Succeeded;
        runs.push(run);
        if succeeded {
            break;
        }
    }
    runs.reverse();
    Ok(runs)
}

/// Runs are keyed by zero-padded id so that key order is run order.
pub fn run_key(id: u64) -> String {
    format!("{id:020}")
}

/// A run's key in the run index: the job's name, a NUL, and the run id as
/// big-endian bytes, so that one job's runs are one key range in run order.
pub(crate) fn run_index_key(job: &str, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(job.len() + 9);
    key.extend_from_slice(job.as_bytes());
    key.push(0);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

impl Record for RunRecord {
    const FAMILY: &'static str = "runs";
    /// 2: runs may carry `bytes_uploaded`, `load_jobs_done` and
    /// `load_jobs_total` (absent in version 1).
    const VERSION: u32 = 2;

    fn migrate(version: u32, data: serde_json::Value) -> std::result::Result<serde_json::Value, String> {
        match version {
            // Absent counters read as not reported.
            1 => Ok(data),
            v => Err(format!("no migration from run record version {v} to {}", Self::VERSION)),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode, encode};

    const VERSION_1: &str = r#"{"v":1,"data":{"id":3,"job":"j","status":"succeeded","trigger":"manual",
        "started_at":"2024-01-01T00:00:00Z","finished_at":"2024-01-01T00:00:05Z","rows":10,"bytes":200,
        "watermark_from":null,"watermark_to":"5","error":null}}"#;

    #[test]
    fn version_1_runs_load_without_shipping_counters_and_new_ones_keep_them() {
        let mut run: RunRecord = decode(b"3", VERSION_1.as_bytes()).unwrap();
        assert_eq!((run.id, run.rows, run.bytes), (3, 10, 200));
        assert_eq!(
            (run.bytes_uploaded, run.load_jobs_done, run.load_jobs_total),
            (None, None, None)
        );
        run.bytes_uploaded = Some(200);
        run.load_jobs_done = Some(2);
        run.load_jobs_total = Some(3);
        assert_eq!(decode::<RunRecord>(b"3", &encode(&run)).unwrap(), run);
    }
}
