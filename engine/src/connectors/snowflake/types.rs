//! Snowflake column types -> Arrow and BigQuery.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};

use crate::type_mapping::{BigQueryType, Confidence, TypeMapping, markdown_table, numeric_target};

/// A Snowflake column type, as read from `INFORMATION_SCHEMA.COLUMNS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnowflakeColumnType {
    /// `DATA_TYPE`: `NUMBER`, `FLOAT`, `TEXT`, `TIMESTAMP_NTZ`...
    pub data_type: String,
    /// `NUMERIC_PRECISION` (NUMBER).
    pub precision: Option<u32>,
    /// `NUMERIC_SCALE` (NUMBER).
    pub scale: Option<u32>,
    /// `CHARACTER_MAXIMUM_LENGTH` (TEXT, BINARY).
    pub length: Option<u64>,
}

impl SnowflakeColumnType {
    /// The type as DESCRIBE shows it: `NUMBER(12,2)`, `TEXT(20)`, `DATE`.
    pub fn display(&self) -> String {
        let name = self.data_type.to_ascii_uppercase();
        match (name.as_str(), self.precision, self.scale, self.length) {
            ("NUMBER", Some(p), s, _) => format!("NUMBER({p},{})", s.unwrap_or(0)),
            ("TEXT" | "BINARY", _, _, Some(length)) => format!("{name}({length})"),
            _ => name,
        }
    }

    fn base(&self) -> String {
        self.data_type
            .split('(')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_uppercase()
    }
}

/// Values finer than a microsecond do not fit BigQuery.
const NANOS: &str = "Snowflake keeps up to nanoseconds; a value with digits below a microsecond is refused";

/// Maps a Snowflake column type.
pub fn map(column: &SnowflakeColumnType) -> TypeMapping {
    use BigQueryType as Bq;
    use Confidence::{High, Low, Medium};
    let new = TypeMapping::new;
    let utc = || DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")));
    match column.base().as_str() {
        "NUMBER" | "DECIMAL" | "NUMERIC" | "INT" | "INTEGER" | "BIGINT" | "SMALLINT" | "TINYINT" | "BYTEINT" => {
            let precision = column.precision.unwrap_or(38);
            match column.scale.unwrap_or(0) {
                0 if precision <= 18 => new(DataType::Int64, Bq::Int64, High),
                0 => new(DataType::Int64, Bq::Int64, Medium).warn(format!(
                    "NUMBER({precision},0) (Snowflake's INTEGER) loads as INT64: values beyond \
                     ±9223372036854775807 are refused; override the column as NUMERIC or BIGNUMERIC to keep them"
                )),
                scale => numeric_target(Some(precision), Some(scale)),
            }
        }
        "FLOAT" | "FLOAT4" | "FLOAT8" | "DOUBLE" | "DOUBLE PRECISION" | "REAL" => {
            new(DataType::Float64, Bq::Float64, High)
        }
        "TEXT" | "VARCHAR" | "CHAR" | "CHARACTER" | "STRING" => new(DataType::Utf8, Bq::String, High),
        "BINARY" | "VARBINARY" => new(DataType::Binary, Bq::Bytes, High),
        "BOOLEAN" => new(DataType::Boolean, Bq::Bool, High),
        "DATE" => new(DataType::Date32, Bq::Date, High),
        "TIME" => new(DataType::Time64(TimeUnit::Microsecond), Bq::Time, High).warn(NANOS),
        "TIMESTAMP_NTZ" | "DATETIME" => {
            new(DataType::Timestamp(TimeUnit::Microsecond, None), Bq::Datetime, High).warn(NANOS)
        }
        "TIMESTAMP_LTZ" => new(utc(), Bq::Timestamp, High).warn(NANOS),
        "TIMESTAMP_TZ" => new(utc(), Bq::Timestamp, Medium)
            .warn("the instant loads in UTC; the value's own UTC offset is not kept")
            .warn(NANOS),
        "VARIANT" => new(DataType::Utf8, Bq::Json, Medium).warn(
            "VARIANT loads as its JSON text; a scalar VARIANT becomes a JSON scalar, and numbers that do not fit \
             INT64 or FLOAT64 exactly are refused",
        ),
        "OBJECT" | "ARRAY" => new(DataType::Utf8, Bq::Json, High),
        "GEOGRAPHY" => new(DataType::Binary, Bq::Geography, High)
            .warn("travels as WKB (ST_ASWKB); BigQuery refuses invalid shapes"),
        "GEOMETRY" => new(DataType::Binary, Bq::Bytes, Low).warn(
            "planar GEOMETRY travels as WKB (ST_ASWKB) and loads as BYTES; a GEOGRAPHY needs SRID 4326 and \
             ST_GEOGFROMWKB",
        ),
        "VECTOR" => {
            new(DataType::Utf8, Bq::Json, Medium).warn("VECTOR loads as a JSON array of its elements, e.g. [1.5,2,3]")
        }
        _ => new(DataType::Utf8, Bq::String, Low).warn(format!(
            "unknown type {}: loaded as its text form; review",
            column.display()
        )),
    }
}

