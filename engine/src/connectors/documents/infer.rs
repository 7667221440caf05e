//! Columns proposed from a sample of documents (see
//! `docs/sources/documents.md`): key columns first, then every top-level
//! field seen, then `_document` when the connection keeps it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::DateTime;

use super::mapping::{ColumnSpec, DOCUMENT_COLUMN, Mapping, Target};
use super::value::{Document, Kind, Value};
use crate::contract::ColumnInfo;
use crate::type_mapping::Confidence;

/// A key column the store defines (never null).
#[derive(Debug, Clone)]
pub(crate) struct KeyField {
    pub(crate) name: String,
    pub(crate) spec: ColumnSpec,
    /// What DESCRIBE shows after the type, e.g. `redis key of hashes`.
    pub(crate) detail: String,
    /// Null only in rows of documents of another shape (see
    /// [`Document::foreign`]).
    pub(crate) nullable: bool,
}

/// What a store tells inference about a table besides its documents.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shape {
    pub(crate) key: Vec<KeyField>,
    /// Whether the store keeps every scalar as text (Redis): text that
    /// parses as numbers, booleans or timestamps in every sampled document
    /// then becomes a column of that type.
    pub(crate) text_scalars: bool,
    /// Warnings about the table as a whole, shown on its first key column.
    pub(crate) warnings: Vec<String>,
}

/// What the sample says about one field.
#[derive(Debug, Default)]
struct FieldStats {
    /// Non-null values per kind.
    kinds: BTreeMap<Kind, usize>,
    /// Documents where the field is absent or null.
    absent: usize,
    /// Over string values: how many parse as each text type.
    text: TextStats,
}

#[derive(Debug, Default)]
struct TextStats {
    ints: usize,
    numbers: usize,
    bools: usize,
    timestamps: usize,
}

impl TextStats {
    fn add(&mut self, text: &str) {
        let text = text.trim();
        if text.parse::<i64>().is_ok() {
            self.ints += 1;
        }
        if parse_float(text).is_some() {
            self.numbers += 1;
        }
        if parse_bool(text).is_some() {
            self.bools += 1;
        }
        if parse_timestamp(text).is_some() {
            self.timestamps += 1;
        }
    }
}

/// A finite decimal number written as text.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    let text = text.trim();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'));
    if !plain || !text.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `true` or `false`, any case.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// An RFC 3339 timestamp with its offset, in microseconds since 1970 UTC.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let t = DateTime::parse_from_rfc3339(text.trim()).ok()?;
    let micros = t.timestamp_micros();
    (t.timestamp_subsec_nanos() % 1000 == 0).then_some(micros)
}

/// The columns of a table whose documents include `sample`.
pub(crate) fn infer(sample: &[Document], shape: &Shape, mapping: &Mapping) -> Vec<ColumnInfo> {
    let own: Vec<&Document> = sample.iter().filter(|d| d.foreign.is_none()).collect();
    let keys: BTreeSet<&str> = shape.key.iter().map(|k| k.name.as_str()).collect();
    let mut fields: BTreeMap<&str, FieldStats> = BTreeMap::new();
    for doc in &own {
        for name in doc.fields.keys() {
            if !(keys.contains(name.as_str()) || (mapping.document_column() && name == DOCUMENT_COLUMN)) {
                fields.entry(name).or_default();
            }
        }
    }
    for doc in &own {
        for (name, stats) in fields.iter_mut() {
            match doc.fields.get(*name) {
                None | Some(Value::Null) => stats.absent += 1,
                Some(value) => {
                    if let Value::String(text) = value {
                        stats.text.add(text);
                    }
                    if let Some(kind) = value.kind() {
                        *stats.kinds.entry(kind).or_default() += 1;
                    }
                }
            }
        }
    }

    let mut columns = Vec::new();
    let mut push = |name: String, source_type: String, mapping, nullable, key: bool| {
        let ordinal = columns.len() as u32 + 1;
        columns.push(ColumnInfo {
            name,
            ordinal,
            source_type,
            nullable,
            default: None,
            primary_key_position: key.then_some(ordinal),
            indexed: key && ordinal == 1,
            mapping,
        });
    };
    for (i, key) in shape.key.iter().enumerate() {
        let mut mapped = key.spec.mapping(Confidence::High);
        if i == 0 {
            mapped.warnings.extend(shape.warnings.iter().cloned());
        }
        push(
            key.name.clone(),
            key.spec.source_type(Some(&key.detail)),
            mapped,
            key.nullable,
            true,
        );
    }
    for (name, stats) in &fields {
        let (source_type, mapped) = field_column(stats, own.len(), shape.text_scalars);
        push((*name).to_owned(), source_type, mapped, true, false);
    }
    if mapping.document_column() {
        let spec = ColumnSpec::new(Target::Document);
        push(
            DOCUMENT_COLUMN.to_owned(),
            spec.source_type(None),
            spec.mapping(Confidence::High),
            true,
            false,
        );
    }
    columns
}

