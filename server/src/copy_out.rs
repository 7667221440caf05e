//! `COPY table TO STDOUT` and `COPY (query) TO STDOUT` in text, CSV and
//! binary format: the query runs as plain SQL (read-only, checked by the SQL
//! guard) and its record batches are encoded row by row into CopyData as
//! they stream, so memory stays flat however many rows go out. `COPY ... TO
//! 'file'` and `COPY ... FROM` are not handled here: the SQL guard refuses
//! them.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use datafusion::arrow::datatypes::Schema;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::{StreamExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use tokio::time::Instant;

use crate::errors::StatementError;
use crate::{pg_rewrite, sql_guard};

/// How the rows are written.
#[derive(Debug, Clone, PartialEq)]
enum CopyFormat {
    Text(CopyTextOptions),
    Csv { options: CopyCsvOptions, header: bool },
    Binary,
}

/// A `COPY ... TO STDOUT` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOut {
    /// The query whose rows are copied.
    query: String,
    format: CopyFormat,
}

fn unsupported(what: String) -> StatementError {
    StatementError::Unsupported(format!("COPY option {what} is not supported by Sluice"))
}

/// The `COPY ... TO STDOUT` in `sql`, or `None` for any other statement.
pub fn parse(sql: &str) -> Option<Result<CopyOut, StatementError>> {
    if !sql.trim_start().get(..4)?.eq_ignore_ascii_case("copy") {
        return None;
    }
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [
        Statement::Copy {
            source,
            to: true,
            target: CopyTarget::Stdout,
            options,
            legacy_options,
            ..
        },
    ] = statements.as_slice()
    else {
        return None;
    };
    Some(copy_out(source, options, legacy_options))
}

fn copy_out(
    source: &CopySource,
    options: &[CopyOption],
    legacy_options: &[CopyLegacyOption],
) -> Result<CopyOut, StatementError> {
    let query = match source {
        CopySource::Table { table_name, columns } if columns.is_empty() => format!("SELECT * FROM {table_name}"),
        CopySource::Table { table_name, columns } => {
            let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            format!("SELECT {} FROM {table_name}", columns.join(", "))
        }
        CopySource::Query(query) => query.to_string(),
    };
    let (mut format, mut delimiter, mut null, mut header, mut quote, mut escape) =
        ("text".to_owned(), None, None, false, None, None);
    for option in options {
        match option {
            CopyOption::Format(name) => format = name.value.to_ascii_lowercase(),
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Quote(c) => quote = Some(*c),
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(unsupported(other.to_string())),
        }
    }
    for option in legacy_options {
        match option {
            CopyLegacyOption::Binary => format = "binary".into(),
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Csv(csv) => {
                format = "csv".into();
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = Some(*c),
                        CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                        other => return Err(unsupported(other.to_string())),
                    }
                }
            }
            other => return Err(unsupported(other.to_string())),
        }
    }
    let format = match format.as_str() {
        "text" if header || quote.is_some() || escape.is_some() => {
            return Err(unsupported(
                "HEADER, QUOTE or ESCAPE in text format (use FORMAT csv)".into(),
            ));
        }
        "text" => {
            let defaults = CopyTextOptions::default();
            CopyFormat::Text(CopyTextOptions {
                delimiter: delimiter.map(|c| c.to_string().into()).unwrap_or(defaults.delimiter),
                null_string: null.map(Into::into).unwrap_or(defaults.null_string),
            })
        }
        "csv" => {
            let defaults = CopyCsvOptions::default();
            let quote = quote.map(|c| c.to_string().into()).unwrap_or(defaults.quote);
            CopyFormat::Csv {
                options: CopyCsvOptions {
                    delimiter: delimiter.map(|c| c.to_string().into()).unwrap_or(defaults.delimiter),
                    escape: escape.map(|c| c.to_string().into()).unwrap_or_else(|| quote.clone()),
                    quote,
                    null_string: null.map(Into::into).unwrap_or(defaults.null_string),
                    force_quote: vec![],
                },
                header,
            }
        }
        "binary" if delimiter.is_some() || null.is_some() || header || quote.is_some() || escape.is_some() => {
            return Err(unsupported(
                "DELIMITER, NULL, HEADER, QUOTE or ESCAPE in binary format".into(),
            ));
        }
        "binary" => CopyFormat::Binary,
        other => return Err(unsupported(format!("FORMAT {other} (use text, csv or binary)"))),
    };
    Ok(CopyOut { query, format })
}

impl CopyOut {
    /// The query whose rows are copied.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Plans the query on `ctx` and streams its rows as COPY data; rows past
    /// `deadline` end the copy with `statement_timeout`'s error.
    pub async fn run(self, ctx: &SessionContext, deadline: Option<Instant>) -> Result<CopyResponse, StatementError> {
        let rewritten = pg_rewrite::rewrite(&self.query);
        let query = rewritten.as_deref().unwrap_or(&self.query);
        for statement in
            Parser::parse_sql(&PostgreSqlDialect {}, query).map_err(|e| StatementError::Internal(e.to_string()))?
        {
            sql_guard::check(&statement)?;
        }
        let frame = ctx.sql(query).await?;
        sql_guard::check_plan(frame.logical_plan())?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let fields = Arc::new(pg_fields(&schema, &self.format)?);
        let batches = frame.execute_stream().await?;
        let (format_code, encoder) = match &self.format {
            CopyFormat::Text(options) => (0, CopyEncoder::new_text(fields.clone(), options.clone())),
            CopyFormat::Csv { options, .. } => (0, CopyEncoder::new_csv(fields.clone(), options.clone())),
            CopyFormat::Binary => (1, CopyEncoder::new_binary(fields.clone())),
        };
        let header = match &self.format {
            CopyFormat::Csv { options, header: true } => Some(csv_header(&schema, options)),
            _ => None,
        };
        let rows = copy_rows(batches, schema.clone(), fields.clone(), encoder, header, deadline);
        Ok(CopyResponse::new(format_code, fields.len(), rows))
    }
}

