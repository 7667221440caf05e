//! Files under a prefix as a [`Source`], read through a private DataFusion
//! session over the backend's `object_store`.
//!
//! Column types are the files' own Arrow types (Parquet footers, or
//! DataFusion's inference over the first [`INFER_ROWS`] rows of CSV and
//! NDJSON), shown as `source_type`. A scan reads the files as they are
//! listed, several at once (the connection's `parallel_reads`): each is
//! registered as a table of exactly those types (parsed back from
//! `source_type`) under a view adding the virtual columns, the scan's one
//! `SELECT` in DataFusion SQL runs on it, and each batch is converted to
//! the mapped types. Batches of one file keep their order; batches of files
//! read at once interleave.
//!
//! Text formats are read a little differently from their raw inference:
//! timestamps are read with microseconds, and a CSV timestamp column whose
//! sampled values all carry a UTC offset (`...Z`, `+02:00`) is read as UTC
//! instants (`TIMESTAMP`) rather than wall times (`DATETIME`).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::Utc;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt64Type};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::config::TableParquetOptions;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectMeta, ObjectStore};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tracing::{debug, warn};
use url::Url;

use super::csv::CsvSyntax;
use super::globs::{self, TableGlob};
use super::listing::{self, DataFile, Entry, Files, Format};
use super::widen::{self, Disagreement};
use super::{Backend, Location, SCHEMA, avro, convert, excel, footers, split};
use crate::contract::{
    ColumnInfo, CommitHorizon, Dialect, FILE_COLUMN, FILE_MODIFIED_TYPE, FILE_URL_TYPE, FilesRead, PieceStream,
    QueryBuilder, ScanPart, ScanPiece, ScanRequest, Source, SourceError, SourceInstant, SplitScan, TableDescription,
    TableInfo, TableKind, TableRef, TextRows, WholeFile, closest, footer_columns, same_columns, scan_sql,
};
use crate::sources::datafusion_sql::{DataFusionDialect, session, session_config};
use crate::sources::stream_table;
use crate::type_mapping::Confidence;
use crate::type_mapping::arrow::map;

/// Rows of a CSV or NDJSON file that type inference reads.
const INFER_ROWS: usize = 1000;

/// The pseudo-column holding each row's file's last-modified time.
const MODIFIED_COLUMN: &str = "_modified_at";

/// A column the files do not hold, with the value each file gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Virtual {
    /// The value of the n-th `key=value` folder level.
    Partition(usize),
    /// The object's URL.
    File,
    /// The object's last-modified time.
    Modified,
}

impl Virtual {
    /// Its `source_type` in a description, which is how a scan knows it.
    fn source_type(self) -> &'static str {
        match self {
            Virtual::Partition(_) => "key=value folder",
            Virtual::File => FILE_URL_TYPE,
            Virtual::Modified => FILE_MODIFIED_TYPE,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Virtual::Partition(_) | Virtual::File => DataType::Utf8,
            Virtual::Modified => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// The virtual column a described column is, if any.
    fn of(column: &ColumnInfo, entry: &Entry) -> Option<Self> {
        [Virtual::File, Virtual::Modified]
            .into_iter()
            .chain((0..entry.partition_keys.len()).map(Virtual::Partition))
            .find(|v| v.source_type() == column.source_type && v.name(entry) == Some(column.name.as_str()))
    }

    fn name(self, entry: &Entry) -> Option<&str> {
        match self {
            Virtual::Partition(i) => entry.partition_keys.get(i).map(String::as_str),
            Virtual::File => Some(FILE_COLUMN),
            Virtual::Modified => Some(MODIFIED_COLUMN),
        }
    }

    /// Its value for `file`, whose store is at `url`.
    fn value(self, file: &DataFile, url: &str) -> ScalarValue {
        match self {
            Virtual::Partition(i) => ScalarValue::Utf8(file.partitions.get(i).cloned()),
            Virtual::File => ScalarValue::Utf8(Some(format!("{url}{}", file.location))),
            Virtual::Modified => {
                ScalarValue::TimestampMicrosecond(Some(file.modified.timestamp_micros()), Some("UTC".into()))
            }
        }
    }

    /// Its value for `file`, as a literal of the reader's session.
    fn literal(self, file: &DataFile, url: &str) -> Option<String> {
        DataFusionDialect.literal(&self.value(file, url))
    }
}

/// The URL the private session reads the connection's store under.
static STORE_URL: LazyLock<Url> = LazyLock::new(|| Url::parse("sluice://files").expect("a valid URL"));

/// Opens a backend as a source, with the connection's `tables` option,
/// reading up to `parallel_reads` files at once, CSV files in `csv` (or
/// refusing to read them with the reason the options are wrong).
pub(crate) fn open(
    backend: Arc<dyn Backend>,
    tables: Option<&str>,
    parallel_reads: usize,
    csv: Result<CsvSyntax, String>,
) -> Arc<dyn Source> {
    Arc::new(FileSource {
        backend,
        tables: tables.map(globs::parse),
        parallel_reads: parallel_reads.max(1),
        csv,
        files_read: Arc::new(FileCounts::default()),
    })
}

#[derive(Clone)]
struct FileSource {
    backend: Arc<dyn Backend>,
    /// The tables the `tables` option maps, when given.
    tables: Option<Result<Vec<TableGlob>, String>>,
    /// Files a scan reads at once.
    parallel_reads: usize,
    /// The syntax of CSV files, or why the options do not give one.
    csv: Result<CsvSyntax, String>,
    /// The latest scan's files, read and to read.
    files_read: Arc<FileCounts>,
}

/// Files a scan has read to the end, of those it reads.
#[derive(Debug, Default)]
struct FileCounts {
    done: AtomicU64,
    total: AtomicU64,
}

impl FileSource {
    /// The store and its tables (only the `wanted` one, when given), or why
    /// they cannot be listed.
    async fn entries(&self, wanted: Option<&str>) -> Result<(Location, Vec<Entry>), SourceError> {
        self.backend.check().await?;
        let location = self.backend.location()?;
        let (store, prefix) = (location.store.as_ref(), &location.prefix);
        let entries = match &self.tables {
            None => listing::entries(store, prefix, wanted).await,
            Some(Ok(tables)) => listing::globbed(store, prefix, tables).await,
            Some(Err(message)) => {
                return Err(SourceError::Query {
                    code: Some("22023".into()),
                    message: message.clone(),
                });
            }
        };
        let entries = entries.map_err(|e| self.backend.failure(&e))?;
        let entries = with_sheets(location.store.as_ref(), entries).await;
        Ok((location, entries))
    }

