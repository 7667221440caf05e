//! PostgreSQL as a source, against a real server: schemas, tables,
//! descriptions, exact round trips of values through binary `COPY`, refused
//! values, pushdown through DataFusion and hostile names.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{ETL_PASSWORD, PgServer};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int32Type, IntervalMonthDayNano, TimeUnit, i256};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::TryStreamExt;
use sluice_catalog::{Catalog, MasterKey, OptionValue};
use sluice_engine::connectors::postgres::types::{PgColumnType, PgTypeKind, map};
use sluice_engine::contract::{
    ConnectFailureKind, ScanRequest, Source, SourceError, TableDescription, TableKind, TableRef,
};
use sluice_engine::sources::SourceTable;
use sluice_engine::{ConnectionManager, CreateConnection};

/// A source for `pg` built the way the server builds one: a connection
/// saved (and tested) in a catalog, then opened as a source.
async fn source_with(pg: &PgServer, port: u16, password: &str, validate: bool) -> Arc<dyn Source> {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = MasterKey::from_hex(&"5a".repeat(32)).expect("key");
    let catalog = Arc::new(Catalog::open(&dir.path().join("catalog"), key).expect("open catalog"));
    let manager = ConnectionManager::new(catalog, Duration::from_secs(10));
    let text = |s: &str| OptionValue::Text(s.to_owned());
    let options = BTreeMap::from([
        ("host".to_owned(), text(&pg.host())),
        ("port".to_owned(), OptionValue::Integer(i64::from(port))),
        ("database".to_owned(), text(&pg.db)),
        ("user".to_owned(), text(&pg.user)),
        ("password".to_owned(), text(password)),
    ]);
    manager
        .create(CreateConnection {
            name: "pg".into(),
            type_name: "postgres".into(),
            options,
            if_not_exists: false,
            validate,
        })
        .await
        .expect("create connection");
    manager.source("pg").expect("postgres is a source")
}

async fn source(pg: &PgServer) -> Arc<dyn Source> {
    source_with(pg, pg.port, ETL_PASSWORD, true).await
}

fn table(schema: &str, name: &str) -> TableRef {
    TableRef {
        schema: schema.into(),
        name: name.into(),
    }
}

fn all_columns(description: &TableDescription) -> ScanRequest {
    ScanRequest {
        columns: (0..description.columns.len()).collect(),
        ..ScanRequest::default()
    }
}

async fn scan(
    source: &Arc<dyn Source>,
    description: &TableDescription,
    request: ScanRequest,
) -> Result<Vec<RecordBatch>, DataFusionError> {
    let stream = source
        .scan(description, &request)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    stream.try_collect().await
}

