//! BigQuery as a job source through the Storage Read API: against the
//! project's fake BigQuery (REST, for metadata) with its fake `BigQueryRead`
//! gRPC service (`common::bigquery_read`, which checks every request), and
//! end to end against bqemulator's gRPC port. Snapshot and incremental
//! jobs read their columns and window through a read session's streams; a
//! stream that breaks is resumed at its offset; `read_api = 'auto'` falls
//! back to `jobs.query` when read sessions are refused, `'on'` fails.

use crate::common;
use crate::fake_bigquery;
use crate::source_bigquery::{
    PROJECT, event_fields, events, expected_rows, insert_into_emulator, queries, warehouse_rows,
};

use common::bigquery_read::FakeBigQueryRead;
use common::bqemulator::BqEmulator;
use common::*;
use fake_bigquery::FakeBigQuery;
use tokio_postgres::Client;
use tonic::Code;

const TABLE_PATH: &str = "projects/test-project/datasets/sales/tables/events";

struct Env {
    fake: FakeBigQuery,
    read: FakeBigQueryRead,
    _sluice: Sluice,
    client: Client,
    _keys: tempfile::TempDir,
}

/// The fake with `sales.events` (ids 1 to `rows`), its Read API serving at
/// most 4 streams of 7 rows per response, and the `bq` connection with
/// `read_api` as given and 3 streams per scan.
async fn setup(rows: i64, read_api: &str) -> Env {
    let fake = FakeBigQuery::start().await;
    let read = FakeBigQueryRead::start(&fake, 4, 7);
    let keys = tempfile::tempdir().unwrap();
    let key_file = fake.write_key_file(keys.path());
    fake.put_table("sales", "events", event_fields(), vec![events(1..=rows)]);
    let sluice = Sluice::start_with(
        &[],
        &[
            ("SLUICE_BIGQUERY_ENDPOINT", fake.url.as_str()),
            ("SLUICE_BIGQUERY_STORAGE_ENDPOINT", read.url.as_str()),
        ],
    );
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION bq TYPE bigquery OPTIONS (project '{PROJECT}', dataset 'raw_data', location 'EU', \
             credentials_file '{}', connect_timeout 2, read_api '{read_api}', read_streams 3)",
            key_file.display()
        ))
        .await
        .unwrap();
    Env {
        fake,
        read,
        _sluice: sluice,
        client,
        _keys: keys,
    }
}

/// `jobs.query` requests that read the table's rows (not metadata queries
/// such as the cursor's maximum).
fn row_queries(fake: &FakeBigQuery) -> Vec<String> {
    queries(fake).into_iter().filter(|q| q.contains("`name`")).collect()
}

#[tokio::test]
async fn a_snapshot_reads_every_stream_and_resumes_a_broken_one_at_its_offset() {
    let env = setup(50, "on").await;
    // 50 rows in 3 streams of 17, 17 and 16 rows, 7 rows per response:
    // stream 1 breaks after 14 rows.
    env.read.state().fail_stream_after = Some((1, 2));
    env.client
        .batch_execute("CREATE ETL JOB snap FROM bq.sales.events INTO warehouse.snap SNAPSHOT")
        .await
        .unwrap();
    let run = rows(&env.client, "RUN ETL JOB snap").await;
    assert_eq!(run[0][2].as_deref(), Some("50"), "{run:?}");
    assert_eq!(
        warehouse_rows(&env.client, "snap").await,
        expected_rows(1, 50),
        "no row lost or read twice"
    );
    let state = env.read.state();
    assert_eq!(state.sessions.len(), 1, "{:?}", state.sessions);
    let session = &state.sessions[0];
    assert_eq!(session.parent, "projects/test-project");
    assert_eq!(session.max_stream_count, 3);
    let asked = session.read_session.as_ref().unwrap();
    assert_eq!(asked.table, TABLE_PATH);
    let options = asked.read_options.as_ref().unwrap();
    assert_eq!(options.selected_fields, ["id", "ts", "dt", "day", "name"]);
    assert_eq!(options.row_restriction, "");
    let mut reads: Vec<(String, i64)> = state
        .reads
        .iter()
        .map(|r| (r.read_stream.rsplit('/').next().unwrap().to_owned(), r.offset))
        .collect();
    reads.sort();
    assert_eq!(
        reads,
        [("0".into(), 0), ("1".into(), 0), ("1".into(), 14), ("2".into(), 0)],
        "stream 1 resumed after its 14 rows"
    );
    assert!(
        state.routing.contains(&format!("read_session.table={TABLE_PATH}")),
        "{:?}",
        state.routing
    );
    drop(state);
    assert_eq!(row_queries(&env.fake), Vec::<String>::new(), "no jobs.query scan");
}

