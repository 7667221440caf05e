//! Any document store as a [`Source`]: the store lists its tables, samples
//! documents and streams them in pages; this module infers the columns,
//! converts pages into batches and runs the scan's projection, filter and
//! limit over them in a private DataFusion session (the store's own
//! filtering, where it has any, is the store's business).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::Schema;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::convert;
use super::infer::{Shape, infer};
use super::mapping::Mapping;
use super::value::Document;
use crate::contract::{
    Dialect, QueryBuilder, ScanPart, ScanRequest, Segment, Source, SourceError, SplitScan, TableDescription, TableInfo,
    TableKind, TableRef, TextRows, closest, scan_sql,
};
use crate::sources::datafusion_sql::{DataFusionDialect, session};
use crate::sources::stream_table;

/// Documents of a table, a page at a time.
pub(crate) type Pages = BoxStream<'static, Result<Vec<Document>, SourceError>>;

/// What one store does: everything about its documents, nothing about rows.
#[async_trait]
pub(crate) trait Store: Send + Sync + 'static {
    /// The one schema its tables are in.
    fn schema(&self) -> String;

    /// Its tables (a connection may check the store is reachable first).
    async fn tables(&self) -> Result<Vec<TableInfo>, SourceError>;

    /// Up to `n` documents of `table` and what the store knows of its
    /// shape; `table` is one of [`Store::tables`].
    async fn sample(&self, table: &str, n: usize) -> Result<(Vec<Document>, Shape), SourceError>;

    /// Every document of `table`, read as `description` (made from a
    /// sample by this module) says, a page at a time (the store's own
    /// page size).
    fn read(&self, table: &str, description: &TableDescription) -> Pages;

    /// What [`Store::read`] sends the store, for EXPLAIN.
    fn read_text(&self, table: &str) -> String;

    /// The documents a scan with `request` needs: a store that can filter,
    /// project or limit (MongoDB's `find`) narrows the read, never below
    /// what the request selects, because the scan's filter and limit run
    /// again on its pages here. By default every document ([`Store::read`]).
    fn read_request(&self, table: &str, description: &TableDescription, request: &ScanRequest) -> Pages {
        let _ = request;
        self.read(table, description)
    }

    /// What [`Store::read_request`] sends the store, for EXPLAIN.
    fn read_request_text(&self, table: &str, description: &TableDescription, request: &ScanRequest) -> String {
        let _ = (description, request);
        self.read_text(table)
    }

    /// Whether [`Store::read_segments`] splits a read into parallel
    /// segments (DynamoDB's parallel Scan).
    fn reads_in_segments(&self) -> bool {
        false
    }

    /// [`Store::read_request`] split into `parts` segments read in
    /// parallel; by default the one read.
    fn read_segments(&self, table: &str, description: &TableDescription, request: &ScanRequest, parts: u32) -> Pages {
        let _ = parts;
        self.read_request(table, description, request)
    }

    /// What [`Store::read_segments`] sends the store, for EXPLAIN.
    fn read_segments_text(
        &self,
        table: &str,
        description: &TableDescription,
        request: &ScanRequest,
        parts: u32,
    ) -> String {
        let _ = parts;
        self.read_request_text(table, description, request)
    }
}

/// A store as a source with the connection's mapping options.
pub(crate) struct DocumentSource<S> {
    pub(crate) store: Arc<S>,
    pub(crate) mapping: Mapping,
}

impl<S: Store> DocumentSource<S> {
    fn check_schema(&self, schema: &str) -> Result<(), SourceError> {
        if schema == self.store.schema() {
            Ok(())
        } else {
            Err(SourceError::NotFound {
                kind: "schema",
                name: schema.to_owned(),
                nearby: vec![self.store.schema()],
            })
        }
    }
}

/// The name of the table inside a scan's private session.
const SCANNED: &str = "documents";

