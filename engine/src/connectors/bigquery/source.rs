//! A BigQuery connection read as a [`Source`]: every dataset of the project
//! is a schema, `DESCRIBE` shows a table's columns, and `SELECT` and job
//! runs read through `jobs.query` and `jobs.getQueryResults`, page by page
//! (billed by BigQuery as any query).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::Datelike;
use datafusion::arrow::array::{ArrayRef, BinaryArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::table_list_tables::TableListTables;
use gcp_bigquery_client::model::table_row::TableRow;
use serde_json::Value;

use super::Session;
use super::api::{Api, ApiError};
use super::read_api::{self, ReadApiMode, ReadError, ReadPlan};
use super::types::{mapping, source_type};
use crate::contract::{
    ColumnInfo, Dialect, QueryBuilder, ResolvedOptions, ScanRequest, Source, SourceError, SqlFamily, TableDescription,
    TableInfo, TableKind, TableRef, TextRows, integer_literal, scan_sql,
};
use crate::type_mapping::BigQueryType;

/// Staging tables of running loads are not shown.
const STAGING_PREFIX: &str = "_sluice_staging_";

/// Rows per page of a scan when the request names no batch size: each
/// page becomes one Arrow batch, so this bounds a scan's memory.
const PAGE_ROWS: usize = 10_000;

pub(super) fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(BigQuerySource {
        session: Session::new(options, timeout),
    })
}

struct BigQuerySource {
    session: Session,
}

pub(super) struct BigQueryDialect;

pub(super) static DIALECT: BigQueryDialect = BigQueryDialect;

impl Dialect for BigQueryDialect {
    fn family(&self) -> SqlFamily {
        SqlFamily::BigQuery
    }

    fn quote_ident(&self, ident: &str) -> String {
        format!("`{}`", ident.replace('\\', "\\\\").replace('`', "\\`"))
    }

    /// Integers, booleans, strings, and `TIMESTAMP`, `DATETIME` and `DATE`
    /// literals for times in years 1 to 9999 at microsecond precision
    /// (BigQuery's range and precision); anything else stays in DataFusion.
    fn literal(&self, value: &ScalarValue) -> Option<String> {
        use ScalarValue as S;
        match value {
            S::Boolean(Some(b)) => Some(if *b { "TRUE" } else { "FALSE" }.to_owned()),
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => Some(string_literal(s)),
            S::Date32(Some(days)) => time_literal(i64::from(*days).checked_mul(86_400_000_000)?, "DATE '%Y-%m-%d'"),
            S::TimestampSecond(Some(v), tz) => timestamp_literal(v.checked_mul(1_000_000)?, tz.is_some()),
            S::TimestampMillisecond(Some(v), tz) => timestamp_literal(v.checked_mul(1_000)?, tz.is_some()),
            S::TimestampMicrosecond(Some(v), tz) => timestamp_literal(*v, tz.is_some()),
            S::TimestampNanosecond(Some(v), tz) if v % 1_000 == 0 => timestamp_literal(v / 1_000, tz.is_some()),
            other => integer_literal(other),
        }
    }
}

/// A `TIMESTAMP` literal in UTC for a value with a time zone, else a
/// `DATETIME` literal (BigQuery's civil time).
fn timestamp_literal(micros: i64, with_time_zone: bool) -> Option<String> {
    if with_time_zone {
        time_literal(micros, "TIMESTAMP '%Y-%m-%d %H:%M:%S%.6f+00:00'")
    } else {
        time_literal(micros, "DATETIME '%Y-%m-%d %H:%M:%S%.6f'")
    }
}

/// Microseconds since 1970 in `format`, for years 1 to 9999.
fn time_literal(micros: i64, format: &str) -> Option<String> {
    let time = chrono::DateTime::from_timestamp_micros(micros)?.naive_utc();
    (1..=9999)
        .contains(&time.year())
        .then(|| time.format(format).to_string())
}

