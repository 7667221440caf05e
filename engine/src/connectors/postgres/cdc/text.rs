//! pgoutput's text values decoded into the job's Arrow types (the ones the
//! PostgreSQL type mapping gives, `types.rs`). The replication session
//! pins the settings that shape the text (`SESSION_OPTIONS`): ISO dates,
//! UTC, ISO 8601 intervals, shortest exact floats, hex bytea.
//!
//! Values that the mapping refuses in scans are refused here too: NaN and
//! infinities in numerics, infinite dates and timestamps, arrays with NULL
//! elements or more than one dimension.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, Float32Array, Float64Array, IntervalMonthDayNanoArray, ListArray, StringArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit};

/// The replication session's `options`: how the walsender prints values.
pub(super) const SESSION_OPTIONS: &str = "-c datestyle=ISO,MDY -c intervalstyle=iso_8601 -c timezone=UTC \
                                          -c extra_float_digits=3 -c bytea_output=hex";

/// Decodes a column of pgoutput text values into `data_type`.
pub(crate) fn decode(values: &StringArray, data_type: &DataType) -> Result<ArrayRef, String> {
    Ok(match data_type {
        DataType::Utf8 => Arc::new(values.clone()),
        DataType::Binary => Arc::new(
            values
                .iter()
                .map(|v| v.map(bytea).transpose())
                .collect::<Result<BinaryArray, _>>()?,
        ),
        DataType::Float32 => Arc::new(
            values
                .iter()
                .map(|v| v.map(|v| v.parse::<f32>().map_err(|_| bad(v, "real"))).transpose())
                .collect::<Result<Float32Array, _>>()?,
        ),
        DataType::Float64 => Arc::new(
            values
                .iter()
                .map(|v| {
                    v.map(|v| v.parse::<f64>().map_err(|_| bad(v, "double precision")))
                        .transpose()
                })
                .collect::<Result<Float64Array, _>>()?,
        ),
        DataType::Interval(IntervalUnit::MonthDayNano) => Arc::new(
            values
                .iter()
                .map(|v| v.map(interval).transpose())
                .collect::<Result<IntervalMonthDayNanoArray, _>>()?,
        ),
        DataType::List(field) => {
            let mut offsets = vec![0i32];
            let mut elements: Vec<Option<String>> = Vec::new();
            for value in values.iter() {
                if let Some(value) = value {
                    let parsed = array_elements(value)?;
                    // As in scans: BigQuery arrays cannot hold NULL.
                    if parsed.iter().any(Option::is_none) {
                        return Err("an array with a NULL element cannot be loaded; such values are refused".into());
                    }
                    elements.extend(parsed);
                }
                offsets.push(i32::try_from(elements.len()).map_err(|_| "array values exceed 2^31 elements")?);
            }
            let elements = decode(&StringArray::from(elements), field.data_type())?;
            let nulls = values.nulls().cloned();
            Arc::new(
                ListArray::try_new(field.clone(), OffsetBuffer::new(offsets.into()), elements, nulls)
                    .map_err(|e| e.to_string())?,
            )
        }
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            if let Some(special) = values
                .iter()
                .flatten()
                .find(|v| matches!(*v, "NaN" | "Infinity" | "-Infinity"))
            {
                return Err(format!(
                    "numeric value {special} cannot be loaded: NaN and infinities are refused"
                ));
            }
            cast(values, data_type)?
        }
        _ => cast(values, data_type)?,
    })
}

/// Arrow's own parsing, which accepts PostgreSQL's output forms of
/// booleans (`t`/`f`), integers, numerics, ISO dates, times and
/// timestamps (`2024-01-01 12:00:00.5+00`), and refuses anything else.
fn cast(values: &StringArray, data_type: &DataType) -> Result<ArrayRef, String> {
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(values, data_type, &options).map_err(|e| e.to_string())
}

fn bad(value: &str, type_name: &str) -> String {
    format!("\"{}\" is not a {type_name}", crate::contract::excerpt(value))
}