#[async_trait]
impl<S: Store> Source for DocumentSource<S> {
    fn dialect(&self) -> &'static dyn Dialect {
        &DataFusionDialect
    }

    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        self.store.tables().await?;
        Ok(vec![self.store.schema()])
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        if let Some(schema) = schema {
            self.check_schema(schema)?;
        }
        self.store.tables().await
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        self.check_schema(&table.schema)?;
        let tables = self.store.tables().await?;
        let info = tables
            .iter()
            .find(|t| t.table.name == table.name)
            .ok_or_else(|| SourceError::NotFound {
                kind: "table",
                name: table.to_string(),
                nearby: closest(&table.name, tables.iter().map(|t| t.table.name.clone()).collect()),
            })?;
        let (sample, shape) = self.store.sample(&table.name, self.mapping.sample).await?;
        Ok(TableDescription {
            table: table.clone(),
            kind: TableKind::Table,
            columns: infer(&sample, &shape, &self.mapping),
            estimated_rows: info.estimated_rows,
        })
    }

    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let pages = self.store.read_request(&description.table.name, description, request);
        self.scan_pages(description, request, pages).await
    }

    fn scans_in_segments(&self) -> bool {
        self.store.reads_in_segments()
    }

    fn reads_nested(&self) -> bool {
        true
    }

    async fn scan_segments(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        parts: usize,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let parts = u32::try_from(parts).unwrap_or(u32::MAX);
        let pages = self
            .store
            .read_segments(&description.table.name, description, request, parts);
        self.scan_pages(description, request, pages).await
    }

    fn supports_split_scan(&self) -> bool {
        self.store.reads_in_segments()
    }

    /// A store that reads in segments splits into them: one part per
    /// segment, each read wherever its task runs. (No snapshot: a store's
    /// scan reads each segment as it is when the segment gets there, the
    /// same as one parallel read on the server.)
    async fn split_scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        _split: Option<usize>,
        parts: usize,
    ) -> Result<SplitScan, SourceError> {
        if !self.store.reads_in_segments() {
            return Err(SourceError::Query {
                code: Some("0A000".into()),
                message: format!("{} cannot be split for a cluster", description.table),
            });
        }
        let total = u32::try_from(parts.max(1)).unwrap_or(u32::MAX);
        Ok(SplitScan {
            parts: (0..total)
                .map(|index| ScanPart {
                    request: ScanRequest {
                        segment: Some(Segment { index, total }),
                        ..request.clone()
                    },
                    snapshot: None,
                })
                .collect(),
            hold: Box::new(()),
        })
    }

    async fn scan_part(
        &self,
        description: &TableDescription,
        part: &ScanRequest,
        _snapshot: Option<&str>,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        self.scan(description, part).await
    }

    fn segmented_scan_query(&self, description: &TableDescription, request: &ScanRequest, parts: usize) -> String {
        let parts = u32::try_from(parts).unwrap_or(u32::MAX);
        let read = self
            .store
            .read_segments_text(&description.table.name, description, request, parts);
        in_sluice(read, description, request)
    }

    /// VERIFY's aggregates, computed over a full scan in Sluice: a store
    /// has no aggregate query of its own.
    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        let request = ScanRequest::every_column(description);
        let rows = self.scan(description, &request).await?;
        stream_table::query_text(&description.table.name, rows, sql)
            .await
            .map_err(|e| plan_error(&description.table, e))
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        let read = self
            .store
            .read_request_text(&description.table.name, description, request);
        in_sluice(read, description, request)
    }
}

impl<S: Store> DocumentSource<S> {
    /// The rows of `pages` as `description` maps them, with the scan's
    /// projection, filter and limit run over them in Sluice.
    async fn scan_pages(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        pages: Pages,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let table = description.table.clone();
        convert::specs(&table, &description.columns)?;
        let schema = description.arrow_schema();
        let (columns, mapping, batch_schema) = (description.columns.clone(), self.mapping, schema.clone());
        let batches = pages.enumerate().map(move |(index, page)| {
            if index > 0 {
                crate::failpoint::hit("between_pages").map_err(|e| SourceError::Query {
                    code: Some("XX000".into()),
                    message: e.to_string(),
                })?;
            }
            let documents = page?;
            convert::to_batch(&table, &documents, &columns, &batch_schema, &mapping)
        });
        let batches = batches.map(|b| b.map_err(|e| DataFusionError::External(Box::new(e))));
        let whole: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(schema.clone(), batches));
        let ctx = session(request.batch_rows);
        stream_table::register(&ctx, SCANNED, whole).map_err(|e| plan_error(&description.table, e))?;
        let sql = scan_sql(&select_list(description, request), SCANNED, request);
        let frame = ctx.sql(&sql).await.map_err(|e| plan_error(&description.table, e))?;
        let stream = frame
            .execute_stream()
            .await
            .map_err(|e| plan_error(&description.table, e))?;
        Ok(if request.columns.is_empty() {
            row_counts_only(stream)
        } else {
            stream
        })
    }
}

/// The batches of `stream` (which selects the constant `1`) as batches
/// without columns: what a scan of no columns (`count(*)`) must return.
fn row_counts_only(stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let schema = Arc::new(Schema::empty());
    let out = schema.clone();
    let batches = stream.map(move |batch| {
        let batch = batch?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok::<_, DataFusionError>(RecordBatch::try_new_with_options(out.clone(), vec![], &options)?)
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

/// What a scan sends the store (`read`), then runs in Sluice, for EXPLAIN.
fn in_sluice(read: String, description: &TableDescription, request: &ScanRequest) -> String {
    let filter = scan_sql(&select_list(description, request), SCANNED, request);
    format!("{read}, then in Sluice: {filter}")
}

/// The quoted columns a scan selects (`1` for none).
fn select_list(description: &TableDescription, request: &ScanRequest) -> String {
    let d = DataFusionDialect;
    let columns: Vec<String> = request
        .columns
        .iter()
        .filter_map(|&i| description.columns.get(i))
        .map(|c| d.quote_ident(&c.name))
        .collect();
    if columns.is_empty() {
        "1".to_owned()
    } else {
        columns.join(", ")
    }
}

fn plan_error(table: &TableRef, error: DataFusionError) -> SourceError {
    SourceError::Query {
        code: Some("XX000".into()),
        message: format!("cannot plan the scan of {table}: {}", error.strip_backtrace()),
    }
}