    /// The CSV syntax, or `22023` naming the option that is wrong.
    fn csv(&self) -> Result<CsvSyntax, SourceError> {
        self.csv.clone().map_err(|message| SourceError::Query {
            code: Some("22023".into()),
            message,
        })
    }

    /// The table `table` names, or `NotFound` with the names that exist.
    async fn entry(&self, table: &TableRef) -> Result<(Location, Entry), SourceError> {
        check_schema(&table.schema)?;
        // Only the table's own folder is listed; every table is listed only
        // to name those nearby when it does not exist.
        let (location, entries) = self.entries(Some(&table.name)).await?;
        if let Some(entry) = entries.into_iter().find(|e| e.name == table.name) {
            return Ok((location, entry));
        }
        let (_, entries) = self.entries(None).await?;
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        Err(SourceError::NotFound {
            kind: "table",
            name: table.to_string(),
            nearby: closest(&table.name, names),
        })
    }

    /// The columns added to the files' own: partition keys, then `_file`
    /// and `_modified_at`; a name the files already have is left out.
    fn virtual_columns(&self, entry: &Entry, file_columns: &HashSet<&str>) -> Vec<(String, Virtual)> {
        let mut kinds: Vec<Virtual> = (0..entry.partition_keys.len()).map(Virtual::Partition).collect();
        if self.backend.pseudo_columns() {
            kinds.extend([Virtual::File, Virtual::Modified]);
        }
        let mut columns: Vec<(String, Virtual)> = Vec::new();
        for kind in kinds {
            let Some(name) = kind.name(entry) else { continue };
            if !file_columns.contains(name) && !columns.iter().any(|(n, _)| n == name) {
                columns.push((name.to_owned(), kind));
            }
        }
        columns
    }
}

impl FileSource {
    /// The scan's schema and its pieces: each file's rows converted to the
    /// mapped types, or, with `whole`, the file itself where
    /// [`WholeFiles`] finds its columns are `whole`'s. The table's files
    /// are listed now, unless `listed` gives them (a cluster part's).
    async fn pieces(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        whole: Option<&SchemaRef>,
        listed: Option<Entry>,
    ) -> Result<(SchemaRef, PieceStream), SourceError> {
        let table = &description.table;
        let columns = request
            .columns
            .iter()
            .map(|&i| {
                description
                    .columns
                    .get(i)
                    .cloned()
                    .ok_or_else(|| SourceError::NotFound {
                        kind: "column",
                        name: format!("#{i} of {table}"),
                        nearby: description.columns.iter().map(|c| c.name.clone()).collect(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let target = Arc::new(
            description
                .arrow_schema()
                .project(&request.columns)
                .map_err(|e| read_error(table, e.into()))?,
        );
        let csv = self.csv()?;
        let (location, entry) = match listed {
            Some(entry) => {
                self.backend.check().await?;
                (self.backend.location()?, entry)
            }
            None => self.entry(table).await?,
        };
        check_readable(table, &entry)?;
        let extra: Vec<(String, Virtual)> = (description.columns.iter())
            .filter_map(|c| Virtual::of(c, &entry).map(|v| (c.name.clone(), v)))
            .collect();
        let fields = description
            .columns
            .iter()
            .filter(|c| Virtual::of(c, &entry).is_none())
            .map(|c| {
                let data_type = DataType::from_str(&c.source_type).map_err(|e| SourceError::Query {
                    code: None,
                    message: format!(
                        "column \"{}\" of {table} has an unknown type {}: {e}",
                        c.name, c.source_type
                    ),
                })?;
                Ok(Field::new(&c.name, data_type, c.nullable))
            })
            .collect::<Result<Vec<_>, SourceError>>()?;
        let file_schema: SchemaRef = Arc::new(Schema::new(fields));
        let whole = match whole {
            Some(whole) if entry.format == Format::Parquet => {
                WholeFiles::new(&columns, &entry, whole, &location.url).map(Arc::new)
            }
            _ => None,
        };
        let ctx = store_session(&location, request.batch_rows);
        let sql = self.scan_query(description, request);
        let reader = FileReader {
            store: location.store.clone(),
            batch_rows: request.batch_rows.unwrap_or(8192),
            ctx,
            table: table.clone(),
            format: entry.format,
            sheet: entry.sheet.clone(),
            csv,
            schema: file_schema,
            extra,
            url: location.url.clone(),
            sql,
            planning: Arc::default(),
        };
        let counts = self.files_read.clone();
        counts.done.store(0, Ordering::Relaxed);
        counts.total.store(entry.count, Ordering::Relaxed);
        // A preview with a LIMIT reads one file at a time, to read no more
        // than it needs.
        let parallel = if request.limit.is_some() {
            1
        } else {
            self.parallel_reads
        };
        // One listing, streamed: each file is read as it is listed, up to
        // `parallel` at once, and the total is the count of the listing
        // that found the table, raised when this one finds more.
        let per_file = entry
            .files(location.store.clone())
            .map_err(DataFusionError::from)
            .enumerate()
            .map(move |(index, file)| {
                let file = file?;
                counts.total.fetch_max(index as u64 + 1, Ordering::Relaxed);
                if index > 0 {
                    crate::failpoint::hit("between_files").map_err(|e| DataFusionError::External(Box::new(e)))?;
                }
                Ok::<_, DataFusionError>(match &whole {
                    Some(whole) => whole.clone().whole_or_rows(reader.clone(), file, counts.clone()),
                    None => read_in_task(reader.clone(), file, counts.clone())
                        .map_ok(ScanPiece::Rows)
                        .boxed(),
                })
            })
            .try_flatten_unordered(parallel);
        let table = table.clone();
        let schema = target.clone();
        let pieces = per_file.map(move |piece| {
            let converted =
                match piece {
                    Ok(ScanPiece::Rows(batch)) => convert::batch(&batch, &columns, &schema)
                        .map(ScanPiece::Rows)
                        .map_err(|message| SourceError::Query {
                            code: None,
                            message: format!("cannot read {table}: {message}"),
                        }),
                    Ok(file @ ScanPiece::File(_)) => Ok(file),
                    Err(e) => Err(read_error(&table, e)),
                };
            converted.map_err(|e| DataFusionError::External(Box::new(e)))
        });
        Ok((target, pieces.boxed()))
    }
}

impl FileSource {
    /// The rows of a scan of the table's files (`listed`: those of a
    /// cluster part's, else every file listed now).
    async fn rows(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        listed: Option<Entry>,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let (target, pieces) = self.pieces(description, request, None, listed).await?;
        let batches = limit_rows(pieces.map(|piece| piece.and_then(rows_only)), request.limit);
        Ok(Box::pin(RecordBatchStreamAdapter::new(target, batches)))
    }
}

/// The files of `files` that can hold rows `filter` keeps, judged by their
/// virtual columns (`_modified_at`, `_file`, partition values) as a scan
/// judges them; all of them when the filter needs the files' own columns.
async fn in_window(
    description: &TableDescription,
    entry: &Entry,
    url: &str,
    files: Vec<DataFile>,
    filter: &str,
) -> Vec<DataFile> {
    const INDEX: &str = "__sluice_file_index";
    let columns: Vec<(&str, Virtual)> = (description.columns.iter())
        .filter_map(|c| Virtual::of(c, entry).map(|v| (c.name.as_str(), v)))
        .collect();
    let kept = async {
        let mut fields = vec![Field::new(INDEX, DataType::UInt64, false)];
        let indexes = (0..files.len() as u64).map(|i| ScalarValue::UInt64(Some(i)));
        let mut arrays = vec![ScalarValue::iter_to_array(indexes)?];
        for (name, column) in &columns {
            fields.push(Field::new(*name, column.data_type(), true));
            arrays.push(ScalarValue::iter_to_array(files.iter().map(|f| column.value(f, url)))?);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        let ctx = SessionContext::new();
        ctx.register_batch("listing", batch)?;
        let sql = format!("SELECT {INDEX} FROM listing WHERE {filter}");
        let kept = ctx.sql(&sql).await?.collect().await?;
        Ok::<_, DataFusionError>(
            (kept.iter())
                .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
                .collect::<HashSet<u64>>(),
        )
    }
    .await;
    match kept {
        Ok(kept) => (files.into_iter().enumerate())
            .filter(|(i, _)| kept.contains(&(*i as u64)))
            .map(|(_, f)| f)
            .collect(),
        Err(error) => {
            debug!(table = %description.table, %error, "the filter needs the files' columns: every file is dealt");
            files
        }
    }
}

/// The batch of a piece of a scan that hands no files over.
fn rows_only(piece: ScanPiece) -> Result<RecordBatch, DataFusionError> {
    match piece {
        ScanPiece::Rows(batch) => Ok(batch),
        ScanPiece::File(file) => Err(DataFusionError::Internal(format!(
            "the scan handed {} over whole where rows were asked for",
            file.url
        ))),
    }
}

/// What makes a Parquet file of a scan a [`WholeFile`]: its footer's
/// columns are the requested file columns with the destination's types
/// (then every value reads back as the scan would convert it), and the
/// requested virtual columns have the destination's types too.
#[derive(Debug)]
struct WholeFiles {
    /// The destination fields of the requested file columns, in order.
    fields: Vec<Field>,
    /// The requested virtual columns.
    constants: Vec<(String, Virtual)>,
    /// The URL of the store, before each file's path.
    url: String,
}

impl WholeFiles {
    /// `None` when no file can come whole: a requested virtual column's
    /// destination type is not its own.
    fn new(columns: &[ColumnInfo], entry: &Entry, whole: &SchemaRef, url: &str) -> Option<Self> {
        if whole.fields().len() != columns.len() {
            return None;
        }
        let mut fields = Vec::new();
        let mut constants = Vec::new();
        for (column, field) in columns.iter().zip(whole.fields()) {
            match Virtual::of(column, entry) {
                Some(kind) if *field.data_type() == kind.data_type() => {
                    constants.push((field.name().clone(), kind));
                }
                Some(_) => return None,
                None => fields.push(field.as_ref().clone()),
            }
        }
        Some(Self {
            fields,
            constants,
            url: url.to_owned(),
        })
    }

    /// `file` as a [`WholeFile`] when its footer has the columns, else its
    /// rows read as any file's.
    fn whole_or_rows(
        self: Arc<Self>,
        reader: FileReader,
        file: DataFile,
        counts: Arc<FileCounts>,
    ) -> BoxStream<'static, Result<ScanPiece, DataFusionError>> {
        futures::stream::once(async move {
            // A footer that cannot be read fails the file's read as usual.
            let whole = match file.size {
                0 => None,
                _ => self.check(&reader.store, &file).await.ok().flatten(),
            };
            match whole {
                Some(whole) => {
                    counts.done.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, DataFusionError>(futures::stream::iter([Ok(ScanPiece::File(whole))]).boxed())
                }
                None => Ok(read_in_task(reader, file, counts).map_ok(ScanPiece::Rows).boxed()),
            }
        })
        .try_flatten()
        .boxed()
    }

    /// Reads `file`'s footer.
    async fn check(&self, store: &Arc<dyn ObjectStore>, file: &DataFile) -> Result<Option<WholeFile>, DataFusionError> {
        let mut meta = object(file);
        meta.e_tag = file.e_tag.clone();
        let (schema, rows) = footer_columns(&*footers::footer(store.as_ref(), &self.url, &meta).await?)?;
        let wanted: Vec<&Field> = self.fields.iter().collect();
        if !same_columns(&schema, &wanted) {
            return Ok(None);
        }
        Ok(Some(WholeFile {
            store: store.clone(),
            meta,
            url: format!("{}{}", self.url, file.location),
            rows,
            constants: (self.constants.iter())
                .map(|(name, kind)| (name.clone(), kind.value(file, &self.url)))
                .collect(),
        }))
    }
}

/// A session reading `location`'s store.
fn store_session(location: &Location, batch_rows: Option<usize>) -> SessionContext {
    let ctx = match footers::runtime(&location.url) {
        Ok(runtime) => SessionContext::new_with_config_rt(session_config(batch_rows), runtime),
        Err(e) => {
            warn!(error = %e, "cannot keep Parquet footers; each read reads them again");
            session(batch_rows)
        }
    };
    ctx.register_object_store(&STORE_URL, location.store.clone());
    ctx
}

/// Each Excel workbook directly under the prefix as one table per sheet,
/// `<workbook>_<sheet>` (each workbook read whole to find its sheets). A
/// workbook that cannot be read stays one table, which reads refuse.
async fn with_sheets(store: &dyn ObjectStore, entries: Vec<Entry>) -> Vec<Entry> {
    let mut tables = Vec::with_capacity(entries.len());
    for entry in entries {
        let Files::One(file) = &entry.files else {
            tables.push(entry);
            continue;
        };
        if entry.format != Format::Excel {
            tables.push(entry);
            continue;
        }
        match excel::sheets(store, &file.location).await {
            Ok(sheets) => tables.extend(sheets.into_iter().map(|sheet| Entry {
                name: format!("{}_{sheet}", entry.name),
                sheet: Some(sheet),
                ..entry.clone()
            })),
            Err(e) => {
                warn!(file = %file.location, error = %e, "Excel workbook cannot be read");
                tables.push(entry);
            }
        }
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    tables
}

/// Refuses the tables that are listed but not read: Excel files other
/// than a readable workbook's sheets.
fn check_readable(table: &TableRef, entry: &Entry) -> Result<(), SourceError> {
    match (entry.format, &entry.sheet) {
        (Format::Excel, None) => Err(SourceError::Query {
            code: Some("0A000".into()),
            message: format!(
                "{table} is made of {} files Sluice does not read: only a readable workbook directly under the \
                 prefix is read, one table per sheet (<workbook>_<sheet>); export the sheets as CSV or Parquet",
                entry.format.name()
            ),
        }),
        _ => Ok(()),
    }
}

#[async_trait]
impl Source for FileSource {
    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        let request = ScanRequest::every_column(description);
        let rows = self.scan(description, &request).await?;
        stream_table::query_text(&description.table.name, rows, sql)
            .await
            .map_err(|e| read_error(&description.table, e))
    }

    fn dialect(&self) -> &'static dyn Dialect {
        &DataFusionDialect
    }

    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        self.backend.check().await?;
        Ok(vec![SCHEMA.to_owned()])
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        if let Some(schema) = schema {
            check_schema(schema)?;
        }
        let (location, entries) = self.entries(None).await?;
        let mut tables = Vec::new();
        for entry in entries {
            let estimated_rows = match entry.format {
                Format::Parquet => match parquet_rows(&location, &entry).await {
                    Ok(rows) => Some(rows),
                    Err(e) => {
                        warn!(table = %entry.name, error = %e, "cannot read the row count of a Parquet table");
                        None
                    }
                },
                _ => None,
            };
            tables.push(TableInfo {
                table: TableRef {
                    schema: SCHEMA.to_owned(),
                    name: entry.name.clone(),
                },
                kind: TableKind::Table,
                estimated_rows,
                size_bytes: i64::try_from(entry.size).ok(),
                files: i64::try_from(entry.count).ok(),
                last_modified: entry.modified,
            });
        }
        Ok(tables)
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        let csv = self.csv()?;
        let (location, entry) = self.entry(table).await?;
        check_readable(table, &entry)?;
        let ctx = store_session(&location, None);
        let (schema, disagreements) = match file_schema(&ctx, &location, &entry, csv).await {
            Ok(schema) => (schema, Vec::new()),
            Err(e) => match widened_schema(&ctx, &location, &entry, csv).await {
                Some(widened) => widened,
                None => {
                    let conflict = type_conflict(&ctx, &location, &entry, csv).await;
                    return Err(conflict.map_or_else(
                        || read_error(table, e),
                        |message| SourceError::Query {
                            code: Some("42804".into()),
                            message: format!("cannot read {table}: {message}"),
                        },
                    ));
                }
            },
        };
        let estimated_rows = match entry.format {
            Format::Parquet => Some(
                parquet_rows(&location, &entry)
                    .await
                    .map_err(|e| read_error(table, e))?,
            ),
            _ => None,
        };
        let names: HashSet<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        // Text formats' and sheets' types are inferred: at best medium.
        let inferred = matches!(entry.format, Format::Csv | Format::Json | Format::Excel);
        let files = schema.fields().iter().map(|f| {
            let mut mapping = map(f.data_type());
            if inferred {
                mapping.confidence = mapping.confidence.max(Confidence::Medium);
            }
            if let Some(disagreement) = disagreements.iter().find(|d| &d.column == f.name()) {
                mapping.confidence = Confidence::Low;
                mapping.warnings.push(disagreement.warning(&location.url));
            }
            (f.name().clone(), f.data_type().to_string(), mapping, f.is_nullable())
        });
        let extra = self
            .virtual_columns(&entry, &names)
            .into_iter()
            .map(|(name, v)| (name, v.source_type().to_owned(), map(&v.data_type()), false));
        let columns = files
            .chain(extra)
            .zip(1..)
            .map(|((name, source_type, mapping, nullable), ordinal)| ColumnInfo {
                name,
                ordinal,
                source_type,
                nullable,
                default: None,
                primary_key_position: None,
                indexed: false,
                mapping,
            })
            .collect();
        Ok(TableDescription {
            table: table.clone(),
            kind: TableKind::Table,
            columns,
            estimated_rows,
        })
    }

    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        self.rows(description, request, None).await
    }

    /// A parallel read of a file table reads its files `parts` at once.
    fn scans_in_segments(&self) -> bool {
        true
    }

    async fn scan_segments(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        parts: usize,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let wider = FileSource {
            parallel_reads: parts.max(1),
            ..self.clone()
        };
        wider.rows(description, request, None).await
    }

    fn supports_split_scan(&self) -> bool {
        self.backend.shared()
    }

    /// The table listed once, its files dealt out to the parts by bytes
    /// (see [`split`]).
    async fn split_scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        _split: Option<usize>,
        parts: usize,
    ) -> Result<SplitScan, SourceError> {
        let (location, entry) = self.entry(&description.table).await?;
        check_readable(&description.table, &entry)?;
        let listed: Vec<DataFile> =
            (entry.files(location.store.clone()).try_collect().await).map_err(|e| self.backend.failure(&e))?;
        let count = listed.len();
        let files = match &request.filter {
            Some(filter) => in_window(description, &entry, &location.url, listed, filter).await,
            None => listed,
        };
        debug!(table = %description.table, listed = count, files = files.len(), parts, "file table split by file");
        Ok(SplitScan {
            parts: (split::deal(files, parts).iter())
                .map(|files| ScanPart {
                    request: request.clone(),
                    snapshot: Some(split::token(&entry, files)),
                })
                .collect(),
            hold: Box::new(()),
        })
    }

    /// Reads the files the part's token names (without: the whole table).
    async fn scan_part(
        &self,
        description: &TableDescription,
        part: &ScanRequest,
        snapshot: Option<&str>,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let listed = snapshot
            .map(|token| split::entry_of(&description.table.name, token))
            .transpose()?;
        self.rows(description, part, listed).await
    }

    /// Parquet files whose columns are `whole`'s come whole (see
    /// [`WholeFiles`]); a scan with a filter or a limit has none.
    async fn scan_pieces(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        whole: &SchemaRef,
    ) -> Result<Option<PieceStream>, SourceError> {
        if request.filter.is_some() || request.limit.is_some() {
            return Ok(None);
        }
        let (_, pieces) = self.pieces(description, request, Some(whole), None).await?;
        Ok(Some(pieces))
    }

    /// Tables with `_modified_at`: the server's clock, with uploads in
    /// flight (see `docs/sources/object-storage.md`), so that `INCREMENTAL
    /// BY _modified_at` leaves files stamped within `guard_margin` of now
    /// for the next run. Without that column there is nothing to guard.
    async fn commit_horizon(&self) -> Result<Option<CommitHorizon>, SourceError> {
        if !self.backend.pseudo_columns() {
            return Ok(None);
        }
        let now = Utc::now().timestamp_micros();
        Ok(Some(CommitHorizon {
            now: SourceInstant {
                utc_micros: now,
                wall_micros: now,
            },
            open: Vec::new(),
            replay: None,
            blind: None,
            uploads_in_flight: true,
        }))
    }

    fn files_read(&self) -> Option<FilesRead> {
        Some(FilesRead {
            done: self.files_read.done.load(Ordering::Relaxed),
            total: self.files_read.total.load(Ordering::Relaxed),
        })
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        let d = DataFusionDialect;
        let columns: Vec<String> = request
            .columns
            .iter()
            .filter_map(|&i| description.columns.get(i))
            .map(|c| d.quote_ident(&c.name))
            .collect();
        let list = if columns.is_empty() {
            "1".to_owned()
        } else {
            columns.join(", ")
        };
        scan_sql(&list, &d.quote_ident(&description.table.name), request)
    }
}

/// Batches of one file read ahead of the scan's consumer: what bounds a
/// scan's memory with the number of files read at once.
const BATCHES_AHEAD: usize = 2;

/// `file`'s batches, read by a task of their own (so that files read at
/// once decode on all cores) at most [`BATCHES_AHEAD`] batches ahead of
/// the consumer. The stream ends with an error when the task fails or
/// panics, never early without one; dropping it stops the task. The file
/// counts as done once its last batch has been taken.
fn read_in_task(
    reader: FileReader,
    file: DataFile,
    counts: Arc<FileCounts>,
) -> BoxStream<'static, Result<RecordBatch, DataFusionError>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
    let location = file.location.clone();
    let task = tokio::spawn(async move {
        let mut batches = match reader.read(&file).await {
            Ok(batches) => batches,
            Err(e) => {
                let _ = sender.send(Err(e)).await;
                return;
            }
        };
        while let Some(batch) = batches.next().await {
            let failed = batch.is_err();
            // The consumer is gone (an error elsewhere, a LIMIT reached).
            if sender.send(batch).await.is_err() || failed {
                return;
            }
        }
    });
    let stop = AbortOnDrop(task.abort_handle());
    let received = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    });
    let end = futures::stream::once(async move {
        let _stop = stop;
        match task.await {
            Ok(()) => {
                counts.done.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => Some(Err(DataFusionError::Execution(format!(
                "reading {location} failed: {e}"
            )))),
        }
    });
    received.chain(end.filter_map(futures::future::ready)).boxed()
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one file with the scan's query: the file is the table `raw`, and
/// the query's table is a view over it that adds the partition values,
/// `_file` and `_modified_at` as constants (so that a filter on them skips
/// the file without reading it). Files read at once share the session;
/// each registers its tables and plans its query in turn.
#[derive(Clone)]
struct FileReader {
    store: Arc<dyn ObjectStore>,
    batch_rows: usize,
    ctx: SessionContext,
    table: TableRef,
    format: Format,
    /// The sheet of an Excel table.
    sheet: Option<String>,
    csv: CsvSyntax,
    /// The files' own columns.
    schema: SchemaRef,
    /// The virtual columns the description has.
    extra: Vec<(String, Virtual)>,
    url: String,
    sql: String,
    /// Held while one file's tables are registered and its query planned.
    planning: Arc<tokio::sync::Mutex<()>>,
}

/// The name of the file table inside a reader's session.
const RAW: &str = "__sluice_file";

impl FileReader {
    async fn read(&self, file: &DataFile) -> Result<SendableRecordBatchStream, DataFusionError> {
        let raw: Arc<dyn TableProvider> = match self.format {
            Format::Avro => {
                let (_, batches) = avro::read(self.store.as_ref(), &file.location, self.batch_rows).await?;
                let batches = avro::conform(&file.location, &self.schema, batches)?;
                Arc::new(MemTable::try_new(self.schema.clone(), vec![batches])?)
            }
            Format::Excel => {
                let sheet = self.sheet.as_deref().unwrap_or_default();
                let (_, batches) = excel::read(self.store.as_ref(), &file.location, sheet, self.batch_rows).await?;
                let batches = avro::conform(&file.location, &self.schema, batches)?;
                Arc::new(MemTable::try_new(self.schema.clone(), vec![batches])?)
            }
            _ => Arc::new(listing_table(
                &[file],
                (self.format, file.compression, self.csv),
                self.schema.clone(),
            )?),
        };
        // The plan holds the tables it read: the next file may replace them.
        let _planning = self.planning.lock().await;
        let name = TableReference::bare(self.table.name.as_str());
        self.ctx.deregister_table(name.clone())?;
        self.ctx.deregister_table(RAW)?;
        self.ctx.register_table(RAW, raw)?;
        let d = DataFusionDialect;
        let mut list = vec![format!("{RAW}.*")];
        for (name, column) in &self.extra {
            let literal = column.literal(file, &self.url).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "the value of \"{name}\" for {} cannot be written",
                    file.location
                ))
            })?;
            list.push(format!("{literal} AS {}", d.quote_ident(name)));
        }
        let view = self
            .ctx
            .sql(&format!("SELECT {} FROM {RAW}", list.join(", ")))
            .await?
            .into_view();
        self.ctx.register_table(name, view)?;
        let plan = self.ctx.sql(&self.sql).await?.create_physical_plan().await?;
        drop(_planning);
        datafusion::physical_plan::execute_stream(plan, self.ctx.task_ctx())
    }
}

