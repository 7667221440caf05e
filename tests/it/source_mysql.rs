//! MySQL/MariaDB as a source, against a real MariaDB: schemas, tables and
//! column descriptions from `information_schema`, exact values through
//! `scan`, and filters and limits pushed down from DataFusion.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::MariaDb;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Decimal128Type, Decimal256Type, Int32Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use sluice_catalog::{Catalog, MasterKey, OptionValue};
use sluice_engine::contract::{ConnectFailureKind, ScanRequest, Source, SourceError, TableKind, TableRef};
use sluice_engine::sources::SourceTable;
use sluice_engine::{ConnectionManager, CreateConnection};

/// Connections saved in a throwaway catalog, opened as sources.
pub(crate) struct Connections {
    manager: ConnectionManager,
    _dir: tempfile::TempDir,
}

impl Connections {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = MasterKey::from_hex(&"11".repeat(32)).expect("master key");
        let catalog = Catalog::open(&dir.path().join("catalog"), key).expect("open catalog");
        Self {
            manager: ConnectionManager::new(Arc::new(catalog), Duration::from_secs(10)),
            _dir: dir,
        }
    }

    /// Saves a connection of `type_name` to `port` and opens it as a source.
    pub(crate) async fn source(
        &self,
        name: &str,
        type_name: &str,
        port: u16,
        database: Option<&str>,
    ) -> Arc<dyn Source> {
        let mut options = BTreeMap::from([
            ("host".to_owned(), OptionValue::Text("127.0.0.1".into())),
            ("port".to_owned(), OptionValue::Integer(port.into())),
            ("user".to_owned(), OptionValue::Text(common::ETL_USER.into())),
            ("password".to_owned(), OptionValue::Text(common::ETL_PASSWORD.into())),
        ]);
        if let Some(database) = database {
            options.insert("database".into(), OptionValue::Text(database.into()));
        }
        self.source_with(name, type_name, options).await
    }

    /// Saves a connection of `type_name` with `options` and opens it as a
    /// source.
    pub(crate) async fn source_with(
        &self,
        name: &str,
        type_name: &str,
        options: BTreeMap<String, OptionValue>,
    ) -> Arc<dyn Source> {
        self.manager
            .create(CreateConnection {
                name: name.into(),
                type_name: type_name.into(),
                options,
                if_not_exists: false,
                validate: false,
            })
            .await
            .unwrap_or_else(|e| panic!("create connection {name}: {e}"));
        self.manager
            .source(name)
            .unwrap_or_else(|e| panic!("source {name}: {e}"))
    }
}

fn table(schema: &str, name: &str) -> TableRef {
    TableRef {
        schema: schema.into(),
        name: name.into(),
    }
}

/// Every batch of a scan.
async fn scan(source: &dyn Source, table: &TableRef, columns: &[&str], request: ScanRequest) -> Vec<RecordBatch> {
    let description = source.describe(table).await.expect("describe");
    let columns = columns
        .iter()
        .map(|name| {
            description
                .columns
                .iter()
                .position(|c| c.name == *name)
                .unwrap_or_else(|| panic!("no column {name}"))
        })
        .collect();
    let request = ScanRequest { columns, ..request };
    let batches: Vec<RecordBatch> = source
        .scan(&description, &request)
        .await
        .expect("scan")
        .try_collect()
        .await
        .expect("scan rows");
    let expected = Arc::new(description.arrow_schema().project(&request.columns).unwrap());
    for batch in &batches {
        assert_eq!(batch.schema(), expected);
    }
    batches
}

/// The cells of column `index` of every batch, as Arrow displays them.
fn cells(batches: &[RecordBatch], index: usize) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatter = ArrayFormatter::try_new(batch.column(index), &options).unwrap();
        out.extend((0..batch.num_rows()).map(|row| formatter.value(row).to_string()));
    }
    out
}

