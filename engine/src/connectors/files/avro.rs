//! Avro object container files, decoded by `arrow-avro`. An Avro file has
//! no footer to read ranges by, so each file is read whole, one at a time;
//! uncompressed and deflate blocks are supported.

use std::io::Cursor;
use std::sync::Arc;

use arrow_avro::reader::ReaderBuilder;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStore, ObjectStoreExt};

/// The rows of one file, in batches of `batch_rows`, with its schema.
pub(super) async fn read(
    store: &dyn ObjectStore,
    path: &Path,
    batch_rows: usize,
) -> Result<(Schema, Vec<RecordBatch>), DataFusionError> {
    let bytes = store.get(path).await?.bytes().await?;
    let reader = ReaderBuilder::new()
        .with_batch_size(batch_rows.max(1))
        .build(Cursor::new(bytes))
        .map_err(|e| DataFusionError::Execution(format!("{path} is not a readable Avro file: {e}")))?;
    let schema = plain(&reader.schema());
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DataFusionError::Execution(format!("{path} cannot be decoded: {e}")))?;
    Ok((schema, batches))
}

/// The schema without the Avro metadata (the columns are what matter).
fn plain(schema: &SchemaRef) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), f.is_nullable()))
            .collect::<Vec<_>>(),
    )
}

/// `batches` as batches of `schema` (the table's columns): a file whose
/// columns differ is refused, naming it.
pub(super) fn conform(
    path: &Path,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, DataFusionError> {
    batches
        .into_iter()
        .map(|batch| {
            RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec()).map_err(|e| {
                DataFusionError::Execution(format!(
                    "{path} does not have the table's columns ({e}); its schema differs from the first file's"
                ))
            })
        })
        .collect()
}
