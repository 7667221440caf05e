//! The one place where typed errors become Postgres ErrorResponses with a
//! SQLSTATE, a message naming the object and a hint with the fix.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::error::{ErrorInfo, PgWireError};
use sluice_catalog::{CatalogError, ObjectKind};
use sluice_engine::contract::{ConnectFailureKind, DestinationError, SourceError};
use sluice_engine::{EngineError, find_cause};

use crate::statements::{ParseError, ParseErrorKind};
use crate::views::quote_ident;

/// Errors of one statement, before they become an ErrorResponse.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error("{0}")]
    Internal(String),
    /// Plain SQL that would write or change shared state.
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("canceling statement due to statement timeout")]
    StatementTimeout,
    /// A bad `SET`, `SHOW` or `RESET` of a session parameter.
    #[error(transparent)]
    Setting(#[from] crate::session_settings::SettingError),
    /// A statement form Sluice does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// A statement that cannot run inside a transaction block.
    #[error("{0} cannot run inside a transaction block")]
    InTransactionBlock(&'static str),
    /// An earlier statement of the transaction block failed.
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    TransactionAborted,
    /// `ROLLBACK TO` or `RELEASE` of a savepoint the block does not have.
    #[error("savepoint \"{0}\" does not exist")]
    NoSuchSavepoint(String),
    /// A savepoint statement outside a transaction block.
    #[error("{0} can only be used in transaction blocks")]
    OutsideTransactionBlock(&'static str),
    /// A statement on a table of the `public` schema.
    #[error(transparent)]
    PublicTable(crate::public_table_error::PublicTableError),
    /// The session's role lacks the privilege (`None`: only the superuser may).
    #[error("permission denied: {kind} needs {}", needs(.needed, .database, .role))]
    PermissionDenied {
        kind: &'static str,
        needed: Option<sluice_catalog::Privilege>,
        /// The session's database.
        database: String,
        role: String,
    },
    /// A role named like the built-in user.
    #[error("role \"{0}\" already exists: it is the built-in superuser")]
    BuiltInRole(String),
    /// A table of another database than the session's.
    #[error("cross-database references are not implemented: {0}")]
    CrossDatabase(String),
    /// A database that cannot be dropped now.
    #[error("cannot drop database \"{database}\": {reason}")]
    DatabaseInUse { database: String, reason: String },
}

/// What a refused statement needs, and the grant that gives it.
fn needs(needed: &Option<sluice_catalog::Privilege>, database: &str, role: &str) -> String {
    match needed {
        Some(p) => format!("{p} on database {database} (GRANT {p} ON DATABASE {database} TO {role})"),
        None => "the superuser: only the built-in user manages roles, grants and databases and reads sluice_admin"
            .to_owned(),
    }
}

/// A statement plain SQL may not run.
#[derive(Debug, thiserror::Error)]
#[error("permission denied: {kind} is not allowed; plain SQL in Sluice is read-only")]
pub struct Refused {
    /// The statement kind, e.g. `CREATE TABLE` or `COPY`.
    pub kind: String,
}

impl From<CatalogError> for StatementError {
    fn from(e: CatalogError) -> Self {
        StatementError::Engine(e.into())
    }
}

/// Builds an ERROR with a SQLSTATE, message and optional hint.
fn error(code: &str, message: String, hint: Option<String>) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), code.into(), message);
    info.hint = hint;
    info
}

