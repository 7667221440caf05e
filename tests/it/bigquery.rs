//! BigQuery as a destination, end to end against a local fake of the
//! BigQuery REST API (`tests/fake_bigquery`): connection test, table set-up,
//! snapshot and incremental loads through media uploads and through a
//! staging bucket, exact types, retries, error reporting and exactly-once
//! across kill -9.

use crate::common;
use crate::fake_bigquery;

use std::time::Duration;

use axum::http::Method;
use common::*;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use fake_bigquery::{FakeBigQuery, FaultKind, resumable};
use serde_json::json;
use tokio_postgres::Client;

const PROJECT: &str = "test-project";

pub(crate) const ORDERS: &str = "
CREATE TABLE public.orders (
    id bigint PRIMARY KEY,
    amount numeric(12,2),
    status text NOT NULL,
    updated_at timestamptz NOT NULL
);
INSERT INTO public.orders
SELECT g, g * 1.25, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'open' END,
       timestamptz '2024-03-01 00:00:00+00' + g * interval '1 minute'
FROM generate_series(1, 500) g;
";

pub(crate) struct Env {
    pub(crate) pg: PgServer,
    pub(crate) fake: FakeBigQuery,
    pub(crate) sluice: Sluice,
    pub(crate) client: Client,
    _keys: tempfile::TempDir,
}

/// PostgreSQL with `orders`, the fake, Sluice pointed at the fake, and the
/// `shop` and `wh` connections.
pub(crate) async fn setup(extra_env: &[(&str, &str)]) -> Env {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", ORDERS);
    let fake = FakeBigQuery::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = fake.write_key_file(keys.path());
    let gcs = fake.gcs_url();
    let mut envs = vec![
        ("SLUICE_BIGQUERY_ENDPOINT", fake.url.as_str()),
        ("SLUICE_GCS_ENDPOINT", gcs.as_str()),
    ];
    envs.extend_from_slice(extra_env);
    let sluice = Sluice::start_with(&[], &envs);
    let client = sluice.client().await;
    create_connections(&client, &pg, &key_file).await;
    Env {
        pg,
        fake,
        sluice,
        client,
        _keys: keys,
    }
}

/// The `shop` and `wh` connections.
async fn create_connections(client: &Client, pg: &PgServer, key_file: &std::path::Path) {
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password '{ETL_PASSWORD}');
             CREATE CONNECTION wh TYPE bigquery OPTIONS (project '{PROJECT}', dataset 'raw_data', location 'EU',
                 credentials_file '{}', connect_timeout 2);",
            pg.port,
            key_file.display()
        ))
        .await
        .unwrap();
}

/// Every row of a fake table as text, `|`-separated, sorted.
pub(crate) fn table_rows(fake: &FakeBigQuery, table: &str) -> Vec<String> {
    let table = fake.table("raw_data", table).expect("the table exists");
    let mut rows = Vec::new();
    for batch in &table.batches {
        rows.extend(batch_rows(batch));
    }
    rows.sort();
    rows
}

fn batch_rows(batch: &RecordBatch) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// `orders_inc`: `orders` loaded incrementally into `wh.orders`.
pub(crate) async fn create_orders_inc(client: &Client, batch_rows: u32) {
    create_orders_inc_into(client, "wh", batch_rows).await;
}

/// `orders_inc`: `orders` loaded incrementally into `<connection>.orders`.
async fn create_orders_inc_into(client: &Client, connection: &str, batch_rows: u32) {
    client
        .batch_execute(&format!(
            "CREATE ETL JOB orders_inc FROM shop.public.orders INTO {connection}.orders INCREMENTAL BY updated_at ALL \
             WITH (batch_rows = {batch_rows})"
        ))
        .await
        .unwrap();
}

/// Starts a run of `job` with slow chunk uploads and kills Sluice with
/// kill -9 once `uploads` more chunks are on their way: mid-run, before the
/// commit (the table is unchanged). Restarts Sluice and returns a client.
async fn kill_mid_upload(env: &mut Env, job: &str, uploads: usize) -> Client {
    let target = env.fake.count_requests("/upload/") + uploads;
    kill_mid_run(env, job, (Method::POST, "/upload/"), |fake| {
        fake.count_requests("/upload/") >= target
    })
    .await
}

