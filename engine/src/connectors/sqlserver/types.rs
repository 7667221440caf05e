//! SQL Server and Synapse column types -> Arrow and BigQuery.
//!
//! Some types travel as another type the scan converts them to at the
//! source (see `source::select_expression`): `money` as `decimal(19,4)`
//! (tiberius would decode it as a float), `rowversion` as `bigint`, `xml`
//! and `sql_variant` as text, spatial types as WKB, `hierarchyid` as its
//! path text.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};

use crate::type_mapping::{BigQueryType, Confidence, FLOAT32_WARNING, TypeMapping, markdown_table, numeric_target};

/// A column type as `INFORMATION_SCHEMA.COLUMNS` reports it (alias types
/// resolved to their base type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlServerColumnType {
    /// `DATA_TYPE`: `int`, `nvarchar`, `datetime2`, `timestamp` (rowversion)...
    pub data_type: String,
    /// `CHARACTER_MAXIMUM_LENGTH`: characters (bytes for binary types);
    /// -1 for `(max)`.
    pub max_length: Option<i32>,
    /// `NUMERIC_PRECISION` for numbers.
    pub precision: Option<u32>,
    /// `NUMERIC_SCALE` for numbers, `DATETIME_PRECISION` for `time`,
    /// `datetime2` and `datetimeoffset` (fractional digits).
    pub scale: Option<u32>,
}

impl SqlServerColumnType {
    /// The type's base name as Sluice shows it: `rowversion` for the
    /// deprecated synonym `timestamp`.
    pub fn base(&self) -> String {
        match self.data_type.to_ascii_lowercase().as_str() {
            "timestamp" => "rowversion".into(),
            other => other.into(),
        }
    }

    /// The type as written in DDL: `nvarchar(max)`, `decimal(12,2)`,
    /// `datetime2(7)`.
    pub fn source_type(&self) -> String {
        let base = self.base();
        match base.as_str() {
            "char" | "varchar" | "nchar" | "nvarchar" | "binary" | "varbinary" => match self.max_length {
                Some(-1) => format!("{base}(max)"),
                Some(n) => format!("{base}({n})"),
                None => base,
            },
            "decimal" | "numeric" => match (self.precision, self.scale) {
                (Some(p), Some(s)) => format!("{base}({p},{s})"),
                _ => base,
            },
            "time" | "datetime2" | "datetimeoffset" => match self.scale {
                Some(s) => format!("{base}({s})"),
                None => base,
            },
            _ => base,
        }
    }

    /// Fractional digits of a `time`, `datetime2` or `datetimeoffset`
    /// (7 when not known, the types' default).
    fn fraction_digits(&self) -> u32 {
        self.scale.unwrap_or(7)
    }
}

