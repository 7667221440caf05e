//! What a source connector implements: [`Source`] (schemas, tables,
//! descriptions and scans as Arrow streams), its SQL [`Dialect`], the
//! types they exchange, and [`SourceError`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::scalar::ScalarValue;

use super::failure::ConnectFailure;
use super::whole_file::PieceStream;
use crate::type_mapping::TypeMapping;

/// Which SQL a dialect writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlFamily {
    Postgres,
    MySql,
    DataFusion,
    BigQuery,
    SqlServer,
    /// PostgreSQL's, without many-argument `CONCAT` or unbounded `text`.
    Redshift,
    Snowflake,
}

/// A table (or view) of a source, by schema and name, exactly as the source
/// spells them (no case folding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// What kind of relation a table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Table,
    View,
    MaterializedView,
    Partitioned,
    Foreign,
}

impl TableKind {
    /// The lower-case name shown in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Table => "table",
            TableKind::View => "view",
            TableKind::MaterializedView => "materialized view",
            TableKind::Partitioned => "partitioned table",
            TableKind::Foreign => "foreign table",
        }
    }
}

/// One row of `SHOW TABLES`.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub table: TableRef,
    pub kind: TableKind,
    /// From statistics, never a full count.
    pub estimated_rows: Option<i64>,
    pub size_bytes: Option<i64>,
    /// How many files hold the table, for sources made of files.
    pub files: Option<i64>,
    /// When the source last changed the table, where it knows.
    pub last_modified: Option<DateTime<Utc>>,
}

/// The column file sources add holding each row's object URL.
pub const FILE_COLUMN: &str = "_file";
/// The `source_type` of [`FILE_COLUMN`] in a file source's description.
pub const FILE_URL_TYPE: &str = "object URL";
/// The `source_type` of a file source's `_modified_at` column: each
/// object's last-modified time.
pub const FILE_MODIFIED_TYPE: &str = "object last-modified time";

/// How many of its files a scan has read, of those it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilesRead {
    pub done: u64,
    pub total: u64,
}

/// One column of a described table.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub name: String,
    /// 1-based position in the table.
    pub ordinal: u32,
    /// The source's own type text, with precision or length (`numeric(12,2)`).
    pub source_type: String,
    pub nullable: bool,
    pub default: Option<String>,
    /// 1-based position in the primary key.
    pub primary_key_position: Option<u32>,
    /// Whether an index starts with this column.
    pub indexed: bool,
    /// How the column maps to Arrow and BigQuery.
    pub mapping: TypeMapping,
}

/// A table's columns and what Sluice makes of them.
#[derive(Debug, Clone)]
pub struct TableDescription {
    pub table: TableRef,
    pub kind: TableKind,
    pub columns: Vec<ColumnInfo>,
    pub estimated_rows: Option<i64>,
}

