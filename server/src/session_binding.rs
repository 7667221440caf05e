//! What ties a client connection to its database: the namespace its login
//! named, and the DataFusion session, query hooks and parser built over
//! that namespace's shared session. Until the login ends a connection is
//! bound to the default namespace (no statement runs before then).

use std::sync::{Arc, RwLock};

use datafusion::prelude::SessionContext;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::{DfSessionService, Parser as DfParser, QueryHook};
use pgwire::api::query::ExtendedQueryHandler;

use crate::advisory_locks::{self, AdvisoryLocks};
use crate::cluster_query::{ClusterQueryHook, PortalFormat};
use crate::namespace::{Namespace, SessionGuard};
use crate::pg_database::SessionRole;
use crate::pg_functions::register_session_functions;
use crate::privileges::PrivilegeHook;
use crate::session_settings::SessionSettings;
use crate::settings_hook::SettingsHook;
use crate::sql_guard::SqlGuardHook;
use crate::sql_session::client_context;

/// A session's namespace and what runs its plain SQL there.
pub struct Bound {
    namespace: SessionGuard,
    /// The session's DataFusion context (its time zone follows the settings).
    pub ctx: Arc<SessionContext>,
    pub df: Arc<DfSessionService>,
    pub parser: Arc<DfParser>,
    /// The result format of the portal being executed, for queries sent
    /// to the cluster.
    pub portal_format: Arc<PortalFormat>,
}

impl Bound {
    pub fn namespace(&self) -> &Arc<Namespace> {
        self.namespace.namespace()
    }
}

/// One client connection's binding, replaced once when its login succeeds.
pub struct Binding {
    settings: SessionSettings,
    advisory_locks: Arc<AdvisoryLocks>,
    current: RwLock<Arc<Bound>>,
}

impl Binding {
    /// A connection bound to `namespace` until its login binds it again.
    pub fn new(settings: SessionSettings, advisory_locks: Arc<AdvisoryLocks>, namespace: Arc<Namespace>) -> Self {
        let bound = build(&settings, &advisory_locks, namespace, "");
        Self {
            settings,
            advisory_locks,
            current: RwLock::new(Arc::new(bound)),
        }
    }

    /// Binds the session of `role` to `namespace`.
    pub fn bind(&self, namespace: Arc<Namespace>, role: &str) {
        let bound = Arc::new(build(&self.settings, &self.advisory_locks, namespace, role));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = bound;
    }

    /// What the session is bound to now.
    pub fn current(&self) -> Arc<Bound> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn build(settings: &SessionSettings, locks: &Arc<AdvisoryLocks>, namespace: Arc<Namespace>, role: &str) -> Bound {
    // The guard comes first: it refuses writes before any other hook or
    // DataFusion sees them.
    // Queries go to the cluster last: after every check, and after
    // cursors and settings statements, which are the session's own.
    let portal_format = Arc::new(PortalFormat::default());
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(SqlGuardHook),
        Arc::new(PrivilegeHook(namespace.access.clone())),
        Arc::new(CursorStatementHook),
        Arc::new(SettingsHook::new(settings.clone())),
        Arc::new(ClusterQueryHook::new(
            settings.clone(),
            namespace.jobs.clone(),
            portal_format.clone(),
        )),
    ];
    let ctx = client_context(&namespace.ctx);
    ctx.state_ref()
        .write()
        .config_mut()
        .set_extension(Arc::new(SessionRole(role.to_owned())));
    register_session_functions(&ctx, settings);
    advisory_locks::register(&ctx, locks.session());
    let ctx = Arc::new(ctx);
    let df = Arc::new(DfSessionService::new_with_hooks(ctx.clone(), hooks));
    Bound {
        namespace: namespace.enter(),
        parser: df.query_parser(),
        ctx,
        df,
        portal_format,
    }
}
