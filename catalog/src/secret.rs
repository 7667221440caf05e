//! Secrets: values encrypted at rest, or references to an external store;
//! never shown back.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::Record;

/// A stored secret: its value sealed with the master key, or where to
/// fetch it from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SecretRecord {
    pub name: String,
    pub source: SecretSource,
    pub created_at: DateTime<Utc>,
    /// The connection that owns an inline secret; `None` for named secrets.
    pub owner: Option<String>,
}

/// Where a secret record's value is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SecretSource {
    /// Nonce followed by the XChaCha20-Poly1305 ciphertext, hex encoded.
    Stored(String),
    /// Fetched when a connection uses it; never kept in the catalog.
    External(ExternalSecret),
}

impl Record for SecretRecord {
    const FAMILY: &'static str = "secrets";
    /// 2: `sealed` became `source` (stored or external).
    const VERSION: u32 = 2;

    fn migrate(version: u32, mut data: Value) -> std::result::Result<Value, String> {
        match version {
            1 => {
                let sealed = data
                    .as_object_mut()
                    .and_then(|fields| fields.remove("sealed"))
                    .ok_or("a version 1 secret record without its sealed value")?;
                data["source"] = serde_json::json!({ "stored": sealed });
                Ok(data)
            }
            v => Err(format!(
                "no migration from secret record version {v} to {}",
                Self::VERSION
            )),
        }
    }

    fn key(&self) -> String {
        self.name.clone()
    }
}

/// A secret kept outside Sluice (`CREATE SECRET name FROM ...`): the
/// catalog keeps only this reference; the value is fetched when a
/// connection that uses it is tested or a run starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "reference", rename_all = "snake_case")]
pub enum ExternalSecret {
    /// An environment variable of the server (`FROM ENV 'VAR'`).
    Env(String),
    /// A file the server reads (`FROM FILE '/path'`), within its allowed paths.
    File(String),
    /// A Google Secret Manager secret version,
    /// `projects/p/secrets/s/versions/v` (`FROM GCP SECRET MANAGER '...'`).
    GcpSecretManager(String),
    /// An AWS Secrets Manager secret, by ARN or name
    /// (`FROM AWS SECRETS MANAGER '...'`).
    AwsSecretsManager(String),
}

impl ExternalSecret {
    /// The kind as shown in `SHOW SECRETS`: `env`, `file`,
    /// `gcp_secret_manager` or `aws_secrets_manager`.
    pub fn kind(&self) -> &'static str {
        match self {
            ExternalSecret::Env(_) => "env",
            ExternalSecret::File(_) => "file",
            ExternalSecret::GcpSecretManager(_) => "gcp_secret_manager",
            ExternalSecret::AwsSecretsManager(_) => "aws_secrets_manager",
        }
    }

    /// The variable, path, version name or ARN.
    pub fn reference(&self) -> &str {
        match self {
            ExternalSecret::Env(r)
            | ExternalSecret::File(r)
            | ExternalSecret::GcpSecretManager(r)
            | ExternalSecret::AwsSecretsManager(r) => r,
        }
    }

    /// The `FROM ...` clause that defines it.
    pub fn to_sql(&self) -> String {
        let store = match self {
            ExternalSecret::Env(_) => "ENV",
            ExternalSecret::File(_) => "FILE",
            ExternalSecret::GcpSecretManager(_) => "GCP SECRET MANAGER",
            ExternalSecret::AwsSecretsManager(_) => "AWS SECRETS MANAGER",
        };
        format!("FROM {store} '{}'", self.reference().replace('\'', "''"))
    }
}

impl fmt::Display for ExternalSecret {
    /// Names the reference for messages, e.g. `environment variable PG_PASSWORD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternalSecret::Env(r) => write!(f, "environment variable {r}"),
            ExternalSecret::File(r) => write!(f, "file {r}"),
            ExternalSecret::GcpSecretManager(r) => write!(f, "GCP Secret Manager secret {r}"),
            ExternalSecret::AwsSecretsManager(r) => write!(f, "AWS Secrets Manager secret {r}"),
        }
    }
}

/// What a secret holds: its value, or where to fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretContent {
    Value(SecretValue),
    External(ExternalSecret),
}

/// What may be shown about a secret: never its value.
#[derive(Debug, Clone)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Connections that reference this secret.
    pub used_by: Vec<String>,
    /// Where the value is fetched from; `None` when Sluice stores it.
    pub external: Option<ExternalSecret>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode, encode};

    #[test]
    fn version_1_records_read_as_stored_and_external_ones_round_trip() {
        let v1 = br#"{"v":1,"data":{"name":"pw","sealed":"abcd","created_at":"2024-01-01T00:00:00Z","owner":null}}"#;
        let record: SecretRecord = decode(b"pw", v1).unwrap();
        assert_eq!(record.source, SecretSource::Stored("abcd".into()));
        let external = SecretRecord {
            source: SecretSource::External(ExternalSecret::Env("PG_PASSWORD".into())),
            ..record
        };
        let again: SecretRecord = decode(b"pw", &encode(&external)).unwrap();
        assert_eq!(again.source, external.source);
        assert_eq!(
            ExternalSecret::File("/run/it's".into()).to_sql(),
            "FROM FILE '/run/it''s'"
        );
    }
}
