//! The driver's errors classified: why a connection failed, and which
//! SQLSTATE a failed command carries (network trouble is transient).

use mongodb::error::{Error, ErrorKind};

use crate::contract::{ConnectFailure, ConnectFailureKind, SourceError};

/// MongoDB's `AuthenticationFailed`.
const AUTHENTICATION_FAILED: i32 = 18;
/// MongoDB's `Unauthorized`: the user lacks a privilege.
const UNAUTHORIZED: i32 = 13;

/// Why connecting failed, from a driver error; `None` when the error is
/// about a command, not the connection.
pub(super) fn connect_failure(error: &Error) -> Option<ConnectFailure> {
    use ConnectFailureKind as K;
    let text = error.to_string();
    let kind = match error.kind.as_ref() {
        ErrorKind::Authentication { .. } => K::BadPassword,
        ErrorKind::Command(c) if c.code == AUTHENTICATION_FAILED => K::BadPassword,
        ErrorKind::DnsResolve { .. } => K::Dns,
        ErrorKind::InvalidTlsConfig { .. } => K::Tls,
        ErrorKind::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => K::Refused,
            std::io::ErrorKind::TimedOut => K::Timeout,
            _ => K::Other,
        },
        // Server selection gives up after the timeout; its message carries
        // each server's last error.
        ErrorKind::ServerSelection { .. } => selection_failure(&text),
        _ => return None,
    };
    Some(ConnectFailure::new(kind, text))
}

/// Why server selection gave up, from its message.
fn selection_failure(text: &str) -> ConnectFailureKind {
    use ConnectFailureKind as K;
    if text.contains("Authentication failed") || text.contains("AuthenticationFailed") {
        K::BadPassword
    } else if text.contains("Connection refused") {
        K::Refused
    } else if text.contains("failed to lookup") || text.contains("Name or service not known") {
        K::Dns
    } else if text.contains("certificate") || text.contains("TLS") || text.contains("tls") {
        K::Tls
    } else {
        K::Timeout
    }
}

/// A driver error while reading `what` (a database or `db.collection`).
pub(super) fn source_error(error: Error, what: &str) -> SourceError {
    if let Some(failure) = connect_failure(&error) {
        return SourceError::Connect(failure);
    }
    let code = match error.kind.as_ref() {
        ErrorKind::Command(c) if c.code == UNAUTHORIZED => "42501",
        ErrorKind::ConnectionPoolCleared { .. } | ErrorKind::Io(_) => "08006",
        _ => "58000",
    };
    SourceError::Query {
        code: Some(code.to_owned()),
        message: format!("MongoDB refused the read of {what}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(code: i32) -> Error {
        let raw = mongodb::bson::doc! { "ok": 0, "code": code, "codeName": "X", "errmsg": "no" };
        let e: mongodb::error::CommandError = mongodb::bson::from_document(raw).unwrap();
        Error::from(ErrorKind::Command(e))
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(
            selection_failure(
                "Server selection timeout: ... Error: Kind: I/O error: Connection refused (os error 111)"
            ),
            ConnectFailureKind::Refused
        );
        assert_eq!(
            selection_failure("Server selection timeout: No available servers"),
            ConnectFailureKind::Timeout
        );
        assert_eq!(
            connect_failure(&command(AUTHENTICATION_FAILED)).unwrap().kind,
            ConnectFailureKind::BadPassword
        );
        assert!(connect_failure(&command(UNAUTHORIZED)).is_none());
    }

    #[test]
    fn read_errors_carry_sqlstates() {
        let code = |e: SourceError| match e {
            SourceError::Query { code, .. } => code.unwrap(),
            other => panic!("{other}"),
        };
        assert_eq!(code(source_error(command(UNAUTHORIZED), "shop.orders")), "42501");
        assert_eq!(code(source_error(command(2), "shop.orders")), "58000");
        assert!(matches!(
            source_error(command(AUTHENTICATION_FAILED), "shop"),
            SourceError::Connect(_)
        ));
    }
}
