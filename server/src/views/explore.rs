//! Views of a source: `SHOW SCHEMAS`, `SHOW TABLES`, `DESCRIBE`.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use sluice_engine::contract::{TableDescription, TableInfo};
use sluice_engine::type_mapping::samples::suggest_from_samples;

use super::{batch, lists, strings, text, text_list, timestamps, timestamptz};

/// `SHOW SCHEMAS FROM conn`.
pub static SCHEMAS: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::new(vec![text("schema")])));

pub fn schemas(names: &[String]) -> RecordBatch {
    batch(&SCHEMAS, vec![strings(names.iter().map(|n| Some(n.as_str())))])
}

/// `SHOW TABLES FROM conn[.schema]`.
pub static TABLES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("schema"),
        text("table"),
        text("kind"),
        Field::new("estimated_rows", DataType::Int64, true),
        Field::new("size_bytes", DataType::Int64, true),
        timestamptz("last_modified"),
        Field::new("files", DataType::Int64, true),
    ]))
});

pub fn tables(tables: &[TableInfo]) -> RecordBatch {
    batch(
        &TABLES,
        vec![
            strings(tables.iter().map(|t| Some(t.table.schema.as_str()))),
            strings(tables.iter().map(|t| Some(t.table.name.as_str()))),
            strings(tables.iter().map(|t| Some(t.kind.as_str()))),
            Arc::new(tables.iter().map(|t| t.estimated_rows).collect::<Int64Array>()),
            Arc::new(tables.iter().map(|t| t.size_bytes).collect::<Int64Array>()),
            timestamps(tables.iter().map(|t| t.last_modified)),
            Arc::new(tables.iter().map(|t| t.files).collect::<Int64Array>()),
        ],
    )
}

/// `DESCRIBE conn.schema.table`: one row per column.
pub static DESCRIBE: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("column_name"),
        Field::new("ordinal", DataType::Int64, false),
        text("source_type"),
        Field::new("nullable", DataType::Boolean, false),
        text("default_value"),
        Field::new("primary_key", DataType::Int64, true),
        text("timestamp_candidate"),
        text("bigquery_type"),
        text("mode"),
        text("confidence"),
        text_list("warnings"),
        text_list("sample_values"),
    ]))
});

/// How many distinct sample values `DESCRIBE` shows per column.
const SHOWN_SAMPLES: usize = 3;

/// Builds the `DESCRIBE` rows from a description and sampled rows.
pub fn describe(description: &TableDescription, samples: &[RecordBatch]) -> RecordBatch {
    let candidates = description.timestamp_candidates();
    let columns = &description.columns;
    let candidate_text: Vec<Option<String>> = columns
        .iter()
        .map(|c| {
            candidates.iter().find(|t| t.column == c.name).map(|t| {
                let recommended = if t.recommended { ", recommended" } else { "" };
                format!("#{}{recommended} ({})", t.rank, t.reason)
            })
        })
        .collect();
    let sampled: Vec<Vec<String>> = (0..columns.len()).map(|i| column_values(samples, i)).collect();
    let warnings: Vec<Vec<String>> = columns
        .iter()
        .zip(&sampled)
        .map(|(c, values)| {
            let mut warnings = c.mapping.warnings.clone();
            let text_source = matches!(c.mapping.arrow, DataType::Utf8) && {
                let t = c.source_type.to_lowercase();
                t.contains("char") || t.contains("text")
            };
            if text_source {
                let as_refs: Vec<Option<&str>> = values.iter().map(|v| Some(v.as_str())).collect();
                if let Some(suggestion) = suggest_from_samples(&as_refs) {
                    warnings.push(format!(
                        "sampled values look like {} ({} confidence): {}; override with COLUMNS ({} {})",
                        suggestion.bigquery, suggestion.confidence, suggestion.reason, c.name, suggestion.bigquery
                    ));
                }
            }
            warnings
        })
        .collect();
    let shown: Vec<Vec<String>> = sampled
        .into_iter()
        .map(|values| {
            let mut distinct: Vec<String> = Vec::new();
            for v in values {
                if distinct.len() == SHOWN_SAMPLES {
                    break;
                }
                if !distinct.contains(&v) {
                    distinct.push(v);
                }
            }
            distinct
        })
        .collect();
    let bigquery: Vec<String> = columns.iter().map(|c| c.mapping.bigquery_ddl()).collect();
    let modes: Vec<String> = columns.iter().map(|c| c.mapping.mode(c.nullable).to_string()).collect();
    let confidence: Vec<String> = columns.iter().map(|c| c.mapping.confidence.to_string()).collect();
    batch(
        &DESCRIBE,
        vec![
            strings(columns.iter().map(|c| Some(c.name.as_str()))),
            Arc::new(
                columns
                    .iter()
                    .map(|c| Some(i64::from(c.ordinal)))
                    .collect::<Int64Array>(),
            ) as ArrayRef,
            strings(columns.iter().map(|c| Some(c.source_type.as_str()))),
            Arc::new(columns.iter().map(|c| Some(c.nullable)).collect::<BooleanArray>()),
            strings(columns.iter().map(|c| c.default.as_deref())),
            Arc::new(
                columns
                    .iter()
                    .map(|c| c.primary_key_position.map(i64::from))
                    .collect::<Int64Array>(),
            ),
            strings(candidate_text.iter().map(|c| c.as_deref())),
            strings(bigquery.iter().map(|s| Some(s.as_str()))),
            strings(modes.iter().map(|s| Some(s.as_str()))),
            strings(confidence.iter().map(|s| Some(s.as_str()))),
            lists(warnings),
            lists(shown),
        ],
    )
}

/// The non-null values of column `index` across `batches`, as text.
fn column_values(batches: &[RecordBatch], index: usize) -> Vec<String> {
    let options = FormatOptions::default();
    let mut values = Vec::new();
    for batch in batches {
        let column = batch.column(index);
        let Ok(formatter) = ArrayFormatter::try_new(column.as_ref(), &options) else {
            continue;
        };
        for row in 0..column.len() {
            if column.is_valid(row) {
                values.push(formatter.value(row).to_string());
            }
        }
    }
    values
}
