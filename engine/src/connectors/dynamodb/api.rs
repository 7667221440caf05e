//! DynamoDB's JSON API over reqwest, each request signed with SigV4
//! ([`crate::aws::json`]) with the credentials of the chain in
//! [`crate::aws::credentials`]; throttling answered with exponential backoff.

use std::time::Duration;

use aws_credential_types::Credentials;
use serde_json::Value as Json;

use crate::aws::credentials::{self, CredentialChain};
use crate::aws::json::{self as aws_json, AwsEndpoint, PostError};
use crate::backoff::Backoff;
use crate::contract::{ConnectFailure, ConnectFailureKind, ResolvedOptions, SourceError, error_chain, request_failure};

/// How throttled and failed (5xx) requests are repeated before the run
/// fails (transiently).
const BACKOFF: Backoff = Backoff {
    attempts: 8,
    first_pause: Duration::from_millis(50),
    max_pause: Duration::from_secs(5),
    jitter: false,
};

/// Where and as whom requests go.
#[derive(Clone)]
pub(super) struct Api {
    /// The HTTP client with Sluice's trusted roots, or why it cannot be built.
    http: Result<reqwest::Client, ConnectFailure>,
    endpoint: AwsEndpoint,
    credentials: CredentialChain,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// The service answered with an error `kind` (the `__type` after `#`).
    #[error("DynamoDB answered {kind}: {message}")]
    Service { kind: String, message: String, status: u16 },
    /// No answer, or no credentials.
    #[error("{0}")]
    Connect(ConnectFailure),
}

impl ApiError {
    /// As a failed connection test.
    pub(super) fn failure(&self) -> ConnectFailure {
        use ConnectFailureKind as K;
        match self {
            ApiError::Connect(failure) => failure.clone(),
            ApiError::Service { kind, .. } => {
                let k = match kind.as_str() {
                    "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "MissingAuthenticationTokenException"
                    | "InvalidClientTokenId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredTokenException" => K::BadPassword,
                    "AccessDeniedException" => K::AccessDenied,
                    _ => K::Other,
                };
                ConnectFailure::new(k, self.to_string())
            }
        }
    }

    /// Answers worth another attempt: throttled or a server error.
    fn retryable(&self) -> bool {
        matches!(self, ApiError::Service { kind, status, .. } if throttled(kind) || *status >= 500)
    }

    /// As a source error: throttling and server errors transient (`53000`,
    /// `58000`), a missing table `NotFound`.
    pub(super) fn source_error(self, table: Option<&str>) -> SourceError {
        match &self {
            ApiError::Service { kind, message, status } => match kind.as_str() {
                "ResourceNotFoundException" => SourceError::NotFound {
                    kind: "table",
                    name: table.unwrap_or_default().to_owned(),
                    nearby: vec![],
                },
                _ if throttled(kind) => SourceError::Query {
                    code: Some("53000".into()),
                    message: format!(
                        "DynamoDB kept throttling after {} attempts ({kind}): {message}",
                        BACKOFF.attempts
                    ),
                },
                _ if *status >= 500 => SourceError::Query {
                    code: Some("58000".into()),
                    message: format!("DynamoDB failed ({kind}): {message}"),
                },
                _ => match self.failure() {
                    f if f.kind != ConnectFailureKind::Other => SourceError::Connect(f),
                    f => SourceError::Query {
                        code: Some("58000".into()),
                        message: f.detail,
                    },
                },
            },
            ApiError::Connect(failure) => SourceError::Connect(failure.clone()),
        }
    }
}

fn throttled(kind: &str) -> bool {
    matches!(
        kind,
        "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded"
    )
}

