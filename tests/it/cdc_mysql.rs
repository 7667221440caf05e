//! CDC jobs from MySQL/MariaDB (issue #22) end to end: `CREATE ETL JOB ...
//! CDC [MERGE | HISTORY]` from a real MariaDB 10.11 with the row-based
//! binlog into the warehouse of a real sluice, through a real client. The
//! first run reads the table in a consistent snapshot at known binlog
//! coordinates; each later run drains the binlog up to the head it saw
//! when it began: inserts, updates, a primary-key change, deletes, NULLs,
//! a multi-statement transaction, TRUNCATE, and every common column type
//! (a row loaded by the first load and the same row streamed from the
//! binlog must come out alike). Rows changed while the first load reads
//! are neither lost nor applied twice; a kill -9 between the destination
//! commit and the end of the run, or at several moments of large drains,
//! then a re-run, leaves the destination equal to the source. The
//! CREATE-time checks refuse before anything is saved. A continuous
//! stream reads the binlog head for its beats on one kept connection,
//! replaced when it is killed. Continuous jobs streaming through a random
//! workload, ten kill -9s and three binlog connection cuts equal the
//! source.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio_postgres::Client;

use crate::cdc_continuous::Rng;
use crate::common::*;

pub(crate) const ITEMS: &str = "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(50), qty int, price decimal(10,2), \
                     kind enum('small','large')) ENGINE=InnoDB;";

pub(crate) async fn create_connection(client: &Client, maria: &MariaDb, name: &str, user: &str, password: &str) {
    client
        .batch_execute(&format!(
            "CREATE CONNECTION {name} TYPE mariadb OPTIONS (host '127.0.0.1', port {}, database 'shop', \
             user '{user}', password '{password}')",
            maria.port
        ))
        .await
        .unwrap();
}

pub(crate) async fn setup(maria: &MariaDb, sluice: &Sluice) -> Client {
    maria.sql(&format!(
        "{ITEMS} INSERT INTO items VALUES (1, 'a', 1, 1.50, 'small'), (2, 'b', 2, 2.00, 'large'), \
         (3, NULL, NULL, NULL, NULL);"
    ));
    let client = sluice.client().await;
    create_connection(&client, maria, "crm", &maria.user, &maria.password).await;
    client
        .batch_execute(
            "CREATE ETL JOB items_merge FROM crm.shop.items INTO items_m CDC MERGE; \
             CREATE ETL JOB items_history FROM crm.shop.items INTO items_h CDC HISTORY;",
        )
        .await
        .unwrap();
    client
}

/// The source's rows, as text (NULL as `None`).
pub(crate) fn source(maria: &MariaDb) -> Vec<Vec<Option<String>>> {
    maria_rows(maria, "SELECT id, name, qty, price, kind FROM items ORDER BY id")
}

/// The rows `sql` returns at the source, as text (NULL as `None`).
pub(crate) fn maria_rows(maria: &MariaDb, sql: &str) -> Vec<Vec<Option<String>>> {
    maria
        .sql(sql)
        .lines()
        .map(|line| line.split('\t').map(|v| (v != "NULL").then(|| v.to_owned())).collect())
        .collect()
}

pub(crate) async fn warehouse(client: &Client, table: &str) -> Vec<Vec<Option<String>>> {
    rows(
        client,
        &format!("SELECT id, name, qty, price, kind FROM warehouse.{table} ORDER BY id"),
    )
    .await
}

pub(crate) async fn run(client: &Client, job: &str) {
    if let Err(e) = client.simple_query(&format!("RUN ETL JOB {job}")).await {
        panic!("RUN ETL JOB {job}: {e:?}");
    }
}

pub(crate) async fn run_both(client: &Client) {
    run(client, "items_merge").await;
    run(client, "items_history").await;
}

pub(crate) async fn assert_equal(maria: &MariaDb, client: &Client, step: &str) {
    let expected = source(maria);
    assert_eq!(warehouse(client, "items_m").await, expected, "MERGE after {step}");
    assert_eq!(
        warehouse(client, "items_h_current").await,
        expected,
        "HISTORY's current view after {step}"
    );
}

