//! Firestore's REST API (`v1`) over reqwest: the database's `documents`
//! resource, signed in with an OAuth token for the `datastore` scope (the
//! BigQuery connector's token source), or, against the emulator, as its
//! administrator (`Bearer owner`). Unavailable and throttled answers are
//! retried with exponential backoff.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::OnceCell;

use crate::backoff::Backoff;
use crate::contract::{ConnectFailure, ConnectFailureKind, ResolvedOptions, SourceError, error_chain, request_failure};
use crate::google::Credentials;
use crate::google::auth::TokenSource;

/// The scope of Firestore's API.
const SCOPE: &str = "https://www.googleapis.com/auth/datastore";
/// How unavailable and throttled requests are repeated before the run fails.
const BACKOFF: Backoff = Backoff {
    attempts: 6,
    first_pause: Duration::from_millis(100),
    max_pause: Duration::from_secs(5),
    jitter: false,
};

/// Where requests go and as whom.
#[derive(Clone)]
pub(super) struct Api {
    http: Result<reqwest::Client, ConnectFailure>,
    /// `.../v1/projects/P/databases/D/documents`.
    documents: String,
    /// The name prefix of the database's documents.
    pub(super) root: String,
    auth: Auth,
    timeout: Duration,
}

#[derive(Clone)]
enum Auth {
    /// The emulator's administrator.
    Emulator,
    /// Google sign-in, set up at the first request.
    Google {
        credentials: Result<Credentials, String>,
        tokens: Arc<OnceCell<TokenSource>>,
    },
}

/// Why a request failed: the service's answer (`status` as Google names
/// it) or no answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    #[error("Firestore answered {code} {status}: {message}")]
    Service { code: u16, status: String, message: String },
    #[error("{0}")]
    Connect(ConnectFailure),
}

impl ApiError {
    /// As a failed connection test.
    pub(super) fn failure(&self) -> ConnectFailure {
        use ConnectFailureKind as K;
        match self {
            ApiError::Connect(failure) => failure.clone(),
            ApiError::Service { code, status, .. } => {
                let kind = match (code, status.as_str()) {
                    (401, _) | (_, "UNAUTHENTICATED") => K::BadPassword,
                    (403, _) | (_, "PERMISSION_DENIED") => K::AccessDenied,
                    (404, _) | (_, "NOT_FOUND") => K::UnknownDatabase,
                    _ => K::Other,
                };
                ConnectFailure::new(kind, self.to_string())
            }
        }
    }

    /// Answers worth another attempt: throttled, unavailable, internal.
    fn retryable(&self) -> bool {
        matches!(
            self,
            ApiError::Service {
                code: 429 | 500 | 502 | 503 | 504,
                ..
            }
        )
    }

    /// As a source error: unavailable, throttled and internal errors
    /// transient (`58000`, `53000`).
    pub(super) fn source_error(self) -> SourceError {
        match &self {
            ApiError::Service { code, .. } => match self.failure() {
                f if f.kind != ConnectFailureKind::Other => SourceError::Connect(f),
                _ => SourceError::Query {
                    code: Some(if *code == 429 { "53000" } else { "58000" }.into()),
                    message: self.to_string(),
                },
            },
            ApiError::Connect(failure) => SourceError::Connect(failure.clone()),
        }
    }
}

impl Api {
    pub(super) fn new(options: &ResolvedOptions, timeout: Duration) -> Self {
        let project = options.text("project").unwrap_or_default();
        let database = options.text("database").unwrap_or("(default)");
        let (base, auth) = match options.text("emulator_host") {
            Some(host) => (format!("http://{}", host.trim_end_matches('/')), Auth::Emulator),
            None => (
                "https://firestore.googleapis.com".to_owned(),
                Auth::Google {
                    credentials: crate::connectors::bigquery::credentials_from(options),
                    tokens: Arc::new(OnceCell::new()),
                },
            ),
        };
        let root = format!("projects/{project}/databases/{database}/documents");
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
            documents: format!("{base}/v1/{root}"),
            root,
            auth,
            timeout,
        }
    }

    /// POSTs `body` to the documents resource `path` (`:runQuery`,
    /// `:listCollectionIds`), retrying unavailable and throttled answers.
    pub(super) async fn post(&self, path: &str, body: &Json) -> Result<Json, ApiError> {
        BACKOFF
            .run(&format!("Firestore {path}"), ApiError::retryable, || {
                self.once(path, body)
            })
            .await
    }

    async fn token(&self) -> Result<String, ApiError> {
        let unauthenticated =
            |detail: String| ApiError::Connect(ConnectFailure::new(ConnectFailureKind::BadPassword, detail));
        match &self.auth {
            Auth::Emulator => Ok("owner".to_owned()),
            Auth::Google { credentials, tokens } => {
                let credentials = credentials.as_ref().map_err(|e| unauthenticated(e.clone()))?;
                let source = tokens
                    .get_or_try_init(|| TokenSource::new(credentials, None, self.timeout))
                    .await
                    .map_err(unauthenticated)?;
                source
                    .token_for(SCOPE)
                    .await
                    .map_err(|e| unauthenticated(format!("no access token from Google: {e}")))
            }
        }
    }

    async fn once(&self, path: &str, body: &Json) -> Result<Json, ApiError> {
        let token = self.token().await?;
        let http = self.http.as_ref().map_err(|e| ApiError::Connect(e.clone()))?;
        let url = format!("{}{path}", self.documents);
        let response = http
            .post(&url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(|e| ApiError::Connect(request_failure(&format!("Firestore at {}", self.documents), &e)))?;
        let code = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| ApiError::Connect(ConnectFailure::new(ConnectFailureKind::Other, error_chain(&e))))?;
        let json: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if code == 200 {
            return Ok(json);
        }
        // Errors come as one object, or (from :runQuery) an array of one.
        let error = json
            .get("error")
            .or_else(|| json.get(0).and_then(|e| e.get("error")))
            .cloned()
            .unwrap_or(Json::Null);
        Err(ApiError::Service {
            code,
            status: error["status"].as_str().unwrap_or("UNKNOWN").to_owned(),
            message: error["message"]
                .as_str()
                .map_or_else(|| crate::contract::excerpt(&text), str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified() {
        let refused = |code, status: &str| ApiError::Service {
            code,
            status: status.into(),
            message: "m".into(),
        };
        assert_eq!(
            refused(401, "UNAUTHENTICATED").failure().kind,
            ConnectFailureKind::BadPassword
        );
        assert_eq!(
            refused(403, "PERMISSION_DENIED").failure().kind,
            ConnectFailureKind::AccessDenied
        );
        assert_eq!(
            refused(404, "NOT_FOUND").failure().kind,
            ConnectFailureKind::UnknownDatabase
        );
        let throttled = refused(429, "RESOURCE_EXHAUSTED").source_error();
        assert!(matches!(throttled, SourceError::Query { code: Some(c), .. } if c == "53000"));
        let unavailable = refused(503, "UNAVAILABLE").source_error();
        assert!(matches!(unavailable, SourceError::Query { code: Some(c), .. } if c == "58000"));
    }
}