/// A scan's error, which must be a [`SourceError`].
fn source_error(err: &DataFusionError) -> &SourceError {
    match err {
        DataFusionError::External(e) => e.downcast_ref::<SourceError>().expect("a SourceError"),
        other => panic!("not a source error: {other:?}"),
    }
}

/// A table with a column of every type the MySQL mapping knows, and three
/// rows: extreme values, NULLs, and ordinary values.
const ALL_TYPES: &str = r#"
SET time_zone = '+00:00';
CREATE TABLE all_types (
  id int NOT NULL PRIMARY KEY,
  c_bool tinyint(1) NOT NULL DEFAULT 0,
  c_tinyint tinyint,
  c_utinyint tinyint unsigned,
  c_smallint smallint,
  c_usmallint smallint unsigned,
  c_mediumint mediumint,
  c_int int,
  c_uint int unsigned,
  c_bigint bigint,
  c_ubigint bigint unsigned,
  c_decimal decimal(12,2) DEFAULT 1.50,
  c_bigdecimal decimal(65,30),
  c_float float,
  c_double double,
  c_bit1 bit(1),
  c_bit8 bit(8),
  c_bit64 bit(64),
  c_date date,
  c_datetime datetime(6),
  c_timestamp timestamp(6) NULL,
  c_time time(6),
  c_year year,
  c_char char(10),
  c_varchar varchar(255) DEFAULT 'n/a',
  c_text text,
  c_longtext longtext,
  c_binary binary(4),
  c_varbinary varbinary(16),
  c_blob blob,
  c_enum enum('small','large'),
  c_set set('a','b','c'),
  c_json json,
  c_uuid uuid,
  c_inet6 inet6,
  c_point point,
  c_geometry geometry,
  KEY by_int_date (c_int, c_date),
  UNIQUE KEY by_uuid (c_uuid)
);
INSERT INTO all_types VALUES (
  1, 1, -128, 255, -32768, 65535, -8388608, -2147483648, 4294967295,
  -9223372036854775808, 18446744073709551615, -9999999999.99,
  99999999999999999999999999999999999.999999999999999999999999999999,
  1.5, 0.1, b'1', b'10100101', 18446744073709551615,
  '1000-01-01', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '-838:59:59', 2155,
  'héllo', 'emoji 😀 𝄞 ok', 'it''s a \\ test\nline 2', REPEAT('x', 70000),
  X'00FF0001', X'000102', X'00006100', 'large', 'c,a', '{"k": [1, 2.5, "😀"]}',
  '123e4567-e89b-12d3-a456-426614174000', '2001:db8::1',
  ST_GeomFromText('POINT(1 2)'), ST_GeomFromText('LINESTRING(0 0,1 1)')
);
INSERT INTO all_types (id) VALUES (2);
UPDATE all_types SET c_decimal = NULL, c_varchar = NULL WHERE id = 2;
INSERT INTO all_types VALUES (
  3, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.05, -0.000000000000000000000000000001,
  -0.25, -1e300, b'0', b'0', 0,
  '2024-02-29', '1000-01-01 00:00:00.000001', '1970-01-01 00:00:01', '12:30:00.5', 1901,
  '', '', '', '', X'', X'', X'', 'small', '', '[]',
  '00000000-0000-0000-0000-000000000000', '::', ST_GeomFromText('POINT(0 0)'), ST_GeomFromText('POINT(-1.5 0)')
);
"#;

/// Three small tables and a view in database `crm`.
const CRM: &str = "
CREATE DATABASE crm;
CREATE TABLE crm.customers (id int PRIMARY KEY, name varchar(50));
CREATE TABLE crm.contacts (id int PRIMARY KEY, customer_id int, KEY by_customer (customer_id));
CREATE TABLE crm.orders (id bigint PRIMARY KEY, amount decimal(10,2)) PARTITION BY HASH (id) PARTITIONS 2;
INSERT INTO crm.customers VALUES (1, 'Ann'), (2, 'Bob'), (3, 'Cy');
CREATE VIEW crm.big_customers AS SELECT id, name FROM crm.customers WHERE id > 1;
ANALYZE TABLE crm.customers, crm.contacts, crm.orders;
";

