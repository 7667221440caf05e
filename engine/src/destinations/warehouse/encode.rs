//! Parquet encoding of a load in its own task, so that the source's rows are
//! extracted and decoded while earlier batches are compressed and written
//! (each file's columns on several threads: [`ParallelFile`]). Batches reach
//! the task through a small bounded channel (back-pressure keeps memory
//! flat); files roll at the warehouse's file limits.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::object_store::buffered::BufWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::LocalWarehouse;
use super::manifest::DataFile;
use super::parallel_file::ParallelFile;
use crate::contract::{DestinationError, ShipProgress};
use crate::destinations::dictionary;

/// Buffered rows are written out as a row group once they take this much
/// memory, so that a wide table never holds more than this per open file.
const ROW_GROUP_MEMORY: usize = 16 << 20;

/// More encoding threads than this gain little: the source's decoding and
/// the upload need cores too.
const MAX_ENCODING_THREADS: usize = 4;

/// Batches waiting for the encoder.
const QUEUED_BATCHES: usize = 4;

/// A file is written out in parts of this size (a multipart upload in a
/// cloud store; S3 needs at least 5 MiB a part)...
pub(super) const PART_BYTES: usize = 5 << 20;
/// ...one at a time while the next part fills, so that a file holds at most
/// 10 MiB in memory however large it grows (`object_store`'s default, eight
/// 10 MiB parts, held up to 90 MiB; a profile of a 10,000,000-row load
/// found 16 MiB here with two 8 MiB parts). Encoding a part takes longer
/// than uploading it, so one in flight does not slow a load.
const PARTS_IN_FLIGHT: usize = 1;

enum Work {
    Batch(RecordBatch),
    /// Finish the last file and return the files.
    Finish,
    /// Stop and delete everything written.
    Discard,
}

/// The handle of a running encoder task.
pub(super) struct Encoder {
    queue: Option<mpsc::Sender<Work>>,
    task: Option<JoinHandle<Result<Vec<DataFile>, DestinationError>>>,
    /// Bytes of the files finished so far.
    written: Arc<ShipProgress>,
}

impl Encoder {
    /// Starts encoding files named `<prefix>-<n>.parquet` into `table`.
    pub fn start(warehouse: LocalWarehouse, table: &str, prefix: String, schema: SchemaRef) -> Self {
        let (queue, work) = mpsc::channel(QUEUED_BATCHES);
        let written = Arc::new(ShipProgress::default());
        let files = ParquetFiles {
            warehouse,
            table: table.to_owned(),
            prefix,
            schema,
            open: None,
            finished: Vec::new(),
            written: written.clone(),
        };
        Self {
            queue: Some(queue),
            task: Some(tokio::spawn(files.run(work))),
            written,
        }
    }

    /// The count of bytes written, growing as files are finished.
    pub fn written(&self) -> Arc<ShipProgress> {
        self.written.clone()
    }

    /// Queues a batch; waits while the queue is full.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        let sent = match &self.queue {
            Some(queue) => queue.send(Work::Batch(batch)).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The task stopped early: it failed.
            Err(self.wait().await.err().unwrap_or_else(stopped))
        }
    }

    /// Finishes the last file; the files written.
    pub async fn finish(&mut self) -> Result<Vec<DataFile>, DestinationError> {
        self.tell(Work::Finish).await;
        self.wait().await
    }

    /// Stops and deletes everything written.
    pub async fn discard(&mut self) -> Result<(), DestinationError> {
        self.tell(Work::Discard).await;
        self.wait().await.map(drop)
    }

    /// Sends the last message; a task that already failed has discarded its
    /// files itself, and its error comes from [`Encoder::wait`].
    async fn tell(&mut self, last: Work) {
        if let Some(queue) = self.queue.take() {
            let _ = queue.send(last).await;
        }
    }

    async fn wait(&mut self) -> Result<Vec<DataFile>, DestinationError> {
        self.queue = None;
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic())
                }
                Err(stopped())
            }),
            None => Err(stopped()),
        }
    }
}

/// The threads a file's columns are encoded on: one per core, at most
/// [`MAX_ENCODING_THREADS`].
fn encoding_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_ENCODING_THREADS))
}

