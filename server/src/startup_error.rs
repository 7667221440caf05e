//! Why the server could not start (or start a database).

use sluice_catalog::CatalogError;
use sluice_engine::EngineError;
use sluice_engine::contract::DestinationError;

/// Why Sluice could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("warehouse: {0}")]
    Warehouse(#[from] DestinationError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(String),
}
