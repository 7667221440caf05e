//! A SQL Server or Synapse database as a [`Source`]: its schemas are the
//! schemas, and a scan streams one `SELECT` as Arrow batches, decoded in a
//! task that owns the session and hands batches over a bounded channel.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::TryStreamExt;
use tiberius::QueryItem;
use tokio::sync::mpsc;

use super::decode::ColumnDecoder;
use super::dialect::SqlServerDialect;
use super::endpoint::{Endpoint, Session, query_error};
use super::metadata::{self, value_text};
use super::{horizon, parallel, types};
use crate::contract::{
    ColumnInfo, CommitHorizon, Dialect, QueryBuilder, ResolvedOptions, ScanRequest, Source, SourceError, SplitScan,
    TableDescription, TableInfo, TableRef, TextRows,
};
use crate::sources::key_ranges::{self, read_here};

/// Rows per record batch of a scan.
const BATCH_ROWS: usize = 8192;

/// Batches decoded ahead of the consumer.
const BATCHES_AHEAD: usize = 2;

/// Every session reads values whole (`text`, `ntext` and `image` are cut
/// at 4 KB by default over TDS) and without row-count messages.
const SESSION: &str = "SET TEXTSIZE 2147483647; SET NOCOUNT ON;";

/// Opens a SQL Server connection's options as a source.
pub(super) fn open_sql_server(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(SqlServerSource {
        endpoint: Endpoint::new(options),
        timeout,
        flavor: Flavor::SqlServer,
    })
}

/// Opens a Synapse connection's options as a source.
pub(super) fn open_synapse(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(SqlServerSource {
        endpoint: Endpoint::new(options),
        timeout,
        flavor: Flavor::Synapse,
    })
}

/// Which server speaks TDS at the other end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    SqlServer,
    /// Synapse's dedicated SQL pools have no `OFFSET ... FETCH`, no
    /// snapshot isolation and no application locks, so no parallel reads.
    Synapse,
}

pub(super) struct SqlServerSource {
    endpoint: Endpoint,
    timeout: Duration,
    flavor: Flavor,
}

impl SqlServerSource {
    /// A session with the reading settings.
    pub(super) async fn session(&self) -> Result<Session, SourceError> {
        let mut client = self.endpoint.connect(self.timeout).await?;
        client
            .simple_query(SESSION)
            .await
            .map_err(query_error)?
            .into_results()
            .await
            .map_err(query_error)?;
        Ok(client)
    }

    /// The user schemas, or `NotFound` when `schema` is not one of them.
    async fn visible(&self, client: &mut Session, schema: Option<&str>) -> Result<Vec<String>, SourceError> {
        let visible = metadata::schemas(client).await?;
        match schema {
            Some(schema) if !visible.iter().any(|s| s == schema) => {
                Err(metadata::not_found("schema", schema.to_owned(), schema, visible))
            }
            _ => Ok(visible),
        }
    }

    async fn describe_on(&self, client: &mut Session, table: &TableRef) -> Result<TableDescription, SourceError> {
        self.visible(client, Some(&table.schema)).await?;
        match metadata::table(client, table).await? {
            Some(info) => metadata::describe(client, info).await,
            None => {
                let names = metadata::tables(client, Some(&table.schema))
                    .await?
                    .into_iter()
                    .map(|t| t.table.name)
                    .collect();
                Err(metadata::not_found("table", table.to_string(), &table.name, names))
            }
        }
    }

    /// `[schema].[table]`.
    pub(super) fn from(description: &TableDescription) -> String {
        format!(
            "{}.{}",
            SqlServerDialect.quote_ident(&description.table.schema),
            SqlServerDialect.quote_ident(&description.table.name)
        )
    }

    /// The reader of `request`'s rows, before any session is opened (a
    /// column that cannot be decoded is refused first).
    pub(super) fn reader(&self, description: &TableDescription, request: &ScanRequest) -> Result<Reader, SourceError> {
        let (decoders, schema) = description.decoders(&request.columns, ColumnDecoder::new)?;
        Ok(Reader {
            sql: self.scan_query(description, request),
            batch_rows: request.batch_rows.unwrap_or(BATCH_ROWS).max(1),
            decoders,
            schema,
        })
    }

