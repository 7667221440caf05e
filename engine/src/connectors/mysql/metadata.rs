//! Databases, tables and columns from `information_schema`, always looked up
//! with bound parameters.
//!
//! `information_schema` compares names case-insensitively in MariaDB, so
//! every lookup also checks the exact spelling of the rows it gets back.

use chrono::{DateTime, NaiveDate, Utc};
use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{Conn, Params, Row, Value};

use super::endpoint::query_error;
use super::types::{MySqlColumnType, map};
use crate::contract::{ColumnInfo, SourceError, TableDescription, TableInfo, TableKind, TableRef, closest};

/// Databases that belong to the server, never listed as schemas.
const SYSTEM_SCHEMAS: &str = "('information_schema', 'mysql', 'performance_schema', 'sys')";

/// The user databases visible on `conn`, sorted; only `only` when given.
pub(super) async fn schemas(conn: &mut Conn, only: Option<&str>) -> Result<Vec<String>, SourceError> {
    let sql = format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN {SYSTEM_SCHEMAS}");
    let mut names: Vec<String> = rows(conn, &sql, Params::Empty)
        .await?
        .iter_mut()
        .map(|row| take(row, 0))
        .collect::<Result<_, _>>()?;
    if let Some(only) = only {
        names.retain(|name| name == only);
    }
    names.sort();
    Ok(names)
}

/// What `TABLES` says about a table.
const TABLES: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, CREATE_OPTIONS, TABLE_ROWS, DATA_LENGTH, \
                      INDEX_LENGTH, UPDATE_TIME FROM information_schema.TABLES";

/// Tables and views of `schema`, or of every schema in `visible`, sorted by
/// schema and name.
pub(super) async fn tables(
    conn: &mut Conn,
    schema: Option<&str>,
    visible: &[String],
) -> Result<Vec<TableInfo>, SourceError> {
    let mut tables = match schema {
        Some(schema) => {
            let sql = format!("{TABLES} WHERE TABLE_SCHEMA = ?");
            let found = table_infos(rows(conn, &sql, Params::Positional(vec![schema.into()])).await?)?;
            found.into_iter().filter(|t| t.table.schema == schema).collect()
        }
        None => {
            let sql = format!("{TABLES} WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS}");
            let found = table_infos(rows(conn, &sql, Params::Empty).await?)?;
            found
                .into_iter()
                .filter(|t| visible.contains(&t.table.schema))
                .collect::<Vec<_>>()
        }
    };
    tables.sort_by(|a, b| (&a.table.schema, &a.table.name).cmp(&(&b.table.schema, &b.table.name)));
    Ok(tables)
}

/// One table or view, when it exists with exactly this spelling.
pub(super) async fn table(conn: &mut Conn, table: &TableRef) -> Result<Option<TableInfo>, SourceError> {
    let sql = format!("{TABLES} WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?");
    let params = Params::Positional(vec![table.schema.as_str().into(), table.name.as_str().into()]);
    let found = table_infos(rows(conn, &sql, params).await?)?;
    Ok(found.into_iter().find(|t| t.table == *table))
}

fn table_infos(rows: Vec<Row>) -> Result<Vec<TableInfo>, SourceError> {
    rows.into_iter()
        .map(|mut row| {
            let table_type: String = take(&mut row, 2)?;
            let options: Option<String> = take(&mut row, 3)?;
            let kind = match table_type.as_str() {
                "VIEW" | "SYSTEM VIEW" => TableKind::View,
                _ if options.is_some_and(|o| o.to_ascii_lowercase().contains("partitioned")) => TableKind::Partitioned,
                _ => TableKind::Table,
            };
            let data: Option<u64> = take(&mut row, 5)?;
            let index: Option<u64> = take(&mut row, 6)?;
            let updated: Option<Value> = take(&mut row, 7)?;
            Ok(TableInfo {
                table: TableRef {
                    schema: take(&mut row, 0)?,
                    name: take(&mut row, 1)?,
                },
                kind,
                estimated_rows: take::<Option<u64>>(&mut row, 4)?.and_then(|n| i64::try_from(n).ok()),
                size_bytes: data
                    .zip(index)
                    .and_then(|(d, i)| d.checked_add(i))
                    .and_then(|n| i64::try_from(n).ok()),
                files: None,
                last_modified: updated.as_ref().and_then(utc),
            })
        })
        .collect()
}

