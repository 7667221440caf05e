//! A source table as a DataFusion `TableProvider`: projection, filters and
//! limit (and, by [`PushDownOffset`](super::PushDownOffset), an offset) are
//! pushed into the source query, rows stream as Arrow batches.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::TryStreamExt;

use super::pushdown::{self, Fidelity};
use crate::contract::{ScanRequest, Source, TableDescription};

/// One table of a source, queryable with SQL.
pub struct SourceTable {
    source: Arc<dyn Source>,
    description: Arc<TableDescription>,
    schema: SchemaRef,
    /// Rows every scan skips first.
    offset: usize,
}

impl SourceTable {
    /// A provider for `description`'s table, read through `source`.
    pub fn new(source: Arc<dyn Source>, description: TableDescription) -> Self {
        let schema = description.arrow_schema();
        Self {
            source,
            description: Arc::new(description),
            schema,
            offset: 0,
        }
    }

    /// The same table with `skip` more rows skipped by every scan, when the
    /// source can skip rows itself.
    pub(super) fn skipping(&self, skip: usize) -> Option<Self> {
        self.source.supports_offset().then(|| Self {
            source: self.source.clone(),
            description: self.description.clone(),
            schema: self.schema.clone(),
            offset: self.offset + skip,
        })
    }
}

impl fmt::Debug for SourceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceTable({})", self.description.table)?;
        if self.offset > 0 {
            write!(f, " offset {}", self.offset)?;
        }
        Ok(())
    }
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(
                |f| match pushdown::translate(f, &self.description, self.source.dialect()) {
                    Some(t) if t.fidelity == Fidelity::Exact => TableProviderFilterPushDown::Exact,
                    Some(_) => TableProviderFilterPushDown::Inexact,
                    None => TableProviderFilterPushDown::Unsupported,
                },
            )
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let columns = projection
            .cloned()
            .unwrap_or_else(|| (0..self.description.columns.len()).collect());
        let conditions: Vec<String> = filters
            .iter()
            .filter_map(|f| pushdown::translate(f, &self.description, self.source.dialect()))
            .map(|t| t.sql)
            .collect();
        let request = ScanRequest {
            columns: columns.clone(),
            filter: (!conditions.is_empty()).then(|| conditions.join(" AND ")),
            limit,
            offset: self.offset,
            segment: None,
            batch_rows: None,
        };
        let schema = Arc::new(self.schema.project(&columns)?);
        Ok(Arc::new(SourceScanExec::new(
            self.source.clone(),
            self.description.clone(),
            request,
            schema,
        )))
    }
}

/// Reads one source query as a single stream of batches.
pub struct SourceScanExec {
    source: Arc<dyn Source>,
    description: Arc<TableDescription>,
    request: ScanRequest,
    properties: Arc<PlanProperties>,
}

impl SourceScanExec {
    fn new(
        source: Arc<dyn Source>,
        description: Arc<TableDescription>,
        request: ScanRequest,
        schema: SchemaRef,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            source,
            description,
            request,
            properties: Arc::new(properties),
        }
    }
}

impl fmt::Debug for SourceScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceScanExec({})", self.description.table)
    }
}

impl DisplayAs for SourceScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SourceScanExec: query={}",
            self.source.scan_query(&self.description, &self.request)
        )
    }
}

impl ExecutionPlan for SourceScanExec {
    fn name(&self) -> &'static str {
        "SourceScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let source = self.source.clone();
        let description = self.description.clone();
        let request = self.request.clone();
        let stream = futures::stream::once(async move {
            source
                .scan(&description, &request)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), stream)))
    }
}
