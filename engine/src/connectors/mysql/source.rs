//! A MySQL/MariaDB server as a [`Source`]: its databases are the schemas,
//! and a scan streams one `SELECT` (binary protocol) as Arrow batches.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::TryStreamExt;
use mysql_async::prelude::{Query, Queryable, WithParams};
use mysql_async::{BinaryProtocol, Conn, ResultSetStream, Row};
use tracing::warn;

use super::decode::ColumnDecoder;
use super::dialect::MysqlDialect;
use super::endpoint::{Endpoint, query_error};
use super::{horizon, metadata, parallel};
use crate::contract::{
    ColumnInfo, CommitHorizon, Dialect, QueryBuilder, ResolvedOptions, ScanRequest, Source, SourceError, SplitScan,
    TableDescription, TableInfo, TableRef, TextRows, scan_sql,
};
use crate::sources::key_ranges;

/// Rows per record batch of a scan.
pub(crate) const BATCH_ROWS: usize = 8192;

/// Every session reads with UTF-8 text (4-byte characters included), UTC
/// for TIMESTAMP values (the type mapping assumes it), a `sql_mode` under
/// which the dialect's literals and identifiers mean what they say, and
/// patience for a slow consumer of a long result.
const SESSION: &str = "SET NAMES utf8mb4, time_zone = '+00:00', sql_mode = 'NO_ENGINE_SUBSTITUTION', \
                       net_write_timeout = 3600";

/// Spatial types, read as WKB.
pub(super) const SPATIAL: &[&str] = &[
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
];

/// Opens a MySQL/MariaDB connection's options as a source. With a
/// `database` option, that database is the only schema.
pub(super) fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(MysqlSource {
        endpoint: Arc::new(Endpoint::new(options)),
        database: options.text("database").map(str::to_owned),
        timeout,
    })
}

struct MysqlSource {
    endpoint: Arc<Endpoint>,
    database: Option<String>,
    timeout: Duration,
}

impl MysqlSource {
    /// A connection with the reading session set up.
    async fn session(&self) -> Result<Conn, SourceError> {
        session(&self.endpoint, self.timeout).await
    }

    /// The visible schemas, or `NotFound` when `schema` is not one of them.
    async fn visible(&self, conn: &mut Conn, schema: Option<&str>) -> Result<Vec<String>, SourceError> {
        let visible = metadata::schemas(conn, self.database.as_deref()).await?;
        match schema {
            Some(schema) if !visible.iter().any(|s| s == schema) => {
                Err(metadata::not_found("schema", schema.to_owned(), schema, visible))
            }
            _ => Ok(visible),
        }
    }

    async fn describe_on(&self, conn: &mut Conn, table: &TableRef) -> Result<TableDescription, SourceError> {
        let visible = self.visible(conn, Some(&table.schema)).await?;
        match metadata::table(conn, table).await? {
            Some(info) => metadata::describe(conn, info).await,
            None => {
                let names = metadata::tables(conn, Some(&table.schema), &visible)
                    .await?
                    .into_iter()
                    .map(|t| t.table.name)
                    .collect();
                Err(metadata::not_found("table", table.to_string(), &table.name, names))
            }
        }
    }
}

/// Closes a connection whose work is done; a failed goodbye changes nothing.
async fn close(conn: Conn) {
    let _ = conn.disconnect().await;
}

