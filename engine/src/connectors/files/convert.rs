//! Columns read with their file's types, converted to their mapped types:
//! casts that never round or clamp, JSON text for nested values, and the
//! text form for types BigQuery does not have.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch, RecordBatchOptions, StringBuilder,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date64Type, Field, SchemaRef, Time64NanosecondType, TimeUnit, TimestampNanosecondType,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::{EncoderOptions, make_encoder};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::contract::ColumnInfo;
use crate::type_mapping::BigQueryType;

/// Converts a batch read with the files' types into `schema`, whose fields
/// are `columns` mapped. A batch without columns keeps its row count.
pub(super) fn batch(batch: &RecordBatch, columns: &[ColumnInfo], schema: &SchemaRef) -> Result<RecordBatch, String> {
    if columns.is_empty() {
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        return RecordBatch::try_new_with_options(schema.clone(), vec![], &options).map_err(|e| e.to_string());
    }
    let arrays = batch
        .columns()
        .iter()
        .zip(columns)
        .zip(schema.fields())
        .map(|((array, column), field)| {
            convert(array, column, field.data_type()).map_err(|e| format!("column \"{}\": {e}", column.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())
}

/// One column, as `target`.
fn convert(array: &ArrayRef, column: &ColumnInfo, target: &DataType) -> Result<ArrayRef, ArrowError> {
    if array.data_type() == target {
        return Ok(array.clone());
    }
    if column.mapping.bigquery == BigQueryType::Json && !column.mapping.repeated {
        return json_text(array.as_ref());
    }
    refuse_lost_precision(array.as_ref())?;
    if *target == DataType::Utf8 && !is_text(array.data_type()) {
        return display_text(array.as_ref());
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(array, target, &options)
}

fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

/// Refuses values that the microsecond and day types of the mapping would
/// truncate: sub-microsecond digits, and times of day in a Date64.
fn refuse_lost_precision(array: &dyn Array) -> Result<(), ArrowError> {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => whole(
            array.as_primitive::<TimestampNanosecondType>(),
            1_000,
            "sub-microsecond digits",
        ),
        DataType::Time64(TimeUnit::Nanosecond) => whole(
            array.as_primitive::<Time64NanosecondType>(),
            1_000,
            "sub-microsecond digits",
        ),
        DataType::Date64 => whole(array.as_primitive::<Date64Type>(), 86_400_000, "a time of day"),
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let (start, end) = offset_range(list.value_offsets());
            refuse_lost_precision(list.values().slice(start, end - start).as_ref())
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            let (start, end) = offset_range(list.value_offsets());
            refuse_lost_precision(list.values().slice(start, end - start).as_ref())
        }
        DataType::FixedSizeList(_, size) => {
            let list = array.as_fixed_size_list();
            let size = usize::try_from(*size).unwrap_or_default();
            refuse_lost_precision(list.values().slice(list.offset() * size, list.len() * size).as_ref())
        }
        _ => Ok(()),
    }
}

/// The range of values that list offsets cover.
fn offset_range<O: TryInto<usize> + Copy>(offsets: &[O]) -> (usize, usize) {
    let at = |o: Option<&O>| o.and_then(|&o| o.try_into().ok()).unwrap_or_default();
    (at(offsets.first()), at(offsets.last()))
}

/// Checks that every value is a multiple of `unit`.
fn whole<T: ArrowPrimitiveType<Native = i64>>(
    array: &PrimitiveArray<T>,
    unit: i64,
    what: &str,
) -> Result<(), ArrowError> {
    let Some(row) = (0..array.len()).find(|&i| array.is_valid(i) && array.value(i) % unit != 0) else {
        return Ok(());
    };
    let value = ArrayFormatter::try_new(array, &FormatOptions::default())?
        .value(row)
        .to_string();
    Err(ArrowError::CastError(format!(
        "{value} has {what}, which BigQuery cannot hold: refused rather than truncated"
    )))
}

/// Each value as JSON text (objects for structs and maps, arrays for lists).
fn json_text(array: &dyn Array) -> Result<ArrayRef, ArrowError> {
    let field = Arc::new(Field::new("value", array.data_type().clone(), true));
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = make_encoder(&field, array, &options)?;
    let mut texts = StringBuilder::with_capacity(array.len(), array.len() * 16);
    let mut buffer = Vec::new();
    for row in 0..array.len() {
        if encoder.is_null(row) {
            texts.append_null();
            continue;
        }
        buffer.clear();
        encoder.encode(row, &mut buffer);
        texts.append_value(String::from_utf8_lossy(&buffer));
    }
    Ok(Arc::new(texts.finish()))
}

/// Each value's text form, as Arrow displays it.
fn display_text(array: &dyn Array) -> Result<ArrayRef, ArrowError> {
    let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())?;
    let nulls = array.logical_nulls();
    let mut texts = StringBuilder::with_capacity(array.len(), array.len() * 16);
    for row in 0..array.len() {
        if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            texts.append_null();
        } else {
            texts.append_value(formatter.value(row).to_string());
        }
    }
    Ok(Arc::new(texts.finish()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Date64Array, Int32Array, ListArray, StringArray, StructArray, TimestampNanosecondArray,
    };
    use datafusion::arrow::datatypes::{DurationSecondType, Int32Type};

    use super::*;
    use crate::type_mapping::arrow::map;

    fn column(data_type: &DataType) -> ColumnInfo {
        ColumnInfo {
            name: "c".into(),
            ordinal: 1,
            source_type: data_type.to_string(),
            nullable: true,
            default: None,
            primary_key_position: None,
            indexed: false,
            mapping: map(data_type),
        }
    }

    fn mapped(array: ArrayRef) -> Result<ArrayRef, ArrowError> {
        let column = column(array.data_type());
        let target = column.mapping.arrow.clone();
        let out = convert(&array, &column, &target)?;
        assert_eq!(out.data_type(), &target);
        Ok(out)
    }

    fn texts(array: &ArrayRef) -> Vec<Option<&str>> {
        array.as_string::<i32>().iter().collect()
    }

    #[test]
    fn nanoseconds_convert_only_when_whole_microseconds() {
        let ok = TimestampNanosecondArray::from(vec![Some(1_000), None]).with_timezone("UTC");
        let out = mapped(Arc::new(ok)).unwrap();
        assert_eq!(
            out.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                .iter()
                .collect::<Vec<_>>(),
            [Some(1), None]
        );
        let err = mapped(Arc::new(TimestampNanosecondArray::from(vec![1_000, 1_000_000_001])))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1970-01-01T00:00:01.000000001 has sub-microsecond digits"),
            "{err}"
        );
        let err = mapped(Arc::new(Date64Array::from(vec![86_400_000, 3_600_000])))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has a time of day"), "{err}");
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>([Some(vec![Some(1), None]), None]);
        let out = mapped(Arc::new(list)).unwrap();
        assert_eq!(out.as_list::<i32>().value(0).len(), 2);
    }

    #[test]
    fn nested_values_become_json_and_others_text() {
        let ids: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None]));
        let names: ArrayRef = Arc::new(StringArray::from(vec![Some("a\"😀"), None]));
        let point = StructArray::try_from(vec![("id", ids), ("name", names)]).unwrap();
        let out = mapped(Arc::new(point)).unwrap();
        assert_eq!(
            texts(&out),
            [Some(r#"{"id":1,"name":"a\"😀"}"#), Some(r#"{"id":null,"name":null}"#)]
        );
        let durations = PrimitiveArray::<DurationSecondType>::from(vec![Some(90), None]);
        let out = mapped(Arc::new(durations)).unwrap();
        assert_eq!(texts(&out), [Some("PT90S"), None]);
        let nulls: ArrayRef = Arc::new(datafusion::arrow::array::NullArray::new(2));
        assert_eq!(texts(&mapped(nulls).unwrap()), [None, None]);
    }
}
