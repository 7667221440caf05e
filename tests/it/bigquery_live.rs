//! Opt-in: BigQuery destination (loads and CDC) against real BigQuery. Runs only when
//! `SLUICE_BQ_TEST_PROJECT` names a project and `GOOGLE_APPLICATION_CREDENTIALS`
//! a service-account key file that may create datasets, tables and jobs
//! there; otherwise it prints a notice and passes. It creates its own
//! dataset (`sluice_test_<random>`, location `SLUICE_BQ_TEST_LOCATION` or
//! US) and drops it at the end. The new credential types run too when
//! their variable is set (each skipped otherwise): an `authorized_user`
//! file in `SLUICE_BQ_TEST_USER_CREDENTIALS`, an `external_account` file in
//! `SLUICE_BQ_TEST_EXTERNAL_ACCOUNT`, and in `SLUICE_BQ_TEST_IMPERSONATE` a
//! service account the key's account may impersonate
//! (`roles/iam.serviceAccountTokenCreator`).

use crate::cdc_bigquery::{TABLE, change};
use crate::cdc_jobs::big;
use crate::common;

use common::*;

/// The project and service-account key file of the live tests; `None`
/// (with a notice) when either is unset.
fn live_project(test: &str) -> Option<(String, String)> {
    match (
        std::env::var("SLUICE_BQ_TEST_PROJECT"),
        std::env::var("GOOGLE_APPLICATION_CREDENTIALS"),
    ) {
        (Ok(project), Ok(key_file)) => Some((project, key_file)),
        _ => {
            eprintln!(
                "skipped: set SLUICE_BQ_TEST_PROJECT and GOOGLE_APPLICATION_CREDENTIALS (a service-account key file) to run the live BigQuery {test} test"
            );
            None
        }
    }
}

#[tokio::test]
async fn loads_into_real_bigquery() {
    let Some((project, key_file)) = live_project("load") else {
        return;
    };
    let location = std::env::var("SLUICE_BQ_TEST_LOCATION").unwrap_or_else(|_| "US".into());
    let dataset = format!("sluice_test_{}", std::process::id());
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2), tags text[], at timestamptz NOT NULL);
         INSERT INTO orders SELECT g, g * 1.25, ARRAY['a', 'b'], timestamptz '2024-03-01 00:00:00+00' + g * interval '1 minute'
         FROM generate_series(1, 100) g;",
    );
    let sluice = Sluice::start_with(&[], &[("SLUICE_BIGQUERY_ENDPOINT", "https://bigquery.googleapis.com")]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password '{ETL_PASSWORD}');
             CREATE CONNECTION wh TYPE bigquery OPTIONS (project '{project}', dataset '{dataset}', location '{location}', credentials_file '{key_file}');
             CREATE ETL JOB inc FROM shop.public.orders INTO wh.orders INCREMENTAL BY at ALL
                 LOOKBACK 1 HOUR DEDUPE ON (id) WITH (require_partition_filter = true);
             CREATE ETL JOB snap FROM shop.public.orders INTO wh.orders_snap SNAPSHOT;",
            pg.port
        ))
        .await
        .unwrap();
    let first = rows(&client, "RUN ETL JOB inc").await;
    let snap = rows(&client, "RUN ETL JOB snap").await;
    let again = rows(&client, "RUN ETL JOB inc").await;
    // Late rows inside the lookback window: the keys are read back with a
    // parameterised query that satisfies the partition filter.
    pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT 1000 + g, g, ARRAY['late'], (SELECT max(at) FROM orders) - interval '30 minutes'
         FROM generate_series(1, 10) g;",
    );
    let late = rows(&client, "RUN ETL JOB inc").await;
    let shipped = rows(
        &client,
        "SELECT load_jobs_done, load_jobs_total FROM sluice.runs WHERE job = 'inc' ORDER BY run_id LIMIT 1",
    )
    .await;
    // Clean up before asserting, so a failure leaves nothing behind.
    client
        .batch_execute("DROP ETL JOB inc; DROP ETL JOB snap;")
        .await
        .unwrap();
    let dropped = delete_dataset(&project, &dataset, &key_file).await;
    assert_eq!(first[0][1].as_deref(), Some("succeeded"), "{first:?}");
    assert_eq!(first[0][2].as_deref(), Some("100"));
    assert_eq!(snap[0][2].as_deref(), Some("100"), "{snap:?}");
    assert_eq!(again[0][2].as_deref(), Some("0"));
    assert_eq!(late[0][2].as_deref(), Some("10"), "{late:?}");
    assert_eq!(shipped[0][0], shipped[0][1], "{shipped:?}");
    assert_eq!(
        shipped[0][1].as_deref(),
        Some("2"),
        "one chunk and the copy job: {shipped:?}"
    );
    dropped.unwrap();
}

