//! The read-only `sluice` schema: catalog views as DataFusion tables, so
//! plain SQL (`SELECT ... FROM sluice.connections WHERE ...`) works on them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use sluice_catalog::Catalog;
use sluice_engine::jobs::JobManager;

use crate::{system_filter, views};

/// The name of the schema holding the system tables.
pub const SCHEMA: &str = "sluice";

/// One system table: a view rebuilt from the catalog at every scan.
#[derive(Debug, Clone, Copy)]
enum View {
    Connections,
    Secrets,
    ConnectionTypes,
    ConnectionTypeOptions,
    Jobs,
    Runs,
    SchemaChanges,
    Verifications,
    Alerts,
    AlertDeliveries,
    Roles,
    Grants,
    Audit,
}

impl View {
    const ALL: [(&'static str, View); 13] = [
        ("jobs", View::Jobs),
        ("runs", View::Runs),
        ("schema_changes", View::SchemaChanges),
        ("verifications", View::Verifications),
        ("connections", View::Connections),
        ("secrets", View::Secrets),
        ("connection_types", View::ConnectionTypes),
        ("connection_type_options", View::ConnectionTypeOptions),
        ("alerts", View::Alerts),
        ("alert_deliveries", View::AlertDeliveries),
        ("roles", View::Roles),
        ("grants", View::Grants),
        ("audit", View::Audit),
    ];

    fn schema(self) -> SchemaRef {
        match self {
            View::Connections => views::CONNECTIONS.clone(),
            View::Secrets => views::SECRETS.clone(),
            View::ConnectionTypes => views::CONNECTION_TYPES.clone(),
            View::ConnectionTypeOptions => views::CONNECTION_TYPE_OPTIONS.clone(),
            View::Jobs => views::JOBS.clone(),
            View::Runs => views::RUNS.clone(),
            View::SchemaChanges => views::SCHEMA_CHANGES.clone(),
            View::Verifications => views::VERIFICATIONS.clone(),
            View::Alerts => views::ALERTS.clone(),
            View::AlertDeliveries => views::ALERT_DELIVERIES.clone(),
            View::Roles => views::ROLES.clone(),
            View::Grants => views::GRANTS.clone(),
            View::Audit => views::AUDIT.clone(),
        }
    }

    /// The column a scan's filters can pin to names, so that only those
    /// jobs' records are read.
    fn name_column(self) -> Option<&'static str> {
        match self {
            View::Jobs => Some("name"),
            View::Runs => Some("job"),
            _ => None,
        }
    }

    /// The view's rows; only the rows named in `only` (by the view's name
    /// column) when given.
    fn rows(self, table: &SystemTable, only: Option<&[String]>) -> Result<RecordBatch> {
        let (catalog, jobs) = (&*table.catalog, &*table.jobs);
        let external = |e: sluice_catalog::CatalogError| DataFusionError::External(Box::new(e));
        match self {
            View::Connections => views::connections(catalog).map_err(external),
            View::Secrets => views::secrets(catalog).map_err(external),
            View::ConnectionTypes => Ok(views::connection_types()),
            View::ConnectionTypeOptions => Ok(views::connection_type_options()),
            View::Jobs => views::jobs(catalog, only).map_err(external),
            View::Verifications => views::verifications(catalog).map_err(external),
            View::Alerts => views::alerts(catalog).map_err(external),
            View::AlertDeliveries => views::alert_deliveries(catalog).map_err(external),
            View::Roles => views::roles(catalog, &table.superuser).map_err(external),
            View::Grants => views::grants(catalog).map_err(external),
            View::Audit => views::audit(catalog).map_err(external),
            View::Runs => {
                let changes = catalog.schema_changes().map_err(external)?;
                let runs = match only {
                    None => catalog.runs(None).map_err(external)?,
                    Some(names) => {
                        let mut runs = Vec::new();
                        for job in names.iter().collect::<std::collections::BTreeSet<_>>() {
                            runs.extend(catalog.runs(Some(job)).map_err(external)?);
                        }
                        runs.sort_by_key(|r| r.id);
                        runs
                    }
                };
                Ok(views::runs(&runs, &jobs.live_runs(), &changes))
            }
            View::SchemaChanges => catalog
                .schema_changes()
                .map(|c| views::schema_changes(&c))
                .map_err(external),
        }
    }
}

/// The `sluice` schema provider.
pub struct SystemSchema {
    catalog: Arc<Catalog>,
    jobs: Arc<JobManager>,
    /// The built-in user, shown in `sluice.roles`.
    superuser: String,
}

impl SystemSchema {
    pub fn new(catalog: Arc<Catalog>, jobs: Arc<JobManager>, superuser: &str) -> Self {
        Self {
            catalog,
            jobs,
            superuser: superuser.to_owned(),
        }
    }
}

impl std::fmt::Debug for SystemSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemSchema")
    }
}

impl SystemSchema {
    /// The names of the system tables.
    pub fn names() -> Vec<String> {
        View::ALL.iter().map(|(name, _)| (*name).to_owned()).collect()
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        Self::names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(View::ALL.iter().find(|(n, _)| *n == name).map(|(_, view)| {
            Arc::new(SystemTable {
                view: *view,
                catalog: self.catalog.clone(),
                jobs: self.jobs.clone(),
                superuser: self.superuser.clone(),
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        View::ALL.iter().any(|(n, _)| *n == name)
    }
}

struct SystemTable {
    view: View,
    catalog: Arc<Catalog>,
    jobs: Arc<JobManager>,
    superuser: String,
}

impl std::fmt::Debug for SystemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SystemTable({:?})", self.view)
    }
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let column = self.view.name_column();
        Ok(filters
            .iter()
            .map(|f| match column {
                // Inexact: DataFusion still filters the rows the view returns.
                Some(column) if system_filter::pins(f, column) => TableProviderFilterPushDown::Inexact,
                _ => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let only = (self.view.name_column()).and_then(|column| system_filter::names(filters, column));
        let rows = self.view.rows(self, only.as_deref())?;
        let plan = MemorySourceConfig::try_new_exec(&[vec![rows]], self.schema(), projection.cloned())?;
        Ok(plan)
    }
}
