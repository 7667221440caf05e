//! The connection options that shape the mapping of every document store,
//! and how a column's `source_type` says what its values become.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

use crate::contract::{
    OptionKind::{Bool, Enum, Integer},
    OptionSpec as O, ResolvedOptions,
};
use crate::type_mapping::{BigQueryType, Confidence, TypeMapping};

/// Documents DESCRIBE reads to propose columns.
pub(crate) const SAMPLE: O = O::with_default(
    "sample",
    Integer { min: 1, max: 100_000 },
    "1000",
    "documents read to infer a table's columns (DESCRIBE and every run)",
);

/// Whether tables get a `_document JSON` column.
pub(crate) const KEEP_DOCUMENT: O = O::with_default(
    "keep_document",
    Bool,
    "false",
    "add a _document JSON column holding each whole document",
);

/// What a run does with a value that does not fit its column.
pub(crate) const ON_TYPE_MISMATCH: O = O::with_default(
    "on_type_mismatch",
    Enum(&["fail", "null", "json"]),
    "fail",
    "a value that does not fit its column's type: fail the run (naming document and field), load NULL, or load \
     NULL and keep the value in _document",
);

/// The name of the column holding the whole document.
pub(crate) const DOCUMENT_COLUMN: &str = "_document";

/// What a run does with a value that does not fit its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnMismatch {
    Fail,
    Null,
    Json,
}

/// The mapping options of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) sample: usize,
    pub(crate) keep_document: bool,
    pub(crate) on_mismatch: OnMismatch,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            sample: 1000,
            keep_document: false,
            on_mismatch: OnMismatch::Fail,
        }
    }
}

impl Mapping {
    /// The options of a connection (defaults for those not given).
    pub(crate) fn from_options(options: &ResolvedOptions) -> Self {
        let default = Mapping::default();
        Self {
            sample: options
                .integer(SAMPLE.name)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(default.sample),
            keep_document: options.boolean(KEEP_DOCUMENT.name).unwrap_or(default.keep_document),
            on_mismatch: match options.text(ON_TYPE_MISMATCH.name) {
                Some("null") => OnMismatch::Null,
                Some("json") => OnMismatch::Json,
                _ => OnMismatch::Fail,
            },
        }
    }

    /// Whether tables have the `_document` column: asked for, or needed
    /// to keep the values `on_type_mismatch = 'json'` takes out of columns.
    pub(crate) fn document_column(&self) -> bool {
        self.keep_document || self.on_mismatch == OnMismatch::Json
    }
}

/// What a column's values become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Bool,
    Int,
    Float,
    String,
    Bytes,
    Timestamp,
    /// Any value as JSON text.
    Json,
    /// The whole document as JSON text.
    Document,
}

/// A column's target and whether its values are text to parse (Redis
/// hashes hold only text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ColumnSpec {
    pub(crate) target: Target,
    pub(crate) from_text: bool,
}

/// What `source_type` adds for a column read from text.
const FROM_TEXT: &str = " (from text)";

impl ColumnSpec {
    pub(crate) fn new(target: Target) -> Self {
        Self {
            target,
            from_text: false,
        }
    }

    /// The column's `source_type`, with `detail` after it in parentheses.
    pub(crate) fn source_type(&self, detail: Option<&str>) -> String {
        let base = match self.target {
            Target::Bool => "bool",
            Target::Int => "int64",
            Target::Float => "float64",
            Target::String => "string",
            Target::Bytes => "bytes",
            Target::Timestamp => "timestamp",
            Target::Json => "json",
            Target::Document => "document",
        };
        match (self.from_text, detail) {
            (true, _) => format!("{base}{FROM_TEXT}"),
            (false, Some(detail)) => format!("{base} ({detail})"),
            (false, None) => base.to_owned(),
        }
    }

    /// The spec a `source_type` written by [`ColumnSpec::source_type`] names.
    pub(crate) fn parse(source_type: &str) -> Option<Self> {
        let base = source_type.split(" (").next().unwrap_or_default();
        let target = match base {
            "bool" => Target::Bool,
            "int64" => Target::Int,
            "float64" => Target::Float,
            "string" => Target::String,
            "bytes" => Target::Bytes,
            "timestamp" => Target::Timestamp,
            "json" => Target::Json,
            "document" => Target::Document,
            _ => return None,
        };
        Some(Self {
            target,
            from_text: source_type.ends_with(FROM_TEXT),
        })
    }

    /// The Arrow and BigQuery types of the column, at `confidence`.
    pub(crate) fn mapping(&self, confidence: Confidence) -> TypeMapping {
        let (arrow, bigquery) = match self.target {
            Target::Bool => (DataType::Boolean, BigQueryType::Bool),
            Target::Int => (DataType::Int64, BigQueryType::Int64),
            Target::Float => (DataType::Float64, BigQueryType::Float64),
            Target::String => (DataType::Utf8, BigQueryType::String),
            Target::Bytes => (DataType::Binary, BigQueryType::Bytes),
            Target::Timestamp => (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                BigQueryType::Timestamp,
            ),
            Target::Json | Target::Document => (DataType::Utf8, BigQueryType::Json),
        };
        TypeMapping::new(arrow, bigquery, confidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_types_read_back() {
        for target in [
            Target::Bool,
            Target::Int,
            Target::Float,
            Target::String,
            Target::Bytes,
            Target::Timestamp,
            Target::Json,
            Target::Document,
        ] {
            for from_text in [false, true] {
                let spec = ColumnSpec { target, from_text };
                assert_eq!(
                    ColumnSpec::parse(&spec.source_type(Some("mixed: int64, string"))),
                    Some(spec)
                );
            }
        }
        assert_eq!(ColumnSpec::parse("list"), None);
    }
}
