//! The neutral value model every document store's values are decoded into,
//! and its JSON form (what `JSON` columns and `_document` hold).

use std::collections::BTreeMap;

use base64::Engine;
use chrono::DateTime;
use serde_json::Value as Json;

/// One value of a document, whatever the store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Bytes(Vec<u8>),
    /// An instant, in microseconds since 1970-01-01 UTC.
    Timestamp(i64),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

/// The kind of a [`Value`], as DESCRIBE names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Bool,
    Int,
    Float,
    String,
    Bytes,
    Timestamp,
    Array,
    Object,
}

impl Kind {
    /// The name DESCRIBE and error messages use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Int => "int64",
            Kind::Float => "float64",
            Kind::String => "string",
            Kind::Bytes => "bytes",
            Kind::Timestamp => "timestamp",
            Kind::Array => "array",
            Kind::Object => "object",
        }
    }
}

impl Value {
    /// The value's kind; `None` for null.
    pub(crate) fn kind(&self) -> Option<Kind> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => Kind::Bool,
            Value::Int(_) => Kind::Int,
            Value::Float(_) => Kind::Float,
            Value::String(_) => Kind::String,
            Value::Bytes(_) => Kind::Bytes,
            Value::Timestamp(_) => Kind::Timestamp,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        })
    }

    /// A JSON value: integers that fit 64 bits stay integers, other numbers
    /// are floats when the float reads back as the same number and text
    /// otherwise (a number is never rounded).
    pub(crate) fn from_json(json: Json) -> Value {
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    let f = u as f64;
                    if f as u64 == u && f < u64::MAX as f64 {
                        Value::Float(f)
                    } else {
                        Value::String(u.to_string())
                    }
                } else {
                    n.as_f64().map_or_else(|| Value::String(n.to_string()), Value::Float)
                }
            }
            Json::String(s) => Value::String(s),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from_json).collect()),
            Json::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, Value::from_json(v))).collect()),
        }
    }

    /// Text that is a JSON document read as one (`'{"a": 1}'`, `'42'`,
    /// `'true'`), any other text as a string.
    pub(crate) fn from_text(text: &str) -> Value {
        match serde_json::from_str::<Json>(text) {
            Ok(json) => Value::from_json(json),
            Err(_) => Value::String(text.to_owned()),
        }
    }

    /// The value as JSON: bytes as base64 text, timestamps as RFC 3339 text
    /// in UTC, non-finite floats as the text `NaN`, `Infinity`, `-Infinity`.
    pub(crate) fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => Json::Number(n),
                None if f.is_nan() => Json::String("NaN".into()),
                None if *f > 0.0 => Json::String("Infinity".into()),
                None => Json::String("-Infinity".into()),
            },
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Timestamp(micros) => Json::String(timestamp_text(*micros)),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Object(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// A short text of the value for error messages.
    pub(crate) fn excerpt(&self) -> String {
        crate::contract::excerpt(&self.to_json().to_string())
    }
}

/// RFC 3339 text of a microsecond instant (UTC); the raw number when it is
/// outside chrono's range.
pub(crate) fn timestamp_text(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => micros.to_string(),
    }
}

/// One document (or key, item, row of a list) of a store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    /// How error messages name the document: its key.
    pub(crate) id: String,
    /// Its top-level fields, the key fields included.
    pub(crate) fields: BTreeMap<String, Value>,
    /// Why the document does not have the table's shape (a Redis list in a
    /// table of hashes): only its key fields are read into columns, the
    /// rest follows `on_type_mismatch`.
    pub(crate) foreign: Option<String>,
}

impl Document {
    /// A document with these fields.
    pub(crate) fn new(id: impl Into<String>, fields: BTreeMap<String, Value>) -> Self {
        Self {
            id: id.into(),
            fields,
            foreign: None,
        }
    }

    /// The whole document as one JSON object.
    pub(crate) fn to_json(&self) -> Json {
        Json::Object(self.fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_are_never_rounded() {
        assert_eq!(Value::from_text("42"), Value::Int(42));
        assert_eq!(Value::from_text("1.5"), Value::Float(1.5));
        assert_eq!(
            Value::from_text("18446744073709551615"),
            Value::String("18446744073709551615".into())
        );
        assert_eq!(
            Value::from_text("9223372036854775808"),
            Value::Float(9_223_372_036_854_775_808.0)
        );
        assert_eq!(Value::from_text("hello"), Value::String("hello".into()));
        assert_eq!(Value::from_text("007"), Value::String("007".into()));
    }

    #[test]
    fn json_form_of_every_kind() {
        let doc = Value::Object(BTreeMap::from([
            ("b".into(), Value::Bytes(vec![0, 255])),
            ("t".into(), Value::Timestamp(1_700_000_000_000_001)),
            ("n".into(), Value::Float(f64::NEG_INFINITY)),
            (
                "a".into(),
                Value::Array(vec![Value::Null, Value::Bool(true), Value::Int(-1)]),
            ),
        ]));
        assert_eq!(
            doc.to_json().to_string(),
            r#"{"a":[null,true,-1],"b":"AP8=","n":"-Infinity","t":"2023-11-14T22:13:20.000001Z"}"#
        );
    }
}
