//! One module per connection type family; each declares its
//! [`ConnectionType`](crate::connection_types::ConnectionType) entries.

mod bigquery;
mod local;
mod mysql;
mod planned;
mod postgres;

use std::time::Duration;

use async_trait::async_trait;

use crate::connection_types::ConnectionType;
use crate::failure::ConnectFailure;
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
