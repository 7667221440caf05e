//! Firestore's typed JSON values (the REST form of `google.firestore.v1.Value`)
//! to and from the shared document model: timestamps stay timestamps,
//! integers (sent as text) integers, bytes bytes; a geopoint becomes the
//! object `{"latitude", "longitude"}` and a reference its document path
//! (`users/alice`), as `docs/sources/documents.md` lists.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::DateTime;
use serde_json::{Value as Json, json};

use crate::connectors::documents::{Value, timestamp_text};

/// One Firestore value; an error names what could not be read.
pub(super) fn decode(value: &Json) -> Result<Value, String> {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return Err(format!(
            "not a Firestore value: {}",
            crate::contract::excerpt(&value.to_string())
        ));
    };
    Ok(match kind.as_str() {
        "nullValue" => Value::Null,
        "booleanValue" => Value::Bool(inner.as_bool().unwrap_or_default()),
        "integerValue" => Value::Int(
            inner
                .as_str()
                .and_then(|t| t.parse().ok())
                .or_else(|| inner.as_i64())
                .ok_or_else(|| format!("integerValue {inner} is not a 64-bit integer"))?,
        ),
        "doubleValue" => Value::Float(match inner {
            Json::String(s) if s == "NaN" => f64::NAN,
            Json::String(s) if s == "Infinity" => f64::INFINITY,
            Json::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
            other => other
                .as_f64()
                .ok_or_else(|| format!("doubleValue {other} is not a number"))?,
        }),
        "timestampValue" => {
            let text = inner.as_str().unwrap_or_default();
            Value::Timestamp(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|e| format!("timestampValue '{text}': {e}"))?
                    .timestamp_micros(),
            )
        }
        "stringValue" => Value::String(inner.as_str().unwrap_or_default().to_owned()),
        "bytesValue" => Value::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(inner.as_str().unwrap_or_default())
                .map_err(|e| format!("bytesValue is not base64: {e}"))?,
        ),
        "referenceValue" => Value::String(relative_path(inner.as_str().unwrap_or_default()).to_owned()),
        "geoPointValue" => Value::Object(BTreeMap::from([
            (
                "latitude".to_owned(),
                Value::Float(inner["latitude"].as_f64().unwrap_or(0.0)),
            ),
            (
                "longitude".to_owned(),
                Value::Float(inner["longitude"].as_f64().unwrap_or(0.0)),
            ),
        ])),
        "arrayValue" => Value::Array(
            inner["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(decode)
                .collect::<Result<_, _>>()?,
        ),
        "mapValue" => Value::Object(fields(&inner["fields"])?),
        other => return Err(format!("unknown Firestore value type {other}")),
    })
}

/// A document's (or map's) `fields` object.
pub(super) fn fields(fields: &Json) -> Result<BTreeMap<String, Value>, String> {
    fields
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| Ok((name.clone(), decode(value).map_err(|e| format!("field {name}: {e}"))?)))
        .collect()
}

/// A document name without its `projects/p/databases/d/documents/` prefix.
pub(super) fn relative_path(name: &str) -> &str {
    name.split_once("/documents/").map_or(name, |(_, path)| path)
}

/// A constant of a pushed-down bound as a Firestore value; `None` for a
/// kind Firestore compares differently from Sluice.
pub(super) fn encode(value: &Value) -> Option<Json> {
    Some(match value {
        Value::Bool(b) => json!({"booleanValue": b}),
        Value::Int(i) => json!({"integerValue": i.to_string()}),
        Value::Float(f) if f.is_finite() => json!({"doubleValue": f}),
        Value::String(s) => json!({"stringValue": s}),
        Value::Timestamp(micros) => json!({"timestampValue": timestamp_text(*micros)}),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_firestore_type_decodes_predictably() {
        let document = json!({
            "n": {"nullValue": null},
            "b": {"booleanValue": true},
            "i": {"integerValue": "-9223372036854775808"},
            "d": {"doubleValue": "NaN"},
            "t": {"timestampValue": "2024-01-01T00:00:00.123456Z"},
            "s": {"stringValue": "x"},
            "y": {"bytesValue": "AP8="},
            "r": {"referenceValue": "projects/p/databases/(default)/documents/users/b"},
            "g": {"geoPointValue": {"latitude": 1.5, "longitude": -2.0}},
            "a": {"arrayValue": {"values": [{"integerValue": "1"}, {"nullValue": null}]}},
            "e": {"arrayValue": {}},
            "m": {"mapValue": {"fields": {"x": {"stringValue": "y"}}}},
        });
        let decoded = fields(&document).unwrap();
        assert_eq!(decoded["n"], Value::Null);
        assert_eq!(decoded["b"], Value::Bool(true));
        assert_eq!(decoded["i"], Value::Int(i64::MIN));
        assert!(matches!(decoded["d"], Value::Float(f) if f.is_nan()));
        assert_eq!(decoded["t"], Value::Timestamp(1_704_067_200_123_456));
        assert_eq!(decoded["s"], Value::String("x".into()));
        assert_eq!(decoded["y"], Value::Bytes(vec![0, 255]));
        assert_eq!(decoded["r"], Value::String("users/b".into()));
        assert_eq!(
            decoded["g"].to_json().to_string(),
            r#"{"latitude":1.5,"longitude":-2.0}"#
        );
        assert_eq!(decoded["a"], Value::Array(vec![Value::Int(1), Value::Null]));
        assert_eq!(decoded["e"], Value::Array(vec![]));
        assert_eq!(decoded["m"].to_json().to_string(), r#"{"x":"y"}"#);
        let bad = fields(&json!({"i": {"integerValue": "1.5"}})).unwrap_err();
        assert!(bad.contains("field i") && bad.contains("integerValue"), "{bad}");
    }

    #[test]
    fn bounds_encode_as_the_same_firestore_type() {
        assert_eq!(
            encode(&Value::Timestamp(1_704_067_200_000_001)),
            Some(json!({"timestampValue": "2024-01-01T00:00:00.000001Z"}))
        );
        assert_eq!(encode(&Value::Int(5)), Some(json!({"integerValue": "5"})));
        assert_eq!(encode(&Value::Float(f64::NAN)), None);
        assert_eq!(encode(&Value::Null), None);
    }
}