/// Maps a SQL Server or Synapse column type.
pub fn map(column: &SqlServerColumnType) -> TypeMapping {
    use BigQueryType as Bq;
    use Confidence::{High, Low, Medium};
    let new = TypeMapping::new;
    let naive = DataType::Timestamp(TimeUnit::Microsecond, None);
    let big = |what: &str| {
        format!(
            "{what} holds up to 2 GB per value; BigQuery refuses rows over 100 MB (10 MB per Storage Write API request)"
        )
    };
    let sub_micro = |mapping: TypeMapping| {
        if column.fraction_digits() > 6 {
            mapping.warn(
                "7 fractional digits (100 ns) are cut to microseconds; filters on the column are evaluated by Sluice \
                 on the loaded values",
            )
        } else {
            mapping
        }
    };
    let deprecated =
        |mapping: TypeMapping, instead: &str| mapping.warn(format!("deprecated by Microsoft in favour of {instead}"));
    let base = column.base();
    let max = column.max_length == Some(-1);
    match base.as_str() {
        "bit" => new(DataType::Boolean, Bq::Bool, High),
        "tinyint" => new(DataType::Int16, Bq::Int64, High),
        "smallint" => new(DataType::Int16, Bq::Int64, High),
        "int" => new(DataType::Int32, Bq::Int64, High),
        "bigint" => new(DataType::Int64, Bq::Int64, High),
        "decimal" | "numeric" => numeric_target(column.precision, column.scale),
        "money" => money(19),
        "smallmoney" => money(10),
        "real" => new(DataType::Float32, Bq::Float64, High).warn(FLOAT32_WARNING),
        "float" if column.precision.is_some_and(|p| p <= 24) => {
            new(DataType::Float32, Bq::Float64, High).warn(FLOAT32_WARNING)
        }
        "float" => new(DataType::Float64, Bq::Float64, High),
        "char" | "varchar" | "nchar" | "nvarchar" if max => text(High).warn(big(&column.source_type())),
        "char" | "varchar" | "nchar" | "nvarchar" => text(High),
        "text" => deprecated(text(High).warn(big("text")), "varchar(max)"),
        "ntext" => deprecated(text(High).warn(big("ntext")), "nvarchar(max)"),
        "binary" | "varbinary" if max => new(DataType::Binary, Bq::Bytes, High).warn(big("varbinary(max)")),
        "binary" | "varbinary" => new(DataType::Binary, Bq::Bytes, High),
        "image" => deprecated(
            new(DataType::Binary, Bq::Bytes, High).warn(big("image")),
            "varbinary(max)",
        ),
        "date" => new(DataType::Date32, Bq::Date, High),
        "time" => sub_micro(new(DataType::Time64(TimeUnit::Microsecond), Bq::Time, High)),
        "smalldatetime" => new(naive, Bq::Datetime, High),
        "datetime" => new(naive, Bq::Datetime, High).warn(
            "datetime counts 1/300 s: .003 is 3.333 ms and loads as .003333; filters on the column are evaluated \
             by Sluice on the loaded values",
        ),
        "datetime2" => sub_micro(new(naive, Bq::Datetime, High)),
        "datetimeoffset" => sub_micro(new(
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            Bq::Timestamp,
            High,
        ))
        .warn("loads as the instant in UTC; the offset itself is not kept"),
        "uniqueidentifier" => text(High).warn(
            "loads as lower-case text, e.g. 6f9619ff-8b86-d011-b42d-00c04fc964ff (SQL Server shows upper case); \
             comparisons are evaluated by Sluice",
        ),
        "xml" => text(High).warn("loads as its text (read as nvarchar(max)), which SQL Server normalizes"),
        "json" => new(DataType::Utf8, Bq::Json, High)
            .warn("JSON numbers that do not fit INT64, UINT64 or FLOAT64 exactly are refused"),
        "rowversion" => new(DataType::Int64, Bq::Int64, High).warn(
            "the database's row version counter, read as bigint: it grows on every insert and update, so it is an \
             incremental cursor that also catches updates (not a time)",
        ),
        "sql_variant" => text(Low)
            .warn("sql_variant loads as the text of each value (read as nvarchar(4000)); its base type is not kept"),
        "geography" => new(DataType::Binary, Bq::Geography, Medium).warn(
            "geography travels as WKB (STAsBinary, without Z and M); BigQuery expects SRID 4326 and refuses \
             invalid shapes",
        ),
        "geometry" => new(DataType::Binary, Bq::Bytes, Low).warn(
            "planar geometry travels as WKB (STAsBinary) and loads as BYTES; a GEOGRAPHY needs lon/lat \
             coordinates (SRID 4326) and ST_GEOGFROMWKB",
        ),
        "hierarchyid" => text(High).warn("loads as its path text (ToString()), e.g. /1/3/"),
        _ => text(Low).warn(format!(
            "unknown type {}: loaded as its text form (read as nvarchar(max)); review",
            column.source_type()
        )),
    }
}

