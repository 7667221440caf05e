//! Loads whose files other processes write: a load names a
//! [`SharedTarget`], each of a cluster's tasks writes its part there with
//! a [`PartWriter`], and the load adopts the [`WrittenFile`]s the tasks
//! report ([`LoadTransaction::adopt`](super::LoadTransaction::adopt)).

use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

use super::destination::DestinationError;
use super::options::ResolvedOptions;

/// Where other processes write the files of one load.
#[derive(Debug, Clone)]
pub struct SharedTarget {
    pub store: SharedStore,
    /// What every file name of the load starts with (the warehouse), or the
    /// load's own folder in the store (a staging bucket).
    pub prefix: String,
    /// The columns of the batches a part writes.
    pub schema: SchemaRef,
}

/// The store a [`SharedTarget`]'s files go to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SharedStore {
    /// The built-in warehouse in a bucket, at `location` as the server was
    /// given it (credentials from each process's environment), into the
    /// data folder of `table`.
    Warehouse { location: String, table: String },
    /// The destination connection's own staging store (BigQuery's
    /// `staging_bucket`), opened by its type's
    /// [`part_writer`](super::DestinationDriver::part_writer) from the
    /// connection's options.
    Connection,
}

/// A data file another process wrote for a load, by name in the target's
/// folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
}

/// Writes one part's batches as files of a shared load. File names carry
/// a fresh token, so a part written again never overwrites an earlier
/// attempt's files.
#[async_trait]
pub trait PartWriter: Send {
    /// Adds a batch of the target's columns.
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError>;

    /// Finishes the last file; the files written.
    async fn finish(self: Box<Self>) -> Result<Vec<WrittenFile>, DestinationError>;

    /// Deletes everything written.
    async fn discard(self: Box<Self>) -> Result<(), DestinationError>;
}

/// Opens a [`PartWriter`] for part `part` of `target` in a destination
/// connection's own store ([`SharedStore::Connection`]), from the
/// connection's resolved options; `timeout` bounds each call.
pub type PartWriterFactory = fn(
    &ResolvedOptions,
    &SharedTarget,
    u32,
    Duration,
) -> BoxFuture<'static, Result<Box<dyn PartWriter>, DestinationError>>;