#[tokio::test]
async fn an_incremental_job_reads_its_window_as_a_row_restriction() {
    let env = setup(100, "auto").await;
    env.client
        .batch_execute(
            "CREATE ETL JOB inc FROM bq.sales.events (id, ts, name) INTO warehouse.inc INCREMENTAL BY ts ALL",
        )
        .await
        .unwrap();
    let run = rows(&env.client, "RUN ETL JOB inc").await;
    assert_eq!(run[0][2].as_deref(), Some("100"), "{run:?}");
    env.fake.append_rows("sales", "events", events(101..=130));
    let run = rows(&env.client, "RUN ETL JOB inc").await;
    assert_eq!(run[0][2].as_deref(), Some("30"), "only the new rows: {run:?}");
    let again = rows(&env.client, "RUN ETL JOB inc").await;
    assert_eq!(again[0][2].as_deref(), Some("0"), "{again:?}");
    let loaded = rows(
        &env.client,
        "SELECT id, CAST(ts AS VARCHAR), name FROM warehouse.inc ORDER BY id",
    )
    .await;
    let expected: Vec<Vec<Option<String>>> = expected_rows(1, 130)
        .into_iter()
        .map(|row| vec![row[0].clone(), row[1].clone(), row[4].clone()])
        .collect();
    assert_eq!(loaded, expected);
    let state = env.read.state();
    assert_eq!(state.sessions.len(), 3, "one session per run");
    let options = state.sessions[1]
        .read_session
        .as_ref()
        .unwrap()
        .read_options
        .clone()
        .unwrap();
    assert_eq!(options.selected_fields, ["id", "ts", "name"]);
    assert!(
        options
            .row_restriction
            .contains("`ts` > TIMESTAMP '2024-03-01 01:40:00.000100+00:00'"),
        "{}",
        options.row_restriction
    );
    drop(state);
    assert_eq!(row_queries(&env.fake), Vec::<String>::new(), "no jobs.query scan");
}

#[tokio::test]
async fn auto_falls_back_to_jobs_query_when_read_sessions_are_refused_and_on_fails() {
    let env = setup(50, "auto").await;
    env.read.state().refuse = Some(Code::PermissionDenied);
    env.client
        .batch_execute("CREATE ETL JOB snap FROM bq.sales.events INTO warehouse.snap SNAPSHOT")
        .await
        .unwrap();
    let run = rows(&env.client, "RUN ETL JOB snap").await;
    assert_eq!(run[0][2].as_deref(), Some("50"), "{run:?}");
    assert_eq!(warehouse_rows(&env.client, "snap").await, expected_rows(1, 50));
    assert_eq!(env.read.state().sessions.len(), 1, "the Read API was tried first");
    assert_eq!(row_queries(&env.fake).len(), 1, "then jobs.query read the rows");

    env.client
        .batch_execute("ALTER CONNECTION bq SET (read_api 'on')")
        .await
        .unwrap();
    let error = env.client.simple_query("RUN ETL JOB snap").await.unwrap_err();
    let message = error.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(
        message.contains("bigquery.readsessions.create"),
        "read_api 'on' names why: {message}"
    );
    assert_eq!(row_queries(&env.fake).len(), 1, "no fallback under 'on'");

    env.client
        .batch_execute("ALTER CONNECTION bq SET (read_api 'off')")
        .await
        .unwrap();
    let run = rows(&env.client, "RUN ETL JOB snap").await;
    assert_eq!(run[0][2].as_deref(), Some("50"), "{run:?}");
    assert_eq!(env.read.state().sessions.len(), 2, "'off' never opens a session");
    let bad = expect_err(&env.client, "ALTER CONNECTION bq SET (read_api 'sometimes')", "22023").await;
    assert!(bad.contains("read_api"), "{bad}");
}

/// bqemulator implements `BigQueryRead` (CreateReadSession, ReadRows in
/// Arrow) on its gRPC port: the same jobs end to end against it.
#[tokio::test]
async fn the_emulator_is_read_through_its_storage_read_api() {
    let emulator = BqEmulator::start(PROJECT);
    let token = FakeBigQuery::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = token.write_key_file(keys.path());
    let sluice = Sluice::start_with(
        &[],
        &[
            ("SLUICE_BIGQUERY_ENDPOINT", emulator.url.as_str()),
            ("SLUICE_BIGQUERY_STORAGE_ENDPOINT", emulator.grpc_url.as_str()),
        ],
    );
    let client = sluice.client().await;
    emulator.query(&format!("CREATE SCHEMA `{PROJECT}.sales`"));
    emulator.query(&format!(
        "CREATE TABLE `{PROJECT}.sales.events` (id INT64 NOT NULL, ts TIMESTAMP NOT NULL, dt DATETIME, day DATE, \
         name STRING)"
    ));
    insert_into_emulator(&emulator, 1, 120);
    client
        .batch_execute(&format!(
            "CREATE CONNECTION wh TYPE bigquery OPTIONS (project '{PROJECT}', dataset 'raw_data', location 'US', \
             credentials_file '{}', connect_timeout 5, read_api 'on'); \
             CREATE ETL JOB snap FROM wh.sales.events INTO warehouse.snap SNAPSHOT; \
             CREATE ETL JOB inc FROM wh.sales.events INTO warehouse.inc INCREMENTAL BY ts ALL",
            key_file.display()
        ))
        .await
        .unwrap();
    for job in ["snap", "inc"] {
        let run = rows(&client, &format!("RUN ETL JOB {job}")).await;
        assert_eq!(run[0][2].as_deref(), Some("120"), "{job}: {run:?}");
    }
    insert_into_emulator(&emulator, 121, 150);
    let run = rows(&client, "RUN ETL JOB inc").await;
    assert_eq!(run[0][2].as_deref(), Some("30"), "only the new rows: {run:?}");
    assert_eq!(warehouse_rows(&client, "snap").await, expected_rows(1, 120));
    assert_eq!(warehouse_rows(&client, "inc").await, expected_rows(1, 150));
}

