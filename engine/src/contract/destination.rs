//! What a destination implements: [`Destination`] holds tables with a
//! fixed Arrow schema, and each load runs in a [`LoadTransaction`] whose
//! [`commit`](LoadTransaction::commit) publishes its batches atomically
//! together with the run id and watermark the next run starts from.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::object_store;
use datafusion::parquet::errors::ParquetError;
use datafusion::scalar::ScalarValue;

use super::shared_load::{SharedTarget, WrittenFile};
use super::shipping::ShipProgress;
use super::source::{Dialect, QueryBuilder, TextRows};
use super::table_options::TableOptions;
use super::whole_file::WholeFile;

/// How a load changes its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Adds the loaded rows to the table (incremental loads).
    Append,
    /// Replaces all rows of the table with the loaded ones (snapshots).
    Replace,
}

/// What a destination needs to set a table up: its schema, and what the
/// job knows that a destination may use for layout and documentation.
/// Destinations use what applies to them and ignore the rest.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub schema: SchemaRef,
    /// The job that loads the table, for the table's description.
    pub job: String,
    /// The incremental cursor column, `None` for snapshots.
    pub cursor: Option<String>,
    /// The source's primary key columns that the job loads.
    pub primary_key: Vec<String>,
    /// The destination's table options from the job's `WITH (...)`.
    pub layout: TableOptions,
}

/// What [`Destination::ensure_table`] did.
/// How a change-data-capture job applies its change batches
/// ([`Destination::begin_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSpec {
    pub mode: sluice_catalog::CdcMode,
    /// The columns that identify a row (the source's primary key).
    pub key: Vec<String>,
    /// `MERGE`: a delete sets `_sluice_deleted_at` instead of removing the row.
    pub soft_delete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSetup {
    /// The table was made now; the caller drops it if it cannot go on.
    Created,
    /// An existing table with a compatible schema is used as it is.
    Adopted,
}

/// What the last committed load of a table recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitState {
    pub run_id: u64,
    /// The watermark the load committed with.
    pub watermark: Option<String>,
    /// When the load committed, where the destination records it.
    pub committed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What one commit published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitReport {
    pub rows: u64,
    /// Stored (compressed) bytes.
    pub bytes: u64,
    pub files: usize,
}

/// What a remote service's failure means, as the connector that read it
/// knows: the engine retries on `transient`, the server reports `sqlstate`
/// and `hint`, and neither knows the service's own reason strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDiagnosis {
    /// Whether the same request may succeed later.
    pub transient: bool,
    /// The SQLSTATE a client sees.
    pub sqlstate: &'static str,
    /// What to do about it, where the connector knows.
    pub hint: Option<String>,
}

