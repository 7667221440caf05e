//! What one extract task carries to an executor, and what it sends back.
//! The connection's options travel sealed with the cluster key (see
//! [`ResolvedOptions::seal`]), bound to the task's job and run.

use std::io::Cursor;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};
use sluice_catalog::MasterKey;

pub use crate::jobs::file_mark::FileOrigin;

use crate::contract::{ResolvedOptions, Segment, SharedTarget, WrittenFile};
use crate::error::EngineError;

/// One part of a run's extract: read the part from the source, convert it
/// to the destination's columns, write it as Parquet files of the load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractTask {
    pub job: String,
    pub run_id: u64,
    /// The part's number, from 0.
    pub part: u32,
    /// The source connection's name and type.
    pub connection: String,
    pub connection_type: String,
    /// The connection's options, secrets included, sealed with the cluster
    /// key for this job and run.
    pub sealed_options: Vec<u8>,
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
    pub location: String,
    pub target_table: String,
    pub prefix: String,
    #[serde(with = "ipc_schema")]
    pub target_schema: SchemaRef,
}

impl ExtractTask {
    /// The context the options are sealed for: a task's blob opens only
    /// for its own job and run.
    pub fn seal_context(job: &str, run_id: u64) -> String {
        format!("sluice cluster task: job {job}, run {run_id}")
    }

    /// The connection's options, opened with the cluster key.
    pub(super) fn options(&self, key: &MasterKey) -> Result<ResolvedOptions, EngineError> {
        ResolvedOptions::unseal(key, &Self::seal_context(&self.job, self.run_id), &self.sealed_options).ok_or_else(
            || EngineError::NotForCluster {
                job: self.job.clone(),
                reason: "this executor's cluster key does not open the task's connection options; give every \
                         executor the server's --cluster-key-file"
                    .into(),
            },
        )
    }

    /// The load's shared target.
    pub(super) fn target(&self) -> SharedTarget {
        SharedTarget {
            location: self.location.clone(),
            table: self.target_table.clone(),
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