impl TableDescription {
    /// The Arrow schema of a full scan.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| {
                    let field = Field::new(&c.name, c.mapping.arrow.clone(), c.nullable);
                    if c.mapping.repeated {
                        field.with_nullable(true)
                    } else {
                        field
                    }
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// The columns a scan asks for (indexes into [`columns`](Self::columns))
    /// and their Arrow schema; an index out of range is `NotFound`.
    pub fn projection(&self, indexes: &[usize]) -> Result<(Vec<&ColumnInfo>, SchemaRef), SourceError> {
        let columns = indexes
            .iter()
            .map(|&i| {
                self.columns.get(i).ok_or_else(|| SourceError::NotFound {
                    kind: "column",
                    name: format!("#{i} of {}", self.table),
                    nearby: self.columns.iter().map(|c| c.name.clone()).collect(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schema = self.arrow_schema().project(indexes).map_err(|e| SourceError::Query {
            code: None,
            message: e.to_string(),
        })?;
        Ok((columns, Arc::new(schema)))
    }

    /// One decoder per column of `indexes`, made by `new` from the column's
    /// label (`column "c" of s.t`, for errors) and its Arrow type, and the
    /// projected schema.
    pub fn decoders<D>(
        &self,
        indexes: &[usize],
        new: impl Fn(String, &DataType) -> Result<D, SourceError>,
    ) -> Result<(Vec<D>, SchemaRef), SourceError> {
        let (columns, schema) = self.projection(indexes)?;
        let decoders = (columns.iter())
            .map(|c| new(format!("column \"{}\" of {}", c.name, self.table), &c.mapping.arrow))
            .collect::<Result<_, _>>()?;
        Ok((decoders, schema))
    }

    /// Names of the primary-key columns, in key order.
    pub fn primary_key(&self) -> Vec<&str> {
        let mut key: Vec<_> = self
            .columns
            .iter()
            .filter_map(|c| Some((c.primary_key_position?, c.name.as_str())))
            .collect();
        key.sort();
        key.into_iter().map(|(_, name)| name).collect()
    }
}

/// What to read in one scan.
#[derive(Debug, Clone, Default)]
pub struct ScanRequest {
    /// Indexes into the description's columns, in output order.
    pub columns: Vec<usize>,
    /// A boolean condition in the source's SQL dialect.
    pub filter: Option<String>,
    pub limit: Option<usize>,
    /// Rows to skip before `limit` counts; never above zero unless the
    /// source [supports offsets](Source::supports_offset).
    pub offset: usize,
    /// Rows per batch; the source's default when `None`.
    pub batch_rows: Option<usize>,
    /// Only this one of the segments a source that splits its reads
    /// itself ([`Source::scans_in_segments`]) would read; `None`: every
    /// row. A cluster task's part of such a source.
    pub segment: Option<Segment>,
}

/// One of `total` segments a source splits its read into (DynamoDB's Scan
/// `Segment` of `TotalSegments`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// From 0, below `total`.
    pub index: u32,
    pub total: u32,
}

impl ScanRequest {
    /// Every column of `description`, every row.
    pub fn every_column(description: &TableDescription) -> Self {
        Self {
            columns: (0..description.columns.len()).collect(),
            ..Self::default()
        }
    }
}

/// An instant on the source's clock, in microseconds since 1970 both as UTC
/// (for `timestamptz`/`TIMESTAMP` cursors) and as the wall time of the
/// source's default time zone (for `timestamp`/`DATETIME` cursors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceInstant {
    pub utc_micros: i64,
    pub wall_micros: i64,
}

/// A transaction open on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTransaction {
    /// Who holds it: the backend pid or connection id.
    pub holder: i64,
    pub started: SourceInstant,
}

/// What a source says about transactions that may still commit rows with
/// older cursor values (see the commit guard in `docs/load-semantics.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitHorizon {
    /// The source's clock now.
    pub now: SourceInstant,
    /// Transactions open in other sessions, oldest first.
    pub open: Vec<OpenTransaction>,
    /// On a read replica, the commit time of the last replayed transaction.
    pub replay: Option<SourceInstant>,
    /// Why the source user may not see every open transaction (the grant
    /// it lacks); `None` when it sees them all.
    pub blind: Option<String>,
    /// Whether rows may still appear stamped up to `now`: an object store
    /// stamps a file when its upload starts, so the cap stays the margin
    /// behind `now`.
    pub uploads_in_flight: bool,
}

/// The rows of a query, every value as text (`None` for NULL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl TextRows {
    /// The rows of Arrow `batches`, each value cast to text.
    pub fn from_batches(
        batches: &[datafusion::arrow::array::RecordBatch],
    ) -> Result<Self, datafusion::arrow::error::ArrowError> {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::compute::cast;
        let mut rows = Vec::new();
        let mut columns = Vec::new();
        for batch in batches {
            columns = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
            let texts = batch
                .columns()
                .iter()
                .map(|c| cast(c, &DataType::Utf8))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(
                    texts
                        .iter()
                        .map(|c| (!c.is_null(row)).then(|| c.as_string::<i32>().value(row).to_owned()))
                        .collect(),
                );
            }
        }
        Ok(Self { columns, rows })
    }
}

/// A scan planned as parts that separate processes read
/// ([`Source::split_scan`]).
pub struct SplitScan {
    /// The parts, in order.
    pub parts: Vec<ScanPart>,
    /// Keeps the snapshot readable (the exporting session) until dropped.
    pub hold: Box<dyn Send + Sync>,
}

