//! Reading the warehouse with SQL: a DataFusion schema whose tables read
//! exactly the files of their latest manifest.

use std::fmt;
use std::sync::{Arc, PoisonError};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::project_schema;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;

use super::manifest::Manifest;
use super::{LocalWarehouse, check_table_name};
use crate::destinations::DestinationError;

/// The warehouse's tables as a DataFusion schema (register it in a catalog,
/// e.g. as `warehouse`). Each query reads the table's latest version.
///
/// `table_names` lists the tables found when the schema was created plus
/// those created, dropped or looked up since through this warehouse.
#[derive(Debug)]
pub struct WarehouseSchema {
    warehouse: LocalWarehouse,
}

impl WarehouseSchema {
    /// A schema over `warehouse`, listing its tables now.
    pub async fn new(warehouse: LocalWarehouse) -> Result<Self, DestinationError> {
        let tables = warehouse.list_tables().await?;
        *warehouse.shared.tables.write().unwrap_or_else(PoisonError::into_inner) = tables;
        Ok(Self { warehouse })
    }
}

#[async_trait]
impl SchemaProvider for WarehouseSchema {
    fn table_names(&self) -> Vec<String> {
        let tables = self
            .warehouse
            .shared
            .tables
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        tables.iter().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if check_table_name(name).is_err() {
            return Ok(None);
        }
        let manifest = self
            .warehouse
            .latest_manifest(name)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.warehouse.note_table(name, manifest.is_some());
        Ok(manifest.map(|manifest| {
            Arc::new(WarehouseTable::new(self.warehouse.clone(), name, manifest)) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        let tables = self
            .warehouse
            .shared
            .tables
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        tables.contains(name)
    }
}

/// One version of a table: a Parquet listing of exactly its manifest's files.
pub(super) struct WarehouseTable {
    warehouse: LocalWarehouse,
    table: String,
    manifest: Manifest,
}

impl WarehouseTable {
    /// The version `manifest` of `table`.
    pub(super) fn new(warehouse: LocalWarehouse, table: &str, manifest: Manifest) -> Self {
        Self {
            warehouse,
            table: table.to_owned(),
            manifest,
        }
    }
}

impl fmt::Debug for WarehouseTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WarehouseTable({} v{})", self.table, self.manifest.version)
    }
}

#[async_trait]
impl TableProvider for WarehouseTable {
    fn schema(&self) -> SchemaRef {
        self.manifest.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters prune row groups and pages; DataFusion still applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.manifest.files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(&self.schema(), projection)?)));
        }
        // The session reaches the warehouse's store under its own URL.
        let url = &self.warehouse.shared.url;
        state
            .runtime_env()
            .register_object_store(ObjectStoreUrl::parse(url)?.as_ref(), self.warehouse.store.clone());
        let paths = self
            .manifest
            .files
            .iter()
            .map(|file| ListingTableUrl::parse(format!("{url}/{}", self.warehouse.data_path(&self.table, &file.name))))
            .collect::<Result<Vec<_>>>()?;
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let config = ListingTableConfig::new_with_multi_paths(paths)
            .with_listing_options(ListingOptions::new(Arc::new(format)).with_file_extension(".parquet"))
            .with_schema(self.manifest.schema.clone());
        ListingTable::try_new(config)?
            .scan(state, projection, filters, limit)
            .await
    }
}
