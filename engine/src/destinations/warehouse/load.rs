//! One load into a warehouse table: batches stream into Parquet files that
//! roll at the file limits, then the next manifest version publishes them.

use async_trait::async_trait;
use chrono::Utc;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::object_store::buffered::BufWriter;
use datafusion::object_store::{self, ObjectStoreExt};
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use super::manifest::{DataFile, Manifest};
use super::{LocalWarehouse, schema_differences};
use crate::destinations::{CommitReport, DestinationError, LoadTransaction, WriteMode};

/// Buffered rows are written out as a row group once they take this much
/// memory, so that a wide table never holds more than this per open file.
const ROW_GROUP_MEMORY: usize = 16 << 20;

/// The run that wrote a data file, from its name.
pub(super) fn run_of(name: &str) -> Option<u64> {
    name.strip_prefix("run-")?.split('-').next()?.parse().ok()
}

pub(super) struct WarehouseLoad {
    warehouse: LocalWarehouse,
    table: String,
    run_id: u64,
    mode: WriteMode,
    /// The version this load started from; it publishes the next one.
    base: Manifest,
    /// Tells this load's files from those of other attempts of the same run.
    token: String,
    open: Option<OpenFile>,
    finished: Vec<DataFile>,
}

struct OpenFile {
    name: String,
    writer: AsyncArrowWriter<BufWriter>,
    rows: usize,
}

impl WarehouseLoad {
    pub fn new(warehouse: LocalWarehouse, table: &str, run_id: u64, mode: WriteMode, base: Manifest) -> Self {
        Self {
            warehouse,
            table: table.to_owned(),
            run_id,
            mode,
            base,
            token: format!("{:016x}", rand::random::<u64>()),
            open: None,
            finished: Vec::new(),
        }
    }

    /// `batch` under the table's own schema, if its columns match.
    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch, DestinationError> {
        let schema = &self.base.schema;
        if batch.schema_ref() == schema {
            return Ok(batch);
        }
        let differences = schema_differences(schema, batch.schema_ref(), false);
        if !differences.is_empty() {
            return Err(DestinationError::SchemaMismatch {
                table: self.table.clone(),
                differences,
            });
        }
        // Checks NOT NULL columns for nulls.
        Ok(RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?)
    }

    fn open_file(&self) -> Result<OpenFile, DestinationError> {
        let name = format!("run-{}-{}-{:05}.parquet", self.run_id, self.token, self.finished.len());
        let path = self.warehouse.data_path(&self.table, &name);
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let writer = AsyncArrowWriter::try_new(
            BufWriter::new(self.warehouse.store.clone(), path),
            self.base.schema.clone(),
            Some(properties),
        )?;
        Ok(OpenFile { name, writer, rows: 0 })
    }

    async fn finish_file(&mut self) -> Result<(), DestinationError> {
        if let Some(mut file) = self.open.take() {
            file.writer.finish().await?;
            self.finished.push(DataFile {
                name: file.name,
                rows: file.rows as u64,
                bytes: file.writer.bytes_written() as u64,
            });
        }
        Ok(())
    }

    /// Deletes everything this load wrote.
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

    fn conflict(&self, detail: String) -> DestinationError {
        DestinationError::Conflict {
            table: self.table.clone(),
            detail,
        }
    }
}

#[async_trait]
impl LoadTransaction for WarehouseLoad {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        let batch = self.conform(batch)?;
        let limits = self.warehouse.limits;
        let max_rows = limits.max_rows.max(1);
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.open.is_none() {
                self.open = Some(self.open_file()?);
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

    async fn commit(mut self: Box<Self>, watermark: Option<String>) -> Result<CommitReport, DestinationError> {
        self.finish_file().await?;
        let warehouse = self.warehouse.clone();
        // A concurrent load's clean-up may have taken this load's files.
        for file in &self.finished {
            match warehouse
                .store
                .head(&warehouse.data_path(&self.table, &file.name))
                .await
            {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(self.conflict(format!("data file {} was deleted before the commit", file.name)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut files = match self.mode {
            WriteMode::Append => self.base.files.clone(),
            WriteMode::Replace => Vec::new(),
        };
        files.extend(self.finished.iter().cloned());
        let manifest = Manifest {
            version: self.base.version + 1,
            schema: self.base.schema.clone(),
            files,
            run_id: Some(self.run_id),
            watermark,
            committed_at: Utc::now(),
        };
        match warehouse.publish(&self.table, &manifest).await {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let conflict = self.conflict(format!("version {} was published by another load", manifest.version));
                if let Err(e) = self.discard().await {
                    tracing::warn!(table = %self.table, error = %e, "could not delete the files of a conflicting load");
                }
                return Err(conflict);
            }
            Err(e) => return Err(e.into()),
        }
        if let Err(e) = warehouse.collect_garbage(&self.table, self.run_id).await {
            tracing::warn!(table = %self.table, error = %e, "could not clean up after a commit");
        }
        Ok(CommitReport {
            rows: self.finished.iter().map(|f| f.rows).sum(),
            bytes: self.finished.iter().map(|f| f.bytes).sum(),
            files: self.finished.len(),
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<(), DestinationError> {
        self.discard().await
    }
}
