//! Source column types -> in-flight Arrow type -> BigQuery column type.
//!
//! Each source type's connector (`connectors/<type>/types.rs`) maps a catalog
//! description of a column type to a [`TypeMapping`]: the Arrow type values travel as, the
//! BigQuery type they land as, how sure Sluice is about the choice and what can
//! go wrong. [`samples`] suggests (never applies) a better type for text
//! columns from sampled values. docs/type-mapping.md embeds tables rendered
//! from this code and the connectors' `types.rs`; a unit test
//! (`connectors::type_docs`) keeps them in sync.
//!
//! Conventions every mapping follows:
//! - an Arrow `Utf8` carries the source's own text output of the value
//!   (`column::text` in PostgreSQL), unless a warning says otherwise;
//! - geospatial values travel as WKB in Arrow `Binary`;
//! - values the BigQuery type cannot hold are refused, never rounded,
//!   clamped or replaced by NULL.

use std::fmt;

use datafusion::arrow::datatypes::DataType;

pub mod arrow;
pub mod interval;
pub mod samples;
mod widen;

/// How sure Sluice is that a mapping is the right one. Ordered from most to
/// least sure, so `max` of two confidences is the weaker one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Confidence {
    /// The natural BigQuery type; every ordinary value loads unchanged.
    High,
    /// Values load, but their representation changes (text form, a wider
    /// type, a convention) or some values are refused: review the warnings.
    Medium,
    /// No good BigQuery equivalent: a fallback that needs a decision.
    Low,
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Confidence::High => "high",
            Confidence::Medium => "medium",
            Confidence::Low => "low",
        })
    }
}

/// A BigQuery column type (GoogleSQL). `Display` gives its DDL spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BigQueryType {
    Bool,
    Int64,
    Float64,
    /// At most 29 integer digits and 9 decimal places.
    Numeric {
        precision: u8,
        scale: u8,
    },
    /// At most 38 integer digits and 38 decimal places.
    BigNumeric {
        precision: u8,
        scale: u8,
    },
    String,
    Bytes,
    Date,
    /// A civil date and time, without time zone.
    Datetime,
    Time,
    /// An instant (stored in UTC).
    Timestamp,
    Json,
    Interval,
    Geography,
}

impl fmt::Display for BigQueryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            BigQueryType::Numeric { precision, scale } => return write!(f, "NUMERIC({precision}, {scale})"),
            BigQueryType::BigNumeric { precision, scale } => return write!(f, "BIGNUMERIC({precision}, {scale})"),
            BigQueryType::Bool => "BOOL",
            BigQueryType::Int64 => "INT64",
            BigQueryType::Float64 => "FLOAT64",
            BigQueryType::String => "STRING",
            BigQueryType::Bytes => "BYTES",
            BigQueryType::Date => "DATE",
            BigQueryType::Datetime => "DATETIME",
            BigQueryType::Time => "TIME",
            BigQueryType::Timestamp => "TIMESTAMP",
            BigQueryType::Json => "JSON",
            BigQueryType::Interval => "INTERVAL",
            BigQueryType::Geography => "GEOGRAPHY",
        };
        f.write_str(name)
    }
}

/// A BigQuery column mode. `Display` gives the schema spelling (`NULLABLE`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Nullable,
    Required,
    Repeated,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Nullable => "NULLABLE",
            Mode::Required => "REQUIRED",
            Mode::Repeated => "REPEATED",
        })
    }
}

/// Where a source column type lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMapping {
    /// The Arrow type values travel as (a `List` for repeated columns).
    pub arrow: DataType,
    /// The BigQuery type of the column, or of its elements when `repeated`.
    pub bigquery: BigQueryType,
    /// Whether the column is a BigQuery array (mode `REPEATED`).
    pub repeated: bool,
    pub confidence: Confidence,
    /// What may not load, or load differently; empty when nothing is known.
    pub warnings: Vec<String>,
}

impl TypeMapping {
    /// A mapping with no warnings.
    pub(crate) fn new(arrow: DataType, bigquery: BigQueryType, confidence: Confidence) -> Self {
        TypeMapping {
            arrow,
            bigquery,
            repeated: false,
            confidence,
            warnings: Vec::new(),
        }
    }

