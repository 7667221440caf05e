//! Rows of a text-format result (a cursor's `FETCH`) decoded into one Arrow
//! batch: each column's texts are gathered into a string array and parsed by
//! Arrow's cast kernels (refusing, never nulling, what does not parse), or
//! hex-decoded for binary columns.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryBuilder, StringBuilder};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use tokio_postgres::SimpleQueryRow;

use crate::contract::{SourceError, excerpt};

/// How the texts of one column become its Arrow values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Kept as text.
    Text,
    /// Hex digits (Redshift's text form of `varbyte`; `\x`-prefixed in
    /// PostgreSQL's) decoded to bytes.
    Hex,
    /// Parsed into the field's type.
    Parse,
}

/// Decodes the rows of one scan's schema.
pub(super) struct TextDecoder {
    schema: SchemaRef,
    reads: Vec<Read>,
}

impl TextDecoder {
    pub(super) fn new(schema: SchemaRef) -> Self {
        let reads = schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Utf8 => Read::Text,
                DataType::Binary => Read::Hex,
                _ => Read::Parse,
            })
            .collect();
        Self { schema, reads }
    }

    /// One batch of `rows`, whose columns are the schema's in order.
    pub(super) fn decode(&self, rows: &[SimpleQueryRow]) -> Result<RecordBatch, SourceError> {
        let columns = self
            .reads
            .iter()
            .enumerate()
            .map(|(i, read)| self.column(rows, i, *read))
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options).map_err(|e| SourceError::Query {
            code: Some("22000".into()),
            message: e.to_string(),
        })
    }

    fn column(&self, rows: &[SimpleQueryRow], i: usize, read: Read) -> Result<ArrayRef, SourceError> {
        let field = self.schema.field(i);
        let bad = |message: String| SourceError::Query {
            code: Some("22P02".into()),
            message: format!("column \"{}\": {message}", field.name()),
        };
        if read == Read::Hex {
            let mut builder = BinaryBuilder::with_capacity(rows.len(), 0);
            for row in rows {
                match row.get(i) {
                    None => builder.append_null(),
                    Some(text) => {
                        let digits = text.strip_prefix("\\x").unwrap_or(text);
                        let bytes =
                            hex::decode(digits).map_err(|e| bad(format!("\"{}\" is not hex ({e})", excerpt(text))))?;
                        builder.append_value(bytes);
                    }
                }
            }
            return Ok(Arc::new(builder.finish()));
        }
        let mut builder = StringBuilder::with_capacity(rows.len(), 0);
        for row in rows {
            builder.append_option(row.get(i));
        }
        let texts: ArrayRef = Arc::new(builder.finish());
        if read == Read::Text {
            return Ok(texts);
        }
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        cast_with_options(&texts, field.data_type(), &options).map_err(|e| bad(e.to_string()))
    }
}
