//! CQL values, as the driver decodes them, in the shared document model:
//! one rule per CQL type (the table in `docs/sources/cassandra.md`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use scylla::value::{CqlValue, Row};

use crate::connectors::documents::{Document, Value};

/// `CqlDate`'s day number of 1970-01-01.
const EPOCH_DAY: i64 = 1 << 31;
/// Days from 0001-01-01 (day 1 of chrono's count) to 1970-01-01.
const EPOCH_FROM_CE: i64 = 719_163;

/// One CQL value as a document value:
///
/// - ascii, text, varchar -> string; uuid, timeuuid -> hyphenated text; inet -> its text;
/// - tinyint, smallint, int, bigint, counter -> int; float, double -> float; boolean -> bool;
/// - timestamp -> timestamp (milliseconds, UTC); blob -> bytes;
/// - varint, decimal -> exact decimal text; date -> `YYYY-MM-DD`; time -> `HH:MM:SS.nnnnnnnnn`;
/// - duration -> object `{months, days, nanoseconds}`;
/// - list, set, vector, tuple -> array; map -> object (keys as text); user-defined type -> object;
/// - the legacy empty value -> null.
pub(super) fn value(cql: &CqlValue) -> Value {
    match cql {
        CqlValue::Ascii(s) | CqlValue::Text(s) => Value::String(s.clone()),
        CqlValue::Boolean(b) => Value::Bool(*b),
        CqlValue::Blob(b) => Value::Bytes(b.clone()),
        CqlValue::Counter(c) => Value::Int(c.0),
        CqlValue::Decimal(d) => {
            let (digits, scale) = d.as_signed_be_bytes_slice_and_exponent();
            Value::String(decimal_text(&varint_text(digits), scale))
        }
        CqlValue::Date(d) => date(i64::from(d.0) - EPOCH_DAY),
        CqlValue::Double(f) => Value::Float(*f),
        CqlValue::Float(f) => Value::Float(f64::from(*f)),
        CqlValue::Duration(d) => Value::Object(BTreeMap::from([
            ("months".to_owned(), Value::Int(i64::from(d.months))),
            ("days".to_owned(), Value::Int(i64::from(d.days))),
            ("nanoseconds".to_owned(), Value::Int(d.nanoseconds)),
        ])),
        CqlValue::Empty => Value::Null,
        CqlValue::Int(i) => Value::Int(i64::from(*i)),
        CqlValue::BigInt(i) => Value::Int(*i),
        CqlValue::SmallInt(i) => Value::Int(i64::from(*i)),
        CqlValue::TinyInt(i) => Value::Int(i64::from(*i)),
        // Outside the microsecond range the millisecond count stays text,
        // which does not fit a TIMESTAMP column: `on_type_mismatch` decides.
        CqlValue::Timestamp(t) => {
            t.0.checked_mul(1_000)
                .map_or_else(|| Value::String(t.0.to_string()), Value::Timestamp)
        }
        CqlValue::Time(t) => Value::String(time_text(t.0)),
        CqlValue::Inet(ip) => Value::String(ip.to_string()),
        CqlValue::Uuid(u) => Value::String(u.hyphenated().to_string()),
        CqlValue::Timeuuid(u) => Value::String(u.to_string()),
        CqlValue::Varint(v) => Value::String(varint_text(v.as_signed_bytes_be_slice())),
        CqlValue::List(items) | CqlValue::Set(items) | CqlValue::Vector(items) => {
            Value::Array(items.iter().map(value).collect())
        }
        CqlValue::Tuple(items) => Value::Array(items.iter().map(optional).collect()),
        CqlValue::Map(pairs) => Value::Object(pairs.iter().map(|(k, v)| (key_text(k), value(v))).collect()),
        CqlValue::UserDefinedType { fields, .. } => {
            Value::Object(fields.iter().map(|(name, v)| (name.clone(), optional(v))).collect())
        }
        // A kind a later driver adds: its debug text, which fits no typed
        // column, so `on_type_mismatch` decides.
        other => Value::String(format!("{other:?}")),
    }
}

fn optional(cql: &Option<CqlValue>) -> Value {
    cql.as_ref().map_or(Value::Null, value)
}

/// A map key as an object key: text as it is, anything else as its JSON.
fn key_text(key: &CqlValue) -> String {
    match value(key) {
        Value::String(s) => s,
        other => other.to_json().to_string(),
    }
}

