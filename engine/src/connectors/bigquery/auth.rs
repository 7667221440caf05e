//! OAuth tokens for the BigQuery API from a service-account key or the
//! environment's Application Default Credentials, shared by the
//! `gcp-bigquery-client` calls, the media uploads and the staging bucket.
//! Every token fetch, the first and each refresh, has a deadline: a token
//! endpoint that stalls fails the call instead of blocking it forever.

use std::time::Duration;

use async_trait::async_trait;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::yup_oauth2::authenticator::{ApplicationDefaultCredentialsTypes, DefaultAuthenticator};
use gcp_bigquery_client::yup_oauth2::{self, ApplicationDefaultCredentialsFlowOpts};

use super::Credentials;

/// The scope every BigQuery call needs.
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// The scope of the staging bucket's reads, writes and deletes.
const STORAGE_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

/// A source of access tokens (cached and refreshed by `yup-oauth2`).
#[derive(Clone)]
pub(super) struct TokenSource {
    inner: DefaultAuthenticator,
    /// How long one token fetch may take.
    timeout: Duration,
}

impl TokenSource {
    /// Builds the token source, each fetch limited to `timeout`; a malformed
    /// key is an error here, a rejected one at the first token.
    pub(super) async fn new(credentials: &Credentials, timeout: Duration) -> Result<Self, String> {
        let inner = match credentials {
            Credentials::ServiceAccountKey(json) => {
                let key = yup_oauth2::parse_service_account_key(json)
                    .map_err(|e| format!("the credentials are not a service-account JSON key: {e}"))?;
                yup_oauth2::ServiceAccountAuthenticator::builder(key).build().await
            }
            Credentials::ApplicationDefault => {
                match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(
                    ApplicationDefaultCredentialsFlowOpts::default(),
                )
                .await
                {
                    ApplicationDefaultCredentialsTypes::ServiceAccount(builder) => builder.build().await,
                    ApplicationDefaultCredentialsTypes::InstanceMetadata(builder) => builder.build().await,
                }
            }
        }
        .map_err(|e| format!("cannot set up Google sign-in: {e}"))?;
        Ok(Self { inner, timeout })
    }

    /// A current access token for BigQuery.
    pub(super) async fn token(&self) -> Result<String, BQError> {
        self.token_for(SCOPE).await
    }

    /// A current access token for Cloud Storage.
    pub(super) async fn storage_token(&self) -> Result<String, BQError> {
        self.token_for(STORAGE_SCOPE).await
    }

    /// A token for `scope`, from the cache or fetched within the timeout;
    /// a fetch that takes longer is an I/O `TimedOut` error.
    async fn token_for(&self, scope: &str) -> Result<String, BQError> {
        let fetched = tokio::time::timeout(self.timeout, self.inner.token(&[scope]))
            .await
            .map_err(|_| {
                let timed_out = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no access token from Google within {} s", self.timeout.as_secs()),
                );
                BQError::YupAuthError(yup_oauth2::Error::LowLevelError(timed_out))
            })??;
        fetched.token().map(str::to_owned).ok_or(BQError::NoToken)
    }
}

#[async_trait]
impl Authenticator for TokenSource {
    async fn access_token(&self) -> Result<String, BQError> {
        self.token().await
    }
}
