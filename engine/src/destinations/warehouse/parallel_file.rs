//! One Parquet file whose columns are encoded on several threads.
//!
//! Parquet's `ArrowWriter` encodes a batch's columns one after the other on
//! the calling thread, so a load used one core for encoding however many the
//! machine has, and encoding is most of a load's CPU. Each column of a row
//! group has its own writer, so they can work at once: every batch's columns
//! are handed out to a few scoped threads (a thread takes
//! the next column as soon as it is done with one, so one wide text column
//! does not hold the others up). The file is the same as `ArrowWriter`'s:
//! the same schema, metadata and row groups, in column order.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::object_store::buffered::BufWriter;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_writer::{
    ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves,
};
use datafusion::parquet::arrow::async_writer::AsyncFileWriter;
use datafusion::parquet::errors::{ParquetError, Result};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::writer::SerializedFileWriter;

/// A row group ends at this many rows at the latest (`ArrowWriter`'s
/// default); the warehouse also ends one at its memory bound.
const MAX_ROW_GROUP_ROWS: usize = 1024 * 1024;

/// Batches with fewer rows are encoded on the calling thread: starting
/// threads would cost more than they save.
const MIN_PARALLEL_ROWS: usize = 1024;

/// A Parquet file being written to an object store, its columns encoded in
/// parallel.
pub(super) struct ParallelFile {
    /// Encodes the file into memory; each finished row group is sent on.
    file: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The row group being encoded, if it has rows.
    group: Option<RowGroup>,
    threads: usize,
    sink: BufWriter,
}

struct RowGroup {
    /// One writer per Parquet leaf column, in the file's column order.
    writers: Vec<ArrowColumnWriter>,
    rows: usize,
}

impl ParallelFile {
    /// A file with `schema` and `properties`, written to `sink`, encoded on
    /// up to `threads` threads.
    pub fn try_new(sink: BufWriter, schema: SchemaRef, properties: WriterProperties, threads: usize) -> Result<Self> {
        // `ArrowWriter` converts the schema and records the Arrow schema in
        // the file's metadata; its lower half writes the columns we encode.
        let (file, factory) =
            ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))?.into_serialized_writer()?;
        Ok(Self {
            file,
            factory,
            schema,
            group: None,
            threads: threads.max(1),
            sink,
        })
    }

    /// Encodes `batch` into the current row group, ending row groups at
    /// [`MAX_ROW_GROUP_ROWS`].
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let buffered = self.group.as_ref().map_or(0, |g| g.rows);
            let rows = (MAX_ROW_GROUP_ROWS - buffered).min(batch.num_rows() - offset);
            self.encode(&batch.slice(offset, rows))?;
            offset += rows;
            if buffered + rows >= MAX_ROW_GROUP_ROWS {
                self.flush().await?;
            }
        }
        Ok(())
    }

    fn encode(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.group.is_none() {
            let index = self.file.flushed_row_groups().len();
            self.group = Some(RowGroup {
                writers: self.factory.create_column_writers(index)?,
                rows: 0,
            });
        }
        let group = self.group.as_mut().expect("a row group is open");
        let mut leaves = Vec::with_capacity(group.writers.len());
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column)?);
        }
        if leaves.len() != group.writers.len() {
            return Err(ParquetError::General(format!(
                "{} leaf columns for {} column writers",
                leaves.len(),
                group.writers.len()
            )));
        }
        let threads = if batch.num_rows() < MIN_PARALLEL_ROWS {
            1
        } else {
            self.threads.min(leaves.len())
        };
        encode_columns(group.writers.iter_mut().zip(&leaves).collect(), threads)?;
        group.rows += batch.num_rows();
        Ok(())
    }

    /// The memory the current row group holds, encoded and not.
    pub fn memory_size(&self) -> usize {
        self.group
            .as_ref()
            .map_or(0, |g| g.writers.iter().map(ArrowColumnWriter::memory_size).sum())
    }

    /// The expected encoded size of the current row group.
    pub fn in_progress_size(&self) -> usize {
        self.group.as_ref().map_or(0, |g| {
            g.writers.iter().map(ArrowColumnWriter::get_estimated_total_bytes).sum()
        })
    }

    /// The bytes of the file written so far (finished row groups).
    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// Ends the current row group and sends its bytes to the sink.
    pub async fn flush(&mut self) -> Result<()> {
        if let Some(group) = self.group.take() {
            let chunks = group
                .writers
                .into_iter()
                .map(ArrowColumnWriter::close)
                .collect::<Result<Vec<_>>>()?;
            let mut row_group = self.file.next_row_group()?;
            for chunk in chunks {
                chunk.append_to_row_group(&mut row_group)?;
            }
            row_group.close()?;
        }
        self.send().await
    }

    /// Ends the last row group, writes the footer and completes the upload.
    pub async fn finish(&mut self) -> Result<()> {
        self.flush().await?;
        self.file.finish()?;
        self.send().await?;
        self.sink.complete().await
    }

    /// The sink, to abort the upload of an unfinished file.
    pub fn into_inner(self) -> BufWriter {
        self.sink
    }

    async fn send(&mut self) -> Result<()> {
        let bytes = std::mem::take(self.file.inner_mut());
        if bytes.is_empty() {
            return Ok(());
        }
        AsyncFileWriter::write(&mut self.sink, Bytes::from(bytes)).await
    }
}

/// Writes each leaf with its writer, on `threads` threads (this one and
/// `threads - 1` helpers) that take the next pair as they become free; the
/// first error wins.
fn encode_columns(work: Vec<(&mut ArrowColumnWriter, &ArrowLeafColumn)>, threads: usize) -> Result<()> {
    let queue = Mutex::new(work.into_iter());
    let next = || queue.lock().unwrap_or_else(PoisonError::into_inner).next();
    let drain = || -> Result<()> {
        while let Some((writer, leaf)) = next() {
            writer.write(leaf)?;
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(drain)).collect();
        let mine = drain();
        helpers
            .into_iter()
            .map(|helper| helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .fold(mine, Result::and)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array, ListArray, StringArray};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::Int32Type;
    use datafusion::object_store::memory::InMemory;
    use datafusion::object_store::path::Path;
    use datafusion::object_store::{ObjectStore, ObjectStoreExt};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(from..from + rows)) as ArrayRef,
            ),
            (
                "note",
                Arc::new(StringArray::from_iter(
                    (from..from + rows).map(|i| (i % 7 != 0).then(|| format!("n{i}"))),
                )),
            ),
            (
                "tags",
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
                    (from..from + rows).map(|i| Some(vec![Some(i as i32), None])),
                )),
            ),
        ])
        .unwrap()
    }

    #[tokio::test]
    async fn a_file_encoded_on_several_threads_reads_back_whole_and_in_order() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("t/data/x.parquet");
        let batches = [batch(0, 5000), batch(5000, 10), batch(5010, 3000)];
        let mut file = ParallelFile::try_new(
            BufWriter::new(store.clone(), path.clone()),
            batches[0].schema(),
            WriterProperties::default(),
            3,
        )
        .unwrap();
        file.write(&batches[0]).await.unwrap();
        file.write(&batches[1]).await.unwrap();
        assert!(file.memory_size() > 0);
        // A second row group.
        file.flush().await.unwrap();
        assert_eq!(file.memory_size(), 0);
        file.write(&batches[2]).await.unwrap();
        file.finish().await.unwrap();
        assert_eq!(file.bytes_written() as u64, store.head(&path).await.unwrap().size);

        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        let read: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        let read = concat_batches(&read[0].schema(), &read).unwrap();
        let written = concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(read, written);
    }
}