/// A day number (days since 1970-01-01) as `YYYY-MM-DD`; the number itself
/// when chrono cannot represent the date (beyond year 262143).
fn date(days: i64) -> Value {
    i32::try_from(days + EPOCH_FROM_CE)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .map_or(Value::Int(days), |d| Value::String(d.format("%Y-%m-%d").to_string()))
}

/// Nanoseconds since midnight as `HH:MM:SS.nnnnnnnnn`.
fn time_text(nanos: i64) -> String {
    let (secs, frac) = (nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000));
    format!("{:02}:{:02}:{:02}.{frac:09}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A two's complement big-endian integer of any length as decimal text.
fn varint_text(bytes: &[u8]) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = if negative {
        let mut v: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for b in v.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
        v
    } else {
        bytes.to_vec()
    };
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut rest = 0u32;
        for b in &mut magnitude {
            let current = (rest << 8) | u32::from(*b);
            *b = (current / 10) as u8;
            rest = current % 10;
        }
        digits.push(char::from(b'0' + rest as u8));
    }
    if digits.is_empty() {
        digits.push('0');
    }
    if negative {
        digits.push('-');
    }
    digits.iter().rev().collect()
}

/// An unscaled integer's text times 10^-scale, written exactly.
fn decimal_text(unscaled: &str, scale: i32) -> String {
    let (sign, digits) = match unscaled.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", unscaled),
    };
    if scale <= 0 {
        let zeros = if digits == "0" {
            0
        } else {
            scale.unsigned_abs() as usize
        };
        return format!("{sign}{digits}{}", "0".repeat(zeros));
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// One row of `columns` (the selected column names, in order); error
/// messages name it by its primary key columns `key`.
pub(super) fn row(row: &Row, columns: &[String], key: &[String]) -> Document {
    let fields: BTreeMap<String, Value> = columns
        .iter()
        .zip(&row.columns)
        .map(|(name, v)| (name.clone(), optional(v)))
        .collect();
    let id = key
        .iter()
        .filter_map(|k| fields.get(k).map(|v| format!("{k}={}", v.excerpt())))
        .collect::<Vec<_>>()
        .join(", ");
    Document::new(format!("row ({id})"), fields)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use scylla::value::{Counter, CqlDate, CqlDecimal, CqlDuration, CqlTime, CqlTimestamp, CqlTimeuuid, CqlVarint};
    use uuid::Uuid;

    use super::*;

    fn s(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    #[test]
    fn every_scalar_type_decodes() {
        assert_eq!(value(&CqlValue::Ascii("a".into())), s("a"));
        assert_eq!(value(&CqlValue::Text("é".into())), s("é"));
        assert_eq!(value(&CqlValue::Boolean(true)), Value::Bool(true));
        assert_eq!(value(&CqlValue::Blob(vec![0, 255])), Value::Bytes(vec![0, 255]));
        assert_eq!(value(&CqlValue::Counter(Counter(-7))), Value::Int(-7));
        assert_eq!(value(&CqlValue::TinyInt(-128)), Value::Int(-128));
        assert_eq!(value(&CqlValue::SmallInt(32767)), Value::Int(32767));
        assert_eq!(value(&CqlValue::Int(i32::MIN)), Value::Int(i64::from(i32::MIN)));
        assert_eq!(value(&CqlValue::BigInt(i64::MAX)), Value::Int(i64::MAX));
        assert_eq!(value(&CqlValue::Float(1.5)), Value::Float(1.5));
        assert_eq!(value(&CqlValue::Double(-0.25)), Value::Float(-0.25));
        assert_eq!(
            value(&CqlValue::Timestamp(CqlTimestamp(1_700_000_000_123))),
            Value::Timestamp(1_700_000_000_123_000)
        );
        assert_eq!(
            value(&CqlValue::Timestamp(CqlTimestamp(i64::MAX))),
            s(&i64::MAX.to_string())
        );
        assert_eq!(value(&CqlValue::Date(CqlDate(1 << 31))), s("1970-01-01"));
        assert_eq!(value(&CqlValue::Date(CqlDate((1 << 31) - 1))), s("1969-12-31"));
        assert_eq!(value(&CqlValue::Date(CqlDate((1 << 31) + 19_723))), s("2024-01-01"));
        assert_eq!(value(&CqlValue::Date(CqlDate(0))), Value::Int(-(1 << 31)));
        assert_eq!(
            value(&CqlValue::Time(CqlTime(
                13 * 3_600_000_000_000 + 5 * 60_000_000_000 + 7_000_000_001
            ))),
            s("13:05:07.000000001")
        );
        assert_eq!(value(&CqlValue::Inet(IpAddr::V6(Ipv6Addr::LOCALHOST))), s("::1"));
        let u = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(value(&CqlValue::Uuid(u)), s("01234567-89ab-cdef-0123-456789abcdef"));
        assert_eq!(
            value(&CqlValue::Timeuuid(CqlTimeuuid::from(u))),
            s("01234567-89ab-cdef-0123-456789abcdef")
        );
        assert_eq!(value(&CqlValue::Empty), Value::Null);
        assert_eq!(
            value(&CqlValue::Duration(CqlDuration {
                months: 1,
                days: -2,
                nanoseconds: 3
            }))
            .to_json()
            .to_string(),
            r#"{"days":-2,"months":1,"nanoseconds":3}"#
        );
    }

    #[test]
    fn big_numbers_are_exact_text() {
        let varint = |bytes: &[u8]| value(&CqlValue::Varint(CqlVarint::from_signed_bytes_be_slice(bytes)));
        assert_eq!(varint(&[]), s("0"));
        assert_eq!(varint(&[0x00]), s("0"));
        assert_eq!(varint(&[0x80]), s("-128"));
        assert_eq!(varint(&[0xff]), s("-1"));
        assert_eq!(varint(&[0x00, 0xff]), s("255"));
        // 2^64 and -(2^64): beyond every fixed-width integer.
        assert_eq!(varint(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0]), s("18446744073709551616"));
        assert_eq!(varint(&[0xff, 0, 0, 0, 0, 0, 0, 0, 0]), s("-18446744073709551616"));
        let decimal = |bytes: &[u8], scale| {
            value(&CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_slice_and_exponent(
                bytes, scale,
            )))
        };
        assert_eq!(decimal(&[0x30, 0x39], 2), s("123.45"));
        assert_eq!(decimal(&[0xcf, 0xc7], 2), s("-123.45"));
        assert_eq!(decimal(&[0x05], 3), s("0.005"));
        assert_eq!(decimal(&[0xfb], 3), s("-0.005"));
        assert_eq!(decimal(&[0x05], -2), s("500"));
        assert_eq!(decimal(&[0x00], -2), s("0"));
        assert_eq!(decimal(&[0x07], 0), s("7"));
    }

    #[test]
    fn collections_and_structures_are_arrays_and_objects() {
        let list = CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(2)]);
        assert_eq!(value(&list).to_json().to_string(), "[1,2]");
        let set = CqlValue::Set(vec![CqlValue::Text("a".into())]);
        assert_eq!(value(&set).to_json().to_string(), r#"["a"]"#);
        let vector = CqlValue::Vector(vec![CqlValue::Float(0.5)]);
        assert_eq!(value(&vector).to_json().to_string(), "[0.5]");
        let tuple = CqlValue::Tuple(vec![Some(CqlValue::Int(1)), None]);
        assert_eq!(value(&tuple).to_json().to_string(), "[1,null]");
        let map = CqlValue::Map(vec![
            (CqlValue::Int(2), CqlValue::Text("b".into())),
            (CqlValue::Int(1), CqlValue::Text("a".into())),
        ]);
        assert_eq!(value(&map).to_json().to_string(), r#"{"1":"a","2":"b"}"#);
        let udt = CqlValue::UserDefinedType {
            keyspace: "shop".into(),
            name: "address".into(),
            fields: vec![
                ("city".into(), Some(CqlValue::Text("Oslo".into()))),
                ("zip".into(), None),
            ],
        };
        assert_eq!(value(&udt).to_json().to_string(), r#"{"city":"Oslo","zip":null}"#);
    }

    #[test]
    fn rows_are_named_by_their_key() {
        let r = Row {
            columns: vec![Some(CqlValue::Int(7)), None],
        };
        let doc = row(&r, &["id".to_owned(), "name".to_owned()], &["id".to_owned()]);
        assert_eq!(doc.id, "row (id=7)");
        assert_eq!(doc.fields["name"], Value::Null);
    }
}
