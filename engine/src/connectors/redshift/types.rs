//! Redshift column types, as `svv_columns` spells them, -> Arrow and
//! BigQuery.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};

use crate::type_mapping::{BigQueryType, Confidence, FLOAT32_WARNING, TypeMapping, markdown_table, numeric_target};

/// A Redshift column type, as read from `svv_columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsColumnType {
    /// `data_type`: `integer`, `character varying`, `numeric`, `super`...
    pub data_type: String,
    /// `character_maximum_length` of character and binary types.
    pub length: Option<u32>,
    /// `numeric_precision` of a `numeric`.
    pub precision: Option<u32>,
    /// `numeric_scale` of a `numeric`.
    pub scale: Option<u32>,
}

impl RsColumnType {
    /// A type without length, precision or scale.
    pub fn named(data_type: &str) -> Self {
        Self {
            data_type: data_type.to_owned(),
            length: None,
            precision: None,
            scale: None,
        }
    }

    /// The type as `DESCRIBE` shows it: `character varying(256)`,
    /// `numeric(12,2)`.
    pub fn formatted(&self) -> String {
        match (self.canonical(), self.length, self.precision, self.scale) {
            ("numeric", _, Some(p), s) => format!("numeric({p},{})", s.unwrap_or(0)),
            ("character" | "character varying" | "binary varying", Some(n), _, _) => {
                format!("{}({n})", self.data_type.trim())
            }
            _ => self.data_type.trim().to_owned(),
        }
    }

    /// The type's standard name, whichever alias the catalog used.
    pub fn canonical(&self) -> &str {
        match self.data_type.trim().to_ascii_lowercase().as_str() {
            "int2" | "smallint" => "smallint",
            "int" | "int4" | "integer" => "integer",
            "int8" | "bigint" => "bigint",
            "numeric" | "decimal" => "numeric",
            "float4" | "real" => "real",
            "float" | "float8" | "double precision" => "double precision",
            "bool" | "boolean" => "boolean",
            "char" | "bpchar" | "nchar" | "character" => "character",
            "varchar" | "nvarchar" | "text" | "character varying" => "character varying",
            "date" => "date",
            "timestamp" | "timestamp without time zone" => "timestamp without time zone",
            "timestamptz" | "timestamp with time zone" => "timestamp with time zone",
            "time" | "time without time zone" => "time without time zone",
            "timetz" | "time with time zone" => "time with time zone",
            "interval year to month" => "interval year to month",
            "interval day to second" => "interval day to second",
            "interval" => "interval",
            "geometry" => "geometry",
            "geography" => "geography",
            "hllsketch" => "hllsketch",
            "super" => "super",
            "varbyte" | "varbinary" | "binary varying" => "binary varying",
            _ => "",
        }
    }
}