fn stopped() -> DestinationError {
    DestinationError::EncoderStopped
}

/// The Parquet files of one load, written by the encoder task.
struct ParquetFiles {
    warehouse: LocalWarehouse,
    table: String,
    prefix: String,
    schema: SchemaRef,
    open: Option<OpenFile>,
    finished: Vec<DataFile>,
    /// Bytes of the finished files, shared with the [`Encoder`].
    written: Arc<ShipProgress>,
}

struct OpenFile {
    name: String,
    writer: ParallelFile,
    rows: usize,
}

impl ParquetFiles {
    /// Encodes what arrives until told to finish or discard; on any failure
    /// deletes its files and returns the error. When the load is dropped
    /// without either (its run ended abruptly), it stops after the queued
    /// batches and leaves its files for the warehouse's clean-up, like a
    /// crash would.
    async fn run(mut self, mut work: mpsc::Receiver<Work>) -> Result<Vec<DataFile>, DestinationError> {
        let written = async {
            while let Some(item) = work.recv().await {
                match item {
                    Work::Batch(batch) => self.write(&batch).await?,
                    Work::Finish => return self.finish_file().await.map(|()| true),
                    Work::Discard => return Ok(false),
                }
            }
            Err(stopped())
        }
        .await;
        match written {
            Ok(true) => Ok(self.finished),
            Ok(false) => self.discard().await.map(|()| Vec::new()),
            Err(DestinationError::EncoderStopped) => Err(DestinationError::EncoderStopped),
            Err(e) => {
                if let Err(cleanup) = self.discard().await {
                    tracing::warn!(table = %self.table, error = %cleanup, "could not delete the files of a failed load");
                }
                Err(e)
            }
        }
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<(), DestinationError> {
        let limits = self.warehouse.limits;
        let max_rows = limits.max_rows.max(1);
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.open.is_none() {
                self.open = Some(self.open_file(&batch.slice(offset, batch.num_rows() - offset))?);
            }
            let file = self.open.as_mut().expect("a file is open");
            let rows = (max_rows - file.rows).min(batch.num_rows() - offset);
            file.writer.write(&batch.slice(offset, rows)).await?;
            file.rows += rows;
            offset += rows;
            if file.rows >= max_rows || file.writer.bytes_written() + file.writer.in_progress_size() >= limits.max_bytes
            {
                self.finish_file().await?;
            } else if file.writer.memory_size() >= ROW_GROUP_MEMORY {
                file.writer.flush().await?;
            }
        }
        Ok(())
    }

    /// Opens the next file; its first rows decide its encodings.
    fn open_file(&self, first: &RecordBatch) -> Result<OpenFile, DestinationError> {
        let name = format!("{}-{:05}.parquet", self.prefix, self.finished.len());
        let path = self.warehouse.data_path(&self.table, &name);
        let properties = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default()));
        let properties = dictionary::only_where_values_repeat(properties, first).build();
        let writer = ParallelFile::try_new(
            BufWriter::with_capacity(self.warehouse.store.clone(), path, PART_BYTES)
                .with_max_concurrency(PARTS_IN_FLIGHT),
            self.schema.clone(),
            properties,
            encoding_threads(),
        )?;
        Ok(OpenFile { name, writer, rows: 0 })
    }

    async fn finish_file(&mut self) -> Result<(), DestinationError> {
        if let Some(mut file) = self.open.take() {
            file.writer.finish().await?;
            self.written.uploaded(file.writer.bytes_written() as u64);
            self.finished.push(DataFile {
                name: file.name,
                rows: file.rows as u64,
                bytes: file.writer.bytes_written() as u64,
                constants: Vec::new(),
            });
        }
        Ok(())
    }

    /// Deletes everything written.
    async fn discard(&mut self) -> Result<(), DestinationError> {
        if let Some(file) = self.open.take() {
            file.writer.into_inner().abort().await?;
        }
        let paths = self
            .finished
            .drain(..)
            .map(|file| self.warehouse.data_path(&self.table, &file.name))
            .collect();
        self.warehouse.delete_all(paths).await
    }
}
