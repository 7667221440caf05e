//! A Cassandra cluster as a [`Source`]: keyspaces are schemas, tables are
//! tables, described from `system_schema` with the CQL types mapped in
//! [`super::types`]; scans read pages of CQL rows through a
//! [`DocumentSource`] over a [`CassandraStore`], which converts them to
//! Arrow batches and applies the scan's filter and limit in Sluice. A scan
//! without a limit on a Murmur3 cluster reads `split_ranges` (or the job's
//! `parallelism`) token ranges in parallel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::execution::SendableRecordBatchStream;
use futures::{StreamExt, TryStreamExt};
use scylla::statement::Statement;
use scylla::value::Row;

use super::cql::{self, Read, TokenRange};
use super::session::{Connection, source_error};
use super::{types, values};
use crate::connectors::documents::{Document, DocumentSource, Mapping, Pages, Shape, Store};
use crate::contract::{
    ColumnInfo, Dialect, QueryBuilder, ResolvedOptions, ScanRequest, Source, SourceError, TableDescription, TableInfo,
    TableKind, TableRef, TextRows, closest,
};
use crate::sources::datafusion_sql::DataFusionDialect;

/// How an incremental window reaches Cassandra (the `incremental_filter` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WindowFilter {
    /// Every row is read; Sluice keeps those in the window.
    Client,
    /// The window's bounds go into the CQL `WHERE` with `ALLOW FILTERING`:
    /// still a scan of every partition, but only the window's rows travel.
    AllowFiltering,
}

pub(super) struct CassandraSource {
    connection: Arc<Connection>,
    page_size: i32,
    window: WindowFilter,
    /// The `split_ranges` option.
    split_ranges: u32,
}

impl CassandraSource {
    pub(super) fn new(options: &ResolvedOptions, timeout: Duration) -> Self {
        Self {
            connection: Arc::new(Connection::new(options, timeout)),
            page_size: options
                .integer("page_size")
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(5000),
            window: match options.text("incremental_filter") {
                Some("allow_filtering") => WindowFilter::AllowFiltering,
                _ => WindowFilter::Client,
            },
            split_ranges: options
                .integer("split_ranges")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
        }
    }

    fn store(&self, keyspace: &str) -> DocumentSource<CassandraStore> {
        DocumentSource {
            store: Arc::new(CassandraStore {
                connection: self.connection.clone(),
                keyspace: keyspace.to_owned(),
                page_size: self.page_size,
                window: self.window,
                split_ranges: self.split_ranges,
            }),
            mapping: Mapping::default(),
        }
    }

    /// Checks `keyspace` is one of [`Source::schemas`].
    async fn check_keyspace(&self, keyspace: &str) -> Result<(), SourceError> {
        let schemas = self.schemas().await?;
        if schemas.iter().any(|s| s == keyspace) {
            Ok(())
        } else {
            Err(SourceError::NotFound {
                kind: "schema",
                name: keyspace.to_owned(),
                nearby: closest(keyspace, schemas),
            })
        }
    }
}

/// Every row a CQL statement returns, page by page.
async fn rows(connection: &Connection, text: String, what: &str) -> Result<Vec<Row>, SourceError> {
    let session = connection.session().await?;
    session
        .query_iter(Statement::new(text), ())
        .await
        .map_err(|e| source_error(&e, what))?
        .rows_stream::<Row>()
        .map_err(|e| source_error(&e, what))?
        .try_collect()
        .await
        .map_err(|e| source_error(&e, what))
}

fn text(row: &Row, i: usize) -> String {
    match row.columns.get(i) {
        Some(Some(v)) => match values::value(v) {
            crate::connectors::documents::Value::String(s) => s,
            other => other.to_json().to_string(),
        },
        _ => String::new(),
    }
}

fn int(row: &Row, i: usize) -> Option<i64> {
    match values::value(row.columns.get(i)?.as_ref()?) {
        crate::connectors::documents::Value::Int(n) => Some(n),
        _ => None,
    }
}

/// Keyspaces every cluster has, hidden unless the `keyspace` option names one.
fn is_system(keyspace: &str) -> bool {
    keyspace == "system" || keyspace.starts_with("system_")
}

