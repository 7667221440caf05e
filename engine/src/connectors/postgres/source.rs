//! A PostgreSQL database as a [`Source`]: catalog queries for metadata, and
//! each scan as one `COPY (SELECT ...) TO STDOUT (FORMAT binary)` decoded
//! straight into Arrow batches. Every operation opens its own session.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, IntervalUnit, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tokio_postgres::CopyOutStream;
use tracing::debug;

use super::copy_binary::{BATCH_ROWS, CopyDecoder, DecodeError, Wire};
use super::dialect::DIALECT;
use super::{Endpoint, PgConnection, horizon, metadata, parallel, query_error};
use crate::contract::{
    ColumnInfo, CommitHorizon, Dialect, QueryBuilder, ResolvedOptions, ScanRequest, Source, SourceError, SplitScan,
    TableDescription, TableInfo, TableRef, TextRows, scan_sql,
};
use crate::sources::key_ranges;

/// Opens a PostgreSQL connection's options as a source.
pub(super) fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(PostgresSource {
        endpoint: Endpoint::new(options, timeout),
    })
}

struct PostgresSource {
    endpoint: Endpoint,
}

/// Settings of every scan session: the text form of values read as text
/// does not depend on server or role defaults, literals mean what the
/// dialect writes, and nothing can be written.
pub(super) const SCAN_SESSION: &str = "SET standard_conforming_strings = on; SET DateStyle = 'ISO, MDY'; \
                            SET IntervalStyle = postgres; SET TimeZone = 'UTC'; SET extra_float_digits = 3; \
                            SET bytea_output = hex; SET default_transaction_read_only = on";

#[async_trait]
impl Source for PostgresSource {
    fn dialect(&self) -> &'static dyn Dialect {
        &DIALECT
    }

    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        let connection = self.endpoint.connect().await?;
        let result = metadata::schemas(&connection.client).await;
        connection.close();
        result
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        let connection = self.endpoint.connect().await?;
        let result = metadata::tables(&connection.client, schema).await;
        connection.close();
        result
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        let connection = self.endpoint.connect().await?;
        let result = metadata::describe(&connection.client, table).await;
        connection.close();
        result
    }

    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let prepared = prepare(description, request)?;
        debug!(table = %description.table, query = %prepared.query, "PostgreSQL scan");
        let connection = self.endpoint.connect().await?;
        copy(connection, SCAN_SESSION, prepared).await
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
        parallel::scan(&self.endpoint, description, request, split, parts).await
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
        parallel::split(&self.endpoint, description, request, split, parts).await
    }

    async fn scan_part(
        &self,
        description: &TableDescription,
        part: &ScanRequest,
        snapshot: Option<&str>,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        parallel::scan_part(&self.endpoint, description, part, snapshot).await
    }

    async fn commit_horizon(&self) -> Result<Option<CommitHorizon>, SourceError> {
        let connection = self.endpoint.connect().await?;
        let result = horizon::read(&connection.client).await;
        connection.close();
        result.map(Some)
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        plan(description, request).0
    }

    async fn parallel_scan_queries(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: usize,
        parts: usize,
    ) -> Result<Vec<String>, SourceError> {
        parallel::queries(&self.endpoint, description, request, split, parts).await
    }

    async fn estimate_rows(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<Option<u64>, SourceError> {
        let explain = format!("EXPLAIN (FORMAT JSON) {}", plan(description, request).0);
        let rows = self.query_text(description, &|_| explain.clone()).await?;
        let plan: Option<serde_json::Value> = rows
            .rows
            .first()
            .and_then(|row| row.first().cloned().flatten())
            .and_then(|json| serde_json::from_str(&json).ok());
        Ok(plan.and_then(|plan| plan.get(0)?.get("Plan")?.get("Plan Rows")?.as_f64().map(|n| n as u64)))
    }

    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        let from = format!(
            "{}.{}",
            DIALECT.quote_ident(&description.table.schema),
            DIALECT.quote_ident(&description.table.name)
        );
        text_rows(&self.endpoint, SCAN_SESSION, &sql(&from)).await
    }
}