/// A quoted string with BigQuery's escapes: backslash, quote and control
/// characters escaped, so any text reads back as itself.
fn string_literal(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '\'' => quoted.push_str("\\'"),
            c if c.is_control() => quoted.push_str(&format!("\\U{:08x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

fn query_error(error: ApiError) -> SourceError {
    if error.is_not_found() {
        return SourceError::NotFound {
            kind: "table",
            name: error.message,
            nearby: Vec::new(),
        };
    }
    SourceError::Query {
        code: None,
        message: error.to_string(),
    }
}

impl BigQuerySource {
    async fn api(&self) -> Result<Arc<Api>, SourceError> {
        Ok(self.session.api().await?)
    }

    /// The tables of `dataset`; a dataset that does not exist is a
    /// [`SourceError::NotFound`] naming the ones that do.
    async fn tables_of(api: &Api, dataset: &str) -> Result<Vec<TableListTables>, SourceError> {
        match api.list_tables_in(dataset).await {
            Ok(tables) => Ok(tables),
            Err(e) if e.is_not_found() => Err(SourceError::NotFound {
                kind: "schema",
                name: dataset.into(),
                nearby: crate::contract::closest(dataset, api.list_datasets().await.unwrap_or_default()),
            }),
            Err(e) => Err(query_error(e)),
        }
    }
}

fn table_info(dataset: &str, table: TableListTables) -> TableInfo {
    TableInfo {
        kind: match table.r#type.as_deref() {
            Some("VIEW") => TableKind::View,
            Some("MATERIALIZED_VIEW") => TableKind::MaterializedView,
            Some("EXTERNAL") => TableKind::Foreign,
            _ if table.time_partitioning.is_some() || table.range_partitioning.is_some() => TableKind::Partitioned,
            _ => TableKind::Table,
        },
        table: TableRef {
            schema: dataset.to_owned(),
            name: table.table_reference.table_id,
        },
        estimated_rows: None,
        size_bytes: None,
        files: None,
        last_modified: None,
    }
}

/// How many `tables.get` calls `SHOW TABLES` makes at once.
const STATISTICS_CALLS: usize = 8;

/// `info` with the table's row count, size and last change from its
/// resource; without them when BigQuery does not answer (the table was
/// dropped meanwhile, or the caller may list but not get it).
async fn with_statistics(api: &Api, mut info: TableInfo) -> TableInfo {
    match api.get_table_in(&info.table.schema, &info.table.name).await {
        Ok(Some(table)) => {
            info.estimated_rows = table.num_rows.and_then(|n| n.parse().ok());
            info.size_bytes = table.num_bytes.and_then(|n| n.parse().ok());
            info.last_modified = table
                .last_modified_time
                .and_then(|ms| ms.parse().ok())
                .and_then(chrono::DateTime::from_timestamp_millis);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(table = %info.table, error = %e, "no statistics for a BigQuery table"),
    }
    info
}

#[async_trait]
impl Source for BigQuerySource {
    fn dialect(&self) -> &'static dyn Dialect {
        &DIALECT
    }

    /// Every dataset of the project.
    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        let mut datasets = self.api().await?.list_datasets().await.map_err(query_error)?;
        datasets.sort();
        Ok(datasets)
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        let api = self.api().await?;
        let datasets = match schema {
            Some(schema) => vec![schema.to_owned()],
            None => self.schemas().await?,
        };
        let mut found = Vec::new();
        for dataset in datasets {
            let tables = Self::tables_of(&api, &dataset).await?;
            found.extend(
                tables
                    .into_iter()
                    .filter(|t| !t.table_reference.table_id.starts_with(STAGING_PREFIX))
                    .map(|t| table_info(&dataset, t)),
            );
        }
        // Rows, bytes and last change come with each table's resource
        // (`tables.get`, free metadata calls), a few at a time.
        let found = futures::stream::iter(found)
            .map(|info| with_statistics(&api, info))
            .buffered(STATISTICS_CALLS)
            .collect()
            .await;
        Ok(found)
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        let api = self.api().await?;
        let found = api
            .get_table_in(&table.schema, &table.name)
            .await
            .map_err(query_error)?;
        let Some(found) = found else {
            let names = Self::tables_of(&api, &table.schema)
                .await?
                .into_iter()
                .map(|t| t.table_reference.table_id)
                .filter(|t| !t.starts_with(STAGING_PREFIX));
            return Err(SourceError::NotFound {
                kind: "table",
                name: table.to_string(),
                nearby: crate::contract::closest(&table.name, names.collect()),
            });
        };
        let columns = found
            .schema
            .fields
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, field)| ColumnInfo {
                name: field.name.clone(),
                ordinal: i as u32 + 1,
                source_type: source_type(field),
                nullable: field.mode.as_deref() != Some("REQUIRED"),
                default: None,
                primary_key_position: None,
                indexed: false,
                mapping: mapping(field),
            })
            .collect();
        Ok(TableDescription {
            table: table.clone(),
            kind: if found.time_partitioning.is_some() {
                TableKind::Partitioned
            } else {
                TableKind::Table
            },
            columns,
            estimated_rows: found.num_rows.and_then(|n| n.parse().ok()),
        })
    }

    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let api = self.api().await?;
        let schema: SchemaRef =
            Arc::new(
                description
                    .arrow_schema()
                    .project(&request.columns)
                    .map_err(|e| SourceError::Query {
                        code: None,
                        message: e.to_string(),
                    })?,
            );
        if let Some(stream) = storage_scan(&api, description, request, &schema).await? {
            return Ok(stream);
        }
        let query = self.scan_query(description, request);
        let page_rows = Some(request.batch_rows.unwrap_or(PAGE_ROWS));
        query_stream(api, &query, Vec::new(), schema, page_rows)
            .await
            .map_err(query_error)
    }

    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        let api = self.api().await?;
        let from = format!(
            "{}.{}",
            DIALECT.quote_ident(&description.table.schema),
            DIALECT.quote_ident(&description.table.name)
        );
        api.query_text(&sql(&from)).await.map_err(query_error)
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        let columns: Vec<String> = request
            .columns
            .iter()
            .filter_map(|&i| description.columns.get(i))
            .map(|c| select_expression(c, &DIALECT.quote_ident(&c.name)))
            .collect();
        let list = if columns.is_empty() {
            "1 AS _".to_owned()
        } else {
            columns.join(", ")
        };
        let from = format!(
            "{}.{}",
            DIALECT.quote_ident(&description.table.schema),
            DIALECT.quote_ident(&description.table.name)
        );
        scan_sql(&list, &from, request)
    }
}

