//! Nested values as Arrow struct and list arrays: a JSON field a job's
//! `COLUMNS` loads as `RECORD(...)` or `REPEATED type` (BigQuery RECORD and
//! REPEATED columns, nested Parquet in the warehouse).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, ListArray, StructArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::arrow::error::ArrowError;

use super::convert::{Builder, cell};
use super::mapping::{ColumnSpec, Target};
use super::value::Value;
use crate::type_mapping::TYPE_METADATA;

static NULL: Value = Value::Null;

/// Whether a column of this Arrow type holds nested values.
pub(super) fn is_nested(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Struct(_) | DataType::List(_))
}

/// Where and why `value` does not fit `data_type`: the path inside the
/// field (`.zip`, `[2]`, empty for the value itself) and what is there;
/// `None` when it fits. With `strict_keys`, an object key the RECORD does
/// not name (and whose value is not null) does not fit either.
pub(super) fn misfit(value: &Value, data_type: &DataType, strict_keys: bool) -> Option<(String, String)> {
    let what = |v: &Value| match v.kind() {
        Some(kind) => format!("the {} value {}", kind.name(), v.excerpt()),
        None => "NULL".to_owned(),
    };
    match (data_type, value) {
        (_, Value::Null) => None,
        (DataType::Struct(fields), Value::Object(map)) => {
            map.iter()
                .find_map(|(key, v)| match fields.iter().find(|f| f.name() == key) {
                    Some(f) => {
                        misfit(v, f.data_type(), strict_keys).map(|(path, what)| (format!(".{key}{path}"), what))
                    }
                    None if strict_keys && *v != Value::Null => Some((
                        format!(".{key}"),
                        format!("{}, a key the RECORD does not name", what(v)),
                    )),
                    None => None,
                })
        }
        (DataType::List(item), Value::Array(items)) => items.iter().enumerate().find_map(|(i, v)| match v {
            Value::Null => Some((format!("[{i}]"), "NULL (REPEATED elements cannot be NULL)".to_owned())),
            v => misfit(v, item.data_type(), strict_keys).map(|(path, what)| (format!("[{i}]{path}"), what)),
        }),
        (DataType::Struct(_) | DataType::List(_), v) => Some((String::new(), what(v))),
        (scalar, v) => match target(scalar, false) {
            Some(target) if cell(v, ColumnSpec::new(target)).is_some() => None,
            _ => Some((String::new(), what(v))),
        },
    }
}

/// The target of a scalar inside a nested type (`json` for a field tagged
/// JSON).
fn target(data_type: &DataType, json: bool) -> Option<Target> {
    Some(match data_type {
        DataType::Utf8 if json => Target::Json,
        DataType::Utf8 => Target::String,
        DataType::Boolean => Target::Bool,
        DataType::Int64 => Target::Int,
        DataType::Float64 => Target::Float,
        DataType::Binary => Target::Bytes,
        DataType::Timestamp(TimeUnit::Microsecond, _) => Target::Timestamp,
        _ => return None,
    })
}

/// The array of `values` (each fitting, see [`misfit`]) as `field`'s type.
pub(super) fn build(field: &Field, values: &[&Value]) -> Result<ArrayRef, ArrowError> {
    let present = |v: &&Value| !matches!(v, Value::Null);
    match field.data_type() {
        DataType::Struct(fields) => {
            let children = fields
                .iter()
                .map(|f| {
                    let of_child: Vec<&Value> = values
                        .iter()
                        .map(|v| match v {
                            Value::Object(map) => map.get(f.name()).unwrap_or(&NULL),
                            _ => &NULL,
                        })
                        .collect();
                    build(f, &of_child)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let nulls = NullBuffer::from_iter(values.iter().map(present));
            Ok(Arc::new(StructArray::try_new(fields.clone(), children, Some(nulls))?))
        }
        DataType::List(item) => {
            fn items<'a>(v: &&'a Value) -> &'a [Value] {
                match v {
                    Value::Array(items) => items.as_slice(),
                    _ => &[],
                }
            }
            let offsets = OffsetBuffer::from_lengths(values.iter().map(|v| items(v).len()));
            let flat: Vec<&Value> = values.iter().flat_map(items).collect();
            let child = build(item, &flat)?;
            let nulls = NullBuffer::from_iter(values.iter().map(present));
            Ok(Arc::new(ListArray::try_new(item.clone(), offsets, child, Some(nulls))?))
        }
        scalar => {
            let json = field.metadata().get(TYPE_METADATA).is_some_and(|t| t == "JSON");
            let target = target(scalar, json)
                .ok_or_else(|| ArrowError::SchemaError(format!("{scalar} cannot be inside a nested column")))?;
            let mut builder = Builder::new(target, values.len());
            for v in values {
                match cell(v, ColumnSpec::new(target)) {
                    Some(c) => builder.append(c),
                    None => builder.append_null(),
                }
            }
            Ok(builder.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Fields, Int64Type};

    use super::*;

    fn object(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    fn record() -> DataType {
        DataType::Struct(Fields::from(vec![
            Field::new("zip", DataType::Int64, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))),
                true,
            ),
        ]))
    }

    #[test]
    fn records_and_arrays_build_nested_arrays() {
        let a = object(&[
            ("zip", Value::Int(7)),
            (
                "tags",
                Value::Array(vec![Value::String("x".into()), Value::String("y".into())]),
            ),
        ]);
        let b = object(&[("zip", Value::Null)]);
        let field = Field::new("address", record(), true);
        let values = [&a, &Value::Null, &b];
        assert!(values.iter().all(|v| misfit(v, &record(), true).is_none()));
        let array = build(&field, &values).unwrap();
        let structs = array.as_struct();
        assert_eq!(structs.len(), 3);
        assert!(structs.is_null(1) && !structs.is_null(2));
        assert_eq!(structs.column(0).as_primitive::<Int64Type>().value(0), 7);
        let tags = structs.column(1).as_list::<i32>();
        assert_eq!(tags.value(0).as_string::<i32>().value(1), "y");
        assert!(tags.is_null(2));
    }

    #[test]
    fn misfits_name_the_path() {
        let bad_zip = object(&[("zip", Value::String("x".into()))]);
        assert_eq!(misfit(&bad_zip, &record(), true).unwrap().0, ".zip");
        let null_tag = object(&[("tags", Value::Array(vec![Value::String("a".into()), Value::Null]))]);
        assert_eq!(misfit(&null_tag, &record(), true).unwrap().0, ".tags[1]");
        let extra = object(&[("country", Value::String("PL".into()))]);
        assert_eq!(misfit(&extra, &record(), true).unwrap().0, ".country");
        assert_eq!(misfit(&extra, &record(), false), None);
        assert_eq!(misfit(&Value::Int(1), &record(), false).unwrap().0, "");
        let float_zip = object(&[("zip", Value::Float(1.5))]);
        assert!(misfit(&float_zip, &record(), false).is_some());
    }
}