/// Opt-in, as `bigquery_live`: with `SLUICE_BQ_TEST_PROJECT` and
/// `GOOGLE_APPLICATION_CREDENTIALS` (a key that may create datasets, tables,
/// jobs and read sessions) a table loaded into real BigQuery is read back
/// through the real Storage Read API (`read_api 'on'`), snapshot and
/// incremental; otherwise it prints a notice and passes.
#[tokio::test]
async fn real_bigquery_is_read_through_the_storage_read_api() {
    let (Ok(project), Ok(key_file)) = (
        std::env::var("SLUICE_BQ_TEST_PROJECT"),
        std::env::var("GOOGLE_APPLICATION_CREDENTIALS"),
    ) else {
        eprintln!(
            "skipped: set SLUICE_BQ_TEST_PROJECT and GOOGLE_APPLICATION_CREDENTIALS (a service-account key file) to run the live Storage Read API test"
        );
        return;
    };
    let location = std::env::var("SLUICE_BQ_TEST_LOCATION").unwrap_or_else(|_| "US".into());
    let dataset = format!("sluice_test_read_{}", std::process::id());
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2), at timestamptz NOT NULL);
         INSERT INTO orders SELECT g, g * 1.25, timestamptz '2024-03-01 00:00:00+00' + g * interval '1 minute'
         FROM generate_series(1, 1000) g;
         GRANT SELECT ON orders TO etl;",
    );
    let sluice = Sluice::start_with(
        &[],
        &[
            ("SLUICE_BIGQUERY_ENDPOINT", "https://bigquery.googleapis.com"),
            (
                "SLUICE_BIGQUERY_STORAGE_ENDPOINT",
                "https://bigquerystorage.googleapis.com",
            ),
        ],
    );
    let client = sluice.client().await;
    let setup = client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', \
             password '{ETL_PASSWORD}');
             CREATE CONNECTION wh TYPE bigquery OPTIONS (project '{project}', dataset '{dataset}', \
             location '{location}', credentials_file '{key_file}', read_api 'on');
             CREATE ETL JOB load FROM shop.public.orders INTO wh.orders SNAPSHOT;
             RUN ETL JOB load;
             CREATE ETL JOB back FROM wh.{dataset}.orders INTO warehouse.back SNAPSHOT;
             CREATE ETL JOB back_inc FROM wh.{dataset}.orders INTO warehouse.back_inc INCREMENTAL BY at ALL;",
            pg.port
        ))
        .await;
    let back = match &setup {
        Ok(()) => Some(rows(&client, "RUN ETL JOB back").await),
        Err(_) => None,
    };
    let back_inc = match &setup {
        Ok(()) => Some(rows(&client, "RUN ETL JOB back_inc").await),
        Err(_) => None,
    };
    let sums = match &setup {
        Ok(()) => Some(
            rows(
                &client,
                "SELECT count(*), count(DISTINCT id), CAST(sum(amount) AS VARCHAR) FROM warehouse.back",
            )
            .await,
        ),
        Err(_) => None,
    };
    let dropped = gcp_bigquery_client::Client::from_service_account_key_file(&key_file)
        .await
        .map_err(|e| e.to_string());
    let dropped = match dropped {
        Ok(bq) => bq
            .dataset()
            .delete(&project, &dataset, true)
            .await
            .map_err(|e| format!("could not delete dataset {project}:{dataset}: {e}")),
        Err(e) => Err(e),
    };
    setup.unwrap();
    assert_eq!(back.unwrap()[0][2].as_deref(), Some("1000"));
    assert_eq!(back_inc.unwrap()[0][2].as_deref(), Some("1000"));
    let sums = sums.unwrap();
    assert_eq!(sums[0][..2], [Some("1000".into()), Some("1000".into())], "{sums:?}");
    assert!(sums[0][2].as_deref().unwrap().starts_with("625625"), "{sums:?}");
    dropped.unwrap();
}