/// Starts a run of `job` with `slow` requests (method, path piece) answered
/// late and kills Sluice with kill -9 once `started` holds, before the
/// commit (the table is unchanged). Restarts Sluice and returns a client.
async fn kill_mid_run(
    env: &mut Env,
    job: &str,
    slow: (Method, &str),
    started: impl Fn(&FakeBigQuery) -> bool,
) -> Client {
    env.fake
        .inject(slow.0, slow.1, FaultKind::LateAnswer(Duration::from_millis(300)), 100);
    let before = table_rows(&env.fake, "orders");
    rows(&env.client, &format!("RUN ETL JOB {job} ASYNC")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !started(&env.fake) {
        assert!(std::time::Instant::now() < deadline, "the run did not start loading");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.sluice.kill9();
    assert_eq!(table_rows(&env.fake, "orders"), before, "nothing committed");
    env.fake.state().faults.clear();
    env.sluice.restart();
    let client = env.sluice.client().await;
    let killed = rows(&client, "SELECT status FROM sluice.runs ORDER BY run_id DESC LIMIT 1").await;
    assert_eq!(killed[0][0].as_deref(), Some("failed"), "{killed:?}");
    client
}

fn staging_tables(fake: &FakeBigQuery) -> Vec<String> {
    fake.table_names("raw_data")
        .into_iter()
        .filter(|t| t.starts_with("_sluice_staging"))
        .collect()
}

#[tokio::test]
async fn connection_test_signs_in_and_creates_the_dataset_in_its_location() {
    let env = setup(&[]).await;
    let dataset = env.fake.state().datasets["raw_data"].clone();
    assert_eq!(dataset["location"], json!("EU"));
    assert!(env.fake.state().tokens_issued >= 1, "a token was fetched");
    let shown = rows(&env.client, "SHOW CONNECTIONS").await;
    let wh = shown.iter().find(|r| r[0].as_deref() == Some("wh")).unwrap();
    assert!(wh.iter().any(|c| c.as_deref() == Some("ok")), "{wh:?}");

    // The key as a secret: stored encrypted, never shown back.
    let key = std::fs::read_to_string(env._keys.path().join("sa.json")).unwrap();
    env.client
        .batch_execute(&format!(
            "CREATE SECRET sa AS '{}'; CREATE CONNECTION wh2 TYPE bigquery OPTIONS (project '{PROJECT}', dataset 'other', location 'EU', credentials SECRET sa)",
            key.replace('\'', "''")
        ))
        .await
        .unwrap();
    let create = rows(&env.client, "SHOW CREATE CONNECTION wh2").await;
    let text = format!("{create:?}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert!(env.fake.state().datasets.contains_key("other"));

    // A dataset in another location is refused, naming both.
    env.fake.state().datasets.insert(
        "us_data".into(),
        json!({"datasetReference": {"projectId": PROJECT, "datasetId": "us_data"}, "location": "US"}),
    );
    let err = expect_err(
        &env.client,
        "CREATE CONNECTION wh3 TYPE bigquery OPTIONS (project 'test-project', dataset 'us_data', location 'EU', credentials SECRET sa)",
        "22023",
    )
    .await;
    assert!(err.contains("location US") && err.contains("EU"), "{err}");

    // A key that is not one fails as a bad password would, without echoing it.
    let err = expect_err(
        &env.client,
        "CREATE CONNECTION bad TYPE bigquery OPTIONS (project 'test-project', dataset 'd', credentials 'not-a-key-7f3a')",
        "28P01",
    )
    .await;
    assert!(
        err.contains("service-account JSON key") && !err.contains("7f3a"),
        "{err}"
    );

    // A missing permission is named, as BigQuery words it.
    env.fake.state().denied = Some("bigquery.datasets.create".into());
    let err = expect_err(
        &env.client,
        "CREATE CONNECTION wh4 TYPE bigquery OPTIONS (project 'test-project', dataset 'new_one', location 'EU', credentials SECRET sa)",
        "08001",
    )
    .await;
    assert!(
        err.contains("bigquery.datasets.create") && err.contains("accessDenied"),
        "{err}"
    );
    assert_eq!(
        rows(
            &env.client,
            "SELECT count(*) FROM sluice.connections WHERE name IN ('wh3', 'wh4')"
        )
        .await[0][0]
            .as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn incremental_job_sets_the_table_up_and_appends_each_row_once() {
    let env = setup(&[("SLUICE_BIGQUERY_CHUNK_BYTES", "2000")]).await;
    env.client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL \
             WITH (partition_expiration_days = 400, require_partition_filter = true, batch_rows = 100)",
        )
        .await
        .unwrap();
    // Set up before any data moves: schema with modes, partitioning,
    // clustering on the primary key, a description naming the job.
    let table = env.fake.table("raw_data", "orders").unwrap();
    assert_eq!(table.num_rows(), 0);
    let resource = &table.resource;
    assert_eq!(
        resource["schema"]["fields"],
        json!([
            {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
            {"name": "amount", "type": "NUMERIC", "mode": "NULLABLE"},
            {"name": "status", "type": "STRING", "mode": "REQUIRED"},
            {"name": "updated_at", "type": "TIMESTAMP", "mode": "REQUIRED"},
        ])
    );
    assert_eq!(
        resource["timePartitioning"],
        json!({"type": "DAY", "field": "updated_at", "expirationMs": (400u64 * 86_400_000).to_string()})
    );
    assert_eq!(resource["requirePartitionFilter"], json!(true));
    assert_eq!(resource["clustering"], json!({"fields": ["id"]}));
    assert!(resource["description"].as_str().unwrap().contains("orders_inc"));

    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(summary[0][2].as_deref(), Some("500"));
    let loaded = table_rows(&env.fake, "orders");
    assert_eq!(loaded.len(), 500);
    assert!(
        loaded.contains(&"1|1.25|open|2024-03-01T00:01:00Z".to_string()),
        "{:?}",
        &loaded[..3]
    );
    // Small chunks: several load jobs, one commit, no staging left.
    let chunk_jobs = env
        .fake
        .count_requests("/upload/bigquery/v2/projects/test-project/jobs");
    assert!(chunk_jobs > 1, "{chunk_jobs} uploads");
    assert!(staging_tables(&env.fake).is_empty(), "{:?}", staging_tables(&env.fake));

    env.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g, 'new', timestamptz '2024-03-05 00:00:00+00' + g * interval '1 second' FROM generate_series(501, 520) g",
    );
    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("20"), "{summary:?}");
    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("0"), "{summary:?}");
    let loaded = table_rows(&env.fake, "orders");
    assert_eq!(loaded.len(), 520);
    let mut ids: Vec<&str> = loaded.iter().map(|r| r.split('|').next().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 520, "no row twice");
}

#[tokio::test]
async fn snapshot_job_replaces_the_table_atomically() {
    let env = setup(&[]).await;
    env.client
        .batch_execute("CREATE ETL JOB orders_snap FROM shop.public.orders (id, status) INTO wh.orders_copy SNAPSHOT")
        .await
        .unwrap();
    let resource = env.fake.table("raw_data", "orders_copy").unwrap().resource;
    assert!(
        resource.get("timePartitioning").is_none(),
        "snapshots are not partitioned"
    );
    rows(&env.client, "RUN ETL JOB orders_snap").await;
    env.pg.psql_admin_db("shop", "DELETE FROM orders WHERE id > 100");
    rows(&env.client, "RUN ETL JOB orders_snap").await;
    let loaded = table_rows(&env.fake, "orders_copy");
    assert_eq!(loaded.len(), 100, "replaced, not appended");
    // The replace is one copy job with WRITE_TRUNCATE.
    let state = env.fake.state();
    let commits: Vec<_> = state
        .jobs
        .values()
        .filter(|j| j["configuration"]["copy"].is_object())
        .collect();
    assert_eq!(commits.len(), 2);
    assert!(
        commits
            .iter()
            .all(|j| j["configuration"]["copy"]["writeDisposition"] == "WRITE_TRUNCATE")
    );
}

#[tokio::test]
async fn types_arrive_exactly() {
    let env = setup(&[]).await;
    types_arrive_exactly_through(&env, "wh").await;
}

/// Loads a table of every special type through `connection` and checks
/// the table made and the values loaded.
async fn types_arrive_exactly_through(env: &Env, connection: &str) {
    env.pg.psql_admin_db(
        "shop",
        "CREATE TABLE kinds (id int PRIMARY KEY, n numeric(12,2), big numeric(50,20), at timestamptz, local timestamp,
             doc jsonb, raw bytea, tags text[], nums int[]);
         INSERT INTO kinds VALUES
           (1, 1234567890.12, 123456789012345678901234567890.12345678901234567890, '2024-02-29 23:59:59.123456+00',
            '2024-02-29 23:59:59.654321', '{\"a\": [1, 2]}', '\\xdeadbeef', ARRAY['x', 'y'], ARRAY[1, 2, 3]),
           (2, -0.01, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
    );
    env.client
        .batch_execute(&format!(
            "CREATE ETL JOB kinds FROM shop.public.kinds INTO {connection}.kinds SNAPSHOT"
        ))
        .await
        .unwrap();
    let fields = env.fake.table("raw_data", "kinds").unwrap().resource["schema"]["fields"].clone();
    let described: Vec<String> = fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {} {}",
                f["name"].as_str().unwrap(),
                f["type"].as_str().unwrap(),
                f["mode"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            "id INTEGER REQUIRED",
            "n NUMERIC NULLABLE",
            "big BIGNUMERIC NULLABLE",
            "at TIMESTAMP NULLABLE",
            "local DATETIME NULLABLE",
            "doc JSON NULLABLE",
            "raw BYTES NULLABLE",
            "tags STRING REPEATED",
            "nums INTEGER REPEATED",
        ]
    );
    let summary = rows(&env.client, "RUN ETL JOB kinds").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    // The fake accepted each column only with the Parquet or Avro logical
    // type BigQuery reads as the column's type; the values are exact.
    assert_eq!(
        table_rows(&env.fake, "kinds"),
        [
            "1|1234567890.12|123456789012345678901234567890.12345678901234567890|2024-02-29T23:59:59.123456Z|\
             2024-02-29T23:59:59.654321|{\"a\": [1, 2]}|deadbeef|[x, y]|[1, 2, 3]",
            "2|-0.01|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
        ]
    );
}

#[tokio::test]
async fn an_incompatible_table_is_refused_and_nothing_is_left_behind() {
    let env = setup(&[]).await;
    // An existing table with another schema: the job is refused, listing
    // the differences.
    env.fake.state().tables.insert(
        ("raw_data".into(), "taken".into()),
        fake_bigquery::FakeTable {
            resource: json!({"tableReference": {"projectId": PROJECT, "datasetId": "raw_data", "tableId": "taken"},
                "schema": {"fields": [{"name": "id", "type": "STRING", "mode": "NULLABLE"}]}}),
            batches: vec![],
        },
    );
    let err = expect_err(
        &env.client,
        "CREATE ETL JOB j FROM shop.public.orders INTO wh.taken SNAPSHOT",
        "58030",
    )
    .await;
    assert!(
        err.contains("\"id\" is STRING NULLABLE in the table but INT64 REQUIRED"),
        "{err}"
    );
    assert!(err.contains("\"amount\""), "{err}");
    assert!(rows(&env.client, "SHOW ETL JOBS").await.is_empty());

    // A compatible one is adopted.
    env.fake.state().tables.insert(
        ("raw_data".into(), "adopted".into()),
        fake_bigquery::FakeTable {
            resource: json!({"tableReference": {"projectId": PROJECT, "datasetId": "raw_data", "tableId": "adopted"},
                "schema": {"fields": [{"name": "id", "type": "INT64", "mode": "NULLABLE"},
                                      {"name": "status", "type": "STRING", "mode": "NULLABLE"},
                                      {"name": "extra", "type": "STRING", "mode": "NULLABLE"}]}}),
            batches: vec![],
        },
    );
    env.client
        .batch_execute("CREATE ETL JOB adopt FROM shop.public.orders (id, status) INTO wh.adopted SNAPSHOT")
        .await
        .unwrap();
    let summary = rows(&env.client, "RUN ETL JOB adopt").await;
    assert_eq!(summary[0][2].as_deref(), Some("500"), "{summary:?}");

    // A bad layout option fails before anything is made.
    let err = expect_err(
        &env.client,
        "CREATE ETL JOB bad FROM shop.public.orders INTO wh.bad INCREMENTAL BY updated_at WITH (cluster_by = 'nope')",
        "22023",
    )
    .await;
    assert!(err.contains("nope"), "{err}");
    assert!(env.fake.table("raw_data", "bad").is_none());
}

#[tokio::test]
async fn transient_failures_are_retried_and_lost_answers_never_load_twice() {
    let env = setup(&[("SLUICE_BIGQUERY_CHUNK_BYTES", "4000")]).await;
    create_orders_inc(&env.client, 100).await;
    env.fake
        .inject(Method::POST, "/upload/", FaultKind::Status(429, "rateLimitExceeded"), 2);
    env.fake
        .inject(Method::POST, "/upload/", FaultKind::Status(503, "backendError"), 1);
    // The first chunk's job is created, but its answer comes too late: the
    // retry meets "already exists" and checks that job instead.
    env.fake.inject(
        Method::POST,
        "/upload/",
        FaultKind::LateAnswer(Duration::from_secs(5)),
        1,
    );
    env.fake.inject(
        Method::POST,
        "/projects/test-project/jobs",
        FaultKind::Status(500, "internalError"),
        1,
    );
    env.fake
        .inject(Method::GET, "/jobs/", FaultKind::Status(502, "backendError"), 1);
    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(table_rows(&env.fake, "orders").len(), 500, "every row exactly once");
    assert!(
        env.fake.state().faults.iter().all(|f| f.times == 0),
        "every fault was hit"
    );
}

#[tokio::test]
async fn a_refused_load_fails_the_run_with_bigquerys_words_and_job_id() {
    let env = setup(&[]).await;
    env.client
        .batch_execute("CREATE ETL JOB orders_inc FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    env.fake
        .inject(Method::POST, "/upload/", FaultKind::Status(400, "invalid"), 1);
    let err = expect_err(&env.client, "RUN ETL JOB orders_inc", "58030").await;
    assert!(err.contains("invalid: injected 400 invalid"), "{err}");
    assert!(err.contains("job sluice_orders_"), "{err}");
    assert_eq!(env.fake.count_requests("/upload/"), 1, "4xx is not retried");
    assert_eq!(env.fake.table("raw_data", "orders").unwrap().num_rows(), 0);
    let runs = rows(&env.client, "SELECT status, watermark_to FROM sluice.runs").await;
    assert_eq!(runs[0][0].as_deref(), Some("failed"));
    assert!(
        rows(&env.client, "SELECT watermark FROM sluice.jobs").await[0][0].is_none(),
        "the watermark did not move"
    );
    assert!(
        staging_tables(&env.fake).is_empty(),
        "the aborted run's staging table is gone"
    );
    // The next run loads everything once.
    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("500"), "{summary:?}");
    assert_eq!(table_rows(&env.fake, "orders").len(), 500);
}

#[tokio::test]
async fn a_crash_between_bigquery_commit_and_catalog_update_is_reconciled() {
    let mut env = setup(&[("SLUICE_FAILPOINTS", "after_destination_commit")]).await;
    env.client
        .batch_execute("CREATE ETL JOB orders_inc FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    env.sluice
        .run_into_failpoint(&env.client, "RUN ETL JOB orders_inc")
        .await;
    assert_eq!(table_rows(&env.fake, "orders").len(), 500, "BigQuery has the load");
    let client = env.sluice.restart_without_failpoints().await;
    let run = rows(&client, "SELECT status, watermark_to FROM sluice.runs").await;
    assert_eq!(run[0][0].as_deref(), Some("succeeded"), "adopted: {run:?}");
    assert_eq!(run[0][1].as_deref(), Some("2024-03-01T08:20:00Z"));
    let jobs = rows(&client, "SELECT watermark FROM sluice.jobs WHERE name = 'orders_inc'").await;
    assert_eq!(jobs[0][0], run[0][1]);
    let again = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("0"), "nothing is loaded twice");
    assert_eq!(table_rows(&env.fake, "orders").len(), 500);
}

#[tokio::test]
async fn kill_9_mid_run_then_rerun_loads_every_row_once() {
    let mut env = setup(&[("SLUICE_BIGQUERY_CHUNK_BYTES", "3000")]).await;
    create_orders_inc(&env.client, 50).await;
    // The kill lands after some chunks were loaded into the run's staging table.
    let client = kill_mid_upload(&mut env, "orders_inc", 3).await;
    assert!(
        staging_tables(&env.fake).is_empty(),
        "reconcile removed the staging table"
    );
    let again = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("500"), "{again:?}");
    assert_eq!(table_rows(&env.fake, "orders").len(), 500);
}

