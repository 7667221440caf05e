//! `WITH (parallelism = n)` on MySQL/MariaDB, against a real MariaDB: n
//! `SELECT` streams over key ranges, all in one snapshot taken while the
//! table is frozen for a moment (`LOCK TABLES ... READ`), load exactly the
//! rows a serial run loads; transfers committed while the streams open
//! never show half; writers wait only while the streams open.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use futures::TryStreamExt;
use mysql_async::prelude::Queryable;
use sluice_engine::contract::{ScanRequest, Source, SourceError, TableDescription, TableRef};

use crate::job_ops::{detail, explain};
use crate::parallel::difference;
use crate::source_mysql::Connections;

/// Accounts whose balances always add up to [`TOTAL`].
const ACCOUNTS: u32 = 2000;
const TOTAL: i64 = ACCOUNTS as i64 * 100;

async fn mysql(maria: &MariaDb) -> mysql_async::Conn {
    mysql_async::Conn::new(mysql_async::Opts::from_url(&maria.url()).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_mariadb_runs_load_exactly_what_serial_runs_load() {
    let maria = MariaDb::start();
    // Skewed, negative and sparse keys; NULLs in other columns; a table
    // whose only integer is its NOT NULL cursor.
    maria.sql_db(
        "shop",
        "CREATE TABLE orders (id bigint PRIMARY KEY, note varchar(20), amount decimal(12,2), at datetime(6) NOT NULL); \
         INSERT INTO orders SELECT n * n, IF(n % 5 = 0, NULL, CONCAT('n', n)), n * 0.5, \
           TIMESTAMP '2024-01-01 00:00:00' + INTERVAL n MINUTE FROM (SELECT seq AS n FROM seq_1_to_3000) g; \
         INSERT INTO orders SELECT -n, NULL, NULL, TIMESTAMP '2023-06-01 00:00:00' + INTERVAL n MINUTE FROM (SELECT seq AS n FROM seq_1_to_500) g; \
         CREATE TABLE logs (seq int NOT NULL, msg varchar(20)); \
         INSERT INTO logs SELECT n DIV 3, CONCAT('m', n) FROM (SELECT seq AS n FROM seq_1_to_9000) g; \
         SET GLOBAL general_log_file = 'general.log', GLOBAL general_log = 1;",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB serial FROM crm.shop.orders INTO warehouse.serial SNAPSHOT; \
             CREATE ETL JOB par FROM crm.shop.orders INTO warehouse.par SNAPSHOT WITH (parallelism = 4, batch_rows = 100); \
             CREATE ETL JOB par_inc FROM crm.shop.orders INTO warehouse.par_inc INCREMENTAL BY at ALL WITH (parallelism = 3); \
             CREATE ETL JOB logs_serial FROM crm.shop.logs INTO warehouse.logs_serial INCREMENTAL BY seq ALL; \
             CREATE ETL JOB logs_par FROM crm.shop.logs INTO warehouse.logs_par INCREMENTAL BY seq ALL WITH (parallelism = 16);",
            maria.port
        ))
        .await
        .unwrap();
    let plan = explain(&client, "par").await;
    let last = detail(&plan, "source query 4/4");
    assert!(last.contains("WHERE `id` >= "), "{plan:#?}");
    for job in ["serial", "par", "par_inc", "logs_serial", "logs_par"] {
        let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
        assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    }
    let log = std::fs::read_to_string(maria.dir.join("data").join("general.log")).unwrap();
    assert_eq!(
        log.matches("LOCK TABLES `shop`.`orders` READ").count(),
        2,
        "one freeze per parallel run of orders:\n{log}"
    );
    assert_eq!(
        log.matches("START TRANSACTION WITH CONSISTENT SNAPSHOT").count(),
        4 + 3 + 16,
        "one snapshot per range"
    );
    assert!(log.contains("UNLOCK TABLES"), "the table is thawed");
    assert!(
        log.contains("WHERE `seq` < "),
        "ranges of the cursor when there is no key"
    );
    let same = |n: &str| [Some("0".into()), Some("0".into()), Some(n.into()), Some(n.into())];
    assert_eq!(difference(&client, "serial", "par").await, same("3500"));
    assert_eq!(difference(&client, "serial", "par_inc").await, same("3500"));
    assert_eq!(difference(&client, "logs_serial", "logs_par").await, same("9000"));

    // The next incremental runs: the new rows, and the serial run's window.
    maria.sql_db(
        "shop",
        "INSERT INTO logs SELECT 3000 + n, 'new' FROM (SELECT seq AS n FROM seq_1_to_10) g;",
    );
    let serial = rows(&client, "RUN ETL JOB logs_serial").await;
    let parallel = rows(&client, "RUN ETL JOB logs_par").await;
    assert_eq!(parallel[0][2].as_deref(), Some("10"));
    assert_eq!(serial[0][5..], parallel[0][5..], "same window");
    assert_eq!(difference(&client, "logs_serial", "logs_par").await, same("9010"));

    // A user who may not lock the table is told which grant it needs.
    maria.sql(
        "CREATE USER 'reader'@'%' IDENTIFIED BY 'reader_pw_1'; GRANT SELECT ON shop.* TO 'reader'@'%'; \
         CREATE USER 'reader'@'localhost' IDENTIFIED BY 'reader_pw_1'; GRANT SELECT ON shop.* TO 'reader'@'localhost';",
    );
    client
        .batch_execute(&format!(
            "CREATE CONNECTION ro TYPE mariadb OPTIONS (host '127.0.0.1', port {}, user 'reader', password 'reader_pw_1'); \
             CREATE ETL JOB ro_par FROM ro.shop.orders INTO warehouse.ro_par SNAPSHOT WITH (parallelism = 2, max_retries = 0);",
            maria.port
        ))
        .await
        .unwrap();
    let message = expect_err(&client, "RUN ETL JOB ro_par", "42501").await;
    assert!(message.contains("GRANT LOCK TABLES ON `shop`.*"), "{message}");
    assert!(!message.contains("reader_pw_1"), "{message}");
}

/// Table `accounts` of [`ACCOUNTS`] rows of balance 100, the MariaDB
/// source it is read from (with the connections that keep it), and its
/// description.
async fn accounts(maria: &MariaDb) -> (Connections, Arc<dyn Source>, TableDescription) {
    maria.sql_db(
        "shop",
        &format!(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL); \
             INSERT INTO accounts SELECT n, 100 FROM (SELECT seq AS n FROM seq_1_to_{ACCOUNTS}) g;"
        ),
    );
    let connections = Connections::new();
    let source = connections.source("maria", "mariadb", maria.port, None).await;
    let table = TableRef {
        schema: "shop".into(),
        name: "accounts".into(),
    };
    let description = source.describe(&table).await.unwrap();
    (connections, source, description)
}

