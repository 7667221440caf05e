//! Source files loaded as they are ([`WholeFile`]): a Parquet file whose
//! columns are already the table's is copied byte for byte into the table's
//! data folder instead of being decoded and encoded again. Up to
//! [`COPIES_AT_ONCE`] files are copied at once, each streamed in parts (so
//! memory stays flat however large the file), then its copy's footer is
//! checked against the table and what the listing said, and the copy is
//! synced before the next manifest may list it with its constants.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::object_store::buffered::BufWriter;
use datafusion::object_store::{self, GetOptions, GetResultPayload, ObjectMeta};
use futures::StreamExt;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::LocalWarehouse;
use super::encode::PART_BYTES;
use super::manifest::{Constant, DataFile};
use crate::contract::{DestinationError, ShipProgress, WholeFile, parquet_footer, same_columns};

/// Files copied at once by one load.
const COPIES_AT_ONCE: usize = 4;

/// Bytes of a local source file read per blocking read (`object_store`'s
/// stream of a local file reads 8 KiB at a time).
const READ_BYTES: u64 = 4 << 20;

/// The copies of one load.
pub(super) struct Copies {
    warehouse: LocalWarehouse,
    table: String,
    schema: SchemaRef,
    /// Names the copies `<prefix>-copy-<n>.parquet`.
    prefix: String,
    running: JoinSet<Result<DataFile, DestinationError>>,
    finished: Vec<DataFile>,
    /// Every copy's name, finished or not, for a discard.
    names: Vec<String>,
    written: Arc<ShipProgress>,
}

impl Copies {
    /// Copies into `table`, whose columns are `schema`, counting the bytes
    /// copied in `written`.
    pub fn new(
        warehouse: LocalWarehouse,
        table: &str,
        prefix: String,
        schema: SchemaRef,
        written: Arc<ShipProgress>,
    ) -> Self {
        Self {
            warehouse,
            table: table.to_owned(),
            schema,
            prefix,
            running: JoinSet::new(),
            finished: Vec::new(),
            names: Vec::new(),
            written,
        }
    }

    /// Starts copying `file`, once fewer than [`COPIES_AT_ONCE`] run; the
    /// error of a copy that failed meanwhile fails it.
    pub async fn add(&mut self, file: WholeFile) -> Result<(), DestinationError> {
        while self.running.len() >= COPIES_AT_ONCE {
            self.join_next().await?;
        }
        let name = format!("{}-copy-{:05}.parquet", self.prefix, self.names.len());
        self.names.push(name.clone());
        let copy = Copy {
            warehouse: self.warehouse.clone(),
            table: self.table.clone(),
            schema: self.schema.clone(),
            name,
            file,
        };
        let written = self.written.clone();
        self.running.spawn(async move {
            let copied = copy.run().await?;
            written.uploaded(copied.bytes);
            Ok(copied)
        });
        Ok(())
    }

    /// Waits for every copy; the files copied.
    pub async fn finish(&mut self) -> Result<Vec<DataFile>, DestinationError> {
        while !self.running.is_empty() {
            self.join_next().await?;
        }
        Ok(std::mem::take(&mut self.finished))
    }

    /// Stops the copies and deletes every file they wrote.
    pub async fn discard(&mut self) -> Result<(), DestinationError> {
        self.running.shutdown().await;
        self.finished.clear();
        let paths = (self.names.drain(..))
            .map(|name| self.warehouse.data_path(&self.table, &name))
            .collect();
        self.warehouse.delete_all(paths).await
    }

    async fn join_next(&mut self) -> Result<(), DestinationError> {
        if let Some(done) = self.running.join_next().await {
            let copied = done.unwrap_or_else(|e| {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic())
                }
                Err(DestinationError::EncoderStopped)
            })?;
            self.finished.push(copied);
        }
        Ok(())
    }
}

/// One file to copy.
struct Copy {
    warehouse: LocalWarehouse,
    table: String,
    schema: SchemaRef,
    name: String,
    file: WholeFile,
}

impl Copy {
    /// Copies the file, checks the copy and syncs it; a copy that fails
    /// leaves nothing behind.
    async fn run(self) -> Result<DataFile, DestinationError> {
        let constants = (self.file.constants.iter())
            .map(|(column, value)| Constant::new(column, value))
            .collect::<Result<Vec<_>, _>>()?;
        let path = self.warehouse.data_path(&self.table, &self.name);
        self.copy_bytes(&path).await?;
        let rows = match self.check(&path).await {
            Ok(rows) => rows,
            Err(e) => {
                self.warehouse.delete_all(vec![path]).await?;
                return Err(e);
            }
        };
        self.warehouse.sync(std::slice::from_ref(&path)).await?;
        Ok(DataFile {
            name: self.name,
            rows,
            bytes: self.file.meta.size,
            constants,
        })
    }

