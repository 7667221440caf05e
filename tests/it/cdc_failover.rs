//! MySQL/MariaDB CDC jobs across a failover (issue #22, docs/cdc.md
//! "Failover"): jobs stream from a MariaDB 10.11 primary that a second
//! MariaDB replicates by GTID (`--log-slave-updates`); after the primary
//! dies and the replica is promoted, `ALTER CONNECTION` points the jobs at
//! it, and they resume from the GTID state they committed. The
//! transactions between their last commit and the failover arrive exactly
//! once, in two replication domains, although the promoted server's binlog
//! files are numbered lower and its offsets differ; the new primary's own
//! transactions (its server id in the GTIDs) follow. A server that does
//! not hold the job's GTID state fails the run with a message that names
//! the job and `RESYNC ETL JOB`, which then starts over: `HISTORY`'s
//! appended rows sort after the older ones. A continuous job whose primary
//! dies retries until its connection points at the new one, and streams
//! on from there.

use std::time::Duration;

use tokio_postgres::Client;

use crate::cdc_mysql::{
    ITEMS, assert_equal, assert_history_applied_once, create_connection, run_both, setup, source, warehouse,
};
use crate::common::*;

/// Points connection `crm` at `maria` (the password is given again: it
/// is never sent to a new server).
async fn repoint(client: &Client, maria: &MariaDb) {
    client
        .batch_execute(&format!(
            "ALTER CONNECTION crm SET (host '127.0.0.1', port {}, password '{}')",
            maria.port, maria.password
        ))
        .await
        .unwrap();
}

