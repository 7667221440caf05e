//! The tables Sluice shows: each view has one schema and one builder,
//! shared by its `SHOW` statement and its `sluice.*` system table.

mod alerts;
mod dump;
mod explore;
mod fleet;
mod job_ops;
mod jobs;
mod roles;
mod schema_changes;

pub use alerts::*;
pub use dump::*;
pub use explore::*;
pub use fleet::*;
pub use job_ops::*;
pub use jobs::*;
pub use roles::*;
pub use schema_changes::*;

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_catalog::{Catalog, CatalogError, ConnectionRecord};
use sluice_engine::TestOutcome;
use sluice_engine::connectors;

pub(crate) fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

pub(crate) fn timestamptz(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    )
}

pub(crate) fn text_list(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        true,
    )
}

pub(crate) fn strings<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

pub(crate) fn timestamps(values: impl IntoIterator<Item = Option<DateTime<Utc>>>) -> ArrayRef {
    let micros: TimestampMicrosecondArray = values.into_iter().map(|t| t.map(|t| t.timestamp_micros())).collect();
    Arc::new(micros.with_timezone("UTC"))
}

pub(crate) fn lists(values: impl IntoIterator<Item = Vec<String>>) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for list in values {
        for item in list {
            builder.values().append_value(item);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

pub(crate) fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(schema.clone(), columns).expect("view columns match their schema")
}

/// `sluice.connections` and `SHOW CONNECTIONS`.
pub static CONNECTIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("name"),
        text("type"),
        text("status"),
        text("options"),
        timestamptz("last_tested_at"),
        text("last_error"),
        timestamptz("last_used_at"),
        text_list("used_by_jobs"),
        timestamptz("created_at"),
        timestamptz("updated_at"),
    ]))
});

/// The options of a connection as SQL, secrets redacted.
pub fn options_sql(record: &ConnectionRecord) -> String {
    record
        .options
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn connections(catalog: &Catalog) -> Result<RecordBatch, CatalogError> {
    let records = catalog.connections()?;
    let used_by = records
        .iter()
        .map(|r| catalog.jobs_using(&r.name))
        .collect::<Result<Vec<_>, _>>()?;
    let options: Vec<String> = records.iter().map(options_sql).collect();
    Ok(batch(
        &CONNECTIONS,
        vec![
            strings(records.iter().map(|r| Some(r.name.as_str()))),
            strings(records.iter().map(|r| Some(r.kind.as_str()))),
            strings(records.iter().map(|r| Some(r.status.as_str()))),
            strings(options.iter().map(|o| Some(o.as_str()))),
            timestamps(records.iter().map(|r| r.last_tested_at)),
            strings(records.iter().map(|r| r.last_error.as_deref())),
            timestamps(records.iter().map(|r| r.last_used_at)),
            lists(used_by),
            timestamps(records.iter().map(|r| Some(r.created_at))),
            timestamps(records.iter().map(|r| Some(r.updated_at))),
        ],
    ))
}

/// `sluice.secrets` and `SHOW SECRETS`: names, and for external secrets
/// the store (`kind`) and reference, never values.
pub static SECRETS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("name"),
        timestamptz("created_at"),
        text_list("used_by"),
        text("kind"),
        text("reference"),
    ]))
});

pub fn secrets(catalog: &Catalog) -> Result<RecordBatch, CatalogError> {
    let secrets = catalog.secrets()?;
    Ok(batch(
        &SECRETS,
        vec![
            strings(secrets.iter().map(|s| Some(s.name.as_str()))),
            timestamps(secrets.iter().map(|s| Some(s.created_at))),
            lists(secrets.iter().map(|s| s.used_by.clone())),
            strings(
                secrets
                    .iter()
                    .map(|s| Some(s.external.as_ref().map_or("stored", |e| e.kind()))),
            ),
            strings(secrets.iter().map(|s| s.external.as_ref().map(|e| e.reference()))),
        ],
    ))
}

/// `sluice.connection_types` and `SHOW CONNECTION TYPES`.
pub static CONNECTION_TYPES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("type"),
        text("name"),
        text("category"),
        text("status"),
        text("options"),
    ]))
});

pub fn connection_types() -> RecordBatch {
    let types = connectors::all();
    let options: Vec<String> = types
        .iter()
        .map(|t| {
            t.options
                .iter()
                .map(|o| {
                    let mut s = format!("{} {}", o.name, o.kind.describe());
                    if o.required {
                        s.push_str(" required");
                    }
                    if let Some(default) = o.default {
                        s.push_str(&format!(" default {default}"));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    let categories: Vec<String> = types.iter().map(|t| t.category.to_string()).collect();
    let statuses: Vec<String> = types.iter().map(|t| t.status().to_string()).collect();
    batch(
        &CONNECTION_TYPES,
        vec![
            strings(types.iter().map(|t| Some(t.name))),
            strings(types.iter().map(|t| Some(t.display_name))),
            strings(categories.iter().map(|s| Some(s.as_str()))),
            strings(statuses.iter().map(|s| Some(s.as_str()))),
            strings(options.iter().map(|s| Some(s.as_str()))),
        ],
    )
}

/// `sluice.connection_type_options`: one row per option of every type.
pub static CONNECTION_TYPE_OPTIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("type"),
        text("option"),
        text("data_type"),
        Field::new("required", DataType::Boolean, false),
        text("default_value"),
        text("description"),
    ]))
});

