//! The CQL type of a column (the text `system_schema.columns.type` holds)
//! mapped to what its values load as: the shared document targets, so a
//! scan converts rows with the same code as every document store.

use crate::connectors::documents::{ColumnSpec, Target};
use crate::type_mapping::{Confidence, TypeMapping};

/// The target and mapping of a column of CQL type `cql_type`
/// (`frozen<...>` is looked through).
pub(super) fn map(cql_type: &str) -> (ColumnSpec, TypeMapping) {
    use Confidence::{High, Low, Medium};
    let base = base_name(cql_type);
    let (target, confidence, warning) = match base.as_str() {
        "ascii" | "text" | "varchar" | "uuid" | "timeuuid" | "inet" => (Target::String, High, None),
        "tinyint" | "smallint" | "int" | "bigint" | "counter" => (Target::Int, High, None),
        "float" | "double" => (Target::Float, High, None),
        "boolean" => (Target::Bool, High, None),
        "timestamp" => (Target::Timestamp, High, None),
        "blob" => (Target::Bytes, High, None),
        "varint" => (
            Target::String,
            Medium,
            Some(
                "an arbitrary-precision integer loads as its exact decimal text; CAST it to NUMERIC or BIGNUMERIC where it fits",
            ),
        ),
        "decimal" => (
            Target::String,
            Medium,
            Some(
                "an arbitrary-precision decimal loads as its exact decimal text; CAST it to NUMERIC or BIGNUMERIC where it fits",
            ),
        ),
        "date" => (
            Target::String,
            Medium,
            Some("a date loads as text YYYY-MM-DD (CAST it to DATE)"),
        ),
        "time" => (
            Target::String,
            Medium,
            Some("a time of day loads as text HH:MM:SS.nnnnnnnnn (nanoseconds; BigQuery TIME keeps microseconds)"),
        ),
        "duration" => (
            Target::Json,
            Medium,
            Some(
                "a duration loads as JSON {\"months\", \"days\", \"nanoseconds\"}: its parts are not convertible to one unit",
            ),
        ),
        "list" | "set" | "vector" | "tuple" | "map" => (Target::Json, High, None),
        _ if base.starts_with('\'') => (Target::Bytes, Low, Some("a custom type loads as its serialized bytes")),
        // Anything else is a user-defined type: an object of its fields.
        _ => (Target::Json, High, None),
    };
    let spec = ColumnSpec::new(target);
    let mut mapping = spec.mapping(confidence);
    if let Some(warning) = warning {
        mapping = mapping.warn(warning);
    }
    (spec, mapping)
}

/// The outer type name, lower case, with `frozen<...>` unwrapped:
/// `frozen<map<text, int>>` is `map`.
fn base_name(cql_type: &str) -> String {
    let mut t = cql_type.trim();
    while let Some(inner) = t.strip_prefix("frozen<").and_then(|r| r.strip_suffix('>')) {
        t = inner.trim();
    }
    if t.starts_with('\'') {
        return t.to_owned();
    }
    t.split('<').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Examples of every CQL type for the documentation and tests.
#[cfg(test)]
pub(super) const EXAMPLES: &[(&str, Target)] = &[
    ("ascii", Target::String),
    ("text", Target::String),
    ("varchar", Target::String),
    ("uuid", Target::String),
    ("timeuuid", Target::String),
    ("inet", Target::String),
    ("tinyint", Target::Int),
    ("smallint", Target::Int),
    ("int", Target::Int),
    ("bigint", Target::Int),
    ("counter", Target::Int),
    ("float", Target::Float),
    ("double", Target::Float),
    ("boolean", Target::Bool),
    ("timestamp", Target::Timestamp),
    ("blob", Target::Bytes),
    ("varint", Target::String),
    ("decimal", Target::String),
    ("date", Target::String),
    ("time", Target::String),
    ("duration", Target::Json),
    ("list<int>", Target::Json),
    ("set<text>", Target::Json),
    ("map<text, int>", Target::Json),
    ("frozen<map<int, frozen<list<text>>>>", Target::Json),
    ("tuple<int, text>", Target::Json),
    ("vector<float, 3>", Target::Json),
    ("frozen<address>", Target::Json),
    ("'org.apache.cassandra.db.marshal.BytesType'", Target::Bytes),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::type_mapping::BigQueryType;

    #[test]
    fn every_cql_type_has_its_target() {
        for (cql, target) in EXAMPLES {
            assert_eq!(map(cql).0.target, *target, "{cql}");
        }
        let (_, mapping) = map("frozen<map<int, frozen<list<text>>>>");
        assert_eq!(mapping.bigquery, BigQueryType::Json);
        assert_eq!(mapping.confidence, Confidence::High);
        let (_, decimal) = map("decimal");
        assert_eq!(decimal.bigquery, BigQueryType::String);
        assert_eq!(decimal.confidence, Confidence::Medium);
        assert!(decimal.warnings[0].contains("exact decimal text"));
        assert_eq!(map("'x.Y'").1.confidence, Confidence::Low);
        assert_eq!(map(" BIGINT ").0.target, Target::Int);
    }
}
