//! Snowflake through the REST protocol its own connectors speak
//! (`/session/v1/login-request`, `/queries/v1/query-request`, result
//! chunks): connection tests, and a database's schemas read as a
//! [`Source`](crate::contract::Source) whose scans decode Arrow IPC results
//! chunk by chunk. See `docs/sources/snowflake.md`.

mod client;
mod decode;
mod dialect;
mod keypair;
mod metadata;
mod result;
mod source;
pub mod types;

use std::time::Duration;

use async_trait::async_trait;

use crate::contract::{
    Category, ConnectFailure, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions,
};
use client::Endpoint;

pub(crate) static SNOWFLAKE: ConnectionType = ConnectionType {
    name: "snowflake",
    display_name: "Snowflake",
    category: Category::Warehouse,
    options: &[
        O::required(
            "account",
            Text,
            "account identifier, e.g. myorg-myaccount (the host is <account>.snowflakecomputing.com)",
        ),
        O::required("user", Text, "user name"),
        O::optional("password", Secret, "password (or private_key)"),
        O::optional(
            "private_key",
            Secret,
            "unencrypted PKCS#8 PEM RSA private key for key-pair (JWT) authentication",
        ),
        O::optional("warehouse", Text, "virtual warehouse that runs the queries"),
        O::required("database", Text, "database whose schemas are read"),
        O::optional("schema", Text, "default schema"),
        O::optional("role", Text, "role to assume"),
        O::optional(
            "endpoint",
            Text,
            "base URL that replaces https://<account>.snowflakecomputing.com (private link, tests)",
        ),
        O::optional(
            "connect_timeout",
            Integer { min: 1, max: 3600 },
            "seconds to wait for a connection and the login (default: the server's --connect-timeout)",
        ),
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["account", "database", "user"],
    driver: Some(Driver {
        connector: &SnowflakeConnector,
        source: Some(source::open),
        destination: None,
        cdc: None,
    }),
};

struct SnowflakeConnector;

#[async_trait]
impl Connector for SnowflakeConnector {
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        let endpoint = Endpoint::new(options, timeout)?;
        let session = endpoint.login().await?;
        let checked = session.check_context(&endpoint).await;
        session.close().await;
        checked
    }
}
