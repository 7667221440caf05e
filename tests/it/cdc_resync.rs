//! `RESYNC ETL JOB` and the WAL guardian of CDC jobs (issue #22) against a
//! real PostgreSQL: a job whose slot holds back more WAL than its
//! `max_retained_wal` gives the slot up and needs a resync; `RESYNC ETL
//! JOB` takes a fresh snapshot (MERGE: in place of the table; HISTORY:
//! appended behind a `truncate`, so the history stays) and streams from a
//! new slot; a kill -9 at any step of a resync, then a re-run, leaves the
//! destination equal to the source and one slot per job.

use crate::cdc_jobs::{assert_equal, big, cdc_state, generate_wal, run, run_both, setup, slots, source, warehouse};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guardian_gives_up_a_slot_past_max_retained_wal_and_resync_recovers() {
    let pg = PgServer::start();
    let sluice = Sluice::start();
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
