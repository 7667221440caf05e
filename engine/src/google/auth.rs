//! OAuth tokens for the BigQuery API, shared by the `gcp-bigquery-client`
//! calls, the media uploads and the staging bucket. The credentials are a
//! JSON document (a service-account key, `authorized_user` as `gcloud auth
//! application-default login` writes it, `external_account` for workload
//! identity federation, or `impersonated_service_account`), or the
//! environment's Application Default Credentials: the file
//! `GOOGLE_APPLICATION_CREDENTIALS` names, else gcloud's
//! `application_default_credentials.json`, else the metadata server.
//! `yup-oauth2` runs each flow; [`Impersonation`] optionally exchanges the
//! token for a service account's. Every token fetch, the first and each
//! refresh, has a deadline: a token endpoint that stalls fails the call
//! instead of blocking it forever.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::yup_oauth2::authenticator::{
    ApplicationDefaultCredentialsTypes, AuthorizedUserAuthenticator, ExternalAccountAuthenticator,
};
use gcp_bigquery_client::yup_oauth2::authorized_user::AuthorizedUserSecret;
use gcp_bigquery_client::yup_oauth2::external_account::ExternalAccountSecret;
use gcp_bigquery_client::yup_oauth2::{
    self, ApplicationDefaultCredentialsAuthenticator, ApplicationDefaultCredentialsFlowOpts,
    ServiceAccountAuthenticator,
};
use serde_json::Value;

use super::Credentials;
use super::impersonate::{IAM_SCOPE, Impersonation};
use super::sign_in_http::{self, SignInConnector};

/// The scope every BigQuery call needs.
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// The scope of the staging bucket's reads, writes and deletes.
const STORAGE_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

type SignedIn = yup_oauth2::authenticator::Authenticator<SignInConnector>;

/// A source of access tokens (cached and refreshed by `yup-oauth2`).
#[derive(Clone)]
pub(crate) struct TokenSource {
    signed_in: SignedIn,
    impersonation: Option<Arc<Impersonation>>,
    /// How long one token fetch may take.
    timeout: Duration,
}

/// How a credentials document signs in (`yup-oauth2`'s flows).
enum Flow {
    ServiceAccount(yup_oauth2::ServiceAccountKey),
    User(AuthorizedUserSecret),
    External(ExternalAccountSecret),
}

impl TokenSource {
    /// Builds the token source, each fetch limited to `timeout`, signing in
    /// as `credentials` and impersonating `impersonate` (a service account's
    /// e-mail) when given; a malformed document is an error here, rejected
    /// credentials at the first token.
    pub(crate) async fn new(
        credentials: &Credentials,
        impersonate: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let document = match credentials {
            Credentials::Json(json) => Some(json.clone()),
            Credentials::ApplicationDefault => application_default_document()?,
        };
        let (flow, impersonation_url) = match &document {
            Some(json) => {
                let (flow, url) = parse(json)?;
                (Some(flow), url)
            }
            None => (None, None),
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(
                crate::tls::client_config(crate::tls::Verify::ChainAndHost, None).map_err(|e| e.detail)?,
            )
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot set up Google sign-in: {e}"))?;
        let impersonation = match (impersonation_url, impersonate) {
            (Some(_), Some(_)) => {
                return Err("the credentials already impersonate a service account: drop the \
                            impersonate_service_account option or use the source credentials"
                    .into());
            }
            (Some(url), None) => Some(Impersonation::at(&url, http)),
            (None, Some(email)) => Some(Impersonation::of(email, http)),
            (None, None) => None,
        };
        let client = sign_in_http::client().map_err(|e| e.detail)?;
        let signed_in = match flow {
            Some(Flow::ServiceAccount(key)) => ServiceAccountAuthenticator::with_client(key, client).build().await,
            Some(Flow::User(secret)) => AuthorizedUserAuthenticator::with_client(secret, client).build().await,
            Some(Flow::External(secret)) => ExternalAccountAuthenticator::with_client(secret, client).build().await,
            None => {
                match ApplicationDefaultCredentialsAuthenticator::with_client(
                    ApplicationDefaultCredentialsFlowOpts::default(),
                    client,
                )
                .await
                {
                    ApplicationDefaultCredentialsTypes::ServiceAccount(builder) => builder.build().await,
                    ApplicationDefaultCredentialsTypes::InstanceMetadata(builder) => builder.build().await,
                }
            }
        }
        .map_err(|e| format!("cannot set up Google sign-in: {e}"))?;
        Ok(Self {
            signed_in,
            impersonation: impersonation.map(Arc::new),
            timeout,
        })
    }

    /// A current access token for BigQuery.
    pub(crate) async fn token(&self) -> Result<String, BQError> {
        self.token_for(SCOPE).await
    }

    /// A current access token for Cloud Storage.
    pub(crate) async fn storage_token(&self) -> Result<String, BQError> {
        self.token_for(STORAGE_SCOPE).await
    }

    /// A token for `scope`, from the cache or fetched within the timeout;
    /// a fetch that takes longer is an I/O `TimedOut` error.
    pub(crate) async fn token_for(&self, scope: &str) -> Result<String, BQError> {
        let fetch = async {
            match &self.impersonation {
                None => self.signed_in_token(scope).await,
                Some(impersonation) => impersonation.token(scope, self.signed_in_token(IAM_SCOPE)).await,
            }
        };
        tokio::time::timeout(self.timeout, fetch).await.map_err(|_| {
            let timed_out = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no access token from Google within {} s", self.timeout.as_secs()),
            );
            BQError::YupAuthError(yup_oauth2::Error::LowLevelError(timed_out))
        })?
    }

