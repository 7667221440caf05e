//! No lost or duplicated rows: kill -9 Sluice at many points of incremental
//! and snapshot runs, crash it between the destination commit and the
//! catalog update, cut the source connection mid-run; after a restart and a
//! re-run the warehouse equals the source row for row.

use crate::common;

use std::time::Duration;

use common::*;
use tokio_postgres::Client;

const ROWS_PER_BATCH_OF_INSERTS: i64 = 150_000;

fn insert_rows(pg: &PgServer, from: i64) {
    pg.psql_admin_db(
        "shop",
        &format!(
            "INSERT INTO events SELECT g, 'payload ' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' \
             FROM generate_series({from}, {}) g;",
            from + ROWS_PER_BATCH_OF_INSERTS - 1
        ),
    );
}

/// `count, count distinct, sum` of ids at the source.
fn source_fingerprint(pg: &PgServer) -> String {
    pg.psql_admin_db("shop", "SELECT count(*), count(DISTINCT id), sum(id) FROM events")
        .trim()
        .to_owned()
}

async fn warehouse_fingerprint(client: &Client, table: &str) -> String {
    let r = rows(
        client,
        &format!("SELECT count(*), count(DISTINCT id), sum(id) FROM warehouse.{table}"),
    )
    .await;
    format!(
        "{}|{}|{}",
        r[0][0].as_deref().unwrap(),
        r[0][1].as_deref().unwrap(),
        r[0][2].as_deref().unwrap_or("")
    )
}

async fn setup(pg: &PgServer, sluice: &Sluice) -> Client {
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB events_inc FROM shop.public.events INTO warehouse.events_inc INCREMENTAL BY at ALL; \
             CREATE ETL JOB events_snap FROM shop.public.events INTO warehouse.events_snap SNAPSHOT;",
            pg.port
        ))
        .await
        .unwrap();
    client
}

/// The status of a run once it is no longer running (waits up to 10 s).
async fn settled_status(client: &Client, run_id: &str) -> String {
    for _ in 0..200 {
        let status = rows(
            client,
            &format!("SELECT status FROM sluice.runs WHERE run_id = {run_id}"),
        )
        .await[0][0]
            .clone()
            .unwrap();
        if status != "running" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} is still running after 10 s");
}

fn start_pg() -> PgServer {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE events (id bigint PRIMARY KEY, payload text, at timestamptz NOT NULL);",
    );
    pg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_point_then_rerun_loads_every_row_once() {
    let pg = start_pg();
    let mut sluice = Sluice::start();
    let mut client = setup(&pg, &sluice).await;
    let mut next_id = 1;
    for (round, delay_ms) in [30u64, 150, 400, 800, 1500].into_iter().enumerate() {
        insert_rows(&pg, next_id);
        next_id += ROWS_PER_BATCH_OF_INSERTS;
        for job in ["events_inc", "events_snap"] {
            rows(&client, &format!("RUN ETL JOB {job} ASYNC")).await;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            sluice.kill9();
            sluice.restart();
            client = sluice.client().await;
            // Whatever the kill interrupted is settled at start-up.
            let unsettled = rows(
                &client,
                "SELECT run_id FROM sluice.runs WHERE status IN ('running', 'queued')",
            )
            .await;
            assert!(
                unsettled.is_empty(),
                "round {round}: runs left running after restart: {unsettled:?}"
            );
            // A snapshot table is always a whole snapshot, never a mix.
            if job == "events_snap" {
                let seen = warehouse_fingerprint(&client, "events_snap").await;
                let count: i64 = seen.split('|').next().unwrap().parse().unwrap();
                assert_eq!(
                    count % ROWS_PER_BATCH_OF_INSERTS,
                    0,
                    "round {round}: partial snapshot visible: {seen}"
                );
            }
        }
        for job in ["events_inc", "events_snap"] {
            let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
            assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
        }
        let expected = source_fingerprint(&pg);
        assert_eq!(
            warehouse_fingerprint(&client, "events_inc").await,
            expected,
            "round {round} (kill after {delay_ms} ms)"
        );
        assert_eq!(
            warehouse_fingerprint(&client, "events_snap").await,
            expected,
            "round {round}"
        );
    }
    let failed = rows(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE status = 'failed' AND error LIKE 'interrupted%'",
    )
    .await;
    assert_ne!(
        failed[0][0].as_deref(),
        Some("0"),
        "some kills must have interrupted a run"
    );
}

