//! A Snowflake database as a [`Source`]: its schemas, `DESCRIBE` from
//! `INFORMATION_SCHEMA`, and scans that run one `SELECT` and stream its
//! Arrow result chunk by chunk.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};

use super::client::{Endpoint, Session};
use super::dialect::SnowflakeDialect;
use super::types::select_expression;
use super::{decode, metadata};
use crate::contract::{
    ConnectFailure, Dialect, QueryBuilder, ResolvedOptions, ScanRequest, Source, SourceError, TableDescription,
    TableInfo, TableRef, TextRows, scan_sql,
};

/// Opens a Snowflake connection's options as a source.
pub(super) fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(SnowflakeSource {
        endpoint: Endpoint::new(options, timeout),
    })
}

struct SnowflakeSource {
    /// The options' endpoint, or why they do not make one.
    endpoint: Result<Endpoint, ConnectFailure>,
}

/// A session that logs out when dropped.
struct Held(Option<Session>);

impl Deref for Held {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.0.as_ref().expect("a held session until dropped")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let (Some(session), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(session.close());
        }
    }
}

impl SnowflakeSource {
    async fn session(&self) -> Result<Held, SourceError> {
        let endpoint = self.endpoint.as_ref().map_err(|e| SourceError::Connect(e.clone()))?;
        Ok(Held(Some(endpoint.login().await?)))
    }
}

fn from_table(table: &TableRef) -> String {
    format!(
        "{}.{}",
        SnowflakeDialect.quote_ident(&table.schema),
        SnowflakeDialect.quote_ident(&table.name)
    )
}

#[async_trait]
impl Source for SnowflakeSource {
    fn dialect(&self) -> &'static dyn Dialect {
        &SnowflakeDialect
    }

    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        let session = self.session().await?;
        metadata::schemas(&session).await
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        let session = self.session().await?;
        if let Some(schema) = schema {
            metadata::check_schema(schema, metadata::schemas(&session).await?)?;
        }
        metadata::tables(&session, schema).await
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        let session = self.session().await?;
        metadata::check_schema(&table.schema, metadata::schemas(&session).await?)?;
        match metadata::table(&session, table).await? {
            Some(info) => metadata::describe(&session, info).await,
            None => Err(metadata::table_not_found(&session, table).await),
        }
    }

    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        if let Some(&missing) = request.columns.iter().find(|&&i| i >= description.columns.len()) {
            return Err(SourceError::NotFound {
                kind: "column",
                name: format!("#{missing} of {}", description.table),
                nearby: description.columns.iter().map(|c| c.name.clone()).collect(),
            });
        }
        let schema: SchemaRef =
            Arc::new(
                description
                    .arrow_schema()
                    .project(&request.columns)
                    .map_err(|e| SourceError::Query {
                        code: None,
                        message: e.to_string(),
                    })?,
            );
        let sql = self.scan_query(description, request);
        let session = self.session().await?;
        let result = session.query(&sql).await?;
        let target = schema.clone();
        // The session stays open until the last chunk is read.
        let batches = result
            .batches()
            .map(move |batch| {
                let _open = &session;
                batch.and_then(|batch| decode::to_schema(&batch, &target))
            })
            .map_err(|e: SourceError| DataFusionError::External(Box::new(e)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        let session = self.session().await?;
        let batches: Vec<_> = session
            .query(&sql(&from_table(&description.table)))
            .await?
            .batches()
            .try_collect()
            .await?;
        TextRows::from_batches(&batches).map_err(|e| SourceError::Query {
            code: None,
            message: format!("cannot read the result of an aggregate over {}: {e}", description.table),
        })
    }

    /// `ROW_COUNT` from `INFORMATION_SCHEMA.TABLES` for a scan without a
    /// filter (capped by its limit); Sluice runs no planner query for more.
    async fn estimate_rows(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<Option<u64>, SourceError> {
        if request.filter.is_some() {
            return Ok(None);
        }
        let rows = description.estimated_rows.and_then(|r| u64::try_from(r).ok());
        Ok(rows.map(|r| request.limit.map_or(r, |limit| r.min(limit as u64))))
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        let columns: Vec<String> = request
            .columns
            .iter()
            .filter_map(|&i| description.columns.get(i))
            .map(|c| select_expression(&c.source_type, &SnowflakeDialect.quote_ident(&c.name)))
            .collect();
        let list = if columns.is_empty() {
            "1 AS \"_\"".to_owned()
        } else {
            columns.join(", ")
        };
        scan_sql(&list, &from_table(&description.table), request)
    }
}