    /// The signed-in identity's own token for `scope`.
    async fn signed_in_token(&self, scope: &str) -> Result<String, BQError> {
        let token = self.signed_in.token(&[scope]).await?;
        token.token().map(str::to_owned).ok_or(BQError::NoToken)
    }
}

#[async_trait]
impl Authenticator for TokenSource {
    async fn access_token(&self) -> Result<String, BQError> {
        self.token().await
    }
}

/// The Application Default Credentials document: the file
/// `GOOGLE_APPLICATION_CREDENTIALS` names, else gcloud's
/// `application_default_credentials.json` (in `CLOUDSDK_CONFIG` or
/// `~/.config/gcloud`) when it exists; none means the metadata server.
fn application_default_document() -> Result<Option<String>, String> {
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| format!("cannot read the credentials file {}: {e}", path.display()))
    };
    if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
        return read(path.into());
    }
    let config = std::env::var_os("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config/gcloud")));
    match config.map(|dir| dir.join("application_default_credentials.json")) {
        Some(path) if path.is_file() => read(path),
        _ => Ok(None),
    }
}

/// Checks a credentials document: its flow, and the `generateAccessToken`
/// URL of an `impersonated_service_account` document. Errors name the
/// problem, never a value (the document holds secrets).
fn parse(json: &str) -> Result<(Flow, Option<String>), String> {
    let document: Value = serde_json::from_str(json).map_err(|e| {
        format!(
            "the credentials are not JSON (line {}, column {}): give a service-account JSON key or a \
             file gcloud wrote (authorized_user, external_account, impersonated_service_account)",
            e.line(),
            e.column()
        )
    })?;
    match document["type"].as_str() {
        Some("impersonated_service_account") => {
            let url = document["service_account_impersonation_url"]
                .as_str()
                .ok_or("the impersonated_service_account credentials have no service_account_impersonation_url")?;
            let source = document.get("source_credentials").cloned().unwrap_or_default();
            if source["type"].as_str() == Some("impersonated_service_account") {
                return Err("impersonated_service_account credentials cannot impersonate through another one".into());
            }
            Ok((flow(source)?, Some(url.to_owned())))
        }
        _ => Ok((flow(document)?, None)),
    }
}

/// The flow of a `service_account`, `authorized_user` or
/// `external_account` document.
fn flow(mut document: Value) -> Result<Flow, String> {
    let kind = document["type"].as_str().unwrap_or_default().to_owned();
    match kind.as_str() {
        "service_account" => yup_oauth2::parse_service_account_key(document.to_string())
            .map(Flow::ServiceAccount)
            .map_err(|_| "the service-account key lacks a field (client_email, private_key, token_uri)".into()),
        "authorized_user" => deserialize(document, "authorized_user").map(Flow::User),
        "external_account" => {
            let source = &mut document["credential_source"];
            if source.get("environment_id").is_some() || source.get("executable").is_some() {
                return Err(
                    "external_account credentials with an AWS or executable credential_source are not \
                            supported: use a file- or URL-sourced subject token"
                        .into(),
                );
            }
            // Google's default format of a URL-sourced subject token.
            if source.get("url").is_some() && source.get("format").is_none() {
                source["format"] = serde_json::json!({"type": "text"});
            }
            deserialize(document, "external_account").map(Flow::External)
        }
        "" => Err(
            "the credentials have no \"type\": give a service-account JSON key or a file gcloud \
                   wrote (authorized_user, external_account, impersonated_service_account)"
                .into(),
        ),
        other => Err(format!(
            "credentials of type \"{other}\" are not supported: use service_account, authorized_user, \
             external_account or impersonated_service_account"
        )),
    }
}

/// `document` as `T`; the error names a missing field, never a value.
fn deserialize<T: serde::de::DeserializeOwned>(document: Value, kind: &str) -> Result<T, String> {
    serde_json::from_value(document).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix("missing field ") {
            Some(field) => format!("the {kind} credentials lack the field {field}"),
            None => format!("the {kind} credentials are malformed (a field has the wrong type or form)"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        parse(json).err().expect("an error")
    }

    #[test]
    fn malformed_documents_are_named_without_their_values() {
        let user = r#"{"type": "authorized_user", "client_id": "c", "client_secret": "s3cr3t"}"#;
        let message = error(user);
        assert!(message.contains("refresh_token"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
        let wrong = r#"{"type": "authorized_user", "client_id": 1, "client_secret": "s3cr3t", "refresh_token": "r"}"#;
        assert!(!error(wrong).contains("s3cr3t"));
        assert!(error(r#"{"type": "gdch_service_account"}"#).contains("not supported"));
        assert!(error("{not json s3cr3t").contains("not JSON"));
    }

    #[test]
    fn each_credential_type_is_recognised() {
        let user = r#"{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}"#;
        assert!(matches!(parse(user), Ok((Flow::User(_), None))));
        let external = r#"{"type": "external_account", "audience": "a", "subject_token_type": "t",
            "token_url": "https://sts.googleapis.com/v1/token", "credential_source": {"url": "http://x/token"}}"#;
        assert!(matches!(parse(external), Ok((Flow::External(_), None))));
        let aws = r#"{"type": "external_account", "audience": "a", "subject_token_type": "t", "token_url": "u",
            "credential_source": {"environment_id": "aws1", "url": "http://x"}}"#;
        assert!(error(aws).contains("AWS"));
        let impersonated = format!(
            r#"{{"type": "impersonated_service_account", "service_account_impersonation_url": "https://x/y",
                "source_credentials": {user}}}"#
        );
        assert!(matches!(parse(&impersonated), Ok((Flow::User(_), Some(url))) if url == "https://x/y"));
    }
}