/// The rows of the simple query `sql`, run in a session set up by `setup`,
/// as text.
pub(crate) async fn text_rows(endpoint: &Endpoint, setup: &str, sql: &str) -> Result<TextRows, SourceError> {
    let connection = endpoint.connect().await?;
    let result = async {
        connection.client.batch_execute(setup).await?;
        connection.client.simple_query(sql).await
    }
    .await;
    connection.close();
    let mut rows = TextRows::default();
    for message in result.map_err(query_error)? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            rows.columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
            rows.rows
                .push((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect());
        }
    }
    Ok(rows)
}

/// A scan ready to start: its query, output schema and decoder.
pub(super) struct PreparedScan {
    pub query: String,
    pub schema: SchemaRef,
    decoder: CopyDecoder,
}

/// Plans a scan, refusing columns that do not exist or cannot be read.
pub(super) fn prepare(description: &TableDescription, request: &ScanRequest) -> Result<PreparedScan, SourceError> {
    if let Some(bad) = request.columns.iter().find(|&&i| i >= description.columns.len()) {
        return Err(SourceError::Query {
            code: None,
            message: format!("{} has no column number {bad}", description.table),
        });
    }
    let (query, reads) = plan(description, request);
    let wires = reads
        .into_iter()
        .map(|(column, read)| {
            read.wire.ok_or_else(|| SourceError::Query {
                code: Some("0A000".into()),
                message: format!(
                    "column \"{}\": Arrow type {} cannot be read from PostgreSQL",
                    column.name, column.mapping.arrow
                ),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let schema = description
        .arrow_schema()
        .project(&request.columns)
        .map_err(|e| SourceError::Query {
            code: None,
            message: e.to_string(),
        })?;
    let schema = Arc::new(schema);
    let decoder =
        CopyDecoder::new(schema.clone(), &wires, request.batch_rows.unwrap_or(BATCH_ROWS)).map_err(decode_error)?;
    Ok(PreparedScan { query, schema, decoder })
}

/// Runs `setup` on `connection`, then streams the scan's `COPY`.
pub(super) async fn copy(
    connection: PgConnection,
    setup: &str,
    scan: PreparedScan,
) -> Result<SendableRecordBatchStream, SourceError> {
    let client = &connection.client;
    let started = async {
        client.batch_execute(setup).await?;
        client
            .copy_out(format!("COPY ({}) TO STDOUT (FORMAT binary)", scan.query).as_str())
            .await
    }
    .await;
    let copy = match started {
        Ok(copy) => copy,
        Err(err) => {
            connection.close();
            return Err(query_error(err));
        }
    };
    let state = Scan {
        connection,
        copy: Box::pin(copy),
        decoder: scan.decoder,
    };
    let stream = futures::stream::try_unfold(Some(state), next_batch);
    Ok(Box::pin(RecordBatchStreamAdapter::new(scan.schema, stream)))
}

/// A running scan. Dropping it before the end aborts the `COPY`.
struct Scan {
    connection: PgConnection,
    copy: Pin<Box<CopyOutStream>>,
    decoder: CopyDecoder,
}

async fn next_batch(state: Option<Scan>) -> Result<Option<(RecordBatch, Option<Scan>)>, DataFusionError> {
    let Some(mut scan) = state else {
        return Ok(None);
    };
    loop {
        if let Some(batch) = scan.decoder.next_batch().map_err(|e| external(decode_error(e)))? {
            return Ok(Some((batch, Some(scan))));
        }
        match scan.copy.next().await {
            Some(Ok(chunk)) => scan.decoder.push(&chunk),
            Some(Err(err)) => return Err(external(query_error(err))),
            None => {
                let Scan {
                    connection, decoder, ..
                } = scan;
                connection.close();
                let last = decoder.finish().map_err(|e| external(decode_error(e)))?;
                return Ok(last.map(|batch| (batch, None)));
            }
        }
    }
}

fn external(error: SourceError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

fn decode_error(error: DecodeError) -> SourceError {
    SourceError::Query {
        code: Some(error.sqlstate().to_owned()),
        message: error.to_string(),
    }
}

/// How one column is selected and read.
struct ColumnRead {
    /// The expression in the `SELECT` list.
    expression: String,
    /// Its binary format; `None` when its Arrow type cannot be read.
    wire: Option<Wire>,
}

/// The `SELECT` a scan sends, and how each requested column is read.
/// Column numbers out of range are left out.
/// The `SELECT` a scan of `request` runs.
pub(super) fn query(description: &TableDescription, request: &ScanRequest) -> String {
    plan(description, request).0
}

fn plan<'a>(description: &'a TableDescription, request: &ScanRequest) -> (String, Vec<(&'a ColumnInfo, ColumnRead)>) {
    let reads: Vec<_> = request
        .columns
        .iter()
        .filter_map(|&i| description.columns.get(i))
        .map(|column| (column, column_read(column)))
        .collect();
    let list: Vec<&str> = reads.iter().map(|(_, read)| read.expression.as_str()).collect();
    let from = format!(
        "{}.{}",
        DIALECT.quote_ident(&description.table.schema),
        DIALECT.quote_ident(&description.table.name),
    );
    (scan_sql(&list.join(", "), &from, request), reads)
}

/// Columns whose type already arrives in the format of their Arrow type
/// are selected as they are; others are cast to the PostgreSQL type that
/// does (`::text` for everything read as text, `::numeric` for money...),
/// and PostGIS values are read as WKB. Numerics too wide for a decimal
/// are read as text, refusing NaN and infinities.
fn column_read(column: &ColumnInfo) -> ColumnRead {
    let quoted = DIALECT.quote_ident(&column.name);
    let arrow = &column.mapping.arrow;
    if let Some(wire) = native_wire(&column.source_type, arrow) {
        return ColumnRead {
            expression: quoted,
            wire: Some(wire),
        };
    }
    let name = type_name(&column.source_type);
    if *arrow == DataType::Utf8 && name == "numeric" {
        return ColumnRead {
            expression: format!("{quoted}::text"),
            wire: Some(Wire::NumericText),
        };
    }
    if *arrow == DataType::Binary && matches!(name.rsplit('.').next(), Some("geometry" | "geography")) {
        return ColumnRead {
            expression: format!("ST_AsBinary({quoted})"),
            wire: Some(Wire::Bytea),
        };
    }
    match canonical(arrow) {
        Some((wire, sql_type)) => ColumnRead {
            expression: format!("{quoted}::{sql_type}"),
            wire: Some(wire),
        },
        None => ColumnRead {
            expression: quoted,
            wire: None,
        },
    }
}

/// A type's name without modifiers: `timestamp(3) with time zone` ->
/// `timestamp with time zone`, `numeric(12,2)[]` -> `numeric[]`.
fn type_name(formatted: &str) -> String {
    let mut depth = 0usize;
    formatted
        .chars()
        .filter(|&c| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' => {
                depth = depth.saturating_sub(1);
                false
            }
            _ => depth == 0,
        })
        .collect()
}

/// The binary format of a column of type `formatted` (a `format_type`
/// text), when it is already the one its Arrow type is read from.
fn native_wire(formatted: &str, arrow: &DataType) -> Option<Wire> {
    use DataType as D;
    if let D::List(field) = arrow {
        let element = formatted.strip_suffix("[]")?;
        return Some(Wire::Array(Box::new(native_wire(element, field.data_type())?)));
    }
    Some(match (type_name(formatted).as_str(), arrow) {
        ("boolean", D::Boolean) => Wire::Bool,
        ("smallint", D::Int16) => Wire::Int2,
        ("integer", D::Int32) => Wire::Int4,
        ("bigint", D::Int64) => Wire::Int8,
        ("oid", D::Int64) => Wire::Oid,
        ("real", D::Float32) => Wire::Float4,
        ("double precision", D::Float64) => Wire::Float8,
        ("numeric", D::Decimal128(..) | D::Decimal256(..)) => Wire::Numeric,
        ("text" | "character varying" | "character" | "name" | "json", D::Utf8) => Wire::Text,
        ("jsonb", D::Utf8) => Wire::Jsonb,
        ("bytea", D::Binary) => Wire::Bytea,
        ("date", D::Date32) => Wire::Date,
        ("timestamp without time zone", D::Timestamp(TimeUnit::Microsecond, None)) => Wire::Timestamp,
        ("timestamp with time zone", D::Timestamp(TimeUnit::Microsecond, Some(_))) => Wire::Timestamp,
        ("time without time zone", D::Time64(TimeUnit::Microsecond)) => Wire::Time,
        (name, D::Interval(IntervalUnit::MonthDayNano)) if name.starts_with("interval") => Wire::Interval,
        _ => return None,
    })
}

/// The PostgreSQL type whose binary format an Arrow type is read from.
fn canonical(arrow: &DataType) -> Option<(Wire, String)> {
    use DataType as D;
    let (wire, name) = match arrow {
        D::Boolean => (Wire::Bool, "boolean"),
        D::Int16 => (Wire::Int2, "smallint"),
        D::Int32 => (Wire::Int4, "integer"),
        D::Int64 => (Wire::Int8, "bigint"),
        D::Float32 => (Wire::Float4, "real"),
        D::Float64 => (Wire::Float8, "double precision"),
        D::Decimal128(..) | D::Decimal256(..) => (Wire::Numeric, "numeric"),
        D::Utf8 => (Wire::Text, "text"),
        D::Binary => (Wire::Bytea, "bytea"),
        D::Date32 => (Wire::Date, "date"),
        D::Timestamp(TimeUnit::Microsecond, None) => (Wire::Timestamp, "timestamp"),
        D::Timestamp(TimeUnit::Microsecond, Some(_)) => (Wire::Timestamp, "timestamptz"),
        D::Time64(TimeUnit::Microsecond) => (Wire::Time, "time"),
        D::Interval(IntervalUnit::MonthDayNano) => (Wire::Interval, "interval"),
        D::List(field) => {
            let (element, name) = canonical(field.data_type())?;
            return Some((Wire::Array(Box::new(element)), format!("{name}[]")));
        }
        _ => return None,
    };
    Some((wire, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use crate::connectors::postgres::types::{PgColumnType, PgTypeKind, map};
    use crate::contract::TableKind;

    use super::*;

    fn pg(name: &str, formatted: &str, kind: PgTypeKind) -> PgColumnType {
        PgColumnType {
            name: name.into(),
            formatted: formatted.into(),
            precision: None,
            scale: None,
            kind,
        }
    }

    fn base(name: &str, formatted: &str) -> PgColumnType {
        pg(name, formatted, PgTypeKind::Base)
    }

    fn array(element: PgColumnType) -> PgColumnType {
        let (name, formatted) = (format!("_{}", element.name), format!("{}[]", element.formatted));
        pg(&name, &formatted, PgTypeKind::Array(Box::new(element)))
    }

    fn column(name: &str, ty: PgColumnType) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            ordinal: 1,
            source_type: ty.formatted.clone(),
            nullable: true,
            default: None,
            primary_key_position: None,
            indexed: false,
            mapping: map(&ty),
        }
    }

    fn read(ty: PgColumnType) -> (String, Option<Wire>) {
        let r = column_read(&column("c", ty));
        (r.expression, r.wire)
    }

    #[test]
    fn native_types_are_selected_as_they_are() {
        let numeric = PgColumnType {
            precision: Some(12),
            scale: Some(2),
            ..base("numeric", "numeric(12,2)")
        };
        let cases = [
            (base("bool", "boolean"), Wire::Bool),
            (base("int2", "smallint"), Wire::Int2),
            (base("int8", "bigint"), Wire::Int8),
            (base("oid", "oid"), Wire::Oid),
            (base("float4", "real"), Wire::Float4),
            (numeric.clone(), Wire::Numeric),
            (base("varchar", "character varying(20)"), Wire::Text),
            (base("bpchar", "character(3)"), Wire::Text),
            (base("json", "json"), Wire::Text),
            (base("jsonb", "jsonb"), Wire::Jsonb),
            (base("bytea", "bytea"), Wire::Bytea),
            (base("timestamptz", "timestamp(3) with time zone"), Wire::Timestamp),
            (base("timestamp", "timestamp without time zone"), Wire::Timestamp),
            (base("time", "time without time zone"), Wire::Time),
            (base("interval", "interval day to second(3)"), Wire::Interval),
            (array(numeric), Wire::Array(Box::new(Wire::Numeric))),
            (
                array(base("varchar", "character varying(5)")),
                Wire::Array(Box::new(Wire::Text)),
            ),
        ];
        for (ty, wire) in cases {
            assert_eq!(read(ty), ("\"c\"".to_owned(), Some(wire)));
        }
    }

    #[test]
    fn other_types_are_cast() {
        let domain = pg(
            "small_oid",
            "small_oid",
            PgTypeKind::Domain(Box::new(base("oid", "oid"))),
        );
        let mood = pg("mood", "mood", PgTypeKind::Enum);
        let cases = [
            (base("uuid", "uuid"), "\"c\"::text", Wire::Text),
            (base("money", "money"), "\"c\"::numeric", Wire::Numeric),
            (base("timetz", "time with time zone"), "\"c\"::text", Wire::Text),
            (base("char", "\"char\""), "\"c\"::text", Wire::Text),
            (domain, "\"c\"::bigint", Wire::Int8),
            (array(mood), "\"c\"::text[]", Wire::Array(Box::new(Wire::Text))),
            (array(base("jsonb", "jsonb")), "\"c\"::text", Wire::Text),
            (
                PgColumnType {
                    precision: Some(80),
                    scale: Some(0),
                    ..base("numeric", "numeric(80,0)")
                },
                "\"c\"::text",
                Wire::NumericText,
            ),
            (
                base("geometry", "geometry(Point,4326)"),
                "ST_AsBinary(\"c\")",
                Wire::Bytea,
            ),
            (base("geography", "public.geography"), "ST_AsBinary(\"c\")", Wire::Bytea),
        ];
        for (ty, expression, wire) in cases {
            assert_eq!(read(ty), (expression.to_owned(), Some(wire)));
        }
    }

    #[test]
    fn the_query_quotes_names_and_adds_filter_and_limit() {
        let description = TableDescription {
            table: TableRef {
                schema: "Sales \"EU\"".into(),
                name: "Order \"Items\"; DROP TABLE x;--".into(),
            },
            kind: TableKind::Table,
            columns: vec![
                column("id", base("int4", "integer")),
                column("select", base("uuid", "uuid")),
            ],
            estimated_rows: None,
        };
        let request = ScanRequest {
            columns: vec![1, 0],
            filter: Some("(\"id\" > 5)".into()),
            limit: Some(3),
            offset: 0,
            segment: None,
            batch_rows: None,
        };
        assert_eq!(
            plan(&description, &request).0,
            "SELECT \"select\"::text, \"id\" FROM \"Sales \"\"EU\"\"\".\"Order \"\"Items\"\"; DROP TABLE x;--\" \
             WHERE (\"id\" > 5) LIMIT 3"
        );
        let count = ScanRequest::default();
        assert_eq!(
            plan(&description, &count).0,
            "SELECT FROM \"Sales \"\"EU\"\"\".\"Order \"\"Items\"\"; DROP TABLE x;--\""
        );
    }
}