/// The types read as they are.
const NATIVE: &[&str] = &[
    "bit",
    "tinyint",
    "smallint",
    "int",
    "bigint",
    "decimal",
    "numeric",
    "real",
    "float",
    "char",
    "varchar",
    "nchar",
    "nvarchar",
    "text",
    "ntext",
    "binary",
    "varbinary",
    "image",
    "date",
    "time",
    "smalldatetime",
    "datetime2",
    "datetimeoffset",
    "uniqueidentifier",
];

/// The select-list expression that reads the `quoted` column of type
/// `source_type` as its mapping expects.
pub(super) fn select_expression(quoted: &str, source_type: &str) -> String {
    let source_type = source_type.to_ascii_lowercase();
    let base = source_type.split('(').next().unwrap_or_default();
    match base {
        "money" => format!("CAST({quoted} AS decimal(19,4))"),
        "smallmoney" => format!("CAST({quoted} AS decimal(10,4))"),
        "rowversion" | "timestamp" => format!("CAST({quoted} AS bigint)"),
        // As the server converts it when it compares it with a datetime2.
        "datetime" => format!("CAST({quoted} AS datetime2(7))"),
        "sql_variant" => format!("CAST({quoted} AS nvarchar(4000))"),
        "geography" | "geometry" => format!("{quoted}.STAsBinary()"),
        "hierarchyid" => format!("{quoted}.ToString()"),
        native if NATIVE.contains(&native) => quoted.to_owned(),
        // xml, json and anything unknown: its text.
        _ => format!("CAST({quoted} AS nvarchar(max))"),
    }
}

/// A STRING column carrying the value's text form.
fn text(confidence: Confidence) -> TypeMapping {
    TypeMapping::new(DataType::Utf8, BigQueryType::String, confidence)
}

/// `money` (19 digits) or `smallmoney` (10), four decimal places, read as
/// an exact decimal.
fn money(precision: u8) -> TypeMapping {
    TypeMapping::new(
        DataType::Decimal128(precision, 4),
        BigQueryType::Numeric { precision, scale: 4 },
        Confidence::High,
    )
}

fn column(data_type: &str, max_length: Option<i32>, precision: Option<u32>, scale: Option<u32>) -> SqlServerColumnType {
    SqlServerColumnType {
        data_type: data_type.to_owned(),
        max_length,
        precision,
        scale,
    }
}

/// Representative column types, labelled as written in DDL, for the
/// documentation table and the tests.
pub fn examples() -> Vec<(&'static str, SqlServerColumnType)> {
    let types = [
        ("bit", column("bit", None, None, None)),
        ("tinyint", column("tinyint", None, Some(3), Some(0))),
        ("smallint", column("smallint", None, Some(5), Some(0))),
        ("int", column("int", None, Some(10), Some(0))),
        ("bigint", column("bigint", None, Some(19), Some(0))),
        ("decimal(12,2)", column("decimal", None, Some(12), Some(2))),
        ("numeric(38,10)", column("numeric", None, Some(38), Some(10))),
        ("money", column("money", None, Some(19), Some(4))),
        ("smallmoney", column("smallmoney", None, Some(10), Some(4))),
        ("real", column("real", None, Some(24), None)),
        ("float", column("float", None, Some(53), None)),
        ("char(10)", column("char", Some(10), None, None)),
        ("varchar(255)", column("varchar", Some(255), None, None)),
        ("varchar(max)", column("varchar", Some(-1), None, None)),
        ("nchar(10)", column("nchar", Some(10), None, None)),
        ("nvarchar(100)", column("nvarchar", Some(100), None, None)),
        ("nvarchar(max)", column("nvarchar", Some(-1), None, None)),
        ("text", column("text", Some(2_147_483_647), None, None)),
        ("ntext", column("ntext", Some(1_073_741_823), None, None)),
        ("binary(16)", column("binary", Some(16), None, None)),
        ("varbinary(255)", column("varbinary", Some(255), None, None)),
        ("varbinary(max)", column("varbinary", Some(-1), None, None)),
        ("image", column("image", Some(2_147_483_647), None, None)),
        ("date", column("date", None, None, Some(0))),
        ("time(3)", column("time", None, None, Some(3))),
        ("time(7)", column("time", None, None, Some(7))),
        ("smalldatetime", column("smalldatetime", None, None, Some(0))),
        ("datetime", column("datetime", None, None, Some(3))),
        ("datetime2(3)", column("datetime2", None, None, Some(3))),
        ("datetime2(6)", column("datetime2", None, None, Some(6))),
        ("datetime2(7)", column("datetime2", None, None, Some(7))),
        ("datetimeoffset(7)", column("datetimeoffset", None, None, Some(7))),
        ("uniqueidentifier", column("uniqueidentifier", None, None, None)),
        ("xml", column("xml", Some(-1), None, None)),
        ("json", column("json", Some(-1), None, None)),
        ("rowversion", column("timestamp", None, None, None)),
        ("sql_variant", column("sql_variant", None, None, None)),
        ("geography", column("geography", Some(-1), None, None)),
        ("geometry", column("geometry", Some(-1), None, None)),
        ("hierarchyid", column("hierarchyid", Some(892), None, None)),
        ("vector", column("vector", Some(-1), None, None)),
    ];
    types.to_vec()
}

