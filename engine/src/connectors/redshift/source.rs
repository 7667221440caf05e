//! A Redshift database as a [`Source`]: metadata from its catalog views, and
//! each scan as a server-side cursor (`DECLARE ... CURSOR` in a read-only
//! transaction) fetched `batch_rows` rows at a time in text format and
//! decoded into Arrow batches, so memory stays bounded by one batch. Every
//! statement is a simple query. Every operation opens its own session.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use tokio_postgres::SimpleQueryMessage;
use tracing::{debug, info};

use super::decode::TextDecoder;
use super::dialect::DIALECT;
use super::types::RsColumnType;
use super::unload::{Unload, unload_expression};
use super::{horizon, metadata};
use crate::connectors::postgres::{Endpoint, PgConnection, query_error, text_rows};
use crate::contract::{
    ColumnInfo, CommitHorizon, Dialect, QueryBuilder, ResolvedOptions, ScanRequest, Source, SourceError,
    TableDescription, TableInfo, TableRef, TextRows, scan_sql,
};

/// Rows per `FETCH` unless the scan asks for another batch size.
const BATCH_ROWS: usize = 8192;

/// The cursor every scan declares (one per session).
const CURSOR: &str = "sluice_scan";

/// Settings of every scan session, all of them Redshift configuration
/// parameters: values' text forms do not depend on server or user defaults,
/// and floats are written with enough digits to read back exactly.
const SCAN_SESSION: &str = "SET datestyle TO 'ISO, MDY'; SET timezone TO 'UTC'; SET extra_float_digits TO 2";

/// Opens a Redshift connection's options as a source.
pub(super) fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(RedshiftSource {
        endpoint: Endpoint::new(options, timeout),
        unload: Unload::from_options(options, timeout),
    })
}

struct RedshiftSource {
    endpoint: Endpoint,
    /// Set when the connection has `unload_bucket`.
    unload: Option<Unload>,
}

#[async_trait]
impl Source for RedshiftSource {
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
        if let Some(bad) = request.columns.iter().find(|&&i| i >= description.columns.len()) {
            return Err(SourceError::Query {
                code: None,
                message: format!("{} has no column number {bad}", description.table),
            });
        }
        let query = query(description, request);
        let schema =
            Arc::new(
                description
                    .arrow_schema()
                    .project(&request.columns)
                    .map_err(|e| SourceError::Query {
                        code: None,
                        message: e.to_string(),
                    })?,
            );
        if let Some(unload) = self.unload.as_ref().filter(|u| u.applies(description, request)) {
            let select = unload_query(description, request);
            return unload
                .scan(&self.endpoint, &description.table, &select, schema, request)
                .await;
        }
        info!(table = %description.table, "Redshift scan through a cursor");
        debug!(table = %description.table, %query, "Redshift scan");
        let connection = self.endpoint.connect().await?;
        let declare = format!("{SCAN_SESSION}; BEGIN READ ONLY; DECLARE {CURSOR} CURSOR FOR {query}");
        if let Err(err) = connection.client.batch_execute(&declare).await {
            connection.close();
            return Err(query_error(err));
        }
        let rows = request.batch_rows.unwrap_or(BATCH_ROWS).max(1);
        let state = Scan {
            connection,
            fetch: format!("FETCH FORWARD {rows} FROM {CURSOR}"),
            decoder: TextDecoder::new(schema.clone()),
        };
        let stream = futures::stream::try_unfold(Some(state), next_batch);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    async fn commit_horizon(&self) -> Result<Option<CommitHorizon>, SourceError> {
        let connection = self.endpoint.connect().await?;
        let result = horizon::read(&connection.client).await;
        connection.close();
        result.map(Some)
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        query(description, request)
    }

    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        text_rows(&self.endpoint, SCAN_SESSION, &sql(&from(&description.table))).await
    }
}

/// A running scan. Dropping it before the end drops the session, which
/// ends the transaction and its cursor.
struct Scan {
    connection: PgConnection,
    fetch: String,
    decoder: TextDecoder,
}