fn source_error(err: &DataFusionError) -> &SourceError {
    match err {
        DataFusionError::External(inner) => inner.downcast_ref::<SourceError>().expect("a SourceError"),
        other => panic!("not a source error: {other:?}"),
    }
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<ScalarValue>> {
    batches
        .iter()
        .flat_map(|batch| {
            (0..batch.num_rows()).map(move |row| {
                batch
                    .columns()
                    .iter()
                    .map(|column| ScalarValue::try_from_array(column, row).expect("scalar"))
                    .collect::<Vec<_>>()
            })
        })
        .collect()
}

#[tokio::test]
async fn schemas_and_tables_are_listed_with_kinds_and_statistics() {
    let pg = PgServer::start();
    pg.psql_admin(
        r#"
        CREATE SCHEMA "Sales EU";
        CREATE SCHEMA analytics;
        CREATE TABLE "Sales EU"."Customers" (id int);
        CREATE TABLE public.orders (id int PRIMARY KEY, amount numeric(12,2));
        INSERT INTO public.orders SELECT g, g FROM generate_series(1, 100) g;
        ANALYZE public.orders;
        CREATE TABLE public.never_analyzed (id int);
        CREATE VIEW public.order_view AS SELECT id FROM public.orders;
        CREATE MATERIALIZED VIEW public.order_totals AS SELECT sum(amount) AS total FROM public.orders;
        CREATE TABLE public.events (id int, at date) PARTITION BY RANGE (at);
        CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        INSERT INTO public.events SELECT g, DATE '2024-06-01' + g FROM generate_series(1, 300) g;
        ANALYZE public.events_2024;
        ANALYZE public.events_2025;
        CREATE TEMP TABLE scratch (x int);
        "#,
    );
    let source = source(&pg).await;

    // pg_temp_N and pg_toast_temp_N exist now, as do pg_toast, pg_catalog
    // and information_schema: none is listed.
    assert_eq!(source.schemas().await.unwrap(), vec!["Sales EU", "analytics", "public"]);

    let public = source.tables(Some("public")).await.unwrap();
    let listed: Vec<(&str, TableKind)> = public.iter().map(|t| (t.table.name.as_str(), t.kind)).collect();
    assert_eq!(
        listed,
        vec![
            ("events", TableKind::Partitioned),
            ("never_analyzed", TableKind::Table),
            ("order_totals", TableKind::MaterializedView),
            ("order_view", TableKind::View),
            ("orders", TableKind::Table),
        ]
    );
    let info = |name: &str| public.iter().find(|t| t.table.name == name).unwrap();
    assert_eq!(info("orders").estimated_rows, Some(100));
    assert!(info("orders").size_bytes.unwrap() > 0);
    let analyzed = info("orders").last_modified.expect("ANALYZE is recorded");
    assert!((chrono::Utc::now() - analyzed).num_minutes().abs() < 10, "{analyzed}");
    // Partitioned tables add up their partitions.
    assert_eq!(info("events").estimated_rows, Some(300));
    assert!(info("events").size_bytes.unwrap() > 0);
    assert!(info("events").last_modified.is_some());
    assert_eq!(info("never_analyzed").estimated_rows, None);
    assert_eq!(info("never_analyzed").last_modified, None);
    assert_eq!(
        (info("order_view").estimated_rows, info("order_view").size_bytes),
        (None, None)
    );

    let everything: Vec<(String, String)> = source
        .tables(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.table.schema, t.table.name))
        .collect();
    let expected: Vec<(String, String)> = [
        ("Sales EU", "Customers"),
        ("public", "events"),
        ("public", "never_analyzed"),
        ("public", "order_totals"),
        ("public", "order_view"),
        ("public", "orders"),
    ]
    .iter()
    .map(|(s, n)| (s.to_string(), n.to_string()))
    .collect();
    assert_eq!(everything, expected);
    assert!(source.tables(Some("analytics")).await.unwrap().is_empty());

    match source.tables(Some("sales eu")).await.unwrap_err() {
        SourceError::NotFound { kind, name, nearby } => {
            assert_eq!((kind, name.as_str()), ("schema", "sales eu"));
            assert_eq!(nearby, vec!["Sales EU", "analytics", "public"]);
        }
        other => panic!("{other:?}"),
    }
}