#[async_trait]
impl Source for MysqlSource {
    fn dialect(&self) -> &'static dyn Dialect {
        &MysqlDialect
    }

    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        let mut conn = self.session().await?;
        let result = self.visible(&mut conn, None).await;
        close(conn).await;
        result
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        let mut conn = self.session().await?;
        let result = async {
            let visible = self.visible(&mut conn, schema).await?;
            metadata::tables(&mut conn, schema, &visible).await
        }
        .await;
        close(conn).await;
        result
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        let mut conn = self.session().await?;
        let result = self.describe_on(&mut conn, table).await;
        close(conn).await;
        result
    }

    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let conn = self.session().await?;
        scan_on(conn, &self.endpoint, self.timeout, description, request).await
    }

    fn supports_parallel_scan(&self) -> bool {
        true
    }

    async fn scan_parallel(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: usize,
        parts: usize,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        parallel::scan(&self.endpoint, self.timeout, description, request, split, parts).await
    }

    async fn parallel_scan_queries(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: usize,
        parts: usize,
    ) -> Result<Vec<String>, SourceError> {
        parallel::queries(&self.endpoint, self.timeout, description, request, split, parts).await
    }

    fn supports_split_scan(&self) -> bool {
        true
    }

    async fn split_scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: Option<usize>,
        parts: usize,
    ) -> Result<SplitScan, SourceError> {
        let split = key_ranges::required_split(description, split)?;
        parallel::split(&self.endpoint, self.timeout, description, request, split, parts).await
    }

    async fn scan_part(
        &self,
        description: &TableDescription,
        part: &ScanRequest,
        snapshot: Option<&str>,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        parallel::scan_part(&self.endpoint, self.timeout, description, part, snapshot).await
    }

    async fn commit_horizon(&self) -> Result<Option<CommitHorizon>, SourceError> {
        let mut conn = self.endpoint.connect(self.timeout).await?;
        let result = horizon::read(&mut conn).await;
        close(conn).await;
        result.map(Some)
    }

    async fn estimate_rows(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<Option<u64>, SourceError> {
        let explain = format!("EXPLAIN {}", self.scan_query(description, request));
        let plan = self.query_text(description, &|_| explain.clone()).await?;
        // One row per table of the plan: the first is the scanned table.
        let rows = plan.columns.iter().position(|c| c.eq_ignore_ascii_case("rows"));
        Ok(rows.and_then(|i| plan.rows.first()?.get(i)?.as_deref()?.parse().ok()))
    }

    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        let from = quoted_table(description);
        let mut conn = self.session().await?;
        let result = conn.query::<Row, _>(sql(&from)).await;
        close(conn).await;
        let rows = result.map_err(query_error)?;
        Ok(TextRows {
            columns: rows.first().map_or_else(Vec::new, |row| {
                row.columns_ref().iter().map(|c| c.name_str().into_owned()).collect()
            }),
            rows: rows
                .iter()
                .map(|row| (0..row.len()).map(|i| row.as_ref(i).and_then(value_text)).collect())
                .collect(),
        })
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        scan_query(description, request)
    }
}

/// The table `description` describes, as `db`.`table`.
pub(super) fn quoted_table(description: &TableDescription) -> String {
    format!(
        "{}.{}",
        MysqlDialect.quote_ident(&description.table.schema),
        MysqlDialect.quote_ident(&description.table.name)
    )
}

/// The `SELECT` of a scan.
pub(super) fn scan_query(description: &TableDescription, request: &ScanRequest) -> String {
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
    let from = quoted_table(description);
    scan_sql(&list, &from, request)
}

/// A session set up for reading (UTF-8, UTC, the dialect's `sql_mode`).
pub(super) async fn session(endpoint: &Endpoint, timeout: Duration) -> Result<Conn, SourceError> {
    let mut conn = endpoint.connect(timeout).await?;
    conn.query_drop(SESSION).await.map_err(query_error)?;
    Ok(conn)
}