/// The scan's rows through the Storage Read API, or `None` when the
/// connection's `read_api` setting, the request or the service says to use
/// `jobs.query` instead (see [`read_api`]).
async fn storage_scan(
    api: &Api,
    description: &TableDescription,
    request: &ScanRequest,
    schema: &SchemaRef,
) -> Result<Option<SendableRecordBatchStream>, SourceError> {
    let settings = &api.settings.read_api;
    let table = &description.table;
    let refuse = |reason: String| -> Result<Option<SendableRecordBatchStream>, SourceError> {
        match settings.mode {
            ReadApiMode::On => Err(SourceError::Query {
                code: Some("0A000".into()),
                message: format!("read_api = 'on' cannot read {table} through the Storage Read API: {reason}"),
            }),
            _ => {
                tracing::info!(%table, %reason, "reading through jobs.query instead of the Storage Read API");
                Ok(None)
            }
        }
    };
    if settings.mode == ReadApiMode::Off {
        return Ok(None);
    }
    if let Some(reason) = storage_unsuitable(description, request) {
        return refuse(reason);
    }
    let plan = ReadPlan {
        project: &api.settings.project,
        table: format!(
            "projects/{}/datasets/{}/tables/{}",
            api.settings.project, table.schema, table.name
        ),
        columns: request
            .columns
            .iter()
            .map(|&i| description.columns[i].name.clone())
            .collect(),
        row_restriction: request.filter.clone(),
        schema: schema.clone(),
    };
    match read_api::read(settings, &api.tokens, api.settings.timeout, plan).await {
        Ok(stream) => Ok(Some(stream)),
        Err(ReadError::Unusable(reason)) => refuse(reason),
        Err(ReadError::Failed(error)) => Err(error),
    }
}

/// Why a scan must go through `jobs.query`: a limit (a query stops
/// early, a read session reads everything), no columns, a view, or a
/// column that is read as text (arrays, records, JSON, INTERVAL).
fn storage_unsuitable(description: &TableDescription, request: &ScanRequest) -> Option<String> {
    if request.limit.is_some() {
        return Some("the scan has a LIMIT".into());
    }
    if request.columns.is_empty() {
        return Some("the scan selects no columns".into());
    }
    if !matches!(description.kind, TableKind::Table | TableKind::Partitioned) {
        return Some("it is not a table".into());
    }
    request
        .columns
        .iter()
        .filter_map(|&i| description.columns.get(i))
        .find(|c| {
            c.source_type.starts_with("ARRAY<")
                || c.source_type.starts_with("RECORD")
                || c.source_type.starts_with("STRUCT")
                || matches!(c.mapping.bigquery, BigQueryType::Json)
                || c.source_type == "INTERVAL"
        })
        .map(|c| format!("column {} ({}) is read as text", c.name, c.source_type))
}

