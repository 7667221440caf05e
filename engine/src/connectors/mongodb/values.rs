//! BSON values decoded into the shared document model, one rule per BSON
//! type (the table in `docs/sources/documents.md`, section MongoDB).

use std::collections::BTreeMap;

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Bson, Document as BsonDocument};

use crate::connectors::documents::{Document, Value};

/// One BSON value as a document value:
///
/// - Double -> float; Int32, Int64 -> int; Boolean -> bool; String, Symbol -> string;
/// - DateTime -> timestamp (milliseconds, UTC);
/// - ObjectId -> its 24 hex digits; Decimal128 -> its exact decimal text;
/// - Binary -> bytes, except UUIDs (subtypes 3 and 4) -> their hyphenated text;
/// - embedded document -> object; array -> array; Null, Undefined -> null;
/// - Timestamp (the replication clock) -> object `{t: seconds, i: increment}`;
/// - everything else (regular expression, JavaScript, MinKey, MaxKey,
///   DBPointer) -> its relaxed Extended JSON.
pub(super) fn value(bson: &Bson) -> Value {
    match bson {
        Bson::Double(f) => Value::Float(*f),
        Bson::Int32(i) => Value::Int(i64::from(*i)),
        Bson::Int64(i) => Value::Int(*i),
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::String(s) | Bson::Symbol(s) => Value::String(s.clone()),
        Bson::DateTime(t) => Value::Timestamp(t.timestamp_millis().saturating_mul(1_000)),
        Bson::ObjectId(id) => Value::String(id.to_hex()),
        Bson::Decimal128(d) => Value::String(d.to_string()),
        Bson::Binary(b) => match b.subtype {
            BinarySubtype::Uuid | BinarySubtype::UuidOld if b.bytes.len() == 16 => Value::String(uuid_text(&b.bytes)),
            _ => Value::Bytes(b.bytes.clone()),
        },
        Bson::Document(d) => Value::Object(fields(d)),
        Bson::Array(items) => Value::Array(items.iter().map(value).collect()),
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Timestamp(ts) => Value::Object(BTreeMap::from([
            ("t".to_owned(), Value::Int(i64::from(ts.time))),
            ("i".to_owned(), Value::Int(i64::from(ts.increment))),
        ])),
        other => Value::from_json(other.clone().into_relaxed_extjson()),
    }
}

/// A document's top-level fields.
fn fields(doc: &BsonDocument) -> BTreeMap<String, Value> {
    doc.iter().map(|(k, v)| (k.clone(), value(v))).collect()
}

/// A collection's document; error messages name it by its `_id`.
pub(super) fn document(doc: &BsonDocument) -> Document {
    let id = match doc.get("_id") {
        Some(Bson::String(s)) => s.clone(),
        Some(id) => value(id).to_json().to_string(),
        None => "(no _id)".to_owned(),
    };
    Document::new(format!("_id {id}"), fields(doc))
}

