//! `sluice.schema_changes`: the source schema changes runs followed.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_catalog::{SchemaChangeKind, SchemaChangeRecord};

use super::{batch, strings, text, timestamps, timestamptz};

/// `sluice.schema_changes`: one row per column change, oldest first.
pub static SCHEMA_CHANGES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("job"),
        Field::new("run_id", DataType::Int64, false),
        text("column_name"),
        text("change"),
        text("before"),
        text("after"),
        timestamptz("at"),
    ]))
});

/// The rows of `sluice.schema_changes`.
pub fn schema_changes(changes: &[SchemaChangeRecord]) -> RecordBatch {
    batch(
        &SCHEMA_CHANGES,
        vec![
            strings(changes.iter().map(|c| Some(c.job.as_str()))),
            Arc::new(changes.iter().map(|c| Some(c.run_id as i64)).collect::<Int64Array>()),
            strings(changes.iter().map(|c| Some(c.column.as_str()))),
            strings(changes.iter().map(|c| Some(c.kind.as_str()))),
            strings(changes.iter().map(|c| c.before.as_deref())),
            strings(changes.iter().map(|c| c.after.as_deref())),
            timestamps(changes.iter().map(|c| Some(c.at))),
        ],
    )
}

/// The NOTICE a run sends for a change it followed.
pub fn schema_change_notice(change: &SchemaChangeRecord) -> String {
    let before = change.before.as_deref().unwrap_or("absent");
    let after = change.after.as_deref().unwrap_or("dropped");
    let what = match change.kind {
        SchemaChangeKind::Added => "added to the destination as NULLABLE",
        SchemaChangeKind::Dropped => "dropped at the source: kept in the destination, loaded as NULL",
        SchemaChangeKind::Widened => "widened in the destination",
        SchemaChangeKind::Nullable => "made NULLABLE in the destination",
    };
    format!(
        "source schema change: column \"{}\" {what} ({before} -> {after})",
        change.column
    )
}
