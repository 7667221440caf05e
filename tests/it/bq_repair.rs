//! REPAIR ETL JOB into a BigQuery destination, against the fake BigQuery:
//! the window is read again from the source, staged, and put in place of
//! the window's rows by one multi-statement transaction (DELETE + INSERT
//! ... SELECT from the staging table) run as a query job with the run's
//! commit job id; the watermark stays, VERIFY finds no difference after,
//! a failed commit changes nothing, and a repair never overlaps a run.

use std::time::Duration;

use axum::http::Method;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::Int64Type;

use crate::bigquery::{fake_fingerprint, setup, source_fingerprint, table_rows};
use crate::common::*;
use crate::fake_bigquery::FaultKind;

/// The fake's `orders` without the rows of `drop` and with the row of
/// `twice` a second time: a damaged destination.
pub(crate) fn damage(fake: &crate::fake_bigquery::FakeBigQuery, drop: i64, twice: i64) {
    let mut s = fake.state();
    let table = s.tables.get_mut(&("raw_data".into(), "orders".into())).unwrap();
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut copies = Vec::new();
    for batch in &table.batches {
        let ids = batch.column_by_name("id").unwrap().as_primitive::<Int64Type>().clone();
        let keep: datafusion::arrow::array::BooleanArray = ids.iter().map(|id| Some(id != Some(drop))).collect();
        let copy: datafusion::arrow::array::BooleanArray = ids.iter().map(|id| Some(id == Some(twice))).collect();
        batches.push(filter_record_batch(batch, &keep).unwrap());
        copies.push(filter_record_batch(batch, &copy).unwrap());
    }
    batches.extend(copies.into_iter().filter(|b| b.num_rows() > 0));
    table.batches = batches;
}

pub(crate) fn staging_tables(fake: &crate::fake_bigquery::FakeBigQuery) -> Vec<String> {
    fake.table_names("raw_data")
        .into_iter()
        .filter(|t| t.starts_with("_sluice_staging"))
        .collect()
}

#[tokio::test]
async fn repair_replaces_the_window_in_one_bigquery_transaction_and_verify_agrees() {
    let env = setup(&[]).await;
    let client = &env.client;
    client
        .batch_execute("CREATE ETL JOB orders_bq FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    rows(client, "RUN ETL JOB orders_bq").await;
    let watermark = rows(client, "SELECT watermark FROM sluice.jobs WHERE name = 'orders_bq'").await;
    // Rows 121-180 are 02:01 to 03:00: row 130 lost, row 140 twice, and
    // row 135 changed at the source since.
    damage(&env.fake, 130, 140);
    env.pg
        .psql_admin_db("shop", "UPDATE orders SET amount = 9999.99 WHERE id = 135");
    let differ = rows(client, "VERIFY ETL JOB orders_bq BY HOUR").await;
    let hours: Vec<_> = differ.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(hours, ["2024-03-01 02:00"], "{differ:?}");

    // A commit BigQuery refuses changes nothing and leaves no staging table.
    env.fake.inject(
        Method::POST,
        "POST /bigquery/v2/projects/test-project/jobs",
        FaultKind::Status(400, "invalidQuery"),
        1,
    );
    let before = table_rows(&env.fake, "orders");
    expect_err(
        client,
        "REPAIR ETL JOB orders_bq FROM '2024-03-01T02:00:00Z' TO '2024-03-01T03:00:00Z'",
        "58030",
    )
    .await;
    assert_eq!(table_rows(&env.fake, "orders"), before);
    assert!(staging_tables(&env.fake).is_empty());

    let repair = rows(
        client,
        "REPAIR ETL JOB orders_bq FROM '2024-03-01T02:00:00Z' TO '2024-03-01T03:00:00Z'",
    )
    .await;
    assert_eq!(
        (repair[0][1].as_deref(), repair[0][2].as_deref()),
        (Some("succeeded"), Some("60")),
        "{repair:?}"
    );
    let script = env.fake.state().scripts.last().cloned().unwrap();
    assert!(script.starts_with("BEGIN TRANSACTION;\nDELETE FROM `raw_data`.`orders` WHERE `updated_at` >= TIMESTAMP '2024-03-01 02:00:00.000000+00:00' AND `updated_at` < TIMESTAMP '2024-03-01 03:00:00.000000+00:00';\nINSERT INTO `raw_data`.`orders` (`id`, `amount`, `status`, `updated_at`) SELECT `id`, `amount`, `status`, `updated_at` FROM `raw_data`.`_sluice_staging_"), "{script}");
    assert!(script.ends_with(";\nCOMMIT TRANSACTION;"), "{script}");
    // The transaction ran as the run's commit job (found again after a crash).
    let commit_jobs: Vec<String> = env
        .fake
        .state()
        .jobs
        .iter()
        .filter(|(_, job)| job.pointer("/configuration/query").is_some())
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        commit_jobs.len() == 1 && commit_jobs[0].ends_with("_commit"),
        "{commit_jobs:?}"
    );
    assert!(staging_tables(&env.fake).is_empty());

    // The destination matches the source again, row 135 with its new amount.
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
    let repaired = table_rows(&env.fake, "orders");
    assert!(
        repaired.iter().any(|r| r.starts_with("135|9999.99|")),
        "{:?}",
        repaired.iter().filter(|r| r.starts_with("135|")).collect::<Vec<_>>()
    );
    assert!(rows(client, "VERIFY ETL JOB orders_bq BY HOUR").await.is_empty());
    assert!(
        rows(
            client,
            "VERIFY ETL JOB orders_bq BETWEEN '2024-03-01T02:00:00Z' AND '2024-03-01T03:00:00Z'"
        )
        .await
        .is_empty()
    );
    // The watermark did not move; the repair is a run with its own trigger.
    assert_eq!(
        rows(client, "SELECT watermark FROM sluice.jobs WHERE name = 'orders_bq'").await,
        watermark
    );
    let runs = rows(
        client,
        "SELECT trigger, status, rows FROM sluice.runs WHERE job = 'orders_bq' ORDER BY run_id",
    )
    .await;
    let last = runs.last().unwrap();
    assert_eq!(
        last,
        &[Some("repair".into()), Some("succeeded".into()), Some("60".into())],
        "{runs:?}"
    );
    let next = rows(client, "RUN ETL JOB orders_bq").await;
    assert_eq!(next[0][2].as_deref(), Some("0"), "nothing new: {next:?}");
}

