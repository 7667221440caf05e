//! The `local` connection type: a directory of CSV, NDJSON and Parquet files
//! as a source. Schemas and tables from the directory listing, column types
//! from Parquet footers and DataFusion's inference mapped to BigQuery, exact
//! values through `scan`, and filters and limits pushed into the files' own
//! DataFusion query. No server needed.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Date32Array, Decimal128Array, Float32Array, Int32Array, LargeStringArray,
    ListArray, RecordBatch, StructArray, TimestampMillisecondArray, TimestampNanosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use sluice_catalog::{Catalog, ConnectionStatus, MasterKey, OptionValue};
use sluice_engine::contract::{ConnectFailureKind, ScanRequest, Source, SourceError, TableDescription, TableRef};
use sluice_engine::sources::SourceTable;
use sluice_engine::{ConnectionManager, CreateConnection, CreateOutcome, EngineError};

/// Connections saved in a throwaway catalog.
struct Connections {
    manager: ConnectionManager,
    _dir: tempfile::TempDir,
}

impl Connections {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = MasterKey::from_hex(&"11".repeat(32)).expect("master key");
        let catalog = Catalog::open(&dir.path().join("catalog"), key).expect("open catalog");
        Self {
            manager: ConnectionManager::new(Arc::new(catalog), Duration::from_secs(10)),
            _dir: dir,
        }
    }

    /// `CREATE CONNECTION name TYPE local OPTIONS (path '...')`, tested live.
    async fn create(&self, name: &str, path: &str) -> Result<CreateOutcome, EngineError> {
        self.manager
            .create(CreateConnection {
                name: name.into(),
                type_name: "local".into(),
                options: BTreeMap::from([("path".to_owned(), OptionValue::Text(path.into()))]),
                if_not_exists: false,
                validate: true,
            })
            .await
    }

    /// Saves a connection to `dir` and opens it as a source.
    async fn source(&self, name: &str, dir: &Path) -> Arc<dyn Source> {
        let outcome = self.create(name, &dir.display().to_string()).await.expect("create");
        assert_eq!(
            outcome,
            CreateOutcome::Created {
                status: ConnectionStatus::Ok
            }
        );
        self.manager.source(name).expect("source")
    }
}

fn table(schema: &str, name: &str) -> TableRef {
    TableRef {
        schema: schema.into(),
        name: name.into(),
    }
}

const PEOPLE_CSV: &str = "\
id,name,score,active,born,seen_at,local_at,note
1,\"Zoë \"\"the\"\" 😀, Esq.\",1.5,true,1990-01-31,2026-05-01T10:00:00Z,2026-05-01 10:00:00,
2,,2.25,false,,2026-05-02T11:30:00.5+02:00,2026-05-02 11:30:00,
3,Ann,,,2000-02-29,,,
";

const EVENTS_NDJSON: &str = r#"{"id": 1, "kind": "click", "payload": {"x": 1, "label": "a😀"}, "tags": ["a", "b"]}
{"id": 2, "kind": null, "payload": null, "tags": []}
{"id": 3, "kind": "view", "tags": null, "extra": 2.5}
"#;

/// A directory with one table of each format, a table of several files, and
/// files that are not tables.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    fs::write(d.join("people.csv"), PEOPLE_CSV).unwrap();
    fs::write(d.join("events.ndjson"), EVENTS_NDJSON).unwrap();
    write_parquet(&d.join("metrics.parquet"));
    fs::create_dir(d.join("daily")).unwrap();
    fs::write(d.join("daily/2026-05-01.csv"), "day,visits\n2026-05-01,10\n").unwrap();
    fs::write(
        d.join("daily/2026-05-02.csv"),
        "day,visits\n2026-05-02,12\n2026-05-03,\n",
    )
    .unwrap();
    fs::write(d.join("readme.txt"), "not a table").unwrap();
    fs::write(d.join("_SUCCESS"), "").unwrap();
    dir
}