pub fn connection_type_options() -> RecordBatch {
    let rows: Vec<_> = connectors::all()
        .iter()
        .flat_map(|t| t.options.iter().map(move |o| (t.name, o)))
        .collect();
    let kinds: Vec<String> = rows.iter().map(|(_, o)| o.kind.describe()).collect();
    batch(
        &CONNECTION_TYPE_OPTIONS,
        vec![
            strings(rows.iter().map(|(t, _)| Some(*t))),
            strings(rows.iter().map(|(_, o)| Some(o.name))),
            strings(kinds.iter().map(|k| Some(k.as_str()))),
            Arc::new(rows.iter().map(|(_, o)| Some(o.required)).collect::<BooleanArray>()),
            strings(rows.iter().map(|(_, o)| o.default)),
            strings(rows.iter().map(|(_, o)| Some(o.description))),
        ],
    )
}

/// The result of `TEST CONNECTION` / `TEST CONNECTIONS`.
pub static TEST_RESULTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("connection"),
        text("status"),
        Field::new("elapsed_ms", DataType::Int64, false),
        text("error"),
    ]))
});

pub fn test_results(outcomes: &[TestOutcome]) -> RecordBatch {
    batch(
        &TEST_RESULTS,
        vec![
            strings(outcomes.iter().map(|o| Some(o.name.as_str()))),
            strings(outcomes.iter().map(|o| Some(o.status.as_str()))),
            Arc::new(
                outcomes
                    .iter()
                    .map(|o| o.elapsed.as_millis() as i64)
                    .collect::<Int64Array>(),
            ),
            strings(outcomes.iter().map(|o| o.error.as_deref())),
        ],
    )
}

/// The result of `SHOW CREATE CONNECTION`.
pub static CREATE_STATEMENT: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(vec![text("connection"), text("create_statement")])));

pub fn create_statement(record: &ConnectionRecord) -> RecordBatch {
    let sql = connection_sql(record);
    batch(
        &CREATE_STATEMENT,
        vec![strings([Some(record.name.as_str())]), strings([Some(sql.as_str())])],
    )
}

/// PostgreSQL's reserved key words: names that must be quoted. Sorted, for
/// a binary search.
const RESERVED: &[&str] = &[
    "ALL",
    "ANALYSE",
    "ANALYZE",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "ASYMMETRIC",
    "BOTH",
    "CASE",
    "CAST",
    "CHECK",
    "COLLATE",
    "COLUMN",
    "CONSTRAINT",
    "CREATE",
    "CURRENT_CATALOG",
    "CURRENT_DATE",
    "CURRENT_ROLE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "DEFAULT",
    "DEFERRABLE",
    "DESC",
    "DISTINCT",
    "DO",
    "ELSE",
    "END",
    "EXCEPT",
    "FALSE",
    "FETCH",
    "FOR",
    "FOREIGN",
    "FROM",
    "GRANT",
    "GROUP",
    "HAVING",
    "IN",
    "INITIALLY",
    "INTERSECT",
    "INTO",
    "LATERAL",
    "LEADING",
    "LIMIT",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "NOT",
    "NULL",
    "OFFSET",
    "ON",
    "ONLY",
    "OR",
    "ORDER",
    "PLACING",
    "PRIMARY",
    "REFERENCES",
    "RETURNING",
    "SELECT",
    "SESSION_USER",
    "SOME",
    "SYMMETRIC",
    "TABLE",
    "THEN",
    "TO",
    "TRAILING",
    "TRUE",
    "UNION",
    "UNIQUE",
    "USER",
    "USING",
    "VARIADIC",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// Quotes an identifier when it would not survive unquoted.
pub fn quote_ident(name: &str) -> String {
    Ident(name).to_string()
}

/// An identifier displayed as [`quote_ident`] quotes it, without building
/// the quoted text first (a listing shows several per job).
pub struct Ident<'a>(pub &'a str);

impl std::fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.0;
        let plain = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        // Compared upper-cased byte by byte, with no upper-cased copy.
        let reserved = || {
            RESERVED
                .binary_search_by(|word| word.bytes().cmp(name.bytes().map(|b| b.to_ascii_uppercase())))
                .is_ok()
        };
        if plain && !reserved() {
            return f.write_str(name);
        }
        f.write_str("\"")?;
        for (i, part) in name.split('"').enumerate() {
            if i > 0 {
                f.write_str("\"\"")?;
            }
            f.write_str(part)?;
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn quotes_identifiers_that_need_it() {
        assert_eq!(quote_ident("shop_2"), "shop_2");
        assert_eq!(quote_ident("Shop"), "\"Shop\"");
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_ident("public"), "public");
        assert_eq!(quote_ident("a \"b\""), "\"a \"\"b\"\"\"");
        assert_eq!(quote_ident("2x"), "\"2x\"");
        assert_eq!(quote_ident("all"), "\"all\"");
        assert_eq!(quote_ident("with"), "\"with\"");
        assert!(super::RESERVED.is_sorted(), "quote_ident searches it by halves");
    }
}
