//! Loads written by other processes (a cluster's executors): a warehouse in
//! a bucket names a load's [`SharedTarget`], each task writes its part's
//! Parquet files there with a [`SharedWriter`], and the load adopts the
//! files the tasks report. A task that failed or ran twice leaves files no
//! manifest lists; garbage collection deletes them like any failed load's.

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::object_store::{self, ObjectStoreExt};

use super::LocalWarehouse;
use super::encode::Encoder;
use super::manifest::DataFile;
use crate::contract::{DestinationError, PartWriter, SharedStore, SharedTarget, WrittenFile};

impl LocalWarehouse {
    /// The load's target for other processes, when they can reach this
    /// warehouse (a bucket; never a local directory).
    pub(super) fn shared_target(
        &self,
        table: &str,
        prefix: &str,
        schema: &datafusion::arrow::datatypes::SchemaRef,
    ) -> Option<SharedTarget> {
        Some(SharedTarget {
            store: SharedStore::Warehouse {
                location: self.shared.location.clone()?,
                table: table.to_owned(),
            },
            prefix: prefix.to_owned(),
            schema: schema.clone(),
        })
    }

    /// Checks that each of `files` is where a task of the load named
    /// `prefix` wrote it, with the size it reported; the data files to
    /// publish.
    pub(super) async fn adopted(
        &self,
        table: &str,
        prefix: &str,
        files: Vec<WrittenFile>,
    ) -> Result<Vec<DataFile>, DestinationError> {
        let mut adopted = Vec::with_capacity(files.len());
        for file in files {
            let refused = |reason: String| DestinationError::CopiedFile {
                file: file.name.clone(),
                reason,
            };
            let ours = file
                .name
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with("-p") && !rest.contains('/'));
            if !ours {
                return Err(refused(format!("it is not a file of this load ({prefix}-p...)")));
            }
            let meta = match self.store.head(&self.data_path(table, &file.name)).await {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(refused(
                        "the task reported it, but it is not in the table's folder".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            if meta.size != file.bytes {
                return Err(refused(format!(
                    "it has {} bytes, the task reported {}",
                    meta.size, file.bytes
                )));
            }
            adopted.push(DataFile {
                name: file.name,
                rows: file.rows,
                bytes: file.bytes,
                constants: Vec::new(),
            });
        }
        Ok(adopted)
    }
}

/// Writes one task's batches as Parquet files of a shared load.
pub struct SharedWriter {
    encoder: Encoder,
}

impl SharedWriter {
    /// Opens the warehouse at the target's location (credentials from this
    /// process's environment) to write part `part` of the load; the file
    /// names carry a fresh token, so a task run again never overwrites the
    /// files of an earlier attempt.
    pub fn open(target: &SharedTarget, part: u32) -> Result<Self, DestinationError> {
        let SharedStore::Warehouse { location, table } = &target.store else {
            return Err(DestinationError::InvalidLocation {
                location: String::new(),
                reason: "the load's files go to its destination connection, not a warehouse".into(),
            });
        };
        let warehouse = LocalWarehouse::open(location)?;
        if warehouse.shared.location.is_none() {
            return Err(DestinationError::InvalidLocation {
                location: location.clone(),
                reason: "a cluster writes into a warehouse in a bucket, not a local directory".into(),
            });
        }
        let prefix = format!("{}-p{part}-{:08x}", target.prefix, rand::random::<u32>());
        Ok(Self {
            encoder: Encoder::start(warehouse, table, prefix, target.schema.clone()),
        })
    }
}

#[async_trait]
impl PartWriter for SharedWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        self.encoder.write(batch).await
    }

    async fn finish(mut self: Box<Self>) -> Result<Vec<WrittenFile>, DestinationError> {
        let files = self.encoder.finish().await?;
        Ok(files
            .into_iter()
            .map(|file| WrittenFile {
                name: file.name,
                rows: file.rows,
                bytes: file.bytes,
            })
            .collect())
    }

    async fn discard(mut self: Box<Self>) -> Result<(), DestinationError> {
        self.encoder.discard().await
    }
}
