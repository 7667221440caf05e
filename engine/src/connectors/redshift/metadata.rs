//! Schemas, tables and columns from Redshift's catalog views: `pg_namespace`
//! for schemas, `svv_tables` and `svv_table_info` (row estimates, sizes,
//! sort keys; queried on its own and matched by name) for tables,
//! `svv_columns` for columns. Every query is a
//! simple query with the names written as literals: Redshift answers the
//! extended protocol's bind parameters only in text, and a simple query is
//! what every Redshift version serves.

use std::collections::HashMap;

use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use super::dialect::string;
use super::types::{RsColumnType, map};
use crate::connectors::postgres::query_error;
use crate::contract::{ColumnInfo, SourceError, TableDescription, TableInfo, TableKind, TableRef, closest};

/// Schemas that hold user tables, as a condition on a schema name column.
fn user_schema(column: &str) -> String {
    format!("{column} NOT IN ('information_schema', 'catalog_history') AND {column} !~ '^pg_'")
}

/// `svv_table_info` reports sizes in 1 MB blocks.
const BLOCK_BYTES: i64 = 1024 * 1024;

/// The rows of one simple query.
async fn query(client: &Client, sql: &str) -> Result<Vec<SimpleQueryRow>, SourceError> {
    Ok(client
        .simple_query(sql)
        .await
        .map_err(query_error)?
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect())
}

/// A name as a string literal; names with a backslash cannot be written the
/// same way for Redshift and PostgreSQL, so they are refused.
fn name(value: &str) -> Result<String, SourceError> {
    string(value).ok_or_else(|| SourceError::Query {
        code: Some("22023".into()),
        message: format!("\"{value}\": names with a backslash cannot be looked up in Redshift's catalog"),
    })
}

fn text(row: &SimpleQueryRow, i: usize) -> Option<String> {
    row.get(i).map(str::to_owned)
}

fn number<T: std::str::FromStr>(row: &SimpleQueryRow, i: usize) -> Result<Option<T>, SourceError> {
    row.get(i)
        .map(|v| {
            v.trim().parse().map_err(|_| SourceError::Query {
                code: None,
                message: format!("the catalog returned \"{v}\" where a number was expected"),
            })
        })
        .transpose()
}

/// User schemas, in byte order.
pub(super) async fn schemas(client: &Client) -> Result<Vec<String>, SourceError> {
    let sql = format!("SELECT nspname FROM pg_namespace WHERE {}", user_schema("nspname"));
    let mut names: Vec<String> = query(client, &sql).await?.iter().filter_map(|r| text(r, 0)).collect();
    names.sort();
    Ok(names)
}

/// Statistics `svv_table_info` keeps for a table that holds data.
#[derive(Default)]
struct Stats {
    estimated_rows: Option<i64>,
    size_bytes: Option<i64>,
    sort_key: Option<String>,
}

/// The statistics of the tables `filter` (a condition on `"schema"` and
/// `"table"`) selects, by schema and name. A query of its own: system views
/// of the compute nodes are never joined with the leader node's catalog.
async fn stats(client: &Client, filter: &str) -> Result<HashMap<(String, String), Stats>, SourceError> {
    let sql = format!(
        "SELECT \"schema\", \"table\", estimated_visible_rows, tbl_rows, size, sortkey1 FROM svv_table_info WHERE {filter}"
    );
    let mut stats = HashMap::new();
    for row in query(client, &sql).await? {
        let visible: Option<i64> = number(&row, 2)?;
        let stored: Option<i64> = number(&row, 3)?;
        let blocks: Option<i64> = number(&row, 4)?;
        stats.insert(
            (text(&row, 0).unwrap_or_default(), text(&row, 1).unwrap_or_default()),
            Stats {
                estimated_rows: visible.or(stored),
                size_bytes: blocks.map(|b| b.saturating_mul(BLOCK_BYTES)),
                sort_key: text(&row, 5),
            },
        );
    }
    Ok(stats)
}