/// Maps a Redshift column type.
pub fn map(column: &RsColumnType) -> TypeMapping {
    use BigQueryType as Bq;
    use Confidence::{High, Low, Medium};
    let new = TypeMapping::new;
    let bc = "BC dates and years after 9999 have no BigQuery equivalent and are refused";
    match column.canonical() {
        "smallint" => new(DataType::Int16, Bq::Int64, High),
        "integer" => new(DataType::Int32, Bq::Int64, High),
        "bigint" => new(DataType::Int64, Bq::Int64, High),
        // Redshift's default is numeric(18,0); its precision is at most 38.
        "numeric" => numeric_target(column.precision.or(Some(18)), column.scale.or(Some(0))),
        "real" => new(DataType::Float32, Bq::Float64, High).warn(FLOAT32_WARNING),
        "double precision" => new(DataType::Float64, Bq::Float64, High),
        "boolean" => new(DataType::Boolean, Bq::Bool, High),
        "character" => text(High).warn("character(n) values keep their trailing blank padding"),
        "character varying" => text(High),
        "date" => new(DataType::Date32, Bq::Date, High).warn(bc),
        "timestamp without time zone" => {
            new(DataType::Timestamp(TimeUnit::Microsecond, None), Bq::Datetime, High).warn(bc)
        }
        "timestamp with time zone" => new(
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            Bq::Timestamp,
            High,
        )
        .warn(bc),
        "time without time zone" => new(DataType::Time64(TimeUnit::Microsecond), Bq::Time, High),
        "time with time zone" => {
            text(Medium).warn("time with time zone has no BigQuery equivalent: loaded as text, e.g. 10:30:00+02")
        }
        "interval year to month" | "interval day to second" | "interval" => text(Medium).warn(
            "interval loaded as its text form, e.g. 1 year 2 mons or 3 days 04:05:06; BigQuery INTERVAL \
             cannot be loaded from Redshift's text",
        ),
        "geometry" => new(DataType::Binary, Bq::Bytes, Low).warn(
            "geometry travels as WKB (ST_AsBinary) and loads as BYTES; a GEOGRAPHY needs SRID 4326 \
             (ST_Transform(column, 4326)) and ST_GEOGFROMWKB",
        ),
        "geography" => new(DataType::Binary, Bq::Geography, Medium)
            .warn("geography travels as WKB (ST_AsBinary); BigQuery refuses invalid shapes"),
        "hllsketch" => text(Medium)
            .warn("HyperLogLog sketch loaded as its text form; BigQuery's HLL_COUNT functions cannot read it"),
        "super" => new(DataType::Utf8, Bq::Json, Medium)
            .warn("SUPER loaded as its JSON text; BigQuery JSON does not keep key order or duplicate keys")
            .warn("JSON numbers that do not fit INT64, UINT64 or FLOAT64 exactly are refused"),
        "binary varying" => new(DataType::Binary, Bq::Bytes, High),
        _ => text(Low).warn(format!(
            "unknown type {}: loaded as its text form; review",
            column.formatted()
        )),
    }
}

/// A STRING column carrying the value's text form.
fn text(confidence: Confidence) -> TypeMapping {
    TypeMapping::new(DataType::Utf8, BigQueryType::String, confidence)
}

fn sized(data_type: &str, length: u32) -> RsColumnType {
    RsColumnType {
        length: Some(length),
        ..RsColumnType::named(data_type)
    }
}

fn numeric(precision: u32, scale: u32) -> RsColumnType {
    RsColumnType {
        precision: Some(precision),
        scale: Some(scale),
        ..RsColumnType::named("numeric")
    }
}

/// Representative Redshift column types, labelled, for the documentation
/// table.
pub fn examples() -> Vec<(&'static str, RsColumnType)> {
    let named = RsColumnType::named;
    vec![
        ("smallint (int2)", named("smallint")),
        ("integer (int, int4)", named("integer")),
        ("bigint (int8)", named("bigint")),
        ("decimal(12,2) (numeric)", numeric(12, 2)),
        ("decimal(38,10)", numeric(38, 10)),
        ("decimal (default 18,0)", named("numeric")),
        ("real (float4)", named("real")),
        ("double precision (float8, float)", named("double precision")),
        ("boolean (bool)", named("boolean")),
        ("char(10) (character, nchar, bpchar)", sized("character", 10)),
        (
            "varchar(256) (character varying, nvarchar, text)",
            sized("character varying", 256),
        ),
        ("date", named("date")),
        (
            "timestamp (timestamp without time zone)",
            named("timestamp without time zone"),
        ),
        (
            "timestamptz (timestamp with time zone)",
            named("timestamp with time zone"),
        ),
        ("time (time without time zone)", named("time without time zone")),
        ("timetz (time with time zone)", named("time with time zone")),
        ("interval year to month", named("interval year to month")),
        ("interval day to second", named("interval day to second")),
        ("geometry", named("geometry")),
        ("geography", named("geography")),
        ("hllsketch", named("hllsketch")),
        ("super", named("super")),
        ("varbyte(64) (varbinary, binary varying)", sized("binary varying", 64)),
        ("any other type", named("pg_lsn")),
    ]
}

