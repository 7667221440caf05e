//! A scan's record-batch stream queried with SQL in a private DataFusion
//! session: how sources without a query engine of their own (files,
//! document stores) filter their scans and compute VERIFY's aggregates.
//! The rows stream through the session; only the query's result is kept.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;

use super::datafusion_sql::{DataFusionDialect, session};
use crate::contract::{Dialect, QueryBuilder, TextRows};

/// Registers `rows` in `ctx` as table `name`, which can be scanned once.
pub(crate) fn register(
    ctx: &SessionContext,
    name: &str,
    rows: SendableRecordBatchStream,
) -> Result<(), DataFusionError> {
    let schema = rows.schema();
    let once = Once {
        schema: schema.clone(),
        stream: Mutex::new(Some(rows)),
    };
    let table = StreamingTable::try_new(schema, vec![Arc::new(once)])?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// Runs the query `sql` builds around `name` over `rows` (VERIFY's
/// aggregates, in DataFusion's SQL) and returns its rows as text.
pub(crate) async fn query_text(
    name: &str,
    rows: SendableRecordBatchStream,
    sql: QueryBuilder<'_>,
) -> Result<TextRows, DataFusionError> {
    let ctx = session(None);
    register(&ctx, name, rows)?;
    let batches = ctx
        .sql(&sql(&DataFusionDialect.quote_ident(name)))
        .await?
        .collect()
        .await?;
    Ok(TextRows::from_batches(&batches)?)
}

/// A stream handed to DataFusion as one partition, read once.
struct Once {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for Once {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Once")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PartitionStream for Once {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        taken.unwrap_or_else(|| {
            let error = DataFusionError::Internal("a source scan is read once".into());
            Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async move { Err(error) }),
            ))
        })
    }
}