/// Deletes the test's dataset with its tables.
async fn delete_dataset(project: &str, dataset: &str, key_file: &str) -> Result<(), String> {
    let client = gcp_bigquery_client::Client::from_service_account_key_file(key_file)
        .await
        .map_err(|e| e.to_string())?;
    client
        .dataset()
        .delete(project, dataset, true)
        .await
        .map_err(|e| format!("could not delete dataset {project}:{dataset}: {e}"))
}

/// Loads 20 rows into a new dataset through a connection signed in with
/// `credentials` (connection options), reads them back through it, and
/// drops the dataset with the service-account key `key_file`.
async fn load_with_credentials(project: &str, key_file: &str, kind: &str, credentials: &str) {
    let location = std::env::var("SLUICE_BQ_TEST_LOCATION").unwrap_or_else(|_| "US".into());
    let dataset = format!("sluice_test_{kind}_{}", std::process::id());
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE things (id bigint PRIMARY KEY); INSERT INTO things SELECT generate_series(1, 20);
         GRANT SELECT ON things TO etl;",
    );
    let sluice = Sluice::start_with(&[], &[("SLUICE_BIGQUERY_ENDPOINT", "https://bigquery.googleapis.com")]);
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    let created = client
        .batch_execute(&format!(
            "CREATE CONNECTION wh TYPE bigquery OPTIONS (project '{project}', dataset '{dataset}', \
             location '{location}', {credentials});
             CREATE ETL JOB snap FROM shop.public.things INTO wh.things SNAPSHOT;"
        ))
        .await;
    let run = match &created {
        Ok(()) => Some(rows(&client, "RUN ETL JOB snap").await),
        Err(_) => None,
    };
    let count = match &created {
        Ok(()) => Some(one(&client, &format!("SELECT count(*) FROM wh.{dataset}.things")).await),
        Err(_) => None,
    };
    let dropped = delete_dataset(project, &dataset, key_file).await;
    created.unwrap_or_else(|e| panic!("{kind}: {e:?}"));
    let run = run.unwrap();
    assert_eq!(run[0][1].as_deref(), Some("succeeded"), "{kind}: {run:?}");
    assert_eq!(count.as_deref(), Some("20"), "{kind}");
    dropped.unwrap();
}

/// The project, the service-account key (for clean-up) and the file or
/// account named by `variable`; `None` (with a notice) when any is unset.
fn live_settings(variable: &str) -> Option<(String, String, String)> {
    match (
        std::env::var("SLUICE_BQ_TEST_PROJECT"),
        std::env::var("GOOGLE_APPLICATION_CREDENTIALS"),
        std::env::var(variable),
    ) {
        (Ok(project), Ok(key_file), Ok(value)) => Some((project, key_file, value)),
        _ => {
            eprintln!(
                "skipped: set SLUICE_BQ_TEST_PROJECT, GOOGLE_APPLICATION_CREDENTIALS (a service-account key, for \
                 clean-up) and {variable} to run this live BigQuery test"
            );
            None
        }
    }
}

/// `gcloud auth application-default login` credentials (`authorized_user`).
#[tokio::test]
async fn loads_with_user_credentials() {
    if let Some((project, key_file, file)) = live_settings("SLUICE_BQ_TEST_USER_CREDENTIALS") {
        load_with_credentials(&project, &key_file, "user", &format!("credentials_file '{file}'")).await;
    }
}

