//! The `public` schema in plain SQL: every public table as a DataFusion
//! table read from the catalog (through the session's transaction, so a
//! block sees its own changes).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use sluice_catalog::{Catalog, CatalogError};

use super::values;

/// The name of the schema.
pub const SCHEMA: &str = "public";

/// The hidden table of this schema that `information_schema.table_constraints`
/// is rewritten to (`pg_rewrite`): one row per primary key and unique
/// constraint of the public tables, as PostgreSQL lists them.
pub const TABLE_CONSTRAINTS: &str = "_sluice_table_constraints";

static CONSTRAINT_COLUMNS: [&str; 9] = [
    "constraint_catalog",
    "constraint_schema",
    "constraint_name",
    "table_catalog",
    "table_schema",
    "table_name",
    "constraint_type",
    "is_deferrable",
    "initially_deferred",
];

/// The public tables' keys as `information_schema.table_constraints` rows.
fn table_constraints(catalog: &Catalog) -> Result<RecordBatch> {
    let mut rows: Vec<[String; 9]> = Vec::new();
    for table in catalog.public_tables().map_err(external)? {
        for key in &table.keys {
            let kind = if key.primary { "PRIMARY KEY" } else { "UNIQUE" };
            rows.push([
                catalog.namespace_name().into(),
                SCHEMA.into(),
                key.name.clone(),
                catalog.namespace_name().into(),
                SCHEMA.into(),
                table.name.clone(),
                kind.into(),
                "NO".into(),
                "NO".into(),
            ]);
        }
    }
    let schema = Arc::new(Schema::new(
        CONSTRAINT_COLUMNS
            .iter()
            .map(|name| Field::new(*name, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let columns = (0..CONSTRAINT_COLUMNS.len())
        .map(|i| Arc::new(rows.iter().map(|row| Some(row[i].as_str())).collect::<StringArray>()) as ArrayRef)
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The `public` schema.
pub struct PublicSchema {
    catalog: Arc<Catalog>,
}

impl PublicSchema {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

fn external(e: CatalogError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        // A catalog that cannot be read lists nothing; reading a table reports the error.
        self.catalog
            .public_tables()
            .map(|tables| tables.into_iter().map(|t| t.name).collect())
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name == TABLE_CONSTRAINTS {
            let batch = table_constraints(&self.catalog)?;
            let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
            return Ok(Some(Arc::new(table)));
        }
        let table = self.catalog.public_table(name).map_err(external)?;
        Ok(table.map(|table| {
            Arc::new(PublicTableProvider {
                catalog: self.catalog.clone(),
                schema: values::schema(&table),
                name: table.name,
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        name == TABLE_CONSTRAINTS || matches!(self.catalog.public_table(name), Ok(Some(_)))
    }
}

/// One public table; its rows are read at each scan.
struct PublicTableProvider {
    catalog: Arc<Catalog>,
    name: String,
    schema: SchemaRef,
}

impl std::fmt::Debug for PublicSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicSchema")
    }
}

impl std::fmt::Debug for PublicTableProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicTable({})", self.name)
    }
}

#[async_trait]
impl TableProvider for PublicTableProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = self
            .catalog
            .public_table(&self.name)
            .map_err(external)?
            .ok_or_else(|| DataFusionError::Plan(format!("table public.{} not found: it was dropped", self.name)))?;
        let rows: Vec<_> = table.rows.iter().collect();
        let batch = RecordBatch::try_new(self.schema.clone(), values::columns(&table, &rows))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
