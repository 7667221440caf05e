//! Exploring a saved connection as a source: schemas, tables, columns.
//!
//! A connection failure met while exploring is recorded in the
//! connection's status, like a failed `TEST CONNECTION`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use sluice_catalog::{ConnectionStatus, OptionValue, StatusUpdate};

use crate::connections::ConnectionManager;
use crate::error::EngineError;
use datafusion::arrow::array::RecordBatch;
use futures::TryStreamExt;

use crate::contract::{ScanRequest, Source, SourceError, TableDescription, TableInfo, TableRef};
use crate::sources::SourceTable;

impl ConnectionManager {
    /// Runs `op` on the connection's source, mapping its errors and
    /// recording connection failures in the connection's status (and a
    /// success after a failure: the connection works again).
    async fn with_source<T, F, Fut>(&self, connection: &str, op: F) -> Result<T, EngineError>
    where
        F: FnOnce(Arc<dyn Source>) -> Fut,
        Fut: Future<Output = Result<T, SourceError>>,
    {
        self.with_settings(connection, &BTreeMap::new(), op).await
    }

    /// [`Self::with_source`] on the source opened with `settings`
    /// ([`ConnectionManager::source_with`]).
    async fn with_settings<T, F, Fut>(
        &self,
        connection: &str,
        settings: &BTreeMap<String, OptionValue>,
        op: F,
    ) -> Result<T, EngineError>
    where
        F: FnOnce(Arc<dyn Source>) -> Fut,
        Fut: Future<Output = Result<T, SourceError>>,
    {
        let source = self.source_with(connection, settings)?;
        let result = op(source).await;
        if result.is_ok() {
            self.mark_working(connection);
        }
        result.map_err(|error| {
            if let SourceError::Connect(failure) = &error {
                let update = StatusUpdate {
                    status: ConnectionStatus::Failed,
                    tested_at: Utc::now(),
                    error: Some(failure.to_string()),
                };
                if let Err(e) = self.record_status(connection, &update) {
                    tracing::warn!(connection, error = %e, "could not record the connection failure");
                }
            }
            EngineError::Source {
                connection: connection.into(),
                error,
            }
        })
    }

    /// Records that a connection marked failed answered again.
    fn mark_working(&self, connection: &str) {
        let failed = matches!(
            self.catalog().find_connection(connection),
            Ok(Some(record)) if record.status == ConnectionStatus::Failed
        );
        if failed {
            let update = StatusUpdate {
                status: ConnectionStatus::Ok,
                tested_at: Utc::now(),
                error: None,
            };
            if let Err(e) = self.record_status(connection, &update) {
                tracing::warn!(connection, error = %e, "could not record that the connection works again");
            }
        }
    }

    /// User schemas (or MySQL databases) of a connection.
    pub async fn schemas(&self, connection: &str) -> Result<Vec<String>, EngineError> {
        self.with_source(connection, |s| async move { s.schemas().await }).await
    }

    /// Tables of one schema, or of all user schemas.
    pub async fn tables(&self, connection: &str, schema: Option<&str>) -> Result<Vec<TableInfo>, EngineError> {
        self.with_source(connection, |s| async move { s.tables(schema).await })
            .await
    }

    /// Columns, keys and type mappings of one table.
    pub async fn describe(&self, connection: &str, table: &TableRef) -> Result<TableDescription, EngineError> {
        self.describe_with(connection, table, &BTreeMap::new()).await
    }

    /// [`Self::describe`] with some of the source's settings changed
    /// (`DESCRIBE ... WITH (sample = 500)`).
    pub async fn describe_with(
        &self,
        connection: &str,
        table: &TableRef,
        settings: &BTreeMap<String, OptionValue>,
    ) -> Result<TableDescription, EngineError> {
        self.with_settings(connection, settings, |s| async move { s.describe(table).await })
            .await
    }

    /// Up to `rows` rows of every column of a described table.
    pub async fn sample(
        &self,
        connection: &str,
        description: &TableDescription,
        rows: usize,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        self.sample_with(connection, description, rows, &BTreeMap::new()).await
    }

    /// [`Self::sample`] read with `settings` as in [`Self::describe_with`].
    pub async fn sample_with(
        &self,
        connection: &str,
        description: &TableDescription,
        rows: usize,
        settings: &BTreeMap<String, OptionValue>,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let request = ScanRequest {
            limit: Some(rows),
            ..ScanRequest::every_column(description)
        };
        self.with_settings(connection, settings, |s| async move {
            let stream = s.scan(description, &request).await?;
            stream.try_collect().await.map_err(|e| SourceError::Query {
                code: None,
                message: e.to_string(),
            })
        })
        .await
    }

    /// A table as a DataFusion table provider, described now.
    pub async fn open_table(&self, connection: &str, table: &TableRef) -> Result<SourceTable, EngineError> {
        self.with_source(connection, |s| async move {
            let description = s.describe(table).await?;
            Ok(SourceTable::new(s, description))
        })
        .await
    }
}
