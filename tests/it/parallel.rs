//! `WITH (parallelism = n)`: PostgreSQL tables read by n COPY streams over
//! key ranges of one snapshot load exactly the rows a serial run loads, and
//! stay exactly-once across kill -9.

use crate::common;

use std::time::Duration;

use common::redis::RedisServer;
use common::*;
use tokio_postgres::Client;

async fn setup(pg: &PgServer, sluice: &Sluice) -> Client {
    let client = sluice.client().await;
    create_shop_connection(&client, pg).await;
    client
}

/// Rows of `a` missing from `b`, plus rows of `b` missing from `a`, and both counts.
pub(crate) async fn difference(client: &Client, a: &str, b: &str) -> Vec<Option<String>> {
    rows(
        client,
        &format!(
            "SELECT (SELECT count(*) FROM (SELECT * FROM warehouse.{a} EXCEPT SELECT * FROM warehouse.{b}) x) AS a_only, \
                    (SELECT count(*) FROM (SELECT * FROM warehouse.{b} EXCEPT SELECT * FROM warehouse.{a}) y) AS b_only, \
                    (SELECT count(*) FROM warehouse.{a}) AS a_rows, (SELECT count(*) FROM warehouse.{b}) AS b_rows"
        ),
    )
    .await
    .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_runs_load_exactly_what_serial_runs_load() {
    let pg = PgServer::start();
    // Skewed, negative and sparse keys; NULLs in other columns.
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE orders (id bigint PRIMARY KEY, note text, amount numeric(12,2), at timestamptz NOT NULL); \
         INSERT INTO orders SELECT g * g, CASE WHEN g % 5 = 0 THEN NULL ELSE 'n' || g END, g * 0.5, \
           timestamptz '2024-01-01' + g * interval '1 minute' FROM generate_series(1, 3000) g; \
         INSERT INTO orders SELECT -g, NULL, NULL, timestamptz '2023-06-01' + g * interval '1 minute' \
           FROM generate_series(1, 500) g; \
         CREATE TABLE logs (seq int NOT NULL, msg text); \
         INSERT INTO logs SELECT g / 3, 'm' || g FROM generate_series(1, 9000) g; \
         CREATE TABLE loose (n int, msg text); INSERT INTO loose VALUES (NULL, 'x'), (1, 'y');",
    );
    // Logged statements show the streams.
    pg.psql_admin_db("shop", "ALTER ROLE etl SET log_statement = 'all';");
    let sluice = Sluice::start();
    let client = setup(&pg, &sluice).await;
    client
        .batch_execute(
            "CREATE ETL JOB serial FROM shop.public.orders INTO warehouse.serial SNAPSHOT; \
             CREATE ETL JOB par FROM shop.public.orders INTO warehouse.par SNAPSHOT WITH (parallelism = 4, batch_rows = 100); \
             CREATE ETL JOB par_inc FROM shop.public.orders INTO warehouse.par_inc INCREMENTAL BY at ALL \
               LOOKBACK 1 HOUR DEDUPE ON (id) WITH (parallelism = 3); \
             CREATE ETL JOB logs_serial FROM shop.public.logs INTO warehouse.logs_serial INCREMENTAL BY seq ALL; \
             CREATE ETL JOB logs_par FROM shop.public.logs INTO warehouse.logs_par INCREMENTAL BY seq ALL WITH (parallelism = 16);",
        )
        .await
        .unwrap();
    for job in ["serial", "par", "par_inc", "logs_serial", "logs_par"] {
        let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
        assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    }
    let log = pg.log_contents();
    let imports = log.matches("SET TRANSACTION SNAPSHOT").count();
    assert_eq!(
        imports,
        4 + 3 + 16,
        "one stream per range, all in the exported snapshot"
    );
    assert!(log.contains(r#"WHERE "id" >= "#), "ranges of the primary key");
    assert!(
        log.contains(r#"WHERE "seq" < "#),
        "ranges of the cursor when there is no key"
    );
    let same = |n: &str| {
        [
            Some("0".to_owned()),
            Some("0".to_owned()),
            Some(n.to_owned()),
            Some(n.to_owned()),
        ]
    };
    assert_eq!(difference(&client, "serial", "par").await, same("3500"));
    assert_eq!(difference(&client, "serial", "par_inc").await, same("3500"));
    assert_eq!(difference(&client, "logs_serial", "logs_par").await, same("9000"));

    // The next incremental runs: new rows, and the same watermark as serial.
    pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT 10000000 + g, 'new', 1, now() FROM generate_series(1, 200) g; \
         INSERT INTO logs SELECT 3000 + g, 'new' FROM generate_series(1, 10) g;",
    );
    let next = rows(&client, "RUN ETL JOB par_inc").await;
    assert_eq!(next[0][2].as_deref(), Some("200"), "{next:?}");
    let serial = rows(&client, "RUN ETL JOB logs_serial").await;
    let parallel = rows(&client, "RUN ETL JOB logs_par").await;
    assert_eq!(parallel[0][2].as_deref(), Some("10"));
    assert_eq!(serial[0][5..], parallel[0][5..], "same window");
    assert_eq!(difference(&client, "logs_serial", "logs_par").await, same("9010"));
    assert_eq!(
        rows(&client, "SELECT count(*), count(DISTINCT id) FROM warehouse.par_inc").await[0],
        [Some("3700".into()), Some("3700".into())]
    );

    // Shown in the definition; refused where it cannot work.
    let shown = rows(&client, "SHOW CREATE ETL JOB par").await;
    assert!(
        shown[0][1]
            .as_deref()
            .unwrap()
            .ends_with("WITH (batch_rows = 100, max_retries = 3, catch_up = 'once', parallelism = 4);"),
        "{shown:?}"
    );
    let message = expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.loose SNAPSHOT WITH (parallelism = 2)",
        "22023",
    )
    .await;
    assert!(message.contains("integer primary key"), "{message}");
    expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.orders SNAPSHOT WITH (parallelism = 17)",
        "42601",
    )
    .await;
    let redis = RedisServer::start();
    redis.run(&[&["SET", "cfg:a", "1"]]);
    client
        .batch_execute(&format!(
            "CREATE CONNECTION cache TYPE redis OPTIONS (host '127.0.0.1', port {}, tables 'config=cfg:*')",
            redis.port
        ))
        .await
        .unwrap();
    let message = expect_err(
        &client,
        "CREATE ETL JOB bad FROM cache.db0.config SNAPSHOT WITH (parallelism = 2)",
        "22023",
    )
    .await;
    assert!(message.contains("cannot be read by parallel streams"), "{message}");
    let jobs = rows(&client, "SELECT count(*) FROM sluice.jobs").await;
    assert_eq!(jobs[0][0].as_deref(), Some("5"), "nothing half-saved");

    // ALTER checks the source too.
    client
        .batch_execute(
            "CREATE ETL JOB from_cache FROM cache.db0.config SNAPSHOT; ALTER ETL JOB serial SET (parallelism = 2);",
        )
        .await
        .unwrap();
    let message = expect_err(&client, "ALTER ETL JOB from_cache SET (parallelism = 2)", "22023").await;
    assert!(message.contains("cannot be read by parallel streams"), "{message}");
    let again = rows(&client, "RUN ETL JOB serial").await;
    assert_eq!(again[0][2].as_deref(), Some("3700"), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_parallel_runs_then_rerun_loads_every_row_once() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE events (id bigint PRIMARY KEY, payload text, at timestamptz NOT NULL);",
    );
    let mut sluice = Sluice::start();
    let mut client = setup(&pg, &sluice).await;
    client
        .batch_execute(
            "CREATE ETL JOB inc FROM shop.public.events INTO warehouse.inc INCREMENTAL BY at ALL WITH (parallelism = 4); \
             CREATE ETL JOB snap FROM shop.public.events INTO warehouse.snap SNAPSHOT WITH (parallelism = 3);",
        )
        .await
        .unwrap();
    let fingerprint = "SELECT count(*), count(DISTINCT id), sum(id) FROM events";
    for (round, delay_ms) in [50u64, 400, 1000].into_iter().enumerate() {
        let from = round as i64 * 200_000 + 1;
        pg.psql_admin_db(
            "shop",
            &format!(
                "INSERT INTO events SELECT g, 'p' || g, timestamptz '2024-01-01' + g * interval '1 second' \
                 FROM generate_series({from}, {}) g;",
                from + 199_999
            ),
        );
        for job in ["inc", "snap"] {
            rows(&client, &format!("RUN ETL JOB {job} ASYNC")).await;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            sluice.kill9();
            sluice.restart();
            client = sluice.client().await;
        }
        let expected = pg.psql_admin_db("shop", fingerprint).trim().to_owned();
        for job in ["inc", "snap"] {
            let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
            assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
            let loaded = rows(
                &client,
                &format!("SELECT count(*), count(DISTINCT id), sum(id) FROM warehouse.{job}"),
            )
            .await;
            let loaded = loaded[0]
                .iter()
                .map(|v| v.clone().unwrap())
                .collect::<Vec<_>>()
                .join("|");
            assert_eq!(loaded, expected, "{job}, round {round} (kill after {delay_ms} ms)");
        }
    }
}