/// How a column is selected so that its value arrives as the mapping
/// expects, around its quoted name: spatial values as WKB, vectors as
/// arrays (JSON text).
pub(super) fn select_expression(data_type: &str, quoted: &str) -> String {
    let base = data_type
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase();
    match base.as_str() {
        "GEOGRAPHY" | "GEOMETRY" => format!("ST_ASWKB({quoted})"),
        "VECTOR" => format!("CAST({quoted} AS ARRAY)"),
        _ => quoted.to_owned(),
    }
}

fn column(data_type: &str) -> SnowflakeColumnType {
    SnowflakeColumnType {
        data_type: data_type.to_owned(),
        precision: None,
        scale: None,
        length: None,
    }
}

fn number(precision: u32, scale: u32) -> SnowflakeColumnType {
    SnowflakeColumnType {
        precision: Some(precision),
        scale: Some(scale),
        ..column("NUMBER")
    }
}

/// Representative Snowflake column types, labelled as DESCRIBE shows
/// them, for the documentation table.
pub fn examples() -> Vec<(String, SnowflakeColumnType)> {
    let mut examples: Vec<SnowflakeColumnType> = vec![
        number(38, 0),
        number(18, 0),
        number(12, 2),
        number(38, 9),
        number(38, 10),
        number(38, 37),
    ];
    examples.extend(
        [
            "FLOAT",
            "TEXT",
            "BINARY",
            "BOOLEAN",
            "DATE",
            "TIME",
            "TIMESTAMP_NTZ",
            "TIMESTAMP_LTZ",
            "TIMESTAMP_TZ",
            "VARIANT",
            "OBJECT",
            "ARRAY",
            "GEOGRAPHY",
            "GEOMETRY",
            "VECTOR",
        ]
        .into_iter()
        .map(column),
    );
    examples.into_iter().map(|c| (c.display(), c)).collect()
}

/// The Snowflake mapping table in Markdown (embedded in
/// docs/type-mapping.md).
pub fn render_markdown_table() -> String {
    let rows: Vec<(String, TypeMapping)> = examples()
        .into_iter()
        .map(|(label, column)| (label, map(&column)))
        .collect();
    markdown_table("Snowflake type", &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Confidence::{High, Low, Medium};

    #[test]
    fn every_example_maps_as_documented() {
        use DataType as D;
        let utc = D::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let expected: Vec<(&str, DataType, &str, Confidence, usize)> = vec![
            ("NUMBER(38,0)", D::Int64, "INT64", Medium, 1),
            ("NUMBER(18,0)", D::Int64, "INT64", High, 0),
            ("NUMBER(12,2)", D::Decimal128(12, 2), "NUMERIC(12, 2)", High, 0),
            ("NUMBER(38,9)", D::Decimal128(38, 9), "NUMERIC(38, 9)", High, 0),
            ("NUMBER(38,10)", D::Decimal128(38, 10), "BIGNUMERIC(38, 10)", High, 0),
            ("NUMBER(38,37)", D::Decimal128(38, 37), "BIGNUMERIC(38, 37)", High, 0),
            ("FLOAT", D::Float64, "FLOAT64", High, 0),
            ("TEXT", D::Utf8, "STRING", High, 0),
            ("BINARY", D::Binary, "BYTES", High, 0),
            ("BOOLEAN", D::Boolean, "BOOL", High, 0),
            ("DATE", D::Date32, "DATE", High, 0),
            ("TIME", D::Time64(TimeUnit::Microsecond), "TIME", High, 1),
            (
                "TIMESTAMP_NTZ",
                D::Timestamp(TimeUnit::Microsecond, None),
                "DATETIME",
                High,
                1,
            ),
            ("TIMESTAMP_LTZ", utc.clone(), "TIMESTAMP", High, 1),
            ("TIMESTAMP_TZ", utc, "TIMESTAMP", Medium, 2),
            ("VARIANT", D::Utf8, "JSON", Medium, 1),
            ("OBJECT", D::Utf8, "JSON", High, 0),
            ("ARRAY", D::Utf8, "JSON", High, 0),
            ("GEOGRAPHY", D::Binary, "GEOGRAPHY", High, 1),
            ("GEOMETRY", D::Binary, "BYTES", Low, 1),
            ("VECTOR", D::Utf8, "JSON", Medium, 1),
        ];
        let examples = examples();
        assert_eq!(examples.len(), expected.len());
        for ((label, column), (want_label, arrow, bigquery, confidence, warnings)) in examples.iter().zip(expected) {
            let mapping = map(column);
            assert_eq!(label, want_label);
            assert_eq!(mapping.arrow, arrow, "{label}");
            assert_eq!(mapping.bigquery_ddl(), bigquery, "{label}");
            assert_eq!(mapping.confidence, confidence, "{label}");
            assert_eq!(mapping.warnings.len(), warnings, "{label}: {:?}", mapping.warnings);
        }
        assert_eq!(map(&column("FILE")).confidence, Low);
    }

    #[test]
    fn text_lengths_show_in_the_type() {
        let text = SnowflakeColumnType {
            length: Some(20),
            ..column("TEXT")
        };
        assert_eq!(text.display(), "TEXT(20)");
        assert_eq!(select_expression("GEOGRAPHY", "\"G\""), "ST_ASWKB(\"G\")");
        assert_eq!(select_expression("NUMBER(38,0)", "\"N\""), "\"N\"");
    }
}
