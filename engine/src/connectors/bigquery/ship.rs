//! How a run's finished chunks reach BigQuery: each in its own load job's
//! request (media upload), or staged in the connection's bucket and named
//! by `sourceUris`, many chunks to a load job (so that a large run stays a
//! few table operations).

use std::sync::Arc;

use gcp_bigquery_client::model::job::Job;
use object_store::path::Path;
use serde_json::{Value, json};
use tracing::warn;

use super::api::{Api, ApiError};
use super::bucket::StagingBucket;
use super::destination::RunNames;
use crate::contract::{DestinationError, WrittenFile};

/// Staged chunks per load job unless `SLUICE_BIGQUERY_URIS_PER_JOB` says
/// otherwise (BigQuery takes up to 10,000 URIs and 15 TB per load job).
const DEFAULT_URIS_PER_JOB: usize = 1_000;

fn uris_per_job() -> usize {
    std::env::var("SLUICE_BIGQUERY_URIS_PER_JOB")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| (1..=10_000).contains(&n))
        .unwrap_or(DEFAULT_URIS_PER_JOB)
}

enum Route {
    /// The chunk waiting for its load job's upload.
    Upload(Option<Vec<u8>>),
    /// Chunks staged in `folder`; the URIs not loaded yet.
    Bucket {
        bucket: Arc<StagingBucket>,
        folder: Path,
        staged: usize,
        pending: Vec<String>,
        per_job: usize,
    },
}

/// One run's way of shipping its chunks.
pub(super) struct Shipper {
    api: Arc<Api>,
    route: Route,
}

impl Shipper {
    pub(super) fn new(api: Arc<Api>, names: &RunNames) -> Self {
        let route = match &api.bucket {
            Some(bucket) => Route::Bucket {
                folder: bucket.run_folder(&names.job_prefix),
                bucket: bucket.clone(),
                staged: 0,
                pending: Vec::new(),
                per_job: uris_per_job(),
            },
            None => Route::Upload(None),
        };
        Self { api, route }
    }

    /// Takes a finished chunk (file name extension `extension`), staging it
    /// at once when there is a bucket; the bytes sent now.
    pub(super) async fn add(&mut self, chunk: Vec<u8>, extension: &str) -> Result<u64, ApiError> {
        let bytes = chunk.len() as u64;
        match &mut self.route {
            Route::Upload(slot) => {
                *slot = Some(chunk);
                Ok(0)
            }
            Route::Bucket { .. } => {
                let Some((bucket, path)) = self.next_object(extension) else {
                    unreachable!("a bucket route stages objects");
                };
                bucket.put(&path, chunk).await?;
                self.staged(&path);
                Ok(bytes)
            }
        }
    }

    /// The bucket and object the next chunk is staged as (file name
    /// extension `extension`); `None` without a bucket.
    pub(super) fn next_object(&self, extension: &str) -> Option<(Arc<StagingBucket>, Path)> {
        match &self.route {
            Route::Upload(_) => None,
            Route::Bucket {
                bucket, folder, staged, ..
            } => Some((
                bucket.clone(),
                folder.clone().join(format!("c{staged}.{extension}").as_str()),
            )),
        }
    }

    /// Takes object `path`, the next chunk [`next_object`](Self::next_object)
    /// named, as staged: it is loaded with the next load job.
    pub(super) fn staged(&mut self, path: &Path) {
        if let Route::Bucket {
            bucket,
            staged,
            pending,
            ..
        } = &mut self.route
        {
            *staged += 1;
            pending.push(bucket.uri(path));
        }
    }

    /// Takes chunks executors staged in the run's folder (named
    /// `p<part>-...` and ending in `.<extension>`), each checked to be
    /// there with the size its task reported.
    pub(super) async fn adopt(&mut self, files: &[WrittenFile], extension: &str) -> Result<(), DestinationError> {
        if files.is_empty() {
            return Ok(());
        }
        let refused = |file: &WrittenFile, reason: String| DestinationError::CopiedFile {
            file: file.name.clone(),
            reason,
        };
        let Route::Bucket {
            bucket,
            folder,
            pending,
            ..
        } = &mut self.route
        else {
            return match files.first() {
                Some(file) => Err(refused(
                    file,
                    "the connection has no staging_bucket to take it from".into(),
                )),
                None => Ok(()),
            };
        };
        let staged = bucket.sizes(folder).await.map_err(|e| e.into_destination(None))?;
        for file in files {
            let ours = file.name.starts_with('p')
                && !file.name.contains('/')
                && file
                    .name
                    .strip_suffix(extension)
                    .is_some_and(|stem| stem.ends_with('.'));
            if !ours {
                return Err(refused(
                    file,
                    format!("it is not a chunk of this run (p<part>-....{extension})"),
                ));
            }
            match staged.get(file.name.as_str()) {
                Some(&bytes) if bytes == file.bytes => {
                    pending.push(bucket.uri(&folder.clone().join(file.name.as_str())))
                }
                Some(bytes) => {
                    return Err(refused(
                        file,
                        format!("it has {bytes} bytes, the task reported {}", file.bytes),
                    ));
                }
                None => {
                    return Err(refused(
                        file,
                        format!("the task reported it, but it is not in {}", bucket.uri(folder)),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether each chunk goes in its own load job's upload (no bucket).
    pub(super) fn uploads(&self) -> bool {
        matches!(self.route, Route::Upload(_))
    }

    /// Whether a load job is due; `last` at the end of the run.
    pub(super) fn due(&self, last: bool) -> bool {
        match &self.route {
            Route::Upload(chunk) => chunk.is_some(),
            Route::Bucket { pending, per_job, .. } => pending.len() >= *per_job || (last && !pending.is_empty()),
        }
    }

    /// Submits load job `job_id` (`job` is its resource, without files) for
    /// the chunks taken since the last one (at most the job's share), and
    /// says how many bytes went with it. Safe to repeat: a job of that id that exists already is returned.
    pub(super) async fn submit(&mut self, mut job: Value, job_id: &str) -> Result<(Job, u64), ApiError> {
        match &mut self.route {
            Route::Upload(slot) => {
                let chunk = slot.take().unwrap_or_default();
                let submitted = self.api.upload_load_job(&job, job_id, &chunk).await?;
                Ok((submitted, chunk.len() as u64))
            }
            Route::Bucket { pending, per_job, .. } => {
                let taken = pending.len().min(*per_job);
                job["configuration"]["load"]["sourceUris"] = json!(pending[..taken]);
                let submitted = self.api.insert_job_resource(&job, job_id).await?;
                pending.drain(..taken);
                Ok((submitted, 0))
            }
        }
    }

    /// Deletes the run's staged chunks, if any.
    pub(super) async fn clean_up(&self) {
        if let Route::Bucket { bucket, folder, .. } = &self.route {
            delete_staged(bucket, folder).await;
        }
    }
}

/// Deletes what a run (say, one that crashed) staged in the connection's
/// bucket; a failure is only logged (the objects are then left behind).
pub(super) async fn clean_up_run(api: &Api, names: &RunNames) {
    if let Some(bucket) = &api.bucket {
        delete_staged(bucket, &bucket.run_folder(&names.job_prefix)).await;
    }
}

async fn delete_staged(bucket: &StagingBucket, folder: &Path) {
    if let Err(e) = bucket.delete_folder(folder).await {
        warn!(folder = %bucket.uri(folder), error = %e, "could not delete staged chunks; delete them by hand");
    }
}
