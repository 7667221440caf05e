//! PostgreSQL through `tokio-postgres`, with TLS by rustls.

use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Config, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connection_types::{Category, ConnectionType, TypeStatus};
use crate::connectors::{Connector, error_chain, network_failure_kind};
use crate::error::{ConnectFailure, ConnectFailureKind};
use crate::options::OptionKind::{Enum, Integer, Secret, Text};
use crate::options::{OptionSpec as O, ResolvedOptions};
use crate::tls::{self, Verify};

const SSL_MODES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];

pub(crate) static POSTGRES: ConnectionType = ConnectionType {
    name: "postgres",
    display_name: "PostgreSQL",
    category: Category::Relational,
    status: TypeStatus::Available,
    options: &[
        O::required("host", Text, "server host name or address"),
        O::with_default("port", Integer { min: 1, max: 65535 }, "5432", "TCP port"),
        O::required("database", Text, "database name"),
        O::required("user", Text, "user name"),
        O::optional("password", Secret, "password"),
        O::with_default("sslmode", Enum(SSL_MODES), "prefer", "TLS mode, as libpq's sslmode"),
        O::optional(
            "sslrootcert",
            Text,
            "PEM file of CA certificates trusted for verify-ca/verify-full",
        ),
        O::optional(
            "connect_timeout",
            Integer { min: 1, max: 3600 },
            "seconds to wait for a connection (default: the server's --connect-timeout)",
        ),
    ],
    identity_options: &["host", "port", "database", "user"],
    connector: Some(&PostgresConnector),
    source: None,
};

struct PostgresConnector;

#[async_trait]
impl Connector for PostgresConnector {
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        let mut config = Config::new();
        config
            .host(options.text("host").unwrap_or_default())
            .port(
                options
                    .integer("port")
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(5432),
            )
            .dbname(options.text("database").unwrap_or_default())
            .user(options.text("user").unwrap_or_default())
            .application_name("sluice")
            .connect_timeout(timeout);
        if let Some(password) = options.secret("password") {
            config.password(password.expose());
        }
        let attempt = async {
            match options.text("sslmode").unwrap_or("prefer") {
                "disable" => ping(config.ssl_mode(SslMode::Disable), NoTls).await,
                mode => {
                    let (ssl_mode, verify) = match mode {
                        "prefer" => (SslMode::Prefer, Verify::Nothing),
                        "require" => (SslMode::Require, Verify::Nothing),
                        "verify-ca" => (SslMode::Require, Verify::Chain),
                        _ => (SslMode::Require, Verify::ChainAndHost),
                    };
                    let tls = tls::client_config(verify, options.text("sslrootcert"))?;
                    ping(config.ssl_mode(ssl_mode), MakeRustlsConnect::new(tls)).await
                }
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

async fn ping<T>(config: &Config, tls: T) -> Result<(), ConnectFailure>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(classify)?;
    let driver = tokio::spawn(connection);
    let result = client.simple_query("SELECT 1").await.map(drop).map_err(classify);
    drop(client);
    let _ = driver.await;
    result
}

fn classify(err: tokio_postgres::Error) -> ConnectFailure {
    if let Some(db) = err.as_db_error() {
        let kind = match db.code().code() {
            "28P01" | "28000" => ConnectFailureKind::BadPassword,
            "3D000" => ConnectFailureKind::UnknownDatabase,
            _ => ConnectFailureKind::Other,
        };
        return ConnectFailure::new(kind, db.message());
    }
    let detail = error_chain(&err);
    let kind = network_failure_kind(&err).unwrap_or(if detail.contains("TLS") || detail.contains("tls") {
        ConnectFailureKind::Tls
    } else {
        ConnectFailureKind::Other
    });
    ConnectFailure::new(kind, detail)
}
