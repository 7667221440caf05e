//! The cluster's processes as the command line starts them (`sluice
//! scheduler`, `sluice executor`, `sluice serve --cluster`), implemented by
//! the `cluster` build.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use sluice_catalog::MasterKey;

use super::Cluster;

/// How a scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Where executors and servers reach it.
    pub listen: SocketAddr,
    /// The host name executors are told to call back on, if not the
    /// listening address.
    pub external_host: Option<String>,
    /// Seconds without a heartbeat after which an executor is lost and
    /// its tasks run elsewhere.
    pub executor_timeout_seconds: u64,
}

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: String,
    /// The address it listens on, for Ballista's flight (`port`) and task
    /// (`grpc_port`) services.
    pub bind_host: String,
    pub port: u16,
    pub grpc_port: u16,
    /// The host name others reach it at, if not `bind_host`.
    pub external_host: Option<String>,
    /// Tasks it runs at once (0: one per core).
    pub tasks: usize,
    /// Its id; a fresh one when `None`.
    pub id: Option<String>,
    /// Where Ballista keeps its shuffle files; a temporary directory when
    /// `None`.
    pub work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_seconds: u64,
}

/// What the `cluster` build brings: the client and the two processes.
#[async_trait]
pub trait ClusterSupport: Send + Sync {
    /// The cluster whose scheduler is at `url` (`df://host:port`).
    async fn connect(&self, url: &str) -> Result<Arc<dyn Cluster>, String>;

    /// Runs a scheduler until it fails.
    async fn scheduler(&self, options: SchedulerOptions) -> Result<(), String>;

    /// Runs an executor until it fails; `key` opens the tasks' options.
    async fn executor(&self, options: ExecutorOptions, key: MasterKey) -> Result<(), String>;
}
