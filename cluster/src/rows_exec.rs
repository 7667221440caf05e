//! The shape of Sluice's physical cluster plans: a node over a memory
//! source with one row per partition, each row one unit of work as JSON
//! (an extract task, a part of a warehouse table). Ballista cuts a stage's
//! memory source to each task's partitions before sending it, so every
//! unit runs exactly once however Ballista groups them; partition `i` of
//! the node yields the rows of unit `i`.

use std::fmt;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};

/// The column of the memory source: one unit, as JSON.
static UNIT_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(vec![Field::new("unit", DataType::Utf8, false)])));

/// What a [`RowsExec`] does with each unit.
pub trait RowWork: Clone + Send + Sync + 'static {
    /// The node's name in plans.
    const NAME: &'static str;
    /// One unit of work.
    type Unit: Send + 'static;

    /// The unit a row holds.
    fn parse(row: &str) -> Result<Self::Unit, String>;

    /// The columns of the node's rows.
    fn schema(&self) -> SchemaRef;

    /// Does `unit`: its rows.
    fn run(&self, unit: Self::Unit, context: Arc<TaskContext>)
    -> BoxFuture<'static, Result<SendableRecordBatchStream>>;
}

/// Units of work, one per partition, done by `W`.
pub struct RowsExec<W> {
    input: Arc<dyn ExecutionPlan>,
    work: W,
    properties: Arc<PlanProperties>,
}

impl<W: RowWork> RowsExec<W> {
    /// The plan of `units` (as JSON): one memory partition each.
    pub fn of_units(units: impl IntoIterator<Item = String>, work: W) -> Result<Self> {
        let partitions = (units.into_iter())
            .map(|json| {
                RecordBatch::try_new(UNIT_SCHEMA.clone(), vec![Arc::new(StringArray::from(vec![json]))])
                    .map(|batch| vec![batch])
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let input = MemorySourceConfig::try_new_exec(&partitions, UNIT_SCHEMA.clone(), None)?;
        Ok(Self::new(input, work))
    }

    /// `work` over `input`, whose rows are the units.
    pub fn new(input: Arc<dyn ExecutionPlan>, work: W) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(work.schema()),
            input.properties().output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            input,
            work,
            properties: Arc::new(properties),
        }
    }

    /// What the node does with each unit, for the codec.
    pub fn work(&self) -> &W {
        &self.work
    }
}

impl<W: RowWork> fmt::Debug for RowsExec<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = self.properties.output_partitioning().partition_count();
        write!(f, "{}: parts={parts}", W::NAME)
    }
}

impl<W: RowWork> DisplayAs for RowsExec<W> {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<W: RowWork> ExecutionPlan for RowsExec<W> {
    fn name(&self) -> &'static str {
        W::NAME
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
            .map_err(|_| DataFusionError::Internal(format!("{} has one input", W::NAME)))?;
        Ok(Arc::new(Self::new(input, self.work.clone())))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let units = self.input.execute(partition, context.clone())?;
        let work = self.work.clone();
        let rows = units
            .map_ok(move |batch| {
                let (work, context) = (work.clone(), context.clone());
                futures::stream::iter(units_of::<W>(&batch))
                    .then(move |unit| {
                        let (work, context) = (work.clone(), context.clone());
                        async move { work.run(unit?, context).await }
                    })
                    .try_flatten()
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.work.schema(), rows)))
    }
}

/// The units of a batch of the memory source.
fn units_of<W: RowWork>(batch: &RecordBatch) -> Vec<Result<W::Unit>> {
    let Some(column) = batch.column(0).as_string_opt::<i32>() else {
        return vec![Err(DataFusionError::Internal(format!(
            "a row of {} is not text",
            W::NAME
        )))];
    };
    (0..column.len())
        .map(|row| W::parse(column.value(row)).map_err(DataFusionError::Internal))
        .collect()
}