/// The `source_type` and mapping of one field from its statistics over
/// `documents` sampled documents.
fn field_column(
    stats: &FieldStats,
    documents: usize,
    text_scalars: bool,
) -> (String, crate::type_mapping::TypeMapping) {
    let present: usize = stats.kinds.values().sum();
    let kinds: Vec<Kind> = stats.kinds.keys().copied().collect();
    let mut warnings = Vec::new();
    let mut confidence = Confidence::High;
    let spec = match kinds.as_slice() {
        [] => {
            confidence = Confidence::Low;
            warnings.push("null in every sampled document: its type is unknown, loaded as JSON".to_owned());
            ColumnSpec::new(Target::Json)
        }
        [Kind::String] if text_scalars => text_column(&stats.text, present, &mut warnings),
        [kind] => ColumnSpec::new(match kind {
            Kind::Bool => Target::Bool,
            Kind::Int => Target::Int,
            Kind::Float => Target::Float,
            Kind::String => Target::String,
            Kind::Bytes => Target::Bytes,
            Kind::Timestamp => Target::Timestamp,
            Kind::Array | Kind::Object => Target::Json,
        }),
        [Kind::Int, Kind::Float] => {
            confidence = Confidence::Medium;
            warnings.push(format!(
                "{} sampled values are integers and {} floats: loaded as FLOAT64, integers beyond 2^53 are refused",
                stats.kinds[&Kind::Int],
                stats.kinds[&Kind::Float]
            ));
            ColumnSpec::new(Target::Float)
        }
        [Kind::Array, Kind::Object] => ColumnSpec::new(Target::Json),
        _ => {
            confidence = Confidence::Low;
            let counts: Vec<String> = stats.kinds.iter().map(|(k, n)| format!("{n} {}", k.name())).collect();
            warnings.push(format!(
                "types conflict in the sample ({}): loaded as JSON; override the type with COLUMNS to pick one",
                counts.join(", ")
            ));
            ColumnSpec::new(Target::Json)
        }
    };
    if spec.from_text {
        confidence = confidence.max(Confidence::Medium);
    }
    if stats.absent > 0 {
        confidence = confidence.max(Confidence::Medium);
        warnings.push(format!(
            "missing or null in {} of {documents} sampled documents",
            stats.absent
        ));
    }
    let mut mapped = spec.mapping(confidence);
    mapped.warnings = warnings;
    // The source type says only what the values become: runs compare it
    // with the job's (a change is a schema change), so it never carries counts.
    (spec.source_type(None), mapped)
}

