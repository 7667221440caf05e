//! Schemas, tables and columns of the connection's database from its
//! `INFORMATION_SCHEMA`, names compared exactly as Snowflake stores them
//! (unquoted names in upper case).

use chrono::{DateTime, Utc};
use datafusion::scalar::ScalarValue;

use super::client::Session;
use super::dialect::SnowflakeDialect;
use super::types::{SnowflakeColumnType, map};
use crate::contract::{
    ColumnInfo, Dialect, SourceError, TableDescription, TableInfo, TableKind, TableRef, TextRows, closest,
};

/// A string literal for a name (names never hold NUL).
fn quoted(text: &str) -> String {
    SnowflakeDialect
        .literal(&ScalarValue::Utf8(Some(text.to_owned())))
        .unwrap_or_else(|| "''".into())
}

async fn rows(session: &Session, sql: &str) -> Result<TextRows, SourceError> {
    session.query(sql).await?.text_rows().await
}

fn text(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(|v| v.as_deref())
}

fn number<T: std::str::FromStr>(row: &[Option<String>], i: usize) -> Option<T> {
    text(row, i).and_then(|v| v.parse().ok())
}

/// The database's schemas, `INFORMATION_SCHEMA` excluded, sorted.
pub(super) async fn schemas(session: &Session) -> Result<Vec<String>, SourceError> {
    let found = rows(
        session,
        "SELECT SCHEMA_NAME FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME <> 'INFORMATION_SCHEMA' ORDER BY 1",
    )
    .await?;
    Ok(found
        .rows
        .iter()
        .filter_map(|r| text(r, 0).map(str::to_owned))
        .collect())
}

/// `NotFound` for a schema that is not one of `schemas`.
pub(super) fn check_schema(schema: &str, schemas: Vec<String>) -> Result<(), SourceError> {
    if schemas.iter().any(|s| s == schema) {
        return Ok(());
    }
    Err(SourceError::NotFound {
        kind: "schema",
        name: schema.to_owned(),
        nearby: closest(schema, schemas),
    })
}

/// Tables and views of `schema`, or of every schema, with Snowflake's
/// row counts and sizes, sorted by schema and name.
pub(super) async fn tables(session: &Session, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
    let filter = match schema {
        Some(schema) => format!("TABLE_SCHEMA = {}", quoted(schema)),
        None => "TABLE_SCHEMA <> 'INFORMATION_SCHEMA'".to_owned(),
    };
    table_infos(session, &filter).await
}

/// One table or view, when it exists with exactly this spelling.
pub(super) async fn table(session: &Session, table: &TableRef) -> Result<Option<TableInfo>, SourceError> {
    let filter = format!(
        "TABLE_SCHEMA = {} AND TABLE_NAME = {}",
        quoted(&table.schema),
        quoted(&table.name)
    );
    Ok(table_infos(session, &filter).await?.into_iter().next())
}

async fn table_infos(session: &Session, filter: &str) -> Result<Vec<TableInfo>, SourceError> {
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, ROW_COUNT, BYTES, LAST_ALTERED FROM INFORMATION_SCHEMA.TABLES \
         WHERE {filter} ORDER BY TABLE_SCHEMA, TABLE_NAME"
    );
    let found = rows(session, &sql).await?;
    Ok(found
        .rows
        .iter()
        .filter_map(|row| {
            Some(TableInfo {
                table: TableRef {
                    schema: text(row, 0)?.to_owned(),
                    name: text(row, 1)?.to_owned(),
                },
                kind: match text(row, 2).unwrap_or_default() {
                    "VIEW" => TableKind::View,
                    "MATERIALIZED VIEW" => TableKind::MaterializedView,
                    "EXTERNAL TABLE" => TableKind::Foreign,
                    _ => TableKind::Table,
                },
                estimated_rows: number(row, 3),
                size_bytes: number(row, 4),
                files: None,
                last_modified: text(row, 5)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
            })
        })
        .collect())
}

/// The columns and primary key of `info`'s table.
pub(super) async fn describe(session: &Session, info: TableInfo) -> Result<TableDescription, SourceError> {
    let table = &info.table;
    let sql = format!(
        "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, IS_NULLABLE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, \
         NUMERIC_SCALE, COLUMN_DEFAULT FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} \
         ORDER BY ORDINAL_POSITION",
        quoted(&table.schema),
        quoted(&table.name)
    );
    let found = rows(session, &sql).await?;
    let key = primary_key(session, table).await?;
    let columns = found
        .rows
        .iter()
        .filter_map(|row| {
            let name = text(row, 0)?.to_owned();
            let column_type = SnowflakeColumnType {
                data_type: text(row, 2)?.to_owned(),
                precision: number(row, 5),
                scale: number(row, 6),
                length: number(row, 4),
            };
            Some(ColumnInfo {
                ordinal: number(row, 1).unwrap_or_default(),
                source_type: column_type.display(),
                nullable: text(row, 3) != Some("NO"),
                default: text(row, 7).map(str::to_owned),
                primary_key_position: key.iter().position(|k| *k == name).map(|p| p as u32 + 1),
                indexed: false,
                mapping: map(&column_type),
                name,
            })
        })
        .collect();
    Ok(TableDescription {
        table: table.clone(),
        kind: info.kind,
        columns,
        estimated_rows: info.estimated_rows,
    })
}

/// The primary key's columns in key order (Snowflake records keys without
/// enforcing them), from `SHOW PRIMARY KEYS`.
async fn primary_key(session: &Session, table: &TableRef) -> Result<Vec<String>, SourceError> {
    let sql = format!(
        "SHOW PRIMARY KEYS IN TABLE {}.{}",
        SnowflakeDialect.quote_ident(&table.schema),
        SnowflakeDialect.quote_ident(&table.name)
    );
    let found = rows(session, &sql).await?;
    let column = |name: &str| found.columns.iter().position(|c| c.eq_ignore_ascii_case(name));
    let (Some(name), Some(sequence)) = (column("column_name"), column("key_sequence")) else {
        return Ok(Vec::new());
    };
    let mut key: Vec<(u32, String)> = found
        .rows
        .iter()
        .filter_map(|row| Some((number(row, sequence)?, text(row, name)?.to_owned())))
        .collect();
    key.sort();
    Ok(key.into_iter().map(|(_, name)| name).collect())
}

/// `NotFound` for a table missing from `schema`, naming the ones nearby.
pub(super) async fn table_not_found(session: &Session, table: &TableRef) -> SourceError {
    let names = tables(session, Some(&table.schema))
        .await
        .map(|t| t.into_iter().map(|t| t.table.name).collect())
        .unwrap_or_default();
    SourceError::NotFound {
        kind: "table",
        name: table.to_string(),
        nearby: closest(&table.name, names),
    }
}