/// A workload identity federation file (`external_account`).
#[tokio::test]
async fn loads_with_workload_identity_federation() {
    if let Some((project, key_file, file)) = live_settings("SLUICE_BQ_TEST_EXTERNAL_ACCOUNT") {
        load_with_credentials(&project, &key_file, "wif", &format!("credentials_file '{file}'")).await;
    }
}

/// The service-account key impersonating another service account.
#[tokio::test]
async fn loads_impersonating_a_service_account() {
    if let Some((project, key_file, account)) = live_settings("SLUICE_BQ_TEST_IMPERSONATE") {
        load_with_credentials(
            &project,
            &key_file,
            "imp",
            &format!("credentials_file '{key_file}', impersonate_service_account '{account}'"),
        )
        .await;
    }
}

/// CDC into real BigQuery (issue #22, docs/cdc.md "BigQuery"): `MERGE`,
/// `MERGE` with `soft_delete` and `HISTORY` from a real PostgreSQL, through
/// the first load, inserts, updates, a key change, an unchanged TOASTed
/// value, deletes and a `TRUNCATE`; after each round the tables (and
/// `HISTORY`'s `_current` view) equal the source row by row, read back
/// through the connection (`jobs.query`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_into_real_bigquery() {
    let Some((project, key_file)) = live_project("CDC") else {
        return;
    };
    let location = std::env::var("SLUICE_BQ_TEST_LOCATION").unwrap_or_else(|_| "US".into());
    let dataset = format!("sluice_test_cdc_{}", std::process::id());
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        &format!(
            "{TABLE} INSERT INTO items VALUES (1, 'a', {}, 1), (2, 'b', {}, 2), (3, 'c', NULL, NULL);",
            big('a'),
            big('b')
        ),
    );
    let sluice = Sluice::start_with(&[], &[("SLUICE_BIGQUERY_ENDPOINT", "https://bigquery.googleapis.com")]);
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION wh TYPE bigquery OPTIONS (project '{project}', dataset '{dataset}', location '{location}', credentials_file '{key_file}');
             CREATE ETL JOB items_merge FROM shop.public.items INTO wh.items_m CDC MERGE;
             CREATE ETL JOB items_soft FROM shop.public.items INTO wh.items_s CDC MERGE WITH (soft_delete = true);
             CREATE ETL JOB items_history FROM shop.public.items INTO wh.items_h CDC HISTORY;"
        ))
        .await
        .unwrap();
    let source = pg.client().await;
    // Every round's outcome, asserted after clean-up.
    let mut rounds = Vec::new();
    for round in 0..3 {
        if round > 0 {
            change(&pg, round - 1);
        }
        for job in ["items_merge", "items_soft", "items_history"] {
            let run = try_rows(&client, &format!("RUN ETL JOB {job}")).await;
            rounds.push((round, job, run.map(|_| None)));
        }
        let expected = rows(&source, "SELECT id, name, big, qty FROM items ORDER BY id").await;
        for (what, from) in [
            ("MERGE", "items_m"),
            ("soft_delete MERGE", "items_s WHERE _sluice_deleted_at IS NULL"),
            ("HISTORY's current view", "items_h_current"),
        ] {
            let sql = format!("SELECT id, name, big, qty FROM wh.{dataset}.{from} ORDER BY id");
            let got = try_rows(&client, &sql).await;
            rounds.push((round, what, got.map(|got| Some((got, expected.clone())))));
        }
    }
    client
        .batch_execute("DROP ETL JOB items_merge; DROP ETL JOB items_soft; DROP ETL JOB items_history;")
        .await
        .unwrap();
    let dropped = delete_dataset(&project, &dataset, &key_file).await;
    for (round, what, outcome) in rounds {
        match outcome {
            Err(e) => panic!("round {round}, {what}: {e:?}"),
            Ok(Some((got, expected))) => assert_eq!(got, expected, "{what} after round {round}"),
            Ok(None) => {}
        }
    }
    dropped.unwrap();
}