/// Runs a query with named `parameters` and streams its rows as batches of
/// `schema` (one field per select-list item): one batch per page of at
/// most `page_rows` rows (BigQuery's own page size, at most about 10 MB,
/// when `None`), the next page asked for (`pageToken`) only when the
/// stream is polled again, so a scan holds one page at a time.
pub(super) async fn query_stream(
    api: Arc<Api>,
    sql: &str,
    parameters: Vec<QueryParameter>,
    schema: SchemaRef,
    page_rows: Option<usize>,
) -> Result<SendableRecordBatchStream, ApiError> {
    let page_rows = page_rows.map(|rows| i32::try_from(rows.max(1)).unwrap_or(i32::MAX));
    let first = api.query(sql, parameters, page_rows).await?;
    let job_id = first
        .job_reference
        .and_then(|r| r.job_id)
        .ok_or_else(|| ApiError::new("badResponse", "BigQuery answered a query without a job id"))?;
    let state = Page {
        api,
        schema: schema.clone(),
        job_id,
        page_rows,
        next: Some(if first.job_complete == Some(true) {
            Fetched::Rows(first.rows.unwrap_or_default(), first.page_token)
        } else {
            Fetched::Pending(None)
        }),
    };
    let stream = futures::stream::try_unfold(state, next_page);
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
}

/// What the next step of a scan reads.
enum Fetched {
    /// Rows in hand, and the token of the page after them.
    Rows(Vec<TableRow>, Option<String>),
    /// Ask for the page with this token (the first while the query runs).
    Pending(Option<String>),
}

struct Page {
    api: Arc<Api>,
    schema: SchemaRef,
    job_id: String,
    page_rows: Option<i32>,
    next: Option<Fetched>,
}

async fn next_page(mut page: Page) -> Result<Option<(RecordBatch, Page)>, DataFusionError> {
    let external = |e: ApiError| DataFusionError::External(Box::new(query_error(e)));
    loop {
        match page.next.take() {
            None => return Ok(None),
            Some(Fetched::Pending(token)) => {
                let results = page
                    .api
                    .query_results(&page.job_id, token.clone(), page.page_rows)
                    .await
                    .map_err(external)?;
                page.next = Some(if results.job_complete == Some(true) {
                    Fetched::Rows(results.rows.unwrap_or_default(), results.page_token)
                } else {
                    Fetched::Pending(token)
                });
            }
            Some(Fetched::Rows(rows, token)) => {
                page.next = token.filter(|t| !t.is_empty()).map(|t| Fetched::Pending(Some(t)));
                if rows.is_empty() && page.next.is_some() {
                    continue;
                }
                let batch = to_batch(&page.schema, &rows).map_err(|e| DataFusionError::External(Box::new(e)))?;
                return Ok(Some((batch, page)));
            }
        }
    }
}

/// The select-list expression of a column: arrays and records as JSON text,
/// JSON as its text.
fn select_expression(column: &ColumnInfo, quoted: &str) -> String {
    match column.mapping.bigquery {
        _ if column.source_type.starts_with("ARRAY<") || column.source_type.starts_with("RECORD") => {
            format!("TO_JSON_STRING({quoted}) AS {quoted}")
        }
        BigQueryType::Json => format!("TO_JSON_STRING({quoted}) AS {quoted}"),
        _ => quoted.to_owned(),
    }
}

