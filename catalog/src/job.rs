//! ETL job definitions.

use std::collections::BTreeMap;

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
    Incremental {
        cursor: String,
        start: IncrementalStart,
        /// Re-read a trailing window and drop rows already loaded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lookback: Option<Lookback>,
    },
    /// Replace the whole destination table atomically.
    Snapshot,
    /// Change data capture: the first run loads a snapshot consistent
    /// with the source's change log, later runs apply the changes logged
    /// since (docs/cdc.md).
    Cdc { mode: crate::CdcMode },
}

/// `LOOKBACK ... DEDUPE ON (...)`: each run re-reads the cursor range
/// `(watermark - window, watermark]` again and loads only the rows whose
/// dedupe key the destination does not hold yet in that range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookback {
    pub window: LookbackWindow,
    /// The columns that identify a row.
    pub dedupe_on: Vec<String>,
}

/// How far before the watermark a run starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookbackWindow {
    /// A duration, for timestamp and date cursors (whole days for dates).
    Seconds(u64),
    /// A number of cursor values, for integer cursors.
    Values(u64),
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

/// Where a job's loads run (`WITH (execution = ...)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Execution {
    /// On the cluster when the server has one and the job can run there,
    /// else on the server.
    #[default]
    Default,
    /// Always on the server.
    Local,
    /// Always on the cluster; a run that cannot fails.
    Cluster,
}

impl Execution {
    /// The lower-case name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Execution::Default => "default",
            Execution::Local => "local",
            Execution::Cluster => "cluster",
        }
    }
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

fn is_default_execution(execution: &Execution) -> bool {
    *execution == Execution::Default
}

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

/// Options of the table a job's destination creates (BigQuery:
/// `partition_expiration_days`, `require_partition_filter`, `cluster_by`),
/// from the job's `WITH (...)`, by option name. The catalog keeps them
/// opaque: each destination declares, checks and reads its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TableOptions(BTreeMap<String, serde_json::Value>);

impl TableOptions {
    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: serde_json::Value) {
        self.0.insert(name.to_owned(), value);
    }

    /// The options, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    /// The options as one JSON object, for a destination to deserialize
    /// into its own settings type.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.0.clone().into_iter().collect())
    }
}

/// The commit guard of an incremental job (`WITH (commit_guard = 'on',
/// guard_margin = '5 seconds', guard_max_hold = '1 hour')`): a run reads no
/// cursor value above the start of the oldest transaction still open on the
/// source, minus `margin_seconds`, unless that transaction has been open for
/// more than `max_hold_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitGuard {
    pub enabled: bool,
    pub margin_seconds: u64,
    pub max_hold_seconds: u64,
}

impl Default for CommitGuard {
    fn default() -> Self {
        Self {
            enabled: true,
            margin_seconds: 5,
            max_hold_seconds: 3600,
        }
    }
}

impl CommitGuard {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// What a run does when the source table no longer matches the job's
/// columns (`WITH (on_schema_change = 'evolve' | 'fail')`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaChangePolicy {
    /// Follow added and dropped columns and widened types; fail on the rest.
    #[default]
    Evolve,
    /// Fail the run on any change.
    Fail,
}

impl SchemaChangePolicy {
    /// The lower-case name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaChangePolicy::Evolve => "evolve",
            SchemaChangePolicy::Fail => "fail",
        }
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// How often the scheduler runs `VERIFY ETL JOB` after the job's runs
/// (`WITH (verify = 'daily' | 'off')`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifySchedule {
    /// Only when asked.
    #[default]
    Off,
    /// After a run, at most once a day.
    Daily,
}

