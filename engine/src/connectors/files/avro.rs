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

#[cfg(test)]
mod tests {
    use arrow_avro::compression::CompressionCodec;
    use arrow_avro::writer::WriterBuilder;
    use arrow_avro::writer::format::AvroOcfFormat;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::object_store::memory::InMemory;
    use datafusion::object_store::{ObjectStoreExt as _, PutPayload};

    use super::*;

    #[tokio::test]
    async fn files_with_every_block_codec_read_back() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            ],
        )
        .unwrap();
        let store = InMemory::new();
        for codec in [
            None,
            Some(CompressionCodec::Deflate),
            Some(CompressionCodec::Snappy),
            Some(CompressionCodec::ZStandard),
            Some(CompressionCodec::Bzip2),
            Some(CompressionCodec::Xz),
        ] {
            let mut writer = WriterBuilder::new(schema.as_ref().clone())
                .with_compression(codec)
                .build::<_, AvroOcfFormat>(Vec::new())
                .unwrap();
            writer.write(&batch).unwrap();
            writer.finish().unwrap();
            let path = Path::from(format!("{codec:?}.avro"));
            store.put(&path, PutPayload::from(writer.into_inner())).await.unwrap();
            let (read_schema, batches) = read(&store, &path, 2)
                .await
                .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(read_schema, *schema, "{codec:?}");
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(rows, 3, "{codec:?}");
            let back = datafusion::arrow::compute::concat_batches(&schema, &conform(&path, &schema, batches).unwrap())
                .unwrap();
            assert_eq!(back, batch, "{codec:?}");
        }
    }
}
