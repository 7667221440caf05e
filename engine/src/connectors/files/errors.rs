//! Why a bucket request failed, from the store's error: the HTTP status and
//! the service's error code (`NoSuchBucket`, `AccessDenied`,
//! `InvalidAccessKeyId`, `AuthenticationFailed`, ...), never the request
//! URL (a SAS token travels in it).

use datafusion::object_store::Error;

use crate::contract::{ConnectFailure, ConnectFailureKind as K, network_failure_kind};

/// Service error codes that mean the credentials themselves are wrong.
const BAD_CREDENTIALS: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AuthenticationFailed",
    "InvalidAuthenticationInfo",
    "NoAuthenticationInformation",
    "invalid_grant",
    "InvalidSecurity",
];

/// Service error codes that mean the credentials lack a permission.
const DENIED: &[&str] = &[
    "AccessDenied",
    "AuthorizationPermissionMismatch",
    "AuthorizationFailure",
    "AllAccessDisabled",
    "InsufficientAccountPermissions",
];

/// Service error codes that mean the bucket or container does not exist.
const NO_BUCKET: &[&str] = &["NoSuchBucket", "ContainerNotFound", "ResourceNotFound"];

/// Classifies a failed request to `what` (`bucket "b"`, `container "c"`);
/// `permission` names what listing needs on that cloud.
pub(crate) fn classify(what: &str, permission: &str, error: &Error) -> ConnectFailure {
    let text = crate::contract::error_chain(error);
    let code = xml_field(&text, "Code");
    let message = xml_field(&text, "Message")
        .map(|m| m.lines().next().unwrap_or_default().trim().to_owned())
        .filter(|m| !m.is_empty());
    let said = match (&code, &message) {
        (Some(code), Some(message)) => format!(" ({code}: {message})"),
        (Some(code), None) => format!(" ({code})"),
        (None, Some(message)) => format!(" ({message})"),
        (None, None) => String::new(),
    };
    let code_is = |list: &[&str]| code.as_deref().is_some_and(|c| list.contains(&c));
    // Azurite answers a wrong key with AuthorizationFailure; its message,
    // like Azure's AuthenticationFailed, says what happened.
    let unauthenticated = message.as_deref().is_some_and(|m| m.contains("failed to authenticate"));
    match error {
        _ if code_is(NO_BUCKET) => ConnectFailure::new(K::UnknownBucket, format!("{what} does not exist{said}")),
        _ if code_is(BAD_CREDENTIALS) || unauthenticated => ConnectFailure::new(
            K::BadPassword,
            format!("the credentials were rejected for {what}{said}"),
        ),
        Error::Unauthenticated { .. } => ConnectFailure::new(
            K::BadPassword,
            format!("the credentials were rejected for {what}{said}"),
        ),
        _ if code_is(DENIED) || matches!(error, Error::PermissionDenied { .. }) => ConnectFailure::new(
            K::AccessDenied,
            format!("access denied to {what}: the credentials need {permission}{said}"),
        ),
        Error::NotFound { .. } => ConnectFailure::new(K::UnknownBucket, format!("{what} does not exist{said}")),
        _ => match network_failure_kind(error) {
            Some(kind) => ConnectFailure::new(kind, format!("cannot reach the endpoint of {what}: {}", kind.label())),
            None if text.contains("error sending request") || text.contains("HTTP error") => ConnectFailure::new(
                K::Refused,
                format!("cannot reach the endpoint of {what}: no answer from the server"),
            ),
            None => match status(&text) {
                Some(status) => ConnectFailure::new(K::Other, format!("{what} answered HTTP {status}{said}")),
                None => ConnectFailure::new(K::Other, format!("{what} cannot be listed{said}")),
            },
        },
    }
}

/// The text of the first `<name>...</name>` element in an error body.
fn xml_field(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&close)? + start;
    Some(text[start..end].trim().to_owned())
}

/// The HTTP status an error reports (`... status code: 500 ...`).
fn status(text: &str) -> Option<&str> {
    let at = text.find("status code: ")? + "status code: ".len();
    text[at..].split(':').next().map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(body: &str) -> Error {
        Error::Generic {
            store: "S3",
            source: body.to_owned().into(),
        }
    }

    #[test]
    fn service_codes_decide_the_kind() {
        let missing = classify(
            "bucket \"b\"",
            "s3:ListBucket",
            &generic(
                "Server returned non-2xx status code: 404 Not Found: <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
            ),
        );
        assert_eq!(missing.kind, K::UnknownBucket);
        assert_eq!(
            missing.detail,
            "bucket \"b\" does not exist (NoSuchBucket: The specified bucket does not exist)"
        );
        let bad = classify(
            "container \"c\"",
            "read access",
            &generic(
                "status code: 403 Forbidden: <Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1</Message></Error>",
            ),
        );
        assert_eq!(bad.kind, K::BadPassword);
        assert!(
            bad.detail
                .ends_with("(AuthenticationFailed: Server failed to authenticate the request.)"),
            "{}",
            bad.detail
        );
        let denied = classify(
            "bucket \"b\"",
            "s3:ListBucket",
            &Error::PermissionDenied {
                path: "p".into(),
                source: "<Code>AccessDenied</Code>".to_owned().into(),
            },
        );
        assert_eq!(denied.kind, K::AccessDenied);
        assert_eq!(
            denied.detail,
            "access denied to bucket \"b\": the credentials need s3:ListBucket (AccessDenied)"
        );
        let other = classify(
            "bucket \"b\"",
            "s3:ListBucket",
            &generic("Server returned non-2xx status code: 500 Internal: oops"),
        );
        assert_eq!(
            (other.kind, other.detail.as_str()),
            (K::Other, "bucket \"b\" answered HTTP 500 Internal")
        );
    }
}
