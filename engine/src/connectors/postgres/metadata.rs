//! Schemas, tables and columns from the PostgreSQL catalog. Names are
//! always bind parameters.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use super::types::{PgColumnType, PgTypeKind, map};
use crate::contract::{ColumnInfo, SourceError, TableDescription, TableInfo, TableKind, TableRef, closest};

use super::query_error;

/// Schemas that hold user tables: not the catalogs, TOAST or temporary ones.
const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'";

/// Relation kinds listed as tables.
const RELKINDS: &str = "c.relkind IN ('r', 'v', 'm', 'p', 'f')";

/// Per relation `c`: estimated rows (never-analyzed relations left out),
/// total size, and the last (auto)vacuum or (auto)analyze, summed or
/// maximised over the leaf partitions of a partitioned table.
const STATS: &str = "CROSS JOIN LATERAL (
    SELECT sum(NULLIF(r.reltuples, -1)::float8) AS estimated_rows,
           sum(pg_total_relation_size(r.oid))::int8 AS size_bytes,
           max(GREATEST(pg_stat_get_last_vacuum_time(r.oid), pg_stat_get_last_autovacuum_time(r.oid),
                        pg_stat_get_last_analyze_time(r.oid), pg_stat_get_last_autoanalyze_time(r.oid)))
               AS last_modified
    FROM (SELECT c.oid AS relid WHERE c.relkind <> 'p'
          UNION ALL
          SELECT t.relid FROM pg_partition_tree(c.oid) t WHERE c.relkind = 'p' AND t.isleaf) leaf
    JOIN pg_class r ON r.oid = leaf.relid
) s";

/// User schemas, in byte order.
pub(super) async fn schemas(client: &Client) -> Result<Vec<String>, SourceError> {
    let sql = format!("SELECT n.nspname::text FROM pg_namespace n WHERE {USER_SCHEMAS}");
    let rows = client.query(&sql, &[]).await.map_err(query_error)?;
    let mut names = rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<Vec<String>, _>>()
        .map_err(query_error)?;
    names.sort();
    Ok(names)
}

/// Tables, views, materialized views, partitioned and foreign tables of
/// `schema` (or of every user schema); partitions are not listed.
pub(super) async fn tables(client: &Client, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
    let (filter, params): (&str, Vec<&(dyn ToSql + Sync)>) = match &schema {
        Some(schema) => ("n.nspname = $1", vec![schema]),
        None => (USER_SCHEMAS, vec![]),
    };
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text, s.estimated_rows, s.size_bytes, s.last_modified
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace {STATS}
         WHERE {RELKINDS} AND NOT c.relispartition AND {filter}"
    );
    let rows = client.query(&sql, &params).await.map_err(query_error)?;
    let mut tables = rows.iter().map(table_info).collect::<Result<Vec<_>, _>>()?;
    if let (Some(schema), true) = (schema, tables.is_empty()) {
        ensure_schema(client, schema).await?;
    }
    tables.sort_by(|a, b| (&a.table.schema, &a.table.name).cmp(&(&b.table.schema, &b.table.name)));
    Ok(tables)
}

fn table_info(row: &Row) -> Result<TableInfo, SourceError> {
    let kind = table_kind(&row.try_get::<_, String>(2).map_err(query_error)?)?;
    let estimated_rows: Option<f64> = row.try_get(3).map_err(query_error)?;
    let size_bytes: Option<i64> = row.try_get(4).map_err(query_error)?;
    Ok(TableInfo {
        table: TableRef {
            schema: row.try_get(0).map_err(query_error)?,
            name: row.try_get(1).map_err(query_error)?,
        },
        kind,
        estimated_rows: rows_estimate(kind, estimated_rows),
        // Views and foreign tables store nothing here.
        size_bytes: size_bytes.filter(|_| !matches!(kind, TableKind::View | TableKind::Foreign)),
        files: None,
        last_modified: row.try_get(5).map_err(query_error)?,
    })
}

fn rows_estimate(kind: TableKind, reltuples: Option<f64>) -> Option<i64> {
    (kind != TableKind::View)
        .then_some(reltuples)
        .flatten()
        .map(|rows| rows.round() as i64)
}

fn table_kind(relkind: &str) -> Result<TableKind, SourceError> {
    Ok(match relkind {
        "r" => TableKind::Table,
        "v" => TableKind::View,
        "m" => TableKind::MaterializedView,
        "p" => TableKind::Partitioned,
        "f" => TableKind::Foreign,
        other => {
            return Err(SourceError::Query {
                code: None,
                message: format!("unexpected relation kind '{other}'"),
            });
        }
    })
}

