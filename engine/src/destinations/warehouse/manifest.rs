//! Manifests: the versioned JSON documents that say which Parquet files
//! make up a table, with its schema and what the last load recorded.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};
use sluice_catalog::CdcMode;

/// One version of a table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub version: u64,
    /// The Arrow schema, as a hex-encoded Arrow IPC schema message, so that
    /// every logical type round-trips exactly.
    #[serde(with = "ipc_schema")]
    pub schema: SchemaRef,
    /// The live data files, by name under the table's `data/` folder.
    pub files: Vec<DataFile>,
    /// The run of the last load, absent until a load committed.
    pub run_id: Option<u64>,
    pub watermark: Option<String>,
    pub committed_at: DateTime<Utc>,
    /// How captured changes are applied, for tables a CDC job writes
    /// (absent in manifests written before change data capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeLayout>,
    /// A `MERGE` table's changes not yet folded into `files`
    /// (merge-on-read, `merged.rs`): files of the table's columns and
    /// `_sluice_op`, each key's latest version per change batch, deletes
    /// as `delete` rows. Compaction folds them into `files`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<DataFile>,
}

/// The change-data-capture layout of a table: its mode and the key that
/// identifies a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ChangeLayout {
    pub mode: CdcMode,
    pub key: Vec<String>,
    /// Deletes mark rows (`_sluice_deleted_at`) instead of removing them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft_delete: bool,
}

/// One finished Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DataFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    /// Columns of the table the file does not hold, with one value for all
    /// its rows: a source file loaded as it is keeps its own columns, and
    /// its `_file` or `key=value` folder values are kept here (as Delta
    /// Lake keeps partition values). Empty for the files a load encodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constants: Vec<Constant>,
}

/// A column's value for every row of a [`DataFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Constant {
    pub column: String,
    /// The value as Arrow casts it to text, `None` for NULL.
    pub value: Option<String>,
}

impl Constant {
    /// `column`'s `value`.
    pub fn new(column: &str, value: &ScalarValue) -> Result<Self, DataFusionError> {
        let value = match value.cast_to(&DataType::Utf8)? {
            ScalarValue::Utf8(text) => text,
            other => return Err(DataFusionError::Internal(format!("{other} is not text"))),
        };
        Ok(Self {
            column: column.to_owned(),
            value,
        })
    }

    /// The value as `data_type` (the column's type in the table).
    pub fn value(&self, data_type: &DataType) -> Result<ScalarValue, DataFusionError> {
        ScalarValue::Utf8(self.value.clone()).cast_to(data_type)
    }
}

impl Manifest {
    /// The first version of a table: no files, never loaded.
    pub fn empty(schema: SchemaRef) -> Self {
        Self {
            version: 0,
            schema,
            files: Vec::new(),
            run_id: None,
            watermark: None,
            committed_at: Utc::now(),
            changes: None,
            deltas: Vec::new(),
        }
    }
}

/// The object name of a manifest version; zero-padded so that names sort
/// like versions.
pub(super) fn file_name(version: u64) -> String {
    format!("{version:020}.json")
}

/// The version a manifest object name stands for.
pub(super) fn version_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

mod ipc_schema {
    use super::*;
    use datafusion::arrow::ipc::convert::try_schema_from_flatbuffer_bytes;
    use datafusion::arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
    use serde::de::Error;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(schema: &SchemaRef, serializer: S) -> Result<S::Ok, S::Error> {
        let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
            schema,
            &mut DictionaryTracker::new(false),
            &IpcWriteOptions::default(),
        );
        serializer.serialize_str(&hex::encode(encoded.ipc_message))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SchemaRef, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = hex::decode(text).map_err(D::Error::custom)?;
        let schema = try_schema_from_flatbuffer_bytes(&bytes).map_err(D::Error::custom)?;
        Ok(Arc::new(schema))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_read_back_as_the_value_they_were_given() {
        let values = [
            ScalarValue::Utf8(Some("s3://landing/orders/part-00001.parquet".into())),
            ScalarValue::Utf8(None),
            ScalarValue::TimestampMicrosecond(Some(1_764_844_800_123_456), Some("UTC".into())),
            ScalarValue::TimestampMicrosecond(Some(-1), Some("UTC".into())),
            ScalarValue::TimestampMicrosecond(None, Some("UTC".into())),
        ];
        for value in values {
            let constant = Constant::new("c", &value).unwrap();
            let json = serde_json::to_string(&constant).unwrap();
            let back: Constant = serde_json::from_str(&json).unwrap();
            assert_eq!(back.value(&value.data_type()).unwrap(), value, "{json}");
        }
    }

    #[test]
    fn files_written_before_constants_read_without_them() {
        let file: DataFile = serde_json::from_str(r#"{"name":"run-1-00.parquet","rows":3,"bytes":10}"#).unwrap();
        assert!(file.constants.is_empty());
        assert!(!serde_json::to_string(&file).unwrap().contains("constants"));
    }
}