/// `keyspace`'s tables with the partition estimates of
/// `system.size_estimates` where the cluster keeps them.
async fn tables(connection: &Connection, keyspace: &str) -> Result<Vec<TableInfo>, SourceError> {
    let names = rows(connection, cql::tables(keyspace), keyspace).await?;
    // Older and newer clusters may lack the table or refuse the read: no estimate then.
    let estimates = rows(connection, cql::size_estimates(keyspace), keyspace)
        .await
        .unwrap_or_default();
    let mut sizes: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in &estimates {
        let (partitions, mean) = (int(row, 1).unwrap_or(0), int(row, 2).unwrap_or(0));
        let entry = sizes.entry(text(row, 0)).or_default();
        entry.0 = entry.0.saturating_add(partitions);
        entry.1 = entry.1.saturating_add(partitions.saturating_mul(mean));
    }
    let mut tables: Vec<TableInfo> = names
        .iter()
        .map(|row| {
            let name = text(row, 0);
            let size = sizes.get(&name).copied();
            TableInfo {
                table: TableRef {
                    schema: keyspace.to_owned(),
                    name,
                },
                kind: TableKind::Table,
                estimated_rows: size.map(|s| s.0),
                size_bytes: size.map(|s| s.1),
                files: None,
                last_modified: None,
            }
        })
        .collect();
    tables.sort_by(|a, b| a.table.name.cmp(&b.table.name));
    Ok(tables)
}

/// The columns of `keyspace.table` from `system_schema.columns`, in CQL's
/// order: partition key, clustering columns, then the others by name.
async fn columns(connection: &Connection, table: &TableRef) -> Result<Vec<ColumnInfo>, SourceError> {
    let found = rows(connection, cql::columns(&table.schema, &table.name), &table.to_string()).await?;
    let mut columns: Vec<(u8, i64, String, String)> = found
        .iter()
        .map(|row| {
            let rank = match text(row, 1).as_str() {
                "partition_key" => 0,
                "clustering" => 1,
                _ => 2,
            };
            (rank, int(row, 2).unwrap_or(0), text(row, 0), text(row, 3))
        })
        .collect();
    columns.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    let mut key_position = 0;
    Ok(columns
        .into_iter()
        .enumerate()
        .map(|(i, (rank, _, name, cql_type))| {
            let (spec, mapping) = types::map(&cql_type);
            let primary_key_position = (rank < 2).then(|| {
                key_position += 1;
                key_position
            });
            ColumnInfo {
                name,
                ordinal: i as u32 + 1,
                source_type: spec.source_type(Some(&cql_type)),
                nullable: rank == 2,
                default: None,
                primary_key_position,
                indexed: rank == 0,
                mapping,
            }
        })
        .collect())
}

#[async_trait]
impl Source for CassandraSource {
    fn dialect(&self) -> &'static dyn Dialect {
        &DataFusionDialect
    }

    fn reads_nested(&self) -> bool {
        true
    }

    /// The keyspaces of `system_schema.keyspaces` but the system ones, or
    /// only the `keyspace` option's.
    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        let found = rows(&self.connection, cql::keyspaces(), "the cluster").await?;
        let mut names: Vec<String> = found.iter().map(|r| text(r, 0)).collect();
        match &self.connection.settings.keyspace {
            Some(only) => names.retain(|n| n == only),
            None => names.retain(|n| !is_system(n)),
        }
        names.sort();
        Ok(names)
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        let keyspaces = match schema {
            Some(s) => {
                self.check_keyspace(s).await?;
                vec![s.to_owned()]
            }
            None => self.schemas().await?,
        };
        let mut all = Vec::new();
        for keyspace in keyspaces {
            all.extend(tables(&self.connection, &keyspace).await?);
        }
        Ok(all)
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        self.check_keyspace(&table.schema).await?;
        let columns = columns(&self.connection, table).await?;
        let found = tables(&self.connection, &table.schema).await?;
        if columns.is_empty() {
            return Err(SourceError::NotFound {
                kind: "table",
                name: table.to_string(),
                nearby: closest(&table.name, found.iter().map(|t| t.table.name.clone()).collect()),
            });
        }
        Ok(TableDescription {
            table: table.clone(),
            kind: TableKind::Table,
            columns,
            estimated_rows: found
                .iter()
                .find(|t| t.table.name == table.name)
                .and_then(|t| t.estimated_rows),
        })
    }

    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        self.store(&description.table.schema).scan(description, request).await
    }

    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        self.store(&description.table.schema).query_text(description, sql).await
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        self.store(&description.table.schema).scan_query(description, request)
    }

    fn scans_in_segments(&self) -> bool {
        true
    }

    async fn scan_segments(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        parts: usize,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        self.store(&description.table.schema)
            .scan_segments(description, request, parts)
            .await
    }

    fn segmented_scan_query(&self, description: &TableDescription, request: &ScanRequest, parts: usize) -> String {
        self.store(&description.table.schema)
            .segmented_scan_query(description, request, parts)
    }
}

/// One keyspace's tables as a document [`Store`]: its rows are the
/// documents, read a page at a time with the driver's paging state.
pub(super) struct CassandraStore {
    connection: Arc<Connection>,
    keyspace: String,
    page_size: i32,
    window: WindowFilter,
    split_ranges: u32,
}

impl CassandraStore {
    fn statement(
        &self,
        table: &str,
        description: &TableDescription,
        request: &ScanRequest,
        range: Option<TokenRange>,
    ) -> Read {
        cql::read(
            &self.keyspace,
            table,
            description,
            request,
            self.window == WindowFilter::AllowFiltering,
            range,
        )
    }

