//! The files a run's rows travel in: Parquet (the default) or Avro Object
//! Container Files (connection option `chunk_format`), each with the
//! logical types BigQuery reads as the table's column types, and the load
//! job settings that go with the format.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arrow_avro::compression::CompressionCodec;
use arrow_avro::writer::{AvroWriter, WriterBuilder};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, IntervalUnit, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use serde_json::{Value, json};

use super::resumable;
use crate::contract::DestinationError;
use crate::destinations::dictionary;
use crate::type_mapping::interval::{self, IntervalText};

/// How chunks are encoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ChunkFormat {
    Parquet,
    Avro,
}

impl ChunkFormat {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Self::Parquet),
            "avro" => Ok(Self::Avro),
            other => Err(format!("chunk_format '{other}' is not one of 'parquet', 'avro'")),
        }
    }

    pub(super) fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Avro => "avro",
        }
    }

    /// The load configuration's settings for this format: Parquet lists
    /// read as REPEATED columns, Avro logical types read as the types they
    /// name, and decimals as NUMERIC or, when they do not fit, BIGNUMERIC.
    pub(super) fn load_settings(self) -> Value {
        match self {
            Self::Parquet => json!({
                "sourceFormat": "PARQUET",
                "parquetOptions": {"enableListInference": true},
                "decimalTargetTypes": ["NUMERIC", "BIGNUMERIC"],
            }),
            Self::Avro => json!({
                "sourceFormat": "AVRO",
                "useAvroLogicalTypes": true,
                "decimalTargetTypes": ["NUMERIC", "BIGNUMERIC"],
            }),
        }
    }
}

/// The bytes a chunk's encoder wrote and nobody took yet, shared with
/// the encoder so that whole pieces can leave while it writes on.
#[derive(Clone, Default)]
struct Spool(Arc<Mutex<SpoolBytes>>);

#[derive(Default)]
struct SpoolBytes {
    /// Written and not taken.
    waiting: Vec<u8>,
    /// Written in all.
    written: usize,
}

impl Spool {
    fn bytes(&self) -> MutexGuard<'_, SpoolBytes> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes written in all.
    fn written(&self) -> usize {
        self.bytes().written
    }

    /// Bytes written and not taken.
    fn waiting(&self) -> usize {
        self.bytes().waiting.len()
    }

    /// The first `n` bytes waiting, when that many are.
    fn take(&self, n: usize) -> Option<Vec<u8>> {
        let mut bytes = self.bytes();
        if bytes.waiting.len() < n {
            return None;
        }
        let rest = bytes.waiting.split_off(n);
        Some(std::mem::replace(&mut bytes.waiting, rest))
    }