/// Streams `request`'s rows of the table `description` describes through
/// one `SELECT` on `conn`, a [`session`], in whatever transaction it has
/// open (the consistent snapshot of a change capture's first load).
pub(super) async fn scan_on(
    conn: Conn,
    endpoint: &Arc<Endpoint>,
    timeout: Duration,
    description: &TableDescription,
    request: &ScanRequest,
) -> Result<SendableRecordBatchStream, SourceError> {
    let (decoders, schema) = description.decoders(&request.columns, ColumnDecoder::new)?;
    let sql = scan_query(description, request);
    // Armed from here: a scan dropped while the server works is stopped.
    let mut guard = KillOnDrop {
        endpoint: endpoint.clone(),
        timeout,
        thread: conn.id(),
        armed: true,
    };
    let rows = match sql.with(()).stream::<Row, _>(conn).await {
        Ok(rows) => rows,
        Err(err) => {
            // The statement failed: nothing is left running.
            guard.armed = false;
            return Err(query_error(err));
        }
    };
    let reader = Reader {
        batch_rows: request.batch_rows.unwrap_or(BATCH_ROWS).max(1),
        rows,
        decoders,
        schema: schema.clone(),
        guard,
    };
    let batches = futures::stream::try_unfold(reader, |mut reader| async move {
        let batch = reader.next_batch().await?;
        Ok(batch.map(|batch| (batch, reader)))
    })
    .map_err(|e: SourceError| DataFusionError::External(Box::new(e)));
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
}

/// A value of the text protocol as text; `None` for NULL.
fn value_text(value: &mysql_async::Value) -> Option<String> {
    use mysql_async::Value as V;
    match value {
        V::NULL => None,
        V::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        V::Int(v) => Some(v.to_string()),
        V::UInt(v) => Some(v.to_string()),
        V::Float(v) => Some(v.to_string()),
        V::Double(v) => Some(v.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

/// A column's type name without its length or attributes, in lower case:
/// `int(10) unsigned` -> `int`.
pub(super) fn base_type(column: &ColumnInfo) -> String {
    column
        .source_type
        .split(['(', ' '])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// How a column is selected so that its value arrives as the mapping
/// expects: BIT as an integer, TIME as text, spatial values as WKB.
fn select_expression(column: &ColumnInfo) -> String {
    let name = MysqlDialect.quote_ident(&column.name);
    match base_type(column).as_str() {
        "bit" => format!("({name} + 0)"),
        "time" => format!("CAST({name} AS CHAR)"),
        spatial if SPATIAL.contains(&spatial) => format!("ST_AsWKB({name})"),
        _ => name,
    }
}

/// The rows of one scan, decoded batch by batch.
struct Reader {
    batch_rows: usize,
    rows: ResultSetStream<'static, 'static, 'static, Row, BinaryProtocol>,
    decoders: Vec<ColumnDecoder>,
    schema: SchemaRef,
    guard: KillOnDrop,
}

impl Reader {
    /// The next batch of at most `batch_rows` rows, `None` at the end.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, SourceError> {
        let selected = self.decoders.len();
        let mut count = 0;
        while count < self.batch_rows && self.guard.armed {
            let Some(row) = self.rows.try_next().await.map_err(query_error)? else {
                self.guard.armed = false;
                break;
            };
            for (i, decoder) in self.decoders.iter_mut().enumerate() {
                let value = row.as_ref(i).ok_or_else(|| SourceError::Query {
                    code: None,
                    message: format!("the server sent {} columns for {selected} selected", row.len()),
                })?;
                decoder.append(value)?;
            }
            count += 1;
        }
        if count == 0 {
            return Ok(None);
        }
        let arrays = self.decoders.iter_mut().map(ColumnDecoder::finish).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(count));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map(Some)
            .map_err(|e| SourceError::Query {
                code: None,
                message: e.to_string(),
            })
    }
}

/// Stops the server's side of a scan abandoned before its last row, so the
/// connection closes instead of draining the rest of the result.
struct KillOnDrop {
    endpoint: Arc<Endpoint>,
    timeout: Duration,
    /// The server's id of the scanning connection.
    thread: u32,
    /// Whether rows may still be pending.
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (endpoint, timeout, thread) = (self.endpoint.clone(), self.timeout, self.thread);
        runtime.spawn(async move {
            let result = match endpoint.connect(timeout).await {
                Ok(mut conn) => {
                    let killed = conn.query_drop(format!("KILL CONNECTION {thread}")).await;
                    close(conn).await;
                    killed.map_err(|e| e.to_string())
                }
                Err(failure) => Err(failure.to_string()),
            };
            if let Err(error) = result {
                warn!(thread, %error, "could not stop an abandoned MySQL scan");
            }
        });
    }
}