/// No transaction of the history was applied twice: every streamed change
/// row has its own position (the first load's rows share the first one).
pub(crate) async fn assert_history_applied_once(client: &Client) {
    let repeated = rows(
        client,
        "SELECT _sluice_position, count(*) FROM warehouse.items_h GROUP BY _sluice_position \
         HAVING count(*) > 1 AND _sluice_position > (SELECT min(_sluice_position) FROM warehouse.items_h)",
    )
    .await;
    assert!(repeated.is_empty(), "change rows applied twice: {repeated:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cdc_jobs_follow_every_change_shape_in_both_modes() {
    let maria = MariaDb::start();
    let sluice = Sluice::start();
    let client = setup(&maria, &sluice).await;

    run_both(&client).await;
    assert_equal(&maria, &client, "the first load").await;
    assert_eq!(warehouse(&client, "items_m").await.len(), 3);

    maria.sql(
        "INSERT INTO items VALUES (4, 'd', 4, 4.25, 'small'); \
         UPDATE items SET name = 'a2' WHERE id = 1; \
         UPDATE items SET id = 20, qty = 22 WHERE id = 2; \
         DELETE FROM items WHERE id = 3; \
         BEGIN; INSERT INTO items VALUES (5, 'e', NULL, NULL, NULL); UPDATE items SET qty = 55, kind = 'large' \
         WHERE id = 5; UPDATE items SET qty = 44 WHERE id = 4; COMMIT;",
    );
    run_both(&client).await;
    assert_equal(&maria, &client, "inserts, updates, a key change and a delete").await;
    assert_eq!(
        rows(
            &client,
            "SELECT _sluice_op, count(*) FROM warehouse.items_h GROUP BY _sluice_op ORDER BY _sluice_op"
        )
        .await,
        [
            [Some("delete".to_owned()), Some("2".to_owned())],
            [Some("insert".to_owned()), Some("6".to_owned())],
            [Some("update".to_owned()), Some("3".to_owned())],
        ],
        "3 first-load rows, then 3 inserts (one the key change's), 3 updates, 2 deletes (one the key change's)"
    );
    assert_history_applied_once(&client).await;

    // The binlog behind the committed position, as measured at the end.
    let lag = rows(
        &client,
        "SELECT name, lag_bytes FROM sluice.jobs WHERE name LIKE 'items_%' ORDER BY name",
    )
    .await;
    assert_eq!(lag.len(), 2);
    for row in &lag {
        let bytes: u64 = row[1].as_deref().expect("lag_bytes of a CDC job").parse().unwrap();
        assert!(bytes < 1 << 20, "{row:?}");
    }

    // Nothing new: the run ends at the binlog head it saw, changing nothing.
    run_both(&client).await;
    assert_equal(&maria, &client, "an idle run").await;

    // Other tables' transactions and a new binlog file are passed over.
    maria.sql(
        "CREATE TABLE other (id int PRIMARY KEY); INSERT INTO other VALUES (1); FLUSH BINARY LOGS; \
         UPDATE items SET qty = 45 WHERE id = 4;",
    );
    run_both(&client).await;
    assert_equal(&maria, &client, "a rotated binlog").await;

    maria.sql("TRUNCATE TABLE items; INSERT INTO items VALUES (30, 'z', 3, 0.01, 'large');");
    run_both(&client).await;
    assert_equal(&maria, &client, "TRUNCATE").await;
    assert_eq!(warehouse(&client, "items_m").await.len(), 1);
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM warehouse.items_h WHERE _sluice_op = 'truncate'"
        )
        .await,
        "1"
    );
    assert_history_applied_once(&client).await;
}