fn pg_fields(schema: &Schema, format: &CopyFormat) -> Result<Vec<FieldInfo>, StatementError> {
    let wire = match format {
        CopyFormat::Binary => Format::UnifiedBinary,
        _ => Format::UnifiedText,
    };
    arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, &wire, None)
        .map_err(|e| StatementError::Internal(format!("COPY cannot encode the result: {e}")))
}

/// The CSV header line: the column names, quoted where needed.
fn csv_header(schema: &Schema, options: &CopyCsvOptions) -> Bytes {
    let quote = options.quote.as_str();
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let name = f.name();
            if name.contains(options.delimiter.as_str()) || name.contains(quote) || name.contains(['\n', '\r']) {
                format!("{quote}{}{quote}", name.replace(quote, &format!("{quote}{quote}")))
            } else {
                name.clone()
            }
        })
        .collect();
    Bytes::from(format!("{}\n", names.join(options.delimiter.as_str())))
}

/// One CopyData per row, encoded batch by batch as the stream yields them.
fn copy_rows(
    batches: SendableRecordBatchStream,
    schema: Arc<Schema>,
    fields: Arc<Vec<FieldInfo>>,
    encoder: CopyEncoder,
    header: Option<Bytes>,
    deadline: Option<Instant>,
) -> impl futures::Stream<Item = PgWireResult<CopyData>> + Send + 'static {
    let state = (batches, encoder, header);
    stream::unfold(Some(state), move |state| {
        let (schema, fields) = (schema.clone(), fields.clone());
        async move {
            let (mut batches, mut encoder, mut header) = state?;
            let next = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, batches.next()).await {
                    Ok(next) => next,
                    Err(_) => return Some((vec![Err(timed_out())], None)),
                },
                None => batches.next().await,
            };
            let batch = match next? {
                Ok(batch) => batch,
                Err(e) => return Some((vec![Err(error(StatementError::from(e)))], None)),
            };
            let mut rows = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                for (column, (field, pg_field)) in schema.fields().iter().zip(fields.iter()).enumerate() {
                    if let Err(e) = arrow_pg::encoder::encode_value(
                        &mut encoder,
                        batch.column(column),
                        row,
                        field.as_ref(),
                        pg_field,
                    ) {
                        return Some((vec![Err(e)], None));
                    }
                }
                let data = encoder.take_copy();
                let data = match header.take() {
                    Some(header) => {
                        let mut joined = BytesMut::from(header.as_ref());
                        joined.extend_from_slice(&data.data);
                        CopyData::new(joined.freeze())
                    }
                    None => data,
                };
                rows.push(Ok(data));
            }
            Some((rows, Some((batches, encoder, header))))
        }
    })
    .map(stream::iter)
    .flatten()
}

fn error(e: StatementError) -> PgWireError {
    PgWireError::UserError(Box::new(e.into_error_info(0)))
}

fn timed_out() -> PgWireError {
    error(StatementError::StatementTimeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> CopyOut {
        parse(sql).expect("a COPY TO STDOUT").expect("valid options")
    }

    #[test]
    fn table_and_query_forms_with_their_formats() {
        assert_eq!(parsed("copy warehouse.t to stdout").query, "SELECT * FROM warehouse.t");
        assert_eq!(
            parsed("COPY warehouse.t (a, b) TO STDOUT").query,
            "SELECT a, b FROM warehouse.t"
        );
        let csv = parsed("COPY (SELECT 1 AS x) TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';')");
        assert_eq!(csv.query, "SELECT 1 AS x");
        let CopyFormat::Csv { options, header } = csv.format else {
            panic!("not csv");
        };
        assert!(header);
        assert_eq!(options.delimiter.as_str(), ";");
        assert_eq!(parsed("COPY t TO STDOUT (FORMAT binary)").format, CopyFormat::Binary);
        assert_eq!(parsed("COPY t TO STDOUT BINARY").format, CopyFormat::Binary);
        assert!(matches!(
            parsed("COPY t TO STDOUT CSV HEADER").format,
            CopyFormat::Csv { header: true, .. }
        ));
    }

    #[test]
    fn other_statements_and_bad_options() {
        assert!(parse("SELECT 1").is_none());
        assert!(parse("COPY t TO '/tmp/x'").is_none());
        assert!(parse("COPY t FROM STDIN").is_none());
        assert!(matches!(
            parse("COPY t TO STDOUT (FORMAT parquet)"),
            Some(Err(StatementError::Unsupported(_)))
        ));
        assert!(matches!(
            parse("COPY t TO STDOUT (FORMAT binary, HEADER)"),
            Some(Err(StatementError::Unsupported(_)))
        ));
    }
}
