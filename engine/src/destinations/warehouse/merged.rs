//! Merge-on-read of a CDC `MERGE` table (docs/cdc.md, "The warehouse"): a
//! change batch writes only the latest version of each key it touched (a
//! delta file, deletes as `delete` rows) instead of rewriting the table,
//! and a read combines the table's files with its deltas: per key, the row
//! with the highest `_sluice_position`, unless that row is a delete.
//! Compaction (`compaction.rs`) folds the deltas in, so reads stay fast
//! however many changes arrive.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::LocalWarehouse;
use super::manifest::{ChangeLayout, Manifest};
use super::read::WarehouseTable;
use crate::cdc::{OP_COLUMN, POSITION_COLUMN};
use crate::contract::quote_with;
use crate::sources::datafusion_sql::session as datafusion_session;

/// The schema of a table's delta files: its columns, then `_sluice_op`.
pub(super) fn delta_schema(table: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The rows of version `manifest` of `MERGE` table `table`, whose deltas
/// are not empty, as one scan: the table's rows whose key no delta has,
/// then each delta key's latest row unless it is a delete.
pub(super) async fn scan(
    warehouse: &LocalWarehouse,
    table: &str,
    manifest: &Manifest,
    layout: &ChangeLayout,
    state: &dyn Session,
    (projection, filters, limit): (Option<&Vec<usize>>, &[Expr], Option<usize>),
) -> Result<Arc<dyn ExecutionPlan>> {
    let files = Manifest {
        deltas: Vec::new(),
        ..manifest.clone()
    };
    let deltas = Manifest {
        schema: delta_schema(&manifest.schema),
        files: manifest.deltas.clone(),
        deltas: Vec::new(),
        ..manifest.clone()
    };
    let q = |name: &str| quote_with(name, '"');
    let columns: Vec<String> = manifest.schema.fields().iter().map(|f| q(f.name())).collect();
    let columns = columns.join(", ");
    let keys: Vec<String> = layout.key.iter().map(|k| q(k)).collect();
    let on: Vec<String> = keys.iter().map(|k| format!("f.{k} = d.{k}")).collect();
    let (op, position) = (q(OP_COLUMN), q(POSITION_COLUMN));
    let sql = format!(
        "SELECT {columns} FROM files f LEFT ANTI JOIN (SELECT DISTINCT {keys} FROM deltas) d ON {on} \
         UNION ALL \
         SELECT {columns} FROM (\
           SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {position} DESC) AS \"_sluice_rank\" \
           FROM deltas\
         ) WHERE \"_sluice_rank\" = 1 AND {op} <> 'delete'",
        keys = keys.join(", "),
        on = on.join(" AND "),
    );
    let ctx = datafusion_session(None);
    ctx.register_table("files", Arc::new(WarehouseTable::new(warehouse.clone(), table, files)))?;
    ctx.register_table(
        "deltas",
        Arc::new(WarehouseTable::new(warehouse.clone(), table, deltas)),
    )?;
    ctx.sql(&sql)
        .await?
        .into_view()
        .scan(state, projection, filters, limit)
        .await
}