const ALL_TYPES: &str = r#"
    CREATE TYPE mood AS ENUM ('happy', 'sad');
    CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
    CREATE TABLE all_types (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        flag boolean NOT NULL DEFAULT true,
        small smallint,
        gone integer,
        num integer,
        big bigint,
        object oid,
        f4 real,
        f8 double precision,
        price numeric(12,2),
        wide numeric(38,9),
        huge numeric(76,38),
        free numeric,
        label text DEFAULT 'x',
        code varchar(10),
        fixed char(3),
        doc json,
        docb jsonb,
        raw bytea,
        day date,
        at timestamp,
        at_tz timestamptz DEFAULT now(),
        clock time,
        span interval,
        ints integer[],
        texts text[],
        prices numeric(12,2)[],
        uid uuid,
        feeling mood,
        pos positive_int,
        cash money
    );
    ALTER TABLE all_types DROP COLUMN gone;
    CREATE INDEX ON all_types (big);
    CREATE UNIQUE INDEX ON all_types (code, label);
    INSERT INTO all_types (id) VALUES (1);
    INSERT INTO all_types (id, flag, small, num, big, object, f4, f8, price, wide, huge, free, label, code, fixed,
                           doc, docb, raw, day, at, at_tz, clock, span, ints, texts, prices, uid, feeling, pos, cash)
    VALUES
    (2, true, 32767, 2147483647, 9223372036854775807, 4294967295, '-0', '1.7976931348623157e308',
     9999999999.99, 99999999999999999999999999999.999999999,
     '99999999999999999999999999999999999999.99999999999999999999999999999999999999',
     '123456789012345678901234567890.123456789012345678901234567890',
     '🚀 emoji 𝄞 ünï', 'abc', 'ab', '{"b": 1,  "a": [1, 2]}', '{"b": 1,  "a": [1, 2]}', '\x00ff00',
     '2024-02-29', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.123456+02', '23:59:59.999999',
     '1 year 2 months 3 days 04:05:06.789', '{}', '{"a","🚀",""}', '{1.50,-2.25}',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', 7, 12.34),
    (3, false, -32768, -2147483648, -9223372036854775808, 0, '3.4028235e38', '-0',
     -9999999999.99, -99999999999999999999999999999.999999999,
     '-0.00000000000000000000000000000000000001', '-0.000000000000000000000000000000000001',
     '', '', '   ', '[]', 'null', '\x',
     '0001-01-01', '1970-01-01 00:00:00', '1900-01-01 00:00:00.000001+00', '00:00:00',
     '-1 days -00:00:01', '{1,-2,3}', '{}', '{}', '00000000-0000-0000-0000-000000000000', 'sad', 1, -0.01);
"#;

fn pg_type(name: &str, formatted: &str, kind: PgTypeKind) -> PgColumnType {
    PgColumnType {
        name: name.into(),
        formatted: formatted.into(),
        precision: None,
        scale: None,
        kind,
    }
}

fn base(name: &str, formatted: &str) -> PgColumnType {
    pg_type(name, formatted, PgTypeKind::Base)
}

fn numeric(precision: Option<u32>, scale: Option<u32>, formatted: &str) -> PgColumnType {
    PgColumnType {
        precision,
        scale,
        ..base("numeric", formatted)
    }
}

fn array(name: &str, element: PgColumnType) -> PgColumnType {
    let formatted = format!("{}[]", element.formatted);
    pg_type(name, &formatted, PgTypeKind::Array(Box::new(element)))
}

#[tokio::test]
async fn describe_gives_exact_columns_keys_and_mappings() {
    let pg = PgServer::start();
    pg.psql_admin(ALL_TYPES);
    pg.psql_admin("ANALYZE all_types;");
    let source = source(&pg).await;
    let description = source.describe(&table("public", "all_types")).await.unwrap();
    assert_eq!(description.table, table("public", "all_types"));
    assert_eq!(description.kind, TableKind::Table);
    assert_eq!(description.estimated_rows, Some(3));

    type Expected = (
        &'static str,
        &'static str,
        bool,
        Option<&'static str>,
        Option<u32>,
        bool,
        PgColumnType,
    );
    let n = |name: &'static str, formatted: &'static str, ty: PgColumnType| -> Expected {
        (name, formatted, true, None, None, false, ty)
    };
    let expected: Vec<Expected> = vec![
        (
            "id",
            "bigint",
            false,
            Some("GENERATED BY DEFAULT AS IDENTITY"),
            Some(1),
            true,
            base("int8", "bigint"),
        ),
        (
            "flag",
            "boolean",
            false,
            Some("true"),
            None,
            false,
            base("bool", "boolean"),
        ),
        n("small", "smallint", base("int2", "smallint")),
        n("num", "integer", base("int4", "integer")),
        ("big", "bigint", true, None, None, true, base("int8", "bigint")),
        n("object", "oid", base("oid", "oid")),
        n("f4", "real", base("float4", "real")),
        n("f8", "double precision", base("float8", "double precision")),
        n("price", "numeric(12,2)", numeric(Some(12), Some(2), "numeric(12,2)")),
        n("wide", "numeric(38,9)", numeric(Some(38), Some(9), "numeric(38,9)")),
        n("huge", "numeric(76,38)", numeric(Some(76), Some(38), "numeric(76,38)")),
        n("free", "numeric", numeric(None, None, "numeric")),
        (
            "label",
            "text",
            true,
            Some("'x'::text"),
            None,
            false,
            base("text", "text"),
        ),
        (
            "code",
            "character varying(10)",
            true,
            None,
            None,
            true,
            base("varchar", "character varying(10)"),
        ),
        n("fixed", "character(3)", base("bpchar", "character(3)")),
        n("doc", "json", base("json", "json")),
        n("docb", "jsonb", base("jsonb", "jsonb")),
        n("raw", "bytea", base("bytea", "bytea")),
        n("day", "date", base("date", "date")),
        n(
            "at",
            "timestamp without time zone",
            base("timestamp", "timestamp without time zone"),
        ),
        (
            "at_tz",
            "timestamp with time zone",
            true,
            Some("now()"),
            None,
            false,
            base("timestamptz", "timestamp with time zone"),
        ),
        n(
            "clock",
            "time without time zone",
            base("time", "time without time zone"),
        ),
        n("span", "interval", base("interval", "interval")),
        n("ints", "integer[]", array("_int4", base("int4", "integer"))),
        n("texts", "text[]", array("_text", base("text", "text"))),
        n(
            "prices",
            "numeric(12,2)[]",
            array("_numeric", numeric(Some(12), Some(2), "numeric(12,2)")),
        ),
        n("uid", "uuid", base("uuid", "uuid")),
        n("feeling", "mood", pg_type("mood", "mood", PgTypeKind::Enum)),
        n(
            "pos",
            "positive_int",
            pg_type(
                "positive_int",
                "positive_int",
                PgTypeKind::Domain(Box::new(base("int4", "integer"))),
            ),
        ),
        n("cash", "money", base("money", "money")),
    ];
    assert_eq!(description.columns.len(), expected.len());
    for (i, (column, (name, source_type, nullable, default, key, indexed, ty))) in
        description.columns.iter().zip(expected).enumerate()
    {
        assert_eq!(column.name, name);
        assert_eq!(column.ordinal, i as u32 + 1, "{name}: ordinals skip dropped columns");
        assert_eq!(column.source_type, source_type, "{name}");
        assert_eq!(column.nullable, nullable, "{name}");
        assert_eq!(column.default.as_deref(), default, "{name}");
        assert_eq!(column.primary_key_position, key, "{name}");
        assert_eq!(column.indexed, indexed, "{name}");
        assert_eq!(column.mapping, map(&ty), "{name}");
    }
    // A few mappings spelled out.
    let arrow = |name: &str| {
        description
            .columns
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .mapping
            .arrow
            .clone()
    };
    assert_eq!(arrow("huge"), DataType::Decimal256(76, 38));
    assert_eq!(arrow("pos"), DataType::Int32);
    assert_eq!(arrow("cash"), DataType::Decimal128(19, 2));
    assert_eq!(
        arrow("at_tz"),
        DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
    );

    // What the scan sends: text-like columns as ::text, money as ::numeric,
    // the domain as its base type.
    let query = source.scan_query(&description, &all_columns(&description));
    assert_eq!(
        query,
        "SELECT \"id\", \"flag\", \"small\", \"num\", \"big\", \"object\", \"f4\", \"f8\", \"price\", \"wide\", \
         \"huge\", \"free\", \"label\", \"code\", \"fixed\", \"doc\", \"docb\", \"raw\", \"day\", \"at\", \"at_tz\", \
         \"clock\", \"span\", \"ints\", \"texts\", \"prices\", \"uid\"::text, \"feeling\"::text, \
         \"pos\"::integer, \"cash\"::numeric FROM \"public\".\"all_types\""
    );
}

fn utc(micros: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(micros), Some(Arc::from("UTC")))
}