    /// Every byte waiting.
    fn take_all(&self) -> Vec<u8> {
        std::mem::take(&mut self.bytes().waiting)
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self.bytes();
        bytes.waiting.extend_from_slice(buf);
        bytes.written += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes per chunk unless `SLUICE_BIGQUERY_CHUNK_BYTES` says
/// otherwise: large enough that a run is a few jobs (BigQuery allows 1,500
/// table operations a day per table), small enough to hold in memory.
const DEFAULT_CHUNK_BYTES: usize = 128 << 20;

/// The size chunks are cut at.
pub(super) fn chunk_bytes() -> usize {
    std::env::var("SLUICE_BIGQUERY_CHUNK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_CHUNK_BYTES)
}

/// A finished chunk: the file's bytes not taken while it was written
/// (with [`Chunker::take`]: the whole file when none were) and its row
/// count.
pub(super) struct Chunk {
    pub data: Vec<u8>,
    pub rows: u64,
}

/// Batches gathered into chunks of about [`chunk_bytes`] each.
pub(super) struct Chunker {
    format: ChunkFormat,
    limit: usize,
    /// Encoded bytes at which a Parquet row group is written out: a
    /// piece of an upload.
    row_group_bytes: usize,
    /// The chunk being written and its rows so far.
    open: Option<(ChunkWriter, u64)>,
}

impl Chunker {
    pub(super) fn new(format: ChunkFormat) -> Self {
        Self {
            format,
            limit: chunk_bytes(),
            row_group_bytes: resumable::piece_bytes(),
            open: None,
        }
    }

    /// Adds `batch`; the chunk it filled, if it did.
    pub(super) fn add(&mut self, batch: RecordBatch) -> Result<Option<Chunk>, DestinationError> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let (writer, rows) = match &mut self.open {
            Some(open) => open,
            None => self
                .open
                .insert((ChunkWriter::new(self.format, &batch, self.row_group_bytes)?, 0)),
        };
        *rows += batch.num_rows() as u64;
        writer.write(batch)?;
        match writer.size() >= self.limit {
            true => self.finish(),
            false => Ok(None),
        }
    }

    /// The first `n` bytes of the chunk being written that were not taken
    /// yet, when that many are written: its file may leave in pieces while
    /// it is written.
    pub(super) fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        self.open.as_ref().and_then(|(writer, _)| writer.spool.take(n))
    }

    /// Bytes of the chunk being written that are written and not taken.
    pub(super) fn waiting(&self) -> usize {
        self.open.as_ref().map_or(0, |(writer, _)| writer.spool.waiting())
    }

    /// The chunk being written, finished; `None` when no rows wait.
    pub(super) fn finish(&mut self) -> Result<Option<Chunk>, DestinationError> {
        let Some((writer, rows)) = self.open.take() else {
            return Ok(None);
        };
        Ok(Some(Chunk {
            data: writer.finish()?,
            rows,
        }))
    }
}

enum Encoder {
    Parquet(Box<ArrowWriter<Spool>>),
    Avro(AvroWriter<Spool>),
}

/// The chunk being written, with the schema its batches are cast to, and
/// its bytes so far.
struct ChunkWriter {
    schema: SchemaRef,
    encoder: Encoder,
    spool: Spool,
    /// Encoded bytes at which a Parquet row group is written out.
    row_group_bytes: usize,
}

impl ChunkWriter {
    /// A chunk for batches like `first`, its first: Parquet columns whose
    /// values repeat in it are dictionary encoded, the others plain.
    fn new(format: ChunkFormat, first: &RecordBatch, row_group_bytes: usize) -> Result<Self, DestinationError> {
        let schema = chunk_schema(&first.schema(), format);
        let spool = Spool::default();
        let encoder = match format {
            ChunkFormat::Parquet => {
                let properties = WriterProperties::builder().set_compression(Compression::SNAPPY);
                let properties = dictionary::only_where_values_repeat(properties, first).build();
                Encoder::Parquet(Box::new(ArrowWriter::try_new(
                    spool.clone(),
                    schema.clone(),
                    Some(properties),
                )?))
            }
            ChunkFormat::Avro => {
                let writer = WriterBuilder::new(schema.as_ref().clone())
                    .with_compression(Some(CompressionCodec::Deflate))
                    .build(spool.clone())
                    .map_err(datafusion::arrow::error::ArrowError::from)?;
                Encoder::Avro(writer)
            }
        };
        Ok(Self {
            schema,
            encoder,
            spool,
            row_group_bytes,
        })
    }

    /// Encodes `batch`. A Parquet row group is written out once it holds
    /// a piece of an upload's worth of bytes, so that the file's bytes
    /// come out as it grows (and a row group's buffers stay that small);
    /// Avro writes its blocks as they fill.
    fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        let batch = conform(batch, &self.schema)?;
        match &mut self.encoder {
            Encoder::Parquet(writer) => {
                writer.write(&batch)?;
                if writer.in_progress_size() >= self.row_group_bytes {
                    writer.flush()?;
                }
            }
            Encoder::Avro(writer) => writer
                .write(&batch)
                .map_err(datafusion::arrow::error::ArrowError::from)?,
        }
        Ok(())
    }

