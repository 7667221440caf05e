//! BigQuery as a job source, against the project's fake BigQuery
//! (`tests/it/fake_bigquery`): every dataset of the project explored, live
//! SELECT with typed literals pushed down, SNAPSHOT and INCREMENTAL jobs by
//! TIMESTAMP, DATETIME and DATE cursors read page by page through
//! `jobs.query` + `jobs.getQueryResults`, into the local warehouse and into
//! BigQuery, and exactly once across kill -9.

use crate::common;
use crate::fake_bigquery;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use common::*;
use datafusion::arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use fake_bigquery::{FakeBigQuery, FaultKind};
use serde_json::{Value, json};
use tokio_postgres::Client;

pub(crate) const PROJECT: &str = "test-project";
/// 2024-03-01 00:00:00 UTC.
pub(crate) const BASE_MICROS: i64 = 1_709_251_200_000_000;
/// 2024-03-01 in days since 1970.
const BASE_DAY: i32 = 19_783;

struct Env {
    fake: FakeBigQuery,
    sluice: Sluice,
    client: Client,
    _keys: tempfile::TempDir,
}

/// The fake with `sales.events` (ids 1 to `rows`) beside the connection's
/// own dataset, Sluice pointed at it (with `extra_env`), and the `bq`
/// connection (dataset `raw_data`).
async fn setup(rows: i64, extra_env: &[(&str, &str)]) -> Env {
    let fake = FakeBigQuery::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = fake.write_key_file(keys.path());
    fake.put_table("sales", "events", event_fields(), vec![events(1..=rows)]);
    let mut envs = vec![("SLUICE_BIGQUERY_ENDPOINT", fake.url.as_str())];
    envs.extend_from_slice(extra_env);
    let sluice = Sluice::start_with(&[], &envs);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION bq TYPE bigquery OPTIONS (project '{PROJECT}', dataset 'raw_data', location 'EU', \
             credentials_file '{}', connect_timeout 2)",
            key_file.display()
        ))
        .await
        .unwrap();
    Env {
        fake,
        sluice,
        client,
        _keys: keys,
    }
}