impl StatementError {
    /// The ErrorResponse for this error; `offset` is the character offset of
    /// the statement in the query string, for syntax error positions.
    pub fn into_error_info(self, offset: usize) -> ErrorInfo {
        match self {
            StatementError::Parse(e) => {
                let code = match e.kind {
                    ParseErrorKind::Syntax => "42601",
                    ParseErrorKind::NumberOutOfRange => "22003",
                    ParseErrorKind::DatetimeOutOfRange => "22008",
                };
                let mut info = error(code, e.message, None);
                info.position = e.position.map(|p| (p + offset).to_string());
                info
            }
            StatementError::Engine(e) => engine_error(&e),
            StatementError::DataFusion(e) => datafusion_error(&e),
            StatementError::Internal(message) => error("XX000", message, None),
            StatementError::Refused(e) => error(
                "42501",
                e.to_string(),
                Some("Sluice's own statements (CREATE CONNECTION, CREATE ETL JOB, ...) change the catalog; only ETL jobs write the warehouse.".into()),
            ),
            StatementError::StatementTimeout => error(
                "57014",
                StatementError::StatementTimeout.to_string(),
                Some("SET statement_timeout (0 disables it) or the --statement-timeout flag sets the limit.".into()),
            ),
            StatementError::Setting(e) => {
                use crate::session_settings::SettingError;
                let code = match e {
                    SettingError::Unknown(_) => "42704",
                    SettingError::InvalidValue { .. } => "22023",
                    SettingError::ReadOnly(_) => "55P02",
                };
                error(code, e.to_string(), Some(e.hint()))
            }
            StatementError::Unsupported(message) => error("0A000", message, None),
            StatementError::InTransactionBlock(name) => error(
                "25001",
                StatementError::InTransactionBlock(name).to_string(),
                Some("Run it after COMMIT or ROLLBACK, outside BEGIN ... COMMIT.".into()),
            ),
            StatementError::TransactionAborted => error(
                "25P02",
                StatementError::TransactionAborted.to_string(),
                Some("ROLLBACK ends the failed block; nothing it staged was saved.".into()),
            ),
            StatementError::NoSuchSavepoint(name) => {
                error("3B001", StatementError::NoSuchSavepoint(name).to_string(), None)
            }
            StatementError::OutsideTransactionBlock(name) => error(
                "25P01",
                StatementError::OutsideTransactionBlock(name).to_string(),
                Some("Start a block with BEGIN first.".into()),
            ),
            e @ StatementError::PermissionDenied { .. } => error("42501", e.to_string(), None),
            e @ StatementError::BuiltInRole(_) => error("42710", e.to_string(), None),
            e @ StatementError::CrossDatabase(_) => error(
                "0A000",
                e.to_string(),
                Some("Connect to that database (dbname in the connection string) to use its tables.".into()),
            ),
            e @ StatementError::DatabaseInUse { .. } => error("55006", e.to_string(), None),
            StatementError::PublicTable(e) => {
                use crate::public_table_error::PublicTableError;
                let hint = matches!(e, PublicTableError::TooLarge { .. } | PublicTableError::Unsupported(_))
                    .then(|| "Public tables are a small row store for migration tools' bookkeeping; see docs/clients.md.".to_owned());
                let mut info = error(e.code(), e.to_string(), hint);
                info.detail = e.detail();
                info
            }
        }
    }
}

