//! MySQL and MariaDB through `mysql_async`, with TLS by rustls: connection
//! tests, and the databases of a server read as a [`Source`](crate::contract::Source).

mod cdc;
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
use mysql_async::prelude::Queryable;

use crate::contract::{
    Category, ConnectFailure, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Enum, Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions,
};
use endpoint::{Endpoint, classify};

/// The mysql client's modes plus the default, `verify_if_offered`: TLS
/// checked like `verify_identity` when the server offers it, plaintext when
/// it does not.
const SSL_MODES: &[&str] = &[
    "disabled",
    "preferred",
    "required",
    "verify_ca",
    "verify_identity",
    "verify_if_offered",
];

const OPTIONS: &[O] = &[
    O::required("host", Text, "server host name or address"),
    O::with_default("port", Integer { min: 1, max: 65535 }, "3306", "TCP port"),
    O::optional(
        "database",
        Text,
        "default database (all visible databases when omitted)",
    ),
    O::required("user", Text, "user name"),
    O::optional("password", Secret, "password"),
    O::with_default(
        "ssl_mode",
        Enum(SSL_MODES),
        "verify_if_offered",
        "TLS mode, as the mysql client's --ssl-mode; the default verifies the certificate and host name when the server offers TLS",
    ),
    O::optional(
        "ssl_ca",
        Text,
        "PEM file of CA certificates trusted for verify_ca/verify_identity",
    ),
    O::optional(
        "connect_timeout",
        Integer { min: 1, max: 3600 },
        "seconds to wait for a connection (default: the server's --connect-timeout)",
    ),
    MAX_CONCURRENT_RUNS,
];

const IDENTITY: &[&str] = &["host", "port", "database", "user"];

pub(crate) static MYSQL: ConnectionType = ConnectionType {
    name: "mysql",
    display_name: "MySQL",
    category: Category::Relational,
    options: OPTIONS,
    identity_options: IDENTITY,
    driver: Some(Driver {
        connector: &MysqlConnector,
        source: Some(source::open),
        destination: None,
        cdc: Some(cdc::open),
    }),
};

pub(crate) static MARIADB: ConnectionType = ConnectionType {
    name: "mariadb",
    display_name: "MariaDB",
    category: Category::Relational,
    options: OPTIONS,
    identity_options: IDENTITY,
    driver: Some(Driver {
        connector: &MysqlConnector,
        source: Some(source::open),
        destination: None,
        cdc: Some(cdc::open),
    }),
};

struct MysqlConnector;

#[async_trait]
impl Connector for MysqlConnector {
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        let mut conn = Endpoint::new(options).connect(timeout).await?;
        conn.ping().await.map_err(classify)?;
        conn.disconnect().await.map_err(classify)
    }
}
