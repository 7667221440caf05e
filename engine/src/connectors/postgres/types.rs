//! PostgreSQL column types -> Arrow and BigQuery.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};

use crate::type_mapping::{BigQueryType, Confidence, FLOAT32_WARNING, TypeMapping, markdown_table, numeric_target};

/// A PostgreSQL column type, as read from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumnType {
    /// `pg_type.typname`: `int4`, `numeric`, `_int4`, `varchar`, `hstore`...
    pub name: String,
    /// `format_type(atttypid, atttypmod)`: `numeric(12,2)`, `character
    /// varying(20)`, `integer[]`...
    pub formatted: String,
    /// The declared precision of a `numeric`.
    pub precision: Option<u32>,
    /// The declared scale of a `numeric`. A negative scale (PostgreSQL 15+)
    /// is read from `formatted`, e.g. `numeric(3,-2)`.
    pub scale: Option<u32>,
    pub kind: PgTypeKind,
}

/// What sort of type a [`PgColumnType`] is (`pg_type.typtype`), with the
/// resolved underlying type where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTypeKind {
    /// A built-in or extension base type (`b`): `int4`, `hstore`...
    Base,
    /// `CREATE TYPE ... AS ENUM` (`e`).
    Enum,
    /// A domain (`d`), with its resolved base type.
    Domain(Box<PgColumnType>),
    /// A range or multirange (`r`, `m`).
    Range,
    /// A composite (row) type (`c`).
    Composite,
    /// An array, with its element type.
    Array(Box<PgColumnType>),
    /// A pseudo-type (`p`): `record`, `anyarray`...
    Pseudo,
}

/// The BigQuery-side caveat of every PostgreSQL array.
const ARRAY_WARNING: &str = "BigQuery arrays are one-dimensional and cannot contain NULL: multi-dimensional arrays \
                             and arrays with NULL elements are refused; a NULL array loads as an empty array";

/// Maps a PostgreSQL column type.
pub fn map(column: &PgColumnType) -> TypeMapping {
    let formatted = &column.formatted;
    match &column.kind {
        PgTypeKind::Base => map_base(column),
        PgTypeKind::Enum => text(Confidence::High),
        PgTypeKind::Domain(base) => map(base).warn(format!(
            "domain {formatted} is loaded as its base type {}; its constraints are not carried over",
            base.formatted
        )),
        PgTypeKind::Range => text(Confidence::Medium).warn(format!(
            "range type {formatted} has no BigQuery equivalent: loaded as its text form, e.g. [1,10)"
        )),
        PgTypeKind::Composite => text(Confidence::Low).warn(format!(
            "composite type {formatted} is loaded as its row text, e.g. (1,abc); to_jsonb(column) at the source \
             gives a JSON object instead"
        )),
        PgTypeKind::Array(element) => map_array(column, element),
        PgTypeKind::Pseudo => {
            text(Confidence::Low).warn(format!("pseudo-type {formatted}: loaded as its text form; review"))
        }
    }
}

