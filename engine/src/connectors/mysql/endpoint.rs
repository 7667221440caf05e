//! How to reach a MySQL/MariaDB server: driver options, TLS by `ssl_mode`,
//! and what a failure means. Shared by the connection test and the source.

use std::path::PathBuf;
use std::time::Duration;

use mysql_async::{Conn, DriverError, IoError, Opts, OptsBuilder, SslOpts};

use crate::contract::{
    ConnectFailure, ConnectFailureKind, ResolvedOptions, SourceError, error_chain, network_failure_kind,
};
use crate::tls;

/// The connection attempts one `ssl_mode` makes, in order: a later attempt
/// runs only when the one before failed as `fallback` allows.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    attempts: Vec<OptsBuilder>,
    fallback: Fallback,
}

/// When a TLS attempt may be retried in plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    /// After any TLS failure (`preferred`, which does not verify anyway).
    AnyTlsFailure,
    /// Only when the server does not offer TLS (`verify_if_offered`): a
    /// certificate that fails verification is never bypassed.
    ServerWithoutTls,
}

impl Endpoint {
    /// The endpoint the connection options describe.
    pub(super) fn new(options: &ResolvedOptions) -> Self {
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
        let encrypt_only = SslOpts::default()
            .with_danger_accept_invalid_certs(true)
            .with_danger_skip_domain_validation(true);
        // ssl_ca alone when given; else the system's store plus the
        // driver's bundled web PKI roots (as crate::tls::trusted_roots).
        let verified = match options.text("ssl_ca") {
            Some(path) => SslOpts::default()
                .with_root_certs(vec![PathBuf::from(path).into()])
                .with_disable_built_in_roots(true),
            None => SslOpts::default()
                .with_root_certs(tls::system_roots().iter().map(|cert| cert.to_vec().into()).collect()),
        };
        let mode = options.text("ssl_mode").unwrap_or("verify_if_offered");
        let fallback = match mode {
            "verify_if_offered" => Fallback::ServerWithoutTls,
            _ => Fallback::AnyTlsFailure,
        };
        let attempts = match mode {
            "disabled" => vec![base],
            "verify_if_offered" => vec![base.clone().ssl_opts(verified), base],
            "preferred" => vec![base.clone().ssl_opts(encrypt_only), base],
            "required" => vec![base.ssl_opts(encrypt_only)],
            "verify_ca" => vec![base.ssl_opts(verified.with_danger_skip_domain_validation(true))],
            _ => vec![base.ssl_opts(verified)],
        };
        Self { attempts, fallback }
    }

    /// Opens a connection, giving up after `timeout`.
    pub(super) async fn connect(&self, timeout: Duration) -> Result<Conn, ConnectFailure> {
        tls::install_default_provider();
        let attempt = async {
            let mut last = ConnectFailure::new(ConnectFailureKind::Other, "no connection attempt");
            for opts in &self.attempts {
                match Conn::new(Opts::from(opts.clone())).await {
                    Ok(conn) => return Ok(conn),
                    Err(err) => {
                        let server_without_tls =
                            matches!(err, mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer));
                        last = classify(err);
                        let retry = match self.fallback {
                            Fallback::AnyTlsFailure => last.kind == ConnectFailureKind::Tls,
                            Fallback::ServerWithoutTls => server_without_tls,
                        };
                        if !retry {
                            break;
                        }
                    }
                }
            }
            Err(last)
        };
        tokio::time::timeout(timeout, attempt).await.map_err(|_| {
            ConnectFailure::new(
                ConnectFailureKind::Timeout,
                format!("no answer within {} s", timeout.as_secs()),
            )
        })?
    }
}

/// Why a connection could not be opened or broke.
pub(super) fn classify(err: mysql_async::Error) -> ConnectFailure {
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

/// A failed statement on an open connection: the server's refusal, with its
/// SQLSTATE, or a broken connection.
pub(super) fn query_error(err: mysql_async::Error) -> SourceError {
    match err {
        mysql_async::Error::Server(server) => SourceError::Query {
            code: Some(server.state),
            message: server.message,
        },
        other => SourceError::Connect(classify(other)),
    }
}
