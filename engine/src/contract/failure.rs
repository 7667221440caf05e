//! Why a live connection attempt failed: the typed failure every connector,
//! source and the TLS set-up report, and helpers that classify driver errors.
//! A leaf: it names nothing else in the crate.

/// Why a live connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailureKind {
    /// The host name does not resolve.
    Dns,
    /// Nothing listens on that host and port.
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// TLS could not be negotiated or the certificate was not trusted.
    Tls,
    /// The server rejected the user name or password.
    BadPassword,
    /// The server has no such database.
    UnknownDatabase,
    /// The object store has no such bucket or container.
    UnknownBucket,
    /// The credentials are valid but may not do what was asked.
    AccessDenied,
    /// An option does not match what exists at the remote end (a BigQuery
    /// dataset in another location than the connection's).
    OptionMismatch,
    /// Any other refusal from the server or the network.
    Other,
}

impl ConnectFailureKind {
    /// A short label, used in messages and `last_error`.
    pub fn label(self) -> &'static str {
        match self {
            ConnectFailureKind::Dns => "host name not found",
            ConnectFailureKind::Refused => "connection refused",
            ConnectFailureKind::Timeout => "timed out",
            ConnectFailureKind::Tls => "TLS failure",
            ConnectFailureKind::BadPassword => "authentication failed",
            ConnectFailureKind::UnknownDatabase => "database does not exist",
            ConnectFailureKind::UnknownBucket => "bucket does not exist",
            ConnectFailureKind::AccessDenied => "access denied",
            ConnectFailureKind::OptionMismatch => "option does not match",
            ConnectFailureKind::Other => "connection failed",
        }
    }

    /// The SQLSTATE a client sees for this failure.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ConnectFailureKind::BadPassword => "28P01",
            ConnectFailureKind::UnknownDatabase | ConnectFailureKind::UnknownBucket => "3D000",
            ConnectFailureKind::AccessDenied => "42501",
            ConnectFailureKind::OptionMismatch => "22023",
            _ => "08001",
        }
    }

    /// What to check, naming the options involved.
    pub fn hint(self) -> &'static str {
        match self {
            ConnectFailureKind::BadPassword => {
                "Check the credentials: the user and password options, the service-account key, or the access key."
            }
            ConnectFailureKind::UnknownDatabase => "Check the database option.",
            ConnectFailureKind::OptionMismatch => "Change the option as the message says.",
            ConnectFailureKind::UnknownBucket => {
                "Check the bucket (S3, GCS) or container (Azure) option and that the credentials' project or account \
                 holds it."
            }
            ConnectFailureKind::AccessDenied => {
                "Grant the credentials the permission to list and read objects under the prefix \
                 (docs/sources/object-storage.md lists them per cloud)."
            }
            ConnectFailureKind::Dns => "Check the host option.",
            ConnectFailureKind::Refused => "Check the host and port options and that the server is running.",
            ConnectFailureKind::Timeout => {
                "Check that the server is reachable from Sluice, or raise the connect_timeout option."
            }
            ConnectFailureKind::Tls => {
                "Check the TLS options against what the server offers: to trust a private or self-signed \
                 certificate, name its CA file (ssl_ca for MySQL/MariaDB, sslrootcert for PostgreSQL); to encrypt \
                 without verifying, use ssl_mode 'preferred' (sslmode 'prefer'; trust_server_certificate true for SQL Server \
                 and Synapse)."
            }
            ConnectFailureKind::Other => "Check the connection options.",
        }
    }

    /// True for failures that may pass by themselves.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ConnectFailureKind::Refused
                | ConnectFailureKind::Timeout
                | ConnectFailureKind::Dns
                | ConnectFailureKind::Other
        )
    }
}

/// A failed live test of a connection, with the driver's explanation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", kind.label())]
pub struct ConnectFailure {
    pub kind: ConnectFailureKind,
    pub detail: String,
}

impl ConnectFailure {
    /// A failure of the given kind.
    pub fn new(kind: ConnectFailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

/// The error and all its sources, joined with ": ", without repeats.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// An HTTP request that got no answer as a connection failure, its message
/// led by `context` (the service and where it was asked).
pub(crate) fn request_failure(context: &str, error: &reqwest::Error) -> ConnectFailure {
    let kind = network_failure_kind(error).unwrap_or(if error.is_timeout() {
        ConnectFailureKind::Timeout
    } else {
        ConnectFailureKind::Other
    });
    ConnectFailure::new(kind, format!("{context}: {}", error_chain(error)))
}

/// Classifies network-level failures found anywhere in an error's chain.
pub(crate) fn network_failure_kind(err: &(dyn std::error::Error + 'static)) -> Option<ConnectFailureKind> {
    use ConnectFailureKind as K;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let text = io.to_string();
            return Some(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => K::Refused,
                std::io::ErrorKind::TimedOut => K::Timeout,
                _ if text.contains("lookup address") || text.contains("Name or service not known") => K::Dns,
                _ if text.contains("certificate") || text.contains("tls") || text.contains("TLS") => K::Tls,
                _ => K::Other,
            });
        }
        current = e.source();
    }
    None
}
