//! MySQL and MariaDB through `mysql_async`, with TLS by rustls.

use std::time::Duration;

use async_trait::async_trait;
use std::path::PathBuf;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, IoError, Opts, OptsBuilder, SslOpts};

use crate::connection_types::{Category, ConnectionType, TypeStatus};
use crate::connectors::{Connector, error_chain, network_failure_kind};
use crate::error::{ConnectFailure, ConnectFailureKind};
use crate::options::OptionKind::{Enum, Integer, Secret, Text};
use crate::options::{OptionSpec as O, ResolvedOptions};
use crate::tls;

const SSL_MODES: &[&str] = &["disabled", "preferred", "required", "verify_ca", "verify_identity"];

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
        "preferred",
        "TLS mode, as the mysql client's --ssl-mode",
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
];

const IDENTITY: &[&str] = &["host", "port", "database", "user"];

pub(crate) static MYSQL: ConnectionType = ConnectionType {
    name: "mysql",
    display_name: "MySQL",
    category: Category::Relational,
    status: TypeStatus::Available,
    options: OPTIONS,
    identity_options: IDENTITY,
    connector: Some(&MysqlConnector),
    source: None,
};

pub(crate) static MARIADB: ConnectionType = ConnectionType {
    name: "mariadb",
    display_name: "MariaDB",
    category: Category::Relational,
    status: TypeStatus::Available,
    options: OPTIONS,
    identity_options: IDENTITY,
    connector: Some(&MysqlConnector),
    source: None,
};

struct MysqlConnector;

#[async_trait]
impl Connector for MysqlConnector {
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        tls::install_default_provider();
        let base = OptsBuilder::default()
            .ip_or_hostname(options.text("host").unwrap_or_default())
            .tcp_port(
                options
                    .integer("port")
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(3306),
            )
            .user(options.text("user"))
            .pass(options.secret("password").map(|p| p.expose().to_owned()))
            .db_name(options.text("database"))
            .prefer_socket(false);
        let ca = options.text("ssl_ca").map(|path| vec![PathBuf::from(path).into()]);
        let encrypt_only = SslOpts::default()
            .with_danger_accept_invalid_certs(true)
            .with_danger_skip_domain_validation(true);
        let verified = SslOpts::default().with_root_certs(ca.unwrap_or_default());
        let attempt = async {
            match options.text("ssl_mode").unwrap_or("preferred") {
                "disabled" => ping(base).await,
                "preferred" => match ping(base.clone().ssl_opts(encrypt_only)).await {
                    Err(failure) if failure.kind == ConnectFailureKind::Tls => ping(base).await,
                    other => other,
                },
                "required" => ping(base.ssl_opts(encrypt_only)).await,
                "verify_ca" => ping(base.ssl_opts(verified.with_danger_skip_domain_validation(true))).await,
                _ => ping(base.ssl_opts(verified)).await,
            }
        };
        tokio::time::timeout(timeout, attempt).await.map_err(|_| {
            ConnectFailure::new(
                ConnectFailureKind::Timeout,
                format!("no answer within {} s", timeout.as_secs()),
            )
        })?
    }
}

async fn ping(opts: OptsBuilder) -> Result<(), ConnectFailure> {
    let mut conn = Conn::new(Opts::from(opts)).await.map_err(classify)?;
    conn.ping().await.map_err(classify)?;
    conn.disconnect().await.map_err(classify)
}

fn classify(err: mysql_async::Error) -> ConnectFailure {
    let kind = match &err {
        mysql_async::Error::Server(server) => {
            let kind = match server.code {
                1045 => ConnectFailureKind::BadPassword,
                1049 => ConnectFailureKind::UnknownDatabase,
                _ => ConnectFailureKind::Other,
            };
            return ConnectFailure::new(kind, server.message.clone());
        }
        mysql_async::Error::Io(IoError::Tls(_))
        | mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => ConnectFailureKind::Tls,
        other => network_failure_kind(other).unwrap_or(ConnectFailureKind::Other),
    };
    ConnectFailure::new(kind, error_chain(&err))
}
