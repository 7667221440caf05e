//! Resumable media uploads (`uploadType=resumable`) for large chunks: the
//! job resource opens an upload session, the chunk follows in pieces, and
//! after a failed piece Sluice asks how much arrived and goes on from
//! there instead of sending the whole chunk again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gcp_bigquery_client::model::job::Job;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use serde_json::Value;

use super::api::{Api, ApiError};
use super::retry::retrying;
use super::upload::{error_of, upload_timeout};

/// Chunks from this size on are uploaded resumably, unless
/// `SLUICE_BIGQUERY_RESUMABLE_BYTES` says otherwise.
const DEFAULT_THRESHOLD: usize = 16 << 20;
/// The protocol's unit: every piece but the last is a multiple of it.
const PIECE_UNIT: usize = 256 << 10;
/// Bytes per piece unless `SLUICE_BIGQUERY_UPLOAD_PIECE_BYTES` says
/// otherwise (rounded down to a multiple of 256 KiB).
const DEFAULT_PIECE: usize = 8 << 20;

fn env_bytes(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0)
}

pub(super) fn threshold() -> usize {
    env_bytes("SLUICE_BIGQUERY_RESUMABLE_BYTES").unwrap_or(DEFAULT_THRESHOLD)
}

fn piece_bytes() -> usize {
    let bytes = env_bytes("SLUICE_BIGQUERY_UPLOAD_PIECE_BYTES").unwrap_or(DEFAULT_PIECE);
    (bytes / PIECE_UNIT).max(1) * PIECE_UNIT
}

/// Where an upload session stands after a request.
enum Progress {
    /// The server has this many bytes.
    Received(usize),
    /// The upload is complete: the job.
    Done(Box<Job>),
}

impl Api {
    /// Submits load job `job_id` with `data` through a resumable upload;
    /// safe to repeat like a multipart upload (an existing job of that id is
    /// returned).
    pub(super) async fn upload_resumable(&self, job: &Value, job_id: &str, data: &[u8]) -> Result<Job, ApiError> {
        let session = match self.open_session(job, data.len()).await {
            Ok(session) => session,
            // An earlier attempt's job (the id may be checked up front).
            Err(error) if error.is_duplicate() => return self.get_job(job_id).await?.ok_or(error),
            Err(error) => return Err(error),
        };
        let total = data.len();
        let piece = piece_bytes();
        let at = AtomicUsize::new(0);
        let lost = AtomicBool::new(false);
        loop {
            let progress = retrying("jobs.insert (resumable upload)", || async {
                if lost.load(Ordering::Relaxed) {
                    match self
                        .put(&session, format!("bytes */{total}"), Vec::new(), job_id)
                        .await?
                    {
                        Progress::Done(job) => return Ok(Progress::Done(job)),
                        Progress::Received(bytes) => at.store(bytes, Ordering::Relaxed),
                    }
                    lost.store(false, Ordering::Relaxed);
                }
                let from = at.load(Ordering::Relaxed);
                let to = (from + piece).min(total);
                let range = format!("bytes {from}-{}/{total}", to - 1);
                let sent = self.put(&session, range, data[from..to].to_vec(), job_id).await;
                lost.store(sent.is_err(), Ordering::Relaxed);
                sent
            })
            .await?;
            match progress {
                Progress::Done(job) => return Ok(*job),
                Progress::Received(bytes) => at.store(bytes, Ordering::Relaxed),
            }
        }
    }

    /// Opens an upload session for the job; its URI.
    async fn open_session(&self, job: &Value, total: usize) -> Result<String, ApiError> {
        let url = format!(
            "{}/upload/bigquery/v2/projects/{}/jobs?uploadType=resumable",
            self.settings.endpoint, self.settings.project
        );
        retrying("jobs.insert (resumable start)", || async {
            let request = self
                .http
                .post(&url)
                .timeout(self.settings.timeout)
                .header(CONTENT_TYPE, "application/json; charset=UTF-8")
                .header("X-Upload-Content-Type", "application/octet-stream")
                .header("X-Upload-Content-Length", total.to_string())
                .body(job.to_string());
            let (status, headers, text) = self.send(request).await?;
            if !status.is_success() {
                return Err(error_of(status.as_u16(), &text));
            }
            headers
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| ApiError::new("badResponse", "no upload session in the answer"))
        })
        .await
    }

    /// Sends `body` as `range` of the upload (`bytes */total` with no body
    /// asks how much arrived).
    async fn put(&self, session: &str, range: String, body: Vec<u8>, job_id: &str) -> Result<Progress, ApiError> {
        let request = self
            .http
            .put(session)
            .timeout(upload_timeout(self, body.len()))
            .header(CONTENT_RANGE, range)
            .body(body);
        let (status, headers, text) = self.send(request).await?;
        match status.as_u16() {
            200 | 201 => serde_json::from_str::<Job>(&text)
                .map(|job| Progress::Done(Box::new(job)))
                .map_err(|e| ApiError::new("badResponse", format!("unexpected answer to a resumable upload: {e}"))),
            308 => Ok(Progress::Received(received(&headers))),
            code => {
                let error = error_of(code, &text);
                if error.is_duplicate() {
                    return self
                        .get_job(job_id)
                        .await?
                        .map(|job| Progress::Done(Box::new(job)))
                        .ok_or(error);
                }
                Err(error)
            }
        }
    }
}

/// The bytes a `308 Resume Incomplete` answer says arrived (`Range:
/// bytes=0-<last>`; none without the header).
fn received(headers: &reqwest::header::HeaderMap) -> usize {
    headers
        .get(RANGE)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes=0-"))
        .and_then(|last| last.parse::<usize>().ok())
        .map_or(0, |last| last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_received_range() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(received(&headers), 0);
        headers.insert(RANGE, "bytes=0-262143".parse().unwrap());
        assert_eq!(received(&headers), 262_144);
    }
}
