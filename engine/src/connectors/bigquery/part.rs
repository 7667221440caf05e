//! A cluster task's part of a BigQuery load (`docs/cluster.md`): an
//! executor signs in with the connection's credentials, cuts its batches
//! into chunks like the server's load does, and stages them in the run's
//! folder of the connection's `staging_bucket`, named
//! `p<part>-<token>-c<n>`. The server's load checks and loads them with
//! its load jobs and one commit ([`Shipper::adopt`](super::ship::Shipper)).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use object_store::path::Path;
use tracing::{info, warn};

use super::Settings;
use super::api::{Api, ApiError};
use super::bucket::StagingBucket;
use super::chunk::{Chunk, ChunkFormat, Chunker};
use crate::contract::{DestinationError, PartWriter, ResolvedOptions, SharedTarget, WrittenFile};

/// Opens the writer of part `part` of the load `target` names (its
/// prefix is the run's folder in the staging bucket).
pub(super) fn open(
    options: &ResolvedOptions,
    target: &SharedTarget,
    part: u32,
    timeout: Duration,
) -> BoxFuture<'static, Result<Box<dyn PartWriter>, DestinationError>> {
    let settings = Settings::new(options, timeout);
    let run_folder = target.prefix.clone();
    Box::pin(async move {
        let settings = settings.map_err(|message| DestinationError::InvalidOption {
            option: "credentials",
            message,
        })?;
        let format = settings.chunk_format;
        let api = (Api::connect(settings).await).map_err(|f| ApiError::from_connect(f).into_destination(None))?;
        let bucket = api.bucket.clone().ok_or_else(|| DestinationError::InvalidOption {
            option: "staging_bucket",
            message: "the connection has no staging_bucket, where executors stage a load's chunks".into(),
        })?;
        Ok(Box::new(StagedPart {
            folder: bucket.run_folder(&run_folder),
            bucket,
            format,
            name: format!("p{part}-{:08x}", rand::random::<u32>()),
            chunker: Chunker::new(format),
            written: Vec::new(),
        }) as Box<dyn PartWriter>)
    })
}

/// One part's chunks, staged as they fill.
struct StagedPart {
    bucket: Arc<StagingBucket>,
    folder: Path,
    format: ChunkFormat,
    /// What this attempt's chunk names start with.
    name: String,
    chunker: Chunker,
    written: Vec<WrittenFile>,
}

impl StagedPart {
    async fn stage(&mut self, chunk: Chunk) -> Result<(), DestinationError> {
        let name = format!("{}-c{}.{}", self.name, self.written.len(), self.format.extension());
        let bytes = chunk.data.len() as u64;
        let path = self.folder.clone().join(name.as_str());
        (self.bucket.put(&path, chunk.data).await).map_err(|e| e.into_destination(None))?;
        info!(chunk = %name, rows = chunk.rows, bytes, "staged a chunk for BigQuery");
        self.written.push(WrittenFile {
            name,
            rows: chunk.rows,
            bytes,
        });
        Ok(())
    }
}

#[async_trait]
impl PartWriter for StagedPart {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        if let Some(chunk) = self.chunker.add(batch)? {
            self.stage(chunk).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<Vec<WrittenFile>, DestinationError> {
        if let Some(chunk) = self.chunker.finish()?
            && let Err(e) = self.stage(chunk).await
        {
            if let Err(discard) = self.discard().await {
                warn!(error = %discard, "could not delete the chunks of a failed part");
            }
            return Err(e);
        }
        Ok(self.written)
    }

    async fn discard(self: Box<Self>) -> Result<(), DestinationError> {
        for file in &self.written {
            let path = self.folder.clone().join(file.name.as_str());
            (self.bucket.delete(&path).await).map_err(|e| e.into_destination(None))?;
        }
        Ok(())
    }
}
