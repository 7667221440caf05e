//! The server's namespaces (databases): each one's catalog view, managers,
//! background tasks and SQL session. All are started at start-up; `CREATE
//! DATABASE` starts one more, `DROP DATABASE` stops and deletes one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::runtime_env::RuntimeEnv;
use sluice_catalog::{Catalog, CatalogError, DEFAULT_NAMESPACE, ObjectKind, RunRecord};
use sluice_engine::alerts::AlertNotifier;
use sluice_engine::allowed_paths::AllowedPaths;
use sluice_engine::destinations::{LocalWarehouse, WarehouseSchema};
use sluice_engine::jobs::JobManager;
use sluice_engine::jobs::cluster::ClusterHandle;
use sluice_engine::metrics::EngineMetrics;
use sluice_engine::scheduler::{RunPool, Scheduler, SchedulerConfig, SystemClock};
use sluice_engine::{ConnectionManager, EngineError, failpoint};
use tracing::{info, warn};

use crate::admin_tables::AdminSchema;
use crate::errors::StatementError;
use crate::namespace::{Namespace, Registry};
use crate::pg_database::Databases;
use crate::privileges::Access;
use crate::sql_session::session_context;
use crate::startup_error::StartupError;

/// What every namespace is built with: the server's settings.
pub struct NamespaceSetup {
    pub connect_timeout: Duration,
    pub retest_interval: Duration,
    pub allowed_paths: AllowedPaths,
    pub keep_alert_deliveries: usize,
    pub secret_cache_ttl: Duration,
    pub gcp_secret_manager_credentials: Option<PathBuf>,
    /// The default namespace's warehouse; the others live under it.
    pub warehouse: LocalWarehouse,
    pub metrics: Arc<EngineMetrics>,
    pub keep_runs: usize,
    pub keep_audit: u64,
    /// The runtime (and memory pool) every namespace's queries share.
    pub runtime: Arc<RuntimeEnv>,
    pub scheduler: SchedulerConfig,
    /// The scheduled runs in flight over every namespace.
    pub pool: Arc<RunPool>,
    pub databases: Arc<Databases>,
    /// Where extracts run when not here (`--cluster`).
    pub cluster: Option<ClusterHandle>,
}

/// Every namespace of the server, started.
pub struct Namespaces {
    /// The default namespace's view of the catalog.
    root: Arc<Catalog>,
    setup: NamespaceSetup,
    open: Registry,
    /// One CREATE or DROP DATABASE at a time.
    changing: tokio::sync::Mutex<()>,
}

impl Namespaces {
    /// Starts every namespace of `root`'s catalog (each settles what a
    /// crash interrupted: its scheduler owes interrupted scheduled runs a
    /// re-run).
    pub async fn start(root: Arc<Catalog>, setup: NamespaceSetup) -> Result<Self, StartupError> {
        let namespaces = Self {
            root,
            setup,
            open: Registry::default(),
            changing: tokio::sync::Mutex::new(()),
        };
        for name in namespaces.root.namespaces()? {
            namespaces.open(&name).await?;
        }
        Ok(namespaces)
    }

    /// The default namespace.
    pub fn default_namespace(&self) -> Arc<Namespace> {
        self.get(DEFAULT_NAMESPACE)
            .expect("the default namespace is always open")
    }

