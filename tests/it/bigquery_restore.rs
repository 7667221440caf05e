//! BigQuery and the catalog's durability: a catalog restored from a backup
//! continues from the table's record of its last load (no row twice), and
//! a run that reads no rows touches no BigQuery table.

use crate::bigquery::{Env, create_orders_inc, fake_fingerprint, setup, source_fingerprint, table_rows};
use crate::common::*;

/// Stops Sluice, copies its catalog aside (the backup), starts it again and
/// adds 20 newer orders at the source; returns the backup and a new client.
async fn back_up_catalog_and_add_orders(env: &mut Env) -> (tempfile::TempDir, tokio_postgres::Client) {
    env.sluice.terminate();
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&env.sluice.data_dir().join("catalog"), &backup.path().join("catalog"));
    env.sluice.restart();
    let client = env.sluice.client().await;
    env.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g, 'new', timestamptz '2024-03-05 00:00:00+00' + g * interval '1 second' FROM generate_series(501, 520) g",
    );
    (backup, client)
}

/// Puts the backup's catalog in place of the (stopped) server's own.
fn restore_catalog(env: &Env, backup: &tempfile::TempDir) {
    let catalog = env.sluice.data_dir().join("catalog");
    std::fs::remove_dir_all(&catalog).unwrap();
    copy_dir(&backup.path().join("catalog"), &catalog);
}

#[tokio::test]
async fn a_catalog_restored_from_a_backup_continues_from_bigquery_without_duplicates() {
    let mut env = setup(&[]).await;
    create_orders_inc(&env.client, 8192).await;
    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("500"), "{summary:?}");

    // A backup of the catalog, taken with the server stopped.
    let (backup, client) = back_up_catalog_and_add_orders(&mut env).await;
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("20"), "{summary:?}");
    let watermark = one(&client, "SELECT watermark FROM sluice.jobs").await;

    // Restore the older catalog: its watermark is run 1's, the table holds run 2's rows too.
    env.sluice.terminate();
    restore_catalog(&env, &backup);
    env.sluice.restart();
    let client = env.sluice.client().await;
    assert_eq!(
        one(&client, "SELECT watermark FROM sluice.jobs").await,
        watermark,
        "start-up aligned the watermark with the table's record"
    );
    env.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g, 'newer', timestamptz '2024-03-06 00:00:00+00' + g * interval '1 second' FROM generate_series(521, 530) g",
    );
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(summary[0][2].as_deref(), Some("10"), "{summary:?}");
    let run_id: u64 = summary[0][0].as_deref().unwrap().parse().unwrap();
    assert!(run_id > 2, "run ids continue after the table's last run: {run_id}");
    assert_eq!(table_rows(&env.fake, "orders").len(), 530);
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
}

/// The `sluice_committed*` labels of the fake's `orders`.
fn committed_labels(env: &Env) -> serde_json::Map<String, serde_json::Value> {
    let table = env.fake.table("raw_data", "orders").unwrap();
    let mut labels = table.resource["labels"].as_object().unwrap().clone();
    labels.retain(|key, _| key.starts_with("sluice_committed"));
    labels
}

#[tokio::test]
async fn a_load_whose_label_update_was_lost_after_its_copy_job_is_found_by_a_restored_catalog() {
    let mut env = setup(&[]).await;
    create_orders_inc(&env.client, 8192).await;
    rows(&env.client, "RUN ETL JOB orders_inc").await;
    let after_run_1 = committed_labels(&env);
    assert_eq!(after_run_1.len(), 2, "{after_run_1:?}");
    let (backup, client) = back_up_catalog_and_add_orders(&mut env).await;
    rows(&client, "RUN ETL JOB orders_inc").await;
    let watermark = one(&client, "SELECT watermark FROM sluice.jobs").await;
    env.sluice.terminate();
    // As if Sluice had stopped between run 2's copy job and its second
    // label update: the labels name run 2 pending, run 1 committed.
    {
        let mut state = env.fake.state();
        let table = state
            .tables
            .get_mut(&("raw_data".to_owned(), "orders".to_owned()))
            .unwrap();
        let labels = table.resource["labels"].as_object_mut().unwrap();
        assert_ne!(labels["sluice_committed"], after_run_1["sluice_committed"]);
        labels.extend(after_run_1);
    }
    // And the catalog is restored from the backup taken after run 1.
    restore_catalog(&env, &backup);
    env.sluice.restart();
    let client = env.sluice.client().await;
    assert_eq!(one(&client, "SELECT watermark FROM sluice.jobs").await, watermark);
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("0"), "{summary:?}");
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
}