/// At most `limit` rows of `stream`.
fn limit_rows<S>(stream: S, limit: Option<usize>) -> impl futures::Stream<Item = S::Item> + Send
where
    S: futures::Stream<Item = Result<datafusion::arrow::array::RecordBatch, DataFusionError>> + Send,
{
    stream.scan(limit.unwrap_or(usize::MAX), |remaining, batch| {
        let out = (*remaining > 0).then(|| {
            batch.map(|b| {
                let take = b.num_rows().min(*remaining);
                *remaining -= take;
                b.slice(0, take)
            })
        });
        futures::future::ready(out)
    })
}

fn check_schema(schema: &str) -> Result<(), SourceError> {
    if schema == SCHEMA {
        Ok(())
    } else {
        Err(SourceError::NotFound {
            kind: "schema",
            name: schema.to_owned(),
            nearby: vec![SCHEMA.to_owned()],
        })
    }
}

fn read_error(table: &TableRef, error: DataFusionError) -> SourceError {
    SourceError::Query {
        code: None,
        message: format!("cannot read {table}: {error}"),
    }
}

/// How DataFusion reads a format (CSV files: in `csv`).
fn file_format(format: Format, compression: FileCompressionType, csv: CsvSyntax) -> Arc<dyn FileFormat> {
    match format {
        Format::Csv => Arc::new(
            csv.format()
                .with_newlines_in_values(true)
                .with_schema_infer_max_rec(INFER_ROWS)
                .with_file_compression_type(compression),
        ),
        Format::Json => Arc::new(
            JsonFormat::default()
                .with_schema_infer_max_rec(INFER_ROWS)
                .with_file_compression_type(compression),
        ),
        Format::Parquet | Format::Avro | Format::Excel => {
            // The file's own string and binary types, not DataFusion's views.
            let mut options = TableParquetOptions::default();
            options.global.schema_force_view_types = false;
            Arc::new(ParquetFormat::default().with_options(options))
        }
    }
}