    fn failed(&self, reason: String) -> DestinationError {
        DestinationError::CopiedFile {
            file: self.file.url.clone(),
            reason,
        }
    }

    /// Streams the version of the file that was listed to `path`.
    async fn copy_bytes(&self, path: &object_store::path::Path) -> Result<(), DestinationError> {
        let meta = &self.file.meta;
        let options = GetOptions {
            if_match: meta.e_tag.clone(),
            version: meta.version.clone(),
            ..GetOptions::default()
        };
        let source = match self.file.store.get_opts(&meta.location, options).await {
            Ok(source) => source,
            Err(object_store::Error::Precondition { .. }) => {
                return Err(self.failed("it changed after it was listed; run the job again".into()));
            }
            Err(e) => return Err(e.into()),
        };
        if source.meta.size != meta.size {
            return Err(self.failed(format!(
                "it has {} bytes, {} when it was listed; run the job again",
                source.meta.size, meta.size
            )));
        }
        let mut writer =
            BufWriter::with_capacity(self.warehouse.store.clone(), path.clone(), PART_BYTES).with_max_concurrency(1);
        let copied = match source.payload {
            GetResultPayload::File(file, _) => copy_file_range(file, source.range, &mut writer).await,
            GetResultPayload::Stream(mut chunks) => {
                async {
                    while let Some(chunk) = chunks.next().await {
                        writer.put(chunk?).await?;
                    }
                    Ok(())
                }
                .await
            }
        };
        if let Err(e) = copied {
            writer.abort().await?;
            return Err(e.into());
        }
        if let Err(e) = writer.shutdown().await {
            self.warehouse.delete_all(vec![path.clone()]).await?;
            return Err(object_store::Error::Generic {
                store: "warehouse",
                source: Box::new(e),
            }
            .into());
        }
        Ok(())
    }

    /// The rows of the copy at `path`, once its own footer shows the
    /// table's columns (less the constants) and the rows the listing saw.
    async fn check(&self, path: &object_store::path::Path) -> Result<u64, DestinationError> {
        let copy = ObjectMeta {
            location: path.clone(),
            e_tag: None,
            version: None,
            ..self.file.meta.clone()
        };
        let (schema, rows) = parquet_footer(self.warehouse.store.as_ref(), &copy).await?;
        let constant = |field: &Field| self.file.constants.iter().any(|(c, _)| c == field.name());
        let wanted: Vec<&Field> = (self.schema.fields().iter())
            .map(|f| f.as_ref())
            .filter(|f| !constant(f))
            .collect();
        let known = (self.file.constants.iter()).all(|(c, v)| {
            self.schema
                .field_with_name(c)
                .is_ok_and(|f| *f.data_type() == v.data_type())
        });
        if !known || !same_columns(&schema, &wanted) {
            return Err(self.failed(format!(
                "its columns ({}) are not those of table \"{}\"",
                column_list(schema.fields().iter().map(|f| f.as_ref())),
                self.table
            )));
        }
        if rows != self.file.rows {
            return Err(self.failed(format!(
                "its footer says {rows} rows, {} when it was listed; run the job again",
                self.file.rows
            )));
        }
        Ok(rows)
    }
}

/// `name type` of each field, comma-separated.
fn column_list<'a>(fields: impl Iterator<Item = &'a Field>) -> String {
    fields
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `range` of a local `file` to `writer`, [`READ_BYTES`] per read.
async fn copy_file_range(file: File, range: Range<u64>, writer: &mut BufWriter) -> Result<(), object_store::Error> {
    let failed = |e: std::io::Error| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(e),
    };
    let mut file = file;
    let mut offset = range.start;
    while offset < range.end {
        let length = READ_BYTES.min(range.end - offset);
        let chunk;
        (file, chunk) = tokio::task::spawn_blocking(move || {
            file.seek(SeekFrom::Start(offset))?;
            let mut chunk = Vec::with_capacity(usize::try_from(length).unwrap_or(usize::MAX));
            (&mut file).take(length).read_to_end(&mut chunk)?;
            Ok::<_, std::io::Error>((file, chunk))
        })
        .await
        .map_err(|e| failed(std::io::Error::other(e)))?
        .map_err(failed)?;
        if chunk.is_empty() {
            return Err(failed(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)));
        }
        offset += chunk.len() as u64;
        writer.put(Bytes::from(chunk)).await?;
    }
    Ok(())
}