pub(crate) fn event_fields() -> Value {
    json!([
        {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
        {"name": "ts", "type": "TIMESTAMP", "mode": "REQUIRED"},
        {"name": "dt", "type": "DATETIME"},
        {"name": "day", "type": "DATE"},
        {"name": "name", "type": "STRING"},
    ])
}

/// Event `id` happened `id` minutes (and microseconds) after 2024-03-01
/// 00:00 UTC, on day `(id - 1) / 10` after it.
pub(crate) fn events(ids: std::ops::RangeInclusive<i64>) -> RecordBatch {
    let ids: Vec<i64> = ids.collect();
    let micros: Vec<i64> = ids.iter().map(|id| BASE_MICROS + id * 60_000_001).collect();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("dt", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("day", DataType::Date32, true),
        Field::new("name", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(TimestampMicrosecondArray::from(micros.clone()).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(micros)),
            Arc::new(Date32Array::from(
                ids.iter()
                    .map(|id| BASE_DAY + ((id - 1) / 10) as i32)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                ids.iter().map(|id| format!("event {id} 'quoted'")).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// The SQL of every `jobs.query` request Sluice sent so far.
pub(crate) fn queries(fake: &FakeBigQuery) -> Vec<String> {
    fake.state()
        .queries
        .iter()
        .map(|q| q["query"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `count, min id, max id, count distinct id` of a warehouse table.
async fn warehouse_ids(client: &Client, table: &str) -> Vec<Option<String>> {
    rows(
        client,
        &format!("SELECT count(*), min(id), max(id), count(DISTINCT id) FROM warehouse.{table}"),
    )
    .await
    .remove(0)
}

/// Every row of a warehouse table, as text, ordered by id.
pub(crate) async fn warehouse_rows(client: &Client, table: &str) -> Vec<Vec<Option<String>>> {
    rows(
        client,
        &format!(
            "SELECT id, CAST(ts AS VARCHAR), CAST(dt AS VARCHAR), CAST(day AS VARCHAR), name \
             FROM warehouse.{table} ORDER BY id"
        ),
    )
    .await
}

/// The rows the fake holds for ids `from..=to`, as [`warehouse_rows`] shows them.
pub(crate) fn expected_rows(from: i64, to: i64) -> Vec<Vec<Option<String>>> {
    (from..=to)
        .map(|id| {
            let micros = BASE_MICROS + id * 60_000_001;
            let time = chrono::DateTime::from_timestamp_micros(micros).unwrap().naive_utc();
            let day = chrono::NaiveDate::from_ymd_opt(2024, 3, 1).unwrap() + chrono::Days::new(((id - 1) / 10) as u64);
            vec![
                Some(id.to_string()),
                Some(format!("{}Z", time.format("%Y-%m-%dT%H:%M:%S%.6f"))),
                Some(time.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
                Some(day.to_string()),
                Some(format!("event {id} 'quoted'")),
            ]
        })
        .collect()
}

#[tokio::test]
async fn every_dataset_of_the_project_is_a_schema_and_filters_push_down_as_typed_literals() {
    let env = setup(30, &[]).await;
    env.fake
        .put_table("archive", "old_events", event_fields(), vec![events(1..=3)]);
    let schemas: Vec<_> = rows(&env.client, "SHOW SCHEMAS FROM bq")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(schemas, ["archive", "raw_data", "sales"]);
    // Rows, bytes and last change from the table's resource.
    let tables = rows(&env.client, "SHOW TABLES FROM bq.sales").await;
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert_eq!(
        tables[0][..4],
        [
            Some("sales".into()),
            Some("events".into()),
            Some("table".into()),
            Some("30".into())
        ],
        "{tables:?}"
    );
    assert!(
        tables[0][4].as_deref().unwrap().parse::<i64>().unwrap() > 0,
        "{tables:?}"
    );
    assert!(
        tables[0][5].as_deref().unwrap().starts_with("2024-03-01 00:00:00"),
        "{tables:?}"
    );
    let all = rows(&env.client, "SHOW TABLES FROM bq").await;
    assert_eq!(all.len(), 2, "tables of every dataset: {all:?}");
    let described: Vec<String> = rows(&env.client, "DESCRIBE bq.sales.events")
        .await
        .iter()
        .map(|r| format!("{} {}", r[0].as_deref().unwrap(), r[2].as_deref().unwrap()))
        .collect();
    assert_eq!(
        described,
        ["id INTEGER", "ts TIMESTAMP", "dt DATETIME", "day DATE", "name STRING"]
    );
    let missing = expect_err(&env.client, "SHOW TABLES FROM bq.sale", "42704").await;
    assert!(missing.contains("sales"), "names the dataset that exists: {missing}");

    // Time and text filters reach BigQuery as exact literals.
    let picked = rows(
        &env.client,
        "SELECT id FROM bq.sales.events WHERE ts > TIMESTAMP '2024-03-01 00:20:00Z' \
         AND dt <= TIMESTAMP '2024-03-01 00:25:00' AND day >= DATE '2024-03-03' ORDER BY id",
    )
    .await;
    let ids: Vec<_> = picked.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(ids, ["21", "22", "23", "24"]);
    let sent = queries(&env.fake).pop().unwrap();
    for literal in [
        "`ts` > TIMESTAMP '2024-03-01 00:20:00.000000+00:00'",
        "`dt` <= DATETIME '2024-03-01 00:25:00.000000'",
        "`day` >= DATE '2024-03-03'",
    ] {
        assert!(sent.contains(literal), "{literal} in {sent}");
    }
    let named = rows(
        &env.client,
        "SELECT id FROM bq.sales.events WHERE name = 'event 7 ''quoted'''",
    )
    .await;
    assert_eq!(named, [vec![Some("7".to_owned())]]);
    assert!(
        queries(&env.fake)
            .pop()
            .unwrap()
            .contains("`name` = 'event 7 \\'quoted\\''"),
        "{:?}",
        queries(&env.fake)
    );
}

#[tokio::test]
async fn a_snapshot_reads_page_by_page_into_the_warehouse() {
    let env = setup(250, &[]).await;
    env.client
        .batch_execute(
            "CREATE ETL JOB events_snap FROM bq.sales.events INTO warehouse.events SNAPSHOT WITH (batch_rows = 40)",
        )
        .await
        .unwrap();
    let run = rows(&env.client, "RUN ETL JOB events_snap").await;
    assert_eq!(run[0][2].as_deref(), Some("250"), "{run:?}");
    assert_eq!(warehouse_rows(&env.client, "events").await, expected_rows(1, 250));
    // One query asking for pages of 40 rows, then one getQueryResults per
    // further page, each with the token of the page before.
    let query = env.fake.state().queries.last().cloned().unwrap();
    assert_eq!(query["maxResults"], json!(40), "{query}");
    let pages: Vec<String> = env
        .fake
        .state()
        .requests
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/queries/"))
        .cloned()
        .collect();
    assert_eq!(pages.len(), 6, "{pages:?}");
    for (i, page) in pages.iter().enumerate() {
        assert!(page.contains("maxResults=40"), "{page}");
        assert!(page.contains(&format!("pageToken={}", (i + 1) * 40)), "{page}");
    }

    env.fake
        .state()
        .tables
        .get_mut(&("sales".into(), "events".into()))
        .unwrap()
        .batches = vec![events(5..=9)];
    rows(&env.client, "RUN ETL JOB events_snap").await;
    assert_eq!(
        warehouse_rows(&env.client, "events").await,
        expected_rows(5, 9),
        "replaced"
    );
}

#[tokio::test]
async fn incremental_jobs_by_timestamp_datetime_and_date_load_only_new_rows() {
    let env = setup(100, &[]).await;
    for cursor in ["ts", "dt", "day"] {
        env.client
            .batch_execute(&format!(
                "CREATE ETL JOB by_{cursor} FROM bq.sales.events INTO warehouse.by_{cursor} INCREMENTAL BY {cursor} ALL"
            ))
            .await
            .unwrap();
        let run = rows(&env.client, &format!("RUN ETL JOB by_{cursor}")).await;
        assert_eq!(run[0][2].as_deref(), Some("100"), "{cursor}: {run:?}");
    }
    env.fake.append_rows("sales", "events", events(101..=130));
    for (cursor, literal) in [
        ("ts", "`ts` > TIMESTAMP '2024-03-01 01:40:00.000100+00:00'"),
        ("dt", "`dt` > DATETIME '2024-03-01 01:40:00.000100'"),
        ("day", "`day` > DATE '2024-03-10'"),
    ] {
        let run = rows(&env.client, &format!("RUN ETL JOB by_{cursor}")).await;
        assert_eq!(run[0][2].as_deref(), Some("30"), "{cursor}: only the new rows: {run:?}");
        let sent = queries(&env.fake).pop().unwrap();
        assert!(sent.contains(literal), "{literal} in {sent}");
        let again = rows(&env.client, &format!("RUN ETL JOB by_{cursor}")).await;
        assert_eq!(again[0][2].as_deref(), Some("0"), "{cursor}: {again:?}");
        assert_eq!(
            warehouse_rows(&env.client, &format!("by_{cursor}")).await,
            expected_rows(1, 130),
            "{cursor}"
        );
    }
}

#[tokio::test]
async fn bigquery_to_bigquery_loads_each_row_once() {
    let env = setup(60, &[]).await;
    env.client
        .batch_execute("CREATE ETL JOB copy_inc FROM bq.sales.events INTO bq.events_copy INCREMENTAL BY ts ALL")
        .await
        .unwrap();
    rows(&env.client, "RUN ETL JOB copy_inc").await;
    env.fake.append_rows("sales", "events", events(61..=75));
    let second = rows(&env.client, "RUN ETL JOB copy_inc").await;
    assert_eq!(second[0][2].as_deref(), Some("15"), "{second:?}");
    let copy = env.fake.table("raw_data", "events_copy").unwrap();
    let mut ids: Vec<i64> = copy
        .batches
        .iter()
        .flat_map(|b| {
            use datafusion::arrow::array::AsArray;
            use datafusion::arrow::datatypes::Int64Type;
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=75).collect::<Vec<_>>());
    let fields = copy.resource.pointer("/schema/fields").unwrap().clone();
    let types: Vec<_> = fields.as_array().unwrap().iter().map(|f| f["type"].clone()).collect();
    assert_eq!(types, ["INTEGER", "TIMESTAMP", "DATETIME", "DATE", "STRING"]);
}

#[tokio::test]
async fn a_crash_after_the_commit_is_adopted_and_nothing_is_loaded_twice() {
    let mut env = setup(80, &[("SLUICE_FAILPOINTS", "after_destination_commit")]).await;
    env.client
        .batch_execute("CREATE ETL JOB events_inc FROM bq.sales.events INTO warehouse.events INCREMENTAL BY ts ALL")
        .await
        .unwrap();
    env.sluice
        .run_into_failpoint(&env.client, "RUN ETL JOB events_inc")
        .await;
    let client = env.sluice.restart_without_failpoints().await;
    let run = rows(&client, "SELECT status FROM sluice.runs").await;
    assert_eq!(run[0][0].as_deref(), Some("succeeded"), "adopted: {run:?}");
    env.fake.append_rows("sales", "events", events(81..=90));
    let again = rows(&client, "RUN ETL JOB events_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("10"), "{again:?}");
    assert_eq!(
        warehouse_ids(&client, "events").await,
        ["90", "1", "90", "90"].map(|v| Some(v.to_owned()))
    );
}

#[tokio::test]
async fn kill_9_while_reading_pages_then_rerun_loads_every_row_once() {
    let mut env = setup(300, &[]).await;
    env.client
        .batch_execute(
            "CREATE ETL JOB events_inc FROM bq.sales.events INTO warehouse.events INCREMENTAL BY ts ALL \
             WITH (batch_rows = 20)",
        )
        .await
        .unwrap();
    env.fake.inject(
        Method::GET,
        "/queries/",
        FaultKind::LateAnswer(Duration::from_millis(300)),
        100,
    );
    rows(&env.client, "RUN ETL JOB events_inc ASYNC").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.fake.count_requests("pageToken=") < 3 {
        assert!(std::time::Instant::now() < deadline, "the run did not read pages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.sluice.kill9();
    env.fake.state().faults.clear();
    env.sluice.restart();
    let client = env.sluice.client().await;
    let killed = rows(&client, "SELECT status FROM sluice.runs").await;
    assert_eq!(killed[0][0].as_deref(), Some("failed"), "{killed:?}");
    let again = rows(&client, "RUN ETL JOB events_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("300"), "{again:?}");
    assert_eq!(warehouse_rows(&client, "events").await, expected_rows(1, 300));
}

/// Adds events `from..=to` to bqemulator's `sales.events`, as
/// [`expected_rows`] shows them, written as literals.
pub(crate) fn insert_into_emulator(emulator: &common::bqemulator::BqEmulator, from: i64, to: i64) {
    let values: Vec<String> = expected_rows(from, to)
        .into_iter()
        .map(|row| {
            let row: Vec<String> = row.into_iter().map(Option::unwrap).collect();
            let [id, ts, dt, day, name]: [String; 5] = row.try_into().unwrap();
            let name = name.replace('\'', "\\'");
            format!("({id}, TIMESTAMP '{ts}', DATETIME '{dt}', DATE '{day}', '{name}')")
        })
        .collect();
    emulator.query(&format!(
        "INSERT INTO `{PROJECT}.sales.events` (id, ts, dt, day, name) VALUES {}",
        values.join(", ")
    ));
}

/// The same reads against a second implementation of the REST API,
/// bqemulator (over DuckDB): datasets beside the connection's, a snapshot
/// in pages, and incremental jobs by each time type whose literals the
/// emulator evaluates.
#[tokio::test]
async fn the_emulator_is_read_across_datasets_in_both_load_modes() {
    let env = crate::bq_emulator::setup(&[]).await;
    env.emulator.query(&format!("CREATE SCHEMA `{PROJECT}.sales`"));
    env.emulator.query(&format!(
        "CREATE TABLE `{PROJECT}.sales.events` (id INT64 NOT NULL, ts TIMESTAMP NOT NULL, dt DATETIME, day DATE, \
         name STRING)"
    ));
    insert_into_emulator(&env.emulator, 1, 250);
    let schemas: Vec<_> = rows(&env.client, "SHOW SCHEMAS FROM wh")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert!(
        schemas.contains(&"sales".to_owned()) && schemas.contains(&"raw_data".to_owned()),
        "{schemas:?}"
    );
    let described: Vec<String> = rows(&env.client, "DESCRIBE wh.sales.events")
        .await
        .iter()
        .map(|r| format!("{} {}", r[0].as_deref().unwrap(), r[2].as_deref().unwrap()))
        .collect();
    assert_eq!(
        described
            .iter()
            .map(|d| d.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        ["id", "ts", "dt", "day", "name"],
        "{described:?}"
    );
    let picked = rows(
        &env.client,
        "SELECT id FROM wh.sales.events WHERE ts > TIMESTAMP '2024-03-01 00:20:00Z' \
         AND dt <= TIMESTAMP '2024-03-01 00:25:00' AND day >= DATE '2024-03-03' ORDER BY id",
    )
    .await;
    let ids: Vec<_> = picked.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(ids, ["21", "22", "23", "24"]);

    env.client
        .batch_execute(
            "CREATE ETL JOB snap FROM wh.sales.events INTO warehouse.snap SNAPSHOT WITH (batch_rows = 40); \
             RUN ETL JOB snap",
        )
        .await
        .unwrap();
    assert_eq!(warehouse_rows(&env.client, "snap").await, expected_rows(1, 250));
    for cursor in ["ts", "dt", "day"] {
        env.client
            .batch_execute(&format!(
                "CREATE ETL JOB by_{cursor} FROM wh.sales.events INTO warehouse.by_{cursor} INCREMENTAL BY {cursor} ALL; \
                 RUN ETL JOB by_{cursor}"
            ))
            .await
            .unwrap();
    }
    insert_into_emulator(&env.emulator, 251, 280);
    for cursor in ["ts", "dt", "day"] {
        let run = rows(&env.client, &format!("RUN ETL JOB by_{cursor}")).await;
        assert_eq!(run[0][2].as_deref(), Some("30"), "{cursor}: only the new rows: {run:?}");
        assert_eq!(
            warehouse_rows(&env.client, &format!("by_{cursor}")).await,
            expected_rows(1, 280),
            "{cursor}"
        );
    }
}
