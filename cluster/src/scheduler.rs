//! `sluice scheduler`: a Ballista scheduler that knows Sluice's nodes.

use std::sync::Arc;

use ballista_core::utils::default_session_builder;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::SessionStateBuilder;
use sluice_engine::jobs::cluster::SchedulerOptions;

use crate::codec::{SluiceLogicalCodec, SluicePhysicalCodec};
use crate::{ClusterError, SluiceQueryPlanner};

/// Runs the scheduler until it fails.
pub async fn run(options: SchedulerOptions) -> Result<(), ClusterError> {
    let config = SchedulerConfig {
        bind_host: options.listen.ip().to_string(),
        bind_port: options.listen.port(),
        external_host: (options.external_host.clone()).unwrap_or_else(|| options.listen.ip().to_string()),
        executor_timeout_seconds: options.executor_timeout_seconds,
        // A run's parts spread over every executor rather than filling one.
        task_distribution: TaskDistributionPolicy::RoundRobin,
        expire_dead_executor_interval_seconds: options.executor_timeout_seconds.clamp(1, 15),
        override_logical_codec: Some(Arc::new(SluiceLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(SluicePhysicalCodec::default())),
        override_session_builder: Some(Arc::new(|config| {
            let state = default_session_builder(config)?;
            Ok(SessionStateBuilder::new_from_existing(state)
                .with_query_planner(Arc::new(SluiceQueryPlanner))
                .build())
        })),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await?;
    start_server(cluster, options.listen, Arc::new(config)).await?;
    Ok(())
}
