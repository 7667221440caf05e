//! Redis value types as rows: hashes are rows of their fields, strings a
//! `value` (parsed when JSON), lists, sets and sorted sets one row per
//! element.

use std::collections::BTreeMap;

use redis::Value as Reply;

use crate::connectors::documents::{ColumnSpec, Document, KeyField, Shape, Target, Value};

/// The key column of every Redis table.
pub(super) const KEY: &str = "_key";

/// The Redis types a table can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    Hash,
    String,
    List,
    Set,
    SortedSet,
}

impl KeyKind {
    /// Most likely first: the kind of a table whose sample has no key.
    pub(super) const ALL: [KeyKind; 5] = [
        KeyKind::Hash,
        KeyKind::String,
        KeyKind::SortedSet,
        KeyKind::List,
        KeyKind::Set,
    ];

    /// The kind `TYPE` answers with `name`.
    pub(super) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "hash" => KeyKind::Hash,
            "string" => KeyKind::String,
            "list" => KeyKind::List,
            "set" => KeyKind::Set,
            "zset" => KeyKind::SortedSet,
            _ => return None,
        })
    }

    /// How DESCRIBE names a table of this kind ("redis key of hashes").
    pub(super) fn plural(self) -> &'static str {
        match self {
            KeyKind::Hash => "hashes",
            KeyKind::String => "strings",
            KeyKind::List => "lists",
            KeyKind::Set => "sets",
            KeyKind::SortedSet => "sorted sets",
        }
    }

    /// The `detail` of the key column, from which [`KeyKind::of_detail`]
    /// reads the kind back.
    fn detail(self) -> String {
        format!("redis key of {}", self.plural())
    }

    /// The kind a key column's `source_type` names.
    pub(super) fn of_source_type(source_type: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| source_type.ends_with(&format!("({})", k.detail())))
    }

    /// Key columns, and whether values are text to parse.
    pub(super) fn shape(self, warnings: Vec<String>) -> Shape {
        let key = |name: &str, target, detail: String, nullable| KeyField {
            name: name.to_owned(),
            spec: ColumnSpec::new(target),
            detail,
            nullable,
        };
        let mut keys = vec![key(KEY, Target::String, self.detail(), false)];
        match self {
            KeyKind::Hash | KeyKind::String => {}
            KeyKind::List => keys.push(key("position", Target::Int, "list index".into(), true)),
            KeyKind::Set | KeyKind::SortedSet => keys.push(key("member", Target::String, "member".into(), true)),
        }
        Shape {
            key: keys,
            text_scalars: true,
            warnings,
        }
    }

    /// The command reading a whole key of this kind.
    pub(super) fn read(self, pipe: &mut redis::Pipeline, key: &[u8]) {
        match self {
            KeyKind::Hash => pipe.cmd("HGETALL").arg(key),
            KeyKind::String => pipe.cmd("GET").arg(key),
            KeyKind::List => pipe.cmd("LRANGE").arg(key).arg(0).arg(-1),
            KeyKind::Set => pipe.cmd("SMEMBERS").arg(key),
            KeyKind::SortedSet => pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"),
        };
    }

    /// The rows of one key of this kind from the reply of [`KeyKind::read`];
    /// `None` when the key vanished.
    pub(super) fn documents(self, key: &[u8], reply: Reply) -> Result<Option<Vec<Document>>, String> {
        let name = text(key);
        let with_key = |extra: Vec<(&str, Value)>| {
            let mut fields = BTreeMap::from([(KEY.to_owned(), text_value(key))]);
            fields.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
            fields
        };
        Ok(Some(match self {
            KeyKind::Hash => {
                let pairs = pairs(reply)?;
                if pairs.is_empty() {
                    return Ok(None);
                }
                let mut fields = with_key(vec![]);
                for (field, value) in pairs {
                    fields.insert(text(&bytes(field)?), text_value(&bytes(value)?));
                }
                vec![Document::new(name, fields)]
            }
            KeyKind::String => match reply {
                Reply::Nil => return Ok(None),
                reply => {
                    let raw = bytes(reply)?;
                    let value = match std::str::from_utf8(&raw) {
                        Ok(s) => Value::from_text(s),
                        Err(_) => Value::Bytes(raw),
                    };
                    vec![Document::new(name, with_key(vec![("value", value)]))]
                }
            },
            KeyKind::List => items(reply)?
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let fields = with_key(vec![
                        ("position", Value::Int(i as i64)),
                        ("member", text_value(&bytes(item)?)),
                    ]);
                    Ok(Document::new(format!("{name}[{i}]"), fields))
                })
                .collect::<Result<_, String>>()?,
            KeyKind::Set => items(reply)?
                .into_iter()
                .map(|item| {
                    let member = text_value(&bytes(item)?);
                    Ok(Document::new(
                        format!("{name} {}", member.excerpt()),
                        with_key(vec![("member", member)]),
                    ))
                })
                .collect::<Result<_, String>>()?,
            KeyKind::SortedSet => pairs(reply)?
                .into_iter()
                .map(|(member, score)| {
                    let member = text_value(&bytes(member)?);
                    let score = score_value(score)?;
                    Ok(Document::new(
                        format!("{name} {}", member.excerpt()),
                        with_key(vec![("member", member), ("score", score)]),
                    ))
                })
                .collect::<Result<_, String>>()?,
        }))
    }

    /// One row for a key of this kind in a table of another kind: its
    /// whole value in a `value` field, which only `_document` keeps.
    pub(super) fn foreign(self, key: &[u8], reply: Reply, table: KeyKind) -> Result<Option<Document>, String> {
        let Some(rows) = self.documents(key, reply)? else {
            return Ok(None);
        };
        let content = match self {
            KeyKind::String => rows.into_iter().next().and_then(|mut d| d.fields.remove("value")),
            KeyKind::Hash => rows.into_iter().next().map(|mut d| {
                d.fields.remove(KEY);
                Value::Object(d.fields)
            }),
            _ => Some(Value::Array(
                rows.into_iter()
                    .map(|mut d| {
                        d.fields.remove(KEY);
                        Value::Object(d.fields)
                    })
                    .collect(),
            )),
        };
        let mut doc = Document::new(
            text(key),
            BTreeMap::from([
                (KEY.to_owned(), text_value(key)),
                ("value".to_owned(), content.unwrap_or(Value::Null)),
            ]),
        );
        doc.foreign = Some(format!(
            "the key is a {}, table holds {}",
            self.type_name(),
            table.plural()
        ));
        Ok(Some(doc))
    }

    fn type_name(self) -> &'static str {
        match self {
            KeyKind::Hash => "hash",
            KeyKind::String => "string",
            KeyKind::List => "list",
            KeyKind::Set => "set",
            KeyKind::SortedSet => "sorted set",
        }
    }
}

