//! `sluice_admin.*`: every `sluice.*` system table over every database, with
//! the database's name first (`namespace`). Only the superuser reads them
//! ([`crate::privileges::plain_sql`]).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{Column, Result};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, lit};

use crate::namespace::Registry;
use crate::system_tables::SystemSchema;

/// The `sluice_admin` schema.
pub struct AdminSchema {
    namespaces: Registry,
    superuser: String,
}

impl AdminSchema {
    pub fn new(namespaces: Registry, superuser: &str) -> Self {
        Self {
            namespaces,
            superuser: superuser.to_owned(),
        }
    }
}

impl std::fmt::Debug for AdminSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminSchema")
    }
}

#[async_trait]
impl SchemaProvider for AdminSchema {
    fn table_names(&self) -> Vec<String> {
        SystemSchema::names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !SystemSchema::names().iter().any(|n| n == name) {
            return Ok(None);
        }
        let namespaces: Vec<_> = self
            .namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut union: Option<LogicalPlanBuilder> = None;
        for namespace in namespaces {
            let system = SystemSchema::new(namespace.catalog.clone(), namespace.jobs.clone(), &self.superuser);
            let Some(table) = system.table(name).await? else {
                return Ok(None);
            };
            let scan = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?;
            let columns: Vec<Expr> = std::iter::once(lit(namespace.name.clone()).alias("namespace"))
                .chain((scan.schema().iter()).map(|(qualifier, field)| Expr::Column(Column::from((qualifier, field)))))
                .collect();
            let plan = scan.project(columns)?.build()?;
            union = Some(match union {
                None => LogicalPlanBuilder::from(plan),
                Some(builder) => builder.union(plan)?,
            });
        }
        let Some(union) = union else {
            return Ok(None);
        };
        Ok(Some(Arc::new(ViewTable::new(union.build()?, None))))
    }

    fn table_exist(&self, name: &str) -> bool {
        SystemSchema::names().iter().any(|n| n == name)
    }
}
