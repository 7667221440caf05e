//! A chunk uploaded while it is written: once a chunk has grown past a
//! piece or two, a task sends each whole piece of the file as the encoder
//! writes it out, while the run reads and encodes on: into its load job's
//! resumable upload session (a load without a staging bucket), or as the
//! parts of a multipart upload of its object in the staging bucket. Its
//! last piece goes when the chunk ends. The run's memory holds a piece or
//! two of the chunk, not the chunk, and only the last piece's upload
//! follows the extraction.

use std::sync::Arc;

use gcp_bigquery_client::model::job::Job;
use object_store::path::Path;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use super::api::{Api, ApiError};
use super::bucket::StagingBucket;
use crate::contract::ShipProgress;

/// Pieces waiting for the upload task, beside the one it sends.
const PIECES_AHEAD: usize = 1;

/// Where a streamed chunk goes.
pub(super) enum Target {
    /// Load job `job_id` (`job`, its resource) through a resumable upload.
    Job { api: Arc<Api>, job: Value, job_id: String },
    /// Object `path` of the staging bucket, in a multipart upload.
    Object { bucket: Arc<StagingBucket>, path: Path },
}

/// What a streamed chunk became.
pub(super) enum Delivered {
    /// Its load job, submitted.
    Job(Box<Job>),
    /// Its object, complete in the bucket.
    Staged(Path),
}

/// What the upload task is handed.
enum Piece {
    /// The next bytes of the file (whole pieces).
    More(Vec<u8>),
    /// The file's last bytes.
    Last(Vec<u8>),
}

/// The upload of one chunk, running beside the run; aborted when dropped
/// (a failed or abandoned run's upload session expires unused; a
/// multipart upload whose part fails is aborted).
pub(super) struct StreamedChunk {
    /// The load job's id or the object's URI, for errors and logs.
    name: String,
    pieces: mpsc::Sender<Piece>,
    task: JoinHandle<Result<Delivered, ApiError>>,
}

impl StreamedChunk {
    /// Starts the upload of a chunk to `target`, counting the bytes sent
    /// in `progress`.
    pub(super) fn start(target: Target, progress: Arc<ShipProgress>) -> Self {
        let (pieces, waiting) = mpsc::channel::<Piece>(PIECES_AHEAD);
        let (name, task) = match target {
            Target::Job { api, job, job_id } => (
                job_id.clone(),
                tokio::spawn(to_job(api, job, job_id, waiting, progress)),
            ),
            Target::Object { bucket, path } => (
                bucket.uri(&path),
                tokio::spawn(to_object(bucket, path, waiting, progress)),
            ),
        };
        Self { name, pieces, task }
    }

    /// The load job's id, or the object's URI.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Hands the next piece of the file to the upload, waiting while
    /// [`PIECES_AHEAD`] wait already; the upload's error if it failed.
    pub(super) async fn send(&mut self, piece: Vec<u8>) -> Result<(), ApiError> {
        if self.pieces.send(Piece::More(piece)).await.is_ok() {
            return Ok(());
        }
        // The task ended early: with its error.
        match (&mut self.task).await {
            Ok(Err(error)) => Err(error),
            Ok(Ok(_)) | Err(_) => Err(ended_early(&self.name)),
        }
    }

    /// Sends the file's last bytes and waits for the upload's end.
    pub(super) async fn finish(mut self, last: Vec<u8>) -> Result<Delivered, ApiError> {
        // A task that ended early has dropped the receiver: its result says why.
        let _ = self.pieces.send(Piece::Last(last)).await;
        match (&mut self.task).await {
            Ok(result) => result,
            Err(_) => Err(ended_early(&self.name)),
        }
    }
}

impl Drop for StreamedChunk {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends the pieces into load job `job_id`'s resumable upload.
async fn to_job(
    api: Arc<Api>,
    job: Value,
    job_id: String,
    mut pieces: mpsc::Receiver<Piece>,
    progress: Arc<ShipProgress>,
) -> Result<Delivered, ApiError> {
    let mut upload = api.open_upload(&job, &job_id, None).await?;
    while let Some(piece) = pieces.recv().await {
        match piece {
            Piece::More(bytes) => {
                api.send_upload(&mut upload, &bytes).await?;
                progress.uploaded(bytes.len() as u64);
            }
            Piece::Last(bytes) => {
                let job = api.finish_upload(&mut upload, &bytes).await?;
                progress.uploaded(bytes.len() as u64);
                return Ok(Delivered::Job(Box::new(job)));
            }
        }
    }
    Err(ended_early(&job_id))
}

/// Sends the pieces as the parts of a multipart upload of object `path`,
/// aborted when a part fails.
async fn to_object(
    bucket: Arc<StagingBucket>,
    path: Path,
    mut pieces: mpsc::Receiver<Piece>,
    progress: Arc<ShipProgress>,
) -> Result<Delivered, ApiError> {
    let mut upload = bucket.put_in_parts(&path).await?;
    let sent = async {
        while let Some(piece) = pieces.recv().await {
            let (bytes, last) = match piece {
                Piece::More(bytes) => (bytes, false),
                Piece::Last(bytes) => (bytes, true),
            };
            let size = bytes.len() as u64;
            if size > 0 {
                bucket.put_part(upload.as_mut(), &path, bytes).await?;
                progress.uploaded(size);
            }
            if last {
                return bucket.complete(upload.as_mut(), &path).await;
            }
        }
        Err(ended_early(&bucket.uri(&path)))
    }
    .await;
    match sent {
        Ok(()) => Ok(Delivered::Staged(path)),
        Err(error) => {
            if let Err(e) = upload.abort().await {
                warn!(object = %bucket.uri(&path), error = %e, "could not abort a multipart upload (the bucket's lifecycle rules remove it)");
            }
            Err(error)
        }
    }
}

fn ended_early(name: &str) -> ApiError {
    ApiError::new("cancelled", format!("the upload of {name} ended before its file"))
}