/// Text for messages and ids (invalid UTF-8 replaced).
pub(super) fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Redis text as a string value, or bytes when it is not UTF-8.
fn text_value(raw: &[u8]) -> Value {
    match std::str::from_utf8(raw) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => Value::Bytes(raw.to_vec()),
    }
}

fn bytes(reply: Reply) -> Result<Vec<u8>, String> {
    match reply {
        Reply::BulkString(b) => Ok(b),
        Reply::SimpleString(s) => Ok(s.into_bytes()),
        Reply::Int(i) => Ok(i.to_string().into_bytes()),
        Reply::Double(f) => Ok(f.to_string().into_bytes()),
        Reply::VerbatimString { text, .. } => Ok(text.into_bytes()),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

fn score_value(reply: Reply) -> Result<Value, String> {
    if let Reply::Double(f) = reply {
        return Ok(Value::Float(f));
    }
    let raw = text(&bytes(reply)?);
    match raw.as_str() {
        "inf" | "+inf" => Ok(Value::Float(f64::INFINITY)),
        "-inf" => Ok(Value::Float(f64::NEG_INFINITY)),
        _ => raw
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("score {raw} is not a number")),
    }
}

fn items(reply: Reply) -> Result<Vec<Reply>, String> {
    match reply {
        Reply::Array(items) | Reply::Set(items) => Ok(items),
        Reply::Nil => Ok(vec![]),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// A map reply (RESP3) or a flat array of pairs (RESP2).
fn pairs(reply: Reply) -> Result<Vec<(Reply, Reply)>, String> {
    match reply {
        Reply::Map(pairs) => Ok(pairs),
        reply => {
            let mut flat = items(reply)?.into_iter();
            let mut pairs = Vec::new();
            while let Some(first) = flat.next() {
                let second = flat.next().ok_or("a reply of pairs has an odd length")?;
                pairs.push((first, second));
            }
            Ok(pairs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn every_kind_reads_as_rows() {
        let hash = KeyKind::Hash
            .documents(
                b"user:1",
                Reply::Array(vec![bulk("name"), bulk("Ann"), bulk("age"), bulk("41")]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            hash[0].to_json().to_string(),
            r#"{"_key":"user:1","age":"41","name":"Ann"}"#
        );
        let json = KeyKind::String
            .documents(b"s", bulk(r#"{"a":[1,2]}"#))
            .unwrap()
            .unwrap();
        assert_eq!(json[0].to_json().to_string(), r#"{"_key":"s","value":{"a":[1,2]}}"#);
        let list = KeyKind::List
            .documents(b"l", Reply::Array(vec![bulk("x"), bulk("y")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            list[1].to_json().to_string(),
            r#"{"_key":"l","member":"y","position":1}"#
        );
        assert_eq!(list[1].id, "l[1]");
        let zset = KeyKind::SortedSet
            .documents(b"z", Reply::Array(vec![bulk("a"), bulk("1.5"), bulk("b"), bulk("inf")]))
            .unwrap()
            .unwrap();
        assert_eq!(zset[1].fields["score"], Value::Float(f64::INFINITY));
        assert_eq!(KeyKind::Hash.documents(b"gone", Reply::Array(vec![])).unwrap(), None);
        assert_eq!(KeyKind::String.documents(b"gone", Reply::Nil).unwrap(), None);
    }

    #[test]
    fn a_key_of_another_kind_is_one_foreign_row() {
        let doc = KeyKind::List
            .foreign(b"cart:9", Reply::Array(vec![bulk("x")]), KeyKind::Hash)
            .unwrap()
            .unwrap();
        assert_eq!(doc.foreign.as_deref(), Some("the key is a list, table holds hashes"));
        assert_eq!(
            doc.to_json().to_string(),
            r#"{"_key":"cart:9","value":[{"member":"x","position":0}]}"#
        );
    }

    #[test]
    fn the_key_column_names_the_kind() {
        for kind in KeyKind::ALL {
            let shape = kind.shape(vec![]);
            let source_type = shape.key[0].spec.source_type(Some(&shape.key[0].detail));
            assert_eq!(KeyKind::of_source_type(&source_type), Some(kind), "{source_type}");
        }
    }
}