    /// Refuses parallel reads where the server cannot keep them in one
    /// snapshot (Synapse).
    fn splits(&self, description: &TableDescription) -> Result<(), SourceError> {
        match self.flavor {
            Flavor::SqlServer => Ok(()),
            Flavor::Synapse => Err(SourceError::Query {
                code: Some("0A000".into()),
                message: format!(
                    "{} cannot be read by parallel streams: Synapse SQL pools have no snapshot isolation to read \
                     every stream at one moment; leave out parallelism",
                    description.table
                ),
            }),
        }
    }
}

/// Closes a session whose work is done; a failed goodbye changes nothing.
async fn close(client: Session) {
    let _ = client.close().await;
}

#[async_trait]
impl Source for SqlServerSource {
    fn dialect(&self) -> &'static dyn Dialect {
        &SqlServerDialect
    }

    fn supports_offset(&self) -> bool {
        self.flavor == Flavor::SqlServer
    }

    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        let mut client = self.session().await?;
        let result = self.visible(&mut client, None).await;
        close(client).await;
        result
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        let mut client = self.session().await?;
        let result = async {
            self.visible(&mut client, schema).await?;
            metadata::tables(&mut client, schema).await
        }
        .await;
        close(client).await;
        result
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        let mut client = self.session().await?;
        let result = self.describe_on(&mut client, table).await;
        close(client).await;
        result
    }

    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let reader = self.reader(description, request)?;
        let client = self.session().await?;
        Ok(reader.stream(client))
    }

    fn supports_parallel_scan(&self) -> bool {
        self.flavor == Flavor::SqlServer
    }

    async fn scan_parallel(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: usize,
        parts: usize,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        self.splits(description)?;
        let planned = parallel::split(self, description, request, split, parts).await?;
        read_here(planned, |part| async move {
            parallel::scan_part(self, description, &part.request, part.snapshot.as_deref()).await
        })
        .await
    }

    async fn parallel_scan_queries(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: usize,
        parts: usize,
    ) -> Result<Vec<String>, SourceError> {
        self.splits(description)?;
        parallel::queries(self, description, request, split, parts).await
    }

    fn supports_split_scan(&self) -> bool {
        self.flavor == Flavor::SqlServer
    }

    async fn split_scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: Option<usize>,
        parts: usize,
    ) -> Result<SplitScan, SourceError> {
        self.splits(description)?;
        let split = key_ranges::required_split(description, split)?;
        parallel::split(self, description, request, split, parts).await
    }

    async fn scan_part(
        &self,
        description: &TableDescription,
        part: &ScanRequest,
        snapshot: Option<&str>,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        self.splits(description)?;
        parallel::scan_part(self, description, part, snapshot).await
    }

    async fn commit_horizon(&self) -> Result<Option<CommitHorizon>, SourceError> {
        let mut client = self.session().await?;
        let result = horizon::read(&mut client).await;
        close(client).await;
        result.map(Some)
    }

    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        let mut client = self.session().await?;
        let result = metadata::rows(&mut client, &sql(&Self::from(description)), &[]).await;
        close(client).await;
        let rows = result?;
        Ok(TextRows {
            columns: rows.first().map_or_else(Vec::new, |row| {
                row.columns().iter().map(|c| c.name().to_owned()).collect()
            }),
            rows: rows
                .iter()
                .map(|row| row.cells().map(|(_, value)| value_text(value)).collect())
                .collect(),
        })
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        let columns: Vec<String> = request
            .columns
            .iter()
            .filter_map(|&i| description.columns.get(i))
            .map(select_expression)
            .collect();
        let list = if columns.is_empty() {
            "1".to_owned()
        } else {
            columns.join(", ")
        };
        let (top, offset) = row_range(request);
        let mut sql = format!("SELECT {top}{list} FROM {}", Self::from(description));
        if let Some(filter) = &request.filter {
            sql.push_str(&format!(" WHERE {filter}"));
        }
        sql.push_str(&offset);
        sql
    }
}

