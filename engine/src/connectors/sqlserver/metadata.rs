//! Schemas, tables and columns from `INFORMATION_SCHEMA`, with row
//! estimates and sizes from `sys.dm_db_partition_stats` (or
//! `sys.partitions` without `VIEW DATABASE STATE`), always looked up with
//! bound parameters.
//!
//! Databases usually compare names case-insensitively, so every lookup also
//! checks the exact spelling of the rows it gets back.

use std::collections::HashMap;

use tiberius::{ColumnData, Row, ToSql};

use super::endpoint::{Session, query_error};
use super::types::{SqlServerColumnType, map};
use crate::contract::{ColumnInfo, SourceError, TableDescription, TableInfo, TableKind, TableRef, closest};

/// Schemas that belong to the server or to its fixed roles.
const SYSTEM_SCHEMAS: &str =
    "SCHEMA_NAME NOT IN ('sys', 'INFORMATION_SCHEMA', 'guest') AND LEFT(SCHEMA_NAME, 3) <> 'db_'";

/// The user schemas of the database, sorted.
pub(super) async fn schemas(client: &mut Session) -> Result<Vec<String>, SourceError> {
    let sql = format!("SELECT SCHEMA_NAME FROM INFORMATION_SCHEMA.SCHEMATA WHERE {SYSTEM_SCHEMAS}");
    let mut names: Vec<String> = rows(client, &sql, &[])
        .await?
        .iter()
        .filter_map(|row| text(row, 0))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// What `INFORMATION_SCHEMA.TABLES` says about a table.
const TABLES: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM INFORMATION_SCHEMA.TABLES";

/// Rows, bytes and partitions per table, from the partition statistics
/// (needs `VIEW DATABASE STATE`).
const STATS: &str = "SELECT s.name, o.name, SUM(CASE WHEN ps.index_id IN (0, 1) THEN ps.row_count ELSE 0 END), \
                     SUM(ps.used_page_count) * 8192, COUNT(DISTINCT ps.partition_number) \
                     FROM sys.dm_db_partition_stats ps JOIN sys.objects o ON o.object_id = ps.object_id \
                     JOIN sys.schemas s ON s.schema_id = o.schema_id WHERE o.type = 'U' GROUP BY s.name, o.name";

/// Rows and partitions per table from `sys.partitions`, which any user
/// who sees the table may read.
const PARTITIONS: &str = "SELECT s.name, t.name, SUM(p.rows), NULL, COUNT(*) FROM sys.partitions p \
                          JOIN sys.tables t ON t.object_id = p.object_id \
                          JOIN sys.schemas s ON s.schema_id = t.schema_id \
                          WHERE p.index_id IN (0, 1) GROUP BY s.name, t.name";

/// Tables and views of `schema`, or of every user schema, sorted by schema
/// and name.
pub(super) async fn tables(client: &mut Session, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
    let found = match schema {
        Some(schema) => {
            let sql = format!("{TABLES} WHERE TABLE_SCHEMA = @P1");
            rows(client, &sql, &[&schema]).await?
        }
        None => rows(client, &format!("{TABLES} WHERE TABLE_SCHEMA IN (SELECT SCHEMA_NAME FROM INFORMATION_SCHEMA.SCHEMATA WHERE {SYSTEM_SCHEMAS})"), &[]).await?,
    };
    let stats = statistics(client).await?;
    let mut tables: Vec<TableInfo> = found
        .iter()
        .filter_map(|row| {
            let table = TableRef {
                schema: text(row, 0)?,
                name: text(row, 1)?,
            };
            let view = text(row, 2).is_some_and(|t| t.eq_ignore_ascii_case("VIEW"));
            Some((table, view))
        })
        .filter(|(table, _)| schema.is_none_or(|s| table.schema == s))
        .map(|(table, view)| {
            let stat = stats.get(&(table.schema.clone(), table.name.clone()));
            TableInfo {
                kind: match stat {
                    _ if view => TableKind::View,
                    Some(s) if s.partitions > 1 => TableKind::Partitioned,
                    _ => TableKind::Table,
                },
                estimated_rows: stat.and_then(|s| s.rows),
                size_bytes: stat.and_then(|s| s.bytes),
                files: None,
                last_modified: None,
                table,
            }
        })
        .collect();
    tables.sort_by(|a, b| (&a.table.schema, &a.table.name).cmp(&(&b.table.schema, &b.table.name)));
    Ok(tables)
}

/// One table's partition statistics.
struct Stats {
    rows: Option<i64>,
    bytes: Option<i64>,
    partitions: i64,
}

/// Statistics of every user table, by schema and name; empty when the
/// server has no such views (a stand-in, or a serverless pool).
async fn statistics(client: &mut Session) -> Result<HashMap<(String, String), Stats>, SourceError> {
    let found = match optional(rows(client, STATS, &[]).await)? {
        Some(found) => found,
        None => optional(rows(client, PARTITIONS, &[]).await)?.unwrap_or_default(),
    };
    Ok(found
        .iter()
        .filter_map(|row| {
            let key = (text(row, 0)?, text(row, 1)?);
            let stats = Stats {
                rows: integer(row, 2),
                bytes: integer(row, 3),
                partitions: integer(row, 4).unwrap_or(1),
            };
            Some((key, stats))
        })
        .collect())
}

/// One table or view, when it exists with exactly this spelling.
pub(super) async fn table(client: &mut Session, table: &TableRef) -> Result<Option<TableInfo>, SourceError> {
    Ok(tables(client, Some(&table.schema))
        .await?
        .into_iter()
        .find(|t| t.table == *table))
}

const COLUMNS: &str = "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, \
                       NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, IS_NULLABLE, COLUMN_DEFAULT \
                       FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2 \
                       ORDER BY ORDINAL_POSITION";

const PRIMARY_KEY: &str = "SELECT kcu.TABLE_NAME, kcu.COLUMN_NAME, kcu.ORDINAL_POSITION \
                           FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS tc \
                           JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE kcu \
                           ON kcu.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND kcu.CONSTRAINT_NAME = tc.CONSTRAINT_NAME \
                           WHERE tc.CONSTRAINT_TYPE = 'PRIMARY KEY' AND tc.TABLE_SCHEMA = @P1 AND tc.TABLE_NAME = @P2";

/// The first column of every index of the table `@P1` names.
const INDEXED: &str = "SELECT c.name FROM sys.index_columns ic JOIN sys.columns c \
                       ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
                       WHERE ic.object_id = OBJECT_ID(@P1) AND ic.key_ordinal = 1";

/// The columns, keys and mappings of `table`, whose `TABLES` row is `info`.
pub(super) async fn describe(client: &mut Session, info: TableInfo) -> Result<TableDescription, SourceError> {
    let table = &info.table;
    let (schema, name) = (table.schema.as_str(), table.name.as_str());
    let columns = rows(client, COLUMNS, &[&schema, &name]).await?;
    let key: Vec<(String, i64)> = optional(rows(client, PRIMARY_KEY, &[&schema, &name]).await)?
        .unwrap_or_default()
        .iter()
        .filter(|row| text(row, 0).as_deref() == Some(name))
        .filter_map(|row| Some((text(row, 1)?, integer(row, 2)?)))
        .collect();
    let quoted = format!("[{}].[{}]", schema.replace(']', "]]"), name.replace(']', "]]"));
    let indexed: Vec<String> = optional(rows(client, INDEXED, &[&quoted.as_str()]).await)?
        .unwrap_or_default()
        .iter()
        .filter_map(|row| text(row, 0))
        .collect();
    let mut described = Vec::new();
    for row in &columns {
        if text(row, 0).as_deref() != Some(name) {
            continue;
        }
        let Some(column) = text(row, 1) else { continue };
        let data_type = text(row, 3).unwrap_or_default();
        let temporal = matches!(
            data_type.to_ascii_lowercase().as_str(),
            "time" | "datetime2" | "datetimeoffset"
        );
        let column_type = SqlServerColumnType {
            max_length: integer(row, 4).and_then(|n| i32::try_from(n).ok()),
            precision: integer(row, 5).and_then(|n| u32::try_from(n).ok()),
            scale: integer(row, if temporal { 7 } else { 6 }).and_then(|n| u32::try_from(n).ok()),
            data_type,
        };
        let primary_key_position = key
            .iter()
            .find(|(c, _)| *c == column)
            .and_then(|(_, position)| u32::try_from(*position).ok());
        described.push(ColumnInfo {
            ordinal: integer(row, 2).and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            nullable: text(row, 8).is_none_or(|n| n.eq_ignore_ascii_case("YES")),
            default: text(row, 9),
            indexed: primary_key_position == Some(1) || indexed.contains(&column),
            primary_key_position,
            mapping: map(&column_type),
            source_type: column_type.source_type(),
            name: column,
        });
    }
    Ok(TableDescription {
        table: info.table,
        kind: info.kind,
        columns: described,
        estimated_rows: info.estimated_rows,
    })
}

/// A `NotFound` for `name` among `existing`, the closest names to `target`
/// first.
pub(super) fn not_found(kind: &'static str, name: String, target: &str, existing: Vec<String>) -> SourceError {
    SourceError::NotFound {
        kind,
        name,
        nearby: closest(target, existing),
    }
}

/// Every row of the first result of `sql` run with `params`.
pub(super) async fn rows(client: &mut Session, sql: &str, params: &[&dyn ToSql]) -> Result<Vec<Row>, SourceError> {
    let stream = client.query(sql, params).await.map_err(query_error)?;
    stream.into_first_result().await.map_err(query_error)
}

/// The rows of a catalog view the server may not have (`None`: no such
/// view, or no permission to read it).
fn optional(result: Result<Vec<Row>, SourceError>) -> Result<Option<Vec<Row>>, SourceError> {
    match result {
        Ok(rows) => Ok(Some(rows)),
        Err(SourceError::Query { code: Some(code), .. }) if code == "42P01" || code == "42501" => Ok(None),
        Err(other) => Err(other),
    }
}

/// Column `index` of a row as text.
pub(super) fn text(row: &Row, index: usize) -> Option<String> {
    value_text(row.cells().nth(index)?.1)
}

/// Column `index` of a row as an integer, whatever integer type the
/// server chose for it.
pub(super) fn integer(row: &Row, index: usize) -> Option<i64> {
    match row.cells().nth(index)?.1 {
        ColumnData::U8(v) => v.map(i64::from),
        ColumnData::I16(v) => v.map(i64::from),
        ColumnData::I32(v) => v.map(i64::from),
        ColumnData::I64(v) => *v,
        ColumnData::Numeric(v) => v.and_then(|n| i64::try_from(n.int_part()).ok()),
        ColumnData::F64(v) => v.map(|f| f as i64),
        ColumnData::String(v) => v.as_deref()?.trim().parse().ok(),
        _ => None,
    }
}

/// A value as text, `None` for NULL: what VERIFY reads and catalog names.
pub(super) fn value_text(value: &ColumnData<'_>) -> Option<String> {
    use ColumnData as C;
    match value {
        C::String(v) => v.as_deref().map(str::to_owned),
        C::U8(v) => v.map(|v| v.to_string()),
        C::I16(v) => v.map(|v| v.to_string()),
        C::I32(v) => v.map(|v| v.to_string()),
        C::I64(v) => v.map(|v| v.to_string()),
        C::F32(v) => v.map(|v| v.to_string()),
        C::F64(v) => v.map(|v| v.to_string()),
        C::Bit(v) => v.map(|v| u8::from(v).to_string()),
        C::Numeric(v) => v.map(|v| v.to_string()),
        C::Guid(v) => v.map(|v| v.hyphenated().to_string()),
        C::Xml(v) => v.as_ref().map(|x| x.to_string()),
        _ => None,
    }
}