impl VerifySchedule {
    /// The lower-case name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifySchedule::Off => "off",
            VerifySchedule::Daily => "daily",
        }
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A column the job loads, as it saw the source at `CREATE ETL JOB` and
/// after each schema change a run followed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobColumn {
    pub name: String,
    /// The source's type, as the source writes it (`character varying(20)`).
    pub source_type: String,
    /// The Arrow type the source's type maps to (Arrow's type syntax).
    pub source_arrow: String,
    /// The destination column's Arrow type (after a `COLUMNS` override).
    pub arrow: String,
    /// The destination type tag (e.g. `JSON`) the column carries, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Whether the destination column is NULLABLE.
    pub nullable: bool,
    /// Dropped at the source: kept in the destination, loaded as NULL.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
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
    /// Parallel source streams (`WITH (parallelism = n)`); `None` is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Where its loads run.
    #[serde(default, skip_serializing_if = "is_default_execution")]
    pub execution: Execution,
    /// Retries of a failed scheduled run; transient errors only.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// What the scheduler does with ticks missed while Sluice was down.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// The destination table's options, as given at creation.
    #[serde(default, skip_serializing_if = "TableOptions::is_empty")]
    pub layout: TableOptions,
    /// How incremental runs wait for transactions still open on the source.
    #[serde(default, skip_serializing_if = "CommitGuard::is_default")]
    pub guard: CommitGuard,
    /// What a run does when the source table changed.
    #[serde(default, skip_serializing_if = "SchemaChangePolicy::is_default")]
    pub on_schema_change: SchemaChangePolicy,
    /// Whether the scheduler verifies the job after its runs.
    #[serde(default, skip_serializing_if = "VerifySchedule::is_default")]
    pub verify: VerifySchedule,
    /// The loaded columns as last seen; empty for jobs saved before Sluice
    /// recorded them (their next run records them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<JobColumn>,
    /// Seconds the newest data at the destination may age before the job
    /// is `stale` (`WITH (freshness_target = '2 hours')`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness_target_seconds: Option<u64>,
    /// Free-form `key=value` labels (`WITH (labels = 'team=finance')`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Connection options of the source changed for this job's reads (a
    /// document store's `sample`, `keep_document`, `on_type_mismatch`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_settings: BTreeMap<String, crate::OptionValue>,
    /// Set once the job's watermark was cleared on purpose (`RESET
    /// WATERMARK`, a change of load type or cursor): a run that starts
    /// without a watermark then replaces the destination's rows with its
    /// window instead of appending to them, so that no row is loaded twice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reload: bool,
    /// The settings of a CDC job (`soft_delete`, `max_retained_wal`).
    #[serde(default, skip_serializing_if = "crate::CdcSettings::is_default")]
    pub cdc: crate::CdcSettings,
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
    /// 2: incremental loads may carry a `lookback`, jobs a `parallelism`
    /// (both absent in version 1). 3: jobs may carry a table `layout`.
    const VERSION: u32 = 3;

    fn migrate(version: u32, data: serde_json::Value) -> std::result::Result<serde_json::Value, String> {
        match version {
            // Version 1 had neither lookback nor parallelism, version 2 no
            // layout; absent reads as none.
            1 | 2 => Ok(data),
            v => Err(format!("no migration from job record version {v} to {}", Self::VERSION)),
        }
    }

    fn key(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode, encode};

    const VERSION_1: &str = r#"{"v":1,"data":{"name":"j","source":{"connection":"c","schema":"public","table":"t","columns":null},
        "destination":{"connection":null,"table":"bq_t"},"load":{"type":"incremental","cursor":"at","start":"all"},
        "column_overrides":[],"schedule":"MANUAL","batch_rows":8192,"paused":false,
        "created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z"}}"#;

    #[test]
    fn version_1_jobs_load_without_a_lookback_and_new_ones_keep_it() {
        let mut job: JobRecord = decode(b"j", VERSION_1.as_bytes()).unwrap();
        assert_eq!(
            job.load,
            LoadType::Incremental {
                cursor: "at".into(),
                start: IncrementalStart::All,
                lookback: None
            }
        );
        job.load = LoadType::Incremental {
            cursor: "at".into(),
            start: IncrementalStart::All,
            lookback: Some(Lookback {
                window: LookbackWindow::Seconds(7200),
                dedupe_on: vec!["id".into()],
            }),
        };
        assert_eq!(decode::<JobRecord>(b"j", &encode(&job)).unwrap(), job);
    }

    #[test]
    fn version_2_jobs_load_with_the_default_layout_and_new_ones_keep_theirs() {
        let version_2 = VERSION_1.replace(r#"{"v":1,"#, r#"{"v":2,"#);
        let mut job: JobRecord = decode(b"j", version_2.as_bytes()).unwrap();
        assert!(job.layout.is_empty());
        job.layout.set("partition_expiration_days", serde_json::json!(30));
        job.layout.set("cluster_by", serde_json::json!(["id", "at"]));
        assert_eq!(decode::<JobRecord>(b"j", &encode(&job)).unwrap(), job);
        job.layout = TableOptions::default();
        assert_eq!(decode::<JobRecord>(b"j", &encode(&job)).unwrap(), job);
    }

    #[test]
    fn a_layout_saved_as_a_struct_reads_back_as_the_same_options() {
        // Version 3 records written before the options became opaque.
        let saved = VERSION_1.replace(r#"{"v":1,"#, r#"{"v":3,"#);
        let mut value: serde_json::Value = serde_json::from_str(&saved).unwrap();
        value["data"]["layout"] = serde_json::json!({
            "partition_expiration_days": 30,
            "require_partition_filter": true,
            "cluster_by": ["id", "at"]
        });
        let job: JobRecord = decode(b"j", value.to_string().as_bytes()).unwrap();
        assert_eq!(
            job.layout.to_json(),
            serde_json::json!({"partition_expiration_days": 30, "require_partition_filter": true, "cluster_by": ["id", "at"]})
        );
    }
}
