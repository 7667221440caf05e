//! MySQL and MariaDB column types -> Arrow and BigQuery.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};

use crate::type_mapping::{BigQueryType, Confidence, FLOAT32_WARNING, TypeMapping, markdown_table, numeric_target};

/// A MySQL/MariaDB column type, as read from `information_schema.COLUMNS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MySqlColumnType {
    /// `DATA_TYPE`: `int`, `tinyint`, `decimal`, `varchar`...
    pub data_type: String,
    /// `COLUMN_TYPE`: `tinyint(1)`, `bigint(20) unsigned`, `enum('a','b')`...
    /// Signedness, `zerofill` and display widths are read from it.
    pub column_type: String,
    /// `NUMERIC_PRECISION` (used for `decimal`).
    pub precision: Option<u32>,
    /// `NUMERIC_SCALE` (used for `decimal`).
    pub scale: Option<u32>,
}

impl MySqlColumnType {
    fn has_attribute(&self, attribute: &str) -> bool {
        self.column_type
            .split_whitespace()
            .any(|word| word.eq_ignore_ascii_case(attribute))
    }

    /// The `(n)` after the type name: a display width, or a `bit` length.
    fn width(&self) -> Option<u32> {
        let (_, rest) = self.column_type.split_once('(')?;
        let (width, _) = rest.split_once(')')?;
        width.trim().parse().ok()
    }
}

/// Maps a MySQL/MariaDB column type.
pub fn map(column: &MySqlColumnType) -> TypeMapping {
    let mapping = map_type(column);
    if column.has_attribute("zerofill") {
        mapping.warn("ZEROFILL only pads for display: values load as numbers, without leading zeros")
    } else {
        mapping
    }
}

fn map_type(column: &MySqlColumnType) -> TypeMapping {
    use BigQueryType as Bq;
    use Confidence::{High, Low, Medium};
    let new = TypeMapping::new;
    let unsigned = column.has_attribute("unsigned");
    let zero_dates = "zero dates ('0000-00-00', or a zero month or day) are not dates: they are refused (recommended; \
                      loading them as NULL would hide bad data)";
    let too_big = |limit: &str| {
        format!(
            "MySQL allows {limit} per value; BigQuery refuses rows over 100 MB (10 MB per Storage Write API request)"
        )
    };
    let data_type = column.data_type.to_ascii_lowercase();
    match data_type.as_str() {
        "tinyint" if !unsigned && column.width() == Some(1) => new(DataType::Boolean, Bq::Bool, Medium)
            .warn("tinyint(1) is MySQL's BOOLEAN convention: 0 loads as false, any other value as true"),
        "tinyint" if unsigned => new(DataType::Int16, Bq::Int64, High),
        "tinyint" => new(DataType::Int8, Bq::Int64, High),
        "smallint" if unsigned => new(DataType::Int32, Bq::Int64, High),
        "smallint" => new(DataType::Int16, Bq::Int64, High),
        // Even unsigned, a mediumint stops at 16777215.
        "mediumint" => new(DataType::Int32, Bq::Int64, High),
        "int" if unsigned => new(DataType::Int64, Bq::Int64, High),
        "int" => new(DataType::Int32, Bq::Int64, High),
        "bigint" if unsigned => uint64().warn("bigint unsigned exceeds INT64 above 9223372036854775807"),
        "bigint" => new(DataType::Int64, Bq::Int64, High),
        "decimal" => numeric_target(column.precision, column.scale),
        "float" => new(DataType::Float32, Bq::Float64, High).warn(FLOAT32_WARNING),
        "double" => new(DataType::Float64, Bq::Float64, High),
        "bit" => match column.width().or(column.precision).unwrap_or(1) {
            1 => new(DataType::Boolean, Bq::Bool, High),
            2..=63 => new(DataType::Int64, Bq::Int64, Medium)
                .warn("bit(n) loads as its unsigned integer value, e.g. b'101' = 5"),
            _ => uint64().warn("bit(64) loads as its unsigned integer value, which exceeds INT64"),
        },
        "date" => new(DataType::Date32, Bq::Date, High).warn(zero_dates),
        "datetime" => new(DataType::Timestamp(TimeUnit::Microsecond, None), Bq::Datetime, High).warn(zero_dates),
        "timestamp" => new(
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            Bq::Timestamp,
            High,
        )
        .warn("read with the session time_zone '+00:00': MySQL converts TIMESTAMP values to the session time zone")
        .warn(zero_dates),
        "time" => text(Medium).warn(
            "MySQL TIME is a duration from -838:59:59 to 838:59:59, wider than BigQuery TIME: loaded as text, \
             e.g. -12:30:00",
        ),
        "year" => new(DataType::Int16, Bq::Int64, High).warn("the zero year 0000 loads as 0"),
        "char" | "varchar" | "tinytext" | "text" | "enum" | "uuid" | "inet4" | "inet6" => text(High),
        "mediumtext" => text(High).warn(too_big("16 MB")),
        "longtext" => text(High).warn(too_big("4 GB")),
        "binary" | "varbinary" | "tinyblob" | "blob" => new(DataType::Binary, Bq::Bytes, High),
        "mediumblob" => new(DataType::Binary, Bq::Bytes, High).warn(too_big("16 MB")),
        "longblob" => new(DataType::Binary, Bq::Bytes, High).warn(too_big("4 GB")),
        "set" => text(Medium)
            .warn("SET values load as their comma-separated text, e.g. a,c; SPLIT(column, ',') gives an array"),
        "json" => new(DataType::Utf8, Bq::Json, High)
            .warn("JSON numbers that do not fit INT64, UINT64 or FLOAT64 exactly are refused"),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" | "geomcollection" => new(DataType::Binary, Bq::Bytes, Low).warn(
            "spatial value travels as WKB (ST_AsWKB) and loads as BYTES; a GEOGRAPHY needs SRID 4326 and \
             ST_GEOGFROMWKB",
        ),
        _ => text(Low).warn(format!(
            "unknown type {}: loaded as its text form; review",
            column.column_type
        )),
    }
}