impl Api {
    pub(super) fn new(options: &ResolvedOptions, timeout: Duration) -> Self {
        let region = options.text("region").unwrap_or("us-east-1");
        let endpoint = AwsEndpoint::new("dynamodb", region, options.text("endpoint"));
        let secret = |name: &str| options.secret(name).map(|s| s.expose().to_owned());
        let explicit = match (options.text("access_key_id"), secret("secret_access_key")) {
            (Some(key), Some(secret_key)) => Some(Credentials::new(
                key,
                secret_key,
                secret("session_token"),
                None,
                "sluice",
            )),
            _ => None,
        };
        let credentials = CredentialChain::new(
            explicit,
            options.text("profile").map(str::to_owned),
            credentials::process_env(),
        );
        let http = crate::tls::client_config(crate::tls::Verify::ChainAndHost, None).and_then(|tls| {
            reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .connect_timeout(timeout)
                .timeout(timeout.max(Duration::from_secs(60)))
                .build()
                .map_err(|e| ConnectFailure::new(ConnectFailureKind::Tls, error_chain(&e)))
        });
        Self {
            http,
            endpoint,
            credentials,
        }
    }

    /// Calls `operation` (`Scan`, `ListTables`, ...) with `body`, retrying
    /// throttled and 5xx answers with exponential backoff.
    pub(super) async fn call(&self, operation: &str, body: &Json) -> Result<Json, ApiError> {
        BACKOFF
            .run(&format!("DynamoDB {operation}"), ApiError::retryable, || {
                self.once(operation, body)
            })
            .await
    }

    async fn once(&self, operation: &str, body: &Json) -> Result<Json, ApiError> {
        let credentials = self
            .credentials
            .credentials()
            .await
            .map_err(|message| ApiError::Connect(ConnectFailure::new(ConnectFailureKind::BadPassword, message)))?;
        let http = self.http.as_ref().map_err(|e| ApiError::Connect(e.clone()))?;
        let target = format!("DynamoDB_20120810.{operation}");
        let (status, text) = aws_json::post(
            http,
            &self.endpoint,
            &credentials,
            "application/x-amz-json-1.0",
            &target,
            body.to_string(),
        )
        .await
        .map_err(|e| {
            ApiError::Connect(match e {
                PostError::Sign(message) => ConnectFailure::new(ConnectFailureKind::Other, message),
                PostError::Send(e) => request_failure(&format!("DynamoDB at {}", self.endpoint.url), &e),
                PostError::Read(e) => ConnectFailure::new(ConnectFailureKind::Other, error_chain(&e)),
            })
        })?;
        let json: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if status == 200 {
            return Ok(json);
        }
        // DynamoDB answers JSON; IAM-style refusals (and moto's) are XML.
        let kind = json["__type"]
            .as_str()
            .or_else(|| xml_element(&text, "Code"))
            .unwrap_or("UnknownError");
        let kind = kind.rsplit('#').next().unwrap_or(kind).to_owned();
        let message = json["message"]
            .as_str()
            .or(json["Message"].as_str())
            .or_else(|| xml_element(&text, "Message"))
            .map_or_else(|| crate::contract::excerpt(&text), str::to_owned);
        Err(ApiError::Service { kind, message, status })
    }
}

/// The text of the first `<name>` element of an XML error answer.
fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_in_json_and_xml_are_classified() {
        let xml = "<ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>bad key</Message>\
                   </Error></Errors></ErrorResponse>";
        assert_eq!(xml_element(xml, "Code"), Some("InvalidClientTokenId"));
        assert_eq!(xml_element(xml, "Message"), Some("bad key"));
        assert_eq!(xml_element("{}", "Code"), None);
        let refused = |kind: &str| ApiError::Service {
            kind: kind.into(),
            message: "m".into(),
            status: 400,
        };
        assert_eq!(
            refused("InvalidClientTokenId").failure().kind,
            ConnectFailureKind::BadPassword
        );
        assert_eq!(
            refused("UnrecognizedClientException").failure().kind,
            ConnectFailureKind::BadPassword
        );
        assert_eq!(
            refused("AccessDeniedException").failure().kind,
            ConnectFailureKind::AccessDenied
        );
        let throttled = refused("ProvisionedThroughputExceededException").source_error(Some("t"));
        assert!(matches!(throttled, SourceError::Query { code: Some(c), .. } if c == "53000"));
        assert!(matches!(
            refused("ResourceNotFoundException").source_error(Some("t")),
            SourceError::NotFound { .. }
        ));
    }
}