/// One part of a [`SplitScan`].
#[derive(Debug, Clone)]
pub struct ScanPart {
    /// The scan's request and the part's range or segment.
    pub request: ScanRequest,
    /// The snapshot the part reads in, as the source names it (the same
    /// exported snapshot for every part of a PostgreSQL scan; a MySQL
    /// part's place in the table's freeze).
    pub snapshot: Option<String>,
}

impl fmt::Debug for SplitScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitScan")
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

/// Builds a query around the reference to one table, as the source or
/// destination that runs it spells that reference.
pub type QueryBuilder<'a> = &'a (dyn Fn(&str) -> String + Send + Sync);

/// How a source spells identifiers and literals in its SQL.
pub trait Dialect: Send + Sync {
    /// Which SQL this is, for queries written per dialect (VERIFY's
    /// checksums).
    fn family(&self) -> SqlFamily;

    /// Quotes an identifier so that any name (spaces, quotes, reserved
    /// words, unicode) is taken literally.
    fn quote_ident(&self, ident: &str) -> String;
    /// A literal for `value`, or `None` when it cannot be written safely
    /// (the filter then stays in DataFusion).
    fn literal(&self, value: &ScalarValue) -> Option<String>;
    /// Whether the source compares this column's values (`=`, `<`, `IN`
    /// ...) as DataFusion compares their Arrow values; `false` keeps every
    /// comparison on the column in DataFusion.
    fn compares_as_arrow(&self, _column: &ColumnInfo) -> bool {
        true
    }

    /// A literal for a cursor bound in a query Sluice writes whole (a run's
    /// window, VERIFY, REPAIR), where [`Dialect::literal`] (which also
    /// decides what DataFusion pushes down) has none.
    fn bound_literal(&self, value: &ScalarValue) -> Option<String> {
        self.literal(value)
    }

    /// The condition `column op value` (`op` one of `>`, `>=`, `<`, `<=`)
    /// bounding a run's window on the quoted `column`; sources that load a
    /// column coarser than they compare it write it against the loaded value.
    fn bound_condition(&self, column: &str, op: &str, value: &ScalarValue) -> Option<String> {
        self.bound_literal(value)
            .map(|literal| format!("{column} {op} {literal}"))
    }
}

/// The `SELECT` of a scan in any dialect: the select `list` (empty for none,
/// as PostgreSQL allows) from the quoted table `from`, with the request's
/// filter and limit.
pub fn scan_sql(list: &str, from: &str, request: &ScanRequest) -> String {
    let mut sql = if list.is_empty() {
        format!("SELECT FROM {from}")
    } else {
        format!("SELECT {list} FROM {from}")
    };
    if let Some(filter) = &request.filter {
        sql.push_str(&format!(" WHERE {filter}"));
    }
    if let Some(limit) = request.limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    sql
}

/// `ident` between `quote` characters, any `quote` inside doubled: the
/// identifier quoting of every SQL dialect Sluice reads.
pub fn quote_with(ident: &str, quote: char) -> String {
    let doubled: String = [quote, quote].iter().collect();
    format!("{quote}{}{quote}", ident.replace(quote, &doubled))
}

/// A non-null integer value as a SQL literal (the same in every dialect).
pub fn integer_literal(value: &ScalarValue) -> Option<String> {
    use ScalarValue as S;
    match value {
        S::Int8(Some(v)) => Some(v.to_string()),
        S::Int16(Some(v)) => Some(v.to_string()),
        S::Int32(Some(v)) => Some(v.to_string()),
        S::Int64(Some(v)) => Some(v.to_string()),
        S::UInt8(Some(v)) => Some(v.to_string()),
        S::UInt16(Some(v)) => Some(v.to_string()),
        S::UInt32(Some(v)) => Some(v.to_string()),
        S::UInt64(Some(v)) => Some(v.to_string()),
        _ => None,
    }
}

/// The longest excerpt of a source value that an error message shows.
const EXCERPT_CHARS: usize = 64;