/// `\x0aff` (bytea_output = hex).
fn bytea(value: &str) -> Result<Vec<u8>, String> {
    let hex = value.strip_prefix("\\x").ok_or_else(|| bad(value, "hex bytea"))?;
    hex::decode(hex).map_err(|_| bad(value, "hex bytea"))
}

/// An ISO 8601 interval as PostgreSQL writes it (`P1Y2M3DT4H5M6.5S`, every
/// part signed on its own: `P-1Y-2M3DT-4H`), as months, days and
/// nanoseconds.
fn interval(value: &str) -> Result<IntervalMonthDayNano, String> {
    let invalid = || bad(value, "ISO 8601 interval");
    let body = value.strip_prefix('P').ok_or_else(invalid)?;
    let (mut months, mut days, mut nanos) = (0i64, 0i64, 0i128);
    let mut in_time = false;
    let mut number = String::new();
    for c in body.chars() {
        match c {
            'T' if number.is_empty() => in_time = true,
            '0'..='9' | '.' | '-' | '+' => number.push(c),
            unit => {
                let whole = || -> Result<i64, String> { number.parse::<i64>().map_err(|_| invalid()) };
                match (in_time, unit) {
                    (false, 'Y') => months += whole()? * 12,
                    (false, 'M') => months += whole()?,
                    (false, 'W') => days += whole()? * 7,
                    (false, 'D') => days += whole()?,
                    (true, 'H') => nanos += i128::from(whole()?) * 3_600_000_000_000,
                    (true, 'M') => nanos += i128::from(whole()?) * 60_000_000_000,
                    (true, 'S') => nanos += seconds_nanos(&number).ok_or_else(invalid)?,
                    _ => return Err(invalid()),
                }
                number.clear();
            }
        }
    }
    if !number.is_empty() {
        return Err(invalid());
    }
    Ok(IntervalMonthDayNano {
        months: i32::try_from(months).map_err(|_| invalid())?,
        days: i32::try_from(days).map_err(|_| invalid())?,
        nanoseconds: i64::try_from(nanos).map_err(|_| invalid())?,
    })
}

/// `-6.5` seconds as nanoseconds, exactly (microsecond precision).
fn seconds_nanos(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if fraction.len() > 9 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos =
        i128::from(whole.parse::<i64>().ok()?) * 1_000_000_000 + format!("{fraction:0<9}").parse::<i128>().ok()?;
    Some(if negative { -nanos } else { nanos })
}

