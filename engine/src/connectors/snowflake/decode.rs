//! Snowflake's Arrow encoding -> plain Arrow. Snowflake sends each column
//! with its `logicalType` and `scale` in the field metadata: NUMBER with a
//! scale as scaled integers, TIME as scaled integers, timestamps as scaled
//! integers or `{epoch, fraction[, timezone]}` structs. [`natural`] turns
//! those into decimals, `Time64` and `Timestamp` microseconds; values finer
//! than a microsecond are refused, never rounded.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    RecordBatch, StringArray, StructArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};

use serde_json::Value;

use super::client::RowType;
use crate::contract::SourceError;

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

/// Rows Snowflake sent as JSON (each value its text, or NULL) as a batch
/// in the same plain Arrow types [`natural`] gives: NUMBER as
/// `Decimal128(38, scale)`, DATE from days, TIME and timestamps from
/// `seconds.fraction` (TIMESTAMP_TZ's trailing offset dropped: the seconds
/// are UTC), BINARY from hex, everything else as text.
pub(super) fn json_batch(rowtype: &[RowType], rows: &[Vec<Value>]) -> Result<RecordBatch, SourceError> {
    let mut fields = Vec::with_capacity(rowtype.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(rowtype.len());
    for (i, column) in rowtype.iter().enumerate() {
        let mut texts = Vec::with_capacity(rows.len());
        for row in rows {
            texts.push(match row.get(i) {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => Some(text.clone()),
                Some(other) => Some(other.to_string()),
            });
        }
        let array = json_column(column, &texts).map_err(|message| SourceError::Query {
            code: Some("22000".into()),
            message: format!("column \"{}\": {message}", column.name),
        })?;
        fields.push(Field::new(&column.name, array.data_type().clone(), true));
        columns.push(array);
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
    .map_err(|e| SourceError::Query {
        code: None,
        message: e.to_string(),
    })
}

fn json_column(column: &RowType, texts: &[Option<String>]) -> Result<ArrayRef, String> {
    let bad = |value: &str| format!("cannot read {value:?} as {}", column.kind);
    let each = |parse: &dyn Fn(&str) -> Option<i64>| -> Result<Vec<Option<i64>>, String> {
        texts
            .iter()
            .map(|t| t.as_deref().map(|v| parse(v).ok_or_else(|| bad(v))).transpose())
            .collect()
    };
    let instant = |text: &str| scaled(text.split_whitespace().next()?, 9).and_then(exact_micros);
    Ok(match column.kind.to_ascii_lowercase().as_str() {
        "fixed" => {
            let scale = column.scale.unwrap_or(0);
            let out_of_range = || format!("scale {scale} is out of range");
            let scale8 = i8::try_from(scale).map_err(|_| out_of_range())?;
            let places = u32::try_from(scale).map_err(|_| out_of_range())?;
            let values: Vec<Option<i128>> = texts
                .iter()
                .map(|t| {
                    t.as_deref()
                        .map(|v| scaled(v, places).ok_or_else(|| bad(v)))
                        .transpose()
                })
                .collect::<Result<_, _>>()?;
            Arc::new(
                Decimal128Array::from(values)
                    .with_precision_and_scale(38, scale8)
                    .map_err(|e| e.to_string())?,
            )
        }
        "real" => {
            let values: Vec<Option<f64>> = texts
                .iter()
                .map(|t| t.as_deref().map(|v| v.parse().map_err(|_| bad(v))).transpose())
                .collect::<Result<_, _>>()?;
            Arc::new(Float64Array::from(values))
        }
        "boolean" => {
            let values: Vec<Option<bool>> = texts
                .iter()
                .map(|t| {
                    t.as_deref()
                        .map(|v| match v.to_ascii_lowercase().as_str() {
                            "1" | "true" => Ok(true),
                            "0" | "false" => Ok(false),
                            _ => Err(bad(v)),
                        })
                        .transpose()
                })
                .collect::<Result<_, _>>()?;
            Arc::new(BooleanArray::from(values))
        }
        "date" => {
            let days = each(&|v| v.parse::<i32>().ok().map(i64::from))?;
            Arc::new(Date32Array::from(
                days.into_iter().map(|d| d.map(|d| d as i32)).collect::<Vec<_>>(),
            ))
        }
        "time" => Arc::new(Time64MicrosecondArray::from(each(&instant)?)),
        "timestamp_ntz" => Arc::new(TimestampMicrosecondArray::from(each(&instant)?)),
        "timestamp_ltz" | "timestamp_tz" => {
            Arc::new(TimestampMicrosecondArray::from(each(&instant)?).with_timezone("UTC"))
        }
        "binary" => {
            let values: Vec<Option<Vec<u8>>> = texts
                .iter()
                .map(|t| t.as_deref().map(|v| hex::decode(v).map_err(|_| bad(v))).transpose())
                .collect::<Result<_, _>>()?;
            Arc::new(BinaryArray::from_iter(values))
        }
        _ => Arc::new(StringArray::from(texts.to_vec())),
    })
}

/// A decimal text (`-12.5`) as an integer of units of 10^-`places`
/// (`places` 9: nanoseconds of `seconds.fraction`); `None` when it has more
/// digits after the point than that keeps exactly, or is not a number.
fn scaled(text: &str, places: u32) -> Option<i128> {
    let places = places as usize;
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let kept = fraction.trim_end_matches('0');
    if kept.len() > places
        || integer.is_empty() && fraction.is_empty()
        || !integer.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let text = format!("{}{kept:0<places$}", if integer.is_empty() { "0" } else { integer });
    let value: i128 = text.parse().ok()?;
    Some(if negative { -value } else { value })
}

/// Nanoseconds as microseconds, refusing digits below a microsecond.
fn exact_micros(nanos: i128) -> Option<i64> {
    (nanos % 1000 == 0).then(|| i64::try_from(nanos / 1000).ok()).flatten()
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
    fn json_rows_decode_as_arrow_rows_do() {
        let rowtype: Vec<RowType> = serde_json::from_value(serde_json::json!([
            {"name": "N", "type": "fixed", "scale": 2},
            {"name": "F", "type": "real"},
            {"name": "B", "type": "boolean"},
            {"name": "D", "type": "date"},
            {"name": "T", "type": "time", "scale": 9},
            {"name": "TS", "type": "timestamp_ntz", "scale": 9},
            {"name": "TZ", "type": "timestamp_tz", "scale": 9},
            {"name": "BIN", "type": "binary"},
            {"name": "V", "type": "variant"}
        ]))
        .unwrap();
        let rows: Vec<Vec<Value>> = serde_json::from_value(serde_json::json!([
            [
                "-12.50",
                "1.5",
                "1",
                "19724",
                "36672.345000000",
                "1704164645.123456000",
                "1704164645.500000000 1560",
                "6869",
                "{\"a\":1}"
            ],
            [null, null, null, null, null, null, null, null, null]
        ]))
        .unwrap();
        let batch = json_batch(&rowtype, &rows).unwrap();
        let text: Vec<String> = batch
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8).unwrap().as_string::<i32>().value(0).to_owned())
            .collect();
        assert_eq!(
            text,
            [
                "-12.50",
                "1.5",
                "true",
                "2024-01-02",
                "10:11:12.345",
                "2024-01-02T03:04:05.123456",
                "2024-01-02T03:04:05.500Z",
                "hi",
                "{\"a\":1}"
            ]
            .map(|s| s.to_owned())
        );
        assert!(batch.columns().iter().all(|c| c.is_null(1)));
        let nanos_only = [vec![Value::from("1.000000001")]];
        let error = json_batch(&rowtype[5..6], &nanos_only).unwrap_err().to_string();
        assert!(error.contains("cannot read"), "{error}");
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
