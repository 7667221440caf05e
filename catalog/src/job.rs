//! ETL job definitions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// Where a job reads from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSource {
    pub connection: String,
    pub schema: String,
    pub table: String,
    /// The columns to load, in order; `None` loads every column.
    pub columns: Option<Vec<String>>,
}

/// Where a job writes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDestination {
    /// The destination connection; `None` is the built-in local warehouse.
    pub connection: Option<String>,
    pub table: String,
}

/// Where the first incremental run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncrementalStart {
    /// Now minus this many days.
    BackfillDays(u32),
    /// From this date or timestamp (as written).
    Since(String),
    /// From the beginning.
    All,
}

/// How each run loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum LoadType {
    /// Append rows whose cursor is past the watermark.
    Incremental { cursor: String, start: IncrementalStart },
    /// Replace the whole destination table atomically.
    Snapshot,
}

/// A user override of a column's destination type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnOverride {
    pub column: String,
    /// BigQuery type text, e.g. `NUMERIC` or `STRING`.
    pub bigquery_type: String,
    /// `Some(true)` for REQUIRED, `Some(false)` for NULLABLE.
    pub required: Option<bool>,
}

/// What the scheduler does with ticks a job missed while Sluice was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Run once for all the missed ticks, then follow the schedule.
    #[default]
    Once,
    /// Drop the missed ticks and wait for the next one.
    Skip,
}

impl CatchUp {
    /// The lower-case name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Once => "once",
            CatchUp::Skip => "skip",
        }
    }
}

/// Retries of a failed scheduled run when the job does not say.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

/// A saved ETL job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    pub source: JobSource,
    pub destination: JobDestination,
    pub load: LoadType,
    pub column_overrides: Vec<ColumnOverride>,
    /// The schedule as normalised text (`MANUAL` when none).
    pub schedule: String,
    /// Rows per Arrow batch while extracting.
    pub batch_rows: u32,
    /// Retries of a failed scheduled run; transient errors only.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// What the scheduler does with ticks missed while Sluice was down.
    #[serde(default)]
    pub catch_up: CatchUp,
    pub paused: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl JobRecord {
    /// Connections the job reads from or writes to.
    pub fn connections(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.source.connection.as_str()).chain(self.destination.connection.as_deref())
    }
}

impl Record for JobRecord {
    const FAMILY: &'static str = "jobs";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.name.clone()
    }
}
