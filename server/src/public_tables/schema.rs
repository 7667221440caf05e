//! The `public` schema in plain SQL: every public table as a DataFusion
//! table read from the catalog (through the session's transaction, so a
//! block sees its own changes).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use sluice_catalog::{Catalog, CatalogError};

use super::values;

/// The name of the schema.
pub const SCHEMA: &str = "public";

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
        matches!(self.catalog.public_table(name), Ok(Some(_)))
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
