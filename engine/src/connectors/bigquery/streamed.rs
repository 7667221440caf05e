//! A chunk uploaded while it is written: once a chunk of a load without a
//! staging bucket has grown past the resumable upload threshold, its load
//! job's upload session opens and a task sends each whole piece of the
//! file as the encoder writes it out, while the run reads and encodes
//! on. Its last piece (and the file's size) goes when the chunk ends.
//! The run's memory holds a piece or two of the chunk, not the chunk, and
//! only the last piece's upload follows the extraction.

use std::sync::Arc;

use gcp_bigquery_client::model::job::Job;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::api::{Api, ApiError};
use crate::contract::ShipProgress;

/// Pieces waiting for the upload task, beside the one it sends.
const PIECES_AHEAD: usize = 1;

/// What the upload task is handed.
enum Piece {
    /// The next bytes of the file (a multiple of 256 KiB).
    More(Vec<u8>),
    /// The file's last bytes.
    Last(Vec<u8>),
}

/// The upload of one chunk's load job, running beside the run; aborted
/// when dropped (a failed or abandoned run's session expires unused).
pub(super) struct StreamedChunk {
    job_id: String,
    pieces: mpsc::Sender<Piece>,
    task: JoinHandle<Result<Job, ApiError>>,
}

impl StreamedChunk {
    /// Starts the upload of load job `job_id` (`job`, its resource),
    /// counting the bytes sent in `progress`.
    pub(super) fn start(api: Arc<Api>, job: Value, job_id: String, progress: Arc<ShipProgress>) -> Self {
        let (pieces, mut waiting) = mpsc::channel::<Piece>(PIECES_AHEAD);
        let id = job_id.clone();
        let task = tokio::spawn(async move {
            let mut upload = api.open_upload(&job, &id, None).await?;
            while let Some(piece) = waiting.recv().await {
                match piece {
                    Piece::More(bytes) => {
                        api.send_upload(&mut upload, &bytes).await?;
                        progress.uploaded(bytes.len() as u64);
                    }
                    Piece::Last(bytes) => {
                        let job = api.finish_upload(&mut upload, &bytes).await?;
                        progress.uploaded(bytes.len() as u64);
                        return Ok(job);
                    }
                }
            }
            Err(ApiError::new(
                "cancelled",
                format!("the upload of job {id} ended before its file"),
            ))
        });
        Self { job_id, pieces, task }
    }

    /// The load job's id.
    pub(super) fn job_id(&self) -> &str {
        &self.job_id
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
            Ok(Ok(_)) | Err(_) => Err(self.ended()),
        }
    }

    /// Sends the file's last bytes and waits for the upload's end: the
    /// load job it submitted.
    pub(super) async fn finish(mut self, last: Vec<u8>) -> Result<Job, ApiError> {
        // A task that ended early has dropped the receiver: its result says why.
        let _ = self.pieces.send(Piece::Last(last)).await;
        match (&mut self.task).await {
            Ok(result) => result,
            Err(_) => Err(self.ended()),
        }
    }

    fn ended(&self) -> ApiError {
        ApiError::new(
            "cancelled",
            format!("the upload of job {} stopped before the file's end", self.job_id),
        )
    }
}

impl Drop for StreamedChunk {
    fn drop(&mut self) {
        self.task.abort();
    }
}
