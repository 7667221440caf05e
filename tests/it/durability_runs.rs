//! Nothing acknowledged is lost when a run ends badly: cursor overrides
//! that would break the watermark are refused, one destination table has
//! one job, a panicking run is settled and its job keeps its schedule, and a
//! failed catalog write after the destination committed is settled like a
//! crash before the job runs again.

use crate::common;

use std::time::{Duration, Instant};

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

async fn wait_for(client: &Client, sql: &str, timeout: Duration, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if done(&one(client, sql).await) {
            return;
        }
        if Instant::now() > deadline {
            let runs = rows(client, "SELECT run_id, trigger, status, error FROM sluice.runs").await;
            panic!("timed out waiting for {sql:?}; runs: {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
