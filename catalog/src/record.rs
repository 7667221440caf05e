//! Versioned serialisation of catalog records.
//!
//! Every value is stored as JSON `{"v": <version>, "data": {...}}`. Reading a
//! record written by an older Sluice goes through [`Record::migrate`]; a record
//! from a newer Sluice is refused rather than misread.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::error::{CatalogError, Result};

/// A record type stored in one column family.
pub trait Record: Serialize + DeserializeOwned {
    /// The column family holding records of this type.
    const FAMILY: &'static str;
    /// The current on-disk version of this record type.
    const VERSION: u32;

    /// Upgrades the `data` of an older version to the current shape.
    fn migrate(version: u32, data: Value) -> std::result::Result<Value, String> {
        let _ = data;
        Err(format!(
            "no migration from record version {version} to {}",
            Self::VERSION
        ))
    }

    /// The record's key in its column family.
    fn key(&self) -> String;
}

/// Encodes a record with its version tag.
pub fn encode<R: Record>(record: &R) -> Vec<u8> {
    let envelope = serde_json::json!({ "v": R::VERSION, "data": record });
    serde_json::to_vec(&envelope).expect("catalog records always serialise")
}

/// Decodes a record, migrating older versions.
pub fn decode<R: Record>(key: &[u8], bytes: &[u8]) -> Result<R> {
    let corrupt = |reason: String| CatalogError::Corrupt {
        family: R::FAMILY,
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let mut envelope: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let version = envelope
        .get("v")
        .and_then(Value::as_u64)
        .ok_or_else(|| corrupt("missing version tag".into()))? as u32;
    let data = envelope
        .get_mut("data")
        .map(Value::take)
        .ok_or_else(|| corrupt("missing data".into()))?;
    let data = match version {
        v if v == R::VERSION => data,
        v if v > R::VERSION => {
            return Err(corrupt(format!(
                "written by a newer Sluice (record version {v}, this build reads up to {})",
                R::VERSION
            )));
        }
        v => R::migrate(v, data).map_err(corrupt)?,
    };
    serde_json::from_value(data).map_err(|e| corrupt(e.to_string()))
}