    /// The same mapping with one more warning.
    pub(crate) fn warn(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// The BigQuery mode for a source column that is (or is not) nullable.
    pub fn mode(&self, nullable: bool) -> Mode {
        match (self.repeated, nullable) {
            (true, _) => Mode::Repeated,
            (false, true) => Mode::Nullable,
            (false, false) => Mode::Required,
        }
    }

    /// The [`TYPE_METADATA`] value of this mapping's in-flight field: set
    /// when the Arrow type alone would load as another BigQuery type.
    pub fn type_tag(&self) -> Option<&'static str> {
        match self.bigquery {
            BigQueryType::Json => Some("JSON"),
            BigQueryType::Geography => Some("GEOGRAPHY"),
            _ => None,
        }
    }

    /// The column type as written in BigQuery DDL, e.g. `ARRAY<INT64>`.
    pub fn bigquery_ddl(&self) -> String {
        if self.repeated {
            format!("ARRAY<{}>", self.bigquery)
        } else {
            self.bigquery.to_string()
        }
    }
}

/// Field metadata key naming the BigQuery type of an in-flight column whose
/// Arrow type alone implies another: JSON text in `Utf8`, GEOGRAPHY WKB in
/// `Binary` (see [`TypeMapping::type_tag`]).
pub const TYPE_METADATA: &str = "sluice.type";

pub use widen::widens;

/// The BigQuery type a destination gives an in-flight column (or list
/// element) of `data_type` with [`TYPE_METADATA`] `tag`: the documented
/// mappings read backwards, so that the tables in docs/type-mapping.md and
/// the BigQuery schema a load creates cannot disagree (a test checks every
/// documented example). An error says why BigQuery cannot load the type.
pub fn load_type(data_type: &DataType, tag: Option<&str>) -> Result<BigQueryType, String> {
    let text = |d: &DataType| matches!(d, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let binary = |d: &DataType| matches!(d, DataType::Binary | DataType::LargeBinary | DataType::BinaryView);
    match tag {
        Some("JSON") if text(data_type) => return Ok(BigQueryType::Json),
        Some("GEOGRAPHY") if text(data_type) || binary(data_type) => return Ok(BigQueryType::Geography),
        _ => {}
    }
    // The mapping of a type it would convert to text or to a decimal is
    // not a type BigQuery loads these values as.
    let decimal = |d: &DataType| {
        matches!(
            d,
            DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..)
        )
    };
    let mapping = arrow::map(data_type);
    if mapping.repeated || text(&mapping.arrow) != text(data_type) || decimal(&mapping.arrow) != decimal(data_type) {
        return Err(format!("{data_type} has no BigQuery column type"));
    }
    Ok(mapping.bigquery)
}

/// The caveat of single-precision floats, which BigQuery only has as FLOAT64.
pub(crate) const FLOAT32_WARNING: &str =
    "single-precision value widened to FLOAT64: exact, but 1.1 shows as 1.100000023841858";

/// NUMERIC holds at most this many decimal places ...
const NUMERIC_MAX_SCALE: u32 = 9;
/// ... and this many integer digits.
const NUMERIC_MAX_INTEGER_DIGITS: u32 = 29;
/// BIGNUMERIC holds at most this many decimal places and integer digits.
const BIGNUMERIC_MAX_DIGITS: u32 = 38;

/// Maps an exact decimal type (`numeric(p, s)`, `decimal(p, s)`); both
/// dialects share it. `precision` is the total number of digits, `scale` the
/// number after the point (absent = 0); no precision (or 0) means
/// unconstrained.
///
/// - at most 29 integer digits and 9 decimal places: `NUMERIC(p, s)`;
/// - at most 38 integer digits and 38 decimal places: `BIGNUMERIC(p, s)`;
/// - larger: `STRING` holding the decimal text;
/// - unconstrained: `BIGNUMERIC(76, 38)`; values beyond it are refused.
///
/// The Arrow type is `Decimal128(p, s)` up to 38 digits, else `Decimal256`.
/// A scale larger than the precision (PostgreSQL 15+) widens the precision.
pub fn numeric_target(precision: Option<u32>, scale: Option<u32>) -> TypeMapping {
    let Some(precision) = precision.filter(|&p| p > 0) else {
        return TypeMapping::new(
            DataType::Decimal256(76, 38),
            BigQueryType::BigNumeric {
                precision: 76,
                scale: 38,
            },
            Confidence::Medium,
        )
        .warn(
            "unconstrained decimal: loaded as BIGNUMERIC(76, 38); values with more than 38 integer digits or \
             more than 38 decimal places are refused, never rounded",
        );
    };
    let scale = scale.unwrap_or(0);
    let integer_digits = precision.saturating_sub(scale);
    let digits = integer_digits + scale;
    if scale > BIGNUMERIC_MAX_DIGITS || integer_digits > BIGNUMERIC_MAX_DIGITS {
        return TypeMapping::new(DataType::Utf8, BigQueryType::String, Confidence::Medium).warn(format!(
            "decimal({precision}, {scale}) does not fit BIGNUMERIC (at most 38 integer digits and 38 decimal \
             places): loaded as its decimal text"
        ));
    }
    // Both fit in u8 now: digits <= 76, scale <= 38.
    let (p, s) = (digits as u8, scale as u8);
    let arrow = if p <= 38 {
        DataType::Decimal128(p, s as i8)
    } else {
        DataType::Decimal256(p, s as i8)
    };
    let bigquery = if scale <= NUMERIC_MAX_SCALE && integer_digits <= NUMERIC_MAX_INTEGER_DIGITS {
        BigQueryType::Numeric { precision: p, scale: s }
    } else {
        BigQueryType::BigNumeric { precision: p, scale: s }
    };
    TypeMapping::new(arrow, bigquery, Confidence::High)
}

