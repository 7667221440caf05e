//! The server's side: a Ballista session that sends a run's tasks to the
//! scheduler as one job and reads back their outputs.

use std::sync::Arc;

use async_trait::async_trait;
use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use sluice_engine::jobs::cluster::{Cluster, ExtractTask, TaskOutput};

use crate::ClusterError;
use crate::codec::SluiceLogicalCodec;
use crate::node::ExtractNode;

/// A Ballista cluster, reached at its scheduler.
pub struct BallistaCluster {
    scheduler: String,
    context: SessionContext,
}

impl BallistaCluster {
    /// The cluster whose scheduler is at `url` (`df://host:port`); nothing
    /// is sent until a run.
    pub async fn connect(url: &str) -> Result<Self, ClusterError> {
        // One task per part, each run once: no round-robin repartition
        // above the extract (every output partition of one would run every
        // part), and the classic stage planner, which keeps the extract's
        // partitions as the stage's tasks.
        let config = SessionConfig::new_with_ballista()
            .with_round_robin_repartition(false)
            .with_ballista_adaptive_query_planner(false)
            .with_ballista_logical_extension_codec(Arc::new(SluiceLogicalCodec::default()))
            .with_ballista_job_name("sluice extract");
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .build();
        let context = SessionContext::remote_with_state(url, state).await?;
        Ok(Self {
            scheduler: url.to_owned(),
            context,
        })
    }
}

#[async_trait]
impl Cluster for BallistaCluster {
    async fn run(&self, tasks: Vec<ExtractTask>) -> Result<Vec<TaskOutput>, String> {
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(ExtractNode::new(tasks)),
        });
        let frame = (self.context.execute_logical_plan(plan).await).map_err(|e| e.to_string())?;
        let batches = frame.collect().await.map_err(|e| e.to_string())?;
        let mut outputs = Vec::new();
        for batch in batches {
            let column = batch
                .column_by_name("output")
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or("the cluster's result has no output column")?;
            for row in 0..column.len() {
                outputs.push(TaskOutput::from_json(column.value(row))?);
            }
        }
        Ok(outputs)
    }

    fn scheduler(&self) -> &str {
        &self.scheduler
    }
}