/// The URL of an object in a reader's session: every byte of the path but
/// unreserved ones and `/` percent-encoded (its own escapes too), so that
/// the URL reads back as the same object path and nothing is taken for a
/// glob or a query.
fn object_url(path: &Path) -> String {
    let mut url = format!("{}/", STORE_URL.as_str().trim_end_matches('/'));
    for &byte in path.as_ref().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

/// `files` (of one format, compression and CSV syntax) as one DataFusion
/// table with `schema`.
fn listing_table(
    files: &[&DataFile],
    (format, compression, csv): (Format, FileCompressionType, CsvSyntax),
    schema: SchemaRef,
) -> Result<ListingTable, DataFusionError> {
    let urls = files
        .iter()
        .map(|f| ListingTableUrl::parse(object_url(&f.location)))
        .collect::<Result<Vec<_>, _>>()?;
    // The files are listed already: no extension filter.
    let options = ListingOptions::new(file_format(format, compression, csv)).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    ListingTable::try_new(config)
}

/// A listed file as the object DataFusion reads.
fn object(file: &DataFile) -> ObjectMeta {
    ObjectMeta {
        location: file.location.clone(),
        last_modified: file.modified,
        size: file.size,
        e_tag: None,
        version: None,
    }
}

/// The rows of a Parquet table, from its files' footers.
async fn parquet_rows(location: &Location, entry: &Entry) -> Result<i64, DataFusionError> {
    let store = &location.store;
    let mut rows = 0;
    let mut files = entry.files(store.clone());
    while let Some(file) = files.try_next().await? {
        if file.size > 0 {
            let metadata = footers::footer(store.as_ref(), &location.url, &object(&file)).await?;
            rows += metadata.file_metadata().num_rows();
        }
    }
    Ok(rows)
}

/// Files whose schemas are inferred together: the listing is read this
/// many files at a time.
pub(super) const INFER_CHUNK: usize = 256;

/// The schema the files are read with (see the module documentation):
/// inferred per compression, [`INFER_CHUNK`] files at a time as they are
/// listed, then merged. Text formats are sampled: their types come from
/// the first [`INFER_ROWS`] rows of each compression's first files.
async fn file_schema(
    ctx: &SessionContext,
    location: &Location,
    entry: &Entry,
    csv: CsvSyntax,
) -> Result<Schema, DataFusionError> {
    let mut chunks = entry
        .files(location.store.clone())
        .try_filter(|f| futures::future::ready(f.size > 0))
        .try_chunks(INFER_CHUNK)
        // In path order within a chunk, whatever order the store lists in
        // (a local directory's is the file system's), so that a table of up
        // to a chunk of files infers the same schema everywhere.
        .map_ok(|mut files| {
            files.sort_by(|a, b| a.location.cmp(&b.location));
            files
        });
    let Some(first_chunk) = chunks.try_next().await.map_err(|e| DataFusionError::from(e.1))? else {
        return Ok(Schema::empty());
    };
    let first = first_chunk[0].clone();
    if entry.format == Format::Avro {
        return Ok(avro::read(location.store.as_ref(), &first.location, 1).await?.0);
    }
    if let Some(sheet) = &entry.sheet {
        return Ok(excel::read(location.store.as_ref(), &first.location, sheet, 1).await?.0);
    }
    let text = matches!(entry.format, Format::Csv | Format::Json);
    let mut merged: Option<Schema> = None;
    let mut sampled: Vec<FileCompressionType> = Vec::new();
    let mut chunk = Some(first_chunk.clone());
    while let Some(files) = chunk {
        let mut compressions: Vec<FileCompressionType> = Vec::new();
        for file in &files {
            if !(compressions.contains(&file.compression) || text && sampled.contains(&file.compression)) {
                compressions.push(file.compression);
            }
        }
        for compression in compressions {
            let objects: Vec<ObjectMeta> = files
                .iter()
                .filter(|f| f.compression == compression)
                .map(object)
                .collect();
            let inferred = file_format(entry.format, compression, csv)
                .infer_schema(&ctx.state(), &location.store, &objects)
                .await?;
            merged = Some(match merged {
                None => inferred.as_ref().clone(),
                Some(schema) => Schema::try_merge([schema, inferred.as_ref().clone()])?,
            });
            sampled.push(compression);
        }
        chunk = chunks.try_next().await.map_err(|e| DataFusionError::from(e.1))?;
    }
    let inferred = merged.unwrap_or_else(Schema::empty);
    match entry.format {
        Format::Json => Ok(microsecond_timestamps(&inferred)),
        Format::Csv => {
            let sample: Vec<&DataFile> = first_chunk
                .iter()
                .filter(|f| f.compression == first.compression)
                .collect();
            zoned_timestamps(ctx, &sample, csv, microsecond_timestamps(&inferred)).await
        }
        _ => Ok(inferred),
    }
}

/// When a CSV table's files' schemas cannot be merged because files type
/// columns differently: the schema read from the files' first
/// [`INFER_CHUNK`] (in path order), each file inferred on its own, with
/// those columns widened (see [`widen`]), and the files that disagree.
/// `None` for other formats, or when something else failed.
async fn widened_schema(
    ctx: &SessionContext,
    location: &Location,
    entry: &Entry,
    csv: CsvSyntax,
) -> Option<(Schema, Vec<Disagreement>)> {
    if entry.format != Format::Csv {
        return None;
    }
    let mut files: Vec<DataFile> = entry
        .files(location.store.clone())
        .try_filter(|f| futures::future::ready(f.size > 0))
        .take(INFER_CHUNK)
        .try_collect()
        .await
        .ok()?;
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let mut schemas = Vec::new();
    for file in &files {
        let schema = file_format(Format::Csv, file.compression, csv)
            .infer_schema(&ctx.state(), &location.store, &[object(file)])
            .await
            .ok()?;
        schemas.push((file.location.clone(), schema.as_ref().clone()));
    }
    let (merged, disagreements) = widen::merge(&schemas);
    if disagreements.is_empty() {
        return None;
    }
    let first = files.first()?.compression;
    let sample: Vec<&DataFile> = files.iter().filter(|f| f.compression == first).collect();
    let schema = zoned_timestamps(ctx, &sample, csv, microsecond_timestamps(&merged))
        .await
        .ok()?;
    Some((schema, disagreements))
}

/// When the files' schemas cannot be merged: a file with a column whose
/// type differs from the first file's (in path order), named with the
/// column and both types. Two streamed listings: one finds the first file,
/// the other compares each file with it. `None` when no single file
/// explains the failure.
async fn type_conflict(ctx: &SessionContext, location: &Location, entry: &Entry, csv: CsvSyntax) -> Option<String> {
    let non_empty = || {
        entry
            .files(location.store.clone())
            .try_filter(|f| futures::future::ready(f.size > 0))
    };
    let base = non_empty()
        .try_fold(None::<DataFile>, |first, file| {
            let first = match first {
                Some(first) if first.location <= file.location => first,
                _ => file,
            };
            futures::future::ready(Ok(Some(first)))
        })
        .await
        .ok()??;
    let schema_of = async |file: &DataFile| {
        let state = ctx.state();
        file_format(entry.format, file.compression, csv)
            .infer_schema(&state, &location.store, &[object(file)])
            .await
    };
    let base_schema = schema_of(&base).await.ok()?;
    let mut files = std::pin::pin!(non_empty());
    while let Some(file) = files.try_next().await.ok()? {
        if file.location == base.location {
            continue;
        }
        let schema = schema_of(&file).await.ok()?;
        for field in schema.fields() {
            if let Ok(earlier) = base_schema.field_with_name(field.name())
                && earlier.data_type() != field.data_type()
            {
                return Some(format!(
                    "column \"{}\" is {} in {}{} but {} in {}{}: the files of a table must agree on each column's \
                     type; move the file out of the table or rewrite it with the column as {}",
                    field.name(),
                    earlier.data_type(),
                    location.url,
                    base.location,
                    field.data_type(),
                    location.url,
                    file.location,
                    earlier.data_type()
                ));
            }
        }
    }
    None
}

/// The schema with second and millisecond timestamps read as microseconds.
fn microsecond_timestamps(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, tz) => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new(fields)
}