#[tokio::test]
async fn describe_and_select_through_the_connection() {
    let env = setup(&[]).await;
    env.client
        .batch_execute("CREATE ETL JOB orders_inc FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    rows(&env.client, "RUN ETL JOB orders_inc").await;
    let described = rows(&env.client, "DESCRIBE wh.raw_data.orders").await;
    let columns: Vec<String> = described
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r[0].as_deref().unwrap(),
                r[2].as_deref().unwrap(),
                r[3].as_deref().unwrap()
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            "id INTEGER f",
            "amount NUMERIC t",
            "status STRING f",
            "updated_at TIMESTAMP f"
        ]
    );
    assert_eq!(
        rows(&env.client, "SELECT count(*) FROM wh.raw_data.orders").await[0][0].as_deref(),
        Some("500")
    );
    let first = rows(
        &env.client,
        "SELECT id, amount, status, updated_at FROM wh.raw_data.orders ORDER BY id LIMIT 2",
    )
    .await;
    assert_eq!(
        first,
        [
            vec![
                Some("1".into()),
                Some("1.250000000".into()),
                Some("open".into()),
                Some("2024-03-01 00:01:00.000000+00".into())
            ],
            vec![
                Some("2".into()),
                Some("2.500000000".into()),
                Some("paid".into()),
                Some("2024-03-01 00:02:00.000000+00".into())
            ],
        ]
    );
    let tables = rows(&env.client, "SHOW TABLES FROM wh.raw_data").await;
    assert_eq!(tables.len(), 1, "staging tables are not listed: {tables:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_notices_show_bytes_uploaded_and_load_jobs_done() {
    let env = setup(&[("SLUICE_BIGQUERY_CHUNK_BYTES", "3000")]).await;
    create_orders_inc(&env.client, 50).await;
    env.fake.state().job_delay = Some(Duration::from_millis(1500));
    let query =
        "SELECT phase, bytes_uploaded, load_jobs_done, load_jobs_total FROM sluice.runs WHERE status = 'running'";
    // The run in psql (which prints the NOTICEs); sluice.runs watched from
    // this session meanwhile.
    let (output, seen) = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let run = scope.spawn(|| env.sluice.psql("RUN ETL JOB orders_inc;"));
            let mut seen = Vec::new();
            while !run.is_finished() {
                let now = tokio::runtime::Handle::current().block_on(rows(&env.client, query));
                seen.extend(now);
                std::thread::sleep(Duration::from_millis(50));
            }
            (run.join().unwrap(), seen)
        })
    });
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let number = |v: &Option<String>| v.as_deref().map(|n| n.parse::<u64>().unwrap());
    let counters: Vec<(u64, u64, u64)> = seen
        .iter()
        .filter(|r| r[1].is_some())
        .map(|r| (number(&r[1]).unwrap(), number(&r[2]).unwrap(), number(&r[3]).unwrap()))
        .collect();
    assert!(
        counters
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1 && w[0].2 <= w[1].2),
        "counters only grow: {counters:?}"
    );
    assert!(
        seen.iter()
            .any(|r| r[0].as_deref() == Some("loading") && number(&r[2]) < number(&r[3])),
        "the wait for load jobs is visible: {seen:?}"
    );
    // At the end: every chunk's load job and the commit's copy job done,
    // every byte of the chunks counted.
    let uploads = env.fake.count_requests("/upload/") as u64;
    assert!(uploads > 1, "{uploads} chunks");
    let end = rows(
        &env.client,
        "SELECT bytes, bytes_uploaded, load_jobs_done, load_jobs_total, phase FROM sluice.runs",
    )
    .await;
    assert_eq!(end[0][0], end[0][1], "bytes uploaded are the run's bytes: {end:?}");
    assert_eq!(number(&end[0][2]), Some(uploads + 1), "{end:?}");
    assert_eq!(number(&end[0][3]), Some(uploads + 1), "{end:?}");
    assert_eq!(end[0][4], None, "no phase once finished");
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(
        notices
            .lines()
            .any(|l| l.contains(", loading, ") && l.contains("bytes uploaded, load jobs ")),
        "{notices}"
    );

    // The local warehouse counts the bytes it writes; it has no load jobs.
    env.client
        .batch_execute("CREATE ETL JOB local FROM shop.public.orders INTO warehouse.orders SNAPSHOT")
        .await
        .unwrap();
    rows(&env.client, "RUN ETL JOB local").await;
    let local = rows(
        &env.client,
        "SELECT bytes, bytes_uploaded, load_jobs_done, load_jobs_total FROM sluice.runs WHERE job = 'local'",
    )
    .await;
    assert!(number(&local[0][0]) > Some(0), "{local:?}");
    assert_eq!(local[0][0], local[0][1], "{local:?}");
    assert_eq!(local[0][2..], [None, None]);
}

