//! Arrow schemas as BigQuery table schemas, and whether an existing table
//! can take a job's rows.

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;

use crate::type_mapping::{self, BigQueryType, TYPE_METADATA};

/// The BigQuery schema of a load's Arrow schema; an error names a column
/// whose type BigQuery cannot hold.
pub(super) fn table_schema(schema: &Schema) -> Result<TableSchema, String> {
    let fields = schema
        .fields()
        .iter()
        .map(|f| field_schema(f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TableSchema::new(fields))
}

fn field_schema(field: &Field) -> Result<TableFieldSchema, String> {
    let (data_type, repeated) = match field.data_type() {
        DataType::List(element) | DataType::LargeList(element) => (element.data_type(), true),
        other => (other, false),
    };
    let tag = field.metadata().get(TYPE_METADATA).map(String::as_str);
    let mut schema = TableFieldSchema::new(field.name(), field_type(field.name(), data_type, tag)?);
    if let DataType::Struct(children) = data_type {
        schema.fields = Some(children.iter().map(|c| field_schema(c)).collect::<Result<_, _>>()?);
    }
    schema.mode = Some(
        if repeated {
            "REPEATED"
        } else if field.is_nullable() {
            "NULLABLE"
        } else {
            "REQUIRED"
        }
        .into(),
    );
    Ok(schema)
}

/// The column type of `name`: the documented mapping of its in-flight
/// type ([`type_mapping::load_type`]), a RECORD for a struct.
fn field_type(name: &str, data_type: &DataType, tag: Option<&str>) -> Result<FieldType, String> {
    if let DataType::Struct(_) = data_type {
        return Ok(FieldType::Record);
    }
    let bigquery = type_mapping::load_type(data_type, tag).map_err(|reason| {
        format!(
            "column \"{name}\" has type {data_type}, which BigQuery cannot load ({reason}); \
             load its text with COLUMNS ({name} STRING)"
        )
    })?;
    Ok(match bigquery {
        BigQueryType::Bool => FieldType::Boolean,
        BigQueryType::Int64 => FieldType::Integer,
        BigQueryType::Float64 => FieldType::Float,
        BigQueryType::Numeric { .. } => FieldType::Numeric,
        BigQueryType::BigNumeric { .. } => FieldType::Bignumeric,
        BigQueryType::String => FieldType::String,
        BigQueryType::Bytes => FieldType::Bytes,
        BigQueryType::Date => FieldType::Date,
        BigQueryType::Datetime => FieldType::Datetime,
        BigQueryType::Time => FieldType::Time,
        BigQueryType::Timestamp => FieldType::Timestamp,
        BigQueryType::Json => FieldType::Json,
        BigQueryType::Interval => FieldType::Interval,
        BigQueryType::Geography => FieldType::Geography,
    })
}

/// The canonical name of a BigQuery type (legacy and standard SQL names
/// are the same type).
fn type_name(field_type: &FieldType) -> &'static str {
    match field_type {
        FieldType::String => "STRING",
        FieldType::Bytes => "BYTES",
        FieldType::Integer | FieldType::Int64 => "INT64",
        FieldType::Float | FieldType::Float64 => "FLOAT64",
        FieldType::Numeric => "NUMERIC",
        FieldType::Bignumeric => "BIGNUMERIC",
        FieldType::Boolean | FieldType::Bool => "BOOL",
        FieldType::Timestamp => "TIMESTAMP",
        FieldType::Date => "DATE",
        FieldType::Time => "TIME",
        FieldType::Datetime => "DATETIME",
        FieldType::Record | FieldType::Struct => "STRUCT",
        FieldType::Geography => "GEOGRAPHY",
        FieldType::Json => "JSON",
        FieldType::Interval => "INTERVAL",
    }
}

fn mode(field: &TableFieldSchema) -> &str {
    field.mode.as_deref().unwrap_or("NULLABLE")
}

