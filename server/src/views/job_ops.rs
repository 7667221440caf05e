//! The output of `EXPLAIN ETL JOB` and `VERIFY ETL JOB`, and the
//! `sluice.verifications` system table.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_catalog::{Catalog, CatalogError, VerificationRecord};
use sluice_engine::jobs::ExplainStep;

use super::{batch, lists, strings, text, text_list, timestamps, timestamptz};

/// `EXPLAIN ETL JOB`: one row per step.
pub static EXPLAIN: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::new(vec![text("step"), text("detail")])));

pub fn explain(steps: &[ExplainStep]) -> RecordBatch {
    batch(
        &EXPLAIN,
        vec![
            strings(steps.iter().map(|s| Some(s.step.as_str()))),
            strings(steps.iter().map(|s| Some(s.detail.as_str()))),
        ],
    )
}

/// `VERIFY ETL JOB`: the buckets that differ.
pub static VERIFY: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("bucket"),
        Field::new("source_rows", DataType::Int64, false),
        Field::new("destination_rows", DataType::Int64, false),
        text("source_checksum"),
        text("destination_checksum"),
    ]))
});

pub fn verify(verification: &VerificationRecord) -> RecordBatch {
    let d = &verification.differences;
    batch(
        &VERIFY,
        vec![
            strings(d.iter().map(|d| Some(d.bucket.as_str()))),
            Arc::new(d.iter().map(|d| Some(d.source_rows)).collect::<Int64Array>()),
            Arc::new(d.iter().map(|d| Some(d.destination_rows)).collect::<Int64Array>()),
            strings(d.iter().map(|d| Some(d.source_checksum.as_str()))),
            strings(d.iter().map(|d| Some(d.destination_checksum.as_str()))),
        ],
    )
}

/// `sluice.verifications`: one row per VERIFY.
pub static VERIFICATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("job"),
        timestamptz("verified_at"),
        text("window_from"),
        text("window_to"),
        text("bucket_by"),
        Field::new("buckets", DataType::Int64, false),
        Field::new("differing", DataType::Int64, false),
        text_list("differing_buckets"),
    ]))
});

pub fn verifications(catalog: &Catalog) -> Result<RecordBatch, CatalogError> {
    let all = catalog.verifications()?;
    Ok(batch(
        &VERIFICATIONS,
        vec![
            strings(all.iter().map(|v| Some(v.job.as_str()))),
            timestamps(all.iter().map(|v| Some(v.verified_at))),
            strings(all.iter().map(|v| v.window_from.as_deref())),
            strings(all.iter().map(|v| v.window_to.as_deref())),
            strings(all.iter().map(|v| Some(v.bucket_by.as_str()))),
            Arc::new(all.iter().map(|v| Some(v.buckets as i64)).collect::<Int64Array>()),
            Arc::new(
                all.iter()
                    .map(|v| Some(v.differences.len() as i64))
                    .collect::<Int64Array>(),
            ),
            lists(
                all.iter()
                    .map(|v| v.differences.iter().map(|d| d.bucket.clone()).collect()),
            ),
        ],
    ))
}