#[tokio::test]
async fn show_create_keeps_the_table_layout_and_recreates_the_same_job() {
    let env = setup(&[]).await;
    env.client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL \
             WITH (partition_expiration_days = 90, require_partition_filter = true, cluster_by = 'status, id')",
        )
        .await
        .unwrap();
    let shown = rows(&env.client, "SHOW CREATE ETL JOB orders_inc").await[0][1]
        .clone()
        .unwrap();
    assert!(
        shown.ends_with(
            ", cluster_by = 'status, id', partition_expiration_days = 90, require_partition_filter = true);"
        ),
        "{shown}"
    );
    // Run as SQL, the statement makes the same job and the same table.
    let first = env.fake.table("raw_data", "orders").unwrap().resource;
    env.client
        .batch_execute("DROP ETL JOB orders_inc WITH DATA")
        .await
        .unwrap();
    assert!(env.fake.table("raw_data", "orders").is_none());
    env.client.batch_execute(&shown).await.unwrap();
    let again = rows(&env.client, "SHOW CREATE ETL JOB orders_inc").await[0][1]
        .clone()
        .unwrap();
    assert_eq!(again, shown);
    let second = env.fake.table("raw_data", "orders").unwrap().resource;
    for layout in ["timePartitioning", "requirePartitionFilter", "clustering", "schema"] {
        assert_eq!(first[layout], second[layout], "{layout}");
    }
    assert_eq!(second["clustering"], json!({"fields": ["status", "id"]}));

    // Jobs without layout settings show none.
    env.client
        .batch_execute("CREATE ETL JOB plain FROM shop.public.orders INTO wh.plain SNAPSHOT")
        .await
        .unwrap();
    let plain = rows(&env.client, "SHOW CREATE ETL JOB plain").await[0][1]
        .clone()
        .unwrap();
    assert!(!plain.contains("partition") && !plain.contains("cluster_by"), "{plain}");

    // The local warehouse takes no table options: refused, naming who does.
    let error = env
        .client
        .batch_execute("CREATE ETL JOB local FROM shop.public.orders SNAPSHOT WITH (cluster_by = 'id')")
        .await
        .unwrap_err();
    let error = error.as_db_error().unwrap();
    assert_eq!(error.code().code(), "22023");
    assert_eq!(
        error.message(),
        "cluster_by is an option of bigquery tables; ETL job \"local\" loads into the local warehouse, which takes no table options"
    );
    assert_eq!(
        one(&env.client, "SELECT count(*) FROM sluice.jobs WHERE name = 'local'").await,
        "0"
    );
}

