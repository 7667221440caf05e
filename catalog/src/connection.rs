//! Connection definitions and their live status.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// One option value of a connection, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum OptionValue {
    Text(String),
    Integer(i64),
    Bool(bool),
    /// A reference to a secret by name; the value lives encrypted in the
    /// secrets family. `owned` secrets were given inline and die with the
    /// connection.
    Secret {
        name: String,
        owned: bool,
    },
}

impl fmt::Display for OptionValue {
    /// Renders the value as SQL, with secrets redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Text(s) => write!(f, "'{}'", s.replace('\'', "''")),
            OptionValue::Integer(i) => write!(f, "{i}"),
            OptionValue::Bool(b) => write!(f, "{b}"),
            OptionValue::Secret { name, owned: false } => write!(f, "SECRET {name}"),
            OptionValue::Secret { owned: true, .. } => f.write_str("'********'"),
        }
    }
}

/// The outcome of the last live test of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// The last test succeeded.
    Ok,
    /// The source or destination refused or could not be reached.
    Failed,
    /// Sluice itself could not run the test (for example a missing secret).
    Error,
    /// Never tested (saved with `validate = false`).
    Unknown,
}

impl ConnectionStatus {
    /// The lower-case name shown in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Ok => "ok",
            ConnectionStatus::Failed => "failed",
            ConnectionStatus::Error => "error",
            ConnectionStatus::Unknown => "unknown",
        }
    }
}

/// The result of a connection test, applied with [`crate::Catalog::update_status`].
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub status: ConnectionStatus,
    pub tested_at: DateTime<Utc>,
    pub error: Option<String>,
}

/// A saved connection to a source or destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub name: String,
    /// The connection type name, e.g. `postgres`.
    pub kind: String,
    pub options: BTreeMap<String, OptionValue>,
    /// What makes two connections "the same" (type, host, port, database,
    /// user); two connections may not share one.
    pub identity: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub status: ConnectionStatus,
    pub last_tested_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ConnectionRecord {
    /// Names of the secrets this connection references.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.options.values().filter_map(|v| match v {
            OptionValue::Secret { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Names of the secrets this connection owns (given inline).
    pub fn owned_secret_names(&self) -> impl Iterator<Item = &str> {
        self.options.values().filter_map(|v| match v {
            OptionValue::Secret { name, owned: true } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Applies a status update.
    pub fn apply(&mut self, update: &StatusUpdate) {
        self.status = update.status;
        self.last_tested_at = Some(update.tested_at);
        self.last_error = update.error.clone();
    }
}

impl Record for ConnectionRecord {
    const FAMILY: &'static str = "connections";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.name.clone()
    }
}