async fn next_batch(state: Option<Scan>) -> Result<Option<(RecordBatch, Option<Scan>)>, DataFusionError> {
    let Some(scan) = state else {
        return Ok(None);
    };
    let fetched = scan.connection.client.simple_query(&scan.fetch).await;
    let rows: Vec<_> = fetched
        .map_err(|e| external(query_error(e)))?
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        let closed = scan
            .connection
            .client
            .batch_execute(&format!("CLOSE {CURSOR}; COMMIT"))
            .await;
        scan.connection.close();
        closed.map_err(|e| external(query_error(e)))?;
        return Ok(None);
    }
    let batch = scan.decoder.decode(&rows).map_err(external)?;
    Ok(Some((batch, Some(scan))))
}

fn external(error: SourceError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// The `SELECT` a scan of `request` declares its cursor for. Redshift needs
/// a select list, so a scan of no columns (a count) selects a constant that
/// the decoder ignores.
fn query(description: &TableDescription, request: &ScanRequest) -> String {
    select(description, request, expression)
}

/// The `SELECT` an UNLOAD of `request` writes: the cursor's, with the
/// columns Parquet has no type for selected as text.
fn unload_query(description: &TableDescription, request: &ScanRequest) -> String {
    select(description, request, |column| {
        unload_expression(
            &RsColumnType::named(column.source_type.split('(').next().unwrap_or_default()),
            &column.mapping.arrow,
            expression(column),
            &DIALECT.quote_ident(&column.name),
        )
    })
}

/// The `SELECT` of `request` with each requested column as `column_sql`
/// writes it (`1` when no column is needed).
fn select(description: &TableDescription, request: &ScanRequest, column_sql: impl Fn(&ColumnInfo) -> String) -> String {
    let list: Vec<String> = (request.columns.iter())
        .filter_map(|&i| description.columns.get(i))
        .map(column_sql)
        .collect();
    let list = if list.is_empty() {
        "1".to_owned()
    } else {
        list.join(", ")
    };
    scan_sql(&list, &from(&description.table), request)
}

/// The quoted reference to `table`.
fn from(table: &TableRef) -> String {
    format!(
        "{}.{}",
        DIALECT.quote_ident(&table.schema),
        DIALECT.quote_ident(&table.name)
    )
}

/// How one column is selected: spatial values as WKB, everything else as it
/// is (its text form is what the decoder reads).
fn expression(column: &ColumnInfo) -> String {
    let quoted = DIALECT.quote_ident(&column.name);
    match RsColumnType::named(&column.source_type).canonical() {
        "geometry" | "geography" => format!("ST_AsBinary({quoted})"),
        _ => quoted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::redshift::types::map;
    use crate::contract::TableKind;

    fn column(name: &str, data_type: &str) -> ColumnInfo {
        let ty = RsColumnType::named(data_type);
        ColumnInfo {
            name: name.into(),
            ordinal: 1,
            source_type: ty.formatted(),
            nullable: true,
            default: None,
            primary_key_position: None,
            indexed: false,
            mapping: map(&ty),
        }
    }

    #[test]
    fn the_query_quotes_names_reads_spatial_values_as_wkb_and_never_selects_nothing() {
        let description = TableDescription {
            table: TableRef {
                schema: "sales".into(),
                name: "order \"items\"".into(),
            },
            kind: TableKind::Table,
            columns: vec![
                column("id", "integer"),
                column("where", "geography"),
                column("shape", "GEOMETRY"),
            ],
            estimated_rows: None,
        };
        let request = ScanRequest {
            columns: vec![1, 2, 0],
            filter: Some("(\"id\" > 5)".into()),
            limit: Some(3),
            offset: 0,
            segment: None,
            batch_rows: None,
        };
        assert_eq!(
            query(&description, &request),
            "SELECT ST_AsBinary(\"where\"), ST_AsBinary(\"shape\"), \"id\" FROM \"sales\".\"order \"\"items\"\"\" WHERE (\"id\" > 5) LIMIT 3"
        );
        assert_eq!(
            query(&description, &ScanRequest::default()),
            "SELECT 1 FROM \"sales\".\"order \"\"items\"\"\""
        );
    }
}
