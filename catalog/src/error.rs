//! Catalog errors. The server maps each variant to a SQLSTATE.

use std::fmt;

/// The kinds of named objects the catalog stores, used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Connection,
    Secret,
    Job,
    Run,
    Alert,
    Role,
    /// A namespace; users see them as databases.
    Database,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Connection => "connection",
            ObjectKind::Secret => "secret",
            ObjectKind::Job => "ETL job",
            ObjectKind::Run => "ETL run",
            ObjectKind::Alert => "alert",
            ObjectKind::Role => "role",
            ObjectKind::Database => "database",
        })
    }
}

/// Everything that can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{kind} \"{name}\" does not exist")]
    NotFound { kind: ObjectKind, name: String },

    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists { kind: ObjectKind, name: String },

    /// Another connection already points at the same server, database and user.
    #[error("connection \"{existing}\" already connects to {identity}; use it instead of creating \"{name}\"")]
    DuplicateCredentials {
        name: String,
        existing: String,
        identity: String,
    },

    /// Another job already loads the destination table.
    #[error(
        "destination table \"{table}\" is already loaded by ETL job \"{job}\"; load this job into another table, or drop ETL job \"{job}\" first"
    )]
    TableTaken { table: String, job: String },

    /// The object is still used by others.
    #[error("cannot drop {kind} \"{name}\" because {} depend on it: {}", dependent_kind_plural(*dependent_kind), quoted(dependents))]
    InUse {
        kind: ObjectKind,
        name: String,
        dependent_kind: ObjectKind,
        dependents: Vec<String>,
    },

    /// A name that cannot be used for this kind of object.
    #[error("invalid {kind} name \"{name}\": use {rule}")]
    InvalidName {
        kind: ObjectKind,
        name: String,
        rule: &'static str,
    },

    /// Another session changed what a transaction read before it committed.
    #[error(
        "could not serialize access: another session changed {} \"{key}\" since this transaction read it; nothing was committed",
        family_object(family)
    )]
    Conflict { family: &'static str, key: String },

    #[error("catalog storage error: {0}")]
    Storage(#[from] rocksdb::Error),

    /// The catalog's files were written by a newer RocksDB than this build
    /// links (Sluice builds before 2026-12-04 bundled RocksDB 11.8).
    #[error(
        "the catalog at {path} was written by a newer RocksDB than this build of Sluice reads ({detail}); dump its definitions with SHOW CREATE ALL WITH STATE from the build that wrote it and replay them into a new data directory (docs/operations.md, Upgrades)"
    )]
    NewerStorageFormat { path: String, detail: String },

    #[error("catalog record {key:?} in {family} is unreadable: {reason}")]
    Corrupt {
        family: &'static str,
        key: String,
        reason: String,
    },

    #[error("{0}")]
    MasterKey(String),

    /// A stored value was asked of a secret kept in an external store.
    #[error("secret \"{name}\" is kept in {external}, not in Sluice; it is fetched when a connection uses it")]
    ExternalSecret {
        name: String,
        external: crate::secret::ExternalSecret,
    },

    #[error("could not {action} the catalog at {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}

fn dependent_kind_plural(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Connection => "connections",
        ObjectKind::Secret => "secrets",
        ObjectKind::Job => "ETL jobs",
        ObjectKind::Run => "ETL runs",
        ObjectKind::Alert => "alerts",
        ObjectKind::Role => "roles",
        ObjectKind::Database => "databases",
    }
}

/// What a family's records are, for messages.
fn family_object(family: &str) -> &str {
    match family {
        "connections" => "connection",
        "secrets" => "secret",
        "jobs" => "ETL job",
        "runs" => "ETL run",
        "alerts" => "alert",
        "roles" => "role",
        other => other,
    }
}

/// Shorthand for catalog results.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
