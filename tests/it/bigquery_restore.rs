//! BigQuery's table operations: a run that reads no rows touches no
//! BigQuery table.

use crate::bigquery::{create_orders_inc, fake_fingerprint, setup, source_fingerprint, table_rows};
use crate::common::*;

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
    assert!(client.simple_query("RUN ETL JOB orders_inc").await.is_err());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while env.sluice.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the failpoint did not stop the server"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    env.sluice.opts.envs.retain(|(k, _)| k != "SLUICE_FAILPOINTS");
    env.sluice.restart();
    let client = env.sluice.client().await;
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