/// The change rows `HISTORY` recorded.
pub(crate) async fn history_rows(client: &Client) -> usize {
    one(client, "SELECT count(*) FROM warehouse.items_h")
        .await
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_follow_a_failover_to_a_replica_exactly_once() {
    let mut primary = MariaDb::start();
    let replica = primary.start_replica();
    // The guardian measures idle jobs' lag_bytes every second.
    let sluice = Sluice::start_with(&[], &[("SLUICE_CDC_MEASURE_SECONDS", "1")]);
    let client = setup(&primary, &sluice).await;
    // The primary's binlog files are numbered past the replica's.
    primary.sql("FLUSH BINARY LOGS; FLUSH BINARY LOGS; FLUSH BINARY LOGS;");
    run_both(&client).await;
    assert_equal(&primary, &client, "the first load").await;
    let loaded = history_rows(&client).await;

    // Committed on the primary, in two replication domains.
    primary.sql(
        "UPDATE items SET name = 'a-primary' WHERE id = 1; INSERT INTO items VALUES (4, 'd', 4, 4.00, 'small'); \
         SET SESSION gtid_domain_id = 1; UPDATE items SET qty = 20 WHERE id = 2;",
    );
    run_both(&client).await;
    assert_equal(&primary, &client, "changes on the primary").await;
    assert_eq!(history_rows(&client).await, loaded + 3);

    // Not yet read by the jobs when the primary dies: they must arrive
    // from the replica, once.
    primary.sql(
        "UPDATE items SET name = 'a-late' WHERE id = 1; DELETE FROM items WHERE id = 3; \
         SET SESSION gtid_domain_id = 1; BEGIN; INSERT INTO items VALUES (5, 'e', 5, 5.00, 'large'); \
         UPDATE items SET qty = 21 WHERE id = 2; COMMIT;",
    );
    replica.catch_up_with(&primary);
    primary.stop();
    replica.sql("STOP SLAVE; RESET SLAVE ALL;");
    assert!(
        replica.sql("SHOW BINARY LOGS;").starts_with("mysql-bin.000001"),
        "the replica's binlog starts lower than the primary's"
    );
    repoint(&client, &replica).await;

    // The new primary's own transactions (server id 2) after them.
    replica.sql(
        "UPDATE items SET name = 'a-promoted' WHERE id = 4; INSERT INTO items VALUES (6, 'f', 6, 6.00, 'small'); \
         SET SESSION gtid_domain_id = 1; UPDATE items SET qty = 22 WHERE id = 5;",
    );
    // What the jobs are behind is measured on the new primary, where the
    // state they committed leaves off, before any run commits there.
    for job in ["items_merge", "items_history"] {
        let lag = format!("SELECT lag_bytes FROM sluice.jobs WHERE name = '{job}'");
        wait_for(&client, &lag, Duration::from_secs(30), |v| {
            v.parse::<u64>().is_ok_and(|bytes| bytes > 0)
        })
        .await;
    }
    run_both(&client).await;
    assert_equal(&replica, &client, "the failover").await;
    for job in ["items_merge", "items_history"] {
        let lag = format!("SELECT lag_bytes FROM sluice.jobs WHERE name = '{job}'");
        wait_for(&client, &lag, Duration::from_secs(30), |v| v == "0").await;
    }
    assert_history_applied_once(&client).await;
    assert_eq!(
        history_rows(&client).await,
        loaded + 3 + 4 + 3,
        "each change once: 3 before the last commit, 4 late ones, 3 on the new primary"
    );

    // Later runs go on from the new primary's positions.
    replica.sql("DELETE FROM items WHERE id = 1; UPDATE items SET name = 'f2' WHERE id = 6;");
    run_both(&client).await;
    assert_equal(&replica, &client, "a second run on the new primary").await;
    assert_history_applied_once(&client).await;
    assert_eq!(history_rows(&client).await, loaded + 12);

    // A resync on the new primary: HISTORY's appended first load sorts
    // after the history the job read from the old one.
    client.batch_execute("RESYNC ETL JOB items_history").await.unwrap();
    assert_equal(&replica, &client, "a resync on the new primary").await;
    replica.sql("UPDATE items SET qty = 60 WHERE id = 6;");
    run_both(&client).await;
    assert_equal(&replica, &client, "streaming after the resync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_jobs_gtid_state_needs_a_resync() {
    let primary = MariaDb::start();
    let sluice = Sluice::start();
    let client = setup(&primary, &sluice).await;
    run_both(&client).await;
    // Sequence numbers no fresh server reaches.
    primary.sql(
        "SET SESSION gtid_seq_no = 1000; UPDATE items SET name = 'a2' WHERE id = 1; \
         UPDATE items SET qty = 9 WHERE id = 2;",
    );
    run_both(&client).await;

    // Another server, not a replica of the first: its binlog has GTIDs of
    // its own (domain 0, server id 1 too), but not the jobs' state.
    let other = MariaDb::start();
    other.sql(&format!(
        "{} INSERT INTO items VALUES (7, 'g', 7, 7.00, 'small');",
        ITEMS
    ));
    repoint(&client, &other).await;
    crate::cdc_mysql::resync_both_after(&client, "does not hold the GTID state").await;
    // HISTORY's resync rows sort after the first server's, whose binlog
    // reached further: its current view is the other server's table.
    assert_equal(&other, &client, "a resync from the other server").await;
    other.sql("UPDATE items SET qty = 70 WHERE id = 7;");
    run_both(&client).await;
    assert_equal(&other, &client, "streaming from the other server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_job_streams_on_from_the_new_primary() {
    let mut primary = MariaDb::start();
    let replica = primary.start_replica();
    let sluice = Sluice::start_with(&["--retry-delay", "1", "--retry-max-delay", "1"], &[]);
    primary.sql(&format!(
        "{ITEMS} INSERT INTO items VALUES (1, 'a', 1, 1.50, 'small'), (2, 'b', 2, 2.00, 'large'); \
         FLUSH BINARY LOGS; FLUSH BINARY LOGS;"
    ));
    let client = sluice.client().await;
    create_connection(&client, &primary, "crm", &primary.user, &primary.password).await;
    client
        .batch_execute(
            "CREATE ETL JOB items_history FROM crm.shop.items INTO items_h CDC HISTORY CONTINUOUS \
             WITH (flush_interval = '1 second')",
        )
        .await
        .unwrap();
    let streamed = async |maria: &MariaDb, step: &str| {
        for _ in 0..300 {
            if client
                .simple_query("SELECT 1 FROM warehouse.items_h_current")
                .await
                .is_ok()
                && warehouse(&client, "items_h_current").await == source(maria)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{step}: the stream did not catch up with {:?}", source(maria));
    };
    streamed(&primary, "the first load").await;
    primary.sql("UPDATE items SET name = 'a2' WHERE id = 1; INSERT INTO items VALUES (3, 'c', 3, 3.00, NULL);");
    streamed(&primary, "changes on the primary").await;

    replica.catch_up_with(&primary);
    primary.stop();
    replica.sql("STOP SLAVE; RESET SLAVE ALL;");
    repoint(&client, &replica).await;
    replica.sql("UPDATE items SET name = 'a3' WHERE id = 1; DELETE FROM items WHERE id = 2;");
    streamed(&replica, "changes on the new primary").await;
    assert_history_applied_once(&client).await;
    assert_eq!(history_rows(&client).await, 2 + 2 + 2, "each change once");
}

/// The GTID state in the committed position of warehouse table `table`'s
/// latest manifest, after `edit` (which takes and returns its text).
pub(crate) fn edit_committed_gtid(data_dir: &std::path::Path, table: &str, edit: impl Fn(&str) -> String) -> String {
    let (latest, mut manifest) = latest_manifest(data_dir, table);
    let mut position: serde_json::Value = serde_json::from_str(manifest["watermark"].as_str().unwrap()).unwrap();
    let gtid = position["my_sql"]["gtid"].as_str().unwrap().to_owned();
    let edited = edit(&gtid);
    if edited != gtid {
        position["my_sql"]["gtid"] = edited.clone().into();
        manifest["watermark"] = position.to_string().into();
        std::fs::write(&latest, serde_json::to_vec(&manifest).unwrap()).unwrap();
    }
    edited
}

/// Positions committed by a Sluice from before whole GTID states hold the
/// GTID of their last transaction only. With changes in two domains, the
/// next run completes the state from the server that wrote it
/// (`BINLOG_GTID_POS`) rather than read the other domain's changes again,
/// and commits the whole state, ready for a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_builds_position_of_one_transaction_is_completed_from_the_server() {
    let primary = MariaDb::start();
    let mut sluice = Sluice::start();
    let client = setup(&primary, &sluice).await;
    run_both(&client).await;
    // Domain 1's change, then domain 0's: the last transaction is in 0.
    primary.sql(
        "SET SESSION gtid_domain_id = 1; UPDATE items SET qty = 20 WHERE id = 2; \
         SET SESSION gtid_domain_id = 0; UPDATE items SET name = 'a2' WHERE id = 1;",
    );
    run_both(&client).await;
    let loaded = history_rows(&client).await;
    drop(client);
    sluice.terminate();
    // What the older build committed: the last transaction's GTID.
    for table in ["items_m", "items_h"] {
        let last_only = edit_committed_gtid(sluice.data_dir(), table, |whole| {
            assert_eq!(whole.split(',').count(), 2, "{table}: a state of two domains: {whole}");
            whole.split(',').find(|gtid| gtid.starts_with("0-")).unwrap().to_owned()
        });
        assert!(!last_only.contains(','), "{last_only}");
    }
    sluice.restart();
    let client = sluice.client().await;

    primary.sql(
        "UPDATE items SET qty = 30 WHERE id = 2; \
         SET SESSION gtid_domain_id = 1; UPDATE items SET qty = 31 WHERE id = 3;",
    );
    run_both(&client).await;
    assert_equal(&primary, &client, "a run from an older build's position").await;
    assert_history_applied_once(&client).await;
    assert_eq!(
        history_rows(&client).await,
        loaded + 2,
        "domain 1's change before the older build's commit is not read again"
    );
    for table in ["items_m", "items_h"] {
        let whole = edit_committed_gtid(sluice.data_dir(), table, str::to_owned);
        assert_eq!(whole.split(',').count(), 2, "{table} commits the whole state: {whole}");
    }
}
