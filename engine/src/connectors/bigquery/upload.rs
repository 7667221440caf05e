//! Load jobs submitted as their JSON resource, which `gcp-bigquery-client`
//! cannot send (its model lacks `parquetOptions`): with the file in the
//! request through the media upload endpoint (`uploadType=multipart`, no
//! bucket needed; large files resumably, see [`super::resumable`]), or naming
//! files staged in Cloud Storage.

use std::time::Duration;

use gcp_bigquery_client::model::job::Job;
use serde_json::Value;

use super::api::{Api, ApiError};
use super::retry::retrying;

const BOUNDARY: &str = "sluice_load_job_boundary_5f1c0a";

/// Upload bandwidth assumed when bounding an upload's time.
const MIN_BYTES_PER_SECOND: u64 = 1 << 20;

/// How long sending `bytes` may take.
pub(super) fn upload_timeout(api: &Api, bytes: usize) -> Duration {
    api.settings.timeout + Duration::from_secs(bytes as u64 / MIN_BYTES_PER_SECOND)
}

impl Api {
    /// Submits load job `job_id` (`job` is its JSON resource) with `data` as
    /// the file to load. Repeating it is safe: when a job of that id exists
    /// (an earlier attempt reached BigQuery), that job is returned.
    pub(super) async fn upload_load_job(&self, job: &Value, job_id: &str, data: &[u8]) -> Result<Job, ApiError> {
        if data.len() >= super::resumable::threshold() {
            return self.upload_resumable(job, job_id, data).await;
        }
        let url = format!(
            "{}/upload/bigquery/v2/projects/{}/jobs?uploadType=multipart",
            self.settings.endpoint, self.settings.project
        );
        let timeout = upload_timeout(self, data.len());
        let content_type = format!("multipart/related; boundary={BOUNDARY}");
        self.post_job(
            "jobs.insert (upload)",
            &url,
            &content_type,
            multipart_body(job, data),
            timeout,
            job_id,
        )
        .await
    }

    /// Submits job `job_id` whose resource names its files (`sourceUris`);
    /// safe to repeat like [`Api::upload_load_job`].
    pub(super) async fn insert_job_resource(&self, job: &Value, job_id: &str) -> Result<Job, ApiError> {
        let url = format!(
            "{}/bigquery/v2/projects/{}/jobs",
            self.settings.endpoint, self.settings.project
        );
        let body = job.to_string().into_bytes();
        self.post_job(
            "jobs.insert",
            &url,
            "application/json",
            body,
            self.settings.timeout,
            job_id,
        )
        .await
    }

    async fn post_job(
        &self,
        what: &str,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: Duration,
        job_id: &str,
    ) -> Result<Job, ApiError> {
        retrying(what, || async {
            let request = self
                .http
                .post(url)
                .timeout(timeout)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone());
            let (status, _, text) = self.send(request).await?;
            if status.is_success() {
                return serde_json::from_str::<Job>(&text)
                    .map_err(|e| ApiError::new("badResponse", format!("unexpected answer to {what}: {e}")));
            }
            let error = error_of(status.as_u16(), &text);
            if error.is_duplicate() {
                return self.get_job(job_id).await?.ok_or(error);
            }
            Err(error)
        })
        .await
    }
}

impl Api {
    /// Sends a request with a current token: the answer's status, headers
    /// and text.
    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, String), ApiError> {
        let token = self.tokens.token().await.map_err(ApiError::from_bq)?;
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ApiError::from_http(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| ApiError::from_http(&e))?;
        Ok((status, headers, text))
    }
}

/// The `multipart/related` body: the job resource, then the file.
fn multipart_body(job: &Value, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.len() + 1024);
    body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes());
    body.extend_from_slice(job.to_string().as_bytes());
    body.extend_from_slice(format!("\r\n--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// BigQuery's error JSON (`{"error": {"code", "message", "errors": [{"reason"}]}}`),
/// or the status and text of an answer that is not one.
pub(super) fn error_of(status: u16, text: &str) -> ApiError {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let reason = error
        .and_then(|e| e.pointer("/errors/0/reason"))
        .and_then(Value::as_str)
        .unwrap_or("httpError");
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()));
    ApiError {
        status: Some(status),
        reason: reason.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bigquery_errors_and_others() {
        let e = error_of(
            400,
            r#"{"error":{"code":400,"message":"Error while reading data","errors":[{"reason":"invalid","message":"x"}]}}"#,
        );
        assert_eq!(
            (e.reason.as_str(), e.message.as_str()),
            ("invalid", "Error while reading data")
        );
        assert!(!e.retryable());
        let e = error_of(502, "<html>bad gateway</html>");
        assert!(e.retryable() && e.message.contains("502"), "{e}");
        assert!(error_of(409, "{}").is_duplicate());
    }

    #[test]
    fn body_has_the_job_then_the_file() {
        let body = multipart_body(&serde_json::json!({"a": 1}), b"PAR1");
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{BOUNDARY}\r\n")));
        assert!(text.find("{\"a\":1}").unwrap() < text.find("PAR1").unwrap());
        assert!(text.ends_with(&format!("--{BOUNDARY}--\r\n")));
    }
}