/// Three rows of every Arrow type the Parquet fixture covers.
fn write_parquet(path: &Path) {
    let x: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(vec![
        Some(1),
        None,
        Some(-3),
    ]));
    let columns: Vec<(&str, ArrayRef, bool)> = vec![
        ("id", Arc::new(Int32Array::from(vec![1, 2, 3])), false),
        (
            "big",
            Arc::new(UInt64Array::from(vec![Some(0), Some(u64::MAX), None])),
            true,
        ),
        (
            "price",
            Arc::new(
                Decimal128Array::from(vec![Some(12_345), Some(-5), None])
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
            true,
        ),
        (
            "at",
            Arc::new(
                TimestampNanosecondArray::from(vec![Some(1_700_000_000_123_456_000), None, Some(0)])
                    .with_timezone("UTC"),
            ),
            true,
        ),
        (
            "local",
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1_700_000_000_123),
                Some(-1),
                None,
            ])),
            true,
        ),
        (
            "ratio",
            Arc::new(Float32Array::from(vec![Some(1.5), None, Some(-0.25)])),
            true,
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![Some(0), Some(20_000), None])),
            true,
        ),
        (
            "blob",
            Arc::new(BinaryArray::from(vec![Some(&b"\x00\xff"[..]), Some(&b""[..]), None])),
            true,
        ),
        (
            "text",
            Arc::new(LargeStringArray::from(vec![Some("𝄞 😀"), Some(""), None])),
            true,
        ),
        (
            "nums",
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>([
                Some(vec![Some(1), Some(2)]),
                Some(vec![]),
                None,
            ])),
            true,
        ),
        ("point", Arc::new(StructArray::try_from(vec![("x", x)]).unwrap()), true),
    ];
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, array, nullable)| Field::new(*name, array.data_type().clone(), *nullable))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a, _)| a).collect()).unwrap();
    let mut writer = ArrowWriter::try_new(fs::File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// `(name, source type, nullable, BigQuery DDL, Arrow type)` of each column.
fn columns(description: &TableDescription) -> Vec<(String, String, bool, String, String)> {
    description
        .columns
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.source_type.clone(),
                c.nullable,
                c.mapping.bigquery_ddl(),
                c.mapping.arrow.to_string(),
            )
        })
        .collect()
}

fn column(
    name: &str,
    source: &str,
    nullable: bool,
    bigquery: &str,
    arrow: &str,
) -> (String, String, bool, String, String) {
    (name.into(), source.into(), nullable, bigquery.into(), arrow.into())
}

/// The cells of every batch, row by row, as Arrow displays them.
fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
        }
    }
    out
}

/// Every batch of a scan of `columns`, each checked against the described schema.
async fn scan(
    source: &dyn Source,
    description: &TableDescription,
    columns: &[&str],
    request: ScanRequest,
) -> Vec<RecordBatch> {
    let columns = columns
        .iter()
        .map(|name| description.columns.iter().position(|c| c.name == *name).unwrap())
        .collect();
    let request = ScanRequest { columns, ..request };
    let batches: Vec<RecordBatch> = source
        .scan(description, &request)
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

/// A query's rows, as Arrow displays them.
async fn query(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap())
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect()
}

#[tokio::test]
async fn create_checks_that_the_directory_can_be_read() {
    let connections = Connections::new();
    let dir = fixture();
    let missing = dir.path().join("nope");
    let err = connections
        .create("missing", &missing.display().to_string())
        .await
        .unwrap_err();
    let EngineError::Connect { failure, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(failure.kind, ConnectFailureKind::Other);
    assert_eq!(
        failure.detail,
        format!("directory {} does not exist", missing.display())
    );

    let file = dir.path().join("people.csv");
    let err = connections
        .create("file", &file.display().to_string())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with(&format!("{} is not a directory", file.display())),
        "{err}"
    );

    let err = connections.create("relative", "no/such/dir").await.unwrap_err();
    let cwd = std::env::current_dir().unwrap();
    assert!(
        err.to_string().ends_with(&format!(
            "directory no/such/dir (resolved to {}) does not exist",
            cwd.join("no/such/dir").display()
        )),
        "{err}"
    );
    assert!(connections.manager.catalog().connections().unwrap().is_empty());

    connections.source("ok", dir.path()).await;
    let types = sluice_engine::connectors::lookup("local").unwrap();
    assert_eq!(types.status(), sluice_engine::contract::TypeStatus::Available);
    assert_eq!(types.identity_options, ["path"]);
}