fn engine_error(e: &EngineError) -> ErrorInfo {
    let message = e.to_string();
    match e {
        EngineError::Catalog(c) => catalog_error(c),
        EngineError::PathNotAllowed(_) => error("42501", message, None),
        EngineError::UnknownConnectionType { .. } => error(
            "42704",
            message,
            Some("SHOW CONNECTION TYPES lists every type and its options.".into()),
        ),
        EngineError::UnsupportedConnectionType { .. } => error("0A000", message, None),
        EngineError::InvalidOption { .. } => error(
            "22023",
            message,
            Some("SHOW CONNECTION TYPES lists each type's options.".into()),
        ),
        EngineError::UnknownOption { .. } => error(
            "42601",
            message,
            Some("SHOW CONNECTION TYPES lists each type's options.".into()),
        ),
        EngineError::NotASource { .. } => error("0A000", message, None),
        EngineError::NotAChangeSource { .. } => error("0A000", message, None),
        EngineError::ChangeCapture { error: cdc, .. } => error(cdc.sqlstate().unwrap_or("58000"), message, cdc.hint()),
        EngineError::SourceObjectsKept { job, error: cdc, .. } => error(
            cdc.sqlstate().unwrap_or("58000"),
            message,
            Some(format!(
                "DROP ETL JOB {} FORCE drops the job anyway and names what to drop at the source by hand.",
                quote_ident(job)
            )),
        ),
        EngineError::Source {
            error: source_error,
            connection,
        } => source_error_info(source_error, message, Some(connection)),
        EngineError::Connect { failure, .. } => connect_error(failure.kind, message),
        EngineError::InvalidJob { .. } => error("22023", message, None),
        EngineError::InvalidAlert { .. } => error("22023", message, None),
        EngineError::JobsNotCreated { failures } => {
            let code = failures.first().map_or("XX000".into(), |f| engine_error(&f.error).code);
            error(
                &code,
                message,
                Some("Fix or leave out (EXCEPT (...)) the tables named; DRY RUN shows the plan without creating anything.".into()),
            )
        }
        EngineError::Cancelled { .. } => error("57014", message, None),
        EngineError::RunNotRunning { .. } | EngineError::RunNotQueued { .. } | EngineError::JobNotRunning { .. } => {
            error("55000", message, None)
        }
        EngineError::UnknownColumn { .. } => error("42703", message, None),
        EngineError::NotADestination { .. } => error("0A000", message, None),
        EngineError::ReservedName { .. } => error("42939", message, None),
        EngineError::JobRunning { .. } => error("55006", message, None),
        EngineError::CannotReplace { kind, name, .. } => {
            let statement = if *kind == "connection" { "CONNECTION" } else { "ETL JOB" };
            error(
                "55000",
                message,
                Some(format!("DROP {statement} {name} first, then create it again.")),
            )
        }
        EngineError::CannotEdit { job, .. } => error(
            "55000",
            message,
            Some(format!(
                "The destination table only grows: columns may be added (NULLABLE) or no longer loaded, types only relaxed from REQUIRED to NULLABLE. To load it otherwise, DROP ETL JOB {job} WITH DATA and create it again."
            )),
        ),
        EngineError::NothingLoaded { .. } => error("55000", message, None),
        EngineError::OperationNotSupported { .. } => error("0A000", message, None),
        EngineError::RunPanicked { .. } | EngineError::Failpoint(_) => error("XX000", message, None),
        EngineError::Extract { .. } => error("22000", message, None),
        EngineError::Cluster { .. } => error("58000", message, None),
        EngineError::NotForCluster { .. } => error(
            "0A000",
            message,
            Some("Run it on this server with WITH (execution = 'local').".into()),
        ),
        EngineError::SchemaChange { .. } => error("55000", message, None),
        EngineError::ForeignSecret { .. } => error(
            "42501",
            message,
            Some("CREATE SECRET a named secret and use SECRET name in every connection that shares it.".into()),
        ),
        EngineError::SecretNotRepeated { .. } => error("28000", message, None),
        EngineError::ExternalSecret { problem, .. } => external_secret_error(problem, message),
        EngineError::DatetimeOverflow { .. } => error("22008", message, None),
        EngineError::Destination(DestinationError::Remote { diagnosis, .. }) => {
            error(diagnosis.sqlstate, message, diagnosis.hint.clone())
        }
        EngineError::Destination(
            DestinationError::Unsupported { .. } | DestinationError::UnsupportedColumnType { .. },
        ) => error("0A000", message, None),
        EngineError::Destination(DestinationError::InvalidLayout { .. } | DestinationError::OptionMismatch { .. }) => {
            error("22023", message, None)
        }
        EngineError::Destination(DestinationError::InvalidOption { .. }) => error(
            "22023",
            message,
            Some("SHOW CONNECTION TYPES lists each type's options.".into()),
        ),
        EngineError::Destination(_) => error("58030", message, None),
    }
}

/// The SQLSTATE of an engine error: what run records keep (registered
/// with [`sluice_engine::set_sqlstate_mapping`] at start-up).
pub fn engine_sqlstate(e: &EngineError) -> String {
    engine_error(e).code
}

/// A source's error; `connection` names it where known (plain SQL scans
/// reach here without it).
fn source_error_info(e: &SourceError, message: String, connection: Option<&str>) -> ErrorInfo {
    match e {
        SourceError::NotFound { kind, .. } => {
            let code = if *kind == "column" { "42703" } else { "42704" };
            let hint = connection.map(|c| format!("SHOW TABLES FROM {c} lists what exists."));
            error(code, message, hint)
        }
        SourceError::Connect(failure) => connect_error(failure.kind, message),
        SourceError::Query { code, .. } => error(code.as_deref().unwrap_or("XX000"), message, None),
    }
}

fn connect_error(kind: ConnectFailureKind, message: String) -> ErrorInfo {
    let hint = kind.hint();
    let hint = format!("{hint} To save a connection without testing it, add WITH (validate = false).");
    error(kind.sqlstate(), message, Some(hint))
}