/// The Redshift mapping table in Markdown (embedded in docs/type-mapping.md).
pub fn render_markdown_table() -> String {
    let rows: Vec<(String, TypeMapping)> = examples()
        .into_iter()
        .map(|(label, column)| (label.to_owned(), map(&column)))
        .collect();
    markdown_table("Redshift type", &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_like_their_standard_names() {
        for (alias, standard) in [
            ("int4", "integer"),
            ("float", "double precision"),
            ("varchar", "character varying"),
            ("bpchar", "character"),
            ("timestamptz", "timestamp with time zone"),
            ("varbyte", "binary varying"),
            ("DECIMAL", "numeric"),
        ] {
            assert_eq!(
                map(&RsColumnType::named(alias)),
                map(&RsColumnType::named(standard)),
                "{alias}"
            );
        }
    }

    #[test]
    fn every_redshift_type_has_a_mapping() {
        use BigQueryType as Bq;
        let cases = [
            (RsColumnType::named("smallint"), DataType::Int16, Bq::Int64),
            (RsColumnType::named("bigint"), DataType::Int64, Bq::Int64),
            (
                numeric(12, 2),
                DataType::Decimal128(12, 2),
                Bq::Numeric {
                    precision: 12,
                    scale: 2,
                },
            ),
            (
                RsColumnType::named("numeric"),
                DataType::Decimal128(18, 0),
                Bq::Numeric {
                    precision: 18,
                    scale: 0,
                },
            ),
            (
                numeric(38, 10),
                DataType::Decimal128(38, 10),
                Bq::BigNumeric {
                    precision: 38,
                    scale: 10,
                },
            ),
            (RsColumnType::named("real"), DataType::Float32, Bq::Float64),
            (RsColumnType::named("boolean"), DataType::Boolean, Bq::Bool),
            (sized("character", 3), DataType::Utf8, Bq::String),
            (RsColumnType::named("date"), DataType::Date32, Bq::Date),
            (
                RsColumnType::named("timestamp with time zone"),
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                Bq::Timestamp,
            ),
            (
                RsColumnType::named("timestamp without time zone"),
                DataType::Timestamp(TimeUnit::Microsecond, None),
                Bq::Datetime,
            ),
            (
                RsColumnType::named("time without time zone"),
                DataType::Time64(TimeUnit::Microsecond),
                Bq::Time,
            ),
            (RsColumnType::named("time with time zone"), DataType::Utf8, Bq::String),
            (
                RsColumnType::named("interval day to second"),
                DataType::Utf8,
                Bq::String,
            ),
            (RsColumnType::named("geometry"), DataType::Binary, Bq::Bytes),
            (RsColumnType::named("geography"), DataType::Binary, Bq::Geography),
            (RsColumnType::named("hllsketch"), DataType::Utf8, Bq::String),
            (RsColumnType::named("super"), DataType::Utf8, Bq::Json),
            (sized("binary varying", 8), DataType::Binary, Bq::Bytes),
        ];
        for (column, arrow, bigquery) in cases {
            let mapping = map(&column);
            assert_eq!((&mapping.arrow, mapping.bigquery), (&arrow, bigquery), "{column:?}");
        }
        let unknown = map(&RsColumnType::named("pg_lsn"));
        assert_eq!(unknown.confidence, Confidence::Low);
        assert!(unknown.warnings[0].contains("pg_lsn"));
    }

    #[test]
    fn describe_shows_lengths_and_precision() {
        assert_eq!(sized("character varying", 256).formatted(), "character varying(256)");
        assert_eq!(numeric(12, 2).formatted(), "numeric(12,2)");
        assert_eq!(RsColumnType::named("super").formatted(), "super");
    }
}