/// The columns, keys and mappings of `table`, whose `TABLES` row is `info`.
pub(super) async fn describe(conn: &mut Conn, info: TableInfo) -> Result<TableDescription, SourceError> {
    let table = &info.table;
    let params = || Params::Positional(vec![table.schema.as_str().into(), table.name.as_str().into()]);
    let sql = "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, \
               COLUMN_DEFAULT, NUMERIC_PRECISION, NUMERIC_SCALE FROM information_schema.COLUMNS \
               WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION";
    let columns = rows(conn, sql, params()).await?;
    let sql = "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME FROM information_schema.STATISTICS \
               WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";
    let mut key_parts = Vec::new();
    for mut row in rows(conn, sql, params()).await? {
        let name: String = take(&mut row, 0)?;
        let column: Option<String> = take(&mut row, 3)?;
        if let (true, Some(column)) = (name == table.name, column) {
            let index: String = take(&mut row, 1)?;
            let seq: u32 = take(&mut row, 2)?;
            key_parts.push((index, seq, column));
        }
    }
    let mut described = Vec::new();
    for mut row in columns {
        let name: String = take(&mut row, 0)?;
        if name != table.name {
            continue;
        }
        let column: String = take(&mut row, 1)?;
        let column_type = MySqlColumnType {
            data_type: take(&mut row, 3)?,
            column_type: take(&mut row, 4)?,
            precision: take(&mut row, 7)?,
            scale: take(&mut row, 8)?,
        };
        let default: Option<String> = take(&mut row, 6)?;
        described.push(ColumnInfo {
            ordinal: take(&mut row, 2)?,
            nullable: take::<String>(&mut row, 5)? == "YES",
            // MariaDB writes defaults as SQL expressions, and no default as NULL.
            default: default.filter(|d| d != "NULL"),
            primary_key_position: key_parts
                .iter()
                .find(|(index, _, c)| index == "PRIMARY" && *c == column)
                .map(|(_, seq, _)| *seq),
            indexed: key_parts.iter().any(|(_, seq, c)| *seq == 1 && *c == column),
            mapping: map(&column_type),
            source_type: column_type.column_type,
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
/// first (ignoring case, then minding it).
pub(super) fn not_found(kind: &'static str, name: String, target: &str, existing: Vec<String>) -> SourceError {
    SourceError::NotFound {
        kind,
        name,
        nearby: closest(target, existing),
    }
}

/// Every row of a statement run with `params` (binary protocol).
async fn rows(conn: &mut Conn, sql: &str, params: Params) -> Result<Vec<Row>, SourceError> {
    conn.exec(sql, params).await.map_err(query_error)
}

/// Column `index` of a metadata row, converted to `T`.
fn take<T: FromValue>(row: &mut Row, index: usize) -> Result<T, SourceError> {
    let column = row
        .columns_ref()
        .get(index)
        .map(|c| c.name_str().into_owned())
        .unwrap_or_default();
    match row.take_opt::<T, usize>(index) {
        Some(Ok(value)) => Ok(value),
        Some(Err(err)) => Err(SourceError::Query {
            code: None,
            message: format!("unexpected {column} in information_schema: {:?}", err.0),
        }),
        None => Err(SourceError::Query {
            code: None,
            message: format!("information_schema row without column {index}"),
        }),
    }
}

/// A DATETIME of a session in UTC as an instant.
fn utc(value: &Value) -> Option<DateTime<Utc>> {
    let Value::Date(year, month, day, hour, minute, second, micros) = *value else {
        return None;
    };
    NaiveDate::from_ymd_opt(i32::from(year), u32::from(month), u32::from(day))?
        .and_hms_micro_opt(u32::from(hour), u32::from(minute), u32::from(second), micros)
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearby_names_come_closest_first() {
        let existing = ["orders", "customers", "contacts", "Customer_notes"]
            .map(String::from)
            .to_vec();
        let err = not_found("table", "crm.customer".into(), "customer", existing);
        let SourceError::NotFound { nearby, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(nearby, ["customers", "contacts", "Customer_notes", "orders"]);
    }
}
