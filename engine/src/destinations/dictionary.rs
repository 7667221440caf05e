//! Which columns of a Parquet file are dictionary encoded.
//!
//! A dictionary pays when values repeat: the file stores each distinct value
//! once and a small index per row. When nearly every value is new (keys,
//! timestamps, amounts, free text) the writer still hashes and interns each
//! value until the dictionary outgrows its page limit, and starts again at
//! the next row group: a profile of the bench's 50-column table put a
//! quarter of the server's CPU there. So a file's first batch decides: a
//! column whose sampled values repeat (at most one distinct value per
//! [`ROWS_PER_DISTINCT`] rows) keeps dictionary encoding, the others are
//! written plain (and compressed all the same). The warehouse's files and
//! BigQuery's Parquet chunks are both written so.

use std::collections::HashSet;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::parquet::file::properties::WriterPropertiesBuilder;
use datafusion::parquet::schema::types::ColumnPath;

/// Rows of the first batch looked at.
const SAMPLE_ROWS: usize = 8192;
/// A smaller first batch says too little: the writer's defaults apply (a
/// dictionary that falls back to plain encoding once it outgrows its page).
const MIN_SAMPLE_ROWS: usize = 1024;
/// A column keeps its dictionary when its sample has at most one distinct
/// value per this many rows.
const ROWS_PER_DISTINCT: usize = 2;

/// `builder` with dictionary encoding left on only for the columns whose
/// values repeat in `first`, the first batch of the file.
pub(crate) fn only_where_values_repeat(
    mut builder: WriterPropertiesBuilder,
    first: &RecordBatch,
) -> WriterPropertiesBuilder {
    for (field, column) in first.schema().fields().iter().zip(first.columns()) {
        if !repeats(column) {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    builder
}

/// Whether a dictionary pays for `column`, judged on its first rows. Nested
/// columns (several Parquet leaves) keep the writer's defaults.
fn repeats(column: &ArrayRef) -> bool {
    let flat = column.data_type().is_primitive()
        || matches!(
            column.data_type(),
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_)
        );
    let rows = column.len().min(SAMPLE_ROWS);
    if !flat || rows < MIN_SAMPLE_ROWS {
        return true;
    }
    let sample = column.slice(0, rows);
    let mut hashes = vec![0; rows];
    if create_hashes([&sample], &RandomState::default(), &mut hashes).is_err() {
        return true;
    }
    let distinct: HashSet<u64> = hashes.into_iter().collect();
    distinct.len() * ROWS_PER_DISTINCT <= rows
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, ListArray, StringArray};
    use datafusion::arrow::datatypes::Int32Type;
    use datafusion::parquet::file::properties::WriterProperties;

    use super::*;

    fn properties(first: &RecordBatch) -> WriterProperties {
        only_where_values_repeat(WriterProperties::builder(), first).build()
    }

    fn enabled(properties: &WriterProperties, column: &str) -> bool {
        properties.dictionary_enabled(&ColumnPath::from(column))
    }

    #[test]
    fn only_columns_whose_values_repeat_keep_a_dictionary() {
        let rows = 10_000;
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from_iter_values(0..rows)) as ArrayRef),
            (
                "status",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| ["open", "paid"][i as usize % 2]),
                )),
            ),
            (
                "note",
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("note {i}")))),
            ),
            // Half the sample distinct: still repeats.
            ("pair", Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i / 2)))),
            (
                "tags",
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
                    (0..rows).map(|i| Some(vec![Some(i as i32)])),
                )),
            ),
        ])
        .unwrap();
        let properties = properties(&batch);
        assert!(!enabled(&properties, "id"));
        assert!(enabled(&properties, "status"));
        assert!(!enabled(&properties, "note"));
        assert!(enabled(&properties, "pair"));
        assert!(enabled(&properties, "tags"), "nested columns keep the defaults");
    }

    #[test]
    fn a_small_first_batch_keeps_the_defaults() {
        let batch =
            RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from_iter_values(0..100)) as ArrayRef)]).unwrap();
        assert!(enabled(&properties(&batch), "id"));
    }
}