fn catalog_error(e: &CatalogError) -> ErrorInfo {
    let message = e.to_string();
    match e {
        CatalogError::NotFound { kind, .. } => {
            let list = match kind {
                ObjectKind::Connection => "SHOW CONNECTIONS",
                ObjectKind::Secret => "SHOW SECRETS",
                ObjectKind::Job => "SHOW ETL JOBS",
                ObjectKind::Run => "SHOW ETL RUNS",
                ObjectKind::Alert => "SHOW ALERTS",
                ObjectKind::Role => "SELECT * FROM sluice.roles",
                ObjectKind::Database => {
                    return error("3D000", message, Some("\\l lists the databases.".into()));
                }
            };
            error("42704", message, Some(format!("{list} lists the existing ones.")))
        }
        CatalogError::AlreadyExists {
            kind: ObjectKind::Database,
            ..
        } => error("42P04", message, Some("\\l lists the databases.".into())),
        CatalogError::InvalidName { .. } => error("42602", message, None),
        CatalogError::AlreadyExists {
            kind: ObjectKind::Role, ..
        } => error(
            "42710",
            message,
            Some("Choose another name; \\du lists the roles.".into()),
        ),
        CatalogError::AlreadyExists { kind, .. } => error(
            "42710",
            message,
            Some(format!(
                "Use CREATE {} IF NOT EXISTS to skip existing ones, or choose another name.",
                kind.to_string().to_uppercase()
            )),
        ),
        CatalogError::DuplicateCredentials { .. } | CatalogError::TableTaken { .. } => error("42710", message, None),
        CatalogError::InUse { kind, .. } => {
            let hint = match kind {
                ObjectKind::Connection => "Use DROP CONNECTION ... CASCADE to drop them too.",
                ObjectKind::Database => "Use DROP DATABASE ... CASCADE to drop them too.",
                _ => "Change or drop the dependent objects first.",
            };
            error("2BP01", message, Some(hint.into()))
        }
        CatalogError::Conflict { .. } => error(
            "40001",
            message,
            Some("Run the transaction again: it will see the other session's change.".into()),
        ),
        CatalogError::Storage(_) | CatalogError::Io { .. } => error("58030", message, None),
        CatalogError::Corrupt { .. } | CatalogError::NewerStorageFormat { .. } => error("XX001", message, None),
        CatalogError::MasterKey(_) => error("XX000", message, None),
        CatalogError::ExternalSecret { .. } => error("55000", message, None),
    }
}

/// A secret an external store did not give: `28000` when it is missing or
/// refused (fix the reference or the permission), `08001` when the store
/// could not be reached.
fn external_secret_error(problem: &sluice_engine::secret_stores::SecretFetchProblem, message: String) -> ErrorInfo {
    use sluice_engine::secret_stores::SecretFetchProblem as P;
    match problem {
        P::NotFound | P::Forbidden(_) => error(
            "28000",
            message,
            Some(
                "Fix the secret's reference (CREATE OR REPLACE SECRET ... FROM ...) or the server's access to it."
                    .into(),
            ),
        ),
        P::Unavailable(_) => error("08001", message, None),
    }
}

fn datafusion_error(e: &DataFusionError) -> ErrorInfo {
    if let Some(engine) = find_cause::<EngineError>(e) {
        return engine_error(engine);
    }
    if let Some(source) = find_cause::<SourceError>(e) {
        return source_error_info(source, source.to_string(), None);
    }
    let message = e.strip_backtrace();
    let code = match e.find_root() {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::SchemaError(..) => "42703",
        DataFusionError::Plan(m) if m.contains("not found") => "42P01",
        DataFusionError::Plan(_) => "42000",
        DataFusionError::ResourcesExhausted(_) => "53200",
        _ => "XX000",
    };
    let hint = (code == "53200").then(|| "Plain SQL shares the --query-memory pool; narrow the query.".to_owned());
    error(code, message, hint)
}

/// Gives errors coming out of the DataFusion session proper SQLSTATEs.
pub fn map_session_error(e: PgWireError) -> PgWireError {
    match e {
        PgWireError::ApiError(inner) => {
            let info = if let Some(df) = inner.downcast_ref::<DataFusionError>() {
                datafusion_error(df)
            } else if inner.downcast_ref::<ParserError>().is_some() {
                error("42601", inner.to_string(), None)
            } else {
                error("XX000", inner.to_string(), None)
            };
            PgWireError::UserError(Box::new(info))
        }
        other => other,
    }
}

/// A NOTICE message.
pub fn notice(code: &str, message: String) -> ErrorInfo {
    ErrorInfo::new("NOTICE".into(), code.into(), message)
}