/// Columns (with keys, indexes and type mappings) and statistics of one
/// table, view or partition.
pub(super) async fn describe(client: &Client, table: &TableRef) -> Result<TableDescription, SourceError> {
    let sql = format!(
        "SELECT c.oid, c.relkind::text, s.estimated_rows
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace {STATS}
         WHERE n.nspname = $1 AND c.relname = $2 AND {RELKINDS}"
    );
    let rows = client
        .query(&sql, &[&table.schema, &table.name])
        .await
        .map_err(query_error)?;
    let Some(relation) = rows.first() else {
        ensure_schema(client, &table.schema).await?;
        return Err(SourceError::NotFound {
            kind: "table",
            name: table.to_string(),
            nearby: closest(&table.name, table_names(client, &table.schema).await?),
        });
    };
    let oid: u32 = relation.try_get(0).map_err(query_error)?;
    let kind = table_kind(&relation.try_get::<_, String>(1).map_err(query_error)?)?;
    let estimated_rows = rows_estimate(kind, relation.try_get(2).map_err(query_error)?);
    let types = types(client, oid).await?;
    let columns = client
        .query(COLUMNS, &[&oid])
        .await
        .map_err(query_error)?
        .iter()
        .enumerate()
        .map(|(i, row)| column_info(row, i, &types))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TableDescription {
        table: table.clone(),
        kind,
        columns,
        estimated_rows,
    })
}

/// Live columns of relation `$1`, in order.
const COLUMNS: &str = "
    SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.atttypid, a.atttypmod, NOT a.attnotnull,
           CASE a.attgenerated
               WHEN 's' THEN 'GENERATED ALWAYS AS (' || pg_get_expr(d.adbin, d.adrelid) || ') STORED'
               WHEN 'v' THEN 'GENERATED ALWAYS AS (' || pg_get_expr(d.adbin, d.adrelid) || ') VIRTUAL'
               ELSE CASE a.attidentity
                   WHEN 'a' THEN 'GENERATED ALWAYS AS IDENTITY'
                   WHEN 'd' THEN 'GENERATED BY DEFAULT AS IDENTITY'
                   ELSE pg_get_expr(d.adbin, d.adrelid)
               END
           END,
           (SELECT k.ord::int4
            FROM pg_constraint p, unnest(p.conkey) WITH ORDINALITY k(attnum, ord)
            WHERE p.conrelid = a.attrelid AND p.contype = 'p' AND k.attnum = a.attnum),
           EXISTS (SELECT FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisvalid AND i.indkey[0] = a.attnum)
    FROM pg_attribute a
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum";

fn column_info(row: &Row, index: usize, types: &Types) -> Result<ColumnInfo, SourceError> {
    let column_type = types.resolve(
        row.try_get(2).map_err(query_error)?,
        row.try_get(3).map_err(query_error)?,
        0,
    )?;
    let position: Option<i32> = row.try_get(6).map_err(query_error)?;
    Ok(ColumnInfo {
        name: row.try_get(0).map_err(query_error)?,
        ordinal: u32::try_from(index + 1).unwrap_or(u32::MAX),
        source_type: row.try_get(1).map_err(query_error)?,
        nullable: row.try_get(4).map_err(query_error)?,
        default: row.try_get(5).map_err(query_error)?,
        primary_key_position: position.and_then(|p| u32::try_from(p).ok()),
        indexed: row.try_get(7).map_err(query_error)?,
        mapping: map(&column_type),
    })
}

/// Every type the columns of relation `$1` need, keyed by (oid, typmod):
/// the column types, domains' base types and arrays' element types, all
/// the way down. A domain's base carries the domain's typmod, an array's
/// element the array's.
const TYPES: &str = "
    WITH RECURSIVE needed(oid, typmod) AS (
        SELECT a.atttypid, a.atttypmod FROM pg_attribute a
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
        UNION
        SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END,
               CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE needed.typmod END
        FROM needed JOIN pg_type t ON t.oid = needed.oid
        WHERE t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0)
    )
    SELECT needed.oid, needed.typmod, t.typname::text, format_type(needed.oid, needed.typmod), t.typtype::text,
           t.typcategory = 'A' AND t.typelem <> 0, t.typbasetype, t.typtypmod, t.typelem
    FROM needed JOIN pg_type t ON t.oid = needed.oid";