    /// Namespace `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<Namespace>> {
        self.open.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every namespace, by name.
    pub fn all(&self) -> Vec<Arc<Namespace>> {
        self.open
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// `CREATE DATABASE`: false when it existed and `if_not_exists` was given.
    pub async fn create(&self, name: &str, if_not_exists: bool) -> Result<bool, StatementError> {
        let _changing = self.changing.lock().await;
        if !self.root.create_namespace(name, if_not_exists)? {
            return Ok(false);
        }
        // Files a crash left between a drop's catalog write and its file
        // deletion go first: a new database starts empty.
        let cleared = self.setup.warehouse.drop_namespace(name).await;
        let opened = match cleared {
            Ok(()) => self.open(name).await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = opened {
            // Nothing half-made stays: the namespace is empty.
            if let Err(undo) = self.root.drop_namespace(name) {
                warn!(namespace = name, error = %undo, "could not remove a namespace that failed to start");
            }
            return Err(StatementError::Internal(format!(
                "database \"{name}\" could not start: {e}"
            )));
        }
        info!(namespace = name, "database created");
        Ok(true)
    }

    /// `DROP DATABASE`: refused for the default namespace, the session's
    /// own (`current`), one other sessions are connected to, one with a run
    /// in progress, and one with jobs unless `cascade`. Its jobs are dropped
    /// as `DROP ETL JOB` drops them (CDC slots released, tables dropped),
    /// then its records and warehouse files. False when it did not exist
    /// and `if_exists` was given.
    pub async fn drop(
        &self,
        name: &str,
        if_exists: bool,
        cascade: bool,
        current: &str,
    ) -> Result<bool, StatementError> {
        let _changing = self.changing.lock().await;
        let in_use = |reason: &str| StatementError::DatabaseInUse {
            database: name.to_owned(),
            reason: reason.to_owned(),
        };
        if name == DEFAULT_NAMESPACE {
            return Err(in_use("it is the default database"));
        }
        let Some(namespace) = self.get(name) else {
            if if_exists {
                return Ok(false);
            }
            return Err(CatalogError::NotFound {
                kind: ObjectKind::Database,
                name: name.to_owned(),
            }
            .into());
        };
        if name == current {
            return Err(in_use(
                "it is the currently open database; connect to another one first",
            ));
        }
        // No new session from here on; put back if the drop is refused.
        self.open.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        let refused = |e: StatementError| {
            self.open
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_owned(), namespace.clone());
            Err(e)
        };
        let sessions = namespace.sessions();
        if sessions > 0 {
            return refused(in_use(&format!("{sessions} other session(s) are connected to it")));
        }
        let jobs = match namespace.catalog.jobs() {
            Ok(jobs) => jobs,
            Err(e) => return refused(e.into()),
        };
        // A continuous job's stream is always on; CASCADE stops it.
        let running = jobs.iter().find_map(|job| {
            let run = namespace.jobs.running_run(&job.name)?;
            (namespace.jobs.running_stream(&job.name) != Some(run)).then_some((&job.name, run))
        });
        if let Some((job, run)) = running {
            return refused(in_use(&format!(
                "ETL job \"{job}\" is running (run {run}); cancel it or wait for it to end"
            )));
        }
        if !jobs.is_empty() && !cascade {
            return refused(
                CatalogError::InUse {
                    kind: ObjectKind::Database,
                    name: name.to_owned(),
                    dependent_kind: ObjectKind::Job,
                    dependents: jobs.into_iter().map(|j| j.name).collect(),
                }
                .into(),
            );
        }
        // No scheduled run from here on.
        namespace.stop();
        for job in &jobs {
            if let Err(e) = namespace.jobs.drop_job(&job.name, true, false, false).await {
                // What is left stays usable: the namespace starts again.
                drop(namespace);
                if let Err(reopen) = self.open(name).await {
                    warn!(namespace = name, error = %reopen, "could not restart a database whose drop failed");
                }
                return Err(e.into());
            }
        }
        failpoint::hit("drop_database_jobs_dropped").map_err(EngineError::from)?;
        self.root.drop_namespace(name)?;
        failpoint::hit("drop_database_records_deleted").map_err(EngineError::from)?;
        if let Err(e) = self.setup.warehouse.drop_namespace(name).await {
            warn!(namespace = name, error = %e, "could not delete the dropped database's warehouse files");
        }
        info!(namespace = name, jobs = jobs.len(), "database dropped");
        Ok(true)
    }

    /// Builds namespace `name`, settles what a crash interrupted, and
    /// starts its background tasks.
    async fn open(&self, name: &str) -> Result<Arc<Namespace>, StartupError> {
        let setup = &self.setup;
        let catalog = Arc::new(self.root.namespace(name)?);
        let connections = Arc::new(
            ConnectionManager::new(catalog.clone(), setup.connect_timeout)
                .with_allowed_paths(setup.allowed_paths.clone())
                .with_alerts(AlertNotifier::start(catalog.clone(), setup.keep_alert_deliveries))
                .with_secret_cache_ttl(setup.secret_cache_ttl)
                .with_gcp_secret_manager_credentials(setup.gcp_secret_manager_credentials.clone()),
        );
        let warehouse = match name {
            DEFAULT_NAMESPACE => setup.warehouse.clone(),
            _ => setup.warehouse.for_namespace(name)?,
        };
        let mut jobs = JobManager::new(connections.clone(), Arc::new(warehouse.clone()))
            .with_metrics(setup.metrics.clone())
            .with_run_history(setup.keep_runs);
        if let Some(cluster) = &setup.cluster {
            jobs = jobs.with_cluster(cluster.clone());
        }
        let jobs = Arc::new(jobs);
        let ctx = Arc::new(session_context(
            connections.clone(),
            jobs.clone(),
            WarehouseSchema::new(warehouse.clone()).await?,
            setup.runtime.clone(),
            setup.databases.clone(),
            AdminSchema::new(self.open.clone(), &setup.databases.superuser),
        )?);
        let interrupted = jobs.reconcile().await?;
        let access = Arc::new(Access::new(
            catalog.clone(),
            &setup.databases.superuser,
            setup.keep_audit,
        ));
        let namespace = Namespace::new(catalog, connections, jobs, ctx, access);
        self.start_tasks(&namespace, &interrupted)?;
        self.open
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), namespace.clone());
        Ok(namespace)
    }

    /// The namespace's connection re-tests and scheduler, until it stops.
    fn start_tasks(&self, namespace: &Arc<Namespace>, interrupted: &[RunRecord]) -> Result<(), StartupError> {
        let retest = namespace.connections.clone().retest_forever(self.setup.retest_interval);
        let stopped = namespace.stopped();
        tokio::spawn(async move {
            tokio::select! {
                () = retest => {}
                () = stopped => {}
            }
        });
        let scheduler = Scheduler::in_pool(
            namespace.jobs.clone(),
            Arc::new(SystemClock),
            self.setup.scheduler.clone(),
            self.setup.metrics.clone(),
            self.setup.pool.clone(),
        );
        scheduler.resume_interrupted(interrupted)?;
        tokio::spawn(scheduler.run_until(namespace.stopped()));
        Ok(())
    }
}
