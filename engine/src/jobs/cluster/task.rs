//! What one extract task carries to an executor, and what it sends back.
//! Connection options travel sealed with the cluster key (see
//! [`ResolvedOptions::seal`]), bound to the task's job and run.

use std::io::Cursor;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};
use sluice_catalog::MasterKey;

pub use crate::jobs::file_mark::FileOrigin;

use crate::contract::{ResolvedOptions, Segment, SharedStore, SharedTarget, WrittenFile};
use crate::error::EngineError;

/// One part of a run's extract: read the part from the source, convert it
/// to the destination's columns, write it as Parquet files of the load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractTask {
    pub job: String,
    pub run_id: u64,
    /// The part's number, from 0.
    pub part: u32,
    /// The source connection.
    pub source: TaskConnection,
    pub schema: String,
    pub table: String,
    /// The source columns read, by name, in the loaded order.
    pub columns: Vec<String>,
    /// The part's condition (the scan's filter and its range), in the
    /// source's SQL.
    pub filter: Option<String>,
    /// The part's segment, for a source that splits its reads itself.
    #[serde(default)]
    pub segment: Option<Segment>,
    pub batch_rows: Option<usize>,
    /// The snapshot the part reads in, as the source names it.
    pub snapshot: Option<String>,
    /// The loaded columns (an Arrow IPC schema): each read column is cast
    /// to its type.
    #[serde(with = "ipc_schema")]
    pub loaded: SchemaRef,
    /// The cursor's position among the loaded columns, whose largest value
    /// the task reports.
    pub cursor: Option<usize>,
    /// Where the part's batches have each row's `_file`, when the cursor is
    /// a file table's `_modified_at`: the task reports the files read at
    /// its largest value (see `file_mark`).
    #[serde(default)]
    pub files: Option<FileOrigin>,
    /// For each destination column, the loaded column it takes (`None`:
    /// NULL).
    pub arrangement: Vec<Option<usize>>,
    /// Where the files go.
    pub store: SharedStore,
    /// The destination connection, when the files go to a store of its
    /// own ([`SharedStore::Connection`]).
    pub destination: Option<TaskConnection>,
    pub prefix: String,
    #[serde(with = "ipc_schema")]
    pub target_schema: SchemaRef,
}

/// A connection a task opens: its name, type and options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskConnection {
    pub name: String,
    pub kind: String,
    /// The options, secrets included, sealed with the cluster key for the
    /// task's job and run (and role: source or destination).
    pub sealed_options: Vec<u8>,
}

/// What a connection is to a task; part of the context its options are
/// sealed for, so a source's blob never opens as a destination's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Destination,
}

impl TaskConnection {
    /// Seals `options` of connection `name` of type `kind` for `role` in
    /// run `run_id` of `job`.
    pub fn seal(
        name: &str,
        kind: &str,
        options: &ResolvedOptions,
        key: &MasterKey,
        (job, run_id, role): (&str, u64, Role),
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind: kind.to_owned(),
            sealed_options: options.seal(key, &seal_context(job, run_id, role)),
        }
    }

    /// The options, opened with the cluster key.
    fn options(&self, key: &MasterKey, (job, run_id, role): (&str, u64, Role)) -> Result<ResolvedOptions, EngineError> {
        ResolvedOptions::unseal(key, &seal_context(job, run_id, role), &self.sealed_options).ok_or_else(|| {
            EngineError::NotForCluster {
                job: job.to_owned(),
                reason: format!(
                    "this executor's cluster key does not open the options of connection {}; give every executor \
                     the server's --cluster-key-file",
                    self.name
                ),
            }
        })
    }
}

/// The context a connection's options are sealed for: a blob opens only
/// for its own job, run and role.
fn seal_context(job: &str, run_id: u64, role: Role) -> String {
    let role = match role {
        Role::Source => "source",
        Role::Destination => "destination",
    };
    format!("sluice cluster task: job {job}, run {run_id}, {role}")
}

impl ExtractTask {
    /// The source connection's options, opened with the cluster key.
    pub(super) fn source_options(&self, key: &MasterKey) -> Result<ResolvedOptions, EngineError> {
        (self.source).options(key, (&self.job, self.run_id, Role::Source))
    }

    /// The destination connection's options, opened with the cluster key.
    pub(super) fn destination_options(
        &self,
        destination: &TaskConnection,
        key: &MasterKey,
    ) -> Result<ResolvedOptions, EngineError> {
        destination.options(key, (&self.job, self.run_id, Role::Destination))
    }

    /// The load's shared target.
    pub(super) fn target(&self) -> SharedTarget {
        SharedTarget {
            store: self.store.clone(),
            prefix: self.prefix.clone(),
            schema: self.target_schema.clone(),
        }
    }

    /// The task as bytes, for a plan.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a task serializes to JSON")
    }

    /// The task [`to_bytes`](Self::to_bytes) wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not an extract task: {e}"))
    }
}

/// What a task did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutput {
    pub part: u32,
    pub rows: u64,
    /// The files it wrote, in the table's data folder.
    pub files: Vec<WrittenFile>,
    /// The largest cursor value it read, as a watermark's text.
    pub high: Option<String>,
    /// The files it read rows of at that value (a file table by
    /// `_modified_at`).
    #[serde(default)]
    pub high_files: Vec<String>,
    /// The executor that ran it.
    pub executor: String,
}

impl TaskOutput {
    /// The output as text, for a result row.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an output serializes to JSON")
    }

    /// The output [`to_json`](Self::to_json) wrote.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not a task output: {e}"))
    }
}

/// An Arrow schema as the bytes of an empty IPC stream.
mod ipc_schema {
    use super::*;

    pub fn serialize<S: serde::Serializer>(schema: &SchemaRef, serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        StreamWriter::try_new(&mut bytes, schema)
            .and_then(|mut writer| writer.finish())
            .map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SchemaRef, D::Error> {
        let bytes: Vec<u8> = Deserialize::deserialize(deserializer)?;
        let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(serde::de::Error::custom)?;
        Ok(reader.schema())
    }
}
