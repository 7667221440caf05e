//! Nothing acknowledged is lost when a run ends badly: cursor overrides
//! that would break the watermark are refused, one destination table has
//! one job, a panicking run is settled and its job keeps its schedule, and a
//! failed catalog write after the destination committed is settled like a
//! crash before the job runs again.

use crate::common;

use std::time::Duration;

use common::*;
use tokio_postgres::Client;

fn start_pg() -> PgServer {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.events (id bigint PRIMARY KEY, payload text, at timestamptz NOT NULL);",
    );
    pg
}

fn insert(pg: &PgServer, from: i64, to: i64) {
    pg.psql_admin_db(
        "shop",
        &format!(
            "INSERT INTO public.events SELECT g, 'p' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour' \
             FROM generate_series({from}, {to}) g"
        ),
    );
}

/// `count, count distinct` of ids in a warehouse table.
async fn loaded(client: &Client, table: &str) -> (String, String) {
    let r = rows(
        client,
        &format!("SELECT count(*), count(DISTINCT id) FROM warehouse.{table}"),
    )
    .await;
    (r[0][0].clone().unwrap(), r[0][1].clone().unwrap())
}

#[tokio::test]
async fn cursor_overrides_that_change_how_the_cursor_compares_are_refused() {
    let pg = start_pg();
    insert(&pg, 1, 12);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    // As text, '9' > '10': the high mark would be the text maximum.
    let message = expect_err(
        &client,
        "CREATE ETL JOB by_id FROM shop.public.events INCREMENTAL BY id ALL COLUMNS (id STRING)",
        "22023",
    )
    .await;
    assert!(message.contains("cursor column \"id\""), "{message}");
    // As a date, the high mark would be the day, before the rows of that day.
    let message = expect_err(
        &client,
        "CREATE ETL JOB by_at FROM shop.public.events INCREMENTAL BY at ALL COLUMNS (at DATE)",
        "22023",
    )
    .await;
    assert!(message.contains("cursor column \"at\""), "{message}");
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs").await, "0");
    // Overrides of other columns, and one that keeps the cursor's type, are fine.
    client
        .batch_execute(
            "CREATE ETL JOB by_at FROM shop.public.events INCREMENTAL BY at ALL COLUMNS (payload BYTES, at TIMESTAMP)",
        )
        .await
        .unwrap();
    rows(&client, "RUN ETL JOB by_at").await;
    insert(&pg, 13, 20);
    rows(&client, "RUN ETL JOB by_at").await;
    assert_eq!(loaded(&client, "bq_events").await, ("20".into(), "20".into()));
}

#[tokio::test]
async fn a_second_job_into_a_table_another_job_loads_is_refused() {
    let pg = start_pg();
    insert(&pg, 1, 5);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute("CREATE ETL JOB first FROM shop.public.events INTO warehouse.shared INCREMENTAL BY id ALL")
        .await
        .unwrap();
    rows(&client, "RUN ETL JOB first").await;
    let message = expect_err(
        &client,
        "CREATE ETL JOB second FROM shop.public.events INTO warehouse.shared SNAPSHOT",
        "42710",
    )
    .await;
    assert!(
        message.contains("\"shared\"") && message.contains("\"first\""),
        "{message}"
    );
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs").await, "1");
    assert_eq!(loaded(&client, "shared").await, ("5".into(), "5".into()));
    // Once the owner is dropped (keeping its data), the table is free.
    client
        .batch_execute(
            "DROP ETL JOB first KEEP DATA; \
             CREATE ETL JOB second FROM shop.public.events INTO warehouse.shared SNAPSHOT",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_panicking_run_is_settled_and_its_job_keeps_running_on_schedule() {
    let pg = start_pg();
    insert(&pg, 1, 5);
    let sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "run_start:panic")]);
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute(
            "CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY id ALL SCHEDULE CRON '* * * * * *'",
        )
        .await
        .unwrap();
    // Each scheduled run panics; the slot comes back and the next tick runs.
    wait_for(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE trigger = 'schedule' AND status = 'failed' \
         AND error LIKE 'interrupted: run % stopped on an internal error (failpoint run_start hit)%'",
        Duration::from_secs(30),
        |v| v.parse::<i64>().unwrap() >= 3,
    )
    .await;
    client.batch_execute("ALTER ETL JOB events PAUSE").await.unwrap();
    let nothing_running = "SELECT count(*) FROM sluice.runs WHERE status IN ('running', 'queued')";
    wait_for(&client, nothing_running, Duration::from_secs(10), |v| v == "0").await;
    // A manual run reports the panic; the session survives it.
    let message = expect_err(&client, "RUN ETL JOB events", "XX000").await;
    assert!(message.contains("internal error"), "{message}");
    assert_eq!(one(&client, nothing_running).await, "0");
}

#[tokio::test]
async fn a_failed_catalog_write_after_the_commit_is_settled_before_the_job_runs_again() {
    let pg = start_pg();
    insert(&pg, 1, 30);
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "catalog_finish_run:error")]);
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute("CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY id ALL")
        .await
        .unwrap();
    // The load commits; recording it fails (as on a full disk).
    expect_err(&client, "RUN ETL JOB events", "XX000").await;
    assert_eq!(loaded(&client, "bq_events").await, ("30".into(), "30".into()));
    insert(&pg, 31, 40);
    // The run cannot be settled yet, so no new run starts from the old watermark.
    expect_err(&client, "RUN ETL JOB events", "XX000").await;
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.runs").await, "1");
    assert_eq!(loaded(&client, "bq_events").await, ("30".into(), "30".into()));

    // With the disk writable again, start-up adopts the committed run.
    sluice.terminate();
    sluice.opts.envs.clear();
    sluice.restart();
    let client = sluice.client().await;
    let run = rows(&client, "SELECT status, watermark_to FROM sluice.runs").await;
    assert_eq!(run, [[Some("succeeded".into()), Some("30".into())]]);
    let summary = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(summary[0][2].as_deref(), Some("10"), "{summary:?}");
    assert_eq!(loaded(&client, "bq_events").await, ("40".into(), "40".into()));
}

#[tokio::test]
async fn a_catalog_restored_from_a_backup_continues_from_the_destination_without_duplicates() {
    let pg = start_pg();
    insert(&pg, 1, 10);
    let mut sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute("CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY id ALL")
        .await
        .unwrap();
    rows(&client, "RUN ETL JOB events").await;

    // A backup of the catalog, taken with the server stopped.
    sluice.terminate();
    let backup = tempfile::tempdir().unwrap();
    let catalog = sluice.data_dir().join("catalog");
    copy_dir(&catalog, &backup.path().join("catalog"));
    sluice.restart();
    let client = sluice.client().await;
    insert(&pg, 11, 20);
    let summary = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(summary[0][2].as_deref(), Some("10"), "{summary:?}");

    // Restore the older catalog: its watermark is 10, the table holds 20 rows.
    sluice.terminate();
    std::fs::remove_dir_all(&catalog).unwrap();
    copy_dir(&backup.path().join("catalog"), &catalog);
    sluice.restart();
    let client = sluice.client().await;
    assert_eq!(one(&client, "SELECT watermark FROM sluice.jobs").await, "20");
    insert(&pg, 21, 25);
    let summary = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(summary[0][2].as_deref(), Some("5"), "{summary:?}");
    let run_id: u64 = summary[0][0].as_deref().unwrap().parse().unwrap();
    assert!(
        run_id > 2,
        "run ids continue after the destination's last run: {run_id}"
    );
    assert_eq!(loaded(&client, "bq_events").await, ("25".into(), "25".into()));
}