/// Every common type, in a row the first load reads and in the same row
/// streamed from the binlog: Sluice must load both alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_values_load_like_the_first_loads() {
    const COLUMNS: &str = "u, b, ti, mi, si, bo, d, dt, ts, tn, t6, y, bt, b1, e, s, dec1, big, f, db, ch, bin, vb, \
                           tx, j, g";
    let maria = MariaDb::start();
    maria.sql(
        "CREATE TABLE types (id int PRIMARY KEY, u int unsigned, b bigint unsigned, ti tinyint unsigned, \
         mi mediumint unsigned, si smallint, bo tinyint(1), d date, dt datetime(6), ts timestamp(3) NULL, tn time, \
         t6 time(6), y year, bt bit(5), b1 bit(1), e enum('small','it''s'), s set('a','b','c'), dec1 decimal(12,2), \
         big decimal(30,10), f float, db double, ch char(5), bin binary(4), vb varbinary(10), tx text, j json, \
         g point);",
    );
    let values = "4294967295, 18446744073709551615, 255, 16777215, -32768, 1, '2024-02-29', \
                  '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.123', '-12:30:00', '-01:02:03.000004', 0, \
                  b'10101', b'1', 'it''s', 'a,c', '-123.45', '-12345678901234567890.0123456789', 1.5, 2.25, 'ab  ', \
                  'x', 'y\\0z', 'héllo 😀', '{\"a\": [1, 2.5]}', POINT(1, 2)";
    let nulls = vec!["NULL"; 26].join(", ");
    maria.sql(&format!("INSERT INTO types VALUES (1, {values}), (2, {nulls});"));
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_connection(&client, &maria, "crm", &maria.user, &maria.password).await;
    client
        .batch_execute("CREATE ETL JOB types_cdc FROM crm.shop.types INTO types_m CDC")
        .await
        .unwrap();
    run(&client, "types_cdc").await;
    maria.sql(&format!(
        "INSERT INTO types VALUES (101, {values}), (102, {nulls}); UPDATE types SET e = 'small', y = 2024 WHERE id = 2;"
    ));
    run(&client, "types_cdc").await;
    let row = async |id: u32| {
        rows(
            &client,
            &format!("SELECT {COLUMNS} FROM warehouse.types_m WHERE id = {id}"),
        )
        .await
    };
    let snapshot = row(1).await;
    assert_eq!(row(101).await, snapshot, "the same values, streamed");
    assert_eq!(row(102).await, [vec![None; 26]], "NULLs, streamed");
    let first = &snapshot[0];
    assert_eq!(first[0].as_deref(), Some("4294967295"), "{first:?}");
    assert_eq!(first[1].as_deref(), Some("18446744073709551615"));
    assert_eq!(first[9].as_deref(), Some("-12:30:00"));
    assert_eq!(first[10].as_deref(), Some("-01:02:03.000004"));
    assert_eq!(first[14].as_deref(), Some("it's"));
    assert_eq!(first[15].as_deref(), Some("a,c"));
    assert_eq!(
        rows(&client, "SELECT e, y FROM warehouse.types_m WHERE id = 2").await,
        [[Some("small".to_owned()), Some("2024".to_owned())]]
    );
}