fn map_base(column: &PgColumnType) -> TypeMapping {
    use BigQueryType as Bq;
    use Confidence::{High, Low, Medium};
    let new = TypeMapping::new;
    let infinity = "'infinity', '-infinity' and values outside 0001-01-01..9999-12-31 (e.g. BC dates) have no \
                    BigQuery equivalent and are refused";
    let json_numbers = "JSON numbers that do not fit INT64, UINT64 or FLOAT64 exactly are refused";
    match column.name.as_str() {
        "int2" => new(DataType::Int16, Bq::Int64, High),
        "int4" => new(DataType::Int32, Bq::Int64, High),
        "int8" => new(DataType::Int64, Bq::Int64, High),
        "oid" => new(DataType::Int64, Bq::Int64, High),
        "numeric" => map_numeric(column),
        "float4" => new(DataType::Float32, Bq::Float64, High).warn(FLOAT32_WARNING),
        "float8" => new(DataType::Float64, Bq::Float64, High),
        "money" => new(
            DataType::Decimal128(19, 2),
            Bq::Numeric {
                precision: 19,
                scale: 2,
            },
            Medium,
        )
        .warn(
            "money is read as numeric with 2 decimal places: the currency symbol is dropped, and a lc_monetary \
             with other fraction digits changes the scale",
        ),
        "bool" => new(DataType::Boolean, Bq::Bool, High),
        "text" | "varchar" | "name" | "char" | "uuid" | "xml" | "inet" | "cidr" | "macaddr" | "macaddr8" => text(High),
        "bpchar" => text(High).warn("character(n) values keep their trailing blank padding"),
        "citext" => text(Medium).warn(
            "citext compares case-insensitively, BigQuery STRING case-sensitively (unless the column is given \
             COLLATE 'und:ci')",
        ),
        "bytea" => new(DataType::Binary, Bq::Bytes, High),
        "date" => new(DataType::Date32, Bq::Date, High).warn(infinity),
        "time" => new(DataType::Time64(TimeUnit::Microsecond), Bq::Time, High)
            .warn("24:00:00 is refused: BigQuery TIME ends at 23:59:59.999999"),
        "timetz" => {
            text(Medium).warn("time with time zone has no BigQuery equivalent: loaded as text, e.g. 10:30:00+02")
        }
        "timestamp" => new(DataType::Timestamp(TimeUnit::Microsecond, None), Bq::Datetime, High).warn(infinity),
        "timestamptz" => new(
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            Bq::Timestamp,
            High,
        )
        .warn(infinity),
        "interval" => new(DataType::Interval(IntervalUnit::MonthDayNano), Bq::Interval, Medium)
            .warn(crate::type_mapping::arrow::INTERVAL_WARNING),
        "json" => new(DataType::Utf8, Bq::Json, Medium)
            .warn("BigQuery JSON does not keep key order, duplicate keys or whitespace")
            .warn(json_numbers),
        "jsonb" => new(DataType::Utf8, Bq::Json, High).warn(json_numbers),
        "bit" | "varbit" => text(Medium).warn("bit string loaded as its text of 0s and 1s, e.g. 1010"),
        "tsvector" | "tsquery" => {
            text(Medium).warn("full-text search value loaded as its text form; BigQuery has no equivalent")
        }
        "point" | "line" | "lseg" | "box" | "path" | "polygon" | "circle" => text(Medium).warn(
            "planar geometric type loaded as its text form, e.g. (1,2); it is not a GEOGRAPHY (no coordinate system)",
        ),
        "hstore" => text(Medium).warn(
            "hstore loaded as its text form, e.g. \"a\"=>\"1\"; hstore_to_jsonb(column) at the source gives JSON",
        ),
        "geography" => new(DataType::Binary, Bq::Geography, Medium).warn(
            "PostGIS geography travels as WKB (ST_AsBinary); BigQuery expects SRID 4326 and refuses invalid shapes",
        ),
        "geometry" => new(DataType::Binary, Bq::Bytes, Low).warn(
            "PostGIS geometry travels as WKB (ST_AsBinary) and loads as BYTES; a GEOGRAPHY needs SRID 4326 \
             (ST_Transform(column, 4326)) and ST_GEOGFROMWKB",
        ),
        _ => text(Low).warn(format!(
            "unknown type {}: loaded as its text form; review",
            column.formatted
        )),
    }
}

/// A STRING column carrying the value's text form.
fn text(confidence: Confidence) -> TypeMapping {
    TypeMapping::new(DataType::Utf8, BigQueryType::String, confidence)
}

fn map_numeric(column: &PgColumnType) -> TypeMapping {
    // numeric(3,-2) stores 12300: 5 integer digits, no decimal places.
    let (precision, scale) = match negative_scale(&column.formatted) {
        Some(negative) => (column.precision.map(|p| p.saturating_add(negative)), Some(0)),
        None => (column.precision, column.scale),
    };
    numeric_target(precision, scale).warn("NaN and Infinity cannot be loaded: such values are refused")
}

/// The magnitude of a negative scale in `numeric(p,-s)`.
fn negative_scale(formatted: &str) -> Option<u32> {
    let modifiers = formatted.strip_prefix("numeric(")?.strip_suffix(')')?;
    let (_, scale) = modifiers.split_once(',')?;
    scale.trim().strip_prefix('-')?.parse().ok()
}

fn map_array(column: &PgColumnType, element: &PgColumnType) -> TypeMapping {
    let inner = map(element);
    if inner.repeated || inner.bigquery == BigQueryType::Json {
        let hint = if inner.repeated {
            ""
        } else {
            "; array_to_json(column) at the source gives JSON"
        };
        return text(Confidence::Low).warn(format!(
            "{} cannot be a BigQuery array of {}: loaded as its PostgreSQL array text{hint}",
            column.formatted,
            inner.bigquery_ddl()
        ));
    }
    let mut warnings = inner.warnings;
    warnings.push(ARRAY_WARNING.to_owned());
    TypeMapping {
        arrow: DataType::List(Arc::new(Field::new_list_field(inner.arrow, true))),
        bigquery: inner.bigquery,
        repeated: true,
        confidence: inner.confidence.max(Confidence::Medium),
        warnings,
    }
}

