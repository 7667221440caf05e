//! Corrections to datafusion-pg-catalog's `pg_catalog` tables, as views
//! over the originals: columns clients' metadata queries read that it lacks
//! (`pg_class.reloptions`), the type modifiers of warehouse columns in
//! `pg_attribute.atttypmod` (`numeric(12,2)`, not `numeric`), and
//! `pg_database` with the databases the session's role may use
//! ([`crate::pg_database`]).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, lit};
use datafusion::prelude::SessionContext;

use crate::names::WAREHOUSE_SCHEMA;
use crate::pg_database::{Databases, PgDatabase};
use crate::type_modifiers;

/// `pg_catalog` with the corrected tables.
#[derive(Debug)]
pub struct PgCatalogOverlay {
    inner: Arc<dyn SchemaProvider>,
    /// The warehouse schema, whose column types give type modifiers.
    warehouse: Arc<dyn SchemaProvider>,
    databases: Arc<Databases>,
    /// The database (namespace) whose catalog this is.
    database: String,
}

impl PgCatalogOverlay {
    pub fn new(
        inner: Arc<dyn SchemaProvider>,
        warehouse: Arc<dyn SchemaProvider>,
        databases: Arc<Databases>,
        database: &str,
    ) -> Self {
        Self {
            inner,
            warehouse,
            databases,
            database: database.to_owned(),
        }
    }

    /// `(table, column, typmod)` of every warehouse column with a modifier.
    async fn warehouse_typmods(&self) -> Result<Vec<(String, String, i32)>> {
        let mut typmods = Vec::new();
        for name in self.warehouse.table_names() {
            let Some(table) = self.warehouse.table(&name).await? else {
                continue;
            };
            for field in table.schema().fields() {
                if let Some(typmod) = type_modifiers::typmod(field.data_type()) {
                    typmods.push((name.clone(), field.name().clone(), typmod));
                }
            }
        }
        Ok(typmods)
    }

    /// `pg_attribute` with the warehouse columns' type modifiers.
    async fn pg_attribute(&self, table: Arc<dyn TableProvider>) -> Result<Arc<dyn TableProvider>> {
        let typmods = self.warehouse_typmods().await?;
        if typmods.is_empty() {
            return Ok(table);
        }
        let (Some(class), Some(namespace)) = (
            self.inner.table("pg_class").await?,
            self.inner.table("pg_namespace").await?,
        ) else {
            return Ok(table);
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("relname", DataType::Utf8, false),
            Field::new("attname", DataType::Utf8, false),
            Field::new("typmod", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(typmods.iter().map(|t| t.0.as_str()))),
                Arc::new(StringArray::from_iter_values(typmods.iter().map(|t| t.1.as_str()))),
                Arc::new(Int32Array::from_iter_values(typmods.iter().map(|t| t.2))),
            ],
        )?;
        let columns: Vec<String> = table
            .schema()
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "atttypmod" => "COALESCE(m.typmod, a.atttypmod) AS atttypmod".to_owned(),
                name => format!("a.\"{name}\""),
            })
            .collect();
        // A private context only plans the view; the plan holds the tables.
        let planner = SessionContext::new();
        planner.register_table("a", table)?;
        planner.register_table("c", class)?;
        planner.register_table("n", namespace)?;
        planner.register_table("m", Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))?;
        let sql = format!(
            "SELECT {} FROM a LEFT JOIN (SELECT c.oid AS relid, m.attname, m.typmod FROM m \
             JOIN c ON c.relname = m.relname JOIN n ON n.oid = c.relnamespace AND n.nspname = '{WAREHOUSE_SCHEMA}') m \
             ON m.relid = a.attrelid AND m.attname = a.attname",
            columns.join(", ")
        );
        let plan = planner.sql(&sql).await?.into_unoptimized_plan();
        Ok(Arc::new(ViewTable::new(plan, None)))
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
            "pg_attribute" => self.pg_attribute(table).await?,
            "pg_database" => Arc::new(PgDatabase::new(table, self.databases.clone(), &self.database)),
            _ => table,
        };
        Ok(Some(corrected))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}
