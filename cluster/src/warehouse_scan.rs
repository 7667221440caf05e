//! Queries over warehouse tables on the cluster (`SET sluice.execution =
//! 'cluster'`, docs/cluster.md). The server's plan names each table by a
//! [`TableShare`] (one version, as the server read its manifest); the
//! scheduler plans it as a [`WarehouseScanExec`] (the shape of
//! [`RowsExec`]) over the shares of its parts (the table's files dealt out
//! by bytes), one per partition, so that Ballista hands each task exactly
//! its parts; an executor opens its parts with its own bucket credentials and
//! reads them as the server would (the engine's own scan).

use std::io::Cursor;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::project_schema;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionConfig;
use datafusion_proto::bytes::Serializeable;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sluice_engine::destinations::TableShare;

use crate::rows_exec::{RowWork, RowsExec};

/// A warehouse table as the scheduler sees it: its share, planned as
/// parts.
#[derive(Debug)]
pub struct SharedTable {
    share: TableShare,
}

impl SharedTable {
    pub fn new(share: TableShare) -> Self {
        Self { share }
    }

    /// The table's share, for the codec.
    pub fn share(&self) -> &TableShare {
        &self.share
    }
}

#[async_trait]
impl TableProvider for SharedTable {
    fn schema(&self) -> SchemaRef {
        self.share.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // As the server's table: filters prune, DataFusion still applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let parts = self.share.clone().split(state.config().target_partitions().max(1));
        let scan = Scan {
            projection: projection.cloned(),
            filters: filters.to_vec(),
            limit,
            schema: project_schema(&self.share.schema(), projection)?,
        };
        let units = (parts.iter()).map(|share| String::from_utf8(share.to_bytes()).expect("JSON is UTF-8"));
        Ok(Arc::new(WarehouseScanExec::of_units(units, scan)?))
    }
}

/// What each part reads: the table's columns `projection`, rows that may
/// pass `filters` (pruning row groups), at most `limit` of them.
#[derive(Debug, Clone)]
pub struct Scan {
    projection: Option<Vec<usize>>,
    filters: Vec<Expr>,
    limit: Option<usize>,
    /// The columns read.
    schema: SchemaRef,
}

/// A scan as the codec carries it.
#[derive(Serialize, Deserialize)]
struct EncodedScan {
    projection: Option<Vec<usize>>,
    filters: Vec<Vec<u8>>,
    limit: Option<usize>,
    /// An empty Arrow IPC stream of the columns read.
    schema: Vec<u8>,
}

impl Scan {
    /// The scan as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut schema = Vec::new();
        StreamWriter::try_new(&mut schema, &self.schema)?.finish()?;
        let filters = (self.filters.iter())
            .map(|filter| filter.to_bytes().map(|bytes| bytes.to_vec()))
            .collect::<Result<_>>()?;
        let encoded = EncodedScan {
            projection: self.projection.clone(),
            filters,
            limit: self.limit,
            schema,
        };
        serde_json::to_vec(&encoded).map_err(|e| DataFusionError::Internal(format!("encoding a scan: {e}")))
    }

    /// The scan [`to_bytes`](Self::to_bytes) wrote, its filters' functions
    /// resolved in `ctx`.
    pub fn from_bytes(bytes: &[u8], ctx: &TaskContext) -> Result<Self> {
        let encoded: EncodedScan =
            serde_json::from_slice(bytes).map_err(|e| DataFusionError::Internal(format!("decoding a scan: {e}")))?;
        let schema = StreamReader::try_new(Cursor::new(encoded.schema), None)?.schema();
        let filters = (encoded.filters.iter())
            .map(|bytes| Expr::from_bytes_with_ctx(bytes, ctx))
            .collect::<Result<_>>()?;
        Ok(Self {
            projection: encoded.projection,
            filters,
            limit: encoded.limit,
            schema,
        })
    }
}

/// Reads warehouse table parts: each row of its input is one part's share.
pub type WarehouseScanExec = RowsExec<Scan>;

impl RowWork for Scan {
    const NAME: &'static str = "SluiceWarehouseScanExec";
    type Unit = TableShare;

    fn parse(row: &str) -> Result<TableShare, String> {
        TableShare::from_bytes(row.as_bytes())
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn run(
        &self,
        share: TableShare,
        context: Arc<TaskContext>,
    ) -> BoxFuture<'static, Result<SendableRecordBatchStream>> {
        let scan = self.clone();
        Box::pin(async move { read_part(share, &scan, &context).await })
    }
}

/// Reads one part as the server reads its table, in a session of its
/// own: the warehouse opened here gets a fresh object store registry and
/// file caches (so that none grows with every part an executor reads),
/// sharing the task's memory pool and spill space.
async fn read_part(share: TableShare, scan: &Scan, context: &TaskContext) -> Result<SendableRecordBatchStream> {
    let table = share.open().map_err(|e| DataFusionError::External(Box::new(e)))?;
    let shared = context.runtime_env();
    let runtime = RuntimeEnvBuilder {
        disk_manager: Some(shared.disk_manager.clone()),
        ..RuntimeEnvBuilder::new().with_memory_pool(shared.memory_pool.clone())
    }
    .build_arc()?;
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(1))
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    let plan = table
        .scan(&state, scan.projection.as_ref(), &scan.filters, scan.limit)
        .await?;
    execute_stream(plan, state.task_ctx())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::{col, lit};
    use datafusion_proto::bytes::{
        physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    };

    use super::*;
    use crate::SluicePhysicalCodec;

    #[test]
    fn a_scan_round_trips_through_the_codec_and_keeps_one_partition_per_part() {
        let table = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
        ]);
        let projection = vec![1, 0];
        let scan = Scan {
            schema: project_schema(&Arc::new(table), Some(&projection)).unwrap(),
            projection: Some(projection),
            filters: vec![col("id").gt(lit(5i64)), col("note").like(lit("a%"))],
            limit: Some(10),
        };
        // The parts are opaque rows until an executor reads them.
        let parts = ["p0", "p1", "p2"].map(String::from);
        let plan: Arc<dyn ExecutionPlan> = Arc::new(WarehouseScanExec::of_units(parts, scan.clone()).unwrap());
        let codec = SluicePhysicalCodec::default();
        let bytes = physical_plan_to_bytes_with_extension_codec(plan.clone(), &codec).unwrap();
        let decoded = physical_plan_from_bytes_with_extension_codec(&bytes, &TaskContext::default(), &codec).unwrap();
        let decoded = decoded.downcast_ref::<WarehouseScanExec>().unwrap();
        let back = decoded.work();
        assert_eq!(
            (&back.projection, &back.filters, back.limit, &back.schema),
            (&scan.projection, &scan.filters, scan.limit, &scan.schema)
        );
        assert_eq!(decoded.properties().partitioning.partition_count(), 3);
        assert_eq!(decoded.schema(), scan.schema);
    }
}