/// Rows keep changing while the first load reads the table: every key's
/// history counts up by one per update from the value the first load saw,
/// with no update lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_during_the_first_load_are_neither_lost_nor_applied_twice() {
    let maria = MariaDb::start();
    maria.sql(
        "CREATE TABLE counters (id int PRIMARY KEY, v int NOT NULL, pad varchar(200)); \
         INSERT INTO counters SELECT seq, 0, repeat('p', 200) FROM seq_1_to_30000;",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_connection(&client, &maria, "crm", &maria.user, &maria.password).await;
    client
        .batch_execute(
            "CREATE ETL JOB counters_h FROM crm.shop.counters (id, v) INTO counters_h CDC HISTORY; \
             CREATE ETL JOB counters_m FROM crm.shop.counters (id, v) INTO counters_m CDC MERGE;",
        )
        .await
        .unwrap();
    // One writer, many small transactions, while both first loads read.
    let mut script = String::new();
    for i in 0..1500 {
        let id = 1 + (i * 7919) % 30000;
        script.push_str(&format!("UPDATE counters SET v = v + 1 WHERE id = {id};\n"));
        if i % 10 == 0 {
            script.push_str(&format!("INSERT INTO counters VALUES ({}, 0, 'new');\n", 40000 + i));
        }
        if i % 10 == 0 {
            script.push_str("DO SLEEP(0.01);\n");
        }
        if i % 25 == 0 {
            script.push_str(&format!("DELETE FROM counters WHERE id = {};\n", 29000 + i / 25));
        }
    }
    let writer = {
        let socket = maria.socket();
        std::thread::spawn(move || {
            let mut cli = std::process::Command::new("mariadb");
            cli.args(["--no-defaults", "-u", "root", "shop"])
                .arg(format!("--socket={}", socket.display()));
            let out = run_with_stdin(&mut cli, &script);
            assert!(out.status.success(), "{}", output_text(&out));
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    run(&client, "counters_h").await;
    run(&client, "counters_m").await;
    writer.join().unwrap();
    run(&client, "counters_h").await;
    run(&client, "counters_m").await;

    let expected: Vec<Vec<Option<String>>> = maria
        .sql("SELECT id, v FROM counters ORDER BY id")
        .lines()
        .map(|line| line.split('\t').map(|v| Some(v.to_owned())).collect())
        .collect();
    assert_eq!(
        rows(&client, "SELECT id, v FROM warehouse.counters_m ORDER BY id").await,
        expected,
        "MERGE"
    );
    assert_eq!(
        rows(&client, "SELECT id, v FROM warehouse.counters_h_current ORDER BY id").await,
        expected,
        "HISTORY's current view"
    );
    // Per key, in log order: each update is the value before plus one.
    let broken = rows(
        &client,
        "SELECT id, _sluice_op, v, previous FROM ( \
           SELECT id, _sluice_op, v, lag(v) OVER (PARTITION BY id ORDER BY _sluice_position) AS previous, \
                  lag(_sluice_op) OVER (PARTITION BY id ORDER BY _sluice_position) AS previous_op \
           FROM warehouse.counters_h) AS h \
         WHERE (_sluice_op = 'update' AND (previous IS NULL OR v <> previous + 1)) \
            OR (_sluice_op = 'insert' AND previous_op IS NOT NULL) \
         LIMIT 5",
    )
    .await;
    assert!(
        broken.is_empty(),
        "histories with a lost or repeated change: {broken:?}"
    );
    let changed: u64 = one(
        &client,
        "SELECT count(*) FROM warehouse.counters_h WHERE _sluice_op = 'update'",
    )
    .await
    .parse()
    .unwrap();
    assert!(changed > 0, "some updates were streamed after the first load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_a_destination_commit_then_rerun_equals_the_source() {
    let maria = MariaDb::start();
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "cdc_after_batch_commit")]);
    let client = setup(&maria, &sluice).await;
    // The first loads commit no change batch: no failpoint.
    run_both(&client).await;
    maria.sql(
        "UPDATE items SET name = 'a2' WHERE id = 1; DELETE FROM items WHERE id = 2; \
               INSERT INTO items VALUES (7, 'g', 7, 7.00, 'small');",
    );
    sluice.run_into_failpoint(&client, "RUN ETL JOB items_history").await;
    let client = sluice.restart_without_failpoints().await;
    // The batch is committed; the re-run streams the transactions again
    // from before them and skips those the destination holds.
    run_both(&client).await;
    assert_equal(&maria, &client, "a kill after the commit").await;
    assert_eq!(
        one(&client, "SELECT count(*) FROM warehouse.items_h").await,
        "6",
        "3 first-load rows and 3 changes, none applied twice"
    );
    maria.sql("UPDATE items SET qty = 100 WHERE id = 7;");
    run_both(&client).await;
    assert_equal(&maria, &client, "a later change").await;
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.items_h").await, "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_point_of_a_drain_then_rerun_equals_the_source() {
    let maria = MariaDb::start();
    let mut sluice = Sluice::start();
    let mut client = setup(&maria, &sluice).await;
    run_both(&client).await;
    for (round, delay_ms) in [50u64, 300, 800, 1500].into_iter().enumerate() {
        // A large transaction, then many small ones: the drain commits
        // several micro-batches.
        let base = 100 + round * 10_000;
        let mut script = format!(
            "INSERT INTO items SELECT seq, concat('n', seq), seq, seq / 100, 'small' FROM seq_{base}_to_{};\n",
            base + 9_999
        );
        for i in 0..200 {
            script.push_str(&format!(
                "UPDATE items SET qty = qty + 1 WHERE id = {}; DELETE FROM items WHERE id = {};\n",
                base + i * 3,
                base + 1 + i * 3
            ));
        }
        maria.sql(&script);
        for job in ["items_history", "items_merge"] {
            rows(&client, &format!("RUN ETL JOB {job} ASYNC")).await;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            sluice.kill9();
            sluice.restart();
            client = sluice.client().await;
            let unsettled = rows(
                &client,
                "SELECT run_id FROM sluice.runs WHERE status IN ('running', 'queued')",
            )
            .await;
            assert!(unsettled.is_empty(), "round {round}: runs left running: {unsettled:?}");
        }
    }
    let interrupted: u64 = one(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE status = 'failed' AND error LIKE 'interrupted%'",
    )
    .await
    .parse()
    .unwrap();
    assert!(interrupted > 0, "the kills interrupted runs");
    run_both(&client).await;
    assert_equal(&maria, &client, "kill -9 at several points of drains").await;
    assert_history_applied_once(&client).await;
}

/// One source transaction of `statements` random changes to `items`
/// (inserts, updates, NULLs, deletes, key changes, each picking a row among
/// the first 50), as a script for [`MariaDb::sql`].
fn random_transaction(rng: &mut Rng, next_id: &mut i64, statements: u64) -> String {
    let mut script = String::from("START TRANSACTION;\n");
    for _ in 0..statements {
        let row = format!(
            "(SELECT id FROM (SELECT id FROM items ORDER BY id LIMIT 1 OFFSET {}) AS picked)",
            rng.below(50)
        );
        let statement = match rng.below(6) {
            0 | 1 => {
                *next_id += 1;
                let kind = ["'small'", "'large'", "NULL"][rng.below(3) as usize];
                format!(
                    "INSERT INTO items VALUES ({next_id}, 'n{next_id}', {}, {}.25, {kind})",
                    rng.below(1000),
                    rng.below(100)
                )
            }
            2 => format!("UPDATE items SET qty = coalesce(qty, 0) + 1, price = NULL WHERE id = {row}"),
            3 => format!("DELETE FROM items WHERE id = {row}"),
            4 => format!("UPDATE items SET name = NULL, kind = 'large' WHERE id = {row}"),
            _ => {
                *next_id += 1;
                format!("UPDATE items SET id = {next_id} WHERE id = {row}")
            }
        };
        script.push_str(&statement);
        script.push_str(";\n");
    }
    script.push_str("COMMIT;\n");
    script
}

/// Continuous `MERGE` and `HISTORY` jobs stream the binlog while a random
/// workload runs, in small transactions and in large ones; ten kill -9s of
/// the server at random moments (each followed by a restart) and three
/// cuts of the binlog connections at the source leave both tables equal to
/// the source, with no change applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_workload_streamed_through_kills_and_cuts_equals_the_source() {
    let maria = MariaDb::start();
    // A stream that fails while the killed one still reads is retried a
    // second later.
    let mut sluice = Sluice::start_with(&["--retry-delay", "1"], &[]);
    maria.sql(&format!(
        "{ITEMS} INSERT INTO items VALUES (1, 'a', 1, 1.50, 'small'), (2, 'b', 2, 2.00, 'large'), \
         (3, NULL, NULL, NULL, NULL);"
    ));
    let mut client = sluice.client().await;
    create_connection(&client, &maria, "crm", &maria.user, &maria.password).await;
    client
        .batch_execute(
            "CREATE ETL JOB items_merge FROM crm.shop.items INTO items_m CDC MERGE CONTINUOUS \
               WITH (flush_interval = '1 second'); \
             CREATE ETL JOB items_history FROM crm.shop.items INTO items_h CDC HISTORY CONTINUOUS \
               WITH (flush_interval = '1 second');",
        )
        .await
        .unwrap();
    until_streamed(&maria, &client, "the first load").await;
    let (mut rng, seed) = Rng::from_clock();
    let mut next_id = 100;
    for step in 0..13 {
        let burst = Duration::from_millis(200 + rng.below(1800));
        let started = std::time::Instant::now();
        while started.elapsed() < burst {
            let statements = match rng.below(10) {
                0 => 300,
                _ => 1 + rng.below(20),
            };
            maria.sql(&random_transaction(&mut rng, &mut next_id, statements));
        }
        if step % 4 == 3 {
            // The source ends the streams' binlog connections (as a network
            // cut would); they are retried.
            let dumps = maria.sql("SELECT id FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%'");
            let kills: String = dumps.lines().map(|id| format!("KILL {id};")).collect();
            if !kills.is_empty() {
                maria.sql(&kills);
            }
            println!(
                "cut {step} after {burst:?}: {} binlog connections",
                dumps.lines().count()
            );
        } else {
            sluice.kill9();
            println!("kill {step} after {burst:?}");
            sluice.restart();
            client = sluice.client().await;
        }
    }
    until_streamed(&maria, &client, &format!("ten kills and three cuts (seed {seed})")).await;
    assert_history_applied_once(&client).await;
}

/// Waits until both streamed tables equal the source.
async fn until_streamed(maria: &MariaDb, client: &Client, step: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let expected = source(maria);
        let ready = client
            .simple_query("SELECT 1 FROM warehouse.items_m, warehouse.items_h_current LIMIT 1")
            .await;
        if ready.is_ok()
            && warehouse(client, "items_m").await == expected
            && warehouse(client, "items_h_current").await == expected
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{step}: the streams did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A job whose binlog file was purged before it ran again cannot continue:
/// the run fails (`55000`), the job needs a resync, and `RESYNC ETL JOB`
/// takes a new snapshot and streams on from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_binlog_needs_a_resync_which_recovers() {
    let maria = MariaDb::start();
    let sluice = Sluice::start();
    let client = setup(&maria, &sluice).await;
    run_both(&client).await;
    maria.sql("UPDATE items SET name = 'a2' WHERE id = 1; DELETE FROM items WHERE id = 2;");
    // MariaDB keeps a file until InnoDB no longer needs it for crash
    // recovery (its binlog checkpoint): purge until the first file is gone.
    let first = maria.sql("SHOW BINARY LOGS;");
    let first = first.split('\t').next().unwrap().to_owned();
    for attempt in 0.. {
        maria.sql("FLUSH BINARY LOGS;");
        let head = maria.sql("SHOW MASTER STATUS;");
        let head = head.split('\t').next().unwrap();
        maria.sql(&format!("PURGE BINARY LOGS TO '{head}';"));
        if !maria.sql("SHOW BINARY LOGS;").contains(&first) {
            break;
        }
        assert!(attempt < 40, "{first} was not purged");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    resync_both_after(&client, "no longer on the source").await;
    assert_equal(&maria, &client, "a resync").await;
    maria.sql("INSERT INTO items VALUES (9, 'i', 9, 9.00, 'large');");
    run_both(&client).await;
    assert_equal(&maria, &client, "streaming after the resync").await;
}

/// Runs both jobs, which must fail with `55000` saying `why` and naming
/// `RESYNC ETL JOB`, show `needs resync`, and resyncs them.
pub(crate) async fn resync_both_after(client: &Client, why: &str) {
    for job in ["items_merge", "items_history"] {
        let message = expect_err(client, &format!("RUN ETL JOB {job}"), "55000").await;
        assert!(
            message.contains(why) && message.contains(&format!("RESYNC ETL JOB {job}")),
            "{message}"
        );
        assert_eq!(
            one(
                client,
                &format!("SELECT cdc_state FROM sluice.jobs WHERE name = '{job}'")
            )
            .await,
            "needs resync"
        );
        client.batch_execute(&format!("RESYNC ETL JOB {job}")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_checks_refuse_before_saving() {
    let plain = MariaDb::start_without_binlog();
    plain.sql(ITEMS);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_connection(&client, &plain, "crm", &plain.user, &plain.password).await;
    let message = expect_err(&client, "CREATE ETL JOB j FROM crm.shop.items CDC", "55000").await;
    assert!(message.contains("log_bin"), "{message}");
    drop(plain);

    let maria = MariaDb::start();
    maria.sql(&format!(
        "{ITEMS} CREATE TABLE keyless (v text); CREATE TABLE fractions (id int PRIMARY KEY, t time(2)); \
         CREATE USER 'reader'@'%' IDENTIFIED BY 'reader_pw_123'; GRANT SELECT ON shop.* TO 'reader'@'%'; \
         CREATE USER 'client'@'%' IDENTIFIED BY 'client_pw_123'; \
         GRANT SELECT, REPLICATION CLIENT ON *.* TO 'client'@'%';"
    ));
    client.batch_execute("DROP CONNECTION crm").await.unwrap();
    create_connection(&client, &maria, "crm", &maria.user, &maria.password).await;
    create_connection(&client, &maria, "reader", "reader", "reader_pw_123").await;
    create_connection(&client, &maria, "client", "client", "client_pw_123").await;

    maria.sql("SET GLOBAL binlog_format = 'STATEMENT';");
    let message = expect_err(&client, "CREATE ETL JOB j FROM crm.shop.items CDC", "55000").await;
    assert!(
        message.contains("binlog_format") && message.contains("ROW"),
        "{message}"
    );
    maria.sql("SET GLOBAL binlog_format = 'ROW';");

    let message = expect_err(&client, "CREATE ETL JOB j FROM reader.shop.items CDC", "42501").await;
    assert!(message.contains("REPLICATION CLIENT"), "{message}");
    let message = expect_err(&client, "CREATE ETL JOB j FROM client.shop.items CDC", "42501").await;
    assert!(message.contains("REPLICATION SLAVE"), "{message}");
    let message = expect_err(&client, "CREATE ETL JOB j FROM crm.shop.keyless CDC MERGE", "42P10").await;
    assert!(message.contains("primary key"), "{message}");
    let message = expect_err(&client, "CREATE ETL JOB j FROM crm.shop.fractions CDC", "0A000").await;
    assert!(message.contains("TIME(2)"), "{message}");
    let message = expect_err(
        &client,
        "CREATE ETL JOB j FROM crm.shop.items CDC WITH (publication = 'items_pub')",
        "0A000",
    )
    .await;
    assert!(message.contains("PostgreSQL"), "{message}");
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.jobs").await,
        "0",
        "nothing saved"
    );

    // HISTORY needs no key; DROP leaves nothing behind at the source.
    client
        .batch_execute("CREATE ETL JOB j FROM crm.shop.keyless INTO keyless_h CDC HISTORY")
        .await
        .unwrap();
    maria.sql("INSERT INTO keyless VALUES ('x'), (NULL); DELETE FROM keyless WHERE v IS NULL;");
    run(&client, "j").await;
    maria.sql("INSERT INTO keyless VALUES ('y'); UPDATE keyless SET v = 'x2' WHERE v = 'x'; DELETE FROM keyless;");
    run(&client, "j").await;
    assert_eq!(
        rows(
            &client,
            "SELECT _sluice_op, v FROM warehouse.keyless_h ORDER BY _sluice_position"
        )
        .await,
        [
            [Some("insert".to_owned()), Some("x".to_owned())],
            [Some("insert".to_owned()), Some("y".to_owned())],
            [Some("update".to_owned()), Some("x2".to_owned())],
            [Some("delete".to_owned()), Some("x2".to_owned())],
            [Some("delete".to_owned()), Some("y".to_owned())],
        ]
    );
    // A session that still logs statements: its change cannot be
    // followed, and the run says so rather than skip it.
    maria.sql("SET SESSION binlog_format = 'STATEMENT'; INSERT INTO keyless VALUES ('s');");
    let message = expect_err(&client, "RUN ETL JOB j", "55000").await;
    assert!(message.contains("binlog_format"), "{message}");
    client.batch_execute("DROP ETL JOB j").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_job_streams_the_binlog_and_stops_for_drop() {
    let maria = MariaDb::start();
    let sluice = Sluice::start();
    maria.sql(&format!(
        "{ITEMS} INSERT INTO items VALUES (1, 'a', 1, 1.50, 'small'), (2, 'b', 2, 2.00, 'large');"
    ));
    let client = sluice.client().await;
    create_connection(&client, &maria, "crm", &maria.user, &maria.password).await;
    client
        .batch_execute(
            "CREATE ETL JOB items_history FROM crm.shop.items INTO items_h CDC HISTORY CONTINUOUS \
             WITH (flush_interval = '1 second', server_id = 4242)",
        )
        .await
        .unwrap();
    // No RUN: the scheduler's stream loads the table, then follows the binlog.
    let streamed = |expected: Vec<Vec<Option<String>>>| {
        let client = &client;
        async move {
            for _ in 0..300 {
                let current = client
                    .simple_query("SELECT id, name, qty, price, kind FROM warehouse.items_h_current ORDER BY id")
                    .await;
                if current.is_ok() && warehouse(client, "items_h_current").await == expected {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("the stream did not catch up with {expected:?}");
        }
    };
    streamed(source(&maria)).await;
    maria.sql(
        "INSERT INTO items VALUES (3, 'c', 3, 3.00, NULL); UPDATE items SET qty = 10 WHERE id = 1; \
         DELETE FROM items WHERE id = 2;",
    );
    streamed(source(&maria)).await;
    assert_history_applied_once(&client).await;
    assert_eq!(
        one(
            &client,
            "SELECT trigger || ' ' || status FROM sluice.runs WHERE job = 'items_history' ORDER BY run_id DESC LIMIT 1"
        )
        .await,
        "schedule running",
        "one run, the stream, still open"
    );
    // It reads the binlog as the replica id the job gives.
    let replicas = maria.sql("SHOW SLAVE HOSTS");
    assert!(
        replicas.lines().any(|l| l.split('\t').next() == Some("4242")),
        "{replicas}"
    );
    let shown = rows(&client, "SHOW CREATE ETL JOB items_history").await[0][1]
        .clone()
        .unwrap();
    assert!(shown.contains("server_id = 4242"), "{shown}");
    client.batch_execute("DROP ETL JOB items_history").await.unwrap();
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs").await, "0");
}

/// A global status counter of the server.
async fn status(probe: &mut mysql_async::Conn, name: &str) -> u64 {
    let row: Option<(String, u64)> = probe
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .await
        .unwrap();
    row.unwrap_or_else(|| panic!("no status {name}")).1
}

/// Waits until the server has answered `beats` more reads of the binlog's
/// head (MariaDB counts `SHOW MASTER STATUS` as `Com_show_binlog_status`)
/// than `from`: one per beat while nothing else reads it. Returns the count.
async fn heads_read(probe: &mut mysql_async::Conn, beats: u64, from: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let read = status(probe, "Com_show_binlog_status").await;
        if read >= from + beats {
            return read;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} beats, not {beats}",
            read - from
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The connections of `etl` other than the probe's, idle between
/// statements: the one the markers are read on.
async fn idle_sessions(probe: &mut mysql_async::Conn) -> Vec<u64> {
    probe
        .query(
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE USER = 'etl' AND COMMAND = 'Sleep' AND ID <> CONNECTION_ID() ORDER BY ID",
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reads_the_binlog_head_for_its_beats_on_one_kept_session_replaced_when_killed() {
    let maria = MariaDb::start();
    // Each beat also measures the binlog, on the same kept session.
    let sluice = Sluice::start_with(&[], &[("SLUICE_CDC_MEASURE_SECONDS", "0")]);
    maria.sql(&format!(
        "{ITEMS} INSERT INTO items VALUES (1, 'a', 1, 1.50, 'small'), (2, 'b', 2, 2.00, 'large');"
    ));
    let client = sluice.client().await;
    create_connection(&client, &maria, "crm", &maria.user, &maria.password).await;
    client
        .batch_execute(
            "CREATE ETL JOB items_merge FROM crm.shop.items INTO items_m CDC MERGE CONTINUOUS \
             WITH (flush_interval = '1 second')",
        )
        .await
        .unwrap();
    let streamed = async |step: &str| {
        for _ in 0..300 {
            if client.simple_query("SELECT 1 FROM warehouse.items_m").await.is_ok()
                && warehouse(&client, "items_m").await == source(&maria)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{step}: the stream did not catch up with {:?}", source(&maria));
    };
    streamed("the first load").await;
    let stream = one(
        &client,
        "SELECT run_id FROM sluice.runs WHERE job = 'items_merge' AND status = 'running'",
    )
    .await;

    // Two beats: the stream has read the head on the session it keeps.
    let mut probe = mysql_async::Conn::new(mysql_async::Opts::from_url(&maria.url()).unwrap())
        .await
        .unwrap();
    let read = status(&mut probe, "Com_show_binlog_status").await;
    let read = heads_read(&mut probe, 2, read).await;
    let before = status(&mut probe, "Connections").await;
    let marker = idle_sessions(&mut probe).await;
    // Six more beats, each with a measurement of the binlog: no new
    // connection (nothing else of Sluice's opens one while the stream runs;
    // the probe was opened before), the same kept session.
    let read = heads_read(&mut probe, 6, read).await;
    assert_eq!(
        status(&mut probe, "Connections").await - before,
        0,
        "six beats or more opened no connection"
    );
    assert_eq!(idle_sessions(&mut probe).await, marker);
    assert_eq!(marker.len(), 1, "one kept marker session");

    // The server kills it: the next beat opens a new one, the stream goes
    // on (the same run, none failed), takes new changes and stays fresh.
    probe.query_drop(format!("KILL {}", marker[0])).await.unwrap();
    maria.sql("UPDATE items SET qty = 20 WHERE id = 2; INSERT INTO items VALUES (3, 'c', 3, 3.00, NULL);");
    streamed("after the marker session was killed").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let replaced = idle_sessions(&mut probe).await;
        if replaced.len() == 1 && replaced != marker {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new marker session: {replaced:?}, killed {marker:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    heads_read(&mut probe, 2, read).await;
    wait_for(
        &client,
        "SELECT count(*) FROM sluice.jobs WHERE lag_seconds < 10",
        Duration::from_secs(60),
        |n| n == "1",
    )
    .await;
    assert_eq!(
        one(
            &client,
            "SELECT run_id FROM sluice.runs WHERE job = 'items_merge' AND status = 'running'"
        )
        .await,
        stream,
        "the same stream still runs"
    );
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.runs WHERE status = 'failed'").await,
        "0"
    );

    // A stream that ends closes its marker session.
    client.batch_execute("ALTER ETL JOB items_merge PAUSE").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !idle_sessions(&mut probe).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the marker session stays open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
