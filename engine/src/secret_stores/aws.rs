//! AWS Secrets Manager: `GetSecretValue` over the JSON 1.1 protocol, signed
//! ([`crate::aws::json`]) with the credentials of the server's AWS chain
//! ([`crate::aws::credentials`]: environment keys, the shared credentials
//! and config files in `AWS_PROFILE`'s section, the container endpoint,
//! the instance metadata service). The region
//! is the ARN's, else `AWS_REGION` / `AWS_DEFAULT_REGION`, else
//! `us-east-1`; `SLUICE_AWS_SECRETS_MANAGER_ENDPOINT` replaces the endpoint
//! (tests point it at moto).

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use sluice_catalog::SecretValue;

use super::SecretFetchProblem;
use crate::aws::credentials::{CredentialChain, process_env};
use crate::aws::json::{self as aws_json, AwsEndpoint, PostError};
use crate::contract::error_chain;

const ENDPOINT_VARIABLE: &str = "SLUICE_AWS_SECRETS_MANAGER_ENDPOINT";

/// The current value (`AWSCURRENT`) of the secret `id`, an ARN or a name.
pub(super) async fn get_secret_value(id: &str, timeout: Duration) -> Result<SecretValue, SecretFetchProblem> {
    let credentials = CredentialChain::new(None, None, process_env())
        .credentials()
        .await
        .map_err(SecretFetchProblem::Forbidden)?;
    let endpoint = AwsEndpoint::new(
        "secretsmanager",
        &region(id),
        std::env::var(ENDPOINT_VARIABLE).ok().as_deref(),
    );
    let http = super::http_client(timeout)?;
    let (status, text) = aws_json::post(
        &http,
        &endpoint,
        &credentials,
        "application/x-amz-json-1.1",
        "secretsmanager.GetSecretValue",
        json!({ "SecretId": id }).to_string(),
    )
    .await
    .map_err(|e| {
        SecretFetchProblem::Unavailable(match e {
            PostError::Sign(message) => message,
            PostError::Send(e) | PostError::Read(e) => {
                format!(
                    "Secrets Manager at {} did not answer: {}",
                    endpoint.url,
                    error_chain(&e)
                )
            }
        })
    })?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status == 200 {
        return value(&body);
    }
    let kind = body["__type"].as_str().unwrap_or("UnknownError");
    let kind = kind.rsplit('#').next().unwrap_or(kind);
    let message = body["message"]
        .as_str()
        .or(body["Message"].as_str())
        .unwrap_or("no message");
    let answered = format!("Secrets Manager answered {kind}: {message}");
    Err(match kind {
        "ResourceNotFoundException" => SecretFetchProblem::NotFound,
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "DecryptionFailure" => SecretFetchProblem::Forbidden(answered),
        // A refusal without a JSON error body (moto's IAM check answers so).
        _ if status == 401 || status == 403 => SecretFetchProblem::Forbidden(format!("{answered} (HTTP {status})")),
        _ => SecretFetchProblem::Unavailable(answered),
    })
}

/// The region of an ARN (`arn:aws:secretsmanager:REGION:...`), else the
/// environment's.
fn region(id: &str) -> String {
    let from_arn = id
        .strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(2))
        .filter(|r| !r.is_empty());
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    from_arn
        .map(str::to_owned)
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into())
}

/// `SecretString`, or `SecretBinary` when it is UTF-8 text.
fn value(body: &Value) -> Result<SecretValue, SecretFetchProblem> {
    if let Some(text) = body["SecretString"].as_str() {
        return Ok(SecretValue::new(text));
    }
    let binary = body["SecretBinary"].as_str().ok_or_else(|| {
        SecretFetchProblem::Unavailable("Secrets Manager answered without SecretString or SecretBinary".into())
    })?;
    base64::engine::general_purpose::STANDARD
        .decode(binary)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(SecretValue::new)
        .ok_or_else(|| SecretFetchProblem::Unavailable("the secret's SecretBinary is not UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_the_arn_and_values_from_either_field() {
        assert_eq!(
            region("arn:aws:secretsmanager:eu-west-3:123456789012:secret:pg-AbCdEf"),
            "eu-west-3"
        );
        assert_eq!(value(&json!({"SecretString": "s3cr3t"})).unwrap().expose(), "s3cr3t");
        assert_eq!(value(&json!({"SecretBinary": "czNjcjN0"})).unwrap().expose(), "s3cr3t");
        assert!(value(&json!({})).is_err());
    }
}
