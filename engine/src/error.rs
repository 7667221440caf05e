//! Engine errors. The server maps each variant to a SQLSTATE once.

use sluice_catalog::CatalogError;

use crate::destinations::DestinationError;
use crate::sources::SourceError;

/// Why a live connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailureKind {
    /// The host name does not resolve.
    Dns,
    /// Nothing listens on that host and port.
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// TLS could not be negotiated or the certificate was not trusted.
    Tls,
    /// The server rejected the user name or password.
    BadPassword,
    /// The server has no such database.
    UnknownDatabase,
    /// Any other refusal from the server or the network.
    Other,
}

impl ConnectFailureKind {
    /// A short label, used in messages and `last_error`.
    pub fn label(self) -> &'static str {
        match self {
            ConnectFailureKind::Dns => "host name not found",
            ConnectFailureKind::Refused => "connection refused",
            ConnectFailureKind::Timeout => "timed out",
            ConnectFailureKind::Tls => "TLS failure",
            ConnectFailureKind::BadPassword => "authentication failed",
            ConnectFailureKind::UnknownDatabase => "database does not exist",
            ConnectFailureKind::Other => "connection failed",
        }
    }
}

/// A failed live test of a connection, with the driver's explanation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", kind.label())]
pub struct ConnectFailure {
    pub kind: ConnectFailureKind,
    pub detail: String,
}

impl ConnectFailure {
    /// A failure of the given kind.
    pub fn new(kind: ConnectFailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
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

    #[error("could not connect to \"{connection}\" ({kind_label}): {detail}", kind_label = failure.kind.label(), detail = failure.detail)]
    Connect {
        connection: String,
        failure: ConnectFailure,
    },

    #[error("connection \"{connection}\" is of type {kind}, which cannot be read as a source yet")]
    NotASource { connection: String, kind: String },

    #[error("{connection}: {error}")]
    Source { connection: String, error: SourceError },

    #[error("{message}")]
    InvalidJob { message: String },

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

    #[error("reading from the source failed: {message}")]
    Extract { message: String },

    #[error(transparent)]
    Destination(#[from] DestinationError),

    #[error("run {run_id} was cancelled; nothing of it was committed")]
    Cancelled { run_id: u64 },

    #[error("run {run_id} is not running (it is {status})")]
    RunNotRunning { run_id: u64, status: &'static str },

    /// A queued run that was cancelled or settled before its turn came.
    #[error("run {run_id} is no longer queued (it is {status})")]
    RunNotQueued { run_id: u64, status: &'static str },
}

impl EngineError {
    /// True for failures that may pass by themselves (network, timeouts,
    /// an overloaded or restarting server), so a retry makes sense; false
    /// for configuration and data errors that need a person.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Connect { failure, .. } => failure.kind.is_transient(),
            EngineError::Source { error, .. } => match error {
                SourceError::Connect(failure) => failure.kind.is_transient(),
                // SQLSTATE classes: connection exception, transaction
                // rollback (serialization, deadlock), insufficient
                // resources, operator intervention, system error.
                SourceError::Query { code: Some(code), .. } => ["08", "40", "53", "57", "58"]
                    .iter()
                    .any(|class| code.starts_with(class)),
                SourceError::Query { code: None, .. } | SourceError::NotFound { .. } => false,
            },
            EngineError::Extract { .. } => true,
            EngineError::Destination(error) => match error {
                DestinationError::ObjectStore(_) | DestinationError::Conflict { .. } => true,
                DestinationError::Remote { reason, .. } => {
                    crate::destinations::TRANSIENT_REMOTE_REASONS.contains(&reason.as_str())
                }
                _ => false,
            },
            _ => false,
        }
    }
}

impl ConnectFailureKind {
    /// True for failures that may pass by themselves.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ConnectFailureKind::Refused
                | ConnectFailureKind::Timeout
                | ConnectFailureKind::Dns
                | ConnectFailureKind::Other
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(error: SourceError) -> EngineError {
        EngineError::Source {
            connection: "shop".into(),
            error,
        }
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
        assert!(
            EngineError::Extract {
                message: "reset".into()
            }
            .is_transient()
        );
        assert!(!EngineError::InvalidJob { message: "bad".into() }.is_transient());
        assert!(!EngineError::Cancelled { run_id: 1 }.is_transient());
        let remote = |reason: &str| {
            EngineError::Destination(DestinationError::Remote {
                service: "BigQuery",
                job_id: None,
                reason: reason.into(),
                message: "m".into(),
            })
        };
        assert!(remote("backendError").is_transient());
        assert!(!remote("accessDenied").is_transient());
        assert!(!remote("invalid").is_transient());
    }
}