#[tokio::test]
async fn a_run_that_reads_no_rows_touches_no_bigquery_table() {
    let env = setup(&[]).await;
    create_orders_inc(&env.client, 8192).await;
    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("500"), "{summary:?}");
    let watermark = one(&env.client, "SELECT watermark FROM sluice.jobs").await;
    let before = env.fake.state().requests.len();

    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(summary[0][2].as_deref(), Some("0"), "{summary:?}");
    let changes: Vec<String> = env.fake.state().requests[before..]
        .iter()
        .filter(|r| !r.starts_with("GET ") && !r.contains("/token"))
        .cloned()
        .collect();
    assert_eq!(changes, Vec::<String>::new(), "no table created, changed or loaded");
    assert_eq!(one(&env.client, "SELECT watermark FROM sluice.jobs").await, watermark);
    let run = rows(
        &env.client,
        "SELECT status, rows FROM sluice.runs ORDER BY run_id DESC LIMIT 1",
    )
    .await;
    assert_eq!(run[0], [Some("succeeded".into()), Some("0".into())]);
    assert_eq!(table_rows(&env.fake, "orders").len(), 500);

    // Exactly once after: the next rows arrive once.
    env.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g, 'new', timestamptz '2024-03-05 00:00:00+00' + g * interval '1 second' FROM generate_series(501, 520) g",
    );
    let summary = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("20"), "{summary:?}");
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
}

#[tokio::test]
async fn a_restored_catalog_that_start_up_could_not_align_is_refused_at_commit() {
    let mut env = setup(&[]).await;
    create_orders_inc(&env.client, 8192).await;
    rows(&env.client, "RUN ETL JOB orders_inc").await;
    let (backup, client) = back_up_catalog_and_add_orders(&mut env).await;
    rows(&client, "RUN ETL JOB orders_inc").await;
    env.sluice.terminate();
    restore_catalog(&env, &backup);
    // Start-up cannot read the table: the watermark stays the backup's.
    env.fake.inject(
        axum::http::Method::GET,
        "/tables/orders",
        crate::fake_bigquery::FaultKind::Status(403, "accessDenied"),
        1,
    );
    env.sluice.restart();
    let client = env.sluice.client().await;
    assert!(
        env.fake.state().faults.iter().all(|f| f.times == 0),
        "start-up asked for the table"
    );
    let message = expect_err(&client, "RUN ETL JOB orders_inc", "58030").await;
    assert!(
        message.contains("last loaded by run 2") && message.contains("Restart Sluice"),
        "{message}"
    );
    assert_eq!(table_rows(&env.fake, "orders").len(), 520, "nothing loaded twice");
    // A restart with BigQuery reachable aligns the job.
    env.sluice.terminate();
    env.sluice.restart();
    let client = env.sluice.client().await;
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(summary[0][2].as_deref(), Some("0"), "{summary:?}");
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
}

#[tokio::test]
async fn a_crash_after_a_run_that_read_no_rows_loses_and_repeats_nothing() {
    let mut env = setup(&[]).await;
    create_orders_inc(&env.client, 8192).await;
    rows(&env.client, "RUN ETL JOB orders_inc").await;
    let watermark = one(&env.client, "SELECT watermark FROM sluice.jobs").await;
    env.sluice.terminate();
    env.sluice
        .opts
        .envs
        .push(("SLUICE_FAILPOINTS".into(), "after_destination_commit".into()));
    env.sluice.restart();
    let client = env.sluice.client().await;
    // The empty run "commits" (nothing), then Sluice stops before the catalog update.
    env.sluice.run_into_failpoint(&client, "RUN ETL JOB orders_inc").await;
    let client = env.sluice.restart_without_failpoints().await;
    let run = rows(&client, "SELECT status FROM sluice.runs ORDER BY run_id DESC LIMIT 1").await;
    assert_eq!(run[0][0].as_deref(), Some("failed"), "nothing was committed: {run:?}");
    assert_eq!(one(&client, "SELECT watermark FROM sluice.jobs").await, watermark);
    env.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g, 'new', timestamptz '2024-03-05 00:00:00+00' + g * interval '1 second' FROM generate_series(501, 520) g",
    );
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("20"), "{summary:?}");
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
}
