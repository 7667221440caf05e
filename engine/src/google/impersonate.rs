//! Service-account impersonation: the signed-in identity's token exchanged
//! for a short-lived token of another service account through the IAM
//! credentials `generateAccessToken` call, cached until shortly before it
//! expires.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::yup_oauth2;
use serde::Deserialize;

use super::sign_in_http::rerouted;

/// The scope the signed-in identity's token needs for the IAM call.
pub(super) const IAM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's IAM credentials API.
const IAM_CREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
/// A cached token is replaced this long before it expires.
const EARLY_REFRESH: Duration = Duration::from_secs(300);

/// Tokens of one impersonated service account.
pub(super) struct Impersonation {
    /// The `generateAccessToken` URL of the service account.
    url: String,
    http: reqwest::Client,
    /// By scope: the token and when to replace it.
    cache: tokio::sync::Mutex<HashMap<String, (String, Instant)>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    access_token: String,
    expire_time: chrono::DateTime<chrono::Utc>,
}

impl Impersonation {
    /// Impersonation of the service account `email`.
    pub(super) fn of(email: &str, http: reqwest::Client) -> Self {
        let url = format!("{IAM_CREDENTIALS_ENDPOINT}/v1/projects/-/serviceAccounts/{email}:generateAccessToken");
        Self::at(&url, http)
    }

    /// Impersonation through a `generateAccessToken` URL (as an
    /// `impersonated_service_account` credentials file names it).
    pub(super) fn at(url: &str, http: reqwest::Client) -> Self {
        Self {
            url: rerouted(url),
            http,
            cache: Default::default(),
        }
    }

    /// A token for `scope`, from the cache or exchanged for the signed-in
    /// identity's token that `signed_in` fetches.
    pub(super) async fn token<F>(&self, scope: &str, signed_in: F) -> Result<String, BQError>
    where
        F: Future<Output = Result<String, BQError>>,
    {
        let mut cache = self.cache.lock().await;
        if let Some((token, replace_at)) = cache.get(scope)
            && Instant::now() < *replace_at
        {
            return Ok(token.clone());
        }
        let answer = self
            .http
            .post(&self.url)
            .bearer_auth(signed_in.await?)
            .json(&serde_json::json!({"scope": [scope], "lifetime": "3600s"}))
            .send()
            .await?;
        let status = answer.status();
        if !status.is_success() {
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            let message = body["error"]["message"].as_str().unwrap_or("no error message");
            return Err(BQError::YupAuthError(yup_oauth2::Error::UserError(format!(
                "service-account impersonation failed ({status}): {message}"
            ))));
        }
        let answer: Answer = answer.json().await?;
        let lifetime = (answer.expire_time - chrono::Utc::now()).to_std().unwrap_or_default();
        let replace_at = Instant::now() + lifetime.saturating_sub(EARLY_REFRESH);
        cache.insert(scope.to_owned(), (answer.access_token.clone(), replace_at));
        Ok(answer.access_token)
    }
}
