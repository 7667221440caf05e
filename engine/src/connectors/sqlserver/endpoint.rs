//! How to reach a SQL Server or Synapse endpoint: driver configuration, TLS
//! by `encrypt` and `trust_server_certificate`, the login (SQL login or an
//! Entra ID access token), and what a failure means. Shared by the
//! connection test and the source.

use std::time::Duration;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::contract::{ConnectFailure, ConnectFailureKind, ResolvedOptions, SourceError};
use crate::tls;

/// An open TDS session.
pub(super) type Session = Client<Compat<TcpStream>>;

/// What tiberius says when the server declines the encryption asked for.
const DECLINED: &str = "does not allow the requested encryption level";

/// The hint for a certificate that did not verify.
const TLS_HINT: &str = "To accept the server's certificate without verifying it, set trust_server_certificate \
                        true; to trust it, add its CA to the system's trusted certificates.";

/// The connection options, checked, as tiberius configurations: the
/// encryption levels to try in order.
#[derive(Clone)]
pub(super) struct Endpoint {
    attempts: Result<Vec<Config>, ConnectFailure>,
}

impl Endpoint {
    /// The endpoint the connection options describe.
    pub(super) fn new(options: &ResolvedOptions) -> Self {
        Self {
            attempts: configs(options),
        }
    }

    /// Opens a session, giving up after `timeout`.
    pub(super) async fn connect(&self, timeout: Duration) -> Result<Session, ConnectFailure> {
        tls::install_default_provider();
        let attempts = self.attempts.clone()?;
        let attempt = async {
            let mut last = ConnectFailure::new(ConnectFailureKind::Other, "no connection attempt");
            for config in attempts {
                match open(config).await {
                    Ok(client) => return Ok(client),
                    Err(err) => {
                        let declined = matches!(&err, tiberius::error::Error::Protocol(m) if m.contains(DECLINED));
                        last = classify(err);
                        if !declined {
                            break;
                        }
                    }
                }
            }
            Err(last)
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| timed_out(timeout))?
    }
}

/// The failure of an attempt that took longer than `timeout`.
pub(super) fn timed_out(timeout: Duration) -> ConnectFailure {
    ConnectFailure::new(
        ConnectFailureKind::Timeout,
        format!("no answer within {} s", timeout.as_secs()),
    )
}

/// One TCP connection and login, following one redirect (Azure's gateway
/// may send a client to the node that serves the database).
async fn open(mut config: Config) -> tiberius::Result<Session> {
    for _ in 0..2 {
        let tcp = TcpStream::connect(config.get_addr()).await?;
        tcp.set_nodelay(true)?;
        match Client::connect(config.clone(), tcp.compat_write()).await {
            Err(tiberius::error::Error::Routing { host, port }) => {
                config.host(&host);
                config.port(port);
            }
            other => return other,
        }
    }
    Err(tiberius::error::Error::Protocol("redirected more than once".into()))
}

/// The configurations `options` describe, one per encryption level to try.
fn configs(options: &ResolvedOptions) -> Result<Vec<Config>, ConnectFailure> {
    let mut base = Config::new();
    base.host(options.text("host").unwrap_or_default());
    base.port(
        options
            .integer("port")
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(1433),
    );
    if let Some(database) = options.text("database") {
        base.database(database);
    }
    base.application_name("sluice");
    if options.boolean("trust_server_certificate") == Some(true) {
        base.trust_cert();
    }
    let password = options.secret("password").map(|s| s.expose());
    let auth = match (options.text("user"), password, options.secret("access_token")) {
        (None, None, Some(token)) => AuthMethod::aad_token(token.expose()),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            return Err(ConnectFailure::new(
                ConnectFailureKind::OptionMismatch,
                "give either access_token or user and password, not both",
            ));
        }
        (Some(user), password, None) => AuthMethod::sql_server(user, password.unwrap_or_default()),
        (None, _, None) => {
            return Err(ConnectFailure::new(
                ConnectFailureKind::OptionMismatch,
                "give user and password, or access_token",
            ));
        }
    };
    base.authentication(auth);
    let levels: &[EncryptionLevel] = match options.text("encrypt").unwrap_or("required") {
        "off" => &[EncryptionLevel::Off, EncryptionLevel::NotSupported],
        "on" => &[EncryptionLevel::Required, EncryptionLevel::NotSupported],
        _ => &[EncryptionLevel::Required],
    };
    Ok(levels
        .iter()
        .map(|&level| {
            let mut config = base.clone();
            config.encryption(level);
            config
        })
        .collect())
}