/// The `TOP (n) ` before the select list and the `OFFSET ... FETCH` after
/// the `WHERE` that read the request's rows. T-SQL takes an offset only
/// after an `ORDER BY`; `(SELECT NULL)` orders nothing, so the rows skipped
/// are as unordered as DataFusion's own `OFFSET` over a scan.
fn row_range(request: &ScanRequest) -> (String, String) {
    let top = |limit: Option<usize>| limit.map(|n| format!("TOP ({n}) ")).unwrap_or_default();
    match (request.offset, request.limit) {
        // `FETCH NEXT 0 ROWS` is an error; no rows is no rows.
        (0, limit) | (_, limit @ Some(0)) => (top(limit), String::new()),
        (offset, limit) => {
            let fetch = limit.map(|n| format!(" FETCH NEXT {n} ROWS ONLY")).unwrap_or_default();
            (
                String::new(),
                format!(" ORDER BY (SELECT NULL) OFFSET {offset} ROWS{fetch}"),
            )
        }
    }
}

/// How a column is selected so that its value arrives as the mapping
/// expects (see the conversions listed in [`types`]).
fn select_expression(column: &ColumnInfo) -> String {
    let name = SqlServerDialect.quote_ident(&column.name);
    types::select_expression(&name, &column.source_type)
}

/// Decodes the rows of one scan into batches.
pub(super) struct Reader {
    sql: String,
    batch_rows: usize,
    decoders: Vec<ColumnDecoder>,
    schema: SchemaRef,
}

impl Reader {
    /// Streams the rows read on `client`, decoded in a task that owns the
    /// session. Dropping the stream drops the receiver: the task stops at
    /// its next batch and drops the session, which ends the query (and any
    /// transaction it was in) on the server.
    pub(super) fn stream(self, client: Session) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        let (sender, receiver) = mpsc::channel(BATCHES_AHEAD);
        tokio::spawn(self.run(client, sender));
        let batches = futures::stream::unfold(receiver, |mut receiver| async move {
            let batch = receiver.recv().await?;
            Some((batch, receiver))
        })
        .map_err(|e: SourceError| DataFusionError::External(Box::new(e)));
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }

    /// Runs the query on `client` and sends its rows batch by batch, then
    /// an error if one stopped it; returns when done or when nobody listens.
    async fn run(mut self, mut client: Session, sender: mpsc::Sender<Result<RecordBatch, SourceError>>) {
        let result = async {
            let sql = std::mem::take(&mut self.sql);
            let mut stream = client.simple_query(sql).await.map_err(query_error)?;
            let mut count = 0;
            while let Some(item) = stream.try_next().await.map_err(query_error)? {
                let QueryItem::Row(row) = item else { continue };
                if row.len() < self.decoders.len() {
                    return Err(SourceError::Query {
                        code: None,
                        message: format!(
                            "the server sent {} columns for {} selected",
                            row.len(),
                            self.decoders.len()
                        ),
                    });
                }
                for (decoder, (_, value)) in self.decoders.iter_mut().zip(row.cells()) {
                    decoder.append(value)?;
                }
                count += 1;
                if count == self.batch_rows {
                    if sender.send(self.batch(count)).await.is_err() {
                        return Ok(());
                    }
                    count = 0;
                }
            }
            if count > 0 {
                let _ = sender.send(self.batch(count)).await;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            let _ = sender.send(Err(error)).await;
        }
        // Dropped, not closed: closing would first read what the server
        // still sends of an abandoned result.
        drop(client);
    }

    /// The `rows` decoded since the last batch.
    fn batch(&mut self, rows: usize) -> Result<RecordBatch, SourceError> {
        let arrays = self.decoders.iter_mut().map(ColumnDecoder::finish).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options).map_err(|e| SourceError::Query {
            code: None,
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(offset: usize, limit: Option<usize>) -> (String, String) {
        row_range(&ScanRequest {
            offset,
            limit,
            ..ScanRequest::default()
        })
    }

    #[test]
    fn an_offset_is_sent_as_offset_fetch_and_a_bare_limit_as_top() {
        assert_eq!(range(0, Some(5)), ("TOP (5) ".into(), String::new()));
        assert_eq!(range(0, None), (String::new(), String::new()));
        assert_eq!(
            range(2, Some(3)),
            (
                String::new(),
                " ORDER BY (SELECT NULL) OFFSET 2 ROWS FETCH NEXT 3 ROWS ONLY".into()
            )
        );
        assert_eq!(
            range(4, None),
            (String::new(), " ORDER BY (SELECT NULL) OFFSET 4 ROWS".into())
        );
        assert_eq!(range(4, Some(0)), ("TOP (0) ".into(), String::new()));
    }
}
