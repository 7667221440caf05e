//! Warehouse tables other processes read (SQL on a cluster,
//! `docs/cluster.md`): a [`TableShare`] is one version of a table in a
//! bucket, or a part of its files, that a process opens with its own
//! credentials and reads exactly as this one would.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use serde::{Deserialize, Serialize};

use super::LocalWarehouse;
use super::manifest::Manifest;
use super::read::WarehouseTable;
use crate::contract::{DestinationError, deal_by_size};

/// One version of a warehouse table in a bucket (or a part of its files).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableShare {
    /// Where the warehouse is, as the server was given it.
    location: String,
    table: String,
    manifest: Manifest,
}

impl TableShare {
    /// The share of `provider`, when it is a warehouse table that other
    /// processes can open (one in a bucket, not a local directory).
    pub fn of(provider: &dyn TableProvider) -> Option<Self> {
        let table = provider.downcast_ref::<WarehouseTable>()?;
        Some(Self {
            location: table.warehouse().shared.location.clone()?,
            table: table.name().to_owned(),
            manifest: table.manifest().clone(),
        })
    }

    /// Whether `provider` is a warehouse table (shared or not).
    pub fn is_warehouse_table(provider: &dyn TableProvider) -> bool {
        provider.downcast_ref::<WarehouseTable>().is_some()
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table's columns.
    pub fn schema(&self) -> SchemaRef {
        self.manifest.schema.clone()
    }

    /// The share cut into at most `parts` shares of about equal bytes, by
    /// file. A `MERGE` table with changes not yet compacted stays whole:
    /// its keys merge across all its files.
    pub fn split(self, parts: usize) -> Vec<Self> {
        if !self.manifest.deltas.is_empty() {
            return vec![self];
        }
        let Self {
            location,
            table,
            manifest,
        } = self;
        let files = manifest.files.clone();
        deal_by_size(files, parts, |file| file.bytes)
            .into_iter()
            .map(|files| Self {
                location: location.clone(),
                table: table.clone(),
                manifest: Manifest {
                    files,
                    ..manifest.clone()
                },
            })
            .collect()
    }

    /// Opens the share as a table of this process (credentials from its
    /// environment, as for the warehouse itself).
    pub fn open(&self) -> Result<Arc<dyn TableProvider>, DestinationError> {
        let warehouse = LocalWarehouse::open(&self.location)?;
        Ok(Arc::new(WarehouseTable::new(
            warehouse,
            &self.table,
            self.manifest.clone(),
        )))
    }

    /// The share as bytes, for a plan.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a table share serializes to JSON")
    }

    /// The share [`to_bytes`](Self::to_bytes) wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a warehouse table share: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::destinations::warehouse::manifest::DataFile;

    fn file(name: &str, bytes: u64) -> DataFile {
        DataFile {
            name: name.into(),
            rows: bytes,
            bytes,
            constants: Vec::new(),
        }
    }

    fn share(files: Vec<DataFile>, deltas: Vec<DataFile>) -> TableShare {
        TableShare {
            location: "s3://lake/wh".into(),
            table: "orders".into(),
            manifest: Manifest {
                version: 3,
                schema: Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
                files,
                run_id: Some(7),
                watermark: None,
                committed_at: chrono::Utc::now(),
                changes: None,
                deltas,
            },
        }
    }

    fn names(share: &TableShare) -> Vec<&str> {
        share.manifest.files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn a_share_splits_by_file_into_parts_of_about_equal_bytes() {
        let whole = share(
            vec![file("a", 50), file("b", 10), file("c", 40), file("d", 20)],
            Vec::new(),
        );
        let parts = whole.clone().split(2);
        assert_eq!(
            parts.iter().map(names).collect::<Vec<_>>(),
            [vec!["a", "b"], vec!["c", "d"]]
        );
        for part in &parts {
            assert_eq!((part.manifest.version, part.table()), (3, "orders"));
        }
        // Never more parts than files, and an empty table is one empty part.
        assert_eq!(whole.clone().split(16).len(), 4);
        let empty = share(Vec::new(), Vec::new()).split(4);
        assert!(empty.len() == 1 && empty[0].manifest.files.is_empty());
        // A MERGE table with uncompacted changes is read whole.
        let merged = share(vec![file("a", 5), file("b", 5)], vec![file("delta", 1)]).split(4);
        assert_eq!(merged.iter().map(names).collect::<Vec<_>>(), [vec!["a", "b"]]);
        // What a plan carries opens as the same share.
        let bytes = parts[1].to_bytes();
        let back = TableShare::from_bytes(&bytes).unwrap();
        assert_eq!((names(&back), back.schema()), (vec!["c", "d"], whole.schema()));
        assert!(TableShare::from_bytes(b"{}").is_err());
    }
}