/// A STRING column carrying the value's text form.
fn text(confidence: Confidence) -> TypeMapping {
    TypeMapping::new(DataType::Utf8, BigQueryType::String, confidence)
}

/// An unsigned 64-bit integer: NUMERIC(20, 0), as INT64 stops at 2^63 - 1.
fn uint64() -> TypeMapping {
    TypeMapping::new(
        DataType::Decimal128(20, 0),
        BigQueryType::Numeric {
            precision: 20,
            scale: 0,
        },
        Confidence::Medium,
    )
}

fn column(data_type: &str, column_type: &str) -> MySqlColumnType {
    MySqlColumnType {
        data_type: data_type.to_owned(),
        column_type: column_type.to_owned(),
        precision: None,
        scale: None,
    }
}

fn decimal(precision: u32, scale: u32) -> MySqlColumnType {
    MySqlColumnType {
        precision: Some(precision),
        scale: Some(scale),
        ..column("decimal", &format!("decimal({precision},{scale})"))
    }
}

/// Representative MySQL/MariaDB column types, labelled by `COLUMN_TYPE`, for
/// the documentation table and for showing what a type maps to.
pub fn examples() -> Vec<(&'static str, MySqlColumnType)> {
    let types = [
        ("tinyint", "tinyint(1)"),
        ("tinyint", "tinyint"),
        ("tinyint", "tinyint(4)"),
        ("tinyint", "tinyint unsigned"),
        ("smallint", "smallint"),
        ("smallint", "smallint unsigned"),
        ("mediumint", "mediumint"),
        ("mediumint", "mediumint unsigned"),
        ("int", "int"),
        ("int", "int(10) unsigned"),
        ("int", "int(5) unsigned zerofill"),
        ("bigint", "bigint"),
        ("bigint", "bigint(20) unsigned"),
        ("float", "float"),
        ("double", "double"),
        ("bit", "bit(1)"),
        ("bit", "bit(8)"),
        ("bit", "bit(64)"),
        ("date", "date"),
        ("datetime", "datetime(6)"),
        ("timestamp", "timestamp"),
        ("time", "time"),
        ("year", "year"),
        ("char", "char(10)"),
        ("varchar", "varchar(255)"),
        ("tinytext", "tinytext"),
        ("text", "text"),
        ("mediumtext", "mediumtext"),
        ("longtext", "longtext"),
        ("binary", "binary(16)"),
        ("varbinary", "varbinary(255)"),
        ("tinyblob", "tinyblob"),
        ("blob", "blob"),
        ("mediumblob", "mediumblob"),
        ("longblob", "longblob"),
        ("enum", "enum('small','large')"),
        ("set", "set('a','b','c')"),
        ("json", "json"),
        ("uuid", "uuid"),
        ("inet4", "inet4"),
        ("inet6", "inet6"),
        ("geometry", "geometry"),
        ("point", "point"),
        ("linestring", "linestring"),
        ("polygon", "polygon"),
        ("multipoint", "multipoint"),
        ("multilinestring", "multilinestring"),
        ("multipolygon", "multipolygon"),
        ("geomcollection", "geomcollection"),
        ("geometrycollection", "geometrycollection"),
        ("vector", "vector(3)"),
    ];
    let mut examples = vec![
        ("decimal(12,2)", decimal(12, 2)),
        ("decimal(38,10)", decimal(38, 10)),
        ("decimal(65,30)", decimal(65, 30)),
    ];
    examples.extend(
        types
            .into_iter()
            .map(|(data_type, column_type)| (column_type, column(data_type, column_type))),
    );
    examples
}

