//! ETL jobs: definition and validation, and runs that move rows from a
//! source into a destination exactly once.

mod cdc;
mod cdc_drain;
mod cdc_schema;
pub mod cluster;
pub(crate) mod continuous;
mod dedupe;
mod define;
mod edit;
mod explain;
mod file_mark;
mod fleet;
mod freshness;
mod guard;
mod health;
mod load_request;
mod nested_type;
mod plan;
mod progress;
mod reconcile;
mod repair;
mod runner;
mod schema_changes;
mod settings;
mod split;
mod table_ops;
mod verify;
mod wal_guardian;
mod whole_files;
mod window;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tracing::warn;

use sluice_catalog::Catalog;

pub use cdc::cdc_mode_sql;
pub use define::{CreateJob, CreateJobOutcome, JobChange, JobColumns, JobDropped};
pub use edit::{ColumnSpec, JobEdit};
pub use explain::ExplainStep;
pub use fleet::{CreateJobs, DEFAULT_NAME_TEMPLATE, PlanAction, PlannedJob};
pub use freshness::{freshness, is_stale};
pub use health::{FAILING_AFTER, Health, consecutive_failures};
pub use load_request::{DEFAULT_BACKFILL_DAYS, LoadRequest};
pub use progress::{LiveRun, RunPhase};
pub use runner::{Progress, RunSummary};
pub use settings::{JobSetting, SETTING_NAMES, SettingValue, bytes_text, labels_text};
pub use table_ops::{TableOpsToday, table_ops_today, table_ops_warning};
pub use verify::CursorWindow;
pub use wal_guardian::idle_watch_every;

use crate::connections::ConnectionManager;
use crate::contract::Destination;
use crate::metrics::EngineMetrics;
use progress::LiveProgress;

/// A run in progress, the signal that cancels it and how far it got.
#[derive(Clone)]
struct ActiveRun {
    run_id: u64,
    /// A continuous job's stream, which a cancel stops (committing what it
    /// holds) rather than aborts.
    continuous: bool,
    cancel: Arc<Notify>,
    progress: Arc<LiveProgress>,
}

/// What wakes the scheduler: job definitions changed, or a run ended.
#[derive(Default)]
struct Changes {
    /// Signalled when jobs change or a run ends.
    notify: Notify,
    /// Counts changes of job definitions (not run ends), so the scheduler
    /// knows when it must look at every job again.
    definitions: AtomicU64,
}

impl Changes {
    /// Job definitions (or their schedule states) changed.
    fn definitions_changed(&self) {
        self.definitions.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }
}

/// Finished runs kept per job unless configured otherwise.
pub const DEFAULT_KEEP_RUNS: usize = 1000;

/// Defines, runs and drops ETL jobs.
pub struct JobManager {
    connections: Arc<ConnectionManager>,
    /// The built-in local warehouse, the default destination.
    warehouse: Arc<dyn Destination>,
    /// Jobs with a run in progress, and that run.
    running: Mutex<HashMap<String, ActiveRun>>,
    /// Interrupted runs start-up could not settle (their destination did
    /// not answer); settled before their job runs again.
    unsettled: Mutex<BTreeSet<u64>>,
    metrics: Arc<EngineMetrics>,
    /// Finished runs kept per job; older ones are deleted.
    keep_runs: usize,
    /// What wakes the scheduler, shared with the holds on streams.
    changes: Arc<Changes>,
    /// Jobs whose runs ended since the scheduler last asked.
    ended: Mutex<BTreeSet<String>>,
    /// Continuous jobs whose stream statements keep stopped, and how many.
    held: Arc<Mutex<HashMap<String, usize>>>,
    /// Set at shutdown: no continuous stream starts again.
    closing: AtomicBool,
    /// Where extracts run when not here (`sluice serve --cluster`).
    cluster: Option<cluster::ClusterHandle>,
}

impl JobManager {
    /// A manager over the connections' catalog, writing to `warehouse` by default.
    pub fn new(connections: Arc<ConnectionManager>, warehouse: Arc<dyn Destination>) -> Self {
        Self {
            connections,
            warehouse,
            running: Mutex::new(HashMap::new()),
            unsettled: Mutex::default(),
            metrics: Arc::default(),
            keep_runs: DEFAULT_KEEP_RUNS,
            changes: Arc::default(),
            ended: Mutex::default(),
            held: Arc::default(),
            closing: AtomicBool::new(false),
            cluster: None,
        }
    }

    /// Runs extracts on `cluster` (see [`cluster`]).
    pub fn with_cluster(mut self, cluster: cluster::ClusterHandle) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The cluster this server sends work to, if it has one.
    pub fn cluster(&self) -> Option<&Arc<dyn cluster::Cluster>> {
        self.cluster.as_ref().map(|handle| &handle.cluster)
    }

    /// Counts runs in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<EngineMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Keeps the newest `keep_runs` finished runs of each job.
    pub fn with_run_history(mut self, keep_runs: usize) -> Self {
        self.keep_runs = keep_runs;
        self
    }

    /// The notifier that run outcomes are reported to, when there is one.
    pub(crate) fn alerts(&self) -> Option<&Arc<crate::alerts::AlertNotifier>> {
        self.connections.alerts()
    }

    pub(crate) fn catalog(&self) -> &Arc<Catalog> {
        self.connections.catalog()
    }

    /// Waits until jobs change or a run ends.
    pub async fn changed(&self) {
        self.changes.notify.notified().await;
    }

    /// Says that job definitions (or their schedule states) changed, and
    /// wakes whoever waits in [`changed`](Self::changed).
    pub fn notify_changed(&self) {
        self.changes.definitions_changed();
    }

    /// Says that a run of `job` ended (a pool slot is free, and the job may
    /// be due for verification; nothing else changed), and wakes whoever
    /// waits in [`changed`](Self::changed).
    pub fn notify_run_ended(&self, job: &str) {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.to_owned());
        self.changes.notify.notify_one();
    }

    /// The jobs whose runs ended since the last call.
    pub fn take_ended_runs(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.ended.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// How many times job definitions changed so far.
    pub fn definitions_generation(&self) -> u64 {
        self.changes.definitions.load(Ordering::Relaxed)
    }

    /// Deletes the job's finished runs beyond the configured history.
    pub fn prune_runs(&self, job: &str) {
        match self.catalog().prune_runs(job, self.keep_runs) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(job, deleted = n, "old runs deleted"),
            Err(e) => warn!(job, error = %e, "could not delete old runs"),
        }
    }

    /// The destination a job writes to.
    fn destination(&self, connection: Option<&str>) -> Result<Arc<dyn Destination>, crate::EngineError> {
        match connection {
            None => Ok(self.warehouse.clone()),
            Some(name) => self.connections.destination(name),
        }
    }
}
