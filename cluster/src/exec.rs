//! The physical plan of a run's extract: [`ExtractExec`] over a memory
//! source whose partition `i` holds task `i` as one row. Ballista gives a
//! task (a slice of a stage's partitions) a plan whose memory source it has
//! cut to that slice, so each part runs exactly once however Ballista
//! groups them; partition `i` yields one row, the output of task `i`.

use std::fmt;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use sluice_catalog::MasterKey;
use sluice_engine::jobs::cluster::{ExtractTask, TaskOutput, run_task};

use crate::node::OUTPUT_SCHEMA;

/// The column of the memory source: one task, as JSON.
static TASK_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(vec![Field::new("task", DataType::Utf8, false)])));

/// What an executor needs to run tasks: the cluster key and its name.
#[derive(Clone)]
pub struct Runner {
    pub key: MasterKey,
    pub executor: String,
}

/// A run's extract: each row of its input is a task it runs.
pub struct ExtractExec {
    input: Arc<dyn ExecutionPlan>,
    /// `None` where tasks are planned but never run (the scheduler).
    runner: Option<Runner>,
    properties: Arc<PlanProperties>,
}

impl ExtractExec {
    /// The plan of `tasks`: one memory partition per task.
    pub fn of_tasks(tasks: &[ExtractTask]) -> Result<Self> {
        let partitions = (tasks.iter())
            .map(|task| {
                let json = String::from_utf8(task.to_bytes()).expect("JSON is UTF-8");
                RecordBatch::try_new(TASK_SCHEMA.clone(), vec![Arc::new(StringArray::from(vec![json]))])
                    .map(|batch| vec![batch])
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let input = MemorySourceConfig::try_new_exec(&partitions, TASK_SCHEMA.clone(), None)?;
        Ok(Self::new(input, None))
    }

    /// The extract over `input` (rows of tasks), runnable where `runner`
    /// is given.
    pub fn new(input: Arc<dyn ExecutionPlan>, runner: Option<Runner>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(OUTPUT_SCHEMA.clone()),
            input.properties().output_partitioning().clone(),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            runner,
            properties: Arc::new(properties),
        }
    }
}

impl fmt::Debug for ExtractExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = self.properties.output_partitioning().partition_count();
        write!(f, "SluiceExtractExec: parts={parts}")
    }
}

impl DisplayAs for ExtractExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl ExecutionPlan for ExtractExec {
    fn name(&self) -> &'static str {
        "SluiceExtractExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("SluiceExtractExec has one input".into()))?;
        Ok(Arc::new(Self::new(input, self.runner.clone())))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let runner = self.runner.clone().ok_or_else(|| {
            DataFusionError::Execution("this process holds no cluster key: it cannot run Sluice tasks".into())
        })?;
        let tasks = self.input.execute(partition, context)?;
        let outputs = tasks
            .map_ok(move |batch| {
                let runner = runner.clone();
                futures::stream::iter(task_rows(&batch)).then(move |task| {
                    let runner = runner.clone();
                    async move { output_batch(run_one(task?, &runner).await?) }
                })
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(OUTPUT_SCHEMA.clone(), outputs)))
    }
}

/// The tasks of a batch of the memory source.
fn task_rows(batch: &RecordBatch) -> Vec<Result<ExtractTask>> {
    let Some(column) = batch.column(0).as_string_opt::<i32>() else {
        return vec![Err(DataFusionError::Internal("a task row is not text".into()))];
    };
    (0..column.len())
        .map(|row| ExtractTask::from_bytes(column.value(row).as_bytes()).map_err(DataFusionError::Internal))
        .collect()
}

async fn run_one(task: ExtractTask, runner: &Runner) -> Result<TaskOutput> {
    run_task(&task, &runner.key, &runner.executor)
        .await
        .map_err(|e| DataFusionError::Execution(e.to_string()))
}

fn output_batch(output: TaskOutput) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        OUTPUT_SCHEMA.clone(),
        vec![
            Arc::new(UInt32Array::from(vec![output.part])),
            Arc::new(StringArray::from(vec![output.to_json()])),
        ],
    )?)
}
