//! Microsoft SQL Server and Azure Synapse Analytics (dedicated and serverless
//! SQL pools) through `tiberius` over TDS, with TLS by rustls: connection
//! tests, and one database's schemas read as a [`Source`](crate::contract::Source).

mod decode;
mod dialect;
mod endpoint;
mod horizon;
mod metadata;
mod parallel;
mod source;
pub mod types;

use std::time::Duration;

use async_trait::async_trait;

use crate::contract::{
    Category, ConnectFailure, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Bool, Enum, Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions,
};
use endpoint::{Endpoint, classify};

/// TDS encryption levels: `off` encrypts the login only, `on` everything
/// when the server can, `required` everything or nothing.
const ENCRYPT: &[&str] = &["off", "on", "required"];

const HOST: O = O::required("host", Text, "server host name or address");
const PORT: O = O::with_default("port", Integer { min: 1, max: 65535 }, "1433", "TCP port");
const DATABASE: O = O::required(
    "database",
    Text,
    "database name; its schemas are the connection's schemas",
);
const PASSWORD: O = O::optional("password", Secret, "password of the SQL login");
const ENCRYPTION: O = O::with_default(
    "encrypt",
    Enum(ENCRYPT),
    "required",
    "TLS: 'required' encrypts everything (refusing a server without TLS), 'on' encrypts when the server offers \
     it, 'off' encrypts the login only",
);
const TRUST: O = O::with_default(
    "trust_server_certificate",
    Bool,
    "false",
    "accept any server certificate (encrypted, not verified); the default verifies it against the system's \
     trusted CAs and the host name",
);

const IDENTITY: &[&str] = &["host", "port", "database", "user"];

pub(crate) static SQLSERVER: ConnectionType = ConnectionType {
    name: "sqlserver",
    display_name: "Microsoft SQL Server",
    category: Category::Relational,
    options: &[
        HOST,
        PORT,
        DATABASE,
        O::required("user", Text, "SQL login name"),
        PASSWORD,
        ENCRYPTION,
        TRUST,
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: IDENTITY,
    driver: Some(Driver {
        connector: &SqlServerConnector,
        source: Some(source::open_sql_server),
        destination: None,
        cdc: None,
    }),
};

pub(crate) static SYNAPSE: ConnectionType = ConnectionType {
    name: "synapse",
    display_name: "Azure Synapse Analytics",
    category: Category::Warehouse,
    options: &[
        O::required("host", Text, "workspace SQL endpoint, e.g. myws.sql.azuresynapse.net"),
        PORT,
        O::required("database", Text, "database (SQL pool) name"),
        O::optional("user", Text, "SQL login name (not with access_token)"),
        PASSWORD,
        O::optional(
            "access_token",
            Secret,
            "Microsoft Entra ID (Azure AD) access token for https://database.windows.net/ (instead of user and \
             password)",
        ),
        ENCRYPTION,
        TRUST,
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: IDENTITY,
    driver: Some(Driver {
        connector: &SqlServerConnector,
        source: Some(source::open_synapse),
        destination: None,
        cdc: None,
    }),
};

struct SqlServerConnector;

#[async_trait]
impl Connector for SqlServerConnector {
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        let mut client = Endpoint::new(options).connect(timeout).await?;
        let checked = async {
            client.simple_query("SELECT 1").await?.into_results().await?;
            client.close().await
        };
        tokio::time::timeout(timeout, checked)
            .await
            .map_err(|_| endpoint::timed_out(timeout))?
            .map_err(classify)
    }
}