/// `count(*)|count(DISTINCT id)|sum(id)` of the source's orders.
pub(crate) fn source_fingerprint(pg: &PgServer) -> String {
    pg.psql_admin_db("shop", "SELECT count(*), count(DISTINCT id), sum(id) FROM orders")
        .trim()
        .to_owned()
}

/// The same of a fake table's rows (id first).
pub(crate) fn fake_fingerprint(fake: &FakeBigQuery, table: &str) -> String {
    let ids: Vec<i64> = table_rows(fake, table)
        .iter()
        .map(|r| r.split('|').next().unwrap().parse().unwrap())
        .collect();
    let distinct: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    format!("{}|{}|{}", ids.len(), distinct.len(), ids.iter().sum::<i64>())
}

/// Late rows: ids from `first`, with a cursor half an hour before the
/// newest row, inside a one-hour lookback; and 20 new rows after it.
fn insert_late_and_new_rows(pg: &PgServer, first: i64) {
    pg.psql_admin_db(
        "shop",
        &format!(
            "INSERT INTO orders SELECT {first} + g, g, 'late', (SELECT max(updated_at) FROM orders) - interval '30 minutes' \
             FROM generate_series(0, 49) g;
             INSERT INTO orders SELECT {first} + 1000 + g, g, 'new', (SELECT max(updated_at) FROM orders) + g * interval '1 second' \
             FROM generate_series(1, 20) g;"
        ),
    );
}

#[tokio::test]
async fn lookback_loads_late_rows_once_reading_loaded_keys_back_from_bigquery() {
    let mut env = setup(&[("SLUICE_BIGQUERY_CHUNK_BYTES", "3000")]).await;
    env.client
        .batch_execute(
            "CREATE ETL JOB orders_late FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL \
             LOOKBACK 1 HOUR DEDUPE ON (id) WITH (batch_rows = 50)",
        )
        .await
        .unwrap();
    let summary = rows(&env.client, "RUN ETL JOB orders_late").await;
    assert_eq!(summary[0][2].as_deref(), Some("500"), "{summary:?}");
    assert!(env.fake.state().queries.is_empty(), "an empty table is not queried");
    // Checking that a job can read keys back runs no query either (the
    // job is then refused: the table has its job).
    expect_err(
        &env.client,
        "CREATE ETL JOB adopting FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL \
         LOOKBACK 1 HOUR DEDUPE ON (id)",
        "42710",
    )
    .await;
    assert!(env.fake.state().queries.is_empty());

    insert_late_and_new_rows(&env.pg, 10_000);
    // A refused key query fails the run with BigQuery's reason, loading nothing.
    env.fake
        .inject(Method::POST, "/queries", FaultKind::Status(403, "accessDenied"), 1);
    let err = expect_err(&env.client, "RUN ETL JOB orders_late", "42501").await;
    assert!(err.contains("accessDenied: injected 403"), "{err}");
    assert_eq!(table_rows(&env.fake, "orders").len(), 500);
    let summary = rows(&env.client, "RUN ETL JOB orders_late").await;
    assert_eq!(
        summary[0][2].as_deref(),
        Some("70"),
        "late and new rows only: {summary:?}"
    );
    let again = rows(&env.client, "RUN ETL JOB orders_late").await;
    assert_eq!(again[0][2].as_deref(), Some("0"), "{again:?}");
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
    // The keys were read with a parameterised query from the lookback
    // window's start (the watermark 08:20 minus one hour).
    let query = env.fake.state().queries.last().cloned().unwrap();
    assert_eq!(
        query["query"],
        json!("SELECT `id` FROM `raw_data`.`orders` WHERE `updated_at` > @after")
    );
    assert_eq!(query["parameterMode"], json!("NAMED"));
    assert_eq!(query["queryParameters"][0]["name"], json!("after"));
    assert_eq!(query["queryParameters"][0]["parameterType"]["type"], json!("TIMESTAMP"));

    // A kill -9 mid-run, then a re-run: the late rows still arrive once.
    insert_late_and_new_rows(&env.pg, 20_000);
    let client = kill_mid_upload(&mut env, "orders_late", 1).await;
    let summary = rows(&client, "RUN ETL JOB orders_late").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    let again = rows(&client, "RUN ETL JOB orders_late").await;
    assert_eq!(again[0][2].as_deref(), Some("0"), "{again:?}");
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
    let late = table_rows(&env.fake, "orders")
        .iter()
        .filter(|r| r.contains("|late|"))
        .count();
    assert_eq!(late, 100, "late rows of both rounds, once each");
    // The window's 130 keys came in two pages.
    assert!(
        env.fake
            .count_requests("GET /bigquery/v2/projects/test-project/queries/")
            > 0
    );
}