#[tokio::test]
async fn a_crash_between_destination_commit_and_catalog_update_is_reconciled() {
    let pg = start_pg();
    insert_rows(&pg, 1);
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "after_destination_commit")]);
    let client = setup(&pg, &sluice).await;
    sluice.run_into_failpoint(&client, "RUN ETL JOB events_inc").await;
    assert!(
        sluice.log_contents().contains("failpoint hit"),
        "the server stopped at the failpoint"
    );
    sluice.opts.envs.clear();
    sluice.restart();
    let client = sluice.client().await;
    let run = rows(
        &client,
        "SELECT status, watermark_to FROM sluice.runs WHERE job = 'events_inc'",
    )
    .await;
    assert_eq!(run.len(), 1);
    assert_eq!(
        run[0][0].as_deref(),
        Some("succeeded"),
        "the committed load is adopted: {run:?}"
    );
    let jobs = rows(&client, "SELECT watermark FROM sluice.jobs WHERE name = 'events_inc'").await;
    assert_eq!(
        jobs[0][0], run[0][1],
        "the watermark comes from the destination's manifest"
    );
    let again = rows(&client, "RUN ETL JOB events_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("0"), "nothing is loaded twice");
    assert_eq!(
        warehouse_fingerprint(&client, "events_inc").await,
        source_fingerprint(&pg)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_source_connection_fails_the_run_and_a_rerun_is_exact() {
    let pg = start_pg();
    insert_rows(&pg, 1);
    insert_rows(&pg, 1 + ROWS_PER_BATCH_OF_INSERTS);
    let sluice = Sluice::start();
    let client = setup(&pg, &sluice).await;
    let started = rows(&client, "RUN ETL JOB events_inc ASYNC").await;
    let run_id = started[0][0].clone().unwrap();
    // Cut Sluice's COPY as soon as it is running.
    let mut cut = false;
    for _ in 0..200 {
        let killed = pg.psql_admin_db(
            "shop",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT%' AND pid <> pg_backend_pid()",
        );
        if killed.trim() != "0" {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cut, "the COPY was never seen running");
    assert_eq!(settled_status(&client, &run_id).await, "failed");
    assert_eq!(
        warehouse_fingerprint(&client, "events_inc").await,
        "0|0|",
        "nothing of the failed run is visible"
    );
    rows(&client, "RUN ETL JOB events_inc").await;
    assert_eq!(
        warehouse_fingerprint(&client, "events_inc").await,
        source_fingerprint(&pg)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_commits_nothing() {
    let pg = start_pg();
    insert_rows(&pg, 1);
    insert_rows(&pg, 1 + ROWS_PER_BATCH_OF_INSERTS);
    let sluice = Sluice::start();
    let client = setup(&pg, &sluice).await;
    let started = rows(&client, "RUN ETL JOB events_inc ASYNC").await;
    let run_id = started[0][0].clone().unwrap();
    assert_eq!(started[0][1].as_deref(), Some("running"));
    let message = expect_err(&client, "RUN ETL JOB events_inc", "55006").await;
    assert!(message.contains(&format!("run {run_id}")), "{message}");
    let message = expect_err(&client, "DROP CONNECTION shop CASCADE", "55006").await;
    assert!(message.contains("events_inc"), "{message}");
    client.batch_execute(&format!("CANCEL ETL RUN {run_id}")).await.unwrap();
    assert_eq!(settled_status(&client, &run_id).await, "cancelled");
    assert_eq!(warehouse_fingerprint(&client, "events_inc").await, "0|0|");
    expect_err(&client, &format!("CANCEL ETL RUN {run_id}"), "55000").await;
    expect_err(&client, "CANCEL ETL RUN 999999", "42704").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_lookback_runs_still_loads_late_rows_exactly_once() {
    let pg = start_pg();
    let mut sluice = Sluice::start();
    let mut client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB events_late FROM shop.public.events INTO warehouse.events_late INCREMENTAL BY at ALL \
             LOOKBACK 1 HOUR DEDUPE ON (id);",
            pg.port
        ))
        .await
        .unwrap();
    let mut next_id = 1;
    for (round, delay_ms) in [40u64, 300, 900].into_iter().enumerate() {
        // Late rows: ids far from the others, with a cursor half an hour
        // before the newest row so far, inside the one-hour lookback.
        if next_id > 1 {
            pg.psql_admin_db(
                "shop",
                &format!(
                    "INSERT INTO events SELECT 100000000 + {round} * 1000 + g, 'late', \
                     (SELECT max(at) FROM events) - interval '30 minutes' FROM generate_series(1, 500) g;"
                ),
            );
        }
        insert_rows(&pg, next_id);
        next_id += ROWS_PER_BATCH_OF_INSERTS;
        rows(&client, "RUN ETL JOB events_late ASYNC").await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        sluice.kill9();
        sluice.restart();
        client = sluice.client().await;
        // Twice: the second run re-reads the window and must add nothing.
        let summary = rows(&client, "RUN ETL JOB events_late").await;
        assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
        let again = rows(&client, "RUN ETL JOB events_late").await;
        assert_eq!(again[0][2].as_deref(), Some("0"), "round {round}: {again:?}");
        assert_eq!(
            warehouse_fingerprint(&client, "events_late").await,
            source_fingerprint(&pg),
            "round {round} (kill after {delay_ms} ms)"
        );
    }
    let late = rows(
        &client,
        "SELECT count(*) FROM warehouse.events_late WHERE payload = 'late'",
    )
    .await;
    assert_eq!(late[0][0].as_deref(), Some("1000"), "late rows of rounds 1 and 2");
}