/// A source value as an error message shows it: whole when short, else its
/// start and its length, so a row value in an error is never a document.
pub fn excerpt(value: &str) -> String {
    match value.char_indices().nth(EXCERPT_CHARS) {
        None => value.to_owned(),
        Some((end, _)) => format!("{}... ({} bytes in all)", &value[..end], value.len()),
    }
}

/// Why a source could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The schema, table or column does not exist; `nearby` lists what does.
    #[error("{kind} \"{name}\" does not exist{}", nearby_text(nearby))]
    NotFound {
        kind: &'static str,
        name: String,
        nearby: Vec<String>,
    },
    /// The connection could not be opened or broke.
    #[error(transparent)]
    Connect(#[from] ConnectFailure),
    /// The source refused a query; `code` is its SQLSTATE when it gave one.
    #[error("{message}")]
    Query { code: Option<String>, message: String },
}

impl SourceError {
    /// True for failures that may pass by themselves, so a retry makes
    /// sense: a transient connection failure, or a query error in the
    /// SQLSTATE classes connection exception, transaction rollback
    /// (serialization, deadlock), insufficient resources, operator
    /// intervention and system error.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Connect(failure) => failure.kind.is_transient(),
            SourceError::Query { code: Some(code), .. } => ["08", "40", "53", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class)),
            SourceError::Query { code: None, .. } | SourceError::NotFound { .. } => false,
        }
    }
}

fn nearby_text(nearby: &[String]) -> String {
    if nearby.is_empty() {
        String::new()
    } else {
        format!(" (existing: {})", nearby.join(", "))
    }
}

/// A connection seen as a source of tables.
#[async_trait]
pub trait Source: Send + Sync {
    /// How this source writes SQL.
    fn dialect(&self) -> &'static dyn Dialect;

    /// User schemas (PostgreSQL) or databases (MySQL), system ones excluded.
    async fn schemas(&self) -> Result<Vec<String>, SourceError>;

    /// Tables and views of one schema, or of every user schema.
    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError>;

    /// Columns, keys and type mappings of one table.
    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError>;

    /// Streams the rows `request` selects, as batches of the projected
    /// schema of `description`.
    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError>;

    /// Streams the rows of [`Source::scan`], except that a file holding
    /// exactly the rows `request` selects, in the columns of `whole` (the
    /// destination's, one per requested column) or with a value for all
    /// its rows, comes as a [`ScanPiece::File`] instead of its batches.
    /// `None` (the default) for sources that read no such files.
    async fn scan_pieces(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        whole: &SchemaRef,
    ) -> Result<Option<PieceStream>, SourceError> {
        let _ = (description, request, whole);
        Ok(None)
    }

    /// Whether [`Source::scan`] skips [`ScanRequest::offset`] rows itself;
    /// only then does a query's `OFFSET` reach the source.
    fn supports_offset(&self) -> bool {
        false
    }

    /// Whether [`Source::scan_parallel`] works for this source.
    fn supports_parallel_scan(&self) -> bool {
        false
    }

    /// Streams the same rows as [`Source::scan`], read by up to `parts`
    /// concurrent streams over ranges of the NOT NULL integer column number
    /// `split`, all from one snapshot of the source. Sources that cannot keep
    /// this default, which refuses.
    async fn scan_parallel(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: usize,
        parts: usize,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let _ = (request, split, parts);
        Err(SourceError::Query {
            code: Some("0A000".into()),
            message: format!("{} cannot be read by parallel streams", description.table),
        })
    }

    /// Whether [`Source::split_scan`] works: the parts of a parallel scan
    /// can be read by other processes (a cluster's executors).
    fn supports_split_scan(&self) -> bool {
        false
    }

