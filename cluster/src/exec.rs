//! The physical plan of a run's extract: [`ExtractExec`], one task per
//! partition (the shape of [`RowsExec`]); partition `i` yields one row,
//! the output of task `i`.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::future::BoxFuture;
use sluice_catalog::MasterKey;
use sluice_engine::jobs::cluster::{ExtractTask, TaskOutput, run_task};

use crate::node::OUTPUT_SCHEMA;
use crate::rows_exec::{RowWork, RowsExec};

/// What an executor needs to run tasks: the cluster key and its name.
#[derive(Clone)]
pub struct Runner {
    pub key: MasterKey,
    pub executor: String,
}

/// What an extract does with each task: runs it, where there is a runner.
#[derive(Clone)]
pub struct Extract {
    /// `None` where tasks are planned but never run (the scheduler).
    pub runner: Option<Runner>,
}

/// A run's extract: each row of its input is a task it runs.
pub type ExtractExec = RowsExec<Extract>;

impl ExtractExec {
    /// The plan of `tasks`: one memory partition per task.
    pub fn of_tasks(tasks: &[ExtractTask]) -> Result<Self> {
        let units = (tasks.iter()).map(|task| String::from_utf8(task.to_bytes()).expect("JSON is UTF-8"));
        Self::of_units(units, Extract { runner: None })
    }
}

impl RowWork for Extract {
    const NAME: &'static str = "SluiceExtractExec";
    type Unit = ExtractTask;

    fn parse(row: &str) -> Result<ExtractTask, String> {
        ExtractTask::from_bytes(row.as_bytes())
    }

    fn schema(&self) -> SchemaRef {
        OUTPUT_SCHEMA.clone()
    }

    fn run(
        &self,
        task: ExtractTask,
        _context: Arc<TaskContext>,
    ) -> BoxFuture<'static, Result<SendableRecordBatchStream>> {
        let runner = self.runner.clone();
        Box::pin(async move {
            let runner = runner.ok_or_else(|| {
                DataFusionError::Execution("this process holds no cluster key: it cannot run Sluice tasks".into())
            })?;
            let output = run_task(&task, &runner.key, &runner.executor)
                .await
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            let batch = output_batch(output)?;
            let rows = futures::stream::once(async { Ok(batch) });
            Ok(Box::pin(RecordBatchStreamAdapter::new(OUTPUT_SCHEMA.clone(), rows)) as SendableRecordBatchStream)
        })
    }
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
