//! A local directory as a [`Source`], read through a private DataFusion
//! session over `object_store`'s local file system.
//!
//! Column types are the files' own Arrow types (Parquet footers, or
//! DataFusion's inference over the first [`INFER_ROWS`] rows of CSV and
//! NDJSON), shown as `source_type`. A scan registers the files as a table of
//! exactly those types (parsed back from `source_type`), runs one `SELECT`
//! in DataFusion SQL, and converts each batch to the mapped types.
//!
//! Text formats are read a little differently from their raw inference:
//! timestamps are read with microseconds, and a CSV timestamp column whose
//! sampled values all carry a UTC offset (`...Z`, `+02:00`) is read as UTC
//! instants (`TIMESTAMP`) rather than wall times (`DATETIME`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::TableReference;
use datafusion::config::TableParquetOptions;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tracing::warn;

use super::dialect::{DataFusionDialect, session};
use super::listing::{self, Entry, Format};
use super::{Directory, SCHEMA, convert};
use crate::options::ResolvedOptions;
use crate::sources::{
    ColumnInfo, Dialect, QueryBuilder, ScanRequest, Source, SourceError, TableDescription, TableInfo, TableKind,
    TableRef, TextRows, closest, scan_sql,
};
use crate::type_mapping::arrow::map;

/// Rows of a CSV or NDJSON file that type inference reads.
const INFER_ROWS: usize = 1000;

/// Opens a `local` connection's options as a source.
pub(super) fn open(options: &ResolvedOptions, _timeout: Duration) -> Arc<dyn Source> {
    Arc::new(LocalSource {
        directory: Directory::new(options),
    })
}

struct LocalSource {
    directory: Directory,
}

impl LocalSource {
    /// A private session with the table's files registered under the
    /// table's name, with the column types of its description.
    async fn context(
        &self,
        description: &TableDescription,
        batch_rows: Option<usize>,
    ) -> Result<SessionContext, SourceError> {
        let table = &description.table;
        let fields = description
            .columns
            .iter()
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
        let entry = self.entry(table).await?;
        let ctx = session(batch_rows);
        let files = listing_table(&entry, Arc::new(Schema::new(fields))).map_err(|e| read_error(table, e))?;
        ctx.register_table(TableReference::bare(table.name.as_str()), Arc::new(files))
            .map_err(|e| read_error(table, e))?;
        Ok(ctx)
    }

    /// The directory's tables, or why it cannot be read.
    async fn entries(&self) -> Result<Vec<Entry>, SourceError> {
        let directory = self.directory.clone();
        tokio::task::spawn_blocking(move || {
            directory.check()?;
            listing::entries(&directory.path).map_err(|e| directory.failure(&e))
        })
        .await
        .map_err(|e| SourceError::Query {
            code: None,
            message: e.to_string(),
        })?
        .map_err(SourceError::from)
    }

    /// The table `table` names, or `NotFound` with the names that exist.
    async fn entry(&self, table: &TableRef) -> Result<Entry, SourceError> {
        check_schema(&table.schema)?;
        let entries = self.entries().await?;
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        entries
            .into_iter()
            .find(|e| e.name == table.name)
            .ok_or_else(|| SourceError::NotFound {
                kind: "table",
                name: table.to_string(),
                nearby: closest(&table.name, names),
            })
    }
}

