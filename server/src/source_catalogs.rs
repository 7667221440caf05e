//! Source connections as SQL catalogs: `SELECT ... FROM conn.schema.table`
//! resolves `conn` to a saved connection and reads the table live.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProviderList, SchemaProvider, TableProvider,
};
use datafusion::error::{DataFusionError, Result};
use sluice_engine::ConnectionManager;
use sluice_engine::contract::TableRef;

/// The session's catalogs: Sluice's own (system tables, pg_catalog) plus one
/// per saved connection that can be read as a source.
pub struct SluiceCatalogList {
    own: MemoryCatalogProviderList,
    connections: Arc<ConnectionManager>,
}

impl SluiceCatalogList {
    pub fn new(connections: Arc<ConnectionManager>) -> Self {
        Self {
            own: MemoryCatalogProviderList::new(),
            connections,
        }
    }

    fn is_source(&self, name: &str) -> bool {
        self.connections.is_source(name)
    }
}

impl std::fmt::Debug for SluiceCatalogList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SluiceCatalogList")
            .field("own", &self.own.catalog_names())
            .finish()
    }
}

impl std::fmt::Debug for ConnectionCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectionCatalog({})", self.connection)
    }
}

impl std::fmt::Debug for ConnectionSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectionSchema({}.{})", self.connection, self.schema)
    }
}

impl CatalogProviderList for SluiceCatalogList {
    fn register_catalog(&self, name: String, catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        self.own.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        let mut names = self.own.catalog_names();
        if let Ok(connections) = self.connections.catalog().connections() {
            names.extend(connections.into_iter().map(|c| c.name).filter(|n| self.is_source(n)));
        }
        names
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.own.catalog(name).or_else(|| {
            self.is_source(name).then(|| {
                Arc::new(ConnectionCatalog {
                    connection: name.into(),
                    connections: self.connections.clone(),
                }) as Arc<dyn CatalogProvider>
            })
        })
    }
}

/// One connection; its schemas are resolved lazily, at query time.
struct ConnectionCatalog {
    connection: String,
    connections: Arc<ConnectionManager>,
}

impl CatalogProvider for ConnectionCatalog {
    fn schema_names(&self) -> Vec<String> {
        // Listing needs a round trip to the source; SHOW SCHEMAS FROM does it.
        Vec::new()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        Some(Arc::new(ConnectionSchema {
            connection: self.connection.clone(),
            schema: name.into(),
            connections: self.connections.clone(),
        }))
    }
}

struct ConnectionSchema {
    connection: String,
    schema: String,
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl SchemaProvider for ConnectionSchema {
    fn table_names(&self) -> Vec<String> {
        Vec::new()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = TableRef {
            schema: self.schema.clone(),
            name: name.into(),
        };
        let provider = self
            .connections
            .open_table(&self.connection, &table)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(Arc::new(provider)))
    }

    fn table_exist(&self, _name: &str) -> bool {
        false
    }
}
