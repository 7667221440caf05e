//! The server's side: a Ballista session that sends a run's tasks to the
//! scheduler as one job and reads back their outputs, and one that runs
//! queries over warehouse tables.

use std::sync::Arc;

use async_trait::async_trait;
use ballista::prelude::SessionContextExt;
use ballista_core::config::BALLISTA_CLIENT_PULL;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::protobuf::CancelJobParams;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::common::config::ConfigOptions;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, collect, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::StreamExt;
use sluice_engine::jobs::cluster::{Cluster, ExtractTask, TaskOutput};
use tracing::{info, warn};

use crate::ClusterError;
use crate::codec::SluiceLogicalCodec;
use crate::node::ExtractNode;
use crate::progress::{JobProgress, PROGRESS_EVERY};

/// A Ballista cluster, reached at its scheduler.
pub struct BallistaCluster {
    scheduler: String,
    context: SessionContext,
    /// Queries over warehouse tables, planned as Ballista plans them.
    queries: SessionContext,
    progress: JobProgress,
}

impl BallistaCluster {
    /// The cluster whose scheduler is at `url` (`df://host:port`); nothing
    /// is sent until a run.
    pub async fn connect(url: &str) -> Result<Self, ClusterError> {
        // One task per part, each run once: no round-robin repartition
        // above the extract (every output partition of one would run every
        // part), and the classic stage planner, which keeps the extract's
        // partitions as the stage's tasks.
        let extracts = sluice_session("sluice extract")
            .with_round_robin_repartition(false)
            .with_ballista_adaptive_query_planner(false);
        let context = SessionContext::remote_with_state(url, session_state(extracts)).await?;
        let queries = SessionContext::remote_with_state(url, session_state(sluice_session("sluice query"))).await?;
        Ok(Self {
            scheduler: url.to_owned(),
            context,
            queries,
            progress: JobProgress::new(url),
        })
    }
}

/// A Ballista client session that sends Sluice's nodes, its jobs named
/// `job_name`. The client polls the job's status: it learns the job's id
/// when the scheduler takes the job (pushed status updates name it only
/// with the first change), so that a stopped run or query can cancel it
/// (`CancelOnDrop`).
fn sluice_session(job_name: &str) -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_ballista_logical_extension_codec(Arc::new(SluiceLogicalCodec::default()))
        .with_ballista_job_name(job_name)
        .set_bool(BALLISTA_CLIENT_PULL, true)
}

fn session_state(config: SessionConfig) -> datafusion::execution::SessionState {
    SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .build()
}

#[async_trait]
impl Cluster for BallistaCluster {
    async fn run(
        &self,
        tasks: Vec<ExtractTask>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Vec<TaskOutput>, String> {
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(ExtractNode::new(tasks)),
        });
        let frame = (self.context.execute_logical_plan(plan).await).map_err(|e| e.to_string())?;
        let task_context = frame.task_ctx();
        let physical = frame.create_physical_plan().await.map_err(|e| e.to_string())?;
        let mut guard = CancelOnDrop {
            plan: physical.clone(),
            scheduler: self.scheduler.clone(),
            armed: true,
        };
        let batches = collect(physical.clone(), Arc::new(task_context));
        tokio::pin!(batches);
        let mut ask = tokio::time::interval(PROGRESS_EVERY);
        let mut done = 0;
        let batches = loop {
            tokio::select! {
                batches = &mut batches => break batches,
                _ = ask.tick() => {
                    let Some(job_id) = job_id(&physical) else { continue };
                    if let Some(now) = self.progress.tasks_done(&job_id).await
                        && now > done
                    {
                        done = now;
                        progress(done);
                    }
                }
            }
        };
        guard.disarm();
        let batches = batches.map_err(|e| e.to_string())?;
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

    async fn query(&self, plan: LogicalPlan, session: &ConfigOptions) -> Result<SendableRecordBatchStream, String> {
        let mut state = self.queries.state();
        let options = state.config_mut().options_mut();
        options.execution.time_zone = session.execution.time_zone.clone();
        options.execution.target_partitions = session.execution.target_partitions;
        options.execution.batch_size = session.execution.batch_size;
        let queries = SessionContext::new_with_state(state);
        let frame = (queries.execute_logical_plan(plan).await).map_err(|e| e.to_string())?;
        let task_context = Arc::new(frame.task_ctx());
        let physical = frame.create_physical_plan().await.map_err(|e| e.to_string())?;
        let rows = execute_stream(physical.clone(), task_context).map_err(|e| e.to_string())?;
        let schema = rows.schema();
        let guard = CancelOnDrop {
            plan: physical,
            scheduler: self.scheduler.clone(),
            armed: true,
        };
        // Disarmed at the end of the rows: only a query stopped early (its
        // client went, its statement timed out) cancels its job.
        let rows = futures::stream::unfold((rows, guard), |(mut rows, mut guard)| async move {
            match rows.next().await {
                Some(batch) => Some((batch, (rows, guard))),
                None => {
                    guard.disarm();
                    None
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
    }

    fn scheduler(&self) -> &str {
        &self.scheduler
    }
}

/// Cancels the Ballista job of `plan` when a run stops waiting for it (the
/// run was cancelled, or the server stops): dropping the client's stream
/// only stops reading results, while the executors would run the job's
/// tasks to the end. Disarmed once the results are in.
struct CancelOnDrop {
    plan: Arc<dyn ExecutionPlan>,
    scheduler: String,
    armed: bool,
}

impl CancelOnDrop {
    /// The job ended: nothing to cancel.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

/// The id of the Ballista job running `plan`, once the scheduler has
/// taken it.
fn job_id(plan: &Arc<dyn ExecutionPlan>) -> Option<String> {
    (plan.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>())
        .and_then(DistributedQueryExec::job_id)
        .map(|id| id.to_string())
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let job_id = job_id(&self.plan);
        let (Some(job_id), true, Ok(runtime)) = (job_id, self.armed, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let endpoint = format!(
            "http://{}",
            self.scheduler.strip_prefix("df://").unwrap_or(&self.scheduler)
        );
        runtime.spawn(async move {
            let cancelled = async {
                let mut scheduler = SchedulerGrpcClient::connect(endpoint)
                    .await
                    .map_err(|e| e.to_string())?;
                let params = CancelJobParams { job_id: job_id.clone() };
                scheduler.cancel_job(params).await.map_err(|e| e.to_string())
            };
            match cancelled.await {
                Ok(_) => info!(%job_id, "cancelled the cluster job of a run that stopped waiting for it"),
                Err(error) => warn!(%job_id, %error, "could not cancel the cluster job of a stopped run"),
            }
        });
    }
}