fn list(values: &[ScalarValue], element: DataType) -> ScalarValue {
    ScalarValue::List(ScalarValue::new_list(values, &element, true))
}

fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_owned()))
}

fn big(digits: &str) -> i256 {
    i256::from_string(digits).expect("decimal digits")
}

#[tokio::test]
async fn scans_round_trip_every_value_exactly() {
    let pg = PgServer::start();
    pg.psql_admin(ALL_TYPES);
    let source = source(&pg).await;
    let description = source.describe(&table("public", "all_types")).await.unwrap();
    let batches = scan(&source, &description, all_columns(&description)).await.unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(
        batches[0].schema(),
        description.arrow_schema(),
        "batches have the description's schema"
    );
    let mut values = rows(&batches);
    values.sort_by(|a, b| a[0].partial_cmp(&b[0]).expect("ids compare"));
    assert_eq!(values.len(), 3);

    // Row 1: NULL everywhere but the key and the columns with defaults.
    assert_eq!(values[0][0], ScalarValue::Int64(Some(1)));
    assert_eq!(values[0][1], ScalarValue::Boolean(Some(true)));
    for (column, value) in description.columns.iter().zip(&values[0]) {
        assert_eq!(value.is_null(), column.default.is_none(), "{}: {value:?}", column.name);
    }
    assert_eq!(values[0][12], text("x"));

    let d128 = |v: i128, p: u8, s: i8| ScalarValue::Decimal128(Some(v), p, s);
    let d256 = |v: i256| ScalarValue::Decimal256(Some(v), 76, 38);
    let money = DataType::Decimal128(12, 2);
    let expected_2 = vec![
        ScalarValue::Int64(Some(2)),
        ScalarValue::Boolean(Some(true)),
        ScalarValue::Int16(Some(32767)),
        ScalarValue::Int32(Some(2147483647)),
        ScalarValue::Int64(Some(i64::MAX)),
        ScalarValue::Int64(Some(4294967295)),
        ScalarValue::Float32(Some(-0.0)),
        ScalarValue::Float64(Some(f64::MAX)),
        d128(999999999999, 12, 2),
        d128(99999999999999999999999999999999999999, 38, 9),
        d256(big(&"9".repeat(76))),
        d256(big(
            "12345678901234567890123456789012345678901234567890123456789000000000",
        )),
        text("🚀 emoji 𝄞 ünï"),
        text("abc"),
        text("ab "),
        text("{\"b\": 1,  \"a\": [1, 2]}"),
        text("{\"a\": [1, 2], \"b\": 1}"),
        ScalarValue::Binary(Some(vec![0, 255, 0])),
        ScalarValue::Date32(Some(19782)),
        ScalarValue::TimestampMicrosecond(Some(1_704_164_645_123_456), None),
        utc(1_704_157_445_123_456),
        ScalarValue::Time64Microsecond(Some(86_399_999_999)),
        ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(14, 3, 14_706_789_000_000))),
        list(&[], DataType::Int32),
        list(&[text("a"), text("🚀"), text("")], DataType::Utf8),
        list(&[d128(150, 12, 2), d128(-225, 12, 2)], money.clone()),
        text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        text("happy"),
        ScalarValue::Int32(Some(7)),
        d128(1234, 19, 2),
    ];
    let expected_3 = vec![
        ScalarValue::Int64(Some(3)),
        ScalarValue::Boolean(Some(false)),
        ScalarValue::Int16(Some(-32768)),
        ScalarValue::Int32(Some(-2147483648)),
        ScalarValue::Int64(Some(i64::MIN)),
        ScalarValue::Int64(Some(0)),
        ScalarValue::Float32(Some(f32::MAX)),
        ScalarValue::Float64(Some(-0.0)),
        d128(-999999999999, 12, 2),
        d128(-99999999999999999999999999999999999999, 38, 9),
        d256(i256::from_i128(-1)),
        d256(i256::from_i128(-100)),
        text(""),
        text(""),
        text("   "),
        text("[]"),
        text("null"),
        ScalarValue::Binary(Some(vec![])),
        ScalarValue::Date32(Some(-719_162)),
        ScalarValue::TimestampMicrosecond(Some(0), None),
        utc(-2_208_988_799_999_999),
        ScalarValue::Time64Microsecond(Some(0)),
        ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, -1, -1_000_000_000))),
        list(
            &[
                ScalarValue::Int32(Some(1)),
                ScalarValue::Int32(Some(-2)),
                ScalarValue::Int32(Some(3)),
            ],
            DataType::Int32,
        ),
        list(&[], DataType::Utf8),
        list(&[], money),
        text("00000000-0000-0000-0000-000000000000"),
        text("sad"),
        ScalarValue::Int32(Some(1)),
        d128(-1, 19, 2),
    ];
    for (row, expected) in [(&values[1], expected_2), (&values[2], expected_3)] {
        assert_eq!(row.len(), expected.len());
        for ((column, actual), expected) in description.columns.iter().zip(row).zip(expected) {
            assert_eq!(actual, &expected, "column {}", column.name);
        }
    }
    // Negative zero survives (ScalarValue compares floats bit for bit).
    assert!(matches!(values[1][6], ScalarValue::Float32(Some(v)) if v.is_sign_negative()));

    // A projection reads only its columns, in the requested order.
    let request = ScanRequest {
        columns: vec![25, 0],
        filter: Some("(\"id\" >= 2)".into()),
        limit: None,
        offset: 0,
        segment: None,
        batch_rows: None,
    };
    let batches = scan(&source, &description, request).await.unwrap();
    assert_eq!(
        rows(&batches),
        vec![
            vec![values[1][25].clone(), ScalarValue::Int64(Some(2))],
            vec![values[2][25].clone(), ScalarValue::Int64(Some(3))],
        ]
    );
    assert_eq!(
        batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        vec!["prices", "id"]
    );
}