#[async_trait]
impl Source for LocalSource {
    fn dialect(&self) -> &'static dyn Dialect {
        &DataFusionDialect
    }

    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        let directory = self.directory.clone();
        tokio::task::spawn_blocking(move || directory.check())
            .await
            .map_err(|e| SourceError::Query {
                code: None,
                message: e.to_string(),
            })??;
        Ok(vec![SCHEMA.to_owned()])
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        if let Some(schema) = schema {
            check_schema(schema)?;
        }
        let ctx = session(None);
        let mut tables = Vec::new();
        for entry in self.entries().await? {
            let estimated_rows = match entry.format {
                Format::Parquet => match parquet_rows(&ctx, &entry).await {
                    Ok(rows) => Some(rows),
                    Err(e) => {
                        warn!(table = %entry.name, error = %e, "cannot read the row count of a Parquet table");
                        None
                    }
                },
                Format::Csv | Format::Json => None,
            };
            tables.push(TableInfo {
                table: TableRef {
                    schema: SCHEMA.to_owned(),
                    name: entry.name.clone(),
                },
                kind: TableKind::Table,
                estimated_rows,
                size_bytes: i64::try_from(entry.size()).ok(),
                last_modified: entry.modified().map(DateTime::<Utc>::from),
            });
        }
        Ok(tables)
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        let entry = self.entry(table).await?;
        let ctx = session(None);
        let schema = file_schema(&ctx, &entry).await.map_err(|e| read_error(table, e))?;
        let estimated_rows = match entry.format {
            Format::Parquet => Some(parquet_rows(&ctx, &entry).await.map_err(|e| read_error(table, e))?),
            Format::Csv | Format::Json => None,
        };
        let columns = schema
            .fields()
            .iter()
            .zip(1..)
            .map(|(field, ordinal)| ColumnInfo {
                name: field.name().clone(),
                ordinal,
                source_type: field.data_type().to_string(),
                nullable: field.is_nullable(),
                default: None,
                primary_key_position: None,
                indexed: false,
                mapping: map(field.data_type()),
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
        let ctx = self.context(description, request.batch_rows).await?;
        let sql = self.scan_query(description, request);
        let stream = async { ctx.sql(&sql).await?.execute_stream().await }
            .await
            .map_err(|e| read_error(table, e))?;
        let table = table.clone();
        let schema = target.clone();
        let batches = stream.map(move |batch| {
            let converted = match batch {
                Ok(batch) => convert::batch(&batch, &columns, &schema).map_err(|message| SourceError::Query {
                    code: None,
                    message: format!("cannot read {table}: {message}"),
                }),
                Err(e) => Err(read_error(&table, e)),
            };
            converted.map_err(|e| DataFusionError::External(Box::new(e)))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(target, batches)))
    }

    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        let table = &description.table;
        let ctx = self.context(description, None).await?;
        let batches = async {
            ctx.sql(&sql(&DataFusionDialect.quote_ident(&table.name)))
                .await?
                .collect()
                .await
        }
        .await
        .map_err(|e| read_error(table, e))?;
        TextRows::from_batches(&batches).map_err(|e| read_error(table, e.into()))
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

/// How DataFusion reads a format.
fn file_format(format: Format) -> Arc<dyn FileFormat> {
    match format {
        Format::Csv => Arc::new(
            CsvFormat::default()
                .with_has_header(true)
                .with_newlines_in_values(true)
                .with_schema_infer_max_rec(INFER_ROWS),
        ),
        Format::Json => Arc::new(JsonFormat::default().with_schema_infer_max_rec(INFER_ROWS)),
        Format::Parquet => {
            // The file's own string and binary types, not DataFusion's views.
            let mut options = TableParquetOptions::default();
            options.global.schema_force_view_types = false;
            Arc::new(ParquetFormat::default().with_options(options))
        }
    }
}

/// A `file://` URL of an absolute path: every byte but unreserved ones
/// percent-encoded, so that no character is taken for a glob or a query.
fn file_url(path: &std::path::Path) -> String {
    let mut url = String::from("file://");
    for &byte in path.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

fn urls(entry: &Entry) -> Result<Vec<ListingTableUrl>, DataFusionError> {
    entry
        .files
        .iter()
        .map(|f| ListingTableUrl::parse(file_url(&f.path)))
        .collect()
}

/// The files of `entry` as one DataFusion table with `schema`.
fn listing_table(entry: &Entry, schema: SchemaRef) -> Result<ListingTable, DataFusionError> {
    // The files are listed already: no extension filter.
    let options = ListingOptions::new(file_format(entry.format)).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(urls(entry)?)
        .with_listing_options(options)
        .with_schema(schema);
    ListingTable::try_new(config)
}

/// The object store holding `entry`'s files, and their non-empty objects.
async fn objects(
    ctx: &SessionContext,
    entry: &Entry,
) -> Result<(Arc<dyn ObjectStore>, Vec<ObjectMeta>), DataFusionError> {
    let urls = urls(entry)?;
    let first = urls
        .first()
        .ok_or_else(|| DataFusionError::Plan(format!("table {} has no files", entry.name)))?;
    let store = ctx.runtime_env().object_store(first)?;
    let mut objects = Vec::with_capacity(urls.len());
    for url in &urls {
        let object = store.head(url.prefix()).await?;
        if object.size > 0 {
            objects.push(object);
        }
    }
    Ok((store, objects))
}

/// The rows of a Parquet table, from its files' footers.
async fn parquet_rows(ctx: &SessionContext, entry: &Entry) -> Result<i64, DataFusionError> {
    let (store, objects) = objects(ctx, entry).await?;
    let mut rows = 0;
    for object in &objects {
        let metadata = DFParquetMetadata::new(store.as_ref(), object).fetch_metadata().await?;
        rows += metadata.file_metadata().num_rows();
    }
    Ok(rows)
}

/// The schema the files are read with (see the module documentation).
async fn file_schema(ctx: &SessionContext, entry: &Entry) -> Result<Schema, DataFusionError> {
    let (store, objects) = objects(ctx, entry).await?;
    if objects.is_empty() {
        return Ok(Schema::empty());
    }
    let inferred = file_format(entry.format)
        .infer_schema(&ctx.state(), &store, &objects)
        .await?;
    match entry.format {
        Format::Parquet => Ok(inferred.as_ref().clone()),
        Format::Json => Ok(microsecond_timestamps(&inferred)),
        Format::Csv => zoned_timestamps(entry, microsecond_timestamps(&inferred)).await,
    }
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
async fn zoned_timestamps(entry: &Entry, schema: Schema) -> Result<Schema, DataFusionError> {
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
    let ctx = session(None);
    let sample = listing_table(entry, Arc::new(Schema::new(text_fields)))?;
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
    use super::*;

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
    fn urls_escape_everything_but_unreserved_bytes() {
        assert_eq!(
            file_url(std::path::Path::new("/data/a b[1]?#%.csv")),
            "file:///data/a%20b%5B1%5D%3F%23%25.csv"
        );
        assert_eq!(file_url(std::path::Path::new("/d/é.csv")), "file:///d/%C3%A9.csv");
    }
}