struct TypeRow {
    name: String,
    formatted: String,
    typtype: String,
    is_array: bool,
    base: u32,
    base_typmod: i32,
    element: u32,
}

struct Types(HashMap<(u32, i32), TypeRow>);

/// Domains over domains (or arrays) deeper than this are read as text.
const MAX_TYPE_DEPTH: usize = 32;

async fn types(client: &Client, relation: u32) -> Result<Types, SourceError> {
    let rows = client.query(TYPES, &[&relation]).await.map_err(query_error)?;
    let mut types = HashMap::with_capacity(rows.len());
    for row in rows {
        types.insert(
            (
                row.try_get(0).map_err(query_error)?,
                row.try_get(1).map_err(query_error)?,
            ),
            TypeRow {
                name: row.try_get(2).map_err(query_error)?,
                formatted: row.try_get(3).map_err(query_error)?,
                typtype: row.try_get(4).map_err(query_error)?,
                is_array: row.try_get(5).map_err(query_error)?,
                base: row.try_get(6).map_err(query_error)?,
                base_typmod: row.try_get(7).map_err(query_error)?,
                element: row.try_get(8).map_err(query_error)?,
            },
        );
    }
    Ok(Types(types))
}

impl Types {
    /// The type `oid` with modifier `typmod`, with its base or element
    /// types resolved.
    fn resolve(&self, oid: u32, typmod: i32, depth: usize) -> Result<PgColumnType, SourceError> {
        let row = self.0.get(&(oid, typmod)).ok_or_else(|| SourceError::Query {
            code: None,
            message: format!("type {oid} vanished while the table was described"),
        })?;
        let nested = depth < MAX_TYPE_DEPTH;
        let kind = match row.typtype.as_str() {
            "d" if nested => PgTypeKind::Domain(Box::new(self.resolve(row.base, row.base_typmod, depth + 1)?)),
            "b" if row.is_array && nested => {
                PgTypeKind::Array(Box::new(self.resolve(row.element, typmod, depth + 1)?))
            }
            "e" => PgTypeKind::Enum,
            "r" | "m" => PgTypeKind::Range,
            "c" => PgTypeKind::Composite,
            "b" => PgTypeKind::Base,
            _ => PgTypeKind::Pseudo,
        };
        let (precision, scale) = if row.name == "numeric" {
            numeric_modifiers(typmod)
        } else {
            (None, None)
        };
        Ok(PgColumnType {
            name: row.name.clone(),
            formatted: row.formatted.clone(),
            precision,
            scale,
            kind,
        })
    }
}

/// Precision and (non-negative) scale of `numeric(p, s)` from its typmod.
fn numeric_modifiers(typmod: i32) -> (Option<u32>, Option<u32>) {
    // typmod = ((precision << 16) | (scale & 0x7ff)) + 4; the scale is an
    // 11-bit signed number since PostgreSQL 15.
    let Some(modifiers) = typmod.checked_sub(4).filter(|m| *m >= 0) else {
        return (None, None);
    };
    let precision = (modifiers >> 16) & 0xffff;
    let scale = ((modifiers & 0x7ff) ^ 0x400) - 0x400;
    (u32::try_from(precision).ok(), u32::try_from(scale).ok())
}

/// `NotFound` for `schema` unless it exists.
async fn ensure_schema(client: &Client, schema: &str) -> Result<(), SourceError> {
    let exists = client
        .query_opt("SELECT FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(query_error)?
        .is_some();
    if exists {
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
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND {RELKINDS} AND NOT c.relispartition"
    );
    let rows = client.query(&sql, &[&schema]).await.map_err(query_error)?;
    rows.iter()
        .map(|row| row.try_get(0))
        .collect::<Result<Vec<String>, _>>()
        .map_err(query_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_typmods() {
        // numeric(12,2), numeric(38,0), numeric(3,-2) (PostgreSQL 15+), numeric.
        assert_eq!(numeric_modifiers(((12 << 16) | 2) + 4), (Some(12), Some(2)));
        assert_eq!(numeric_modifiers((38 << 16) + 4), (Some(38), Some(0)));
        assert_eq!(numeric_modifiers(((3 << 16) | (-2i32 & 0x7ff)) + 4), (Some(3), None));
        assert_eq!(numeric_modifiers(-1), (None, None));
    }
}
