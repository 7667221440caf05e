//! The codecs that carry Sluice's nodes between the processes, wrapping
//! Ballista's own: an [`ExtractNode`] and warehouse tables (as their
//! [`TableShare`]) from the server to the scheduler, an [`ExtractExec`]
//! and a [`WarehouseScanExec`] from the scheduler to the executors. The
//! node is its tasks as JSON after a marker; the plans are a marker (and
//! the scan's columns, filters and limit) over their input, a memory
//! source of the same tasks or of the table's parts. Connection options
//! inside stay sealed.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use sluice_engine::destinations::TableShare;
use sluice_engine::jobs::cluster::ExtractTask;

use crate::exec::{Extract, ExtractExec, Runner};
use crate::node::ExtractNode;
use crate::warehouse_scan::{Scan, SharedTable, WarehouseScanExec};

/// What starts an encoded [`ExtractNode`].
const MARKER: &[u8] = b"sluice-extract-v1:";

/// An encoded [`ExtractExec`]: its tasks are the rows of its input, which
/// DataFusion's codec carries.
const EXEC_MARKER: &[u8] = b"sluice-extract-exec-v1";

/// What starts an encoded warehouse table (its share as JSON).
const TABLE_MARKER: &[u8] = b"sluice-warehouse-table-v1:";

/// What starts an encoded [`WarehouseScanExec`] (its scan; the parts are
/// the rows of its input).
const SCAN_MARKER: &[u8] = b"sluice-warehouse-scan-v1:";

fn encode_tasks(tasks: &[ExtractTask], buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(MARKER);
    serde_json::to_writer(buf, tasks).map_err(|e| DataFusionError::Internal(format!("encoding tasks: {e}")))
}

/// The tasks of an encoded Sluice node; `None` for another node.
fn decode_tasks(buf: &[u8]) -> Option<Result<Vec<ExtractTask>>> {
    let json = buf.strip_prefix(MARKER)?;
    Some(serde_json::from_slice(json).map_err(|e| DataFusionError::Internal(format!("decoding tasks: {e}"))))
}

/// Ballista's logical codec, knowing [`ExtractNode`].
#[derive(Debug, Default)]
pub struct SluiceLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for SluiceLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        match decode_tasks(buf) {
            Some(tasks) => Ok(Extension {
                node: Arc::new(ExtractNode::new(tasks?)),
            }),
            None => self.inner.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        match node.node.as_any().downcast_ref::<ExtractNode>() {
            Some(extract) => encode_tasks(&extract.tasks, buf),
            None => self.inner.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(TABLE_MARKER) {
            Some(share) => {
                let share = TableShare::from_bytes(share).map_err(DataFusionError::Internal)?;
                Ok(Arc::new(SharedTable::new(share)))
            }
            None => self.inner.try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let share = (TableShare::of(node.as_ref()))
            .or_else(|| node.downcast_ref::<SharedTable>().map(|table| table.share().clone()));
        match share {
            Some(share) => {
                buf.extend_from_slice(TABLE_MARKER);
                buf.extend_from_slice(&share.to_bytes());
                Ok(())
            }
            None => self.inner.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

/// Ballista's physical codec, knowing [`ExtractExec`]; an executor's runs
/// the tasks it decodes with its key.
#[derive(Default)]
pub struct SluicePhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
    runner: Option<Runner>,
}

impl std::fmt::Debug for SluicePhysicalCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SluicePhysicalCodec")
            .field("runs_tasks", &self.runner.is_some())
            .finish()
    }
}

impl SluicePhysicalCodec {
    /// The codec of an executor that runs tasks as `runner`.
    pub fn executor(runner: Runner) -> Self {
        Self {
            runner: Some(runner),
            ..Self::default()
        }
    }
}

impl PhysicalExtensionCodec for SluicePhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if buf == EXEC_MARKER {
            let [input] = inputs else {
                return Err(DataFusionError::Internal("SluiceExtractExec has one input".into()));
            };
            let extract = Extract {
                runner: self.runner.clone(),
            };
            return Ok(Arc::new(ExtractExec::new(input.clone(), extract)));
        }
        if let Some(scan) = buf.strip_prefix(SCAN_MARKER) {
            let [input] = inputs else {
                return Err(DataFusionError::Internal(
                    "SluiceWarehouseScanExec has one input".into(),
                ));
            };
            return Ok(Arc::new(WarehouseScanExec::new(
                input.clone(),
                Scan::from_bytes(scan, ctx)?,
            )));
        }
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if node.downcast_ref::<ExtractExec>().is_some() {
            buf.extend_from_slice(EXEC_MARKER);
            return Ok(());
        }
        if let Some(scan) = node.downcast_ref::<WarehouseScanExec>() {
            buf.extend_from_slice(SCAN_MARKER);
            buf.extend_from_slice(&scan.work().to_bytes()?);
            return Ok(());
        }
        self.inner.try_encode(node, buf, proto_converter)
    }
}