#[tokio::test]
async fn values_arrow_cannot_hold_are_refused_naming_the_column() {
    let pg = PgServer::start();
    pg.psql_admin(
        "CREATE TABLE specials (id int, d date, ts timestamp, tstz timestamptz, n numeric(10,2), nn numeric,
                                ints int[], span interval, t time, very numeric(80,2));
         INSERT INTO specials (id, d) VALUES (1, 'infinity'), (2, '-infinity');
         INSERT INTO specials (id, ts) VALUES (3, 'infinity');
         INSERT INTO specials (id, tstz) VALUES (4, '-infinity');
         INSERT INTO specials (id, n) VALUES (5, 'NaN');
         INSERT INTO specials (id, nn) VALUES (6, 'Infinity'), (7, '-Infinity'),
                                              (8, '0.000000000000000000000000000000000000001');
         INSERT INTO specials (id, ints) VALUES (9, '{{1,2},{3,4}}'), (10, '{1,NULL}');
         INSERT INTO specials (id, t) VALUES (11, '24:00:00');
         INSERT INTO specials (id, very) VALUES (13, 'NaN');
         INSERT INTO specials (id, d, ts, tstz, n, nn, ints, t, very) VALUES
             (12, '2024-01-01', '2024-01-01', '2024-01-01', 1, 1, '{1}', '12:00', 1.5);",
    );
    let source = source(&pg).await;
    let description = source.describe(&table("public", "specials")).await.unwrap();
    let column_of = |name: &str| description.columns.iter().position(|c| c.name == name).unwrap();
    let cases = [
        (
            1,
            "d",
            "22003",
            "column \"d\": date 'infinity' cannot be represented as an Arrow Date32",
        ),
        (
            2,
            "d",
            "22003",
            "column \"d\": date '-infinity' cannot be represented as an Arrow Date32",
        ),
        (
            3,
            "ts",
            "22003",
            "column \"ts\": timestamp 'infinity' cannot be represented as an Arrow Timestamp(Microsecond)",
        ),
        (
            4,
            "tstz",
            "22003",
            "column \"tstz\": timestamp '-infinity' cannot be represented",
        ),
        (
            5,
            "n",
            "22003",
            "column \"n\": numeric 'NaN' cannot be represented as an Arrow Decimal128(10, 2)",
        ),
        (
            6,
            "nn",
            "22003",
            "column \"nn\": numeric 'Infinity' cannot be represented as an Arrow Decimal256(76, 38)",
        ),
        (
            7,
            "nn",
            "22003",
            "column \"nn\": numeric '-Infinity' cannot be represented",
        ),
        (
            8,
            "nn",
            "22003",
            "column \"nn\": numeric 0.000000000000000000000000000000000000001 cannot be represented",
        ),
        (
            9,
            "ints",
            "2202E",
            "column \"ints\": a 2-dimensional array cannot be loaded",
        ),
        (
            10,
            "ints",
            "22004",
            "column \"ints\": an array with a NULL element cannot be loaded",
        ),
        (11, "t", "22003", "column \"t\": time '24:00:00' cannot be represented"),
        (
            13,
            "very",
            "22003",
            "column \"very\": numeric 'NaN' cannot be represented as a decimal text",
        ),
    ];
    for (id, column, code, message) in cases {
        let request = ScanRequest {
            columns: vec![column_of("id"), column_of(column)],
            filter: Some(format!("(\"id\" = {id})")),
            limit: None,
            offset: 0,
            segment: None,
            batch_rows: None,
        };
        let err = scan(&source, &description, request).await.unwrap_err();
        match source_error(&err) {
            SourceError::Query {
                code: Some(actual_code),
                message: actual,
            } => {
                assert_eq!(actual_code, code, "{actual}");
                assert!(actual.starts_with(message), "{actual:?} should start with {message:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    // The same columns read fine when their values fit.
    let batches = scan(
        &source,
        &description,
        ScanRequest {
            filter: Some("(\"id\" = 12)".into()),
            ..all_columns(&description)
        },
    )
    .await
    .unwrap();
    let fitting = rows(&batches);
    assert_eq!(fitting.len(), 1);
    assert_eq!(
        fitting[0][column_of("very")],
        ScalarValue::Utf8(Some("1.50".into())),
        "numerics wider than 76 digits travel as their text"
    );

    // A failing query reports the server's SQLSTATE.
    let err = scan(
        &source,
        &description,
        ScanRequest {
            filter: Some("(\"id\" / 0 = 1)".into()),
            ..all_columns(&description)
        },
    )
    .await
    .unwrap_err();
    match source_error(&err) {
        SourceError::Query { code, message } => {
            assert_eq!(code.as_deref(), Some("22012"));
            assert_eq!(message, "division by zero");
        }
        other => panic!("{other:?}"),
    }
}

/// Collects a DataFusion query's result as rows of text.
async fn query(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    rows(&batches)
        .into_iter()
        .map(|row| row.into_iter().map(|v| v.to_string()).collect())
        .collect()
}

async fn explain(ctx: &SessionContext, sql: &str) -> String {
    query(ctx, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .map(|row| row.join(": "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn datafusion_pushes_filters_and_limits_into_the_copy() {
    let pg = PgServer::start();
    pg.psql_admin(
        "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2));
         INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 20) g;
         CREATE TABLE many (id int);
         INSERT INTO many SELECT generate_series(1, 20000);",
    );
    let source = source(&pg).await;
    let ctx = SessionContext::new();
    let items = source.describe(&table("public", "items")).await.unwrap();
    ctx.register_table("items", Arc::new(SourceTable::new(source.clone(), items)))
        .unwrap();

    let sql = "SELECT id, name FROM items WHERE id > 5 LIMIT 3";
    assert_eq!(
        query(&ctx, sql).await,
        vec![vec!["6", "item 6"], vec!["7", "item 7"], vec!["8", "item 8"]]
    );
    let plan = explain(&ctx, sql).await;
    assert!(
        plan.contains(
            "SourceScanExec: query=SELECT \"id\", \"name\" FROM \"public\".\"items\" WHERE (\"id\" > 5) LIMIT 3"
        ),
        "{plan}"
    );

    let sql = "SELECT name, price FROM items WHERE price BETWEEN 3 AND 6 AND name <> 'item 3'";
    assert_eq!(
        query(&ctx, sql).await,
        vec![vec!["item 2", "3.00"], vec!["item 4", "6.00"]]
    );

    // count(*) reads no column at all.
    assert_eq!(query(&ctx, "SELECT count(*) FROM items").await, vec![vec!["20"]]);
    assert_eq!(
        query(&ctx, "SELECT count(*) FROM items WHERE id <= 7").await,
        vec![vec!["7"]]
    );
    let plan = explain(&ctx, "SELECT count(*) FROM items WHERE id <= 7").await;
    assert!(
        plan.contains("SourceScanExec: query=SELECT FROM \"public\".\"items\" WHERE (\"id\" <= 7)"),
        "{plan}"
    );

    // Large scans stream in batches of 8192 rows.
    let many = source.describe(&table("public", "many")).await.unwrap();
    let batches = scan(&source, &many, all_columns(&many)).await.unwrap();
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
        vec![8192, 8192, 3616]
    );
    let sum: i64 = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int32Type>().values().to_vec())
        .map(i64::from)
        .sum();
    assert_eq!(sum, 20000 * 20001 / 2);
    let counted = scan(&source, &many, ScanRequest::default()).await.unwrap();
    assert_eq!(
        counted
            .iter()
            .map(|b| (b.num_columns(), b.num_rows()))
            .collect::<Vec<_>>(),
        vec![(0, 8192), (0, 8192), (0, 3616)]
    );
    // Dropping a stream early aborts the COPY without harm to later scans.
    let mut stream = source.scan(&many, &all_columns(&many)).await.unwrap();
    let first = stream.try_next().await.unwrap().unwrap();
    assert_eq!(first.num_rows(), 8192);
    drop(stream);
    let limited = ScanRequest {
        limit: Some(10),
        ..all_columns(&many)
    };
    let batches = scan(&source, &many, limited).await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
}

#[tokio::test]
async fn hostile_names_are_quoted_everywhere() {
    let pg = PgServer::start();
    pg.psql_admin(
        r#"
        CREATE TABLE x (id int);
        CREATE SCHEMA "Sales ""EU""";
        CREATE TABLE "Sales ""EU"""."Order ""Items""; DROP TABLE x;--" (
            "select" int,
            "Mixed Case" text,
            "ünïcødé 🚀" text,
            "a""b" int,
            PRIMARY KEY ("a""b", "select")
        );
        INSERT INTO "Sales ""EU"""."Order ""Items""; DROP TABLE x;--" VALUES
            (1, 'one', 'ü', 10), (2, 'two', '🚀', 20), (3, 'three', NULL, 30);
        "#,
    );
    let source = source(&pg).await;
    let hostile = table("Sales \"EU\"", "Order \"Items\"; DROP TABLE x;--");
    assert_eq!(source.schemas().await.unwrap(), vec!["Sales \"EU\"", "public"]);
    let tables = source.tables(Some("Sales \"EU\"")).await.unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].table, hostile);

    let description = source.describe(&hostile).await.unwrap();
    let columns: Vec<(&str, Option<u32>, bool)> = description
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.primary_key_position, c.indexed))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("select", Some(2), false),
            ("Mixed Case", None, false),
            ("ünïcødé 🚀", None, false),
            ("a\"b", Some(1), true),
        ]
    );
    assert_eq!(description.primary_key(), vec!["a\"b", "select"]);

    let ctx = SessionContext::new();
    ctx.register_table("hostile", Arc::new(SourceTable::new(source.clone(), description)))
        .unwrap();
    let sql = r#"SELECT "a""b", "ünïcødé 🚀", "Mixed Case" FROM hostile WHERE "select" >= 2 AND "Mixed Case" = 'two'"#;
    assert_eq!(query(&ctx, sql).await, vec![vec!["20", "🚀", "two"]]);
    let plan = explain(&ctx, sql).await;
    assert!(
        plan.contains(
            r#"SourceScanExec: query=SELECT "Mixed Case", "ünïcødé 🚀", "a""b" FROM "Sales ""EU"""."Order ""Items""; DROP TABLE x;--" WHERE ("select" >= 2) AND ("Mixed Case" = 'two')"#
        ),
        "{plan}"
    );
    assert_eq!(pg.psql_admin("SELECT count(*) FROM x"), "0\n", "table x survives");
}