/// A column of text values: the narrowest type every sampled value parses
/// as, else text.
fn text_column(text: &TextStats, present: usize, warnings: &mut Vec<String>) -> ColumnSpec {
    let (target, what) = if text.ints == present {
        (Target::Int, "integers")
    } else if text.numbers == present {
        (Target::Float, "numbers")
    } else if text.bools == present {
        (Target::Bool, "true/false")
    } else if text.timestamps == present {
        (Target::Timestamp, "RFC 3339 timestamps")
    } else {
        return ColumnSpec::new(Target::String);
    };
    warnings.push(format!(
        "every sampled value is text holding {what}; text that does not parse follows on_type_mismatch"
    ));
    ColumnSpec {
        target,
        from_text: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::documents::mapping::OnMismatch;
    use crate::type_mapping::BigQueryType;

    fn doc(id: &str, fields: &[(&str, Value)]) -> Document {
        Document::new(id, fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
    }

    fn key() -> Shape {
        Shape {
            key: vec![KeyField {
                name: "_id".into(),
                spec: ColumnSpec::new(Target::String),
                detail: "key".into(),
                nullable: false,
            }],
            ..Shape::default()
        }
    }

    fn summary(columns: &[ColumnInfo]) -> Vec<(String, String, String, String)> {
        columns
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.source_type.clone(),
                    c.mapping.bigquery.to_string(),
                    c.mapping.confidence.to_string(),
                )
            })
            .collect()
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    #[test]
    fn confidence_follows_agreement() {
        let docs = vec![
            doc(
                "1",
                &[
                    ("_id", s("1")),
                    ("name", s("a")),
                    ("age", Value::Int(3)),
                    ("tags", Value::Array(vec![])),
                ],
            ),
            doc(
                "2",
                &[("_id", s("2")), ("name", s("b")), ("age", s("old")), ("x", Value::Null)],
            ),
        ];
        let columns = infer(&docs, &key(), &Mapping::default());
        assert_eq!(
            summary(&columns),
            vec![
                ("_id".into(), "string (key)".into(), "STRING".into(), "high".into()),
                ("age".into(), "json".into(), "JSON".into(), "low".into()),
                ("name".into(), "string".into(), "STRING".into(), "high".into()),
                ("tags".into(), "json".into(), "JSON".into(), "medium".into()),
                ("x".into(), "json".into(), "JSON".into(), "low".into()),
            ]
        );
        assert_eq!(columns[0].primary_key_position, Some(1));
        assert!(!columns[0].nullable && columns[1].nullable);
        assert!(
            columns[1].mapping.warnings[0].contains("types conflict"),
            "{:?}",
            columns[1].mapping.warnings
        );
        assert_eq!(
            columns[3].mapping.warnings,
            vec!["missing or null in 1 of 2 sampled documents"]
        );
    }

    #[test]
    fn text_scalars_become_typed_columns() {
        let docs = vec![
            doc(
                "1",
                &[
                    ("n", s("1")),
                    ("f", s("1.5")),
                    ("b", s("true")),
                    ("t", s("2024-01-01T00:00:00Z")),
                    ("w", s("1")),
                ],
            ),
            doc(
                "2",
                &[
                    ("n", s("-2")),
                    ("f", s("2")),
                    ("b", s("FALSE")),
                    ("t", s("2024-01-02T10:00:00+02:00")),
                    ("w", s("x")),
                ],
            ),
        ];
        let shape = Shape {
            text_scalars: true,
            ..Shape::default()
        };
        let columns = infer(&docs, &shape, &Mapping::default());
        let types: Vec<_> = columns
            .iter()
            .map(|c| (c.name.as_str(), c.source_type.as_str(), c.mapping.bigquery))
            .collect();
        assert_eq!(
            types,
            vec![
                ("b", "bool (from text)", BigQueryType::Bool),
                ("f", "float64 (from text)", BigQueryType::Float64),
                ("n", "int64 (from text)", BigQueryType::Int64),
                ("t", "timestamp (from text)", BigQueryType::Timestamp),
                ("w", "string", BigQueryType::String),
            ]
        );
        assert!(
            columns
                .iter()
                .take(4)
                .all(|c| c.mapping.confidence == Confidence::Medium)
        );
    }

    #[test]
    fn document_column_comes_last_when_kept_or_needed() {
        let docs = vec![doc("1", &[("_document", s("field")), ("a", Value::Int(1))])];
        let names = |mapping: Mapping| {
            infer(&docs, &Shape::default(), &mapping)
                .into_iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Mapping::default()), vec!["_document", "a"]);
        let keep = Mapping {
            keep_document: true,
            ..Mapping::default()
        };
        assert_eq!(names(keep), vec!["a", "_document"]);
        let json = Mapping {
            on_mismatch: OnMismatch::Json,
            ..Mapping::default()
        };
        assert_eq!(names(json), vec!["a", "_document"]);
    }
}
