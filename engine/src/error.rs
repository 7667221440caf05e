//! Engine errors. The server maps each variant to a SQLSTATE once.

use std::error::Error;
use std::sync::OnceLock;

use datafusion::error::DataFusionError;
use sluice_catalog::CatalogError;

use crate::contract::{ConnectFailure, DestinationError, SourceError};

/// A table `CREATE ETL JOBS` could not give a job, and why.
#[derive(Debug, thiserror::Error)]
#[error("table \"{table}\": {error}")]
pub struct TableFailure {
    pub table: String,
    pub error: Box<EngineError>,
}

/// A connection that fails its test with a secret's new value.
#[derive(Debug, thiserror::Error)]
#[error("connection \"{connection}\" fails with the new value: {error}")]
pub struct ConnectionFailure {
    pub connection: String,
    pub error: Box<EngineError>,
}

/// Everything the engine reports to the server.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),

    #[error(transparent)]
    PathNotAllowed(#[from] crate::allowed_paths::PathNotAllowed),

    #[error("unknown connection type \"{name}\"; known types: {}", known.join(", "))]
    UnknownConnectionType { name: String, known: Vec<String> },

    #[error(
        "connection type \"{name}\" is not supported yet (status: {status}); SHOW CONNECTION TYPES lists the ones that are available"
    )]
    UnsupportedConnectionType { name: String, status: &'static str },

    #[error("{message}")]
    InvalidOption { option: String, message: String },

    /// An option name the connection type does not have.
    #[error("{message}")]
    UnknownOption { option: String, message: String },

    #[error("could not connect to \"{connection}\" ({kind_label}): {detail}", kind_label = failure.kind.label(), detail = failure.detail)]
    Connect {
        connection: String,
        failure: ConnectFailure,
    },

    #[error("connection \"{connection}\" is of type {kind}, which cannot be read as a source yet")]
    NotASource { connection: String, kind: String },

    #[error("connection \"{connection}\" is of type {kind}, whose changes cannot be captured")]
    NotAChangeSource { connection: String, kind: String },

    #[error("{connection}: {error}")]
    Source { connection: String, error: SourceError },

    /// Change data capture could not be set up or continue at the source.
    #[error("{connection}: {error}")]
    ChangeCapture {
        connection: String,
        error: crate::contract::CdcError,
    },

    /// `DROP ETL JOB` of a CDC job could not drop what the job holds at
    /// its source (a replication slot): the job stays, unless `FORCE`.
    #[error("ETL job \"{job}\" is not dropped: {objects} could not be dropped at {connection}: {error}")]
    SourceObjectsKept {
        job: String,
        /// `replication slot "..."`, with `and publication "..."`.
        objects: String,
        connection: String,
        error: Box<crate::contract::CdcError>,
    },

    #[error("{message}")]
    InvalidJob { message: String },

    /// A `CREATE ALERT` the engine refuses: its webhook URL or header.
    #[error("{message}")]
    InvalidAlert { message: String },

    /// `CREATE ETL JOBS` created nothing: these tables failed.
    #[error(
        "no ETL jobs were created: {} failed: {}",
        match failures.len() { 1 => "1 table".to_owned(), n => format!("{n} tables") },
        failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    JobsNotCreated { failures: Vec<TableFailure> },

    #[error("column \"{column}\" does not exist in {table}; its columns are: {}", existing.join(", "))]
    UnknownColumn {
        table: String,
        column: String,
        existing: Vec<String>,
    },

    #[error(
        "connection \"{connection}\" is of type {kind}, which cannot be a destination yet; leave out INTO's connection to load into the local warehouse"
    )]
    NotADestination { connection: String, kind: String },

    #[error("ETL job \"{job}\" is already running (run {run_id}); wait for it or CANCEL ETL RUN {run_id}")]
    JobRunning { job: String, run_id: u64 },

    /// `CREATE OR REPLACE` would change what cannot change in place.
    #[error("CREATE OR REPLACE cannot change {what} of {kind} \"{name}\": {why}")]
    CannotReplace {
        kind: &'static str,
        name: String,
        what: String,
        why: &'static str,
    },

    /// An edit of a loaded job (`ALTER ETL JOB`, `CREATE OR REPLACE`) that
    /// its destination table cannot follow; nothing was changed.
    #[error("ETL job \"{job}\" cannot change as asked: {reason}")]
    CannotEdit { job: String, reason: String },

    /// Source rows that could not be turned into the job's columns: a
    /// deterministic failure, never retried.
    #[error("reading from the source failed: {message}")]
    Extract { message: String },

    /// A run's extract could not run on the cluster, or a task failed
    /// there for good; nothing was committed.
    #[error("the cluster at {scheduler} could not run the extract: {message}")]
    Cluster { scheduler: String, message: String },

    /// A run on the cluster that the job or the server cannot have.
    #[error("ETL job \"{job}\" cannot run on the cluster: {reason}")]
    NotForCluster { job: String, reason: String },

    /// A connection option names, as `SECRET name`, the inline secret of a
    /// connection (its own or another's).
    #[error(
        "connection \"{connection}\" cannot use secret \"{secret}\": it is the inline secret of a connection and belongs to that connection alone"
    )]
    ForeignSecret { connection: String, secret: String },

    /// `ALTER CONNECTION` moves a connection to another endpoint but keeps
    /// stored secrets, which would then be sent to the new endpoint.
    #[error(
        "ALTER CONNECTION {connection} changes {} but keeps the stored {}; give {} again in the same ALTER, so the old secret is never sent to the new server",
        changed.join(", "), secrets.join(", "), secrets.join(", ")
    )]
    SecretNotRepeated {
        connection: String,
        changed: Vec<String>,
        secrets: Vec<String>,
    },

    /// A secret kept in an external store could not be read when a
    /// connection needed it. Names the reference, never the value.
    #[error("secret \"{secret}\" could not be read from {external}: {problem}")]
    ExternalSecret {
        secret: String,
        external: sluice_catalog::ExternalSecret,
        problem: crate::secret_stores::SecretFetchProblem,
    },

    /// A date or time computed from a job's definition falls outside the
    /// range of dates.
    #[error("{message}")]
    DatetimeOverflow { message: String },

    #[error(transparent)]
    Destination(#[from] DestinationError),

    /// A connection name that SQL already uses for something built in.
    #[error("connection name \"{name}\" is reserved: it is {builtin}; choose another name")]
    ReservedName { name: String, builtin: &'static str },

    #[error("run {run_id} was cancelled; nothing of it was committed")]
    Cancelled { run_id: u64 },

    #[error("run {run_id} is not running (it is {status})")]
    RunNotRunning { run_id: u64, status: &'static str },

    #[error("ETL job \"{job}\" has no running or queued run to cancel")]
    JobNotRunning { job: String },

    /// A run's task panicked; the run was settled like one a crash interrupted.
    #[error("run {run_id} stopped on an internal error ({message}); it was settled as after a crash")]
    RunPanicked { run_id: u64, message: String },

    /// A test failure point (`SLUICE_FAILPOINTS`) failed the step.
    #[error(transparent)]
    Failpoint(#[from] crate::failpoint::FailpointHit),

    /// The source table changed in a way the job does not follow (or
    /// its `on_schema_change` is `'fail'`); the run loaded nothing.
    #[error("the source table of ETL job \"{job}\" changed: column \"{column}\" {change}; nothing was loaded. {fix}")]
    SchemaChange {
        job: String,
        column: String,
        change: String,
        fix: String,
    },

    /// A queued run that was cancelled or settled before its turn came.
    #[error("run {run_id} is no longer queued (it is {status})")]
    RunNotQueued { run_id: u64, status: &'static str },

    /// VERIFY or REPAIR of a job that has no watermark yet.
    #[error("ETL job \"{job}\" has not loaded anything yet; RUN ETL JOB {job} first")]
    NothingLoaded { job: String },

    /// An operation the job's load type, columns or connections cannot do.
    #[error("{operation} ETL JOB {job}: {reason}")]
    OperationNotSupported {
        operation: &'static str,
        job: String,
        reason: String,
    },
}

impl EngineError {
    /// True for failures that may pass by themselves (network, timeouts,
    /// an overloaded or restarting server), so a retry makes sense; false
    /// for configuration and data errors that need a person.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Connect { failure, .. } => failure.kind.is_transient(),
            EngineError::Source { error, .. } => error.is_transient(),
            EngineError::Destination(error) => error.is_transient(),
            _ => false,
        }
    }
}

impl EngineError {
    /// A scan stream's error with its type restored: the [`SourceError`],
    /// [`EngineError`] or failure point a source wrapped into DataFusion,
    /// anything else as [`EngineError::Extract`].
    pub fn from_scan(connection: &str, error: DataFusionError) -> Self {
        let source = |error: SourceError| EngineError::Source {
            connection: connection.into(),
            error,
        };
        let error = match error {
            DataFusionError::External(inner) => match inner.downcast::<SourceError>() {
                Ok(typed) => return source(*typed),
                Err(inner) => match inner.downcast::<EngineError>() {
                    Ok(typed) => return *typed,
                    Err(inner) => match inner.downcast::<crate::failpoint::FailpointHit>() {
                        Ok(hit) => return EngineError::Failpoint(*hit),
                        Err(inner) => DataFusionError::External(inner),
                    },
                },
            },
            other => other,
        };
        match find_cause::<SourceError>(&error) {
            Some(typed) => source(typed.clone()),
            None => EngineError::Extract {
                message: error.strip_backtrace(),
            },
        }
    }

    /// The SQLSTATE of this error, as the registered mapping (see
    /// [`set_sqlstate_mapping`]) gives it; `None` before one is registered.
    pub fn sqlstate(&self) -> Option<String> {
        SQLSTATE_MAPPING.get().map(|map| map(self))
    }
}

static SQLSTATE_MAPPING: OnceLock<fn(&EngineError) -> String> = OnceLock::new();

/// Registers the one mapping from errors to SQLSTATEs (the server's), so
/// that run records keep the SQLSTATE of the error that ended them. Only
/// the first registration counts.
pub fn set_sqlstate_mapping(map: fn(&EngineError) -> String) {
    let _ = SQLSTATE_MAPPING.set(map);
}

/// The first error of type `T` in the chain of `error` and its sources
/// (DataFusion wraps errors in `External`, `Shared`, `ArrowError` ...).
pub fn find_cause<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::ConnectFailureKind;

    fn source(error: SourceError) -> EngineError {
        EngineError::Source {
            connection: "shop".into(),
            error,
        }
    }

    #[test]
    fn a_failure_point_in_a_scan_stays_a_failure_point() {
        let hit = crate::failpoint::FailpointHit {
            name: "between_files".into(),
        };
        let error = EngineError::from_scan("lake", DataFusionError::External(Box::new(hit)));
        assert!(
            matches!(&error, EngineError::Failpoint(hit) if hit.name == "between_files"),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "failpoint between_files failed the step");
    }

    #[test]
    fn only_failures_that_may_pass_are_transient() {
        let connect = |kind| EngineError::Connect {
            connection: "shop".into(),
            failure: ConnectFailure::new(kind, "x"),
        };
        assert!(connect(ConnectFailureKind::Refused).is_transient());
        assert!(connect(ConnectFailureKind::Timeout).is_transient());
        assert!(!connect(ConnectFailureKind::BadPassword).is_transient());
        assert!(!connect(ConnectFailureKind::UnknownDatabase).is_transient());
        let query = |code: Option<&str>| {
            source(SourceError::Query {
                code: code.map(str::to_owned),
                message: "m".into(),
            })
        };
        assert!(query(Some("40P01")).is_transient(), "deadlock");
        assert!(query(Some("57P01")).is_transient(), "admin shutdown");
        assert!(query(Some("08006")).is_transient(), "connection failure");
        assert!(!query(Some("42P01")).is_transient(), "undefined table");
        assert!(!query(None).is_transient());
        assert!(
            !source(SourceError::NotFound {
                kind: "table",
                name: "t".into(),
                nearby: vec![]
            })
            .is_transient()
        );
        assert!(query(Some("40001")).is_transient(), "serialization failure");
        assert!(!query(Some("22003")).is_transient(), "NaN or out of range");
        assert!(!query(Some("2202E")).is_transient(), "array subscript");
        assert!(
            !EngineError::Extract {
                message: "cannot cast".into()
            }
            .is_transient(),
            "a conversion fails again"
        );
        assert!(!EngineError::InvalidJob { message: "bad".into() }.is_transient());
        assert!(!EngineError::Cancelled { run_id: 1 }.is_transient());
    }

    #[test]
    fn scan_errors_keep_their_type_through_datafusion() {
        let nan = SourceError::Query {
            code: Some("22003".into()),
            message: "column \"n\": numeric 'NaN' cannot be represented".into(),
        };
        let direct = EngineError::from_scan("shop", DataFusionError::External(Box::new(nan.clone())));
        assert!(
            matches!(&direct, EngineError::Source { connection, error: SourceError::Query { code: Some(c), .. } } if connection == "shop" && c == "22003"),
            "{direct:?}"
        );
        assert!(!direct.is_transient());
        let wrapped = DataFusionError::Context(
            "scan".into(),
            Box::new(DataFusionError::ArrowError(
                Box::new(datafusion::arrow::error::ArrowError::ExternalError(Box::new(
                    DataFusionError::External(Box::new(nan)),
                ))),
                None,
            )),
        );
        assert!(matches!(
            EngineError::from_scan("shop", wrapped),
            EngineError::Source {
                error: SourceError::Query { .. },
                ..
            }
        ));
        assert!(matches!(
            EngineError::from_scan("shop", DataFusionError::Execution("x".into())),
            EngineError::Extract { .. }
        ));
    }
}
