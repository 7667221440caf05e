//! One database (namespace): its catalog view, managers and shared SQL
//! session, and the count of sessions connected to it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use datafusion::prelude::SessionContext;
use sluice_catalog::Catalog;
use sluice_engine::ConnectionManager;
use sluice_engine::jobs::JobManager;
use tokio::sync::watch;

use crate::privileges::Access;

/// One namespace's state, shared by its sessions.
pub struct Namespace {
    pub name: String,
    pub catalog: Arc<Catalog>,
    pub connections: Arc<ConnectionManager>,
    pub jobs: Arc<JobManager>,
    /// The shared plain-SQL session each client's session is built from.
    pub ctx: Arc<SessionContext>,
    /// Privileges on this database, and the audit trail.
    pub access: Arc<Access>,
    /// Set to true when the namespace is dropped: its background tasks end.
    stop: watch::Sender<bool>,
    /// Sessions connected to it.
    sessions: AtomicUsize,
}

impl Namespace {
    /// A started database's state, with no session yet.
    pub fn new(
        catalog: Arc<Catalog>,
        connections: Arc<ConnectionManager>,
        jobs: Arc<JobManager>,
        ctx: Arc<SessionContext>,
        access: Arc<Access>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: catalog.namespace_name().to_owned(),
            catalog,
            connections,
            jobs,
            ctx,
            access,
            stop: watch::channel(false).0,
            sessions: AtomicUsize::new(0),
        })
    }

    /// How many sessions are connected to it.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    /// Counts a session as connected until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> SessionGuard {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    /// Ends its background tasks: it is being dropped.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A future that resolves once the namespace is stopped.
    pub(crate) fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            // An error means the namespace is gone: stop too.
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    }
}

/// A session's place in its namespace (see [`Namespace::enter`]).
pub struct SessionGuard(Arc<Namespace>);

impl SessionGuard {
    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.0
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The started namespaces by name, shared with the `sluice_admin` tables.
pub type Registry = Arc<RwLock<BTreeMap<String, Arc<Namespace>>>>;

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
