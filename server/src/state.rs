//! What the server's parts share: the names clients see, the state every
//! client connection uses, and why start-up fails. A leaf: `app` builds it,
//! the handlers read it.

use std::sync::Arc;

use sluice_catalog::CatalogError;
use sluice_engine::EngineError;
use sluice_engine::contract::DestinationError;

use crate::login::LoginPolicy;
use crate::namespaces::Namespaces;

pub use crate::names::{DATABASE, WAREHOUSE_SCHEMA};
/// Where unqualified names resolve when no `search_path` schema exists.
pub const DEFAULT_SCHEMA: &str = "public";

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

/// State shared by every client connection.
pub struct AppState {
    /// The databases; a session uses the one its login named.
    pub namespaces: Arc<Namespaces>,
    /// How clients log in.
    pub login: Arc<LoginPolicy>,
    /// pgwire's registry of live connections, for cancel requests.
    pub wire_connections: Arc<pgwire::api::ConnectionManager>,
    /// `pg_advisory_lock` and friends, shared by all sessions.
    pub advisory_locks: Arc<crate::advisory_locks::AdvisoryLocks>,
}