/// Query rows (`{"f": [{"v": ...}]}`) as a batch of `schema`.
fn to_batch(schema: &SchemaRef, rows: &[TableRow]) -> Result<RecordBatch, SourceError> {
    let bad = |message: String| SourceError::Query { code: None, message };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let texts: Vec<Option<String>> = rows
            .iter()
            .map(|row| {
                let value = row
                    .columns
                    .as_ref()
                    .and_then(|c| c.get(i))
                    .and_then(|c| c.value.as_ref());
                match value {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                }
            })
            .collect();
        let array: ArrayRef = match field.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => {
                let micros = texts
                    .iter()
                    .map(|t| match t.as_deref() {
                        None => Ok(None),
                        Some(t) => timestamp_micros(t)
                            .map(Some)
                            .ok_or_else(|| bad(format!("column \"{}\": '{t}' is not a timestamp", field.name()))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Arc::new(TimestampMicrosecondArray::from(micros).with_timezone(tz.clone()))
            }
            DataType::Binary => {
                let bytes = texts
                    .iter()
                    .map(|t| {
                        t.as_deref()
                            .map(|t| base64::engine::general_purpose::STANDARD.decode(t))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(format!("column \"{}\": {e}", field.name())))?;
                Arc::new(BinaryArray::from(
                    bytes.iter().map(|b| b.as_deref()).collect::<Vec<_>>(),
                ))
            }
            DataType::Utf8 => Arc::new(StringArray::from(texts)),
            other => {
                cast(&StringArray::from(texts), other).map_err(|e| bad(format!("column \"{}\": {e}", field.name())))?
            }
        };
        columns.push(array);
    }
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| bad(e.to_string()))
}

/// Microseconds from BigQuery's TIMESTAMP text: integer microseconds (with
/// `useInt64Timestamp`) or seconds in E notation (`1.709251260123456E9`),
/// converted exactly.
fn timestamp_micros(text: &str) -> Option<i64> {
    if let Ok(micros) = text.parse::<i64>() {
        return Some(micros);
    }
    let (mantissa, exponent) = match text.split_once(['E', 'e']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let negative = mantissa.starts_with('-');
    let mantissa = mantissa.trim_start_matches(['-', '+']);
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    let shift = exponent - fraction.len() as i32 + 6;
    let micros = if shift >= 0 {
        digits.checked_mul(10i128.checked_pow(shift as u32)?)?
    } else {
        digits / 10i128.checked_pow(shift.unsigned_abs())?
    };
    i64::try_from(if negative { -micros } else { micros }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_timestamp_formats_exactly() {
        assert_eq!(timestamp_micros("1709251260123456"), Some(1_709_251_260_123_456));
        assert_eq!(timestamp_micros("1.709251260123456E9"), Some(1_709_251_260_123_456));
        assert_eq!(timestamp_micros("1.70925126E9"), Some(1_709_251_260_000_000));
        assert_eq!(timestamp_micros("-1.5E0"), Some(-1_500_000));
        assert_eq!(timestamp_micros("soon"), None);
    }

    #[test]
    fn quotes_names_with_backticks() {
        assert_eq!(DIALECT.quote_ident("a`b"), "`a\\`b`");
        assert_eq!(DIALECT.quote_ident("plain"), "`plain`");
    }

    fn lit(value: ScalarValue) -> Option<String> {
        DIALECT.literal(&value)
    }

    #[test]
    fn integers_booleans_and_strings_are_exact() {
        assert_eq!(lit(ScalarValue::Int64(Some(-5))).as_deref(), Some("-5"));
        assert_eq!(lit(ScalarValue::Boolean(Some(false))).as_deref(), Some("FALSE"));
        assert_eq!(
            lit(ScalarValue::Utf8(Some("it's a \\ \n 🚀".into()))).as_deref(),
            Some("'it\\'s a \\\\ \\U0000000a 🚀'")
        );
        assert_eq!(lit(ScalarValue::Int64(None)), None);
        assert_eq!(lit(ScalarValue::Float64(Some(1.5))), None, "floats stay in DataFusion");
    }

    #[test]
    fn times_are_typed_literals_in_bigquerys_range() {
        let micros = 1_704_164_645_123_456; // 2024-01-02 03:04:05.123456 UTC
        assert_eq!(
            lit(ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into()))).as_deref(),
            Some("TIMESTAMP '2024-01-02 03:04:05.123456+00:00'")
        );
        assert_eq!(
            lit(ScalarValue::TimestampMicrosecond(Some(micros), Some("+02:00".into()))).as_deref(),
            Some("TIMESTAMP '2024-01-02 03:04:05.123456+00:00'"),
            "the instant, written in UTC"
        );
        assert_eq!(
            lit(ScalarValue::TimestampMicrosecond(Some(micros), None)).as_deref(),
            Some("DATETIME '2024-01-02 03:04:05.123456'")
        );
        assert_eq!(
            lit(ScalarValue::TimestampNanosecond(Some(micros * 1000), None)).as_deref(),
            Some("DATETIME '2024-01-02 03:04:05.123456'")
        );
        assert_eq!(
            lit(ScalarValue::TimestampNanosecond(Some(1), None)),
            None,
            "no nanoseconds"
        );
        assert_eq!(
            lit(ScalarValue::TimestampSecond(Some(-1), Some("UTC".into()))).as_deref(),
            Some("TIMESTAMP '1969-12-31 23:59:59.000000+00:00'")
        );
        assert_eq!(
            lit(ScalarValue::Date32(Some(19_783))).as_deref(),
            Some("DATE '2024-03-01'")
        );
        assert_eq!(
            lit(ScalarValue::Date32(Some(-719_162))).as_deref(),
            Some("DATE '0001-01-01'")
        );
        assert_eq!(lit(ScalarValue::Date32(Some(-719_163))), None, "year 0 is out of range");
        assert_eq!(lit(ScalarValue::TimestampSecond(Some(i64::MAX), None)), None);
    }
}