fn base(name: &str, formatted: &str) -> PgColumnType {
    of_kind(name, formatted, PgTypeKind::Base)
}

fn of_kind(name: &str, formatted: &str, kind: PgTypeKind) -> PgColumnType {
    PgColumnType {
        name: name.to_owned(),
        formatted: formatted.to_owned(),
        precision: None,
        scale: None,
        kind,
    }
}

fn numeric(precision: Option<u32>, scale: Option<u32>) -> PgColumnType {
    let formatted = match (precision, scale) {
        (Some(p), Some(s)) => format!("numeric({p},{s})"),
        (Some(p), None) => format!("numeric({p})"),
        (None, _) => "numeric".to_owned(),
    };
    PgColumnType {
        precision,
        scale,
        ..base("numeric", &formatted)
    }
}

fn array_of(element: PgColumnType) -> PgColumnType {
    let (name, formatted) = (format!("_{}", element.name), format!("{}[]", element.formatted));
    of_kind(&name, &formatted, PgTypeKind::Array(Box::new(element)))
}

/// Representative PostgreSQL column types, labelled, for the documentation
/// table and for showing what a type maps to.
pub fn examples() -> Vec<(&'static str, PgColumnType)> {
    let mood = || of_kind("mood", "mood", PgTypeKind::Enum);
    let mut negative_scale = numeric(Some(3), None);
    negative_scale.formatted = "numeric(3,-2)".to_owned();
    vec![
        ("smallint (int2)", base("int2", "smallint")),
        ("integer (int4)", base("int4", "integer")),
        ("bigint (int8)", base("int8", "bigint")),
        ("oid", base("oid", "oid")),
        ("numeric(12,2)", numeric(Some(12), Some(2))),
        ("numeric(40,10)", numeric(Some(40), Some(10))),
        ("numeric(3,-2)", negative_scale),
        ("numeric(80,0)", numeric(Some(80), Some(0))),
        ("numeric", numeric(None, None)),
        ("real (float4)", base("float4", "real")),
        ("double precision (float8)", base("float8", "double precision")),
        ("money", base("money", "money")),
        ("boolean (bool)", base("bool", "boolean")),
        ("text", base("text", "text")),
        (
            "character varying(20) (varchar)",
            base("varchar", "character varying(20)"),
        ),
        ("character(10) (bpchar)", base("bpchar", "character(10)")),
        ("citext", base("citext", "citext")),
        ("name", base("name", "name")),
        ("\"char\" (char)", base("char", "\"char\"")),
        ("uuid", base("uuid", "uuid")),
        ("xml", base("xml", "xml")),
        ("inet", base("inet", "inet")),
        ("cidr", base("cidr", "cidr")),
        ("macaddr", base("macaddr", "macaddr")),
        ("macaddr8", base("macaddr8", "macaddr8")),
        ("bytea", base("bytea", "bytea")),
        ("date", base("date", "date")),
        ("time without time zone (time)", base("time", "time without time zone")),
        ("time with time zone (timetz)", base("timetz", "time with time zone")),
        (
            "timestamp without time zone (timestamp)",
            base("timestamp", "timestamp without time zone"),
        ),
        (
            "timestamp with time zone (timestamptz)",
            base("timestamptz", "timestamp with time zone"),
        ),
        ("interval", base("interval", "interval")),
        ("json", base("json", "json")),
        ("jsonb", base("jsonb", "jsonb")),
        ("bit(8) (bit)", base("bit", "bit(8)")),
        ("bit varying(64) (varbit)", base("varbit", "bit varying(64)")),
        ("tsvector", base("tsvector", "tsvector")),
        ("tsquery", base("tsquery", "tsquery")),
        ("point", base("point", "point")),
        ("line", base("line", "line")),
        ("lseg", base("lseg", "lseg")),
        ("box", base("box", "box")),
        ("path", base("path", "path")),
        ("polygon", base("polygon", "polygon")),
        ("circle", base("circle", "circle")),
        ("hstore (extension)", base("hstore", "hstore")),
        ("geography (PostGIS)", base("geography", "geography")),
        ("geometry (PostGIS)", base("geometry", "geometry")),
        ("ltree (any other type)", base("ltree", "ltree")),
        ("mood (enum)", mood()),
        (
            "positive_int (domain over integer)",
            of_kind("positive_int", "positive_int", domain_over("int4", "integer")),
        ),
        (
            "int4range (range)",
            of_kind("int4range", "int4range", PgTypeKind::Range),
        ),
        (
            "tstzmultirange (multirange)",
            of_kind("tstzmultirange", "tstzmultirange", PgTypeKind::Range),
        ),
        (
            "address (composite)",
            of_kind("address", "address", PgTypeKind::Composite),
        ),
        ("anyarray (pseudo)", of_kind("anyarray", "anyarray", PgTypeKind::Pseudo)),
        ("integer[] (_int4)", array_of(base("int4", "integer"))),
        ("text[] (_text)", array_of(base("text", "text"))),
        ("numeric(12,2)[] (_numeric)", array_of(numeric(Some(12), Some(2)))),
        (
            "timestamp with time zone[] (_timestamptz)",
            array_of(base("timestamptz", "timestamp with time zone")),
        ),
        ("mood[] (enum array)", array_of(mood())),
        ("jsonb[] (_jsonb)", array_of(base("jsonb", "jsonb"))),
    ]
}