#[tokio::test]
async fn missing_schemas_and_tables_name_what_exists() {
    let pg = PgServer::start();
    pg.psql_admin(
        "CREATE TABLE orders (id int); CREATE TABLE order_items (id int); CREATE TABLE customers (id int);
         CREATE SCHEMA \"Public Data\";",
    );
    let source = source(&pg).await;
    match source.describe(&table("public", "ordrs")).await.unwrap_err() {
        SourceError::NotFound { kind, name, nearby } => {
            assert_eq!((kind, name.as_str()), ("table", "public.ordrs"));
            assert_eq!(nearby, vec!["orders", "customers", "order_items"]);
        }
        other => panic!("{other:?}"),
    }
    match source.describe(&table("pubic", "orders")).await.unwrap_err() {
        SourceError::NotFound { kind, name, nearby } => {
            assert_eq!((kind, name.as_str()), ("schema", "pubic"));
            assert_eq!(nearby, vec!["public", "Public Data"]);
        }
        other => panic!("{other:?}"),
    }
    // Names are exact: no case folding.
    assert!(matches!(
        source.describe(&table("public", "Orders")).await.unwrap_err(),
        SourceError::NotFound { kind: "table", .. }
    ));
}

#[tokio::test]
async fn connection_failures_are_classified() {
    let pg = PgServer::start();
    let wrong_password = source_with(&pg, pg.port, "not the password", false).await;
    match wrong_password.schemas().await.unwrap_err() {
        SourceError::Connect(failure) => assert_eq!(failure.kind, ConnectFailureKind::BadPassword, "{failure}"),
        other => panic!("{other:?}"),
    }
    let refused = source_with(&pg, common::free_port(), ETL_PASSWORD, false).await;
    match refused.tables(None).await.unwrap_err() {
        SourceError::Connect(failure) => assert_eq!(failure.kind, ConnectFailureKind::Refused, "{failure}"),
        other => panic!("{other:?}"),
    }
}
