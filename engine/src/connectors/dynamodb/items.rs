//! DynamoDB attribute values (`{"S": "x"}`, `{"N": "1.5"}`, `{"M": {...}}`,
//! ...) into the document model.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value as Json;

use crate::connectors::documents::{Document, Value};

/// One attribute value; `Err` names what is malformed.
pub(super) fn value(attribute: &Json) -> Result<Value, String> {
    let Some((tag, inner)) = attribute.as_object().and_then(|o| o.iter().next()) else {
        return Err(format!("not an attribute value: {attribute}"));
    };
    let text = || inner.as_str().ok_or_else(|| format!("{tag} is not text: {inner}"));
    let list = || inner.as_array().ok_or_else(|| format!("{tag} is not a list: {inner}"));
    Ok(match tag.as_str() {
        "NULL" => Value::Null,
        "BOOL" => Value::Bool(
            inner
                .as_bool()
                .ok_or_else(|| format!("BOOL is not a boolean: {inner}"))?,
        ),
        "S" => Value::String(text()?.to_owned()),
        "N" => number(text()?),
        "B" => Value::Bytes(bytes(text()?)?),
        "SS" => Value::Array(
            list()?
                .iter()
                .map(|s| Ok(Value::String(string(s)?)))
                .collect::<Result<_, String>>()?,
        ),
        "NS" => Value::Array(
            list()?
                .iter()
                .map(|s| Ok(number(&string(s)?)))
                .collect::<Result<_, String>>()?,
        ),
        "BS" => Value::Array(
            list()?
                .iter()
                .map(|s| Ok(Value::Bytes(bytes(&string(s)?)?)))
                .collect::<Result<_, String>>()?,
        ),
        "L" => Value::Array(list()?.iter().map(value).collect::<Result<_, String>>()?),
        "M" => Value::Object(map(inner)?),
        other => return Err(format!("unknown attribute type {other}")),
    })
}

/// The attributes of an item, by name.
pub(super) fn map(item: &Json) -> Result<BTreeMap<String, Value>, String> {
    let object = item.as_object().ok_or_else(|| format!("not a map: {item}"))?;
    object.iter().map(|(k, v)| Ok((k.clone(), value(v)?))).collect()
}

/// An item as a document named by its key attributes.
pub(super) fn document(item: &Json, key: &[String]) -> Result<Document, String> {
    let fields = map(item)?;
    let id = key
        .iter()
        .map(|k| fields.get(k).map(|v| v.to_json().to_string()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("/");
    Ok(Document::new(id, fields))
}

fn string(json: &Json) -> Result<String, String> {
    json.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("not text: {json}"))
}

fn bytes(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("binary value is not base64: {e}"))
}

/// A DynamoDB number (up to 38 significant digits): an int when it fits 64
/// bits, a float when it has at most 15 significant digits (which a float
/// holds exactly), else its text, so that no number is rounded.
fn number(text: &str) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        return Value::Int(i);
    }
    let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
    let digits = mantissa.trim_start_matches(['-', '+']).replace('.', "");
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && significant <= 15 => Value::Float(f),
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_type() {
        let item: Json = serde_json::json!({
            "id": {"N": "7"},
            "price": {"N": "12.50"},
            "huge": {"N": "12345678901234567890.5"},
            "name": {"S": "Ann"},
            "blob": {"B": "AP8="},
            "ok": {"BOOL": true},
            "none": {"NULL": true},
            "tags": {"SS": ["a", "b"]},
            "nums": {"NS": ["1", "2.5"]},
            "nested": {"M": {"l": {"L": [{"N": "1"}, {"S": "x"}]}}}
        });
        let doc = document(&item, &["id".to_owned()]).unwrap();
        assert_eq!(doc.id, "7");
        assert_eq!(doc.fields["price"], Value::Float(12.5));
        assert_eq!(doc.fields["huge"], Value::String("12345678901234567890.5".into()));
        assert_eq!(doc.fields["blob"], Value::Bytes(vec![0, 255]));
        assert_eq!(doc.fields["none"], Value::Null);
        assert_eq!(doc.to_json()["nested"].to_string(), r#"{"l":[1,"x"]}"#);
        assert_eq!(doc.to_json()["nums"].to_string(), "[1,2.5]");
        assert!(
            value(&serde_json::json!({"X": 1}))
                .unwrap_err()
                .contains("unknown attribute type X")
        );
    }
}