/// The statement that creates connection `name` like `wh` (which must be
/// dropped first: both load the same dataset), staging its chunks in `bucket`.
fn staged_connection(env: &Env, name: &str, bucket: &str) -> String {
    bigquery_connection(env, name, &format!("staging_bucket '{bucket}'"))
}

/// The statement that creates connection `name` like `wh`, with `options` more.
fn bigquery_connection(env: &Env, name: &str, options: &str) -> String {
    format!(
        "CREATE CONNECTION {name} TYPE bigquery OPTIONS (project '{PROJECT}', dataset 'raw_data', location 'EU', \
         credentials_file '{}', connect_timeout 2, {options})",
        env._keys.path().join("sa.json").display()
    )
}

/// [`setup`] with connection `staged` (staging in `bucket`) instead of
/// `wh`, chunks of `chunk_bytes` and `uris_per_job` chunks per load job.
async fn setup_staged(bucket: &str, chunk_bytes: &str, uris_per_job: &str) -> Env {
    let env = setup(&[
        ("SLUICE_BIGQUERY_CHUNK_BYTES", chunk_bytes),
        ("SLUICE_BIGQUERY_URIS_PER_JOB", uris_per_job),
    ])
    .await;
    env.client.batch_execute("DROP CONNECTION wh").await.unwrap();
    env.client
        .batch_execute(&staged_connection(&env, "staged", bucket))
        .await
        .unwrap();
    env
}

/// The load jobs the fake ran, as their `configuration.load`.
fn load_jobs(fake: &FakeBigQuery) -> Vec<serde_json::Value> {
    fake.state()
        .jobs
        .values()
        .filter_map(|job| job.pointer("/configuration/load").cloned())
        .collect()
}

#[tokio::test]
async fn loads_through_a_staging_bucket_land_exactly_and_leave_nothing_behind() {
    let env = setup_staged("gs://stage/loads/tmp", "2000", "3").await;
    // The connection test wrote and deleted a probe object.
    let probes = env.fake.state().gcs.written.clone();
    assert!(
        probes.len() == 1 && probes[0].starts_with("gs://stage/loads/tmp/_sluice_probe_"),
        "{probes:?}"
    );
    assert!(env.fake.objects("stage").is_empty());

    create_orders_inc_into(&env.client, "staged", 100).await;
    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(summary[0][2].as_deref(), Some("500"));
    let loaded = table_rows(&env.fake, "orders");
    assert_eq!(loaded.len(), 500);
    assert!(loaded.contains(&"1|1.25|open|2024-03-01T00:01:00Z".to_string()));
    let mut ids: Vec<&str> = loaded.iter().map(|r| r.split('|').next().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 500, "no row twice");

    // Every chunk went through the bucket, several to a load job.
    assert_eq!(env.fake.count_requests("/upload/"), 0);
    let mut staged: Vec<String> = env.fake.state().gcs.written[1..].to_vec();
    staged.sort();
    let jobs = load_jobs(&env.fake);
    let mut uris: Vec<String> = jobs
        .iter()
        .flat_map(|load| load["sourceUris"].as_array().unwrap().clone())
        .map(|uri| uri.as_str().unwrap().to_owned())
        .collect();
    uris.sort();
    assert_eq!(uris, staged, "each staged chunk is loaded once");
    assert!(staged.len() > 3, "{} chunks", staged.len());
    assert_eq!(jobs.len(), staged.len().div_ceil(3), "{jobs:?}");
    assert!(
        uris.iter()
            .all(|u| u.starts_with("gs://stage/loads/tmp/sluice_orders_") && u.ends_with(".parquet")),
        "{uris:?}"
    );
    assert!(env.fake.objects("stage").is_empty(), "{:?}", env.fake.objects("stage"));
    assert!(staging_tables(&env.fake).is_empty());

    // A snapshot replaces through the bucket too.
    env.client
        .batch_execute("CREATE ETL JOB snap FROM shop.public.orders (id, status) INTO staged.orders_copy SNAPSHOT")
        .await
        .unwrap();
    for _ in 0..2 {
        let summary = rows(&env.client, "RUN ETL JOB snap").await;
        assert_eq!(summary[0][2].as_deref(), Some("500"), "{summary:?}");
    }
    assert_eq!(table_rows(&env.fake, "orders_copy").len(), 500);
    assert!(env.fake.objects("stage").is_empty());
}

#[tokio::test]
async fn a_bucket_that_cannot_be_written_is_refused_and_a_failed_run_cleans_up() {
    let env = setup(&[("SLUICE_BIGQUERY_CHUNK_BYTES", "2000")]).await;
    env.client.batch_execute("DROP CONNECTION wh").await.unwrap();
    env.fake.state().gcs.read_only.insert("locked".into());
    let err = expect_err(
        &env.client,
        &staged_connection(&env, "locked", "gs://locked/x"),
        "08001",
    )
    .await;
    assert!(
        err.contains("storage.objects.create") && err.contains("gs://locked/x") && err.contains("accessDenied"),
        "{err}"
    );
    let err = expect_err(
        &env.client,
        &staged_connection(&env, "bad", "s3://k:hunter2@b/x"),
        "08001",
    )
    .await;
    assert!(err.contains("gs://bucket/prefix") && !err.contains("hunter2"), "{err}");
    assert_eq!(
        rows(
            &env.client,
            "SELECT count(*) FROM sluice.connections WHERE name IN ('locked', 'bad')"
        )
        .await[0][0]
            .as_deref(),
        Some("0")
    );

    // A load job BigQuery refuses fails the run; its staged chunks are deleted.
    env.client
        .batch_execute(&staged_connection(&env, "staged", "gs://stage"))
        .await
        .unwrap();
    env.client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM shop.public.orders INTO staged.orders INCREMENTAL BY updated_at ALL",
        )
        .await
        .unwrap();
    env.fake.inject(
        Method::POST,
        "/bigquery/v2/projects/test-project/jobs",
        FaultKind::Status(400, "invalid"),
        1,
    );
    let err = expect_err(&env.client, "RUN ETL JOB orders_inc", "58030").await;
    assert!(err.contains("invalid: injected 400 invalid"), "{err}");
    assert!(
        env.fake.state().gcs.written.iter().any(|uri| uri.ends_with(".parquet")),
        "a chunk was staged"
    );
    assert!(env.fake.objects("stage").is_empty(), "{:?}", env.fake.objects("stage"));
    assert!(staging_tables(&env.fake).is_empty());
    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("500"), "{summary:?}");
    assert_eq!(table_rows(&env.fake, "orders").len(), 500);
}

