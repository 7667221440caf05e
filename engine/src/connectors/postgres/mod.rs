//! PostgreSQL through `tokio-postgres`, with TLS by rustls: the connection
//! test, and a server's schemas read as a [`Source`](crate::contract::Source)
//! (see [`source`]).

mod cdc;
mod copy_binary;
pub(crate) mod dialect;
mod horizon;
mod metadata;
mod parallel;
mod source;
pub mod types;

use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Enum, Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions, SourceError, error_chain, network_failure_kind,
};
use crate::tls::{self, Verify};

pub(crate) use source::text_rows;

/// libpq's modes plus the default, `verify-if-offered`: TLS checked like
/// `verify-full` when the server offers it, plaintext when it does not.
pub(crate) const SSL_MODES: &[&str] = &[
    "disable",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
    "verify-if-offered",
];

pub(crate) static POSTGRES: ConnectionType = ConnectionType {
    name: "postgres",
    display_name: "PostgreSQL",
    category: Category::Relational,
    options: &[
        O::required("host", Text, "server host name or address"),
        O::with_default("port", Integer { min: 1, max: 65535 }, "5432", "TCP port"),
        O::required("database", Text, "database name"),
        O::required("user", Text, "user name"),
        O::optional("password", Secret, "password"),
        O::with_default(
            "sslmode",
            Enum(SSL_MODES),
            "verify-if-offered",
            "TLS mode, as libpq's sslmode; the default verifies the certificate and host name when the server offers TLS",
        ),
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
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["host", "port", "database", "user"],
    driver: Some(Driver {
        connector: &PostgresConnector,
        source: Some(source::open),
        destination: None,
        cdc: Some(cdc::open),
    }),
};

pub(crate) struct PostgresConnector;

#[async_trait]
impl Connector for PostgresConnector {
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        let endpoint = Endpoint::new(options, timeout);
        let attempt = async {
            let connection = endpoint.open().await?;
            let result = connection
                .client
                .simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(classify);
            connection.close();
            result
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| timed_out(timeout))?
    }
}

/// How to reach one PostgreSQL server: a connection's options, ready for
/// any number of connection attempts.
pub(crate) struct Endpoint {
    config: Config,
    /// `None` for `sslmode=disable`.
    tls: Option<TlsSettings>,
    timeout: Duration,
}

struct TlsSettings {
    verify: Verify,
    root_cert: Option<String>,
}

impl Endpoint {
    /// The endpoint of a connection's options; `timeout` bounds each attempt.
    pub(crate) fn new(options: &ResolvedOptions, timeout: Duration) -> Self {
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
        let (ssl_mode, verify) = match options.text("sslmode").unwrap_or("verify-if-offered") {
            "disable" => (SslMode::Disable, None),
            "verify-if-offered" => (SslMode::Prefer, Some(Verify::ChainAndHost)),
            "prefer" => (SslMode::Prefer, Some(Verify::Nothing)),
            "require" => (SslMode::Require, Some(Verify::Nothing)),
            "verify-ca" => (SslMode::Require, Some(Verify::Chain)),
            _ => (SslMode::Require, Some(Verify::ChainAndHost)),
        };
        config.ssl_mode(ssl_mode);
        let tls = verify.map(|verify| TlsSettings {
            verify,
            root_cert: options.text("sslrootcert").map(str::to_owned),
        });
        Self { config, tls, timeout }
    }

    /// Opens a session, giving up after the endpoint's timeout.
    pub(crate) async fn connect(&self) -> Result<PgConnection, ConnectFailure> {
        tokio::time::timeout(self.timeout, self.open())
            .await
            .map_err(|_| timed_out(self.timeout))?
    }

    async fn open(&self) -> Result<PgConnection, ConnectFailure> {
        match &self.tls {
            None => start(&self.config, NoTls).await,
            Some(settings) => {
                let tls = tls::client_config(settings.verify, settings.root_cert.as_deref())?;
                start(&self.config, MakeRustlsConnect::new(tls)).await
            }
        }
    }
}

/// An open session. Dropping it aborts the session (and whatever query is
/// in flight, e.g. an unfinished `COPY`); [`PgConnection::close`] ends it
/// politely.
pub(crate) struct PgConnection {
    pub(crate) client: Client,
    driver: Option<JoinHandle<()>>,
}

impl PgConnection {
    /// Ends the session: the driver task says goodbye to the server and
    /// finishes on its own.
    pub(crate) fn close(mut self) {
        self.driver = None;
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

async fn start<T>(config: &Config, tls: T) -> Result<PgConnection, ConnectFailure>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(classify)?;
    let driver = tokio::spawn(async move {
        // Errors here also reach the client, which reports them.
        let _ = connection.await;
    });
    Ok(PgConnection {
        client,
        driver: Some(driver),
    })
}

fn timed_out(timeout: Duration) -> ConnectFailure {
    ConnectFailure::new(
        ConnectFailureKind::Timeout,
        format!("no answer within {} s", timeout.as_secs()),
    )
}

/// Classifies a failure to connect, or a connection that broke.
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

/// A failed query: the server's SQLSTATE and message, or a connection
/// failure when the session broke.
pub(crate) fn query_error(err: tokio_postgres::Error) -> SourceError {
    if let Some(db) = err.as_db_error() {
        return SourceError::Query {
            code: Some(db.code().code().to_owned()),
            message: db.message().to_owned(),
        };
    }
    if err.is_closed() || network_failure_kind(&err).is_some() {
        return SourceError::Connect(classify(err));
    }
    SourceError::Query {
        code: None,
        message: error_chain(&err),
    }
}
