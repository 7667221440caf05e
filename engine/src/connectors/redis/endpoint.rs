//! A Redis server as the options give it: address, TLS, ACL user and
//! password, database number; connections and why they fail.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError};

use crate::contract::{
    ConnectFailure, ConnectFailureKind, ResolvedOptions, SourceError, error_chain, network_failure_kind,
};

/// Seconds a single command may take before the read fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how to connect.
#[derive(Clone)]
pub(super) struct Endpoint {
    host: String,
    port: u16,
    database: i64,
    user: Option<String>,
    password: Option<String>,
    tls: Tls,
    timeout: Duration,
}

/// The `tls` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Disable,
    /// Encrypted, certificate not checked.
    Require,
    /// Certificate and host name checked against the system's roots.
    VerifyFull,
}

impl Endpoint {
    pub(super) fn new(options: &ResolvedOptions, timeout: Duration) -> Self {
        Self {
            host: options.text("host").unwrap_or_default().to_owned(),
            port: options
                .integer("port")
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(6379),
            database: options.integer("database").unwrap_or(0),
            user: options.text("user").map(str::to_owned),
            password: options.secret("password").map(|s| s.expose().to_owned()),
            tls: match options.text("tls") {
                Some("require") => Tls::Require,
                Some("verify-full") => Tls::VerifyFull,
                _ => Tls::Disable,
            },
            timeout,
        }
    }

    /// The database number, which names the connection's one schema.
    pub(super) fn database(&self) -> i64 {
        self.database
    }

    fn info(&self) -> Result<ConnectionInfo, RedisError> {
        let addr = match self.tls {
            Tls::Disable => ConnectionAddr::Tcp(self.host.clone(), self.port),
            Tls::Require | Tls::VerifyFull => ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: self.tls == Tls::Require,
                tls_params: None,
            },
        };
        let mut redis = redis::RedisConnectionInfo::default().set_db(self.database);
        if let Some(user) = &self.user {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        Ok(addr.into_connection_info()?.set_redis_settings(redis))
    }

    /// A connection that has authenticated and selected the database.
    pub(super) async fn connect(&self) -> Result<MultiplexedConnection, ConnectFailure> {
        if self.tls != Tls::Disable {
            crate::tls::install_default_provider();
        }
        let client = Client::open(self.info().map_err(|e| classify(&e))?).map_err(|e| classify(&e))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout.max(RESPONSE_TIMEOUT)));
        let attempt = client.get_multiplexed_async_connection_with_config(&config);
        let mut connection = tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| timed_out(self.timeout))?
            .map_err(|e| classify(&e))?;
        // A server that wants a password answers the first command NOAUTH.
        let ping = redis::cmd("PING");
        tokio::time::timeout(self.timeout, ping.query_async::<String>(&mut connection))
            .await
            .map_err(|_| timed_out(self.timeout))?
            .map_err(|e| classify(&e))?;
        Ok(connection)
    }
}

fn timed_out(timeout: Duration) -> ConnectFailure {
    ConnectFailure::new(
        ConnectFailureKind::Timeout,
        format!("no answer from the Redis server within {} seconds", timeout.as_secs()),
    )
}

/// Why talking to the server failed.
pub(super) fn classify(error: &RedisError) -> ConnectFailure {
    use ConnectFailureKind as K;
    let code = error.code().unwrap_or_default();
    let detail = error_chain(error);
    let kind = match code {
        "NOAUTH" | "WRONGPASS" => K::BadPassword,
        "NOPERM" => K::AccessDenied,
        _ if error.kind() == redis::ErrorKind::AuthenticationFailed => K::BadPassword,
        _ if detail.contains("DB index is out of range") => K::UnknownDatabase,
        _ if error.is_timeout() => K::Timeout,
        _ if error.is_connection_refusal() => K::Refused,
        _ => network_failure_kind(error).unwrap_or(K::Other),
    };
    let detail = match kind {
        K::BadPassword if code.is_empty() => format!("the Redis server refused the user or password: {detail}"),
        K::BadPassword => format!("the Redis server refused the user or password ({code}): {detail}"),
        K::AccessDenied => format!("the Redis user may not run a command Sluice needs (SCAN, TYPE, reads): {detail}"),
        _ => detail,
    };
    ConnectFailure::new(kind, detail)
}

/// A failed command while reading, as a source error: network and
/// authentication failures as such (retried when transient), anything
/// else the server refused with its message.
pub(super) fn source_error(error: &RedisError) -> SourceError {
    let failure = classify(error);
    if failure.kind == ConnectFailureKind::Other && error.code().is_some() {
        SourceError::Query {
            code: Some("58000".into()),
            message: format!("the Redis server refused a read: {}", failure.detail),
        }
    } else {
        SourceError::Connect(failure)
    }
}