#[tokio::test]
async fn kill_9_while_staging_then_rerun_loads_every_row_once() {
    let mut env = setup_staged("gs://stage/p", "3000", "2").await;
    create_orders_inc_into(&env.client, "staged", 50).await;
    // The kill lands after a load job, with more chunks staged.
    let client = kill_mid_run(&mut env, "orders_inc", (Method::PUT, "/storage/"), |fake| {
        !load_jobs(fake).is_empty() && fake.objects("stage").len() >= 3
    })
    .await;
    assert!(
        env.fake.objects("stage").is_empty() && staging_tables(&env.fake).is_empty(),
        "reconcile removed the staged chunks and the staging table: {:?}",
        env.fake.objects("stage")
    );
    let again = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("500"), "{again:?}");
    assert_eq!(table_rows(&env.fake, "orders").len(), 500);
    assert!(env.fake.objects("stage").is_empty());
}

#[tokio::test]
async fn types_arrive_exactly_in_avro_chunks() {
    let env = setup(&[]).await;
    env.client.batch_execute("DROP CONNECTION wh").await.unwrap();
    let err = expect_err(
        &env.client,
        &bigquery_connection(&env, "csv", "chunk_format 'csv'"),
        "08001",
    )
    .await;
    assert!(
        err.contains("chunk_format 'csv' is not one of 'parquet', 'avro'"),
        "{err}"
    );
    env.client
        .batch_execute(&bigquery_connection(
            &env,
            "avro",
            "chunk_format 'avro', staging_bucket 'gs://stage/avro'",
        ))
        .await
        .unwrap();
    types_arrive_exactly_through(&env, "avro").await;
    let jobs = load_jobs(&env.fake);
    assert!(!jobs.is_empty());
    for load in jobs {
        assert_eq!(load["sourceFormat"], json!("AVRO"), "{load}");
        assert_eq!(load["useAvroLogicalTypes"], json!(true), "{load}");
        let uris = load["sourceUris"].as_array().unwrap();
        assert!(uris.iter().all(|u| u.as_str().unwrap().ends_with(".avro")), "{load}");
    }
    assert!(env.fake.objects("stage").is_empty());
}

/// Creates table `blobs` of `rows` rows in the source, each an id and
/// `md5s` MD5 sums in hexadecimal (text that hardly compresses), and a
/// SNAPSHOT job `blobs` of it into connection `into`.
async fn create_blobs(env: &Env, rows: usize, md5s: usize, into: &str) {
    let body: Vec<String> = (1..=md5s).map(|k| format!("md5((g * {k})::text)")).collect();
    env.pg.psql_admin_db(
        "shop",
        &format!(
            "CREATE TABLE blobs (id int PRIMARY KEY, body text NOT NULL);
             INSERT INTO blobs SELECT g, {} FROM generate_series(1, {rows}) g;",
            body.join(" || ")
        ),
    );
    (env.client)
        .batch_execute(&format!(
            "CREATE ETL JOB blobs FROM shop.public.blobs INTO {into}.blobs SNAPSHOT"
        ))
        .await
        .unwrap();
}

/// Runs job `blobs`: it succeeds, and the table equals the source row by row.
async fn run_blobs_equal_to_source(env: &Env) {
    let summary = rows(&env.client, "RUN ETL JOB blobs").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    let source = env.pg.psql_admin_db("shop", "SELECT id || '|' || body FROM blobs");
    let mut expected: Vec<&str> = source.lines().collect();
    expected.sort_unstable();
    assert_eq!(table_rows(&env.fake, "blobs"), expected, "every row once");
}

/// Runs a SNAPSHOT of 20,000 rows (a Parquet chunk of about 1.4 MB) with
/// chunks from 256 KiB on uploaded resumably in pieces of `piece` bytes,
/// the answer to the first piece lost: Sluice asks how much arrived and
/// goes on from there. The upload sessions.
async fn resumable_upload_with_a_lost_piece(piece: &str) -> Vec<resumable::Session> {
    let env = setup(&[
        ("SLUICE_BIGQUERY_RESUMABLE_BYTES", "262144"),
        ("SLUICE_BIGQUERY_UPLOAD_PIECE_BYTES", piece),
    ])
    .await;
    create_blobs(&env, 20_000, 2, "wh").await;
    env.fake.inject(
        Method::PUT,
        "uploadType=resumable",
        FaultKind::LateAnswer(Duration::from_secs(5)),
        1,
    );
    run_blobs_equal_to_source(&env).await;
    assert_eq!(env.fake.count_requests("uploadType=multipart"), 0);
    let mut state = env.fake.state();
    let totals: usize = state
        .uploads
        .open
        .values()
        .map(|s| s.total.expect("every upload ended"))
        .sum();
    assert_eq!(state.uploads.bytes_received, totals, "no byte was sent twice");
    assert!(state.uploads.status_queries >= 1);
    assert!(state.faults.iter().all(|f| f.times == 0));
    std::mem::take(&mut state.uploads.open).into_values().collect()
}

#[tokio::test]
async fn a_large_chunk_is_uploaded_while_it_is_written_and_resumes_after_a_lost_piece() {
    // 256 KiB pieces: row groups are written out at 256 KiB, so the
    // chunk's pieces leave while later rows are still being encoded.
    let sessions = resumable_upload_with_a_lost_piece("262144").await;
    assert_eq!(sessions.len(), 1, "one chunk, one load job");
    let upload = &sessions[0];
    assert!(
        upload.opened_unsized,
        "the session opened before the chunk's size was known"
    );
    assert!(
        upload.unsized_pieces >= 3,
        "pieces sent while writing: {}",
        upload.unsized_pieces
    );
    assert!(upload.received.len() > 3 * 262_144, "{} bytes", upload.received.len());
    assert_eq!(upload.job["configuration"]["load"]["sourceFormat"], json!("PARQUET"));
}