#[tokio::test]
async fn schemas_tables_and_descriptions_come_from_information_schema() {
    let maria = MariaDb::start();
    maria.sql(ALL_TYPES);
    maria.sql(CRM);
    let connections = Connections::new();
    let source = connections.source("maria", "mariadb", maria.port, None).await;

    assert_eq!(source.schemas().await.unwrap(), ["crm", "shop"]);
    // The mysql type reads the same server the same way.
    let mysql = connections.source("mysql", "mysql", maria.port, None).await;
    assert_eq!(mysql.schemas().await.unwrap(), ["crm", "shop"]);

    let tables = source.tables(Some("crm")).await.unwrap();
    let summary: Vec<_> = tables
        .iter()
        .map(|t| {
            (
                t.table.to_string(),
                t.kind,
                t.estimated_rows,
                t.size_bytes.is_some_and(|s| s > 0),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("crm.big_customers".to_owned(), TableKind::View, None, false),
            ("crm.contacts".to_owned(), TableKind::Table, Some(0), true),
            ("crm.customers".to_owned(), TableKind::Table, Some(3), true),
            // An estimate: InnoDB counts an empty partition as one row.
            ("crm.orders".to_owned(), TableKind::Partitioned, Some(2), true),
        ]
    );
    // Size is data plus indexes: contacts has a secondary index, customers not.
    let size = |name: &str| tables.iter().find(|t| t.table.name == name).unwrap().size_bytes;
    assert_eq!(size("customers"), Some(16384));
    assert_eq!(size("contacts"), Some(32768));
    let modified = |name: &str| tables.iter().find(|t| t.table.name == name).unwrap().last_modified;
    assert!(modified("customers").is_some(), "rows were inserted");
    assert_eq!(modified("big_customers"), None);
    for t in &tables {
        if let Some(modified) = t.last_modified {
            let age = chrono::Utc::now() - modified;
            assert!(age.num_seconds().abs() < 600, "{}: {modified}", t.table);
        }
    }
    let all: Vec<String> = source
        .tables(None)
        .await
        .unwrap()
        .iter()
        .map(|t| t.table.to_string())
        .collect();
    assert_eq!(
        all,
        [
            "crm.big_customers",
            "crm.contacts",
            "crm.customers",
            "crm.orders",
            "shop.all_types"
        ]
    );

    let description = source.describe(&table("shop", "all_types")).await.unwrap();
    assert_eq!(description.kind, TableKind::Table);
    assert_eq!(description.estimated_rows.map(|n| n <= 3), Some(true));
    let rows: Vec<String> = description
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} | {} | {} | {} | {} | {} | {} | {} | {}",
                c.ordinal,
                c.name,
                c.source_type,
                if c.nullable { "null" } else { "not null" },
                c.default.as_deref().unwrap_or("-"),
                c.primary_key_position.map_or("-".to_owned(), |p| p.to_string()),
                if c.indexed { "indexed" } else { "-" },
                c.mapping.arrow,
                c.mapping.bigquery_ddl(),
            )
        })
        .collect();
    let expected = [
        "1 | id | int(11) | not null | - | 1 | indexed | Int32 | INT64",
        "2 | c_bool | tinyint(1) | not null | 0 | - | - | Boolean | BOOL",
        "3 | c_tinyint | tinyint(4) | null | - | - | - | Int8 | INT64",
        "4 | c_utinyint | tinyint(3) unsigned | null | - | - | - | Int16 | INT64",
        "5 | c_smallint | smallint(6) | null | - | - | - | Int16 | INT64",
        "6 | c_usmallint | smallint(5) unsigned | null | - | - | - | Int32 | INT64",
        "7 | c_mediumint | mediumint(9) | null | - | - | - | Int32 | INT64",
        "8 | c_int | int(11) | null | - | - | indexed | Int32 | INT64",
        "9 | c_uint | int(10) unsigned | null | - | - | - | Int64 | INT64",
        "10 | c_bigint | bigint(20) | null | - | - | - | Int64 | INT64",
        "11 | c_ubigint | bigint(20) unsigned | null | - | - | - | Decimal128(20, 0) | NUMERIC(20, 0)",
        "12 | c_decimal | decimal(12,2) | null | 1.50 | - | - | Decimal128(12, 2) | NUMERIC(12, 2)",
        "13 | c_bigdecimal | decimal(65,30) | null | - | - | - | Decimal256(65, 30) | BIGNUMERIC(65, 30)",
        "14 | c_float | float | null | - | - | - | Float32 | FLOAT64",
        "15 | c_double | double | null | - | - | - | Float64 | FLOAT64",
        "16 | c_bit1 | bit(1) | null | - | - | - | Boolean | BOOL",
        "17 | c_bit8 | bit(8) | null | - | - | - | Int64 | INT64",
        "18 | c_bit64 | bit(64) | null | - | - | - | Decimal128(20, 0) | NUMERIC(20, 0)",
        "19 | c_date | date | null | - | - | - | Date32 | DATE",
        "20 | c_datetime | datetime(6) | null | - | - | - | Timestamp(µs) | DATETIME",
        "21 | c_timestamp | timestamp(6) | null | - | - | - | Timestamp(µs, \"UTC\") | TIMESTAMP",
        "22 | c_time | time(6) | null | - | - | - | Utf8 | STRING",
        "23 | c_year | year(4) | null | - | - | - | Int16 | INT64",
        "24 | c_char | char(10) | null | - | - | - | Utf8 | STRING",
        "25 | c_varchar | varchar(255) | null | 'n/a' | - | - | Utf8 | STRING",
        "26 | c_text | text | null | - | - | - | Utf8 | STRING",
        "27 | c_longtext | longtext | null | - | - | - | Utf8 | STRING",
        "28 | c_binary | binary(4) | null | - | - | - | Binary | BYTES",
        "29 | c_varbinary | varbinary(16) | null | - | - | - | Binary | BYTES",
        "30 | c_blob | blob | null | - | - | - | Binary | BYTES",
        "31 | c_enum | enum('small','large') | null | - | - | - | Utf8 | STRING",
        "32 | c_set | set('a','b','c') | null | - | - | - | Utf8 | STRING",
        "33 | c_json | longtext | null | - | - | - | Utf8 | STRING",
        "34 | c_uuid | uuid | null | - | - | indexed | Utf8 | STRING",
        "35 | c_inet6 | inet6 | null | - | - | - | Utf8 | STRING",
        "36 | c_point | point | null | - | - | - | Binary | BYTES",
        "37 | c_geometry | geometry | null | - | - | - | Binary | BYTES",
    ];
    assert_eq!(rows, expected);
    assert_eq!(description.primary_key(), ["id"]);
    let view = source.describe(&table("crm", "big_customers")).await.unwrap();
    let columns: Vec<_> = view
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.source_type.as_str()))
        .collect();
    assert_eq!(
        (view.kind, view.estimated_rows, columns),
        (TableKind::View, None, vec![("id", "int(11)"), ("name", "varchar(50)")])
    );

    // Names are exact: `information_schema` compares them case-insensitively.
    maria.sql("CREATE TABLE crm.`Customers` (upper_id int); CREATE TABLE crm.`CUSTOMERS` (shout int);");
    let columns =
        |d: sluice_engine::contract::TableDescription| d.columns.into_iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(
        columns(source.describe(&table("crm", "Customers")).await.unwrap()),
        ["upper_id"]
    );
    assert_eq!(
        columns(source.describe(&table("crm", "customers")).await.unwrap()),
        ["id", "name"]
    );

    // Missing names come with the closest existing ones.
    let err = source.describe(&table("crm", "customer")).await.unwrap_err();
    let SourceError::NotFound { kind, name, nearby } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*kind, name.as_str()), ("table", "crm.customer"));
    assert_eq!(
        nearby,
        &[
            "customers",
            "Customers",
            "CUSTOMERS",
            "big_customers",
            "contacts",
            "orders"
        ]
    );
    assert_eq!(
        err.to_string(),
        "table \"crm.customer\" does not exist (existing: customers, Customers, CUSTOMERS, big_customers, \
         contacts, orders)"
    );
    let err = source.describe(&table("crn", "customers")).await.unwrap_err();
    assert_eq!(err.to_string(), "schema \"crn\" does not exist (existing: crm, shop)");
    let err = source.tables(Some("mysql")).await.unwrap_err();
    assert!(
        matches!(&err, SourceError::NotFound { kind: "schema", name, .. } if name == "mysql"),
        "{err:?}"
    );

    // With a database option, that database is the only schema.
    let scoped = connections.source("crm_only", "mariadb", maria.port, Some("crm")).await;
    assert_eq!(scoped.schemas().await.unwrap(), ["crm"]);
    assert_eq!(scoped.tables(None).await.unwrap().len(), 6);
    let err = scoped.describe(&table("shop", "all_types")).await.unwrap_err();
    assert_eq!(err.to_string(), "schema \"shop\" does not exist (existing: crm)");

    // A server that does not answer is a connection failure.
    let gone = connections.source("gone", "mysql", common::free_port(), None).await;
    match gone.schemas().await.unwrap_err() {
        SourceError::Connect(failure) => assert_eq!(failure.kind, ConnectFailureKind::Refused, "{failure}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn scans_return_every_value_exactly() {
    let maria = MariaDb::start();
    maria.sql(ALL_TYPES);
    let connections = Connections::new();
    let source = connections.source("maria", "mariadb", maria.port, Some("shop")).await;
    let all_types = table("shop", "all_types");
    let description = source.describe(&all_types).await.unwrap();
    let names: Vec<&str> = description.columns.iter().map(|c| c.name.as_str()).collect();
    let batches = scan(source.as_ref(), &all_types, &names, ScanRequest::default()).await;
    assert_eq!(batches.len(), 1);
    let expected: &[(&str, [&str; 3])] = &[
        ("id", ["1", "2", "3"]),
        ("c_bool", ["true", "false", "true"]),
        ("c_tinyint", ["-128", "NULL", "0"]),
        ("c_utinyint", ["255", "NULL", "0"]),
        ("c_smallint", ["-32768", "NULL", "0"]),
        ("c_usmallint", ["65535", "NULL", "0"]),
        ("c_mediumint", ["-8388608", "NULL", "0"]),
        ("c_int", ["-2147483648", "NULL", "0"]),
        ("c_uint", ["4294967295", "NULL", "0"]),
        ("c_bigint", ["-9223372036854775808", "NULL", "0"]),
        ("c_ubigint", ["18446744073709551615", "NULL", "0"]),
        ("c_decimal", ["-9999999999.99", "NULL", "0.05"]),
        (
            "c_bigdecimal",
            [
                "99999999999999999999999999999999999.999999999999999999999999999999",
                "NULL",
                "-0.000000000000000000000000000001",
            ],
        ),
        ("c_float", ["1.5", "NULL", "-0.25"]),
        ("c_double", ["0.1", "NULL", "-1e300"]),
        ("c_bit1", ["true", "NULL", "false"]),
        ("c_bit8", ["165", "NULL", "0"]),
        ("c_bit64", ["18446744073709551615", "NULL", "0"]),
        ("c_date", ["1000-01-01", "NULL", "2024-02-29"]),
        (
            "c_datetime",
            ["9999-12-31T23:59:59.999999", "NULL", "1000-01-01T00:00:00.000001"],
        ),
        (
            "c_timestamp",
            ["2038-01-19T03:14:07.999999Z", "NULL", "1970-01-01T00:00:01Z"],
        ),
        ("c_time", ["-838:59:59.000000", "NULL", "12:30:00.500000"]),
        ("c_year", ["2155", "NULL", "1901"]),
        ("c_char", ["héllo", "NULL", ""]),
        ("c_varchar", ["emoji 😀 𝄞 ok", "NULL", ""]),
        ("c_text", ["it's a \\ test\nline 2", "NULL", ""]),
        ("c_binary", ["00ff0001", "NULL", "00000000"]),
        ("c_varbinary", ["000102", "NULL", ""]),
        ("c_blob", ["00006100", "NULL", ""]),
        ("c_enum", ["large", "NULL", "small"]),
        ("c_set", ["a,c", "NULL", ""]),
        ("c_json", ["{\"k\": [1, 2.5, \"😀\"]}", "NULL", "[]"]),
        (
            "c_uuid",
            [
                "123e4567-e89b-12d3-a456-426614174000",
                "NULL",
                "00000000-0000-0000-0000-000000000000",
            ],
        ),
        ("c_inet6", ["2001:db8::1", "NULL", "::"]),
        (
            "c_point",
            [
                "0101000000000000000000f03f0000000000000040",
                "NULL",
                "010100000000000000000000000000000000000000",
            ],
        ),
        (
            "c_geometry",
            [
                "01020000000200000000000000000000000000000000000000000000000000f03f000000000000f03f",
                "NULL",
                "0101000000000000000000f8bf0000000000000000",
            ],
        ),
    ];
    for (name, values) in expected {
        let index = names.iter().position(|n| n == name).unwrap();
        assert_eq!(cells(&batches, index), values, "{name}");
    }
    let batch = &batches[0];
    let column = |name: &str| batch.column(names.iter().position(|n| *n == name).unwrap());
    // The exact integers behind the extremes.
    let ubigint = column("c_ubigint");
    assert_eq!(ubigint.as_primitive::<Decimal128Type>().value(0), i128::from(u64::MAX));
    let big = column("c_bigdecimal");
    assert_eq!(
        big.as_primitive::<Decimal256Type>().value(0).to_string(),
        "9".repeat(65)
    );
    let blob = column("c_blob");
    assert_eq!(blob.as_binary::<i32>().value(0), b"\0\0a\0");
    let varchar = column("c_varchar");
    assert_eq!(varchar.as_string::<i32>().value(0).chars().nth(6), Some('😀'));
    let longtext = column("c_longtext");
    assert_eq!(longtext.as_string::<i32>().value(0), "x".repeat(70000));
    assert!(
        names
            .iter()
            .all(|name| name == &"id" || name == &"c_bool" || column(name).is_null(1))
    );

    // A projection reads only its columns, in its order; a filter and a limit
    // go to the server as they are.
    let request = ScanRequest {
        filter: Some("`id` >= 2".into()),
        limit: Some(1),
        ..Default::default()
    };
    let batches = scan(source.as_ref(), &all_types, &["c_varchar", "id"], request).await;
    assert_eq!(
        (cells(&batches, 0), cells(&batches, 1)),
        (vec!["NULL".to_owned()], vec!["2".to_owned()])
    );
}

#[tokio::test]
async fn scans_stream_batches_and_refuse_bad_values() {
    let maria = MariaDb::start();
    maria.sql(
        "CREATE TABLE big (id int PRIMARY KEY);
         INSERT INTO big SELECT seq FROM seq_1_to_20000;
         SET SESSION sql_mode = '';
         CREATE TABLE dates (id int PRIMARY KEY, d date, dt datetime);
         INSERT INTO dates VALUES (1, '2024-01-01', '2024-01-01 10:00:00'), (2, '0000-00-00', '2024-00-10 00:00:00');",
    );
    let connections = Connections::new();
    let source = connections.source("maria", "mariadb", maria.port, None).await;

    // 8192 rows a batch.
    let big = table("shop", "big");
    let batches = scan(source.as_ref(), &big, &["id"], ScanRequest::default()).await;
    let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, [8192, 8192, 3616]);
    let sum: i64 = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int32Type>().values().to_vec())
        .map(i64::from)
        .sum();
    assert_eq!(sum, 20000 * 20001 / 2);

    // No columns (count(*)): batches of row counts only.
    let batches = scan(source.as_ref(), &big, &[], ScanRequest::default()).await;
    let sizes: Vec<(usize, usize)> = batches.iter().map(|b| (b.num_rows(), b.num_columns())).collect();
    assert_eq!(sizes, [(8192, 0), (8192, 0), (3616, 0)]);
    let description = source.describe(&big).await.unwrap();
    assert_eq!(
        source.scan_query(&description, &ScanRequest::default()),
        "SELECT 1 FROM `shop`.`big`"
    );

    // An abandoned scan is stopped at the server, not drained: past its
    // first batch, this one would take hours.
    let request = ScanRequest {
        columns: vec![0],
        filter: Some("(`id` <= 12000 OR SLEEP(1) = 0)".into()),
        limit: None,
        offset: 0,
        segment: None,
        batch_rows: None,
    };
    let mut stream = source.scan(&description, &request).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), stream.try_next())
        .await
        .expect("the first batch in time")
        .unwrap()
        .unwrap();
    assert_eq!(first.num_rows(), 8192);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let busy = maria.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'etl'");
        if busy.trim() == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "etl connections left: {busy}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Zero dates are refused, naming the column.
    let dates = table("shop", "dates");
    let description = source.describe(&dates).await.unwrap();
    for (column, text) in [
        (1, "'0000-00-00' is a zero date"),
        (2, "'2024-00-10' is not a valid date"),
    ] {
        let request = ScanRequest {
            columns: vec![0, column],
            ..Default::default()
        };
        let result: Result<Vec<RecordBatch>, _> =
            source.scan(&description, &request).await.unwrap().try_collect().await;
        let err = result.unwrap_err();
        let SourceError::Query { code, message } = source_error(&err) else {
            panic!("{err:?}")
        };
        assert_eq!(code.as_deref(), Some("22007"));
        let name = &description.columns[column].name;
        assert!(
            message.starts_with(&format!("column \"{name}\" of shop.dates: {text}")),
            "{message}"
        );
    }
    // A filter that skips them reads the rest.
    let request = ScanRequest {
        filter: Some("`id` = 1".into()),
        ..Default::default()
    };
    let batches = scan(source.as_ref(), &dates, &["d", "dt"], request).await;
    assert_eq!(
        (cells(&batches, 0), cells(&batches, 1)),
        (vec!["2024-01-01".to_owned()], vec!["2024-01-01T10:00:00".to_owned()])
    );

    // The server's refusals keep their SQLSTATE.
    let request = ScanRequest {
        columns: vec![0],
        filter: Some("`nope` = 1".into()),
        limit: None,
        offset: 0,
        segment: None,
        batch_rows: None,
    };
    match source.scan(&description, &request).await {
        Err(SourceError::Query { code, message }) => {
            assert_eq!(code.as_deref(), Some("42S22"), "{message}");
            assert!(message.contains("nope"), "{message}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a bad filter was accepted"),
    }
}