fn describe(field: &TableFieldSchema) -> String {
    format!("{} {}", type_name(&field.r#type), mode(field))
}

/// Why an existing table cannot take rows of `load`, one entry per column;
/// empty when it can. Columns match by name; the table may have extra
/// NULLABLE columns, and a NULLABLE column takes REQUIRED values.
pub(super) fn differences(table: &TableSchema, load: &TableSchema) -> Vec<String> {
    let table_fields = table.fields.as_deref().unwrap_or_default();
    let load_fields = load.fields.as_deref().unwrap_or_default();
    let mut differences = Vec::new();
    for wanted in load_fields {
        match table_fields.iter().find(|f| f.name.eq_ignore_ascii_case(&wanted.name)) {
            None => differences.push(format!(
                "column \"{}\" ({}) is not in the table",
                wanted.name,
                describe(wanted)
            )),
            Some(existing) => {
                let same_type = type_name(&existing.r#type) == type_name(&wanted.r#type)
                    && (existing.fields.is_none() || differences_of(existing, wanted).is_empty());
                let modes_fit =
                    mode(existing) == mode(wanted) || (mode(existing) == "NULLABLE" && mode(wanted) == "REQUIRED");
                if !same_type || !modes_fit {
                    differences.push(format!(
                        "column \"{}\" is {} in the table but {} in the load",
                        wanted.name,
                        describe(existing),
                        describe(wanted)
                    ));
                }
            }
        }
    }
    for existing in table_fields {
        if mode(existing) == "REQUIRED" && !load_fields.iter().any(|f| f.name.eq_ignore_ascii_case(&existing.name)) {
            differences.push(format!(
                "column \"{}\" ({}) is REQUIRED in the table but missing from the load",
                existing.name,
                describe(existing)
            ));
        }
    }
    differences
}

/// The schema `table` needs to take rows of `load` when a job follows a
/// source schema change, as `tables.patch` allows it: the load's new columns
/// appended (NULLABLE), REQUIRED columns the load has as NULLABLE relaxed.
/// `None` when the table takes the load as it is; the error lists what a
/// patch cannot change (a column's type).
pub(super) fn evolved(table: &TableSchema, load: &TableSchema) -> Result<Option<TableSchema>, Vec<String>> {
    if differences(table, load).is_empty() {
        return Ok(None);
    }
    let load_fields = load.fields.as_deref().unwrap_or_default();
    let find = |name: &str| load_fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));
    let mut fields: Vec<TableFieldSchema> = table.fields.clone().unwrap_or_default();
    for field in &mut fields {
        if mode(field) == "REQUIRED" && find(&field.name).is_some_and(|wanted| mode(wanted) == "NULLABLE") {
            field.mode = Some("NULLABLE".into());
        }
    }
    for wanted in load_fields {
        if !fields.iter().any(|f| f.name.eq_ignore_ascii_case(&wanted.name)) {
            let mut added = wanted.clone();
            if mode(&added) == "REQUIRED" {
                added.mode = Some("NULLABLE".into());
            }
            fields.push(added);
        }
    }
    let patched = TableSchema::new(fields);
    let refusals = differences(&patched, load);
    if refusals.is_empty() {
        Ok(Some(patched))
    } else {
        Err(refusals)
    }
}

fn differences_of(existing: &TableFieldSchema, wanted: &TableFieldSchema) -> Vec<String> {
    differences(
        &TableSchema::new(existing.fields.clone().unwrap_or_default()),
        &TableSchema::new(wanted.fields.clone().unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;

    fn names(schema: &TableSchema) -> Vec<String> {
        schema
            .fields
            .as_ref()
            .unwrap()
            .iter()
            .map(|f| format!("{} {}", f.name, describe(f)))
            .collect()
    }

    #[test]
    fn maps_arrow_types_with_modes() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new("big", DataType::Decimal128(38, 10), true),
            Field::new("huge", DataType::Decimal256(76, 38), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("local", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("doc", DataType::Utf8, true).with_metadata([(TYPE_METADATA.into(), "JSON".into())].into()),
            Field::new(
                "iv",
                DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
                true,
            ),
            Field::new("place", DataType::Binary, true)
                .with_metadata([(TYPE_METADATA.into(), "GEOGRAPHY".into())].into()),
            Field::new("raw", DataType::Binary, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]);
        assert_eq!(
            names(&table_schema(&schema).unwrap()),
            [
                "id INT64 REQUIRED",
                "amount NUMERIC NULLABLE",
                "big BIGNUMERIC NULLABLE",
                "huge BIGNUMERIC NULLABLE",
                "at TIMESTAMP REQUIRED",
                "local DATETIME NULLABLE",
                "doc JSON NULLABLE",
                "iv INTERVAL NULLABLE",
                "place GEOGRAPHY NULLABLE",
                "raw BYTES NULLABLE",
                "tags STRING REPEATED",
            ]
        );
        let bad = Schema::new(vec![Field::new("n", DataType::UInt64, true)]);
        assert!(table_schema(&bad).unwrap_err().contains("\"n\""));
    }

    #[test]
    fn lists_incompatible_columns() {
        let table = TableSchema::new(vec![
            TableFieldSchema::integer("id"),
            TableFieldSchema::string("name"),
            TableFieldSchema::string("extra"),
        ]);
        let load = table_schema(&Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Int64, true),
            Field::new("new", DataType::Utf8, true),
        ]))
        .unwrap();
        let found = differences(&table, &load);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("\"name\" is STRING NULLABLE in the table but INT64 NULLABLE"),
            "{found:?}"
        );
        assert!(found[1].contains("\"new\""), "{found:?}");
        let mut required = TableFieldSchema::integer("id");
        required.mode = Some("REQUIRED".into());
        let nullable_load = table_schema(&Schema::new(vec![Field::new("id", DataType::Int64, true)])).unwrap();
        assert_eq!(differences(&TableSchema::new(vec![required]), &nullable_load).len(), 1);
        assert!(differences(&load, &load).is_empty());
    }

    #[test]
    fn a_patch_appends_nullable_columns_and_relaxes_required_ones_but_keeps_types() {
        let mut id = TableFieldSchema::integer("id");
        id.mode = Some("REQUIRED".into());
        let mut foreign = TableFieldSchema::string("foreign");
        foreign.mode = Some("REQUIRED".into());
        let load = table_schema(&Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("new", DataType::Utf8, true),
        ]))
        .unwrap();
        let patched = evolved(&TableSchema::new(vec![id.clone()]), &load).unwrap().unwrap();
        assert_eq!(names(&patched), ["id INT64 NULLABLE", "new STRING NULLABLE"]);
        assert!(matches!(evolved(&patched, &load), Ok(None)), "nothing left to patch");
        // A REQUIRED column the job does not load is not the job's to relax.
        let refused = evolved(&TableSchema::new(vec![id, foreign]), &load).unwrap_err();
        assert!(refused[0].contains("\"foreign\""), "{refused:?}");
        let datetime = TableSchema::new(vec![TableFieldSchema::date_time("at")]);
        let timestamp = table_schema(&Schema::new(vec![Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )]))
        .unwrap();
        let refused = evolved(&datetime, &timestamp).unwrap_err();
        assert!(
            refused[0].contains("DATETIME") && refused[0].contains("TIMESTAMP"),
            "{refused:?}"
        );
    }
}