#[tokio::test]
async fn a_chunk_that_grew_past_the_threshold_only_at_its_end_is_uploaded_whole_and_resumes() {
    // 4 MiB pieces: the chunk's one row group is written at its end, so
    // its size is known when its upload opens.
    let sessions = resumable_upload_with_a_lost_piece("4194304").await;
    assert_eq!(sessions.len(), 1, "one chunk, one load job");
    let upload = &sessions[0];
    assert!(!upload.opened_unsized, "opened with the file's size");
    assert_eq!(upload.unsized_pieces, 0);
    assert!(upload.received.len() > 262_144, "{} bytes", upload.received.len());
}

#[tokio::test]
async fn a_large_chunk_is_staged_in_parts_while_it_is_written() {
    // Row groups are written out every 256 KiB; parts are Cloud Storage's
    // smallest, 5 MiB, so a chunk of about 13 MB goes in three parts.
    let env = setup(&[("SLUICE_BIGQUERY_UPLOAD_PIECE_BYTES", "262144")]).await;
    env.client.batch_execute("DROP CONNECTION wh").await.unwrap();
    (env.client)
        .batch_execute(&staged_connection(&env, "staged", "gs://stage/parts"))
        .await
        .unwrap();
    create_blobs(&env, 120_000, 3, "staged").await;
    run_blobs_equal_to_source(&env).await;

    assert_eq!(env.fake.count_requests("/upload/"), 0, "nothing through media uploads");
    let loaded: Vec<String> = load_jobs(&env.fake)
        .iter()
        .flat_map(|load| load["sourceUris"].as_array().unwrap().clone())
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    let state = env.fake.state();
    assert_eq!(
        state.gcs.multipart_objects.len(),
        1,
        "{:?}",
        state.gcs.multipart_objects
    );
    let (uri, parts) = &state.gcs.multipart_objects[0];
    assert!(*parts >= 2, "parts sent while writing, then the last: {parts}");
    assert!(
        uri.starts_with("gs://stage/parts/") && uri.ends_with("/c0.parquet"),
        "{uri}"
    );
    assert_eq!(loaded, vec![uri.clone()], "the object is loaded once");
    assert!(state.gcs.multipart.is_empty(), "no upload left open");
    drop(state);
    assert!(env.fake.objects("stage").is_empty(), "{:?}", env.fake.objects("stage"));
}

#[tokio::test]
async fn a_reset_catalog_never_reuses_a_bigquery_job_id() {
    let mut env = setup(&[]).await;
    create_orders_inc(&env.client, 8192).await;
    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("500"), "{summary:?}");
    let first_jobs: Vec<String> = env.fake.state().jobs.keys().cloned().collect();

    // A new, empty catalog: run ids start again at 1.
    env.sluice.terminate();
    std::fs::remove_dir_all(env.sluice.data_dir().join("catalog")).unwrap();
    env.sluice.restart();
    let client = env.sluice.client().await;
    let key_file = env.fake.write_key_file(env._keys.path());
    create_connections(&client, &env.pg, &key_file).await;
    create_orders_inc(&client, 8192).await;
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][0].as_deref(), Some("1"), "the same run id: {summary:?}");
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    // The new catalog loads from the start again: every row arrives a second time.
    assert_eq!(table_rows(&env.fake, "orders").len(), 1000);
    let jobs = env.fake.state().jobs.clone();
    let new_jobs: Vec<&String> = jobs.keys().filter(|id| !first_jobs.contains(id)).collect();
    assert!(
        new_jobs.iter().any(|id| id.ends_with("_commit")),
        "a new commit job id: {new_jobs:?} (first: {first_jobs:?})"
    );
}

#[tokio::test]
async fn a_restored_catalog_meeting_an_earlier_job_id_fails_loudly_instead_of_losing_rows() {
    let mut env = setup(&[]).await;
    create_orders_inc(&env.client, 8192).await;
    rows(&env.client, "RUN ETL JOB orders_inc").await;
    // A backup of the catalog after run 1.
    env.sluice.terminate();
    let catalog = env.sluice.data_dir().join("catalog");
    let backup = tempfile::tempdir().unwrap();
    let saved = backup.path().join("catalog");
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&catalog)
            .arg(&saved)
            .status()
            .unwrap()
            .success()
    );
    env.sluice.restart();
    let client = env.sluice.client().await;
    env.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g, 'new', timestamptz '2024-03-05 00:00:00+00' + g * interval '1 second' FROM generate_series(501, 520) g",
    );
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][0].as_deref(), Some("2"), "{summary:?}");
    // Restored, the catalog gives out run id 2 again, whose jobs BigQuery
    // remembers (from a while ago).
    env.sluice.terminate();
    std::fs::remove_dir_all(&catalog).unwrap();
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&saved)
            .arg(&catalog)
            .status()
            .unwrap()
            .success()
    );
    let hour_ago = (std::time::SystemTime::now() - Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    for job in env.fake.state().jobs.values_mut() {
        job["statistics"]["creationTime"] = json!(hour_ago);
    }
    // Without the table's record of its last load (labels removed by hand),
    // start-up cannot align the watermark; the job ids still catch it.
    for table in env.fake.state().tables.values_mut() {
        if let Some(labels) = table.resource["labels"].as_object_mut() {
            labels.retain(|key, _| !key.starts_with("sluice_committed") && !key.starts_with("sluice_pending"));
        }
    }
    env.sluice.restart();
    let client = env.sluice.client().await;
    env.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g, 'newer', timestamptz '2024-03-06 00:00:00+00' + g * interval '1 second' FROM generate_series(521, 530) g",
    );
    let message = expect_err(&client, "RUN ETL JOB orders_inc", "58030").await;
    assert!(message.contains("already has a job with this run's id"), "{message}");
    let run = rows(
        &client,
        "SELECT run_id, status FROM sluice.runs ORDER BY run_id DESC LIMIT 1",
    )
    .await;
    assert_eq!(
        run[0],
        [Some("2".into()), Some("failed".into())],
        "never recorded as loaded"
    );
    // The next run ids are new to BigQuery: nothing is lost (the rows of the
    // lost run 2 are loaded again, as the restored watermark says).
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("30"), "{summary:?}");
    assert_eq!(table_rows(&env.fake, "orders").len(), 550);
}