/// Representative `(precision, scale)` pairs for the NUMERIC rules table.
const NUMERIC_EXAMPLES: &[(Option<u32>, Option<u32>)] = &[
    (Some(12), Some(2)),
    (Some(38), Some(9)),
    (Some(29), Some(0)),
    (Some(30), Some(0)),
    (Some(38), Some(10)),
    (Some(65), Some(30)),
    (Some(76), Some(38)),
    (Some(2), Some(5)),
    (Some(40), Some(0)),
    (Some(100), Some(50)),
    (None, None),
];

/// The NUMERIC rules as a Markdown table (embedded in docs/type-mapping.md).
pub fn render_numeric_markdown_table() -> String {
    let rows: Vec<(String, TypeMapping)> = NUMERIC_EXAMPLES
        .iter()
        .map(|&(precision, scale)| {
            let label = match (precision, scale) {
                (Some(p), Some(s)) => format!("decimal({p}, {s})"),
                (Some(p), None) => format!("decimal({p})"),
                (None, _) => "unconstrained".to_owned(),
            };
            (label, numeric_target(precision, scale))
        })
        .collect();
    markdown_table("Precision, scale", &rows)
}

/// Renders `(source type, mapping)` rows as a Markdown table.
pub(crate) fn markdown_table(source_heading: &str, rows: &[(String, TypeMapping)]) -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut out = format!("| {source_heading} | Arrow | BigQuery | Confidence | Warnings |\n|---|---|---|---|---|\n");
    for (source, mapping) in rows {
        let warnings: Vec<String> = mapping.warnings.iter().map(|w| cell(w)).collect();
        out.push_str(&format!(
            "| `{}` | `{}` | `{}` | {} | {} |\n",
            cell(source),
            cell(&mapping.arrow.to_string()),
            mapping.bigquery_ddl(),
            mapping.confidence,
            warnings.join("<br>"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(precision: Option<u32>, scale: Option<u32>) -> (DataType, BigQueryType, Confidence, usize) {
        let m = numeric_target(precision, scale);
        (m.arrow, m.bigquery, m.confidence, m.warnings.len())
    }

    #[test]
    fn display() {
        assert_eq!(Confidence::High.to_string(), "high");
        assert_eq!(Confidence::Medium.to_string(), "medium");
        assert_eq!(Confidence::Low.to_string(), "low");
        assert!(Confidence::High < Confidence::Low);
        assert_eq!(
            BigQueryType::Numeric {
                precision: 12,
                scale: 2
            }
            .to_string(),
            "NUMERIC(12, 2)"
        );
        assert_eq!(
            BigQueryType::BigNumeric {
                precision: 76,
                scale: 38
            }
            .to_string(),
            "BIGNUMERIC(76, 38)"
        );
        let simple = [
            (BigQueryType::Bool, "BOOL"),
            (BigQueryType::Int64, "INT64"),
            (BigQueryType::Float64, "FLOAT64"),
            (BigQueryType::String, "STRING"),
            (BigQueryType::Bytes, "BYTES"),
            (BigQueryType::Date, "DATE"),
            (BigQueryType::Datetime, "DATETIME"),
            (BigQueryType::Time, "TIME"),
            (BigQueryType::Timestamp, "TIMESTAMP"),
            (BigQueryType::Json, "JSON"),
            (BigQueryType::Interval, "INTERVAL"),
            (BigQueryType::Geography, "GEOGRAPHY"),
        ];
        for (ty, text) in simple {
            assert_eq!(ty.to_string(), text);
        }
        assert_eq!(Mode::Nullable.to_string(), "NULLABLE");
        assert_eq!(Mode::Required.to_string(), "REQUIRED");
        assert_eq!(Mode::Repeated.to_string(), "REPEATED");
    }

    #[test]
    fn mode_and_ddl() {
        let mut m = TypeMapping::new(DataType::Int64, BigQueryType::Int64, Confidence::High);
        assert_eq!(m.mode(true), Mode::Nullable);
        assert_eq!(m.mode(false), Mode::Required);
        assert_eq!(m.bigquery_ddl(), "INT64");
        m.repeated = true;
        assert_eq!(m.mode(true), Mode::Repeated);
        assert_eq!(m.mode(false), Mode::Repeated);
        assert_eq!(m.bigquery_ddl(), "ARRAY<INT64>");
    }

    #[test]
    fn numeric_fits_numeric() {
        let numeric = |precision, scale| BigQueryType::Numeric { precision, scale };
        assert_eq!(
            target(Some(12), Some(2)),
            (DataType::Decimal128(12, 2), numeric(12, 2), Confidence::High, 0)
        );
        assert_eq!(
            target(Some(10), None),
            (DataType::Decimal128(10, 0), numeric(10, 0), Confidence::High, 0)
        );
        assert_eq!(
            target(Some(38), Some(9)),
            (DataType::Decimal128(38, 9), numeric(38, 9), Confidence::High, 0)
        );
        assert_eq!(
            target(Some(29), Some(0)),
            (DataType::Decimal128(29, 0), numeric(29, 0), Confidence::High, 0)
        );
        // Scale above precision (PostgreSQL 15+): numeric(2, 5) holds 0.00xyz.
        assert_eq!(
            target(Some(2), Some(5)),
            (DataType::Decimal128(5, 5), numeric(5, 5), Confidence::High, 0)
        );
    }

    #[test]
    fn numeric_needs_bignumeric() {
        let big = |precision, scale| BigQueryType::BigNumeric { precision, scale };
        // 30 integer digits.
        assert_eq!(
            target(Some(30), Some(0)),
            (DataType::Decimal128(30, 0), big(30, 0), Confidence::High, 0)
        );
        // Scale 10.
        assert_eq!(
            target(Some(38), Some(10)),
            (DataType::Decimal128(38, 10), big(38, 10), Confidence::High, 0)
        );
        // MySQL's largest decimal.
        assert_eq!(
            target(Some(65), Some(30)),
            (DataType::Decimal256(65, 30), big(65, 30), Confidence::High, 0)
        );
        assert_eq!(
            target(Some(76), Some(38)),
            (DataType::Decimal256(76, 38), big(76, 38), Confidence::High, 0)
        );
        assert_eq!(
            target(Some(38), Some(0)),
            (DataType::Decimal128(38, 0), big(38, 0), Confidence::High, 0)
        );
    }

    #[test]
    fn numeric_too_large_is_text() {
        for (precision, scale) in [(39, 0), (40, 0), (77, 38), (100, 50), (50, 39)] {
            let m = numeric_target(Some(precision), Some(scale));
            assert_eq!(
                (m.arrow, m.bigquery, m.confidence),
                (DataType::Utf8, BigQueryType::String, Confidence::Medium)
            );
            assert_eq!(m.warnings.len(), 1);
            assert!(
                m.warnings[0].contains(&format!("decimal({precision}, {scale})")),
                "{:?}",
                m.warnings
            );
        }
    }

    #[test]
    fn numeric_unconstrained() {
        for precision in [None, Some(0)] {
            let m = numeric_target(precision, None);
            assert_eq!(m.arrow, DataType::Decimal256(76, 38));
            assert_eq!(
                m.bigquery,
                BigQueryType::BigNumeric {
                    precision: 76,
                    scale: 38
                }
            );
            assert_eq!(m.confidence, Confidence::Medium);
            assert!(m.warnings[0].contains("refused, never rounded"));
        }
    }

    #[test]
    fn markdown_escapes_pipes() {
        let m = TypeMapping::new(DataType::Utf8, BigQueryType::String, Confidence::Low)
            .warn("a | b")
            .warn("c");
        assert_eq!(
            markdown_table("T", &[("x|y".to_owned(), m)]),
            "| T | Arrow | BigQuery | Confidence | Warnings |\n|---|---|---|---|---|\n\
             | `x\\|y` | `Utf8` | `STRING` | low | a \\| b<br>c |\n"
        );
    }
}
