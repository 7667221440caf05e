//! One load into a warehouse table: batches stream into Parquet files that
//! roll at the file limits, then the next manifest version publishes them.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::object_store::{self, ObjectStoreExt};

use super::copy::Copies;
use super::encode::Encoder;
use super::manifest::{DataFile, Manifest};
use super::{LocalWarehouse, schema_differences};
use crate::contract::{
    CommitReport, DestinationError, LoadTransaction, SharedTarget, ShipProgress, WholeFile, WriteMode, WrittenFile,
};

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
    /// Encodes the batches into this load's Parquet files.
    encoder: Encoder,
    /// Copies the files loaded as they are.
    copies: Copies,
    /// Names the files of this load: `run-<id>-<token>`.
    prefix: String,
    /// Files other processes wrote for this load.
    adopted: Vec<DataFile>,
}

impl WarehouseLoad {
    pub fn new(warehouse: LocalWarehouse, table: &str, run_id: u64, mode: WriteMode, base: Manifest) -> Self {
        // The token tells this load's files from those of other attempts of
        // the same run.
        let prefix = format!("run-{run_id}-{:016x}", rand::random::<u64>());
        let encoder = Encoder::start(warehouse.clone(), table, prefix.clone(), base.schema.clone());
        let copies = Copies::new(
            warehouse.clone(),
            table,
            prefix.clone(),
            base.schema.clone(),
            encoder.written(),
        );
        Self {
            warehouse,
            table: table.to_owned(),
            run_id,
            mode,
            base,
            encoder,
            copies,
            prefix,
            adopted: Vec::new(),
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
}

#[async_trait]
impl LoadTransaction for WarehouseLoad {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        let batch = self.conform(batch)?;
        self.encoder.write(batch).await
    }

    async fn commit(mut self: Box<Self>, watermark: Option<String>) -> Result<CommitReport, DestinationError> {
        let copied = match self.copies.finish().await {
            Ok(copied) => copied,
            Err(e) => {
                self.discard().await;
                return Err(e);
            }
        };
        let mut finished = match self.encoder.finish().await {
            Ok(encoded) => encoded,
            Err(e) => {
                self.discard().await;
                return Err(e);
            }
        };
        finished.extend(copied);
        finished.append(&mut self.adopted);
        self.publish(finished, watermark).await
    }

    async fn abort(mut self: Box<Self>) -> Result<(), DestinationError> {
        self.copies.discard().await?;
        self.delete_adopted().await?;
        self.encoder.discard().await
    }

    fn copies_files(&self) -> bool {
        true
    }

    async fn copy_file(&mut self, file: WholeFile) -> Result<(), DestinationError> {
        self.copies.add(file).await
    }

    fn shipping(&self) -> Option<Arc<ShipProgress>> {
        Some(self.encoder.written())
    }

    fn shared_target(&self, _columns: &SchemaRef) -> Option<SharedTarget> {
        self.warehouse
            .shared_target(&self.table, &self.prefix, &self.base.schema)
    }

    async fn adopt(&mut self, files: Vec<WrittenFile>) -> Result<(), DestinationError> {
        let adopted = self.warehouse.adopted(&self.table, &self.prefix, files).await?;
        self.encoder.written().uploaded(adopted.iter().map(|f| f.bytes).sum());
        self.adopted.extend(adopted);
        Ok(())
    }
}

impl WarehouseLoad {
    /// Deletes what a failed commit wrote (an encoder that failed has
    /// deleted its files itself).
    async fn discard(&mut self) {
        if let Err(e) = self.delete_adopted().await {
            tracing::warn!(table = %self.table, error = %e, "could not delete the files a cluster wrote for a failed load");
        }
        let copies = self.copies.discard().await;
        let encoded = match self.encoder.discard().await {
            Err(DestinationError::EncoderStopped) => Ok(()),
            other => other,
        };
        if let Err(e) = copies.and(encoded) {
            tracing::warn!(table = %self.table, error = %e, "could not delete the files of a failed load");
        }
    }

    /// Deletes the files other processes wrote for this load.
    async fn delete_adopted(&mut self) -> Result<(), DestinationError> {
        let paths = (self.adopted.drain(..))
            .map(|file| self.warehouse.data_path(&self.table, &file.name))
            .collect();
        self.warehouse.delete_all(paths).await
    }

    /// Publishes the next manifest version with `finished` files.
    async fn publish(
        &self,
        finished: Vec<DataFile>,
        watermark: Option<String>,
    ) -> Result<CommitReport, DestinationError> {
        let mut next = self.base.clone();
        if self.mode == WriteMode::Replace {
            next.files.clear();
            next.deltas.clear();
        }
        next.files.extend(finished.iter().cloned());
        publish_next(&self.warehouse, &self.table, self.run_id, next, finished, watermark).await
    }
}

/// Publishes the version after `next` (the version a commit started
/// from, its files and deltas already those of the new version; its schema
/// and change layout carry over) with run `run_id` and `watermark`;
/// `written` are the files of the new version this commit wrote. A
/// concurrent publication of that version fails it as a conflict, its
/// files deleted.
pub(super) async fn publish_next(
    warehouse: &LocalWarehouse,
    table: &str,
    run_id: u64,
    next: Manifest,
    written: Vec<DataFile>,
    watermark: Option<String>,
) -> Result<CommitReport, DestinationError> {
    let conflict = |detail: String| DestinationError::Conflict {
        table: table.to_owned(),
        detail,
    };
    // A concurrent load's clean-up may have taken this load's files.
    for file in &written {
        match warehouse.store.head(&warehouse.data_path(table, &file.name)).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(conflict(format!(
                    "data file {} was deleted before the commit",
                    file.name
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The files are on disk before a manifest names them.
    let paths: Vec<_> = written
        .iter()
        .map(|file| warehouse.data_path(table, &file.name))
        .collect();
    warehouse.sync(&paths).await?;
    let manifest = Manifest {
        version: next.version + 1,
        run_id: Some(run_id),
        watermark,
        committed_at: Utc::now(),
        ..next
    };
    match warehouse.publish(table, &manifest).await {
        Ok(()) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            if let Err(e) = warehouse.delete_all(paths).await {
                tracing::warn!(table = %table, error = %e, "could not delete the files of a conflicting load");
            }
            return Err(conflict(format!(
                "version {} was published by another load",
                manifest.version
            )));
        }
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = warehouse.collect_garbage(table, run_id).await {
        tracing::warn!(table = %table, error = %e, "could not clean up after a commit");
    }
    Ok(CommitReport {
        rows: written.iter().map(|f| f.rows).sum(),
        bytes: written.iter().map(|f| f.bytes).sum(),
        files: written.len(),
    })
}