/// The schema with each CSV timestamp column whose sampled values all carry
/// a UTC offset read as UTC instants.
async fn zoned_timestamps(
    ctx: &SessionContext,
    files: &[&DataFile],
    csv: CsvSyntax,
    schema: Schema,
) -> Result<Schema, DataFusionError> {
    let naive: Vec<(usize, TimeUnit)> = (schema.fields().iter().enumerate())
        .filter_map(|(i, f)| match f.data_type() {
            DataType::Timestamp(unit, None) => Some((i, *unit)),
            _ => None,
        })
        .collect();
    if naive.is_empty() {
        return Ok(schema);
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut text_fields = fields.clone();
    for &(i, _) in &naive {
        text_fields[i] = fields[i].clone().with_data_type(DataType::Utf8);
    }
    let compression = files
        .first()
        .map_or(FileCompressionType::UNCOMPRESSED, |f| f.compression);
    let sample = listing_table(
        files,
        (Format::Csv, compression, csv),
        Arc::new(Schema::new(text_fields)),
    )?;
    ctx.deregister_table("sample")?;
    ctx.register_table("sample", Arc::new(sample))?;
    let d = DataFusionDialect;
    let list: Vec<String> = naive.iter().map(|&(i, _)| d.quote_ident(fields[i].name())).collect();
    let sql = format!("SELECT {} FROM sample LIMIT {INFER_ROWS}", list.join(", "));
    let batches = ctx.sql(&sql).await?.collect().await?;
    for (k, &(i, unit)) in naive.iter().enumerate() {
        let texts = batches
            .iter()
            .map(|b| b.column(k).as_string_opt::<i32>())
            .collect::<Option<Vec<_>>>();
        let zoned = texts.is_some_and(|texts| {
            let mut values = texts.iter().flat_map(|t| t.iter().flatten()).peekable();
            values.peek().is_some() && values.all(has_offset)
        });
        if zoned {
            fields[i] = fields[i]
                .clone()
                .with_data_type(DataType::Timestamp(unit, Some("UTC".into())));
        }
    }
    Ok(Schema::new(fields))
}

/// Whether a timestamp's text ends with a UTC offset: `Z`, `+hh`, `+hhmm`
/// or `+hh:mm` (or `-`), after the date.
fn has_offset(text: &str) -> bool {
    let text = text.trim();
    if text.ends_with(['Z', 'z']) {
        return true;
    }
    // The date's own dashes end at byte 10 (yyyy-mm-dd).
    let Some(sign) = text.rfind(['+', '-']).filter(|&i| i > 10) else {
        return false;
    };
    let offset = &text[sign + 1..];
    let digits = offset.chars().filter(char::is_ascii_digit).count();
    match offset.len() {
        2 | 4 => digits == offset.len(),
        5 => digits == 4 && offset.as_bytes()[2] == b':',
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::object_store::local::LocalFileSystem;

    use super::*;
    use crate::contract::{ConnectFailure, ConnectFailureKind};

    /// A local directory as a backend.
    struct Dir(std::path::PathBuf);

    #[async_trait]
    impl Backend for Dir {
        fn location(&self) -> Result<Location, ConnectFailure> {
            Ok(Location {
                store: Arc::new(LocalFileSystem::new()),
                prefix: Path::from_absolute_path(&self.0).unwrap(),
                url: "/".into(),
            })
        }

        fn failure(&self, error: &datafusion::object_store::Error) -> ConnectFailure {
            ConnectFailure::new(ConnectFailureKind::Other, error.to_string())
        }
    }

    #[tokio::test]
    async fn scans_count_the_files_they_have_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("events")).unwrap();
        for name in ["a.csv", "b.csv", "c.csv"] {
            std::fs::write(dir.path().join("events").join(name), "id\n1\n").unwrap();
        }
        let source = open(Arc::new(Dir(dir.path().to_owned())), None, 2, Ok(CsvSyntax::default()));
        let table = TableRef {
            schema: SCHEMA.into(),
            name: "events".into(),
        };
        let description = source.describe(&table).await.unwrap();
        let request = ScanRequest::every_column(&description);
        let mut stream = source.scan(&description, &request).await.unwrap();
        assert_eq!(source.files_read(), Some(FilesRead { done: 0, total: 3 }));
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            rows += batch.unwrap().num_rows();
        }
        assert_eq!(rows, 3);
        assert_eq!(source.files_read(), Some(FilesRead { done: 3, total: 3 }));
    }

    #[test]
    fn offsets_are_recognised_after_the_date() {
        for zoned in [
            "2026-05-01T10:00:00Z",
            "2026-05-01 10:00:00.123z",
            "2026-05-01T10:00:00+02:00",
            "2026-05-01T10:00:00-0530",
            "2026-05-01T10:00:00+02",
        ] {
            assert!(has_offset(zoned), "{zoned}");
        }
        for naive in [
            "2026-05-01T10:00:00",
            "2026-05-01 10:00:00.5",
            "2026-05-01",
            "2026-05-01T10:00:00+2:00",
        ] {
            assert!(!has_offset(naive), "{naive}");
        }
    }

    #[test]
    fn object_urls_read_back_as_the_same_object() {
        for name in ["a b[1]?#.csv", "é 100%.csv", "k=v;x.csv"] {
            let path = Path::from_iter(["data", name]);
            let url = object_url(&path);
            assert!(!url.contains(' ') && !url.contains('#') && !url.contains('?'), "{url}");
            assert_eq!(ListingTableUrl::parse(&url).unwrap().prefix(), &path, "{name}");
        }
    }
}