/// Tables and views of `schema` (or of every user schema), with the row
/// estimate and size `svv_table_info` keeps for tables that hold data.
pub(super) async fn tables(client: &Client, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
    let (filter, stats_filter) = match schema {
        Some(schema) => (
            format!("table_schema = {}", name(schema)?),
            format!("\"schema\" = {}", name(schema)?),
        ),
        None => (user_schema("table_schema"), user_schema("\"schema\"")),
    };
    let sql = format!(
        "SELECT table_schema, table_name, table_type FROM svv_tables \
         WHERE table_catalog = current_database() AND {filter}"
    );
    let listed = query(client, &sql).await?;
    let mut stats = stats(client, &stats_filter).await?;
    let mut tables = Vec::new();
    for row in listed {
        let kind = table_kind(row.get(2).unwrap_or_default());
        let table = TableRef {
            schema: text(&row, 0).unwrap_or_default(),
            name: text(&row, 1).unwrap_or_default(),
        };
        let stats = stats
            .remove(&(table.schema.clone(), table.name.clone()))
            .unwrap_or_default();
        let stored = kind == TableKind::Table;
        tables.push(TableInfo {
            table,
            kind,
            estimated_rows: stats.estimated_rows.filter(|_| stored),
            size_bytes: stats.size_bytes.filter(|_| stored),
            files: None,
            last_modified: None,
        });
    }
    if let (Some(schema), true) = (schema, tables.is_empty()) {
        ensure_schema(client, schema).await?;
    }
    tables.sort_by(|a, b| (&a.table.schema, &a.table.name).cmp(&(&b.table.schema, &b.table.name)));
    Ok(tables)
}

fn table_kind(table_type: &str) -> TableKind {
    match table_type {
        "VIEW" => TableKind::View,
        "EXTERNAL TABLE" => TableKind::Foreign,
        _ => TableKind::Table,
    }
}

/// Columns (with type mappings), the leading sort key column (marked
/// indexed: range filters on it skip blocks) and the row estimate of one
/// table or view.
pub(super) async fn describe(client: &Client, table: &TableRef) -> Result<TableDescription, SourceError> {
    let (schema, table_name) = (name(&table.schema)?, name(&table.name)?);
    let relation = format!(
        "SELECT table_type FROM svv_tables \
         WHERE table_catalog = current_database() AND table_schema = {schema} AND table_name = {table_name}"
    );
    let Some(relation) = query(client, &relation).await?.into_iter().next() else {
        ensure_schema(client, &table.schema).await?;
        return Err(SourceError::NotFound {
            kind: "table",
            name: table.to_string(),
            nearby: closest(&table.name, table_names(client, &table.schema).await?),
        });
    };
    let kind = table_kind(relation.get(0).unwrap_or_default());
    let stats = stats(client, &format!("\"schema\" = {schema} AND \"table\" = {table_name}"))
        .await?
        .into_values()
        .next()
        .unwrap_or_default();
    let estimated_rows = stats.estimated_rows.filter(|_| kind == TableKind::Table);
    let sort_key = stats.sort_key;
    let columns = format!(
        "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale, is_nullable, \
                column_default \
         FROM svv_columns WHERE table_schema = {schema} AND table_name = {table_name} ORDER BY ordinal_position"
    );
    let columns = query(client, &columns)
        .await?
        .iter()
        .enumerate()
        .map(|(i, row)| column_info(row, i, sort_key.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TableDescription {
        table: table.clone(),
        kind,
        columns,
        estimated_rows,
    })
}

fn column_info(row: &SimpleQueryRow, index: usize, sort_key: Option<&str>) -> Result<ColumnInfo, SourceError> {
    let column_name = text(row, 0).unwrap_or_default();
    let column_type = RsColumnType {
        data_type: text(row, 1).unwrap_or_default(),
        length: number(row, 2)?,
        precision: number(row, 3)?,
        scale: number(row, 4)?,
    };
    Ok(ColumnInfo {
        ordinal: u32::try_from(index + 1).unwrap_or(u32::MAX),
        source_type: column_type.formatted(),
        nullable: row.get(5) != Some("NO"),
        default: text(row, 6),
        // Redshift does not enforce primary keys: none is claimed.
        primary_key_position: None,
        indexed: sort_key == Some(column_name.as_str()),
        mapping: map(&column_type),
        name: column_name,
    })
}

/// `NotFound` for `schema` unless it exists.
async fn ensure_schema(client: &Client, schema: &str) -> Result<(), SourceError> {
    let sql = format!("SELECT 1 FROM pg_namespace WHERE nspname = {}", name(schema)?);
    if !query(client, &sql).await?.is_empty() {
        return Ok(());
    }
    Err(SourceError::NotFound {
        kind: "schema",
        name: schema.to_owned(),
        nearby: closest(schema, schemas(client).await?),
    })
}

async fn table_names(client: &Client, schema: &str) -> Result<Vec<String>, SourceError> {
    let sql = format!(
        "SELECT table_name FROM svv_tables WHERE table_catalog = current_database() AND table_schema = {}",
        name(schema)?
    );
    Ok(query(client, &sql).await?.iter().filter_map(|r| text(r, 0)).collect())
}
