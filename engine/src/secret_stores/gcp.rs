//! Google Secret Manager: `projects.secrets.versions.access` over REST
//! (`GET /v1/{name}:access`, the value base64 in `payload.data`), signed in
//! with a given service-account key file or the environment's Application
//! Default Credentials through the BigQuery connector's token source. `SLUICE_GCP_SECRET_MANAGER_ENDPOINT`
//! replaces the endpoint (tests point it at a local fake).

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use sluice_catalog::SecretValue;

use super::SecretFetchProblem;
use crate::contract::error_chain;
use crate::google::Credentials;
use crate::google::auth::TokenSource;

const DEFAULT_ENDPOINT: &str = "https://secretmanager.googleapis.com";
const ENDPOINT_VARIABLE: &str = "SLUICE_GCP_SECRET_MANAGER_ENDPOINT";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The value of the secret version `name` (`projects/p/secrets/s/versions/v`),
/// signed in as the credentials JSON in `key_file`, else with Application
/// Default Credentials.
pub(super) async fn access(
    name: &str,
    key_file: Option<&Path>,
    timeout: Duration,
) -> Result<SecretValue, SecretFetchProblem> {
    let sign_in = |e: String| SecretFetchProblem::Forbidden(format!("cannot sign in to Google: {e}"));
    let credentials = match key_file {
        Some(path) => Credentials::Json(std::fs::read_to_string(path).map_err(|e| {
            sign_in(format!(
                "cannot read the credentials file {}: {}",
                path.display(),
                e.kind()
            ))
        })?),
        None => Credentials::ApplicationDefault,
    };
    let tokens = TokenSource::new(&credentials, None, timeout).await.map_err(sign_in)?;
    let token = tokens.token_for(SCOPE).await.map_err(|e| sign_in(e.to_string()))?;
    let endpoint = std::env::var(ENDPOINT_VARIABLE).unwrap_or_else(|_| DEFAULT_ENDPOINT.into());
    let endpoint = endpoint.trim_end_matches('/');
    let http = super::http_client(timeout)?;
    let response = http
        .get(format!("{endpoint}/v1/{name}:access"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| {
            SecretFetchProblem::Unavailable(format!(
                "Secret Manager at {endpoint} did not answer: {}",
                error_chain(&e)
            ))
        })?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["error"]["message"].as_str().unwrap_or("no message").to_owned();
    match status {
        200 => decode(&body),
        404 => Err(SecretFetchProblem::NotFound),
        401 | 403 => Err(SecretFetchProblem::Forbidden(format!(
            "Secret Manager answered {status}: {message}"
        ))),
        _ => Err(SecretFetchProblem::Unavailable(format!(
            "Secret Manager answered {status}: {message}"
        ))),
    }
}

/// The UTF-8 text of an `AccessSecretVersionResponse`'s `payload.data`.
fn decode(body: &Value) -> Result<SecretValue, SecretFetchProblem> {
    let malformed = |what: &str| SecretFetchProblem::Unavailable(format!("Secret Manager answered {what}"));
    let data = body["payload"]["data"]
        .as_str()
        .ok_or_else(|| malformed("without payload.data"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| malformed("a payload that is not base64"))?;
    String::from_utf8(bytes)
        .map(SecretValue::new)
        .map_err(|_| malformed("a payload that is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode_to_text() {
        let body = serde_json::json!({"name": "n", "payload": {"data": "czNjcjN0"}});
        assert_eq!(decode(&body).unwrap().expose(), "s3cr3t");
        assert!(decode(&serde_json::json!({"payload": {"data": "!!"}})).is_err());
        assert!(decode(&serde_json::json!({})).is_err());
    }
}
