//! OAuth tokens for the BigQuery API from a service-account key or the
//! environment's Application Default Credentials, shared by the
//! `gcp-bigquery-client` calls and the media uploads.

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
}

impl TokenSource {
    /// Builds the token source; a malformed key is an error here, a rejected
    /// one at the first token.
    pub(super) async fn new(credentials: &Credentials) -> Result<Self, String> {
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
        Ok(Self { inner })
    }

    /// A current access token for BigQuery.
    pub(super) async fn token(&self) -> Result<String, BQError> {
        self.token_for(SCOPE).await
    }

    /// A current access token for Cloud Storage.
    pub(super) async fn storage_token(&self) -> Result<String, BQError> {
        self.token_for(STORAGE_SCOPE).await
    }

    async fn token_for(&self, scope: &str) -> Result<String, BQError> {
        self.inner
            .token(&[scope])
            .await?
            .token()
            .map(str::to_owned)
            .ok_or(BQError::NoToken)
    }
}

#[async_trait]
impl Authenticator for TokenSource {
    async fn access_token(&self) -> Result<String, BQError> {
        self.token().await
    }
}
