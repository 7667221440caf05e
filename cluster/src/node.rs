//! The logical plan of a run's extract: one node holding its tasks, whose
//! rows are the tasks' outputs.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use sluice_engine::jobs::cluster::ExtractTask;

/// The columns of an extract's result: the part and its output (JSON).
pub(crate) static OUTPUT_SCHEMA: LazyLock<Arc<Schema>> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("part", DataType::UInt32, false),
        Field::new("output", DataType::Utf8, false),
    ]))
});

/// A run's extract, one task per part.
#[derive(Clone, PartialEq, Eq)]
pub struct ExtractNode {
    pub tasks: Vec<ExtractTask>,
    schema: DFSchemaRef,
}

impl ExtractNode {
    /// The node of `tasks`.
    pub fn new(tasks: Vec<ExtractTask>) -> Self {
        let schema = DFSchema::try_from(OUTPUT_SCHEMA.as_ref().clone()).expect("a plain schema converts");
        Self {
            tasks,
            schema: Arc::new(schema),
        }
    }

    fn key(&self) -> Vec<(u64, u32)> {
        self.tasks.iter().map(|t| (t.run_id, t.part)).collect()
    }
}

impl fmt::Debug for ExtractNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let job = self.tasks.first().map_or("", |t| t.job.as_str());
        write!(f, "SluiceExtract: job={job} tasks={}", self.tasks.len())
    }
}

impl Hash for ExtractNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialOrd for ExtractNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.key().cmp(&other.key()))
    }
}

impl UserDefinedLogicalNodeCore for ExtractNode {
    fn name(&self) -> &str {
        "SluiceExtract"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> datafusion::error::Result<Self> {
        Ok(self.clone())
    }
}