    /// The chunk's size so far (encoded, or about to be).
    fn size(&self) -> usize {
        match &self.encoder {
            Encoder::Parquet(writer) => writer.bytes_written() + writer.in_progress_size(),
            Encoder::Avro(_) => self.spool.written(),
        }
    }

    /// Ends the file; its bytes not taken yet.
    fn finish(self) -> Result<Vec<u8>, DestinationError> {
        match self.encoder {
            Encoder::Parquet(writer) => {
                writer.close()?;
            }
            Encoder::Avro(mut writer) => {
                writer.finish().map_err(datafusion::arrow::error::ArrowError::from)?;
            }
        }
        Ok(self.spool.take_all())
    }
}

/// The schema chunks are written with. Intervals: STRING text in
/// BigQuery's canonical `Y-M D H:M:S.F` form, which an INTERVAL column
/// loads (neither file format has a logical type BigQuery reads as
/// INTERVAL). Parquet: list elements named
/// `element` (inside RECORDs too), as the Parquet LIST spec has them, so that BigQuery's list
/// inference reads them as REPEATED columns. Avro: arrays of non-null items
/// (BigQuery's REPEATED columns hold no NULLs).
fn chunk_schema(schema: &Schema, format: ChunkFormat) -> SchemaRef {
    fn element(f: &FieldRef, format: ChunkFormat) -> Field {
        let element = field(f, format);
        match format {
            ChunkFormat::Parquet => element.with_name("element"),
            ChunkFormat::Avro => element.with_nullable(false),
        }
    }
    fn field(f: &FieldRef, format: ChunkFormat) -> Field {
        let data_type = match f.data_type() {
            DataType::List(item) => DataType::List(Arc::new(element(item, format))),
            DataType::LargeList(item) => DataType::LargeList(Arc::new(element(item, format))),
            DataType::Struct(children) => DataType::Struct(children.iter().map(|c| field(c, format)).collect()),
            DataType::Interval(IntervalUnit::MonthDayNano) => DataType::Utf8,
            other => other.clone(),
        };
        f.as_ref().clone().with_data_type(data_type)
    }
    Arc::new(Schema::new(
        schema.fields().iter().map(|f| field(f, format)).collect::<Vec<_>>(),
    ))
}

/// `array` as `to`: intervals as BigQuery's canonical text.
fn convert(array: &ArrayRef, to: &DataType, column: &str) -> Result<ArrayRef, ArrowError> {
    match (array.data_type(), to) {
        (DataType::Interval(IntervalUnit::MonthDayNano), DataType::Utf8) => {
            interval::to_text(array.as_ref(), IntervalText::BigQuery, column)
        }
        (DataType::List(from), DataType::List(item)) if matches!(from.data_type(), DataType::Interval(_)) => {
            let list = array.as_list::<i32>();
            let values = convert(list.values(), item.data_type(), column)?;
            let item = Arc::new(item.as_ref().clone().with_nullable(true));
            let converted = ListArray::try_new(item, list.offsets().clone(), values, list.nulls().cloned())?;
            cast(&(Arc::new(converted) as ArrayRef), to)
        }
        _ => cast(array, to),
    }
}