    /// Plans the rows of [`Source::scan`] as up to `parts` requests, each to
    /// be read by [`Source::scan_part`] anywhere: ranges of the NOT NULL
    /// integer column number `split`, all in the one snapshot the returned
    /// [`SplitScan`] holds open until it is dropped, or, for a source that
    /// [scans in segments](Source::scans_in_segments) (`split` is `None`
    /// then), its segments. Sources that cannot keep this default, which
    /// refuses.
    async fn split_scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: Option<usize>,
        parts: usize,
    ) -> Result<SplitScan, SourceError> {
        let _ = (request, split, parts);
        Err(SourceError::Query {
            code: Some("0A000".into()),
            message: format!("{} cannot be split for a cluster", description.table),
        })
    }

    /// Streams one part [`Source::split_scan`] planned, in its `snapshot`.
    async fn scan_part(
        &self,
        description: &TableDescription,
        part: &ScanRequest,
        snapshot: Option<&str>,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let _ = (part, snapshot);
        Err(SourceError::Query {
            code: Some("0A000".into()),
            message: format!("{} cannot be split for a cluster", description.table),
        })
    }

    /// Whether the source builds Arrow struct and list values itself for a
    /// JSON column whose description carries such a type (a job's `COLUMNS
    /// (c RECORD(...))` or `REPEATED` override): document and key-value
    /// stores do.
    fn reads_nested(&self) -> bool {
        false
    }

    /// Whether the source splits a parallel read itself (DynamoDB's Scan
    /// segments, Cassandra's token ranges, a file table's files), so a
    /// job's `WITH (parallelism = n)` needs no split column and runs
    /// [`Source::scan_segments`].
    fn scans_in_segments(&self) -> bool {
        false
    }

    /// Whether [`Source::split_scan`] splits by units of the source's own
    /// (DynamoDB's segments, a file table's files) and needs no split
    /// column; by default, when it [scans in segments](Source::scans_in_segments).
    fn splits_itself(&self) -> bool {
        self.scans_in_segments()
    }

    /// Streams the same rows as [`Source::scan`], read as `parts` segments
    /// the source splits itself. Sources that do not split keep this
    /// default: one scan.
    async fn scan_segments(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        parts: usize,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let _ = parts;
        self.scan(description, request).await
    }

    /// What [`Source::scan_segments`] sends for the same arguments, for
    /// EXPLAIN; by default [`Source::scan_query`].
    fn segmented_scan_query(&self, description: &TableDescription, request: &ScanRequest, parts: usize) -> String {
        let _ = parts;
        self.scan_query(description, request)
    }

    /// Open transactions and the clock of the source, read in a session of
    /// its own; `None` for sources without transactions to guard against.
    async fn commit_horizon(&self) -> Result<Option<CommitHorizon>, SourceError> {
        Ok(None)
    }

    /// The query [`Source::scan`] sends for `request`, for EXPLAIN.
    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String;

    /// How far the latest scan has got in files, for sources that read
    /// files; `None` by default.
    fn files_read(&self) -> Option<FilesRead> {
        None
    }

    /// The queries of the streams [`Source::scan_parallel`] would open for
    /// the same arguments now, for EXPLAIN (it reads the split column's
    /// range). Sources without parallel scans keep this default, which
    /// refuses.
    async fn parallel_scan_queries(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: usize,
        parts: usize,
    ) -> Result<Vec<String>, SourceError> {
        let _ = (request, split, parts);
        Err(SourceError::Query {
            code: Some("0A000".into()),
            message: format!("{} cannot be read by parallel streams", description.table),
        })
    }

    /// The source planner's estimate of the rows `request` reads, where
    /// the source gives one; runs nothing but the planner.
    async fn estimate_rows(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<Option<u64>, SourceError> {
        let _ = (description, request);
        Ok(None)
    }

    /// Runs the read-only query `sql` builds around the table's reference
    /// and returns its rows as text: aggregates computed where the data
    /// is (VERIFY). Sources that cannot keep this default, which refuses.
    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        let _ = sql;
        Err(SourceError::Query {
            code: Some("0A000".into()),
            message: format!("{} cannot run aggregate queries for VERIFY", description.table),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_in_error_messages() {
        assert_eq!(excerpt("short"), "short");
        let document = "é".repeat(10_000);
        let shown = excerpt(&document);
        assert!(shown.starts_with(&"é".repeat(EXCERPT_CHARS)), "{shown}");
        assert!(shown.ends_with("... (20000 bytes in all)"), "{shown}");
    }
}