#[tokio::test]
async fn schemas_and_tables_come_from_the_directory_listing() {
    let connections = Connections::new();
    let dir = fixture();
    connections.source("files", dir.path()).await;
    let manager = &connections.manager;

    assert_eq!(manager.schemas("files").await.unwrap(), ["files"]);
    let tables = manager.tables("files", None).await.unwrap();
    let listed: Vec<_> = tables
        .iter()
        .map(|t| (t.table.to_string(), t.kind.as_str(), t.estimated_rows))
        .collect();
    assert_eq!(
        listed,
        [
            ("files.daily".into(), "table", None),
            ("files.events".into(), "table", None),
            ("files.metrics".into(), "table", Some(3)),
            ("files.people".into(), "table", None),
        ]
    );
    let people = tables.iter().find(|t| t.table.name == "people").unwrap();
    let metadata = fs::metadata(dir.path().join("people.csv")).unwrap();
    assert_eq!(people.size_bytes, Some(PEOPLE_CSV.len() as i64));
    assert_eq!(
        people.last_modified,
        Some(DateTime::<Utc>::from(metadata.modified().unwrap()))
    );
    let daily = tables.iter().find(|t| t.table.name == "daily").unwrap();
    assert_eq!(daily.size_bytes, Some(25 + 37));
    assert_eq!(manager.tables("files", Some("files")).await.unwrap().len(), 4);

    let err = manager.tables("files", Some("public")).await.unwrap_err();
    let EngineError::Source {
        error: SourceError::NotFound { kind, nearby, .. },
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*kind, nearby.as_slice()), ("schema", ["files".to_owned()].as_slice()));

    let err = manager.describe("files", &table("files", "peple")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "files: table \"files.peple\" does not exist (existing: people, daily, events, metrics)"
    );

    // The directory goes away: a connection failure, recorded in the catalog.
    drop(dir);
    let err = manager.tables("files", None).await.unwrap_err();
    let EngineError::Source {
        error: SourceError::Connect(failure),
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(failure.detail.ends_with("does not exist"), "{failure}");
    let record = manager.catalog().connection("files").unwrap();
    assert_eq!(record.status, ConnectionStatus::Failed);
}