/// The elements of a one-dimensional array literal (`{1,NULL,"a,b"}`):
/// unquoted `NULL` is NULL, quoted elements are unescaped.
/// Multi-dimensional arrays are refused, as in scans.
fn array_elements(value: &str) -> Result<Vec<Option<String>>, String> {
    let invalid = |why: &str| format!("array {}: {why}", crate::contract::excerpt(value));
    // A lower bound other than 1 is written first: `[0:1]={a,b}`.
    let body = match value.strip_prefix('[') {
        Some(_) => value
            .split_once('=')
            .map(|(_, rest)| rest)
            .ok_or_else(|| invalid("bad bounds"))?,
        None => value,
    };
    let body = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| invalid("not an array literal"))?;
    let mut elements = Vec::new();
    if body.is_empty() {
        return Ok(elements);
    }
    let mut chars = body.chars().peekable();
    loop {
        match chars.peek() {
            Some('{') => return Err(invalid("multi-dimensional arrays cannot be loaded")),
            Some('"') => {
                chars.next();
                let mut element = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => element.push(chars.next().ok_or_else(|| invalid("unfinished escape"))?),
                        Some('"') => break,
                        Some(c) => element.push(c),
                        None => return Err(invalid("unfinished quoted element")),
                    }
                }
                elements.push(Some(element));
            }
            _ => {
                let mut element = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    element.push(c);
                    chars.next();
                }
                elements.push((element != "NULL").then_some(element));
            }
        }
        match chars.next() {
            Some(',') => {}
            None => return Ok(elements),
            Some(_) => return Err(invalid("text after a quoted element")),
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{
        Date32Type, Decimal128Type, Field, Int32Type, Int64Type, Time64MicrosecondType, TimeUnit,
        TimestampMicrosecondType,
    };
    use proptest::prelude::*;

    use super::*;

    fn one(text: &str, data_type: DataType) -> Result<ArrayRef, String> {
        decode(&StringArray::from(vec![Some(text), None]), &data_type)
    }

    fn list_of(data_type: DataType) -> DataType {
        DataType::List(Arc::new(Field::new_list_field(data_type, true)))
    }

    #[test]
    fn scalar_types_decode_from_their_output_text() {
        assert!(one("t", DataType::Boolean).unwrap().as_boolean().value(0));
        assert!(!one("f", DataType::Boolean).unwrap().as_boolean().value(0));
        assert_eq!(one("-32768", DataType::Int16).unwrap().len(), 2);
        assert_eq!(
            one("-7", DataType::Int32).unwrap().as_primitive::<Int32Type>().value(0),
            -7
        );
        assert_eq!(
            one("9223372036854775807", DataType::Int64)
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            i64::MAX
        );
        assert_eq!(
            one("1.5", DataType::Float32)
                .unwrap()
                .as_primitive::<datafusion::arrow::datatypes::Float32Type>()
                .value(0),
            1.5
        );
        let inf = one("-Infinity", DataType::Float64).unwrap();
        assert_eq!(
            inf.as_primitive::<datafusion::arrow::datatypes::Float64Type>().value(0),
            f64::NEG_INFINITY
        );
        assert!(
            one("NaN", DataType::Float64)
                .unwrap()
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(0)
                .is_nan()
        );
        let decimal = one("-12345.67", DataType::Decimal128(12, 2)).unwrap();
        assert_eq!(decimal.as_primitive::<Decimal128Type>().value(0), -1_234_567);
        assert!(
            one("NaN", DataType::Decimal128(12, 2))
                .unwrap_err()
                .contains("NaN and infinities are refused")
        );
        assert!(one("Infinity", DataType::Decimal128(12, 2)).is_err());
        assert_eq!(
            one("\\x00ff", DataType::Binary).unwrap().as_binary::<i32>().value(0),
            [0, 255]
        );
        assert!(one("00ff", DataType::Binary).unwrap_err().contains("hex bytea"));
        assert_eq!(
            one("2024-02-29", DataType::Date32)
                .unwrap()
                .as_primitive::<Date32Type>()
                .value(0),
            19782
        );
        assert!(one("infinity", DataType::Date32).is_err(), "refused as in scans");
        let ts = one(
            "2024-01-02 03:04:05.123456+00",
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
        )
        .unwrap();
        assert_eq!(
            ts.as_primitive::<TimestampMicrosecondType>().value(0),
            1_704_164_645_123_456
        );
        let local = one("2024-01-02 03:04:05", DataType::Timestamp(TimeUnit::Microsecond, None)).unwrap();
        assert_eq!(
            local.as_primitive::<TimestampMicrosecondType>().value(0),
            1_704_164_645_000_000
        );
        let time = one("13:14:15.5", DataType::Time64(TimeUnit::Microsecond)).unwrap();
        assert_eq!(time.as_primitive::<Time64MicrosecondType>().value(0), 47_655_500_000);
        let json = one("{\"a\": [1, 2]}", DataType::Utf8).unwrap();
        assert_eq!(json.as_string::<i32>().value(0), "{\"a\": [1, 2]}");
        assert!(json.is_null(1), "NULL stays NULL");
        assert!(one("x", DataType::Int32).is_err());
    }

    #[test]
    fn intervals_decode_from_iso_8601() {
        let at = |text: &str| interval(text).unwrap();
        assert_eq!(
            at("P1Y2M3DT4H5M6.5S"),
            IntervalMonthDayNano::new(14, 3, 14_706_500_000_000)
        );
        assert_eq!(
            at("P-1Y-2M3DT-4H"),
            IntervalMonthDayNano::new(-14, 3, -14_400_000_000_000)
        );
        assert_eq!(at("PT-0.000001S"), IntervalMonthDayNano::new(0, 0, -1_000));
        assert_eq!(at("P0D"), IntervalMonthDayNano::new(0, 0, 0));
        assert_eq!(at("P2W"), IntervalMonthDayNano::new(0, 14, 0));
        for bad in ["1 day", "P1", "P1X", "PT1.5H", ""] {
            assert!(interval(bad).is_err(), "{bad}");
        }
        let array = one("P1D", DataType::Interval(IntervalUnit::MonthDayNano)).unwrap();
        assert_eq!(array.len(), 2);
    }

    #[test]
    fn arrays_decode_with_nulls_quotes_and_bounds() {
        assert_eq!(
            array_elements(r#"{1,NULL,"NULL","a,b","q\"uote","back\\slash"}"#).unwrap(),
            [
                Some("1"),
                None,
                Some("NULL"),
                Some("a,b"),
                Some("q\"uote"),
                Some("back\\slash")
            ]
            .map(|e| e.map(str::to_owned))
        );
        assert_eq!(array_elements("{}").unwrap(), Vec::<Option<String>>::new());
        assert_eq!(
            array_elements("[0:1]={7,8}").unwrap(),
            [Some("7".to_owned()), Some("8".to_owned())]
        );
        assert!(
            array_elements("{{1,2},{3,4}}")
                .unwrap_err()
                .contains("multi-dimensional")
        );
        let list = decode(
            &StringArray::from(vec![Some("{1,2,3}"), None, Some("{}")]),
            &list_of(DataType::Int32),
        )
        .unwrap();
        let list = list.as_list::<i32>();
        assert_eq!(
            list.value(0).as_primitive::<Int32Type>().iter().collect::<Vec<_>>(),
            [Some(1), Some(2), Some(3)]
        );
        assert!(list.is_null(1));
        assert_eq!(list.value(2).len(), 0);
        let refused = decode(&StringArray::from(vec![Some("{1,NULL}")]), &list_of(DataType::Int32)).unwrap_err();
        assert!(refused.contains("NULL element"), "{refused}");
    }

    /// An array literal as PostgreSQL writes it.
    fn literal(elements: &[Option<String>]) -> String {
        let quoted: Vec<String> = elements
            .iter()
            .map(|e| match e {
                None => "NULL".to_owned(),
                Some(e) => format!("\"{}\"", e.replace('\\', "\\\\").replace('"', "\\\"")),
            })
            .collect();
        format!("{{{}}}", quoted.join(","))
    }

    proptest! {
        #[test]
        fn array_literals_round_trip(elements in prop::collection::vec(prop::option::of("\\PC{0,12}"), 0..12)) {
            prop_assert_eq!(array_elements(&literal(&elements)).unwrap(), elements);
        }

        #[test]
        fn integers_round_trip(values in prop::collection::vec(prop::option::of(any::<i64>()), 0..20)) {
            let text: StringArray = values.iter().map(|v| v.map(|v| v.to_string())).collect();
            let decoded = decode(&text, &DataType::Int64).unwrap();
            prop_assert_eq!(decoded.as_primitive::<Int64Type>().iter().collect::<Vec<_>>(), values);
        }

        #[test]
        fn floats_round_trip_exactly(values in prop::collection::vec(any::<f64>().prop_filter("not NaN", |v| !v.is_nan()), 0..20)) {
            // extra_float_digits = 3 prints the shortest exact form, as Rust does.
            let text: StringArray = values.iter().map(|v| Some(v.to_string())).collect();
            let decoded = decode(&text, &DataType::Float64).unwrap();
            prop_assert_eq!(decoded.as_primitive::<datafusion::arrow::datatypes::Float64Type>().values().to_vec(), values);
        }
    }
}
