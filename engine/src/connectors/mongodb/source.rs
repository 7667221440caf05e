//! A MongoDB deployment as a [`Source`]: each database is a schema whose
//! collections a [`DocumentSource`] over a [`MongoStore`] serves.

use std::sync::Arc;
use std::time::Duration;

use super::client::Connection;
use super::errors::source_error;
use super::store::MongoStore;
use crate::connectors::documents::{DocumentSource, Mapping};
use crate::contract::{
    Dialect, ResolvedOptions, ScanRequest, Source, SourceError, TableDescription, TableInfo, TableRef, closest,
};
use crate::sources::datafusion_sql::DataFusionDialect;
use async_trait::async_trait;
use datafusion::execution::SendableRecordBatchStream;

/// Databases every deployment has, hidden unless `databases` names them.
const SYSTEM_DATABASES: [&str; 3] = ["admin", "local", "config"];

pub(super) struct MongoSource {
    connection: Arc<Connection>,
    /// The `databases` option.
    only: Option<Vec<String>>,
    batch_size: u32,
    mapping: Mapping,
}

impl MongoSource {
    pub(super) fn new(options: &ResolvedOptions, timeout: Duration) -> Self {
        let only = options.text("databases").map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        });
        Self {
            connection: Arc::new(Connection::new(options, timeout)),
            only,
            batch_size: options
                .integer("batch_size")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1000),
            mapping: Mapping::from_options(options),
        }
    }

    fn store(&self, database: &str) -> DocumentSource<MongoStore> {
        DocumentSource {
            store: Arc::new(MongoStore {
                connection: self.connection.clone(),
                database: database.to_owned(),
                batch_size: self.batch_size,
            }),
            mapping: self.mapping,
        }
    }

    /// The documents of `database`, which must be one of [`Source::schemas`].
    async fn database(&self, database: &str) -> Result<DocumentSource<MongoStore>, SourceError> {
        let schemas = self.schemas().await?;
        if !schemas.iter().any(|s| s == database) {
            return Err(SourceError::NotFound {
                kind: "schema",
                name: database.to_owned(),
                nearby: closest(database, schemas),
            });
        }
        Ok(self.store(database))
    }
}

#[async_trait]
impl Source for MongoSource {
    fn dialect(&self) -> &'static dyn Dialect {
        &DataFusionDialect
    }

    /// `listDatabases` (only those the user may read, where the server
    /// supports `authorizedDatabases`), or the `databases` option.
    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        let client = self.connection.client().await?;
        let mut names = client
            .list_database_names()
            .authorized_databases(true)
            .await
            .map_err(|e| source_error(e, "the deployment"))?;
        match &self.only {
            Some(only) => names.retain(|n| only.contains(n)),
            None => names.retain(|n| !SYSTEM_DATABASES.contains(&n.as_str())),
        }
        names.sort();
        Ok(names)
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        let schemas = match schema {
            Some(s) => vec![s.to_owned()],
            None => self.schemas().await?,
        };
        let mut tables = Vec::new();
        for schema in schemas {
            tables.extend(self.database(&schema).await?.tables(Some(&schema)).await?);
        }
        Ok(tables)
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        self.database(&table.schema).await?.describe(table).await
    }

    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        self.database(&description.table.schema)
            .await?
            .scan(description, request)
            .await
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        self.store(&description.table.schema).scan_query(description, request)
    }

    fn reads_nested(&self) -> bool {
        true
    }
}
