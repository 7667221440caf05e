//! `sluice executor`: a Ballista executor that runs Sluice's extract tasks
//! with Sluice's source drivers and the cluster key.

use std::sync::Arc;

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use sluice_catalog::MasterKey;
use sluice_engine::jobs::cluster::ExecutorOptions;

use crate::ClusterError;
use crate::codec::{SluiceLogicalCodec, SluicePhysicalCodec};
use crate::exec::Runner;

/// Runs the executor until it fails; `key` opens the tasks' connection
/// options.
pub async fn run(options: ExecutorOptions, key: MasterKey) -> Result<(), ClusterError> {
    let (scheduler_host, scheduler_port) = split_address(&options.scheduler)?;
    let mut config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: options.external_host.clone().or(Some(options.bind_host.clone())),
        port: options.port,
        grpc_port: options.grpc_port,
        scheduler_host,
        scheduler_port,
        vcores: options.tasks,
        work_dir: options.work_dir.clone(),
        executor_heartbeat_interval_seconds: options.heartbeat_seconds.max(1),
        ..ExecutorProcessConfig::default()
    };
    if let Some(id) = &options.id {
        config.executor_id = id.clone();
    }
    let runner = Runner {
        key,
        executor: config.executor_id.clone(),
    };
    config.override_logical_codec = Some(Arc::new(SluiceLogicalCodec::default()));
    config.override_physical_codec = Some(Arc::new(SluicePhysicalCodec::executor(runner)));
    tracing::info!(executor = %config.executor_id, scheduler = %options.scheduler, "Sluice executor starting");
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

/// `host:port` as its parts.
fn split_address(address: &str) -> Result<(String, u16), ClusterError> {
    let invalid = |reason: &str| ClusterError::Address {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let address_only = address.strip_prefix("df://").unwrap_or(address);
    let (host, port) = address_only.rsplit_once(':').ok_or_else(|| invalid("give host:port"))?;
    let port = port.parse().map_err(|_| invalid("the port is not a number"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_split_into_host_and_port() {
        assert_eq!(split_address("sched:50050").unwrap(), ("sched".to_owned(), 50050));
        assert_eq!(split_address("df://10.0.0.1:7").unwrap(), ("10.0.0.1".to_owned(), 7));
        assert_eq!(split_address("[::1]:9").unwrap(), ("::1".to_owned(), 9));
        assert!(split_address("sched").is_err());
        assert!(split_address("sched:x").is_err());
    }
}
