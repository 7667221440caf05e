//! Reading loaded keys back for `LOOKBACK ... DEDUPE ON`: one parameterised
//! query, `SELECT keys FROM dataset.table WHERE cursor > @after`, read page
//! by page into batches of the table's own types. The query runs when the
//! stream is first polled (a stream that is only opened, as `CREATE ETL JOB`
//! does to check support, costs nothing), and not at all for an empty table.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::scalar::ScalarValue;
use futures::TryStreamExt;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use tracing::info;

use super::api::{Api, ApiError};
use super::source::{DIALECT, query_stream};
use super::types::mapping;
use crate::contract::{DestinationError, Dialect};

/// The `key_columns` of `table`'s rows whose `cursor` is past `after`.
pub(super) async fn loaded_keys(
    api: Arc<Api>,
    table: &str,
    key_columns: &[String],
    cursor: &str,
    after: Option<&ScalarValue>,
) -> Result<SendableRecordBatchStream, DestinationError> {
    let remote = |e: ApiError| e.into_destination(None);
    let found = api
        .get_table(table)
        .await
        .map_err(remote)?
        .ok_or_else(|| DestinationError::TableNotFound(table.into()))?;
    let empty = found.num_rows.as_deref() == Some("0") && found.streaming_buffer.is_none();
    let fields = found.schema.fields.unwrap_or_default();
    let columns = key_columns
        .iter()
        .map(|name| {
            fields
                .iter()
                .find(|f| &f.name == name)
                .map(|f| Field::new(name, mapping(f).arrow, true))
                .ok_or_else(|| DestinationError::SchemaMismatch {
                    table: table.into(),
                    differences: vec![format!("the DEDUPE ON column \"{name}\" is not in the table")],
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let list: Vec<String> = key_columns.iter().map(|c| DIALECT.quote_ident(c)).collect();
    let mut sql = format!(
        "SELECT {} FROM {}.{}",
        list.join(", "),
        DIALECT.quote_ident(&api.settings.dataset),
        DIALECT.quote_ident(table)
    );
    let mut parameters = Vec::new();
    if let Some(after) = after {
        sql.push_str(&format!(" WHERE {} > @after", DIALECT.quote_ident(cursor)));
        parameters.push(parameter("after", after).ok_or_else(|| DestinationError::Unsupported {
            table: table.into(),
            feature: "LOOKBACK on a cursor of this type",
        })?);
    }
    let schema = Arc::new(Schema::new(columns));
    if empty {
        return Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::empty(),
        )));
    }
    let query = {
        let schema = schema.clone();
        let table = table.to_owned();
        async move {
            info!(table, query = %sql, "reading loaded keys back from BigQuery");
            query_stream(api, &sql, parameters, schema, None)
                .await
                .map_err(|e| DataFusionError::External(Box::new(remote(e))))
        }
    };
    let keys = futures::stream::once(query).try_flatten();
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, keys)))
}

/// A cursor value as a named query parameter; `None` for a NULL or a type
/// no cursor has.
fn parameter(name: &str, value: &ScalarValue) -> Option<QueryParameter> {
    let micros = |v: i64, format: &str| {
        chrono::DateTime::from_timestamp_micros(v).map(|t| t.naive_utc().format(format).to_string())
    };
    let (ty, text) = match value {
        ScalarValue::Int16(Some(v)) => ("INT64", v.to_string()),
        ScalarValue::Int32(Some(v)) => ("INT64", v.to_string()),
        ScalarValue::Int64(Some(v)) => ("INT64", v.to_string()),
        ScalarValue::Date32(Some(_)) => ("DATE", value.to_string()),
        ScalarValue::TimestampMicrosecond(Some(v), Some(_)) => {
            ("TIMESTAMP", micros(*v, "%Y-%m-%d %H:%M:%S%.6f+00:00")?)
        }
        ScalarValue::TimestampMicrosecond(Some(v), None) => ("DATETIME", micros(*v, "%Y-%m-%d %H:%M:%S%.6f")?),
        _ => return None,
    };
    Some(QueryParameter {
        name: Some(name.into()),
        parameter_type: Some(QueryParameterType {
            r#type: ty.into(),
            ..Default::default()
        }),
        parameter_value: Some(QueryParameterValue {
            value: Some(text),
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(value: ScalarValue) -> Option<(String, String)> {
        let p = parameter("after", &value)?;
        Some((p.parameter_type?.r#type, p.parameter_value?.value?))
    }

    #[test]
    fn cursor_values_become_typed_parameters() {
        let pair = |t: &str, v: &str| Some((t.to_owned(), v.to_owned()));
        assert_eq!(shown(ScalarValue::Int64(Some(-5))), pair("INT64", "-5"));
        assert_eq!(shown(ScalarValue::Int32(Some(7))), pair("INT64", "7"));
        assert_eq!(shown(ScalarValue::Date32(Some(19_783))), pair("DATE", "2024-03-01"));
        assert_eq!(
            shown(ScalarValue::TimestampMicrosecond(
                Some(1_709_251_260_123_456),
                Some("UTC".into())
            )),
            pair("TIMESTAMP", "2024-03-01 00:01:00.123456+00:00")
        );
        assert_eq!(
            shown(ScalarValue::TimestampMicrosecond(Some(1_709_251_260_000_000), None)),
            pair("DATETIME", "2024-03-01 00:01:00.000000")
        );
        assert_eq!(shown(ScalarValue::Int64(None)), None);
        assert_eq!(shown(ScalarValue::Utf8(Some("x".into()))), None);
    }
}