fn domain_over(name: &str, formatted: &str) -> PgTypeKind {
    PgTypeKind::Domain(Box::new(base(name, formatted)))
}

/// The PostgreSQL mapping table in Markdown (embedded in docs/type-mapping.md).
pub fn render_markdown_table() -> String {
    let rows: Vec<(String, TypeMapping)> = examples()
        .into_iter()
        .map(|(label, column)| (label.to_owned(), map(&column)))
        .collect();
    markdown_table("PostgreSQL type", &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Confidence::{High, Low, Medium};

    fn utc() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
    }

    fn list(element: DataType) -> DataType {
        DataType::List(Arc::new(Field::new_list_field(element, true)))
    }

    /// Every example's exact mapping: Arrow type, BigQuery DDL, confidence,
    /// and one fragment per warning (in order).
    fn expected() -> Vec<(&'static str, DataType, &'static str, Confidence, Vec<&'static str>)> {
        use DataType as D;
        let nan = "NaN and Infinity cannot be loaded";
        let infinity = "'infinity', '-infinity'";
        let numbers = "JSON numbers that do not fit";
        let text = |label| (label, D::Utf8, "STRING", High, vec![]);
        vec![
            ("smallint (int2)", D::Int16, "INT64", High, vec![]),
            ("integer (int4)", D::Int32, "INT64", High, vec![]),
            ("bigint (int8)", D::Int64, "INT64", High, vec![]),
            ("oid", D::Int64, "INT64", High, vec![]),
            ("numeric(12,2)", D::Decimal128(12, 2), "NUMERIC(12, 2)", High, vec![nan]),
            (
                "numeric(40,10)",
                D::Decimal256(40, 10),
                "BIGNUMERIC(40, 10)",
                High,
                vec![nan],
            ),
            ("numeric(3,-2)", D::Decimal128(5, 0), "NUMERIC(5, 0)", High, vec![nan]),
            (
                "numeric(80,0)",
                D::Utf8,
                "STRING",
                Medium,
                vec!["decimal(80, 0) does not fit BIGNUMERIC", nan],
            ),
            (
                "numeric",
                D::Decimal256(76, 38),
                "BIGNUMERIC(76, 38)",
                Medium,
                vec!["unconstrained decimal", nan],
            ),
            ("real (float4)", D::Float32, "FLOAT64", High, vec!["1.100000023841858"]),
            ("double precision (float8)", D::Float64, "FLOAT64", High, vec![]),
            (
                "money",
                D::Decimal128(19, 2),
                "NUMERIC(19, 2)",
                Medium,
                vec!["lc_monetary"],
            ),
            ("boolean (bool)", D::Boolean, "BOOL", High, vec![]),
            text("text"),
            text("character varying(20) (varchar)"),
            ("character(10) (bpchar)", D::Utf8, "STRING", High, vec!["blank padding"]),
            ("citext", D::Utf8, "STRING", Medium, vec!["case-insensitively"]),
            text("name"),
            text("\"char\" (char)"),
            text("uuid"),
            text("xml"),
            text("inet"),
            text("cidr"),
            text("macaddr"),
            text("macaddr8"),
            ("bytea", D::Binary, "BYTES", High, vec![]),
            ("date", D::Date32, "DATE", High, vec![infinity]),
            (
                "time without time zone (time)",
                D::Time64(TimeUnit::Microsecond),
                "TIME",
                High,
                vec!["24:00:00"],
            ),
            (
                "time with time zone (timetz)",
                D::Utf8,
                "STRING",
                Medium,
                vec!["time with time zone"],
            ),
            (
                "timestamp without time zone (timestamp)",
                D::Timestamp(TimeUnit::Microsecond, None),
                "DATETIME",
                High,
                vec![infinity],
            ),
            (
                "timestamp with time zone (timestamptz)",
                utc(),
                "TIMESTAMP",
                High,
                vec![infinity],
            ),
            (
                "interval",
                D::Interval(IntervalUnit::MonthDayNano),
                "INTERVAL",
                Medium,
                vec!["10000 years"],
            ),
            ("json", D::Utf8, "JSON", Medium, vec!["key order", numbers]),
            ("jsonb", D::Utf8, "JSON", High, vec![numbers]),
            ("bit(8) (bit)", D::Utf8, "STRING", Medium, vec!["0s and 1s"]),
            ("bit varying(64) (varbit)", D::Utf8, "STRING", Medium, vec!["0s and 1s"]),
            ("tsvector", D::Utf8, "STRING", Medium, vec!["full-text"]),
            ("tsquery", D::Utf8, "STRING", Medium, vec!["full-text"]),
            ("point", D::Utf8, "STRING", Medium, vec!["planar"]),
            ("line", D::Utf8, "STRING", Medium, vec!["planar"]),
            ("lseg", D::Utf8, "STRING", Medium, vec!["planar"]),
            ("box", D::Utf8, "STRING", Medium, vec!["planar"]),
            ("path", D::Utf8, "STRING", Medium, vec!["planar"]),
            ("polygon", D::Utf8, "STRING", Medium, vec!["planar"]),
            ("circle", D::Utf8, "STRING", Medium, vec!["planar"]),
            ("hstore (extension)", D::Utf8, "STRING", Medium, vec!["hstore_to_jsonb"]),
            ("geography (PostGIS)", D::Binary, "GEOGRAPHY", Medium, vec!["WKB"]),
            ("geometry (PostGIS)", D::Binary, "BYTES", Low, vec!["SRID 4326"]),
            (
                "ltree (any other type)",
                D::Utf8,
                "STRING",
                Low,
                vec!["unknown type ltree"],
            ),
            text("mood (enum)"),
            (
                "positive_int (domain over integer)",
                D::Int32,
                "INT64",
                High,
                vec!["domain positive_int is loaded as its base type integer"],
            ),
            (
                "int4range (range)",
                D::Utf8,
                "STRING",
                Medium,
                vec!["range type int4range"],
            ),
            (
                "tstzmultirange (multirange)",
                D::Utf8,
                "STRING",
                Medium,
                vec!["range type tstzmultirange"],
            ),
            (
                "address (composite)",
                D::Utf8,
                "STRING",
                Low,
                vec!["composite type address"],
            ),
            (
                "anyarray (pseudo)",
                D::Utf8,
                "STRING",
                Low,
                vec!["pseudo-type anyarray"],
            ),
            (
                "integer[] (_int4)",
                list(D::Int32),
                "ARRAY<INT64>",
                Medium,
                vec!["one-dimensional"],
            ),
            (
                "text[] (_text)",
                list(D::Utf8),
                "ARRAY<STRING>",
                Medium,
                vec!["one-dimensional"],
            ),
            (
                "numeric(12,2)[] (_numeric)",
                list(D::Decimal128(12, 2)),
                "ARRAY<NUMERIC(12, 2)>",
                Medium,
                vec![nan, "one-dimensional"],
            ),
            (
                "timestamp with time zone[] (_timestamptz)",
                list(utc()),
                "ARRAY<TIMESTAMP>",
                Medium,
                vec![infinity, "one-dimensional"],
            ),
            (
                "mood[] (enum array)",
                list(D::Utf8),
                "ARRAY<STRING>",
                Medium,
                vec!["one-dimensional"],
            ),
            (
                "jsonb[] (_jsonb)",
                D::Utf8,
                "STRING",
                Low,
                vec!["jsonb[] cannot be a BigQuery array of JSON"],
            ),
        ]
    }

    #[test]
    fn every_example_maps_exactly() {
        let examples = examples();
        let expected = expected();
        let labels: Vec<&str> = examples.iter().map(|(label, _)| *label).collect();
        let expected_labels: Vec<&str> = expected.iter().map(|e| e.0).collect();
        assert_eq!(labels, expected_labels);
        assert!(labels.len() >= 60, "{}", labels.len());
        for ((label, column), (_, arrow, bigquery, confidence, warnings)) in examples.iter().zip(expected) {
            let m = map(column);
            assert_eq!(m.arrow, arrow, "{label}: arrow");
            assert_eq!(m.bigquery_ddl(), bigquery, "{label}: bigquery");
            assert_eq!(m.repeated, bigquery.starts_with("ARRAY<"), "{label}: repeated");
            assert_eq!(m.confidence, confidence, "{label}: confidence");
            assert_eq!(m.warnings.len(), warnings.len(), "{label}: {:?}", m.warnings);
            for (actual, fragment) in m.warnings.iter().zip(warnings) {
                assert!(actual.contains(fragment), "{label}: {actual:?} lacks {fragment:?}");
            }
        }
    }

    #[test]
    fn numeric_text_when_too_wide() {
        let m = map(&numeric(Some(100), Some(50)));
        assert_eq!((m.arrow, m.bigquery), (DataType::Utf8, BigQueryType::String));
    }

    #[test]
    fn negative_scale_is_read_from_formatted_text() {
        assert_eq!(negative_scale("numeric(3,-2)"), Some(2));
        assert_eq!(negative_scale("numeric(3, -2)"), Some(2));
        assert_eq!(negative_scale("numeric(12,2)"), None);
        assert_eq!(negative_scale("numeric"), None);
        assert_eq!(negative_scale("integer"), None);
    }

    #[test]
    fn nested_domains_keep_every_warning() {
        let inner = of_kind("positive_int", "positive_int", domain_over("int4", "integer"));
        let outer = of_kind("small_positive", "small_positive", PgTypeKind::Domain(Box::new(inner)));
        let m = map(&outer);
        assert_eq!(
            (m.arrow, m.bigquery, m.confidence),
            (DataType::Int32, BigQueryType::Int64, High)
        );
        assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
        assert!(m.warnings[0].contains("domain positive_int"));
        assert!(m.warnings[1].contains("domain small_positive is loaded as its base type positive_int"));
    }

    #[test]
    fn domain_over_array_is_repeated() {
        let ints = array_of(base("int4", "integer"));
        let m = map(&of_kind("int_list", "int_list", PgTypeKind::Domain(Box::new(ints))));
        assert_eq!(m.arrow, list(DataType::Int32));
        assert!(m.repeated);
        assert_eq!(m.warnings.len(), 2);
    }

    #[test]
    fn arrays_of_arrays_are_text() {
        let ints = array_of(base("int4", "integer"));
        let domain = of_kind("int_list", "int_list", PgTypeKind::Domain(Box::new(ints)));
        let m = map(&array_of(domain));
        assert_eq!(
            (m.arrow, m.bigquery, m.repeated, m.confidence),
            (DataType::Utf8, BigQueryType::String, false, Low)
        );
        assert_eq!(
            m.warnings,
            vec!["int_list[] cannot be a BigQuery array of ARRAY<INT64>: loaded as its PostgreSQL array text"]
        );
    }

    #[test]
    fn arrays_of_json_are_text() {
        let m = map(&array_of(base("json", "json")));
        assert_eq!(
            (m.arrow, m.bigquery, m.repeated),
            (DataType::Utf8, BigQueryType::String, false)
        );
        assert!(m.warnings[0].contains("array_to_json"));
    }

    #[test]
    fn arrays_keep_the_weakest_confidence() {
        let m = map(&array_of(base("ltree", "ltree")));
        assert_eq!(
            (m.bigquery_ddl(), m.arrow, m.confidence),
            ("ARRAY<STRING>".to_owned(), list(DataType::Utf8), Low)
        );
        let m = map(&array_of(base("interval", "interval")));
        assert_eq!(m.arrow, list(DataType::Interval(IntervalUnit::MonthDayNano)));
        assert_eq!(m.confidence, Medium);
    }

    #[test]
    fn mode_follows_nullability_and_arrays() {
        use crate::type_mapping::Mode;
        assert_eq!(map(&base("int4", "integer")).mode(true), Mode::Nullable);
        assert_eq!(map(&base("int4", "integer")).mode(false), Mode::Required);
        assert_eq!(map(&array_of(base("int4", "integer"))).mode(true), Mode::Repeated);
    }
}