/// 16 bytes as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
fn uuid_text(bytes: &[u8]) -> String {
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use mongodb::bson::oid::ObjectId;
    use mongodb::bson::{Binary, DateTime, Decimal128, JavaScriptCodeWithScope, Regex, Timestamp, doc, rawdoc};

    use super::*;

    /// Every BSON type, decoded from its wire bytes (as the driver hands
    /// documents over), and the value it becomes.
    #[test]
    fn every_bson_type_decodes_predictably() {
        let id = ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        let decimal: Decimal128 = "12345678901234567890.1234567890".parse().unwrap();
        let raw = rawdoc! {
            "_id": id,
            "double": 1.5,
            "string": "héllo",
            "document": { "x": 1, "y": { "z": "deep" } },
            "array": [1, "a", null],
            "binary": Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 1, 255] },
            "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: (0u8..16).collect() },
            "undefined": mongodb::bson::RawBson::Undefined,
            "bool": true,
            "date": DateTime::from_millis(1_700_000_000_123),
            "null": null,
            "regex": Regex { pattern: "^a".into(), options: "i".into() },
            "js": mongodb::bson::RawBson::JavaScriptCode("f()".into()),
            "symbol": mongodb::bson::RawBson::Symbol("sym".into()),
            "int32": 7i32,
            "timestamp": Timestamp { time: 1_700_000_000, increment: 3 },
            "int64": 1i64 << 40,
            "decimal": decimal,
            "minkey": mongodb::bson::RawBson::MinKey,
            "maxkey": mongodb::bson::RawBson::MaxKey,
        };
        let decoded: BsonDocument = mongodb::bson::from_slice(raw.as_bytes()).unwrap();
        let doc = document(&decoded);
        assert_eq!(doc.id, "_id \"65a1b2c3d4e5f60718293a4b\"");
        let f = |name: &str| doc.fields.get(name).cloned().unwrap();
        assert_eq!(f("_id"), Value::String("65a1b2c3d4e5f60718293a4b".into()));
        assert_eq!(f("double"), Value::Float(1.5));
        assert_eq!(f("string"), Value::String("héllo".into()));
        assert_eq!(f("document").to_json().to_string(), r#"{"x":1,"y":{"z":"deep"}}"#);
        assert_eq!(
            f("array"),
            Value::Array(vec![Value::Int(1), Value::String("a".into()), Value::Null])
        );
        assert_eq!(f("binary"), Value::Bytes(vec![0, 1, 255]));
        assert_eq!(f("uuid"), Value::String("00010203-0405-0607-0809-0a0b0c0d0e0f".into()));
        assert_eq!(f("undefined"), Value::Null);
        assert_eq!(f("bool"), Value::Bool(true));
        assert_eq!(f("date"), Value::Timestamp(1_700_000_000_123_000));
        assert_eq!(f("null"), Value::Null);
        assert_eq!(
            f("regex").to_json().to_string(),
            r#"{"$regularExpression":{"options":"i","pattern":"^a"}}"#
        );
        assert_eq!(f("js").to_json().to_string(), r#"{"$code":"f()"}"#);
        assert_eq!(f("symbol"), Value::String("sym".into()));
        assert_eq!(f("int32"), Value::Int(7));
        assert_eq!(f("timestamp").to_json().to_string(), r#"{"i":3,"t":1700000000}"#);
        assert_eq!(f("int64"), Value::Int(1 << 40));
        assert_eq!(f("decimal"), Value::String("12345678901234567890.1234567890".into()));
        assert_eq!(f("minkey").to_json().to_string(), r#"{"$minKey":1}"#);
        assert_eq!(f("maxkey").to_json().to_string(), r#"{"$maxKey":1}"#);
    }

    #[test]
    fn the_rarer_types_keep_their_extended_json() {
        let scoped = Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
            code: "g(x)".into(),
            scope: doc! { "x": 1 },
        });
        assert_eq!(
            value(&scoped).to_json().to_string(),
            r#"{"$code":"g(x)","$scope":{"x":1}}"#
        );
        let old_uuid = Bson::Binary(Binary {
            subtype: BinarySubtype::UuidOld,
            bytes: vec![0xab; 16],
        });
        assert_eq!(
            value(&old_uuid),
            Value::String("abababab-abab-abab-abab-abababababab".into())
        );
        let short_uuid = Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: vec![1, 2],
        });
        assert_eq!(value(&short_uuid), Value::Bytes(vec![1, 2]));
        assert_eq!(value(&Bson::Double(f64::NAN)).to_json().to_string(), r#""NaN""#);
        let negative = "-0.000001".parse::<Decimal128>().unwrap();
        assert_eq!(value(&Bson::Decimal128(negative)), Value::String("-0.000001".into()));
        assert_eq!(document(&doc! {"a": 1}).id, "_id (no _id)");
        assert_eq!(document(&doc! {"_id": "k1"}).id, "_id k1");
        assert_eq!(document(&doc! {"_id": 5}).id, "_id 5");
    }
}
