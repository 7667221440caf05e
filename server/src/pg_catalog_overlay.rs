//! Corrections to datafusion-pg-catalog's `pg_catalog` tables, as views
//! over the originals: columns clients' metadata queries read that it lacks
//! (`pg_class.reloptions`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, lit};

/// `pg_catalog` with the corrected tables.
#[derive(Debug)]
pub struct PgCatalogOverlay {
    inner: Arc<dyn SchemaProvider>,
}

impl PgCatalogOverlay {
    pub fn new(inner: Arc<dyn SchemaProvider>) -> Self {
        Self { inner }
    }
}

/// `table` with `extra` columns appended.
fn with_columns(name: &str, table: Arc<dyn TableProvider>, extra: Vec<Expr>) -> Result<Arc<dyn TableProvider>> {
    let builder = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?;
    let mut columns: Vec<Expr> = builder
        .schema()
        .iter()
        .map(|(qualifier, field)| Expr::Column(Column::from((qualifier, field))))
        .collect();
    columns.extend(extra);
    let plan = builder.project(columns)?.build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

#[async_trait]
impl SchemaProvider for PgCatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let corrected = match name {
            "pg_class" if table.schema().field_with_name("reloptions").is_err() => {
                let text_array = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
                let reloptions = cast(lit(ScalarValue::Null), text_array).alias("reloptions");
                with_columns(name, table, vec![reloptions])?
            }
            _ => table,
        };
        Ok(Some(corrected))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}
