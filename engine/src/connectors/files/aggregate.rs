//! VERIFY's aggregates over a file table: the table's rows, read by the
//! file source's own scan (mapped types, pseudo-columns included), queried
//! by DataFusion in a private session, so they never leave the engine as
//! rows.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::EmptyRecordBatchStream;
use datafusion::physical_plan::streaming::PartitionStream;

use crate::sources::datafusion_sql::{DataFusionDialect, session};
use crate::sources::{Dialect, QueryBuilder, TextRows};

/// Runs the query `sql` builds around `name` over `rows`, the table's scan.
pub(super) async fn query_text(
    name: &str,
    rows: SendableRecordBatchStream,
    sql: QueryBuilder<'_>,
) -> Result<TextRows, DataFusionError> {
    let schema = rows.schema();
    let once = Arc::new(Once {
        schema: schema.clone(),
        stream: Mutex::new(Some(rows)),
    });
    let table = StreamingTable::try_new(schema, vec![once])?;
    let ctx = session(None);
    ctx.register_table(name, Arc::new(table))?;
    let batches = ctx
        .sql(&sql(&DataFusionDialect.quote_ident(name)))
        .await?
        .collect()
        .await?;
    Ok(TextRows::from_batches(&batches)?)
}

/// A scan handed to DataFusion as one partition, read once.
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
        let taken = self.stream.lock().map(|mut s| s.take()).unwrap_or(None);
        taken.unwrap_or_else(|| Box::pin(EmptyRecordBatchStream::new(self.schema.clone())))
    }
}