#[tokio::test]
async fn a_repair_never_overlaps_a_run_of_the_job() {
    let env = setup(&[]).await;
    let client = &env.client;
    client
        .batch_execute("CREATE ETL JOB orders_bq FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    rows(client, "RUN ETL JOB orders_bq").await;
    env.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g, 'new', timestamptz '2024-03-02 00:00:00+00' + g * interval '1 second' \
         FROM generate_series(501, 520) g",
    );
    env.fake.inject(
        Method::POST,
        "/upload/",
        FaultKind::LateAnswer(Duration::from_millis(1500)),
        1,
    );
    rows(client, "RUN ETL JOB orders_bq ASYNC").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.fake.count_requests("/upload/") == 0 {
        assert!(std::time::Instant::now() < deadline, "the run did not start loading");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = expect_err(
        client,
        "REPAIR ETL JOB orders_bq FROM '2024-03-01T02:00:00Z' TO '2024-03-01T03:00:00Z'",
        "55006",
    )
    .await;
    assert!(refused.contains("orders_bq"), "{refused}");
    // The run finishes untouched by the refused repair.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = rows(client, "SELECT status FROM sluice.runs ORDER BY run_id DESC LIMIT 1").await;
        if status[0][0].as_deref() == Some("succeeded") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
    assert!(env.fake.state().scripts.is_empty(), "no repair ran");
}

/// The same repair against bqemulator, which runs the transaction as a
/// BigQuery script: the table ends equal to the source.
#[tokio::test]
async fn the_emulator_runs_the_repair_transaction() {
    use crate::bq_emulator::{bigquery_totals, setup, source_totals};
    let env = setup(&[]).await;
    env.client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL; \
             RUN ETL JOB orders_inc",
        )
        .await
        .unwrap();
    env.emulator
        .query("DELETE FROM `test-project.raw_data.orders` WHERE id IN (130, 131)");
    env.pg
        .psql_admin_db("shop", "UPDATE orders SET amount = 9999.99 WHERE id = 135");
    assert_ne!(bigquery_totals(&env, "orders"), source_totals(&env, ""));
    let repair = rows(
        &env.client,
        "REPAIR ETL JOB orders_inc FROM '2024-03-01T02:00:00Z' TO '2024-03-01T03:00:00Z'",
    )
    .await;
    assert_eq!(
        (repair[0][1].as_deref(), repair[0][2].as_deref()),
        (Some("succeeded"), Some("60")),
        "{repair:?}"
    );
    assert_eq!(bigquery_totals(&env, "orders"), source_totals(&env, ""));
}

/// kill -9 between BigQuery's commit of a repair and the catalog's record
/// of it: start-up finds the transaction by its commit job id, records the
/// repair as succeeded, and the watermark stays where it was, so the next
/// run loads nothing again.
#[tokio::test]
async fn a_crash_after_the_repair_committed_is_adopted_without_moving_the_watermark() {
    let mut env = setup(&[("SLUICE_FAILPOINTS", "after_repair_commit")]).await;
    env.client
        .batch_execute("CREATE ETL JOB orders_bq FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    rows(&env.client, "RUN ETL JOB orders_bq").await;
    let watermark = rows(
        &env.client,
        "SELECT watermark FROM sluice.jobs WHERE name = 'orders_bq'",
    )
    .await;
    damage(&env.fake, 130, 140);
    env.sluice
        .run_into_failpoint(
            &env.client,
            "REPAIR ETL JOB orders_bq FROM '2024-03-01T02:00:00Z' TO '2024-03-01T03:00:00Z'",
        )
        .await;
    assert_eq!(
        fake_fingerprint(&env.fake, "orders"),
        source_fingerprint(&env.pg),
        "BigQuery committed the repair"
    );
    let client = env.sluice.restart_without_failpoints().await;
    let runs = rows(
        &client,
        "SELECT trigger, status FROM sluice.runs WHERE job = 'orders_bq' ORDER BY run_id DESC LIMIT 1",
    )
    .await;
    assert_eq!(
        runs[0],
        [Some("repair".into()), Some("succeeded".into())],
        "adopted: {runs:?}"
    );
    assert_eq!(
        rows(&client, "SELECT watermark FROM sluice.jobs WHERE name = 'orders_bq'").await,
        watermark
    );
    let next = rows(&client, "RUN ETL JOB orders_bq").await;
    assert_eq!(next[0][2].as_deref(), Some("0"), "nothing loaded again: {next:?}");
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
}
