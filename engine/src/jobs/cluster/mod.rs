//! A run's extract on a cluster of executors (`sluice serve --cluster`,
//! `docs/cluster.md`). The server plans the run as usual, splits the scan
//! into parts read in one source snapshot ([`Source::split_scan`]), and
//! hands one [`ExtractTask`] per part to a [`Cluster`]; each task reads its
//! part on some executor and writes Parquet files straight into the
//! destination's shared store. The server then adopts the files the tasks
//! report into its own load and commits it as any run does, so a run keeps
//! one commit point. The cluster itself (Ballista) comes with the `cluster`
//! build, crate `sluice-cluster`; nothing here links it.
//!
//! [`Source::split_scan`]: crate::contract::Source::split_scan

pub(super) mod coordinate;
mod execute;
mod processes;
mod task;

use async_trait::async_trait;
use datafusion::common::config::ConfigOptions;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;

pub use coordinate::ClusterHandle;
pub use execute::run_task;
pub use processes::{ClusterSupport, ExecutorOptions, SchedulerOptions};
pub use task::{ExtractTask, Role, TaskConnection, TaskOutput};

/// A cluster that runs extract tasks.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Runs every task, each on some executor (a task whose executor is
    /// lost runs again elsewhere), and returns one output per task; an
    /// error once the cluster gives up. While they run, `progress` hears
    /// how many tasks have finished, each time that grows.
    async fn run(
        &self,
        tasks: Vec<ExtractTask>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Vec<TaskOutput>, String>;

    /// Runs a query over warehouse tables ([`TableShare`]s) on the
    /// cluster, with the session's time zone and partitions from
    /// `session`, and streams its rows; dropping the stream before its end
    /// cancels the cluster's job.
    ///
    /// [`TableShare`]: crate::destinations::TableShare
    async fn query(&self, plan: LogicalPlan, session: &ConfigOptions) -> Result<SendableRecordBatchStream, String>;

    /// The scheduler's address, for messages.
    fn scheduler(&self) -> &str;
}

/// Where a load runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::jobs) enum Placement {
    /// On this server; with a cluster, why not there.
    Local(Option<String>),
    /// On the cluster.
    Cluster,
}
