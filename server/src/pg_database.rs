//! `pg_catalog.pg_database` (what psql's `\l` reads): one row per
//! database (namespace) the session's role may use, modelled on the row
//! datafusion-pg-catalog makes for the session's own database. Source
//! connections are catalogs of a database, not databases.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{ExecutionPlan, collect};
use sluice_catalog::Catalog;

/// The role a session logged in as, kept in its DataFusion configuration
/// for the tables whose rows depend on it.
#[derive(Debug)]
pub struct SessionRole(pub String);

/// Which databases a role may see.
pub struct Databases {
    /// Any namespace's view of the catalog: namespaces and grants are global.
    pub catalog: Arc<Catalog>,
    pub superuser: String,
}

impl Databases {
    /// The databases `role` may use: every one for the superuser, else
    /// those it holds a privilege on; `current` (the session's) always,
    /// first.
    pub fn visible_to(&self, role: Option<&str>, current: &str) -> Result<Vec<String>> {
        let all = self.catalog.namespaces().map_err(external)?;
        let granted: Vec<String> = match role {
            Some(role) if role == self.superuser => all,
            Some(role) => {
                let grants = self.catalog.grants().map_err(external)?;
                all.into_iter()
                    .filter(|name| grants.iter().any(|g| g.role == role && g.database == *name))
                    .collect()
            }
            None => Vec::new(),
        };
        Ok(std::iter::once(current.to_owned())
            .chain(granted.into_iter().filter(|name| name != current))
            .collect())
    }
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Databases")
            .field("superuser", &self.superuser)
            .finish_non_exhaustive()
    }
}

/// `pg_database` as the session's role sees it.
pub struct PgDatabase {
    /// datafusion-pg-catalog's table.
    inner: Arc<dyn TableProvider>,
    databases: Arc<Databases>,
    /// The database (namespace) of the sessions this table serves.
    current: String,
}

impl PgDatabase {
    pub fn new(inner: Arc<dyn TableProvider>, databases: Arc<Databases>, current: &str) -> Self {
        Self {
            inner,
            databases,
            current: current.to_owned(),
        }
    }

    /// The rows: the inner table's row of `current`, once per visible
    /// database with its name and an oid of its own.
    async fn rows(&self, state: &dyn Session) -> Result<RecordBatch> {
        let role = state.config().get_extension::<SessionRole>();
        let names = self
            .databases
            .visible_to(role.as_deref().map(|r| r.0.as_str()), &self.current)?;
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = collect(plan, state.task_ctx()).await?;
        let all = concat_batches(&self.inner.schema(), &batches)?;
        let datname = all.column_by_name("datname").ok_or_else(|| missing("datname"))?;
        let datname = datname
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| missing("datname as text"))?;
        let Some(row) = (0..all.num_rows()).find(|&i| datname.value(i) == self.current) else {
            return Ok(RecordBatch::new_empty(self.inner.schema()));
        };
        let indices = UInt32Array::from(vec![row as u32; names.len()]);
        let mut columns = Vec::with_capacity(all.num_columns());
        for (field, column) in all.schema().fields().iter().zip(all.columns()) {
            let column: ArrayRef = match field.name().as_str() {
                "datname" => Arc::new(StringArray::from_iter_values(names.iter())),
                "oid" => oids(column, row, names.len())?,
                _ => take(column, &indices, None)?,
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new(all.schema(), columns)?)
    }
}

/// The current database keeps its oid; the k-th other gets it plus k.
fn oids(column: &ArrayRef, row: usize, n: usize) -> Result<ArrayRef> {
    let base = column
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| missing("oid as int4"))?
        .value(row);
    Ok(Arc::new(Int32Array::from_iter_values((0..n as i32).map(|k| base + k))))
}

fn missing(what: &str) -> DataFusionError {
    DataFusionError::Internal(format!("pg_database has no {what} column"))
}

fn external(e: sluice_catalog::CatalogError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDatabase").field("current", &self.current).finish()
    }
}

#[async_trait]
impl TableProvider for PgDatabase {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = self.rows(state).await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![rows]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}
