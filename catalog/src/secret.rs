//! Secrets: values encrypted at rest, never shown back.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// A stored secret: its value sealed with the master key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SecretRecord {
    pub name: String,
    /// Nonce followed by the XChaCha20-Poly1305 ciphertext, hex encoded.
    pub sealed: String,
    pub created_at: DateTime<Utc>,
    /// The connection that owns an inline secret; `None` for named secrets.
    pub owner: Option<String>,
}

impl Record for SecretRecord {
    const FAMILY: &'static str = "secrets";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.name.clone()
    }
}

/// What may be shown about a secret: never its value.
#[derive(Debug, Clone)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Connections that reference this secret.
    pub used_by: Vec<String>,
}

/// A decrypted secret value. Its `Debug` and `Display` print `********`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a plain value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain value, for handing to a driver. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}
