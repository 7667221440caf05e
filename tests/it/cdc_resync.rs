//! `RESYNC ETL JOB` and the WAL guardian of CDC jobs (issue #22) against a
//! real PostgreSQL: a job whose slot holds back more WAL than its
//! `max_retained_wal` gives the slot up and needs a resync; `RESYNC ETL
//! JOB` takes a fresh snapshot (MERGE: in place of the table; HISTORY:
//! appended behind a `truncate`, so the history stays) and streams from a
//! new slot; a kill -9 at any step of a resync, then a re-run, leaves the
//! destination equal to the source and one slot per job. Between runs the
//! guardian watches the slots of jobs that are not running: their
//! `lag_bytes` follows the source, and a paused job's slot past its limit
//! is given up by a `guardian` run.

use std::time::Duration;

use crate::cdc_jobs::{assert_equal, big, cdc_state, generate_wal, run, run_both, setup, slots, source, warehouse};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guardian_gives_up_a_slot_past_max_retained_wal_and_resync_recovers() {
    let pg = PgServer::start();
    // The runs' own looks at the slots, not the between-runs watch's.
    let sluice = Sluice::start_with(&[], &[("SLUICE_CDC_MEASURE_SECONDS", "3600")]);
    let client = setup(&pg, &sluice).await;
    run_both(&client).await;
    assert_eq!(cdc_state(&client, "items_merge").await, "streaming");
    let lag: f64 = one(
        &client,
        "SELECT lag_seconds FROM sluice.jobs WHERE name = 'items_merge'",
    )
    .await
    .parse()
    .unwrap();
    assert!((0.0..60.0).contains(&lag), "lag_seconds {lag}");
    let metrics = sluice.metrics();
    for name in ["sluice_cdc_lag_bytes", "sluice_cdc_lag_seconds"] {
        assert!(
            metrics.contains(&format!(r#"{name}{{namespace="sluice",job="items_merge"}} "#)),
            "{name} in {metrics}"
        );
    }

    client
        .batch_execute("ALTER ETL JOB items_merge SET (max_retained_wal = '1 kB'); ALTER ETL JOB items_history SET (max_retained_wal = '1 kB')")
        .await
        .unwrap();
    // Changes the jobs miss while their slots are gone, a delete among them.
    pg.psql_admin(&format!(
        "UPDATE items SET name = 'a2' WHERE id = 1; DELETE FROM items WHERE id = 2; \
         INSERT INTO items VALUES (8, 'h', {}, 8);",
        big('h')
    ));
    generate_wal(&pg);
    for job in ["items_merge", "items_history"] {
        let message = expect_err(&client, &format!("RUN ETL JOB {job}"), "55000").await;
        assert!(
            message.contains("max_retained_wal (1 kB)") && message.contains(&format!("RESYNC ETL JOB {job}")),
            "{message}"
        );
        assert_eq!(cdc_state(&client, job).await, "needs resync");
        // A later run fails the same way, without a slot to read.
        let message = expect_err(&client, &format!("RUN ETL JOB {job}"), "55000").await;
        assert!(message.contains("needs a resync"), "{message}");
    }
    assert_eq!(slots(&pg), "", "both slots were given up");
    pg.psql_admin("UPDATE items SET qty = 11 WHERE id = 1;");

    client
        .batch_execute(
            "ALTER ETL JOB items_merge SET (max_retained_wal = '10 GB'); \
             ALTER ETL JOB items_history SET (max_retained_wal = '10 GB')",
        )
        .await
        .unwrap();
    let history_before: u64 = one(&client, "SELECT count(*) FROM warehouse.items_h")
        .await
        .parse()
        .unwrap();
    for job in ["items_merge", "items_history"] {
        client.batch_execute(&format!("RESYNC ETL JOB {job}")).await.unwrap();
        assert_eq!(cdc_state(&client, job).await, "streaming");
    }
    assert_equal(&pg, &client, "a resync after needs resync").await;
    assert_eq!(slots(&pg).lines().count(), 2, "a new slot per job");
    // HISTORY kept what it had, then a truncate and the snapshot.
    let source_rows = source(&pg).await.len() as u64;
    assert_eq!(
        one(&client, "SELECT count(*) FROM warehouse.items_h").await,
        (history_before + 1 + source_rows).to_string()
    );
    assert_eq!(
        rows(
            &client,
            "SELECT trigger, status FROM sluice.runs WHERE job = 'items_merge' ORDER BY run_id DESC LIMIT 1"
        )
        .await,
        [[Some("resync".to_owned()), Some("succeeded".to_owned())]]
    );

    // Streaming continues from the new slots; a resync while streaming
    // takes a fresh snapshot too.
    pg.psql_admin("DELETE FROM items WHERE id = 8; UPDATE items SET qty = 12 WHERE id = 1;");
    run_both(&client).await;
    assert_equal(&pg, &client, "changes after the resync").await;
    pg.psql_admin("INSERT INTO items VALUES (9, 'i', NULL, 9);");
    for job in ["items_merge", "items_history"] {
        client.batch_execute(&format!("RESYNC ETL JOB {job}")).await.unwrap();
    }
    assert_equal(&pg, &client, "a resync while streaming").await;
    assert_eq!(slots(&pg).lines().count(), 2);

    client
        .batch_execute("CREATE ETL JOB snap FROM shop.public.items INTO items_s SNAPSHOT")
        .await
        .unwrap();
    let message = expect_err(&client, "RESYNC ETL JOB snap", "0A000").await;
    assert!(message.contains("only a CDC job"), "{message}");
    let message = expect_err(&client, "ALTER ETL JOB snap SET (max_retained_wal = '1 GB')", "22023").await;
    assert!(message.contains("CDC jobs only"), "{message}");
}

/// `lag_bytes` of `job`, 0 while NULL.
async fn lag_bytes(client: &tokio_postgres::Client, job: &str) -> u64 {
    one(
        client,
        &format!("SELECT lag_bytes FROM sluice.jobs WHERE name = '{job}'"),
    )
    .await
    .parse()
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn between_runs_the_guardian_measures_idle_slots_and_gives_up_a_paused_jobs_past_its_limit() {
    let pg = PgServer::start();
    let sluice = Sluice::start_with(&[], &[("SLUICE_CDC_MEASURE_SECONDS", "1")]);
    let client = setup(&pg, &sluice).await;
    client
        .batch_execute(&format!(
            "CREATE ALERT failed ON JOB FAILURE NOTIFY WEBHOOK 'http://127.0.0.1:{}/hook'",
            free_port()
        ))
        .await
        .unwrap();
    run_both(&client).await;
    client
        .batch_execute("ALTER ETL JOB items_merge SET (max_retained_wal = '1 MB'); ALTER ETL JOB items_merge PAUSE")
        .await
        .unwrap();
    let runs = "SELECT count(*) FROM sluice.runs";
    let runs_before = one(&client, runs).await;

    // No run reads the slots, yet both jobs' lag_bytes follow the WAL the
    // source writes (about 400 kB, under the limit).
    let (merge_before, history_before) = (
        lag_bytes(&client, "items_merge").await,
        lag_bytes(&client, "items_history").await,
    );
    generate_wal(&pg);
    let timeout = Duration::from_secs(30);
    for (job, before) in [("items_merge", merge_before), ("items_history", history_before)] {
        let sql = format!("SELECT lag_bytes FROM sluice.jobs WHERE name = '{job}'");
        wait_for(&client, &sql, timeout, |v| {
            v.parse::<u64>().is_ok_and(|b| b >= before + 300_000)
        })
        .await;
    }
    assert_eq!(one(&client, runs).await, runs_before, "measuring starts no run");
    assert_eq!(cdc_state(&client, "items_merge").await, "streaming");
    assert_eq!(slots(&pg).lines().count(), 2);

    // Past the paused job's limit: its slot is given up by a run of the
    // guardian, which fails with the reason; the other job keeps its slot.
    for _ in 0..3 {
        generate_wal(&pg);
    }
    let state = "SELECT cdc_state FROM sluice.jobs WHERE name = 'items_merge'";
    wait_for(&client, state, timeout, |v| v == "needs resync").await;
    let failed = rows(
        &client,
        "SELECT trigger, status, sqlstate, error FROM sluice.runs WHERE job = 'items_merge' ORDER BY run_id DESC \
         LIMIT 1",
    )
    .await;
    let [row] = failed.as_slice() else { panic!("{failed:?}") };
    let [trigger, status, sqlstate, error] = row.as_slice() else {
        panic!("{row:?}")
    };
    assert_eq!(
        (trigger.as_deref(), status.as_deref(), sqlstate.as_deref()),
        (Some("guardian"), Some("failed"), Some("55000"))
    );
    let error = error.as_deref().unwrap_or_default();
    assert!(
        error.contains("more than max_retained_wal (1 MB)") && error.contains("RESYNC ETL JOB items_merge"),
        "{error}"
    );
    assert_eq!(slots(&pg).lines().count(), 1, "only the paused job's slot was given up");
    assert_eq!(cdc_state(&client, "items_history").await, "streaming");
    assert!(lag_bytes(&client, "items_history").await >= history_before + 1_200_000);
    assert_eq!(
        one(&client, "SELECT health FROM sluice.jobs WHERE name = 'items_merge'").await,
        "failing"
    );
    let alerts = "SELECT count(*) FROM sluice.alert_deliveries WHERE event = 'JOB FAILURE' AND subject = 'items_merge'";
    wait_for(&client, alerts, timeout, |v| v == "1").await;
    // Given up once: the watch leaves a job that needs a resync alone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.runs WHERE trigger = 'guardian'").await,
        "1"
    );

    pg.psql_admin("UPDATE items SET qty = 21 WHERE id = 1; DELETE FROM items WHERE id = 2;");
    client
        .batch_execute("ALTER ETL JOB items_merge RESUME; RESYNC ETL JOB items_merge")
        .await
        .unwrap();
    run(&client, "items_history").await;
    assert_equal(&pg, &client, "a resync after the guardian gave the slot up").await;
    assert_eq!(slots(&pg).lines().count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_step_of_a_resync_then_rerun_equals_the_source() {
    let pg = PgServer::start();
    let mut sluice = Sluice::start();
    let mut client = setup(&pg, &sluice).await;
    run_both(&client).await;
    let mut id = 100;
    for point in [
        "cdc_resync_released",
        "cdc_snapshot_before_commit",
        "cdc_snapshot_committed",
    ] {
        for job in ["items_merge", "items_history"] {
            id += 1;
            pg.psql_admin(&format!(
                "INSERT INTO items VALUES ({id}, 'k', {}, 1); UPDATE items SET qty = qty + 1 WHERE id = 1;",
                big('k')
            ));
            sluice.opts.envs.push(("SLUICE_FAILPOINTS".into(), point.into()));
            sluice.restart();
            client = sluice.client().await;
            sluice
                .run_into_failpoint(&client, &format!("RESYNC ETL JOB {job}"))
                .await;
            // Changes while Sluice is down.
            pg.psql_admin(&format!(
                "DELETE FROM items WHERE id = {id}; UPDATE items SET name = '{point}' WHERE id = 1;"
            ));
            client = sluice.restart_without_failpoints().await;
            run(&client, job).await;
            let table = if job == "items_merge" {
                "items_m"
            } else {
                "items_h_current"
            };
            assert_eq!(
                warehouse(&client, table).await,
                source(&pg).await,
                "{job} after a kill at {point} and a re-run"
            );
        }
    }
    // Each job has yet to see the other's last changes.
    run_both(&client).await;
    assert_equal(&pg, &client, "the kills").await;
    assert_eq!(slots(&pg).lines().count(), 2, "no orphaned slot: {}", slots(&pg));
    pg.psql_admin("UPDATE items SET qty = 1000 WHERE id = 1;");
    run_both(&client).await;
    assert_equal(&pg, &client, "a change after the kills").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_marks_deleted_rows_and_a_reinsert_clears_them() {
    let pg = PgServer::start();
    pg.psql_admin(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a'), (2, 'b');",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    let message = expect_err(
        &client,
        "CREATE ETL JOB h FROM shop.public.items INTO items_h CDC HISTORY WITH (soft_delete = true)",
        "22023",
    )
    .await;
    assert!(message.contains("MERGE only"), "{message}");
    let message = expect_err(
        &client,
        "CREATE ETL JOB s FROM shop.public.items INTO items_s SNAPSHOT WITH (soft_delete = true)",
        "22023",
    )
    .await;
    assert!(message.contains("CDC MERGE jobs only"), "{message}");
    client
        .batch_execute("CREATE ETL JOB soft FROM shop.public.items INTO items_soft CDC MERGE WITH (soft_delete = true)")
        .await
        .unwrap();
    let create = rows(&client, "SHOW CREATE ETL JOB soft").await[0][1].clone().unwrap();
    assert!(create.contains("soft_delete = true"), "{create}");
    let message = expect_err(&client, "ALTER ETL JOB soft SET (soft_delete = false)", "22023").await;
    assert!(message.contains("soft_delete"), "{message}");
    run(&client, "soft").await;

    let marked = "SELECT id, name, _sluice_deleted_at IS NOT NULL FROM warehouse.items_soft ORDER BY id";
    let row = |id: &str, name: &str, deleted: bool| {
        vec![
            Some(id.to_owned()),
            Some(name.to_owned()),
            Some(if deleted { "t" } else { "f" }.to_owned()),
        ]
    };
    assert_eq!(
        rows(&client, marked).await,
        [row("1", "a", false), row("2", "b", false)]
    );

    pg.psql_admin("DELETE FROM items WHERE id = 2; UPDATE items SET name = 'a2' WHERE id = 1;");
    run(&client, "soft").await;
    assert_eq!(
        rows(&client, marked).await,
        [row("1", "a2", false), row("2", "b", true)]
    );
    // The mark is the delete's commit time, as _sluice_commit_ts.
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM warehouse.items_soft WHERE _sluice_deleted_at = _sluice_commit_ts \
             AND _sluice_deleted_at > now() - interval '5 minutes'"
        )
        .await,
        "1"
    );

    pg.psql_admin("INSERT INTO items VALUES (2, 'b2');");
    run(&client, "soft").await;
    assert_eq!(
        rows(&client, marked).await,
        [row("1", "a2", false), row("2", "b2", false)]
    );
}