/// `batch` with `schema`'s field names and list item nullability.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, DestinationError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(array, field)| {
            if array.data_type() == field.data_type() {
                Ok(array.clone())
            } else {
                convert(array, field.data_type(), field.name())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::parquet::basic::Encoding;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use datafusion::parquet::record::RowAccessor;

    use super::*;

    #[test]
    fn parquet_chunks_keep_a_dictionary_only_where_values_repeat() {
        let rows = 10_000;
        let notes = StringArray::from_iter_values((0..rows).map(|i| format!("order note {i}")));
        let kinds = Int64Array::from_iter_values((0..rows).map(|i| i % 3));
        let batch =
            RecordBatch::try_from_iter([("note", Arc::new(notes) as ArrayRef), ("kind", Arc::new(kinds))]).unwrap();
        let mut chunk = ChunkWriter::new(ChunkFormat::Parquet, &batch, usize::MAX).unwrap();
        chunk.write(batch).unwrap();
        let file = SerializedFileReader::new(bytes::Bytes::from(chunk.finish().unwrap())).unwrap();
        let columns = file.metadata().row_group(0).columns();
        let dictionary = |i: usize| columns[i].encodings().any(|e| e == Encoding::RLE_DICTIONARY);
        assert!(!dictionary(0), "unique notes are written plain");
        assert!(dictionary(1), "a repeating kind keeps its dictionary");
        assert_eq!(file.metadata().file_metadata().num_rows(), rows);
    }

    /// Batches of 5,000 rows of hard-to-compress text.
    fn text_batches(count: usize) -> Vec<RecordBatch> {
        (0..count)
            .map(|b| {
                let ids = Int64Array::from_iter_values((0..5_000).map(|i| (b * 5_000 + i) as i64));
                let notes = StringArray::from_iter_values(
                    (0..5_000u64)
                        .map(|i| format!("{:016x}", (b as u64 * 5_000 + i).wrapping_mul(0x9e37_79b9_7f4a_7c15))),
                );
                RecordBatch::try_from_iter([("id", Arc::new(ids) as ArrayRef), ("note", Arc::new(notes))]).unwrap()
            })
            .collect()
    }

    /// Writes `batches` into one chunk, taking whole 256 KiB pieces after
    /// each batch: the pieces taken while writing and the whole file.
    fn written_in_pieces(format: ChunkFormat, batches: Vec<RecordBatch>) -> (usize, Vec<u8>) {
        const PIECE: usize = 256 << 10;
        let mut chunker = Chunker {
            format,
            limit: usize::MAX,
            row_group_bytes: PIECE,
            open: None,
        };
        let (mut file, mut early) = (Vec::new(), 0);
        for batch in batches {
            assert!(chunker.add(batch).unwrap().is_none());
            while let Some(piece) = chunker.take(PIECE) {
                assert_eq!(piece.len(), PIECE);
                early += 1;
                file.extend(piece);
            }
            assert!(chunker.waiting() < PIECE);
        }
        let last = chunker.finish().unwrap().expect("rows were written");
        assert_eq!(last.rows, 100_000);
        file.extend(last.data);
        (early, file)
    }

    #[test]
    fn a_parquet_chunk_leaves_in_pieces_while_it_is_written() {
        let (early, file) = written_in_pieces(ChunkFormat::Parquet, text_batches(20));
        assert!(
            early >= 4,
            "pieces taken before the end: {early} of a {} byte file",
            file.len()
        );
        let file = SerializedFileReader::new(bytes::Bytes::from(file)).unwrap();
        assert!(
            file.metadata().num_row_groups() > 4,
            "row groups written out on the way"
        );
        assert_eq!(file.metadata().file_metadata().num_rows(), 100_000);
        let ids: Vec<i64> = file
            .get_row_iter(None)
            .unwrap()
            .map(|row| row.unwrap().get_long(0).unwrap())
            .collect();
        assert_eq!(ids, (0..100_000).collect::<Vec<i64>>());
    }

    #[test]
    fn an_avro_chunk_leaves_in_pieces_while_it_is_written() {
        let batches = text_batches(20);
        let (early, file) = written_in_pieces(ChunkFormat::Avro, batches.clone());
        assert!(
            early >= 2,
            "pieces taken before the end: {early} of a {} byte file",
            file.len()
        );
        let reader = arrow_avro::reader::ReaderBuilder::new()
            .build(std::io::Cursor::new(file))
            .unwrap();
        let read: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        let rows: usize = read.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 100_000);
        let ids: Vec<i64> = read
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, (0..100_000).collect::<Vec<i64>>());
    }
}
