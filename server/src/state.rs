//! The state every client connection uses: `app` builds it, the handlers
//! read it.

use std::sync::Arc;

use crate::login::LoginPolicy;
use crate::namespaces::Namespaces;

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
