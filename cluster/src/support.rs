//! The `cluster` build's [`ClusterSupport`], handed to the command line.

use std::sync::Arc;

use async_trait::async_trait;
use sluice_catalog::MasterKey;
use sluice_engine::jobs::cluster::{Cluster, ClusterSupport, ExecutorOptions, SchedulerOptions};

use crate::{BallistaCluster, executor, scheduler};

/// Ballista behind Sluice's cluster flags and commands.
pub struct Support;

#[async_trait]
impl ClusterSupport for Support {
    async fn connect(&self, url: &str) -> Result<Arc<dyn Cluster>, String> {
        let cluster = BallistaCluster::connect(url).await.map_err(|e| e.to_string())?;
        Ok(Arc::new(cluster))
    }

    async fn scheduler(&self, options: SchedulerOptions) -> Result<(), String> {
        scheduler::run(options).await.map_err(|e| e.to_string())
    }

    async fn executor(&self, options: ExecutorOptions, key: MasterKey) -> Result<(), String> {
        executor::run(options, key).await.map_err(|e| e.to_string())
    }
}
