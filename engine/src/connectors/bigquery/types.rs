//! BigQuery column types (as a source) -> Arrow and BigQuery: the mapping
//! `DESCRIBE` shows and scans read by, and its table in
//! docs/type-mapping.md.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;

use crate::type_mapping::{BigQueryType, Confidence, TypeMapping};

/// The type as BigQuery DDL writes it, e.g. `ARRAY<INT64>`.
pub(super) fn source_type(field: &TableFieldSchema) -> String {
    let name = serde_json::to_value(&field.r#type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    if field.mode.as_deref() == Some("REPEATED") {
        format!("ARRAY<{name}>")
    } else {
        name
    }
}

/// How a BigQuery column is read: scalar types as their Arrow type; arrays,
/// records and the rest as text (arrays and records as JSON). The BigQuery
/// type is the one the column loads as into BigQuery again: itself, except
/// `INTERVAL`, whose text loads as `STRING`.
pub(crate) fn mapping(field: &TableFieldSchema) -> TypeMapping {
    let text = |bigquery: BigQueryType| (DataType::Utf8, bigquery);
    let repeated = field.mode.as_deref() == Some("REPEATED");
    let (arrow, bigquery) = match (&field.r#type, repeated) {
        (_, true) | (FieldType::Record | FieldType::Struct, _) => text(BigQueryType::Json),
        (FieldType::Integer | FieldType::Int64, _) => (DataType::Int64, BigQueryType::Int64),
        (FieldType::Float | FieldType::Float64, _) => (DataType::Float64, BigQueryType::Float64),
        (FieldType::Boolean | FieldType::Bool, _) => (DataType::Boolean, BigQueryType::Bool),
        (FieldType::Numeric, _) => (
            DataType::Decimal128(38, 9),
            BigQueryType::Numeric {
                precision: 38,
                scale: 9,
            },
        ),
        (FieldType::Bignumeric, _) => (
            DataType::Decimal256(76, 38),
            BigQueryType::BigNumeric {
                precision: 76,
                scale: 38,
            },
        ),
        (FieldType::Bytes, _) => (DataType::Binary, BigQueryType::Bytes),
        (FieldType::Date, _) => (DataType::Date32, BigQueryType::Date),
        (FieldType::Datetime, _) => (DataType::Timestamp(TimeUnit::Microsecond, None), BigQueryType::Datetime),
        (FieldType::Timestamp, _) => (
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            BigQueryType::Timestamp,
        ),
        (FieldType::Json, _) => text(BigQueryType::Json),
        (FieldType::Time, _) => (DataType::Time64(TimeUnit::Microsecond), BigQueryType::Time),
        (FieldType::Geography, _) => text(BigQueryType::Geography),
        (FieldType::Interval, _) => text(BigQueryType::String),
        (FieldType::String, _) => text(BigQueryType::String),
    };
    let interval = !repeated && matches!(field.r#type, FieldType::Interval);
    TypeMapping {
        arrow,
        bigquery,
        // An array travels as one JSON text and loads as one JSON value.
        repeated: false,
        confidence: if interval { Confidence::Medium } else { Confidence::High },
        warnings: if interval {
            vec!["INTERVAL arrives as its text (e.g. 1-2 3 4:5:6) and loads as STRING".into()]
        } else {
            Vec::new()
        },
    }
}

/// One column of every type, and arrays and records, as documented.
#[cfg(test)]
pub(crate) fn examples() -> Vec<(String, TableFieldSchema)> {
    let scalar = [
        FieldType::Int64,
        FieldType::Float64,
        FieldType::Numeric,
        FieldType::Bignumeric,
        FieldType::Bool,
        FieldType::String,
        FieldType::Bytes,
        FieldType::Date,
        FieldType::Datetime,
        FieldType::Time,
        FieldType::Timestamp,
        FieldType::Geography,
        FieldType::Json,
        FieldType::Interval,
        FieldType::Record,
    ];
    let repeated = TableFieldSchema {
        mode: Some("REPEATED".into()),
        ..TableFieldSchema::new("c", FieldType::Int64)
    };
    scalar
        .into_iter()
        .map(|ty| TableFieldSchema::new("c", ty))
        .chain([repeated])
        .map(|field| (source_type(&field), field))
        .collect()
}

/// The BigQuery-source mapping table in Markdown (embedded in
/// docs/type-mapping.md).
#[cfg(test)]
pub(crate) fn render_markdown_table() -> String {
    let rows: Vec<(String, TypeMapping)> = examples()
        .into_iter()
        .map(|(label, field)| (label, mapping(&field)))
        .collect();
    crate::type_mapping::markdown_table("BigQuery type", &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every BigQuery type loads into BigQuery again as the type its
    /// mapping (and so DESCRIBE) names.
    #[test]
    fn every_type_loads_into_bigquery_as_its_mapping_says() {
        use crate::type_mapping::load_type;
        let all = [
            FieldType::String,
            FieldType::Bytes,
            FieldType::Integer,
            FieldType::Int64,
            FieldType::Float,
            FieldType::Float64,
            FieldType::Numeric,
            FieldType::Bignumeric,
            FieldType::Boolean,
            FieldType::Bool,
            FieldType::Timestamp,
            FieldType::Date,
            FieldType::Time,
            FieldType::Datetime,
            FieldType::Record,
            FieldType::Struct,
            FieldType::Geography,
            FieldType::Json,
            FieldType::Interval,
        ];
        for ty in all {
            for mode in ["NULLABLE", "REPEATED"] {
                let field = TableFieldSchema {
                    mode: Some(mode.into()),
                    ..TableFieldSchema::new("c", ty.clone())
                };
                let mapped = mapping(&field);
                assert_eq!(
                    load_type(&mapped.arrow, mapped.type_tag()),
                    Ok(mapped.bigquery),
                    "{ty:?} {mode}"
                );
            }
        }
        let time = TableFieldSchema::new("t", FieldType::Time);
        assert_eq!(mapping(&time).bigquery, BigQueryType::Time);
    }
}