/// Why a destination could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The table does not exist.
    #[error("destination table \"{0}\" does not exist")]
    TableNotFound(String),
    /// The name cannot be a table name.
    #[error(
        "\"{0}\" is not a valid destination table name (it must be non-empty, must not start with '.', and must \
         not contain control characters or any of / \\ {{ }} [ ] < > ^ % ` \" ~ # | * ?)"
    )]
    InvalidTableName(String),
    /// Columns of the table and of the load differ, one entry per difference.
    #[error("the schema of destination table \"{table}\" does not match: {}", differences.join("; "))]
    SchemaMismatch { table: String, differences: Vec<String> },
    /// Another load of the same table committed first, or removed this
    /// load's files; nothing of this load is visible.
    #[error("destination table \"{table}\" was changed by a concurrent load: {detail}")]
    Conflict { table: String, detail: String },
    /// A manifest could not be read as one.
    #[error("corrupt manifest {path}: {reason}")]
    CorruptManifest { path: String, reason: String },
    /// A remote service refused a request or failed a job; `reason` and
    /// `message` are the service's own words, `diagnosis` what they mean.
    #[error("{service} {}failed: {reason}: {message}", job_id.as_ref().map(|id| format!("job {id} ")).unwrap_or_default())]
    Remote {
        service: &'static str,
        job_id: Option<String>,
        reason: String,
        message: String,
        /// Boxed: the error stays small on every `Result` path.
        diagnosis: Box<RemoteDiagnosis>,
    },
    #[error("storage error: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("parquet error: {0}")]
    Parquet(#[from] ParquetError),
    #[error("arrow error: {0}")]
    Arrow(#[from] ArrowError),
    /// The task encoding a load's files ended without a result.
    #[error("the Parquet encoder of the load stopped unexpectedly")]
    EncoderStopped,
    /// A change batch larger than its memory budget could not be held on
    /// local disk (`SLUICE_CDC_SPILL_MB`, the temporary directory `TMPDIR`).
    #[error("cannot hold the change batch's rows in {path}: {source}")]
    Spill { path: String, source: std::io::Error },
    /// The warehouse location cannot be used.
    #[error("invalid warehouse location \"{location}\": {reason}")]
    InvalidLocation { location: String, reason: String },
    /// Reading the table back failed.
    #[error("query error: {0}")]
    Query(#[from] DataFusionError),
    /// The destination cannot do this; the job needs another destination
    /// or has to do without the feature.
    #[error("the destination of table \"{table}\" does not support {feature}")]
    Unsupported { table: String, feature: &'static str },
    /// A column's type has no column type in the destination; `reason`
    /// names the column and the override that loads it.
    #[error("destination table \"{table}\" cannot hold a column: {reason}")]
    UnsupportedColumnType { table: String, reason: String },
    /// The job's table layout settings (partitioning, clustering) do not
    /// fit its columns; `reason` names the setting.
    #[error("destination table \"{table}\": {reason}")]
    InvalidLayout { table: String, reason: String },
    /// A connection option's value cannot be used; `message` names the
    /// option and what it takes.
    #[error("{message}")]
    InvalidOption { option: &'static str, message: String },
    /// A connection option does not match what exists at the destination
    /// (a BigQuery dataset in another location); `reason` names the object,
    /// both values and the fix.
    #[error("{reason}")]
    OptionMismatch { reason: String },
    /// A source file loaded whole could not be copied as it was listed:
    /// it changed, or its copy is not what its footer said.
    #[error("cannot load {file} as it is: {reason}")]
    CopiedFile { file: String, reason: String },
    /// Captured changes that cannot be applied as they are.
    #[error("destination table \"{table}\" cannot apply the captured changes: {reason}")]
    Changes { table: String, reason: String },
}

impl DestinationError {
    /// True for failures that may pass by themselves, so a retry makes
    /// sense: storage errors, a concurrent load, a source file that changed
    /// while it was copied, and a remote service's failure its diagnosis
    /// calls transient.
    pub fn is_transient(&self) -> bool {
        match self {
            DestinationError::ObjectStore(_)
            | DestinationError::Conflict { .. }
            | DestinationError::CopiedFile { .. } => true,
            DestinationError::Remote { diagnosis, .. } => diagnosis.transient,
            _ => false,
        }
    }
}

/// A place ETL jobs load tables into.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Creates the table `spec` describes. An existing table with a
    /// compatible schema is adopted; a different schema is a
    /// [`DestinationError::SchemaMismatch`] listing the differences.
    async fn ensure_table(&self, spec: &TableSpec) -> Result<TableSetup, DestinationError>;

    /// Drops the table and all its data.
    async fn drop_table(&self, table: &str) -> Result<(), DestinationError>;

    /// Checks that `schedule` fits the destination's per-table quotas
    /// (BigQuery's daily table operations); the error says what fits.
    fn check_schedule(&self, _table: &str, _schedule: &crate::schedule::Schedule) -> Result<(), String> {
        Ok(())
    }

    /// Whether run `run_id` committed a load of the table (and with which
    /// watermark, where the destination records it); `None` if it did not.
    /// Start-up reconciliation asks this for runs a crash interrupted.
    async fn committed_run(&self, table: &str, run_id: u64) -> Result<Option<CommitState>, DestinationError>;

    /// What the table's last committed load recorded, for destinations
    /// that record the run and its watermark with the data; `None` when
    /// never loaded or not recorded. Start-up compares it with the
    /// catalog's watermarks (a catalog restored from a backup is behind).
    async fn last_commit(&self, _table: &str) -> Result<Option<CommitState>, DestinationError> {
        Ok(None)
    }

    /// The `key_columns` of the committed rows whose `cursor` column is past
    /// `after` (of every row when `None`), in the table's types: the rows a
    /// `LOOKBACK` run reads again. Destinations that cannot read rows back
    /// keep this default, which refuses.
    async fn loaded_keys(
        &self,
        table: &str,
        key_columns: &[String],
        cursor: &str,
        after: Option<&ScalarValue>,
    ) -> Result<SendableRecordBatchStream, DestinationError> {
        let _ = (key_columns, cursor, after);
        Err(DestinationError::Unsupported {
            table: table.to_owned(),
            feature: "reading loaded keys back (LOOKBACK ... DEDUPE ON)",
        })
    }

    /// Changes the table's columns to `schema` when a job follows a source
    /// schema change: columns appended as NULLABLE, columns made NULLABLE,
    /// column types widened ([`crate::type_mapping::widens`]); the rows
    /// stay as they are. Nothing happens when the table has that schema
    /// already (a run that failed after changing it is run again). Any
    /// other difference is a [`DestinationError::SchemaMismatch`] and
    /// changes nothing. Destinations that cannot change a table keep this
    /// default, which refuses.
    async fn evolve_table(&self, table: &str, schema: &SchemaRef) -> Result<(), DestinationError> {
        let _ = schema;
        Err(DestinationError::Unsupported {
            table: table.to_owned(),
            feature: "changing a table's columns (on_schema_change = 'evolve')",
        })
    }

    /// The names of the table's columns, in the table's order: a job that
    /// follows a schema change keeps them in place ([`Self::evolve_table`]
    /// appends). Destinations that cannot change a table keep this default,
    /// which refuses.
    async fn column_names(&self, table: &str) -> Result<Vec<String>, DestinationError> {
        Err(DestinationError::Unsupported {
            table: table.to_owned(),
            feature: "listing a table's columns",
        })
    }

    /// What a load of `table` in `mode` does, step by step, for EXPLAIN.
    fn load_steps(&self, table: &str, mode: WriteMode) -> Vec<String> {
        let publish = match mode {
            WriteMode::Append => "append",
            WriteMode::Replace => "replace the table with",
        };
        vec![format!(
            "load: {publish} the rows of the run in \"{table}\" in one transaction"
        )]
    }

    /// The SQL dialect of [`Destination::query_text`]; `None` when the
    /// destination cannot run queries.
    fn query_dialect(&self) -> Option<&'static dyn Dialect> {
        None
    }

    /// Runs the read-only query `sql` builds around the reference to
    /// `table`, where the data is, and returns its rows as text (VERIFY's
    /// aggregates). Destinations that cannot keep this default, which
    /// refuses.
    async fn query_text(&self, table: &str, sql: QueryBuilder<'_>) -> Result<TextRows, DestinationError> {
        let _ = sql;
        Err(DestinationError::Unsupported {
            table: table.to_owned(),
            feature: "queries over its rows (VERIFY ETL JOB)",
        })
    }

    /// The committed rows whose `cursor` column is outside `[from, to)`
    /// (NULL included), in the table's schema: what `REPAIR ETL JOB`
    /// keeps when it replaces the rows of that window. Destinations that
    /// cannot read rows back keep this default, which refuses.
    async fn rows_outside(
        &self,
        table: &str,
        cursor: &str,
        from: &ScalarValue,
        to: &ScalarValue,
    ) -> Result<SendableRecordBatchStream, DestinationError> {
        let _ = (cursor, from, to);
        Err(DestinationError::Unsupported {
            table: table.to_owned(),
            feature: "replacing the rows of a cursor window (REPAIR ETL JOB)",
        })
    }

    /// Starts a load of run `run_id` whose commit replaces, in one atomic
    /// step at the destination, the committed rows whose `cursor` column
    /// is in `[from, to)` with the rows written (`REPAIR ETL JOB`), and
    /// records the run and watermark as [`LoadTransaction::commit`] does.
    /// `None` when the destination has no such step: the repair then reads
    /// the rows outside the window back ([`Destination::rows_outside`]) and
    /// replaces the whole table with them and the window.
    async fn begin_window_replace(
        &self,
        table: &str,
        run_id: u64,
        cursor: &str,
        from: &ScalarValue,
        to: &ScalarValue,
    ) -> Result<Option<Box<dyn LoadTransaction>>, DestinationError> {
        let _ = (table, run_id, cursor, from, to);
        Ok(None)
    }

    /// Whether [`Destination::begin_changes`] applies captured changes
    /// (what `CREATE ETL JOB ... CDC` checks first).
    fn supports_changes(&self) -> bool {
        false
    }

    /// Starts applying captured changes to `table`: the transaction's
    /// batches are change rows ([`crate::cdc::change_schema`]) in log order,
    /// and its commit publishes them atomically with the source position
    /// (as JSON) the next batch continues after.
    async fn begin_changes(
        &self,
        table: &str,
        run_id: u64,
        spec: &ChangeSpec,
    ) -> Result<Box<dyn LoadTransaction>, DestinationError> {
        let _ = (run_id, spec);
        Err(DestinationError::Unsupported {
            table: table.to_owned(),
            feature: "applying captured changes (CDC)",
        })
    }

    /// Whether its plain loads (not repairs or change batches) can take
    /// files a cluster's executors write ([`LoadTransaction::shared_target`]).
    fn shares_files(&self) -> bool {
        false
    }

    /// Starts loading run `run_id` into an existing table.
    async fn begin(
        &self,
        table: &str,
        run_id: u64,
        mode: WriteMode,
    ) -> Result<Box<dyn LoadTransaction>, DestinationError>;
}

/// One load in progress. Nothing of it is visible until
/// [`commit`](LoadTransaction::commit); dropping it without committing is
/// an abort whose leftovers the destination cleans later.
#[async_trait]
pub trait LoadTransaction: Send {
    /// Adds a batch with the table's column names and types.
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError>;

    /// Atomically publishes everything written, recording the run id and
    /// `watermark`. Readers see all of it or none.
    async fn commit(self: Box<Self>, watermark: Option<String>) -> Result<CommitReport, DestinationError>;

    /// Discards everything written.
    async fn abort(self: Box<Self>) -> Result<(), DestinationError>;

    /// Whether [`LoadTransaction::copy_file`] takes whole Parquet files.
    fn copies_files(&self) -> bool {
        false
    }

    /// Adds the rows of `file` by copying it as it is, its columns being
    /// the table's except `file.constants`. Destinations that decode every
    /// row keep this default, which refuses.
    async fn copy_file(&mut self, file: WholeFile) -> Result<(), DestinationError> {
        Err(DestinationError::CopiedFile {
            file: file.url,
            reason: "this destination does not load files as they are".into(),
        })
    }

    /// The counters of what this load has uploaded (and of its load jobs,
    /// where the destination runs them); `None` if it does not count.
    fn shipping(&self) -> Option<Arc<ShipProgress>> {
        None
    }

    /// Where other processes (a cluster's executors) may write this load's
    /// files, given the columns of the batches it takes (`write`'s);
    /// `None` (the default) for loads they cannot write for.
    fn shared_target(&self, _columns: &SchemaRef) -> Option<SharedTarget> {
        None
    }

    /// Adds files another process wrote at [`shared_target`](Self::shared_target)
    /// to this load; they are published with it or deleted with it.
    /// Destinations without a shared target keep this default, which refuses.
    async fn adopt(&mut self, files: Vec<WrittenFile>) -> Result<(), DestinationError> {
        Err(DestinationError::CopiedFile {
            file: files.first().map(|f| f.name.clone()).unwrap_or_default(),
            reason: "this destination does not take files written elsewhere".into(),
        })
    }
}