/// Why a session could not be opened or broke.
pub(super) fn classify(err: tiberius::error::Error) -> ConnectFailure {
    use tiberius::error::Error as E;
    let kind = match &err {
        E::Server(token) => login_failure(token.code()),
        E::Tls(message) => {
            // The driver's own advice names its API, not Sluice's options.
            let cause = message.split(" To connect anyway").next().unwrap_or(message);
            return ConnectFailure::new(ConnectFailureKind::Tls, format!("{cause} {TLS_HINT}"));
        }
        E::Protocol(message) if message.contains(DECLINED) => {
            return ConnectFailure::new(
                ConnectFailureKind::Tls,
                "the server does not offer TLS; set encrypt 'on' to read it in plaintext",
            );
        }
        E::Io { kind, message } => match kind {
            std::io::ErrorKind::ConnectionRefused => ConnectFailureKind::Refused,
            std::io::ErrorKind::TimedOut => ConnectFailureKind::Timeout,
            _ if message.contains("lookup address") || message.contains("Name or service not known") => {
                ConnectFailureKind::Dns
            }
            _ if message.contains("certificate") || message.contains("InvalidCertificate") => {
                return ConnectFailure::new(ConnectFailureKind::Tls, format!("{err}. {TLS_HINT}"));
            }
            _ => ConnectFailureKind::Other,
        },
        _ => ConnectFailureKind::Other,
    };
    ConnectFailure::new(kind, err.to_string())
}

/// What a server error number during login means.
fn login_failure(number: u32) -> ConnectFailureKind {
    match number {
        // Login failed (wrong user or password, or a disabled login).
        18456 | 18470 | 18486 | 18487 | 18488 => ConnectFailureKind::BadPassword,
        // Cannot open the database requested by the login.
        4060 => ConnectFailureKind::UnknownDatabase,
        // Azure: the client's address is not allowed by the firewall.
        40615 => ConnectFailureKind::AccessDenied,
        _ => ConnectFailureKind::Other,
    }
}

/// A failed statement on an open session: the server's refusal, with the
/// SQLSTATE its error number stands for, or a broken connection.
pub(super) fn query_error(err: tiberius::error::Error) -> SourceError {
    match err {
        tiberius::error::Error::Server(token) => SourceError::Query {
            code: sqlstate(token.code()).map(str::to_owned),
            message: format!("{} (SQL Server error {})", token.message(), token.code()),
        },
        other => match classify(other) {
            failure if failure.kind == ConnectFailureKind::Other => SourceError::Query {
                // A session broken mid-statement: the run may be retried.
                code: Some("08006".into()),
                message: failure.detail,
            },
            failure => SourceError::Connect(failure),
        },
    }
}

/// The SQLSTATE of a SQL Server error number, where one fits.
fn sqlstate(number: u32) -> Option<&'static str> {
    Some(match number {
        102 | 156 | 170 => "42601",
        207 => "42703",
        208 => "42P01",
        229 | 230 | 262 | 297 | 300 => "42501",
        245 | 8114 => "22018",
        8115 | 220 | 232 => "22003",
        8134 => "22012",
        1205 => "40P01",
        1222 => "55P03",
        // The server is shutting down, or the database is being recovered.
        6005 | 922 | 40613 => "57P03",
        // Azure throttling and resource limits: worth a retry later.
        40501 | 10928 | 10929 | 49918 | 49919 | 49920 => "53300",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_numbers_get_sqlstates_that_say_whether_to_retry() {
        assert_eq!(sqlstate(208), Some("42P01"));
        assert_eq!(sqlstate(1205), Some("40P01"));
        assert_eq!(sqlstate(40501), Some("53300"));
        assert_eq!(sqlstate(50000), None);
    }

    #[test]
    fn login_errors_say_which_option_is_wrong() {
        assert_eq!(login_failure(18456), ConnectFailureKind::BadPassword);
        assert_eq!(login_failure(18456).sqlstate(), "28P01");
        assert_eq!(login_failure(4060), ConnectFailureKind::UnknownDatabase);
        assert_eq!(login_failure(4060).sqlstate(), "3D000");
        assert_eq!(login_failure(40615).sqlstate(), "42501");
    }

    #[test]
    fn refused_ports_and_declined_tls_are_told_apart() {
        let refused = classify(tiberius::error::Error::Io {
            kind: std::io::ErrorKind::ConnectionRefused,
            message: "Connection refused (os error 111)".into(),
        });
        assert_eq!(refused.kind, ConnectFailureKind::Refused);
        let declined = classify(tiberius::error::Error::Protocol(
            "Server does not allow the requested encryption level.".into(),
        ));
        assert_eq!(declined.kind, ConnectFailureKind::Tls);
        assert!(declined.detail.contains("encrypt 'on'"), "{}", declined.detail);
        let tls = classify(tiberius::error::Error::Tls(
            "invalid peer certificate: UnknownIssuer".into(),
        ));
        assert_eq!(tls.kind, ConnectFailureKind::Tls);
        assert!(tls.detail.contains("trust_server_certificate"), "{}", tls.detail);
    }
}