    /// The token ranges a scan with `request` reads in `parts`, or `None`
    /// for one `SELECT`: a scan with a limit (a preview reads the first
    /// pages only), a single part, or a table without a partition key.
    fn split(description: &TableDescription, request: &ScanRequest, parts: u32) -> Option<Vec<TokenRange>> {
        (parts > 1 && request.limit.is_none() && !cql::partition_key(description).is_empty())
            .then(|| cql::ranges(parts))
    }

    fn pages(connection: Arc<Connection>, page_size: i32, read: Read, what: String) -> Pages {
        let page_size = page_size.max(1);
        let opened = async move {
            let session = connection.session().await?;
            let mut statement = Statement::new(read.text.clone());
            statement.set_page_size(page_size);
            let error_name = what.clone();
            let stream = session
                .query_iter(statement, ())
                .await
                .map_err(|e| source_error(&e, &what))?
                .rows_stream::<Row>()
                .map_err(|e| source_error(&e, &what))?;
            let (columns, key) = (read.columns, read.key);
            let pages = stream
                .map_err(move |e| source_error(&e, &error_name))
                .try_chunks(page_size as usize)
                .map(move |chunk| match chunk {
                    Ok(rows) => Ok(rows.iter().map(|r| values::row(r, &columns, &key)).collect()),
                    Err(e) => Err(e.1),
                });
            Ok::<_, SourceError>(pages)
        };
        futures::stream::once(opened).try_flatten().boxed()
    }
}

#[async_trait]
impl Store for CassandraStore {
    fn schema(&self) -> String {
        self.keyspace.clone()
    }

    async fn tables(&self) -> Result<Vec<TableInfo>, SourceError> {
        tables(&self.connection, &self.keyspace).await
    }

    /// Never called: a Cassandra table is described from its schema, not sampled.
    async fn sample(&self, table: &str, _n: usize) -> Result<(Vec<Document>, Shape), SourceError> {
        Err(SourceError::Query {
            code: Some("XX000".into()),
            message: format!("{}.{table} is described from system_schema, not sampled", self.keyspace),
        })
    }

    fn read(&self, table: &str, description: &TableDescription) -> Pages {
        self.read_request(table, description, &ScanRequest::every_column(description))
    }

    /// [`Store::read_segments`] in the connection's `split_ranges`.
    fn read_request(&self, table: &str, description: &TableDescription, request: &ScanRequest) -> Pages {
        self.read_segments(table, description, request, self.split_ranges)
    }

    fn reads_in_segments(&self) -> bool {
        true
    }

    /// One `SELECT` per token range of the ring split in `parts`, all read
    /// at once (each with the driver's one page in flight, pages merged as
    /// they come), when the cluster's partitioner is Murmur3; else, or
    /// without a split ([`CassandraStore::split`]), one `SELECT`.
    fn read_segments(&self, table: &str, description: &TableDescription, request: &ScanRequest, parts: u32) -> Pages {
        let what = format!("{}.{table}", self.keyspace);
        let (connection, page_size) = (self.connection.clone(), self.page_size);
        let whole = self.statement(table, description, request, None);
        let Some(ranges) = Self::split(description, request, parts) else {
            return Self::pages(connection, page_size, whole, what);
        };
        let reads: Vec<Read> = ranges
            .into_iter()
            .map(|range| self.statement(table, description, request, Some(range)))
            .collect();
        let opened = async move {
            if !connection.splits_by_token().await? {
                return Ok(Self::pages(connection, page_size, whole, what));
            }
            let streams = reads
                .into_iter()
                .map(|read| Self::pages(connection.clone(), page_size, read, what.clone()));
            Ok::<_, SourceError>(futures::stream::select_all(streams).boxed())
        };
        futures::stream::once(opened).try_flatten().boxed()
    }

    fn read_text(&self, table: &str) -> String {
        format!("SELECT * FROM {}", cql::table_name(&self.keyspace, table))
    }

    fn read_request_text(&self, table: &str, description: &TableDescription, request: &ScanRequest) -> String {
        self.read_segments_text(table, description, request, self.split_ranges)
    }

    fn read_segments_text(
        &self,
        table: &str,
        description: &TableDescription,
        request: &ScanRequest,
        parts: u32,
    ) -> String {
        let pages = format!("(pages of {} rows)", self.page_size);
        let Some(ranges) = Self::split(description, request, parts) else {
            return format!("{} {pages}", self.statement(table, description, request, None).text);
        };
        let first = self.statement(table, description, request, ranges.first().copied());
        let all: Vec<String> = ranges.iter().map(TokenRange::text).collect();
        format!(
            "{} token ranges read in parallel, the first {} {pages}; ranges {} (one SELECT without token bounds \
             when the partitioner is not Murmur3)",
            ranges.len(),
            first.text,
            all.join(", ")
        )
    }
}