/// The SQL Server/Synapse mapping table in Markdown (embedded in
/// docs/type-mapping.md).
pub fn render_markdown_table() -> String {
    let rows: Vec<(String, TypeMapping)> = examples()
        .into_iter()
        .map(|(label, c)| (label.to_owned(), map(&c)))
        .collect();
    markdown_table("SQL Server/Synapse type", &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Confidence::{High, Low, Medium};

    /// Every example's exact mapping: Arrow type, BigQuery DDL, confidence,
    /// and one fragment per warning (in order).
    fn expected() -> Vec<(&'static str, DataType, &'static str, Confidence, Vec<&'static str>)> {
        use DataType as D;
        let size = "BigQuery refuses rows over 100 MB";
        let micro = "100 ns";
        let naive = D::Timestamp(TimeUnit::Microsecond, None);
        let text = |label| (label, D::Utf8, "STRING", High, vec![]);
        vec![
            ("bit", D::Boolean, "BOOL", High, vec![]),
            ("tinyint", D::Int16, "INT64", High, vec![]),
            ("smallint", D::Int16, "INT64", High, vec![]),
            ("int", D::Int32, "INT64", High, vec![]),
            ("bigint", D::Int64, "INT64", High, vec![]),
            ("decimal(12,2)", D::Decimal128(12, 2), "NUMERIC(12, 2)", High, vec![]),
            (
                "numeric(38,10)",
                D::Decimal128(38, 10),
                "BIGNUMERIC(38, 10)",
                High,
                vec![],
            ),
            ("money", D::Decimal128(19, 4), "NUMERIC(19, 4)", High, vec![]),
            ("smallmoney", D::Decimal128(10, 4), "NUMERIC(10, 4)", High, vec![]),
            ("real", D::Float32, "FLOAT64", High, vec!["1.100000023841858"]),
            ("float", D::Float64, "FLOAT64", High, vec![]),
            text("char(10)"),
            text("varchar(255)"),
            ("varchar(max)", D::Utf8, "STRING", High, vec![size]),
            text("nchar(10)"),
            text("nvarchar(100)"),
            ("nvarchar(max)", D::Utf8, "STRING", High, vec![size]),
            ("text", D::Utf8, "STRING", High, vec![size, "deprecated"]),
            ("ntext", D::Utf8, "STRING", High, vec![size, "deprecated"]),
            ("binary(16)", D::Binary, "BYTES", High, vec![]),
            ("varbinary(255)", D::Binary, "BYTES", High, vec![]),
            ("varbinary(max)", D::Binary, "BYTES", High, vec![size]),
            ("image", D::Binary, "BYTES", High, vec![size, "deprecated"]),
            ("date", D::Date32, "DATE", High, vec![]),
            ("time(3)", D::Time64(TimeUnit::Microsecond), "TIME", High, vec![]),
            ("time(7)", D::Time64(TimeUnit::Microsecond), "TIME", High, vec![micro]),
            ("smalldatetime", naive.clone(), "DATETIME", High, vec![]),
            ("datetime", naive.clone(), "DATETIME", High, vec!["1/300 s"]),
            ("datetime2(3)", naive.clone(), "DATETIME", High, vec![]),
            ("datetime2(6)", naive.clone(), "DATETIME", High, vec![]),
            ("datetime2(7)", naive, "DATETIME", High, vec![micro]),
            (
                "datetimeoffset(7)",
                D::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
                "TIMESTAMP",
                High,
                vec![micro, "offset itself is not kept"],
            ),
            ("uniqueidentifier", D::Utf8, "STRING", High, vec!["lower-case"]),
            ("xml", D::Utf8, "STRING", High, vec!["nvarchar(max)"]),
            ("json", D::Utf8, "JSON", High, vec!["JSON numbers"]),
            ("rowversion", D::Int64, "INT64", High, vec!["incremental cursor"]),
            ("sql_variant", D::Utf8, "STRING", Low, vec!["base type is not kept"]),
            ("geography", D::Binary, "GEOGRAPHY", Medium, vec!["WKB"]),
            ("geometry", D::Binary, "BYTES", Low, vec!["WKB"]),
            ("hierarchyid", D::Utf8, "STRING", High, vec!["/1/3/"]),
            ("vector", D::Utf8, "STRING", Low, vec!["unknown type vector"]),
        ]
    }

    #[test]
    fn every_example_maps_exactly() {
        let examples = examples();
        let expected = expected();
        let labels: Vec<&str> = examples.iter().map(|(label, _)| *label).collect();
        let expected_labels: Vec<&str> = expected.iter().map(|e| e.0).collect();
        assert_eq!(labels, expected_labels);
        for ((label, column), (_, arrow, bigquery, confidence, warnings)) in examples.iter().zip(expected) {
            let m = map(column);
            assert_eq!(m.arrow, arrow, "{label}: arrow");
            assert_eq!(m.bigquery.to_string(), bigquery, "{label}: bigquery");
            assert_eq!(m.confidence, confidence, "{label}: confidence");
            assert_eq!(m.warnings.len(), warnings.len(), "{label}: {:?}", m.warnings);
            for (actual, fragment) in m.warnings.iter().zip(warnings) {
                assert!(actual.contains(fragment), "{label}: {actual:?} lacks {fragment:?}");
            }
        }
    }

    #[test]
    fn values_are_selected_as_their_mapping_reads_them() {
        let read = |source_type: &str| select_expression("[c]", source_type);
        assert_eq!(read("money"), "CAST([c] AS decimal(19,4))");
        assert_eq!(read("rowversion"), "CAST([c] AS bigint)");
        assert_eq!(read("datetime"), "CAST([c] AS datetime2(7))");
        assert_eq!(read("geography"), "[c].STAsBinary()");
        assert_eq!(read("hierarchyid"), "[c].ToString()");
        assert_eq!(read("xml"), "CAST([c] AS nvarchar(max))");
        assert_eq!(read("vector(3)"), "CAST([c] AS nvarchar(max))");
        assert_eq!(read("nvarchar(max)"), "[c]");
        assert_eq!(read("datetime2(7)"), "[c]");
        // Each documented label is the type as DESCRIBE shows it.
        for (label, column) in examples() {
            assert_eq!(column.source_type(), label);
        }
    }

    #[test]
    fn float_precision_and_upper_case_names() {
        assert_eq!(map(&column("FLOAT", None, Some(24), None)).arrow, DataType::Float32);
        assert_eq!(map(&column("INT", None, None, None)).arrow, DataType::Int32);
        assert_eq!(column("TIMESTAMP", None, None, None).source_type(), "rowversion");
        // An unknown fraction is the types' default, 7 digits.
        assert_eq!(map(&column("datetime2", None, None, None)).warnings.len(), 1);
    }
}