#[tokio::test]
async fn descriptions_map_file_types_to_bigquery() {
    let connections = Connections::new();
    let dir = fixture();
    connections.source("files", dir.path()).await;
    let manager = &connections.manager;
    let describe = |name: &'static str| async move { manager.describe("files", &table("files", name)).await.unwrap() };

    let people = describe("people").await;
    assert_eq!(
        columns(&people),
        [
            column("id", "Int64", true, "INT64", "Int64"),
            column("name", "Utf8", true, "STRING", "Utf8"),
            column("score", "Float64", true, "FLOAT64", "Float64"),
            column("active", "Boolean", true, "BOOL", "Boolean"),
            column("born", "Date32", true, "DATE", "Date32"),
            column(
                "seen_at",
                "Timestamp(µs, \"UTC\")",
                true,
                "TIMESTAMP",
                "Timestamp(µs, \"UTC\")"
            ),
            column("local_at", "Timestamp(µs)", true, "DATETIME", "Timestamp(µs)"),
            column("note", "Null", true, "STRING", "Utf8"),
        ]
    );
    assert_eq!(people.estimated_rows, None);
    assert!(
        people
            .columns
            .iter()
            .all(|c| c.primary_key_position.is_none() && !c.indexed && c.default.is_none())
    );
    assert_eq!(
        people.columns.iter().map(|c| c.ordinal).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert!(people.primary_key().is_empty());

    let events = describe("events").await;
    assert_eq!(
        columns(&events),
        [
            column("id", "Int64", true, "INT64", "Int64"),
            column("kind", "Utf8", true, "STRING", "Utf8"),
            column("payload", "Struct(\"x\": Int64, \"label\": Utf8)", true, "JSON", "Utf8"),
            column("tags", "List(Utf8)", true, "ARRAY<STRING>", "List(Utf8)"),
            column("extra", "Float64", true, "FLOAT64", "Float64"),
        ]
    );

    let metrics = describe("metrics").await;
    assert_eq!(
        columns(&metrics),
        [
            column("id", "Int32", false, "INT64", "Int32"),
            column("big", "UInt64", true, "NUMERIC(20, 0)", "Decimal128(20, 0)"),
            column(
                "price",
                "Decimal128(12, 2)",
                true,
                "NUMERIC(12, 2)",
                "Decimal128(12, 2)"
            ),
            column(
                "at",
                "Timestamp(ns, \"UTC\")",
                true,
                "TIMESTAMP",
                "Timestamp(µs, \"UTC\")"
            ),
            column("local", "Timestamp(ms)", true, "DATETIME", "Timestamp(µs)"),
            column("ratio", "Float32", true, "FLOAT64", "Float32"),
            column("day", "Date32", true, "DATE", "Date32"),
            column("blob", "Binary", true, "BYTES", "Binary"),
            column("text", "LargeUtf8", true, "STRING", "Utf8"),
            column("nums", "List(Int64)", true, "ARRAY<INT64>", "List(Int64)"),
            column("point", "Struct(\"x\": Int64)", true, "JSON", "Utf8"),
        ]
    );
    assert_eq!(metrics.estimated_rows, Some(3));
    let at = &metrics.columns[3].mapping;
    assert!(
        at.warnings.iter().any(|w| w.contains("sub-microsecond")),
        "{:?}",
        at.warnings
    );

    let daily = describe("daily").await;
    assert_eq!(
        columns(&daily),
        [
            column("day", "Date32", true, "DATE", "Date32"),
            column("visits", "Int64", true, "INT64", "Int64"),
        ]
    );
}

#[tokio::test]
async fn scans_read_exact_values() {
    let connections = Connections::new();
    let dir = fixture();
    let source = connections.source("files", dir.path()).await;
    let manager = &connections.manager;

    let people = manager.describe("files", &table("files", "people")).await.unwrap();
    let sample = manager.sample("files", &people, 10).await.unwrap();
    assert_eq!(
        rows(&sample),
        strings(&[
            &[
                "1",
                "Zoë \"the\" 😀, Esq.",
                "1.5",
                "true",
                "1990-01-31",
                "2026-05-01T10:00:00Z",
                "2026-05-01T10:00:00",
                "NULL"
            ],
            &[
                "2",
                "NULL",
                "2.25",
                "false",
                "NULL",
                "2026-05-02T09:30:00.500Z",
                "2026-05-02T11:30:00",
                "NULL"
            ],
            &["3", "Ann", "NULL", "NULL", "2000-02-29", "NULL", "NULL", "NULL"],
        ])
    );

    let events = manager.describe("files", &table("files", "events")).await.unwrap();
    let batches = scan(
        source.as_ref(),
        &events,
        &["payload", "tags", "id"],
        ScanRequest::default(),
    )
    .await;
    assert_eq!(
        rows(&batches),
        strings(&[
            &[r#"{"x":1,"label":"a😀"}"#, "[a, b]", "1"],
            &["NULL", "[]", "2"],
            &["NULL", "NULL", "3"],
        ])
    );

    let metrics = manager.describe("files", &table("files", "metrics")).await.unwrap();
    let names: Vec<&str> = metrics.columns.iter().map(|c| c.name.as_str()).collect();
    let batches = scan(source.as_ref(), &metrics, &names, ScanRequest::default()).await;
    assert_eq!(
        rows(&batches),
        strings(&[
            &[
                "1",
                "0",
                "123.45",
                "2023-11-14T22:13:20.123456Z",
                "2023-11-14T22:13:20.123",
                "1.5",
                "1970-01-01",
                "00ff",
                "𝄞 😀",
                "[1, 2]",
                r#"{"x":1}"#
            ],
            &[
                "2",
                "18446744073709551615",
                "-0.05",
                "NULL",
                "1969-12-31T23:59:59.999",
                "NULL",
                "2024-10-04",
                "",
                "",
                "[]",
                r#"{"x":null}"#
            ],
            &[
                "3",
                "NULL",
                "NULL",
                "1970-01-01T00:00:00Z",
                "NULL",
                "-0.25",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                r#"{"x":-3}"#
            ],
        ])
    );

    // A subdirectory reads as one table; no columns still counts rows.
    let daily = manager.describe("files", &table("files", "daily")).await.unwrap();
    let mut days = rows(&scan(source.as_ref(), &daily, &["day", "visits"], ScanRequest::default()).await);
    days.sort();
    assert_eq!(
        days,
        strings(&[&["2026-05-01", "10"], &["2026-05-02", "12"], &["2026-05-03", "NULL"]])
    );
    let batches = scan(source.as_ref(), &daily, &[], ScanRequest::default()).await;
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
    assert_eq!(
        source.scan_query(&daily, &ScanRequest::default()),
        "SELECT 1 FROM \"daily\""
    );
}

#[tokio::test]
async fn filters_and_limits_are_pushed_into_the_file_query() {
    let connections = Connections::new();
    let dir = fixture();
    let source = connections.source("files", dir.path()).await;
    let ctx = SessionContext::new();
    for name in ["people", "metrics"] {
        let description = source.describe(&table("files", name)).await.unwrap();
        ctx.register_table(name, Arc::new(SourceTable::new(source.clone(), description)))
            .unwrap();
    }

    let sql = "SELECT id, name FROM people WHERE id > 1 LIMIT 1";
    let plan = explain(&ctx, sql).await;
    assert!(
        plan.contains(r#"SourceScanExec: query=SELECT "id", "name" FROM "people" WHERE ("id" > 1) LIMIT 1"#),
        "{plan}"
    );
    assert_eq!(query(&ctx, sql).await, strings(&[&["2", "NULL"]]));

    let sql = "SELECT id FROM people WHERE born = DATE '2000-02-29' OR seen_at >= \
               TIMESTAMP '2026-05-02T00:00:00Z'";
    let plan = explain(&ctx, sql).await;
    assert!(
        plan.contains(concat!(
            r#"WHERE (("born" = DATE '2000-02-29') OR "#,
            r#"("seen_at" >= CAST('2026-05-02T00:00:00.000000Z' AS TIMESTAMP(6) WITH TIME ZONE)))"#
        )),
        "{plan}"
    );
    assert_eq!(
        query(&ctx, &format!("{sql} ORDER BY id")).await,
        strings(&[&["2"], &["3"]])
    );

    let sql = "SELECT id FROM people WHERE local_at < TIMESTAMP '2026-05-02 00:00:00'";
    let plan = explain(&ctx, sql).await;
    assert!(
        plan.contains(r#"WHERE ("local_at" < CAST('2026-05-02T00:00:00.000000' AS TIMESTAMP(6)))"#),
        "{plan}"
    );
    assert_eq!(query(&ctx, sql).await, strings(&[&["1"]]));

    let sql = "SELECT id, price FROM metrics WHERE price < 0 OR big IS NULL";
    let plan = explain(&ctx, sql).await;
    assert!(
        plan.contains(r#"WHERE (("price" < CAST('0.00' AS DECIMAL(12, 2))) OR ("big" IS NULL))"#),
        "{plan}"
    );
    assert_eq!(query(&ctx, sql).await, strings(&[&["2", "-0.05"], &["3", "NULL"]]));

    // Text comparisons stay in DataFusion; the answer is the same.
    let sql = "SELECT count(*) FROM people WHERE name = 'Ann'";
    assert_eq!(query(&ctx, sql).await, strings(&[&["1"]]));
    let sql = "SELECT count(*) FROM metrics";
    assert!(explain(&ctx, sql).await.contains(r#"query=SELECT 1 FROM "metrics""#));
    assert_eq!(query(&ctx, sql).await, strings(&[&["3"]]));
}

#[tokio::test]
async fn sub_microsecond_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let at = TimestampNanosecondArray::from(vec![1_000, 1_000_000_001]);
    let schema = Arc::new(Schema::new(vec![Field::new("at", at.data_type().clone(), true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(at)]).unwrap();
    let mut writer =
        ArrowWriter::try_new(fs::File::create(dir.path().join("ns.parquet")).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let connections = Connections::new();
    let source = connections.source("files", dir.path()).await;
    let description = source.describe(&table("files", "ns")).await.unwrap();
    assert_eq!(
        description.columns[0].mapping.arrow,
        DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None)
    );
    let stream = source
        .scan(
            &description,
            &ScanRequest {
                columns: vec![0],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = stream.try_collect::<Vec<_>>().await.unwrap_err().to_string();
    assert!(
        err.contains(
            "cannot read files.ns: column \"at\": Cast error: 1970-01-01T00:00:01.000000001 has sub-microsecond digits"
        ),
        "{err}"
    );
}

/// The sample shop of examples/data, as the quickstart reads it.
#[tokio::test]
async fn the_example_data_describes_and_reads() {
    let connections = Connections::new();
    // Relative to the working directory: the repository root under `cargo test`.
    connections.create("demo", "examples/data").await.unwrap();
    let manager = &connections.manager;
    let names: Vec<String> = manager
        .tables("demo", Some("files"))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.table.name)
        .collect();
    assert_eq!(names, ["customers", "orders", "products"]);

    let source = manager.source("demo").unwrap();
    let ctx = SessionContext::new();
    for name in &names {
        let description = manager.describe("demo", &table("files", name)).await.unwrap();
        assert!(description.columns.len() >= 5, "{name}");
        ctx.register_table(name.as_str(), Arc::new(SourceTable::new(source.clone(), description)))
            .unwrap();
    }
    let orders = manager.describe("demo", &table("files", "orders")).await.unwrap();
    let types: Vec<(String, String)> = orders
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.mapping.bigquery_ddl()))
        .collect();
    let expected = [
        ("order_id", "INT64"),
        ("customer_id", "INT64"),
        ("product_id", "INT64"),
        ("quantity", "INT64"),
        ("amount", "FLOAT64"),
        ("status", "STRING"),
        ("created_at", "TIMESTAMP"),
        ("updated_at", "TIMESTAMP"),
    ];
    assert_eq!(types, expected.map(|(n, t)| (n.to_owned(), t.to_owned())));

    let summary = query(
        &ctx,
        "SELECT count(*), min(created_at) >= TIMESTAMP '2026-05-05T00:00:00Z', \
         max(updated_at) < TIMESTAMP '2026-11-01T00:00:00Z' FROM orders",
    )
    .await;
    assert_eq!(summary, strings(&[&["2000", "true", "true"]]));
    let joined = query(
        &ctx,
        "SELECT count(*) FROM orders o JOIN customers c ON c.customer_id = o.customer_id \
         JOIN products p ON p.product_id = o.product_id",
    )
    .await;
    assert_eq!(joined, strings(&[&["2000"]]));
}
