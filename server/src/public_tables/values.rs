//! Public table values between the catalog's JSON and Arrow.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;
use sluice_catalog::{PublicTable, PublicType};

use super::PublicTableError;

/// The Arrow type a column type is read as.
pub fn arrow_type(data_type: PublicType) -> DataType {
    match data_type {
        PublicType::Text => DataType::Utf8,
        PublicType::Int4 => DataType::Int32,
        PublicType::Int8 => DataType::Int64,
        PublicType::Float8 => DataType::Float64,
        PublicType::Bool => DataType::Boolean,
        PublicType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        PublicType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The table's Arrow schema.
pub fn schema(table: &PublicTable) -> SchemaRef {
    Arc::new(Schema::new(
        table
            .columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.data_type), !c.not_null))
            .collect::<Vec<_>>(),
    ))
}

/// One column of `rows` as an Arrow array.
pub fn to_array<'a>(data_type: PublicType, values: impl Iterator<Item = &'a Value>) -> ArrayRef {
    match data_type {
        PublicType::Text => Arc::new(values.map(Value::as_str).collect::<StringArray>()),
        PublicType::Int4 => Arc::new(
            values
                .map(|v| v.as_i64().and_then(|n| i32::try_from(n).ok()))
                .collect::<Int32Array>(),
        ),
        PublicType::Int8 => Arc::new(values.map(Value::as_i64).collect::<Int64Array>()),
        PublicType::Float8 => Arc::new(values.map(Value::as_f64).collect::<Float64Array>()),
        PublicType::Bool => Arc::new(values.map(Value::as_bool).collect::<BooleanArray>()),
        PublicType::Timestamp => Arc::new(values.map(Value::as_i64).collect::<TimestampMicrosecondArray>()),
        PublicType::Timestamptz => Arc::new(
            values
                .map(Value::as_i64)
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
    }
}

/// The given rows of `table`, one array per column.
pub fn columns(table: &PublicTable, rows: &[&Vec<Value>]) -> Vec<ArrayRef> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| to_array(column.data_type, rows.iter().map(|row| &row[i])))
        .collect()
}

/// The given rows of `table` as one batch (every column nullable), optionally with extra leading
/// columns (the row numbers UPDATE and DELETE select by).
pub fn batch(table: &PublicTable, rows: &[&Vec<Value>], extra: Option<(Field, ArrayRef)>) -> RecordBatch {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    if let Some((field, column)) = extra {
        fields.push(field);
        columns.push(column);
    }
    for column in &table.columns {
        fields.push(Field::new(&column.name, arrow_type(column.data_type), true));
    }
    columns.extend(self::columns(table, rows));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("columns match their fields")
}

/// Casts a computed column to a column type: a value that does not fit is
/// an error, not a NULL.
pub fn cast(array: &ArrayRef, data_type: PublicType, column: &str) -> Result<ArrayRef, PublicTableError> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, &arrow_type(data_type), &options).map_err(|e| PublicTableError::InvalidValue {
        column: column.to_owned(),
        reason: e.to_string(),
    })
}

/// The value at `row` of an array already cast to `data_type`.
pub fn value_at(array: &ArrayRef, row: usize, data_type: PublicType) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    let any = array.as_any();
    match data_type {
        PublicType::Text => any
            .downcast_ref::<StringArray>()
            .map_or(Value::Null, |a| Value::from(a.value(row))),
        PublicType::Int4 => any
            .downcast_ref::<Int32Array>()
            .map_or(Value::Null, |a| Value::from(a.value(row))),
        PublicType::Int8 => any
            .downcast_ref::<Int64Array>()
            .map_or(Value::Null, |a| Value::from(a.value(row))),
        PublicType::Float8 => any
            .downcast_ref::<Float64Array>()
            .map_or(Value::Null, |a| Value::from(a.value(row))),
        PublicType::Bool => any
            .downcast_ref::<BooleanArray>()
            .map_or(Value::Null, |a| Value::from(a.value(row))),
        PublicType::Timestamp | PublicType::Timestamptz => any
            .downcast_ref::<TimestampMicrosecondArray>()
            .map_or(Value::Null, |a| Value::from(a.value(row))),
    }
}

/// A value as PostgreSQL prints it in a constraint violation's detail.
pub fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}
