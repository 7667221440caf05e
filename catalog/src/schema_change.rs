//! Source schema changes a run followed (`sluice.schema_changes`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// What changed about a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaChangeKind {
    /// New at the source: added to the destination as NULLABLE.
    Added,
    /// Gone from the source: kept in the destination, loaded as NULL.
    Dropped,
    /// A wider type at the source (a longer varchar, int to bigint, ...).
    Widened,
    /// NOT NULL dropped at the source: the destination column became NULLABLE.
    Nullable,
}

impl SchemaChangeKind {
    /// The lower-case name shown in `sluice.schema_changes`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaChangeKind::Added => "added",
            SchemaChangeKind::Dropped => "dropped",
            SchemaChangeKind::Widened => "widened",
            SchemaChangeKind::Nullable => "nullable",
        }
    }
}

/// One column change a run applied to its job's destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaChangeRecord {
    pub job: String,
    pub run_id: u64,
    /// The change's place among the run's changes.
    pub seq: u32,
    pub column: String,
    pub kind: SchemaChangeKind,
    /// The column's source type before (`None` when added) and after
    /// (`None` when dropped), `NOT NULL` included.
    pub before: Option<String>,
    pub after: Option<String>,
    pub at: DateTime<Utc>,
}

impl Record for SchemaChangeRecord {
    const FAMILY: &'static str = "schema_changes";
    const VERSION: u32 = 1;

    /// Run id then place, zero-padded: key order is the order applied.
    fn key(&self) -> String {
        format!("{:020}-{:06}", self.run_id, self.seq)
    }
}
