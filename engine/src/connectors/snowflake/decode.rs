//! Snowflake's Arrow encoding -> plain Arrow. Snowflake sends each column
//! with its `logicalType` and `scale` in the field metadata: NUMBER with a
//! scale as scaled integers, TIME as scaled integers, timestamps as scaled
//! integers or `{epoch, fraction[, timezone]}` structs. [`natural`] turns
//! those into decimals, `Time64` and `Timestamp` microseconds; values finer
//! than a microsecond are refused, never rounded.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Int64Array, RecordBatch, StructArray, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};

use crate::sources::SourceError;

/// The batch with every column in plain Arrow types.
pub(super) fn natural(batch: &RecordBatch) -> Result<RecordBatch, SourceError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        let converted = column(field, array).map_err(|message| SourceError::Query {
            code: Some("22000".into()),
            message: format!("column \"{}\": {message}", field.name()),
        })?;
        fields.push(Field::new(field.name(), converted.data_type().clone(), true));
        columns.push(converted);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| SourceError::Query {
        code: None,
        message: e.to_string(),
    })
}

/// The batch cast to `schema` (the scan's projected mapping), refusing
/// values the target type cannot hold.
pub(super) fn to_schema(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, SourceError> {
    let batch = natural(batch)?;
    if batch.num_columns() != schema.fields().len() {
        return Err(SourceError::Query {
            code: None,
            message: format!(
                "Snowflake sent {} columns for {} selected",
                batch.num_columns(),
                schema.fields().len()
            ),
        });
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, array)| {
            cast_with_options(array, field.data_type(), &options).map_err(|e| SourceError::Query {
                code: Some("22003".into()),
                message: format!("column \"{}\" does not fit {}: {e}", field.name(), field.data_type()),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| SourceError::Query {
        code: None,
        message: e.to_string(),
    })
}

fn column(field: &Field, array: &ArrayRef) -> Result<ArrayRef, String> {
    let metadata = field.metadata();
    let logical = metadata
        .get("logicalType")
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_default();
    let scale: u32 = metadata.get("scale").and_then(|s| s.parse().ok()).unwrap_or(0);
    match logical.as_str() {
        "FIXED" if scale > 0 && array.data_type().is_integer() => scaled_decimal(array, scale),
        "TIME" if array.data_type().is_integer() => {
            let micros = micros(array, scale)?;
            Ok(Arc::new(Time64MicrosecondArray::new(
                micros.values().clone(),
                micros.nulls().cloned(),
            )))
        }
        "TIMESTAMP_NTZ" => timestamp(array, scale, None),
        "TIMESTAMP_LTZ" | "TIMESTAMP_TZ" => timestamp(array, scale, Some("UTC")),
        _ => Ok(array.clone()),
    }
}

/// Integers that carry a decimal scale as `Decimal128(38, scale)`.
fn scaled_decimal(array: &ArrayRef, scale: u32) -> Result<ArrayRef, String> {
    let ints = cast(array, &DataType::Int64).map_err(|e| e.to_string())?;
    let ints = ints.as_primitive::<Int64Type>();
    let decimals: Decimal128Array = ints.unary(i128::from);
    let scale = i8::try_from(scale).map_err(|_| format!("scale {scale} is out of range"))?;
    Ok(Arc::new(
        decimals
            .with_precision_and_scale(38, scale)
            .map_err(|e| e.to_string())?,
    ))
}

/// Scaled integers (`value / 10^scale` seconds) as microseconds; a value
/// with digits below a microsecond is refused.
fn micros(array: &ArrayRef, scale: u32) -> Result<Int64Array, String> {
    let ints = cast(array, &DataType::Int64).map_err(|e| e.to_string())?;
    let ints = ints.as_primitive::<Int64Type>();
    if scale <= 6 {
        let factor = 10_i64.pow(6 - scale);
        ints.try_unary(|v| v.checked_mul(factor).ok_or(()))
            .map_err(|_| "value out of range".to_string())
    } else {
        let divisor = 10_i64.pow(scale.min(18) - 6);
        ints.try_unary(|v| if v % divisor == 0 { Ok(v / divisor) } else { Err(()) })
            .map_err(|_| "a value has digits below a microsecond, which BigQuery cannot hold".to_string())
    }
}

/// A timestamp column (scaled integers, or `{epoch, fraction}` structs
/// whose epoch is in seconds) as UTC microseconds.
fn timestamp(array: &ArrayRef, scale: u32, zone: Option<&str>) -> Result<ArrayRef, String> {
    let micros = match array.data_type() {
        DataType::Struct(_) => {
            let parts: &StructArray = array.as_struct();
            let epoch = parts.column_by_name("epoch").ok_or("timestamp struct without epoch")?;
            // A NULL may be marked on the struct or only on its epoch.
            let nulls = NullBuffer::union(parts.nulls(), epoch.nulls());
            match parts.column_by_name("fraction") {
                Some(fraction) => {
                    let seconds = cast(epoch, &DataType::Int64).map_err(|e| e.to_string())?;
                    let nanos = cast(fraction, &DataType::Int64).map_err(|e| e.to_string())?;
                    let seconds = seconds.as_primitive::<Int64Type>();
                    let nanos = nanos.as_primitive::<Int64Type>();
                    let mut values = Vec::with_capacity(parts.len());
                    for i in 0..parts.len() {
                        if nulls.as_ref().is_some_and(|v| v.is_null(i)) {
                            values.push(0);
                            continue;
                        }
                        let (s, n) = (seconds.value(i), nanos.value(i));
                        if n % 1000 != 0 {
                            return Err("a value has digits below a microsecond, which BigQuery cannot hold".into());
                        }
                        values.push(
                            s.checked_mul(1_000_000)
                                .and_then(|m| m.checked_add(n / 1000))
                                .ok_or("value out of range")?,
                        );
                    }
                    Int64Array::new(values.into(), nulls)
                }
                None => {
                    let scaled = micros(epoch, scale)?;
                    Int64Array::new(scaled.values().clone(), nulls)
                }
            }
        }
        _ => micros(array, scale)?,
    };
    let timestamps = TimestampMicrosecondArray::new(micros.values().clone(), micros.nulls().cloned());
    Ok(Arc::new(timestamps.with_timezone_opt(zone)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use datafusion::arrow::array::{Int32Array, Int64Array};
    use datafusion::arrow::datatypes::{Fields, TimeUnit};

    use super::*;

    fn snowflake_field(name: &str, data_type: DataType, logical: &str, scale: u32) -> Field {
        Field::new(name, data_type, true).with_metadata(HashMap::from([
            ("logicalType".to_string(), logical.to_string()),
            ("scale".to_string(), scale.to_string()),
        ]))
    }

    fn natural_column(field: Field, array: ArrayRef) -> Result<ArrayRef, SourceError> {
        let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![array]).unwrap();
        natural(&batch).map(|b| b.column(0).clone())
    }

    #[test]
    fn scaled_numbers_become_decimals() {
        let array = natural_column(
            snowflake_field("amount", DataType::Int32, "FIXED", 2),
            Arc::new(Int32Array::from(vec![Some(1234), None, Some(-5)])),
        )
        .unwrap();
        let text = cast(&array, &DataType::Utf8).unwrap();
        let text: Vec<_> = text.as_string::<i32>().iter().collect();
        assert_eq!(text, vec![Some("12.34"), None, Some("-0.05")]);
    }

    #[test]
    fn timestamps_in_structs_and_scaled_integers_become_microseconds() {
        let fields = Fields::from(vec![
            Field::new("epoch", DataType::Int64, false),
            Field::new("fraction", DataType::Int32, false),
        ]);
        let parts = StructArray::new(
            fields.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1_704_164_645, 0])),
                Arc::new(Int32Array::from(vec![123_456_000, 0])),
            ],
            Some(vec![true, false].into()),
        );
        let array = natural_column(
            snowflake_field("ts", DataType::Struct(fields.clone()), "TIMESTAMP_NTZ", 9),
            Arc::new(parts),
        )
        .unwrap();
        assert_eq!(array.data_type(), &DataType::Timestamp(TimeUnit::Microsecond, None));
        let values = array.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(values.value(0), 1_704_164_645_123_456);
        assert!(values.is_null(1));

        let scaled = natural_column(
            snowflake_field("ts", DataType::Int64, "TIMESTAMP_LTZ", 3),
            Arc::new(Int64Array::from(vec![1_704_164_645_123])),
        )
        .unwrap();
        assert_eq!(
            scaled.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );

        let nanos = StructArray::new(
            fields.clone(),
            vec![Arc::new(Int64Array::from(vec![1])), Arc::new(Int32Array::from(vec![1]))],
            None,
        );
        let refused = natural_column(
            snowflake_field("ts", DataType::Struct(fields), "TIMESTAMP_TZ", 9),
            Arc::new(nanos),
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains("below a microsecond"), "{refused}");
    }

    #[test]
    fn a_null_marked_only_on_the_epoch_is_null() {
        // fakesnow's timestamp structs have no validity of their own.
        let fields = Fields::from(vec![
            Field::new("epoch", DataType::Int64, true),
            Field::new("fraction", DataType::Int32, true),
        ]);
        let parts = StructArray::new(
            fields.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(Int32Array::from(vec![Some(0), None])),
            ],
            None,
        );
        let array = natural_column(
            snowflake_field("ts", DataType::Struct(fields), "TIMESTAMP_NTZ", 9),
            Arc::new(parts),
        )
        .unwrap();
        assert!(array.is_valid(0));
        assert!(array.is_null(1));
    }

    #[test]
    fn times_are_scaled_to_microseconds() {
        let array = natural_column(
            snowflake_field("t", DataType::Int64, "TIME", 9),
            Arc::new(Int64Array::from(vec![36_672_345_000_000])),
        )
        .unwrap();
        let text = cast(&array, &DataType::Utf8).unwrap();
        assert_eq!(text.as_string::<i32>().value(0), "10:11:12.345");
    }
}
