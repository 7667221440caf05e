//! Reading the warehouse with SQL: a DataFusion schema whose tables read
//! exactly the files of their latest manifest.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::project_schema;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl, PartitionedFile,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

use sluice_catalog::CdcMode;

use super::manifest::{ChangeLayout, DataFile, Manifest};
use super::{LocalWarehouse, check_table_name, merged};
use crate::cdc::{OP_COLUMN, POSITION_COLUMN};
use crate::contract::{DestinationError, quote_with};
use crate::sources::datafusion_sql::session as datafusion_session;

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
        if let Some(manifest) = manifest {
            return Ok(Some(Arc::new(WarehouseTable::new(
                self.warehouse.clone(),
                name,
                manifest,
            ))));
        }
        match name.strip_suffix(CURRENT_VIEW_SUFFIX) {
            Some(history) if !history.is_empty() && check_table_name(history).is_ok() => {
                current_view(&self.warehouse, history).await
            }
            _ => Ok(None),
        }
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

/// `<table>_current` reads the latest state of `HISTORY` table `<table>`.
pub const CURRENT_VIEW_SUFFIX: &str = "_current";

/// The latest state of `HISTORY` table `history` (when it is one, with a
/// key): per key its last change after the last `truncate`, unless that
/// change is a `delete`; without `_sluice_op`.
async fn current_view(warehouse: &LocalWarehouse, history: &str) -> Result<Option<Arc<dyn TableProvider>>> {
    let manifest = warehouse
        .latest_manifest(history)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let Some(manifest) = manifest else {
        return Ok(None);
    };
    let key = match &manifest.changes {
        Some(ChangeLayout {
            mode: CdcMode::History,
            key,
            ..
        }) if !key.is_empty() => key.clone(),
        _ => return Ok(None),
    };
    let q = |name: &str| quote_with(name, '"');
    let columns: Vec<String> = manifest
        .schema
        .fields()
        .iter()
        .filter(|f| f.name() != OP_COLUMN)
        .map(|f| q(f.name()))
        .collect();
    let keys: Vec<String> = key.iter().map(|k| q(k)).collect();
    let (op, position) = (q(OP_COLUMN), q(POSITION_COLUMN));
    let sql = format!(
        "SELECT {columns} FROM (\
           SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {position} DESC) AS \"_sluice_rank\" \
           FROM history \
           WHERE {op} <> 'truncate' AND {position} > \
             (SELECT coalesce(max({position}), '') FROM history WHERE {op} = 'truncate')\
         ) WHERE \"_sluice_rank\" = 1 AND {op} <> 'delete'",
        columns = columns.join(", "),
        keys = keys.join(", "),
    );
    let ctx = datafusion_session(None);
    ctx.register_table(
        "history",
        Arc::new(WarehouseTable::new(warehouse.clone(), history, manifest)),
    )?;
    Ok(Some(ctx.sql(&sql).await?.into_view()))
}

/// One version of a table: a Parquet listing of exactly its manifest's
/// files (and, for a `MERGE` table with deltas, those merged on read).
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

    pub(super) fn warehouse(&self) -> &LocalWarehouse {
        &self.warehouse
    }

    pub(super) fn name(&self) -> &str {
        &self.table
    }

    pub(super) fn manifest(&self) -> &Manifest {
        &self.manifest
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
        (self.warehouse.shared.read_caches).remember(state.runtime_env().cache_manager.get_file_metadata_cache());
        if let (false, Some(layout)) = (self.manifest.deltas.is_empty(), &self.manifest.changes) {
            let scan = (projection, filters, limit);
            return merged::scan(&self.warehouse, &self.table, &self.manifest, layout, state, scan).await;
        }
        if self.manifest.files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(&self.schema(), projection)?)));
        }
        // The session reaches the warehouse's store under its own URL.
        let url = &self.warehouse.shared.url;
        state
            .runtime_env()
            .register_object_store(ObjectStoreUrl::parse(url)?.as_ref(), self.warehouse.store.clone());
        let (encoded, copied): (Vec<&DataFile>, Vec<&DataFile>) =
            self.manifest.files.iter().partition(|file| file.constants.is_empty());
        let mut plans = Vec::new();
        if !encoded.is_empty() {
            plans.push(self.scan_encoded(state, &encoded, projection, filters, limit).await?);
        }
        let mut by_constants: BTreeMap<Vec<&str>, Vec<&DataFile>> = BTreeMap::new();
        for file in copied {
            let columns = file.constants.iter().map(|c| c.column.as_str()).collect();
            by_constants.entry(columns).or_default().push(file);
        }
        for (columns, files) in by_constants {
            plans.push(self.scan_copied(state, &columns, &files, projection, limit)?);
        }
        UnionExec::try_new(plans)
    }
}

impl WarehouseTable {
    /// The files a load encoded, as a Parquet listing.
    async fn scan_encoded(
        &self,
        state: &dyn Session,
        files: &[&DataFile],
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let url = &self.warehouse.shared.url;
        let paths = files
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

    /// Source files loaded as they are, all without the table's `columns`:
    /// those come from each file's constants, as DataFusion reads the
    /// values of `key=value` folders.
    fn scan_copied(
        &self,
        state: &dyn Session,
        columns: &[&str],
        files: &[&DataFile],
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = &self.manifest.schema;
        let (held, constant): (Vec<usize>, Vec<usize>) =
            (0..schema.fields().len()).partition(|&i| !columns.contains(&schema.field(i).name().as_str()));
        let file_schema = Arc::new(Schema::new(
            held.iter().map(|&i| schema.field(i).clone()).collect::<Vec<_>>(),
        ));
        let constant_fields: Vec<FieldRef> = constant.iter().map(|&i| Arc::new(schema.field(i).clone())).collect();
        // The scan numbers the table's columns the file's first, then the
        // constants.
        let order: Vec<usize> = held.iter().chain(&constant).copied().collect();
        let wanted = projection
            .cloned()
            .unwrap_or_else(|| (0..schema.fields().len()).collect());
        let indices = wanted
            .iter()
            .map(|i| order.iter().position(|o| o == i))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| DataFusionError::Internal(format!("projection {wanted:?} is outside {}", self.table)))?;
        let files = files
            .iter()
            .map(|file| {
                let values = constant
                    .iter()
                    .map(|&i| {
                        let field = schema.field(i);
                        let value = file
                            .constants
                            .iter()
                            .find(|c| c.column == *field.name())
                            .ok_or_else(|| {
                                DataFusionError::Internal(format!(
                                    "file {} has no value of {}",
                                    file.name,
                                    field.name()
                                ))
                            })?;
                        value.value(field.data_type())
                    })
                    .collect::<Result<Vec<_>>>()?;
                let path = self.warehouse.data_path(&self.table, &file.name);
                Ok(PartitionedFile::new(path.to_string(), file.bytes).with_partition_values(values))
            })
            .collect::<Result<Vec<_>>>()?;
        let source = ParquetSource::new(
            TableSchema::builder(file_schema)
                .with_table_partition_cols(constant_fields)
                .build(),
        )
        .with_table_parquet_options(state.table_options().parquet.clone());
        let groups = FileGroup::new(files).split_files(state.config().target_partitions().max(1));
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::parse(&self.warehouse.shared.url)?, Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(Some(indices))?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