/// The sum of the balances a stream reads, and its rows.
async fn sum(stream: datafusion::execution::SendableRecordBatchStream) -> (i64, usize) {
    let batches: Vec<_> = stream.try_collect().await.unwrap();
    let mut total = 0;
    let mut count = 0;
    for batch in batches {
        let balances = batch
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int32Array>()
            .unwrap();
        total += balances.iter().map(|b| i64::from(b.unwrap())).sum::<i64>();
        count += batch.num_rows();
    }
    (total, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_of_a_parallel_read_sees_the_same_moment() {
    let maria = MariaDb::start();
    let (_connections, source, description) = accounts(&maria).await;
    let request = ScanRequest::every_column(&description);

    // Transfers between the first and the last quarter of the keys, one
    // transaction each, as fast as they commit.
    let stop = Arc::new(AtomicBool::new(false));
    let transfers = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, transfers) = (stop.clone(), transfers.clone());
        let mut conn = mysql(&maria).await;
        tokio::spawn(async move {
            let mut n: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_add(7919);
                let (from, to) = (1 + n % (ACCOUNTS / 4), ACCOUNTS - n % (ACCOUNTS / 4));
                conn.query_drop(format!(
                    "START TRANSACTION; UPDATE accounts SET balance = balance - 1 WHERE id = {from}; \
                     UPDATE accounts SET balance = balance + 1 WHERE id = {to}; COMMIT"
                ))
                .await
                .unwrap();
                transfers.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Each round starts once more transfers have committed since the last
    // one (so every read freezes another moment of a table being written);
    // whether a transfer also lands while the streams read is up to the
    // scheduler, so it is not asserted.
    let mut seen = 0;
    for round in 0..15 {
        while transfers.load(Ordering::Relaxed) < seen + 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen = transfers.load(Ordering::Relaxed);
        let stream = source.scan_parallel(&description, &request, 0, 4).await.unwrap();
        let (total, count) = sum(stream).await;
        assert_eq!(
            (total, count),
            (TOTAL, ACCOUNTS as usize),
            "round {round}: four streams, one moment"
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_wait_only_while_the_parts_open_their_snapshots() {
    let maria = MariaDb::start();
    let (_connections, source, description) = accounts(&maria).await;
    let request = ScanRequest::every_column(&description);
    let mut writer = mysql(&maria).await;
    writer.query_drop("SET SESSION lock_wait_timeout = 1").await.unwrap();
    let deposit = "UPDATE accounts SET balance = balance + 1000 WHERE id = 1";

    // Planned: the table is frozen until the parts open their snapshots.
    let split = source.split_scan(&description, &request, Some(0), 3).await.unwrap();
    assert_eq!(split.parts.len(), 3);
    let refused = writer.query_drop(deposit).await.unwrap_err();
    assert!(refused.to_string().contains("Lock wait timeout"), "{refused}");
    let mut streams = Vec::new();
    for part in &split.parts {
        let stream = source
            .scan_part(&description, &part.request, part.snapshot.as_deref())
            .await;
        streams.push(stream.unwrap());
        if streams.len() == 1 {
            // A part read a second time, while its first reader holds it,
            // is refused (the freeze waits for the other parts).
            let twice = source
                .scan_part(&description, &part.request, part.snapshot.as_deref())
                .await
                .err()
                .expect("refused");
            assert!(
                matches!(&twice, SourceError::Query { code: Some(c), message }
                    if c == "40001" && message.contains("already being read")),
                "{twice:?}"
            );
            let refused = writer.query_drop(deposit).await.unwrap_err();
            assert!(
                refused.to_string().contains("Lock wait timeout"),
                "still frozen: {refused}"
            );
        }
    }

    // Every part has joined: the table thaws while they still read.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = writer.query_drop(deposit).await {
        assert!(std::time::Instant::now() < deadline, "still frozen: {e}");
    }
    let mut read = (0, 0);
    for stream in streams {
        let (total, count) = sum(stream).await;
        read = (read.0 + total, read.1 + count);
    }
    assert_eq!(read, (TOTAL, ACCOUNTS as usize), "the parts read the frozen moment");

    // Parts that open in waves: a finished part counts as joined, and the
    // table thaws once the last has opened (long before the 30 s limit).
    let waves = source.split_scan(&description, &request, Some(0), 3).await.unwrap();
    let first = &waves.parts[0];
    let first = source
        .scan_part(&description, &first.request, first.snapshot.as_deref())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = sum(first.unwrap()).await;
    assert!(writer.query_drop(deposit).await.is_err(), "frozen until the last wave");
    let mut rest = Vec::new();
    for part in &waves.parts[1..] {
        rest.push(
            source
                .scan_part(&description, &part.request, part.snapshot.as_deref())
                .await
                .unwrap(),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = writer.query_drop(deposit).await {
        assert!(
            std::time::Instant::now() < deadline,
            "still frozen after the last wave: {e}"
        );
    }
    drop((rest, waves));

    // A part that starts after its freeze ended cannot read that moment.
    let late = source.split_scan(&description, &request, Some(0), 2).await.unwrap();
    let part = late.parts[1].clone();
    drop(late);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while writer.query_drop(deposit).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the dropped freeze thaws");
    }
    let error = source
        .scan_part(&description, &part.request, part.snapshot.as_deref())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&error, SourceError::Query { code: Some(c), message } if c == "40001" && message.contains("after the table's freeze ended")),
        "{error:?}"
    );
    assert!(error.is_transient(), "the run is retried");
}
