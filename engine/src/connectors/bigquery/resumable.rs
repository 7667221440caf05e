//! Resumable media uploads (`uploadType=resumable`) for large chunks: the
//! job resource opens an upload session, the chunk follows in pieces, and
//! after a failed piece Sluice asks how much arrived and goes on from
//! there instead of sending the whole chunk again. A session may be
//! opened before the chunk's size is known (`bytes a-b/*` ranges, each a
//! multiple of 256 KiB): a chunk is then sent while it is being written
//! (see [`streamed`](super::streamed)) and its size goes with its last
//! piece.

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

pub(super) fn piece_bytes() -> usize {
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

/// A load job's upload session, fed in order: what BigQuery has of the
/// file so far, or the job once the file is complete (or was, by an
/// earlier attempt under the same job id).
pub(super) struct Upload {
    job_id: String,
    state: UploadState,
}

enum UploadState {
    /// The session's URI and the bytes sent (and acknowledged) so far.
    Open {
        uri: String,
        sent: usize,
    },
    Done(Box<Job>),
}

impl Api {
    /// Submits load job `job_id` with `data` through a resumable upload;
    /// safe to repeat like a multipart upload (an existing job of that id is
    /// returned).
    pub(super) async fn upload_resumable(&self, job: &Value, job_id: &str, data: &[u8]) -> Result<Job, ApiError> {
        let mut upload = self.open_upload(job, job_id, Some(data.len())).await?;
        self.finish_upload(&mut upload, data).await
    }

    /// Opens an upload session for load job `job_id` (`job` is its
    /// resource) of a file of `total` bytes, or of a size known only at
    /// its end (`None`: the file is sent while it is written).
    pub(super) async fn open_upload(
        &self,
        job: &Value,
        job_id: &str,
        total: Option<usize>,
    ) -> Result<Upload, ApiError> {
        let state = match self.open_session(job, total).await {
            Ok(uri) => UploadState::Open { uri, sent: 0 },
            // An earlier attempt's job (the id may be checked up front).
            Err(error) if error.is_duplicate() => {
                UploadState::Done(Box::new(self.get_job(job_id).await?.ok_or(error)?))
            }
            Err(error) => return Err(error),
        };
        Ok(Upload {
            job_id: job_id.to_owned(),
            state,
        })
    }

    /// Sends `data`, the next bytes of the file, which goes on after them:
    /// its length must be a multiple of 256 KiB.
    pub(super) async fn send_upload(&self, upload: &mut Upload, data: &[u8]) -> Result<(), ApiError> {
        debug_assert_eq!(
            data.len() % PIECE_UNIT,
            0,
            "pieces but the last are multiples of 256 KiB"
        );
        self.send_range(upload, data, false).await
    }

    /// Sends `data`, the file's last bytes (possibly none); the job.
    pub(super) async fn finish_upload(&self, upload: &mut Upload, data: &[u8]) -> Result<Job, ApiError> {
        self.send_range(upload, data, true).await?;
        match &upload.state {
            UploadState::Done(job) => Ok(job.as_ref().clone()),
            UploadState::Open { sent, .. } => Err(ApiError::new(
                "badResponse",
                format!(
                    "BigQuery did not take the end of the upload of job {} at {sent} bytes",
                    upload.job_id
                ),
            )),
        }
    }

    /// Sends `data` (the bytes from what was sent so far on, and `last`:
    /// the end of the file) in pieces; after a piece whose answer was
    /// lost, asks how much arrived and goes on from there, so no byte is
    /// sent twice. Nothing is sent for a job that exists already.
    async fn send_range(&self, upload: &mut Upload, data: &[u8], last: bool) -> Result<(), ApiError> {
        let (uri, start) = match &upload.state {
            UploadState::Done(_) => return Ok(()),
            UploadState::Open { uri, sent } => (uri.clone(), *sent),
        };
        let end = start + data.len();
        let size = if last { end.to_string() } else { "*".into() };
        let piece = piece_bytes();
        let job_id = upload.job_id.as_str();
        let at = AtomicUsize::new(start);
        let lost = AtomicBool::new(false);
        let progress = loop {
            let progress = retrying("jobs.insert (resumable upload)", || async {
                if lost.load(Ordering::Relaxed) {
                    match self.put(&uri, format!("bytes */{size}"), Vec::new(), job_id).await? {
                        Progress::Done(job) => return Ok(Progress::Done(job)),
                        Progress::Received(bytes) => at.store(bytes, Ordering::Relaxed),
                    }
                    lost.store(false, Ordering::Relaxed);
                }
                let from = at.load(Ordering::Relaxed);
                if !(start..=end).contains(&from) {
                    return Err(ApiError::new(
                        "badResponse",
                        format!(
                            "BigQuery reports {from} bytes of the upload of job {job_id}, expected {start} to {end}"
                        ),
                    ));
                }
                let to = (from + piece).min(end);
                let sent = match (from == to, last) {
                    (true, false) => return Ok(Progress::Received(from)),
                    // The file ended with the last piece sent: say its size.
                    (true, true) => self.put(&uri, format!("bytes */{size}"), Vec::new(), job_id).await,
                    (false, _) => {
                        let range = format!("bytes {from}-{}/{size}", to - 1);
                        let body = data[from - start..to - start].to_vec();
                        self.put(&uri, range, body, job_id).await
                    }
                };
                lost.store(sent.is_err(), Ordering::Relaxed);
                sent
            })
            .await?;
            match progress {
                Progress::Received(bytes) if bytes == end && !last => break Progress::Received(bytes),
                Progress::Received(bytes) => at.store(bytes, Ordering::Relaxed),
                done @ Progress::Done(_) => break done,
            }
        };
        upload.state = match progress {
            Progress::Done(job) => UploadState::Done(job),
            Progress::Received(sent) => UploadState::Open { uri, sent },
        };
        Ok(())
    }

    /// Opens an upload session for the job; its URI.
    async fn open_session(&self, job: &Value, total: Option<usize>) -> Result<String, ApiError> {
        let url = format!(
            "{}/upload/bigquery/v2/projects/{}/jobs?uploadType=resumable",
            self.settings.endpoint, self.settings.project
        );
        retrying("jobs.insert (resumable start)", || async {
            let mut request = self
                .http
                .post(&url)
                .timeout(self.settings.timeout)
                .header(CONTENT_TYPE, "application/json; charset=UTF-8")
                .header("X-Upload-Content-Type", "application/octet-stream");
            if let Some(total) = total {
                request = request.header("X-Upload-Content-Length", total.to_string());
            }
            let request = request.body(job.to_string());
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
