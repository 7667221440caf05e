//! Opt-in: MySQL CDC with GTIDs against a real MySQL 8 server, which
//! cannot be installed where Sluice is built (docs/cdc.md, "Failover").
//! Runs only when `SLUICE_MYSQL_TEST_URL` is set, as
//! `mysql://user:password@host:port`: a server with `gtid_mode = ON`,
//! `enforce_gtid_consistency = ON` and `binlog_format = ROW`, and a user
//! that may create and drop databases and has `REPLICATION SLAVE`,
//! `REPLICATION CLIENT` and `RELOAD`; otherwise it prints a notice and
//! passes. It creates its own database (`sluice_live_<pid>`) and drops it
//! at the end.
//!
//! What it covers that only a MySQL server can: the first load's
//! `@@gtid_executed` under the lock, streams resumed by
//! `COM_BINLOG_DUMP_GTID` from the committed set (with heartbeats over
//! the transactions it passes over), GTID events merged into the set, and
//! an older build's position of one GTID completed from `SHOW BINLOG
//! EVENTS`.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Value};

use crate::cdc_failover::{edit_committed_gtid, history_rows};
use crate::cdc_mysql::{ITEMS, assert_history_applied_once, run_both, warehouse};
use crate::common::*;

/// The source table's rows, as text (NULL as `None`).
async fn source(conn: &mut Conn) -> Vec<Vec<Option<String>>> {
    let rows: Vec<mysql_async::Row> = conn
        .query("SELECT id, name, qty, price, kind FROM items ORDER BY id")
        .await
        .unwrap();
    rows.into_iter()
        .map(|row| {
            row.unwrap()
                .into_iter()
                .map(|value| match value {
                    Value::NULL => None,
                    Value::Bytes(bytes) => Some(String::from_utf8(bytes).unwrap()),
                    other => Some(other.as_sql(true)),
                })
                .collect()
        })
        .collect()
}

async fn assert_equal(conn: &mut Conn, client: &tokio_postgres::Client, step: &str) {
    let expected = source(conn).await;
    assert_eq!(warehouse(client, "items_m").await, expected, "MERGE after {step}");
    assert_eq!(
        warehouse(client, "items_h_current").await,
        expected,
        "HISTORY's current view after {step}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cdc_resumes_by_gtid_set_against_a_real_server() {
    let Ok(url) = std::env::var("SLUICE_MYSQL_TEST_URL") else {
        eprintln!(
            "skipped: set SLUICE_MYSQL_TEST_URL=mysql://user:password@host:port (MySQL 8, gtid_mode = ON) to run \
             the live MySQL GTID test"
        );
        return;
    };
    let opts = Opts::from_url(&url).expect("SLUICE_MYSQL_TEST_URL is mysql://user:password@host:port");
    let database = format!("sluice_live_{}", std::process::id());
    let mut admin = Conn::new(opts.clone()).await.unwrap();
    admin
        .query_drop(format!(
            "DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database}"
        ))
        .await
        .unwrap();
    let mut conn = Conn::new(mysql_async::OptsBuilder::from_opts(opts.clone()).db_name(Some(database.clone())))
        .await
        .unwrap();
    conn.query_drop(format!(
        "{ITEMS} INSERT INTO items VALUES (1, 'a', 1, 1.50, 'small'), (2, 'b', 2, 2.00, 'large'), \
         (3, NULL, NULL, NULL, NULL);"
    ))
    .await
    .unwrap();

    let mut sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mysql OPTIONS (host '{}', port {}, database '{database}', user '{}', \
             password '{}'); \
             CREATE ETL JOB items_merge FROM crm.{database}.items INTO items_m CDC MERGE; \
             CREATE ETL JOB items_history FROM crm.{database}.items INTO items_h CDC HISTORY;",
            opts.ip_or_hostname(),
            opts.tcp_port(),
            opts.user().unwrap_or("root"),
            opts.pass().unwrap_or(""),
        ))
        .await
        .unwrap();
    run_both(&client).await;
    assert_equal(&mut conn, &client, "the first load").await;
    for table in ["items_m", "items_h"] {
        let set = edit_committed_gtid(sluice.data_dir(), table, str::to_owned);
        assert!(set.contains(':'), "{table}: the first load's @@gtid_executed: {set}");
    }
    let loaded = history_rows(&client).await;

    // Streamed from the committed set (COM_BINLOG_DUMP_GTID).
    conn.query_drop(
        "UPDATE items SET name = 'a2' WHERE id = 1; \
         START TRANSACTION; INSERT INTO items VALUES (4, 'd', 4, 4.00, 'small'); DELETE FROM items WHERE id = 3; COMMIT;",
    )
    .await
    .unwrap();
    run_both(&client).await;
    assert_equal(&mut conn, &client, "changes streamed by GTID set").await;
    assert_history_applied_once(&client).await;
    assert_eq!(history_rows(&client).await, loaded + 3);
    conn.query_drop("UPDATE items SET qty = 40 WHERE id = 4").await.unwrap();
    run_both(&client).await;
    assert_equal(&mut conn, &client, "a second stream by GTID set").await;
    assert_eq!(history_rows(&client).await, loaded + 4);

    // An older build's position: its last transaction's GTID only.
    let server: String = admin.query_first("SELECT @@server_uuid").await.unwrap().unwrap();
    drop(client);
    sluice.terminate();
    for table in ["items_m", "items_h"] {
        edit_committed_gtid(sluice.data_dir(), table, |set| {
            let own = set
                .split(',')
                .find(|entry| entry.starts_with(&server))
                .expect("the server's own GTIDs");
            let last = own.rsplit([':', '-']).next().unwrap();
            format!("{server}:{last}")
        });
    }
    sluice.restart();
    let client = sluice.client().await;
    conn.query_drop("UPDATE items SET qty = 41 WHERE id = 4").await.unwrap();
    run_both(&client).await;
    assert_equal(&mut conn, &client, "a run from an older build's position").await;
    assert_history_applied_once(&client).await;
    assert_eq!(
        history_rows(&client).await,
        loaded + 5,
        "no earlier transaction read again"
    );

    admin.query_drop(format!("DROP DATABASE {database}")).await.unwrap();
}
