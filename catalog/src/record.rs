//! Versioned serialisation of catalog records.
//!
//! Every value is stored as JSON `{"v": <version>, "data": {...}}`. Reading a
//! record written by an older Sluice goes through [`Record::migrate`]; a record
//! from a newer Sluice is refused rather than misread.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::error::{CatalogError, Result};

/// A record type stored in one column family.
pub trait Record: Serialize + DeserializeOwned {
    /// The column family holding records of this type.
    const FAMILY: &'static str;
    /// The current on-disk version of this record type.
    const VERSION: u32;

    /// Upgrades the `data` of an older version to the current shape.
    fn migrate(version: u32, data: Value) -> std::result::Result<Value, String> {
        let _ = data;
        Err(format!(
            "no migration from record version {version} to {}",
            Self::VERSION
        ))
    }

    /// The record's key in its column family.
    fn key(&self) -> String;
}

/// Encodes a record with its version tag: `{"v": <version>, "data": {...}}`.
pub fn encode<R: Record>(record: &R) -> Vec<u8> {
    #[derive(Serialize)]
    struct Tagged<'a, R> {
        v: u32,
        data: &'a R,
    }
    serde_json::to_vec(&Tagged {
        v: R::VERSION,
        data: record,
    })
    .expect("catalog records always serialise")
}

/// What decoding the envelope found.
enum Decoded<R> {
    /// A record of the current version, parsed straight into its type.
    Current(R),
    /// A record of another version, or whose tag came after its data.
    Tagged { version: u32, data: Value },
}

/// Decodes a record, migrating older versions. A record of the current
/// version whose tag comes first (as [`encode`] writes it) is parsed
/// straight into its type, with no JSON tree between.
pub fn decode<R: Record>(key: &[u8], bytes: &[u8]) -> Result<R> {
    let corrupt = |reason: String| CatalogError::Corrupt {
        family: R::FAMILY,
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let decoded = reader
        .deserialize_map(EnvelopeVisitor::<R>(PhantomData))
        .and_then(|decoded| reader.end().map(|()| decoded))
        .map_err(|e| corrupt(e.to_string()))?;
    let (version, data) = match decoded {
        Decoded::Current(record) => return Ok(record),
        Decoded::Tagged { version, data } => (version, data),
    };
    let data = match version {
        v if v == R::VERSION => data,
        v if v > R::VERSION => {
            return Err(corrupt(format!(
                "written by a newer Sluice (record version {v}, this build reads up to {})",
                R::VERSION
            )));
        }
        v => R::migrate(v, data).map_err(corrupt)?,
    };
    serde_json::from_value(data).map_err(|e| corrupt(e.to_string()))
}

/// Reads `{"v": ..., "data": ...}`, parsing `data` as `R` when the version
/// read before it is the current one.
struct EnvelopeVisitor<R>(PhantomData<R>);

impl<'de, R: Record> Visitor<'de> for EnvelopeVisitor<R> {
    type Value = Decoded<R>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a versioned catalog record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Decoded<R>, A::Error> {
        let mut version: Option<u32> = None;
        let mut decoded = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "v" => version = Some(map.next_value()?),
                "data" if version == Some(R::VERSION) => decoded = Some(Decoded::Current(map.next_value()?)),
                "data" => {
                    decoded = Some(Decoded::Tagged {
                        version: 0,
                        data: map.next_value()?,
                    })
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let version = version.ok_or_else(|| A::Error::custom("missing version tag"))?;
        match decoded {
            Some(Decoded::Tagged { data, .. }) => Ok(Decoded::Tagged { version, data }),
            Some(current) => Ok(current),
            None => Err(A::Error::custom("missing data")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        name: String,
        size: u64,
    }

    impl Record for Thing {
        const FAMILY: &'static str = "things";
        const VERSION: u32 = 2;

        fn migrate(version: u32, mut data: Value) -> std::result::Result<Value, String> {
            match version {
                1 => {
                    data["size"] = json!(0);
                    Ok(data)
                }
                _ => Err("unknown".into()),
            }
        }

        fn key(&self) -> String {
            self.name.clone()
        }
    }

    fn reason(bytes: &[u8]) -> String {
        match decode::<Thing>(b"k", bytes) {
            Err(CatalogError::Corrupt { family, key, reason }) => {
                assert_eq!((family, key.as_str()), ("things", "k"));
                reason
            }
            other => panic!("expected a corrupt record, got {other:?}"),
        }
    }

    #[test]
    fn a_current_record_round_trips_and_an_older_one_is_migrated() {
        let thing = Thing {
            name: "a \"quoted\" \u{e9}".into(),
            size: u64::MAX,
        };
        let encoded = encode(&thing);
        let expected = json!({"v": 2, "data": {"name": "a \"quoted\" \u{e9}", "size": u64::MAX}});
        assert_eq!(serde_json::from_slice::<Value>(&encoded).unwrap(), expected);
        assert_eq!(decode::<Thing>(b"k", &encoded).unwrap(), thing);
        let v1 = json!({"v": 1, "data": {"name": "old"}}).to_string();
        let migrated: Thing = decode(b"k", v1.as_bytes()).unwrap();
        assert_eq!(
            migrated,
            Thing {
                name: "old".into(),
                size: 0
            }
        );
    }

    #[test]
    fn newer_incomplete_and_broken_records_are_refused_by_name() {
        let newer = json!({"v": 3, "data": {"name": "x", "size": 1}}).to_string();
        assert!(reason(newer.as_bytes()).contains("newer Sluice (record version 3"));
        assert!(reason(br#"{"data": {"name": "x", "size": 1}}"#).starts_with("missing version tag"));
        assert!(reason(br#"{"v": 2}"#).starts_with("missing data"));
        // Data before its tag (no writer does this) reads the slow way.
        let late_tag: Thing = decode(b"k", br#"{"data": {"name": "x", "size": 1}, "v": 2}"#).unwrap();
        assert_eq!(
            late_tag,
            Thing {
                name: "x".into(),
                size: 1
            }
        );
        assert!(reason(br#"{"v": 2, "data": {"name": "x", "size": 1}} trailing"#).contains("trailing"));
        assert!(reason(br#"{"v": 2, "data": {"name": "x"}}"#).contains("missing field `size`"));
        assert!(reason(b"{not json").contains("key must be a string"));
    }
}
