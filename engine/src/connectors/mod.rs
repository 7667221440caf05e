//! One module per connection type family; each declares its
//! [`ConnectionType`](crate::connection_types::ConnectionType) entries.

pub(crate) mod bigquery;
mod local;
mod mysql;
mod planned;
mod postgres;

use std::time::Duration;

use async_trait::async_trait;

use crate::connection_types::ConnectionType;
use crate::error::ConnectFailure;
use crate::options::ResolvedOptions;

/// A live driver for one connection type.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Opens a connection with these options and checks that it works,
    /// giving up after `timeout`.
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure>;
}

/// Every connection type, in the order `SHOW CONNECTION TYPES` lists them.
pub(crate) static ALL: &[&ConnectionType] = &[
    &postgres::POSTGRES,
    &mysql::MYSQL,
    &mysql::MARIADB,
    &planned::ORACLE,
    &planned::SQLSERVER,
    &planned::DB2,
    &planned::REDSHIFT,
    &bigquery::BIGQUERY,
    &planned::SNOWFLAKE,
    &planned::SYNAPSE,
    &planned::TERADATA,
    &planned::GCS,
    &planned::S3,
    &planned::AZURE_BLOB,
    &planned::MONGODB,
    &planned::CASSANDRA,
    &planned::REDIS,
    &planned::FIRESTORE,
    &planned::DYNAMODB,
    &local::LOCAL,
];

/// The error and all its sources, joined with ": ", without repeats.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Classifies network-level failures found anywhere in an error's chain.
pub(crate) fn network_failure_kind(
    err: &(dyn std::error::Error + 'static),
) -> Option<crate::error::ConnectFailureKind> {
    use crate::error::ConnectFailureKind as K;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let text = io.to_string();
            return Some(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => K::Refused,
                std::io::ErrorKind::TimedOut => K::Timeout,
                _ if text.contains("lookup address") || text.contains("Name or service not known") => K::Dns,
                _ if text.contains("certificate") || text.contains("tls") || text.contains("TLS") => K::Tls,
                _ => K::Other,
            });
        }
        current = e.source();
    }
    None
}
