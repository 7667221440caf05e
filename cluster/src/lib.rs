//! Sluice on an Apache DataFusion Ballista cluster (the `cluster` build;
//! `docs/cluster.md`): runs' extracts, and queries over warehouse tables
//! ([`WarehouseScanExec`]). The engine plans a run's extract as
//! [`ExtractTask`](sluice_engine::jobs::cluster::ExtractTask)s; here they
//! become one Ballista job: a logical [`ExtractNode`] the server sends, a
//! physical [`ExtractExec`] with one partition per task that the scheduler
//! plans and the executors run, and the codecs that carry both. The
//! processes: [`scheduler::run`] (`sluice scheduler`), [`executor::run`]
//! (`sluice executor`) and the server's client, [`BallistaCluster`].

mod client;
mod codec;
mod exec;
pub mod executor;
mod node;
mod planner;
mod progress;
mod rows_exec;
pub mod scheduler;
mod support;
mod warehouse_scan;

pub use client::BallistaCluster;
pub use codec::{SluiceLogicalCodec, SluicePhysicalCodec};
pub use exec::{ExtractExec, Runner};
pub use node::ExtractNode;
pub use planner::SluiceQueryPlanner;
pub use support::Support;
pub use warehouse_scan::{SharedTable, WarehouseScanExec};

/// Why a cluster process could not start or a cluster could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Ballista(#[from] ballista_core::error::BallistaError),
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("invalid address \"{address}\": {reason}")]
    Address { address: String, reason: String },
}

#[cfg(test)]
mod tests;