/// The MySQL/MariaDB mapping table in Markdown (embedded in
/// docs/type-mapping.md).
pub fn render_markdown_table() -> String {
    let rows: Vec<(String, TypeMapping)> = examples()
        .into_iter()
        .map(|(label, column)| (label.to_owned(), map(&column)))
        .collect();
    markdown_table("MySQL/MariaDB type", &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Confidence::{High, Low, Medium};

    /// Every example's exact mapping: Arrow type, BigQuery DDL, confidence,
    /// and one fragment per warning (in order).
    fn expected() -> Vec<(&'static str, DataType, &'static str, Confidence, Vec<&'static str>)> {
        use DataType as D;
        let zero = "zero dates";
        let size = "BigQuery refuses rows over 100 MB";
        let wkb = "WKB (ST_AsWKB)";
        let int64 = |label| (label, D::Int64, "INT64", High, vec![]);
        let text = |label| (label, D::Utf8, "STRING", High, vec![]);
        let bytes = |label| (label, D::Binary, "BYTES", High, vec![]);
        let spatial = |label| (label, D::Binary, "BYTES", Low, vec![wkb]);
        vec![
            ("decimal(12,2)", D::Decimal128(12, 2), "NUMERIC(12, 2)", High, vec![]),
            (
                "decimal(38,10)",
                D::Decimal128(38, 10),
                "BIGNUMERIC(38, 10)",
                High,
                vec![],
            ),
            (
                "decimal(65,30)",
                D::Decimal256(65, 30),
                "BIGNUMERIC(65, 30)",
                High,
                vec![],
            ),
            ("tinyint(1)", D::Boolean, "BOOL", Medium, vec!["BOOLEAN convention"]),
            ("tinyint", D::Int8, "INT64", High, vec![]),
            ("tinyint(4)", D::Int8, "INT64", High, vec![]),
            ("tinyint unsigned", D::Int16, "INT64", High, vec![]),
            ("smallint", D::Int16, "INT64", High, vec![]),
            ("smallint unsigned", D::Int32, "INT64", High, vec![]),
            ("mediumint", D::Int32, "INT64", High, vec![]),
            ("mediumint unsigned", D::Int32, "INT64", High, vec![]),
            ("int", D::Int32, "INT64", High, vec![]),
            int64("int(10) unsigned"),
            ("int(5) unsigned zerofill", D::Int64, "INT64", High, vec!["ZEROFILL"]),
            int64("bigint"),
            (
                "bigint(20) unsigned",
                D::Decimal128(20, 0),
                "NUMERIC(20, 0)",
                Medium,
                vec!["exceeds INT64"],
            ),
            ("float", D::Float32, "FLOAT64", High, vec!["1.100000023841858"]),
            ("double", D::Float64, "FLOAT64", High, vec![]),
            ("bit(1)", D::Boolean, "BOOL", High, vec![]),
            ("bit(8)", D::Int64, "INT64", Medium, vec!["b'101' = 5"]),
            (
                "bit(64)",
                D::Decimal128(20, 0),
                "NUMERIC(20, 0)",
                Medium,
                vec!["exceeds INT64"],
            ),
            ("date", D::Date32, "DATE", High, vec![zero]),
            (
                "datetime(6)",
                D::Timestamp(TimeUnit::Microsecond, None),
                "DATETIME",
                High,
                vec![zero],
            ),
            (
                "timestamp",
                D::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
                "TIMESTAMP",
                High,
                vec!["time_zone '+00:00'", zero],
            ),
            ("time", D::Utf8, "STRING", Medium, vec!["-838:59:59 to 838:59:59"]),
            ("year", D::Int16, "INT64", High, vec!["0000"]),
            text("char(10)"),
            text("varchar(255)"),
            text("tinytext"),
            text("text"),
            ("mediumtext", D::Utf8, "STRING", High, vec![size]),
            ("longtext", D::Utf8, "STRING", High, vec![size]),
            bytes("binary(16)"),
            bytes("varbinary(255)"),
            bytes("tinyblob"),
            bytes("blob"),
            ("mediumblob", D::Binary, "BYTES", High, vec![size]),
            ("longblob", D::Binary, "BYTES", High, vec![size]),
            text("enum('small','large')"),
            ("set('a','b','c')", D::Utf8, "STRING", Medium, vec!["comma-separated"]),
            ("json", D::Utf8, "JSON", High, vec!["JSON numbers"]),
            text("uuid"),
            text("inet4"),
            text("inet6"),
            spatial("geometry"),
            spatial("point"),
            spatial("linestring"),
            spatial("polygon"),
            spatial("multipoint"),
            spatial("multilinestring"),
            spatial("multipolygon"),
            spatial("geomcollection"),
            spatial("geometrycollection"),
            ("vector(3)", D::Utf8, "STRING", Low, vec!["unknown type vector(3)"]),
        ]
    }

    #[test]
    fn every_example_maps_exactly() {
        let examples = examples();
        let expected = expected();
        let labels: Vec<&str> = examples.iter().map(|(label, _)| *label).collect();
        let expected_labels: Vec<&str> = expected.iter().map(|e| e.0).collect();
        assert_eq!(labels, expected_labels);
        assert!(labels.len() >= 50, "{}", labels.len());
        for ((label, column), (_, arrow, bigquery, confidence, warnings)) in examples.iter().zip(expected) {
            let m = map(column);
            assert_eq!(m.arrow, arrow, "{label}: arrow");
            assert_eq!(m.bigquery.to_string(), bigquery, "{label}: bigquery");
            assert!(!m.repeated, "{label}: repeated");
            assert_eq!(m.confidence, confidence, "{label}: confidence");
            assert_eq!(m.warnings.len(), warnings.len(), "{label}: {:?}", m.warnings);
            for (actual, fragment) in m.warnings.iter().zip(warnings) {
                assert!(actual.contains(fragment), "{label}: {actual:?} lacks {fragment:?}");
            }
        }
    }

    #[test]
    fn attributes_and_widths_come_from_column_type() {
        // Upper case, as some tools report it.
        let m = map(&column("BIGINT", "BIGINT(20) UNSIGNED"));
        assert_eq!(
            m.bigquery,
            BigQueryType::Numeric {
                precision: 20,
                scale: 0
            }
        );
        // Only a signed tinyint(1) is a boolean.
        assert_eq!(map(&column("tinyint", "tinyint(1) unsigned")).arrow, DataType::Int16);
        assert_eq!(map(&column("tinyint", "tinyint(3)")).arrow, DataType::Int8);
        // Without a width in COLUMN_TYPE, bit falls back to NUMERIC_PRECISION.
        let bit = MySqlColumnType {
            precision: Some(1),
            ..column("bit", "bit")
        };
        assert_eq!(map(&bit).bigquery, BigQueryType::Bool);
        assert_eq!(column("enum", "enum('a(1)','b')").width(), None);
        assert!(column("int", "int(5) unsigned zerofill").has_attribute("unsigned"));
        assert!(!column("enum", "enum('unsigned')").has_attribute("unsigned"));
    }

    #[test]
    fn decimals_follow_the_numeric_rules() {
        let m = map(&decimal(10, 0));
        assert_eq!(
            (m.arrow, m.bigquery),
            (
                DataType::Decimal128(10, 0),
                BigQueryType::Numeric {
                    precision: 10,
                    scale: 0
                }
            )
        );
        let m = map(&decimal(30, 0));
        assert_eq!(
            m.bigquery,
            BigQueryType::BigNumeric {
                precision: 30,
                scale: 0
            }
        );
        let m = map(&column("decimal", "decimal"));
        assert_eq!(
            m.bigquery,
            BigQueryType::BigNumeric {
                precision: 76,
                scale: 38
            }
        );
        assert_eq!(m.confidence, Medium);
    }

    #[test]
    fn mode_follows_nullability() {
        use crate::type_mapping::Mode;
        assert_eq!(map(&column("int", "int")).mode(true), Mode::Nullable);
        assert_eq!(map(&column("int", "int")).mode(false), Mode::Required);
    }
}