#[tokio::test]
async fn datafusion_pushes_filters_and_limits_into_the_query() {
    let maria = MariaDb::start();
    maria.sql(
        "SET time_zone = '+00:00';
         CREATE TABLE items (id int PRIMARY KEY, name varchar(20), created datetime(6), seen timestamp NULL);
         INSERT INTO items SELECT seq, CONCAT('item ', seq), '2024-01-01' + INTERVAL seq DAY,
           '2024-01-01' + INTERVAL seq HOUR FROM seq_1_to_10;
         CREATE DATABASE `Ärger & Co`;
         CREATE TABLE `Ärger & Co`.`Order \"Items\"; DROP TABLE x;--` (
           `select` int PRIMARY KEY, `Prix ``unitaire`` €` varchar(20), `From` date);
         INSERT INTO `Ärger & Co`.`Order \"Items\"; DROP TABLE x;--` VALUES
           (1, 'plain', '2024-01-01'), (2, 'it''s `odd` \\\\ \"x\"', NULL), (3, 'ünï', '2024-03-01');",
    );
    let connections = Connections::new();
    let source = connections.source("maria", "mariadb", maria.port, None).await;
    let ctx = SessionContext::new();
    let items = source.describe(&table("shop", "items")).await.unwrap();
    ctx.register_table("items", Arc::new(SourceTable::new(source.clone(), items)))
        .unwrap();

    let sql = "SELECT id, name FROM items WHERE id > 5 LIMIT 3";
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(cells(&batches, 0), ["6", "7", "8"]);
    assert_eq!(cells(&batches, 1), ["item 6", "item 7", "item 8"]);
    let plan = explain(&ctx, sql).await;
    assert!(
        plan.contains("SourceScanExec: query=SELECT `id`, `name` FROM `shop`.`items` WHERE (`id` > 5) LIMIT 3"),
        "{plan}"
    );

    let sql = "SELECT id FROM items WHERE created >= TIMESTAMP '2024-01-09 00:00:00' \
               AND seen < TIMESTAMP '2024-01-01 10:00:00+00:00'";
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(cells(&batches, 0), ["8", "9"]);
    let plan = explain(&ctx, sql).await;
    assert!(
        plan.contains(
            "WHERE (`created` >= TIMESTAMP '2024-01-09 00:00:00.000000') AND (`seen` < TIMESTAMP '2024-01-01 \
             10:00:00.000000')"
        ),
        "{plan}"
    );

    let batches = ctx
        .sql("SELECT count(*) FROM items WHERE name = 'item 4'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(cells(&batches, 0), ["1"]);

    // Hostile names: quotes, spaces, unicode, mixed case, reserved words.
    let hostile = table("Ärger & Co", "Order \"Items\"; DROP TABLE x;--");
    assert_eq!(source.schemas().await.unwrap(), ["shop", "Ärger & Co"]);
    let tables = source.tables(Some("Ärger & Co")).await.unwrap();
    let names: Vec<&TableRef> = tables.iter().map(|t| &t.table).collect();
    assert_eq!(names, [&hostile]);
    let description = source.describe(&hostile).await.unwrap();
    let names: Vec<&str> = description.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["select", "Prix `unitaire` €", "From"]);
    ctx.register_table("hostile", Arc::new(SourceTable::new(source.clone(), description)))
        .unwrap();
    let sql = "SELECT \"select\", \"Prix `unitaire` €\", \"From\" FROM hostile \
               WHERE \"Prix `unitaire` €\" = 'it''s `odd` \\ \"x\"' OR \"select\" = 3";
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(cells(&batches, 0), ["2", "3"]);
    assert_eq!(cells(&batches, 1), ["it's `odd` \\ \"x\"", "ünï"]);
    assert_eq!(cells(&batches, 2), ["NULL", "2024-03-01"]);
    let plan = explain(&ctx, sql).await;
    assert!(
        plan.contains(
            "SourceScanExec: query=SELECT `select`, `Prix ``unitaire`` €`, `From` FROM `Ärger & Co`.`Order \
             \"Items\"; DROP TABLE x;--` WHERE ((`Prix ``unitaire`` €` = 'it''s `odd` \\\\ \"x\"') OR \
             (`select` = 3))"
        ),
        "{plan}"
    );
    let count = ctx
        .sql("SELECT count(*) FROM hostile WHERE \"From\" > DATE '2024-02-01'")
        .await
        .unwrap();
    assert_eq!(cells(&count.collect().await.unwrap(), 0), ["1"]);
}

/// The plans DataFusion shows for `sql`, one line each.
async fn explain(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx
        .sql(&format!("EXPLAIN {sql}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut text = String::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            text.push_str(batch.column(1).as_string::<i32>().value(row));
            text.push('\n');
        }
    }
    text
}
