//! Snowflake as a source, against fakesnow (Snowflake's connector REST
//! protocol over DuckDB): connections tested before save, exploration from
//! `INFORMATION_SCHEMA`, live SELECT with pushdown, every mapped type read
//! back, snapshot and incremental jobs, and a crash between the destination
//! commit and the catalog update. Data is seeded through
//! snowflake-connector-python against the same server.

use crate::common;

use common::fakesnow::FakeSnow;
use common::*;
use tokio_postgres::Client;

const SECRET_PASSWORD: &str = "sf_pw_9c1e";

/// The options of a connection to `fake`'s database `database`.
fn options(fake: &FakeSnow, database: &str) -> String {
    format!(
        "account 'fakesnow', user 'etl', password '{SECRET_PASSWORD}', database '{database}', schema 'PUBLIC', \
         endpoint '{}'",
        fake.url
    )
}

fn seed_orders(fake: &FakeSnow, database: &str) {
    fake.sql(
        database,
        &[
            "CREATE SCHEMA IF NOT EXISTS PUBLIC",
            "CREATE TABLE ORDERS (ID NUMBER(38,0) PRIMARY KEY, AMOUNT NUMBER(12,2), NOTE VARCHAR(40), \
             UPDATED_AT TIMESTAMP_NTZ)",
            "INSERT INTO ORDERS VALUES (1, 10.50, 'first', '2024-01-01 10:00:00'), \
             (2, 20.25, 'it''s second', '2024-01-02 10:00:00.123456'), (3, NULL, NULL, '2024-01-03 10:00:00')",
        ],
    );
}

async fn create(client: &Client, name: &str, options: &str) {
    client
        .batch_execute(&format!("CREATE CONNECTION {name} TYPE snowflake OPTIONS ({options})"))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_tested_before_save() {
    let fake = FakeSnow::start();
    let sluice = Sluice::start();
    let client = sluice.client().await;

    let types = rows(&client, "SHOW CONNECTION TYPES").await;
    let snowflake = types.iter().find(|t| t[0].as_deref() == Some("snowflake")).unwrap();
    assert_eq!(snowflake[3].as_deref(), Some("available"), "{snowflake:?}");

    create(&client, "sf", &options(&fake, "SHOP")).await;
    let status = one(&client, "SELECT status FROM sluice.connections WHERE name = 'sf'").await;
    assert_eq!(status, "ok");

    // Key-pair authentication signs a JWT (fakesnow accepts any login, so
    // this proves the token is built and sent, not that it is checked).
    let key = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("openssl is installed");
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap();
    create(
        &client,
        "sf_key",
        &format!(
            "account 'fakesnow', user 'etl', private_key '{key}', database 'KEYS', endpoint '{}'",
            fake.url
        ),
    )
    .await;

    let closed = free_port();
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION gone TYPE snowflake OPTIONS (account 'a', user 'u', password 'p', database 'D', \
             endpoint 'http://127.0.0.1:{closed}')"
        ),
        "08001",
    )
    .await;
    assert!(message.contains("refused"), "{message}");
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION bad_key TYPE snowflake OPTIONS (account 'a', user 'u', private_key 'not a key', \
             database 'D', endpoint '{}')",
            fake.url
        ),
        "28P01",
    )
    .await;
    assert!(message.contains("not PEM"), "{message}");
    expect_err(
        &client,
        &format!(
            "CREATE CONNECTION no_credentials TYPE snowflake OPTIONS (account 'a', user 'u', database 'D', \
             endpoint '{}')",
            fake.url
        ),
        "22023",
    )
    .await;
    let saved = rows(&client, "SELECT name FROM sluice.connections ORDER BY name").await;
    assert_eq!(saved, [[Some("sf".to_owned())], [Some("sf_key".to_owned())]]);
    let shown = rows(&client, "SHOW CREATE CONNECTION sf").await;
    assert!(!format!("{shown:?}").contains(SECRET_PASSWORD), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_explored_and_read_live_with_pushdown() {
    let fake = FakeSnow::start();
    seed_orders(&fake, "SHOP");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create(&client, "sf", &options(&fake, "SHOP")).await;

    assert_eq!(one(&client, "SHOW SCHEMAS FROM sf").await, "PUBLIC");
    let tables = rows(&client, "SHOW TABLES FROM sf.\"PUBLIC\"").await;
    let names: Vec<_> = tables.iter().map(|t| t[1].clone().unwrap()).collect();
    // fakesnow lists no views in INFORMATION_SCHEMA.TABLES (Snowflake does).
    assert_eq!(names, ["ORDERS"]);
    assert_eq!(tables[0][2].as_deref(), Some("table"));
    assert_eq!(tables[0][3].as_deref(), Some("3"), "ROW_COUNT: {tables:?}");

    let described = rows(&client, "DESCRIBE sf.\"PUBLIC\".\"ORDERS\"").await;
    let summary: Vec<_> = described
        .iter()
        .map(|c| [0, 2, 5, 7].map(|i| c[i].clone().unwrap_or_default()).join(" "))
        .collect();
    assert_eq!(
        summary,
        [
            "ID NUMBER(38,0) 1 INT64",
            "AMOUNT NUMBER(12,2)  NUMERIC(12, 2)",
            "NOTE TEXT(40)  STRING",
            "UPDATED_AT TIMESTAMP_NTZ  DATETIME",
        ]
    );
    let message = expect_err(&client, "DESCRIBE sf.\"PUBLIC\".\"ORDRES\"", "42704").await;
    assert!(message.contains("ORDERS"), "{message}");
    expect_err(&client, "SHOW TABLES FROM sf.\"NOPE\"", "42704").await;

    let live = rows(
        &client,
        "SELECT \"ID\", \"AMOUNT\", \"NOTE\", \"UPDATED_AT\" FROM sf.\"PUBLIC\".\"ORDERS\" \
         WHERE \"UPDATED_AT\" > TIMESTAMP '2024-01-01 12:00:00' ORDER BY \"ID\"",
    )
    .await;
    assert_eq!(
        live,
        [
            [
                Some("2"),
                Some("20.25"),
                Some("it's second"),
                Some("2024-01-02 10:00:00.123456")
            ],
            [Some("3"), None, None, Some("2024-01-03 10:00:00.000000")],
        ]
        .map(|r| r.map(|v| v.map(str::to_owned)))
    );
    let plan = rows(
        &client,
        "EXPLAIN SELECT \"ID\" FROM sf.\"PUBLIC\".\"ORDERS\" WHERE \"ID\" > 1 LIMIT 1",
    )
    .await;
    let plan_text = plan
        .iter()
        .flat_map(|r| r.iter().flatten().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        plan_text.contains("SELECT \"ID\" FROM \"PUBLIC\".\"ORDERS\" WHERE (\"ID\" > 1) LIMIT 1"),
        "{plan_text}"
    );
    let limited = rows(
        &client,
        "SELECT \"ID\" FROM sf.\"PUBLIC\".\"ORDERS\" WHERE \"ID\" > 1 LIMIT 1",
    )
    .await;
    assert_eq!(limited.len(), 1);
}

/// Every type fakesnow stores reads back with the documented mapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_types_read_back_exactly() {
    let fake = FakeSnow::start();
    fake.sql(
        "TYPES",
        &[
            "CREATE SCHEMA IF NOT EXISTS PUBLIC",
            "CREATE TABLE ALL_TYPES (N NUMBER(38,0), D2 NUMBER(12,2), F FLOAT, T VARCHAR, B BINARY, BO BOOLEAN, \
             DA DATE, TI TIME, NTZ TIMESTAMP_NTZ, LTZ TIMESTAMP_LTZ, V VARIANT, O OBJECT, A ARRAY)",
            "INSERT INTO ALL_TYPES SELECT 9007199254740993, -12345.67, 1.5, 'ünïcode', TO_BINARY('ABCD', 'HEX'), \
             TRUE, '2024-02-29', '23:59:58.123456', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5', \
             PARSE_JSON('{\"k\": [1, 2]}'), OBJECT_CONSTRUCT('a', 1), ARRAY_CONSTRUCT(1, 'x')",
            "INSERT INTO ALL_TYPES (N) VALUES (NULL)",
        ],
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create(&client, "sf", &options(&fake, "TYPES")).await;
    let described = rows(&client, "DESCRIBE sf.\"PUBLIC\".\"ALL_TYPES\"").await;
    let bigquery: Vec<_> = described.iter().map(|c| c[7].clone().unwrap()).collect();
    assert_eq!(
        bigquery,
        [
            "INT64",
            "NUMERIC(12, 2)",
            "FLOAT64",
            "STRING",
            "BYTES",
            "BOOL",
            "DATE",
            "TIME",
            "DATETIME",
            // fakesnow reports TIMESTAMP_LTZ as TIMESTAMP_TZ and OBJECT and
            // ARRAY as VARIANT: both map as Snowflake's own names would.
            "TIMESTAMP",
            "JSON",
            "JSON",
            "JSON",
        ]
    );
    client
        .batch_execute(
            "CREATE ETL JOB all_types FROM sf.\"PUBLIC\".\"ALL_TYPES\" INTO warehouse.sf_types SNAPSHOT; \
             RUN ETL JOB all_types;",
        )
        .await
        .unwrap();
    let loaded = rows(
        &client,
        "SELECT \"N\", \"D2\", \"F\", \"T\", encode(\"B\", 'hex'), \"BO\", \"DA\", \"TI\", \"NTZ\", \"LTZ\", \"V\", \
         \"O\", \"A\" FROM warehouse.sf_types ORDER BY \"N\" NULLS LAST",
    )
    .await;
    assert_eq!(
        loaded[0],
        [
            "9007199254740993",
            "-12345.67",
            "1.5",
            "ünïcode",
            "abcd",
            "t",
            "2024-02-29",
            "23:59:58.123456",
            "2024-01-02 03:04:05.123456",
            "2024-01-02 03:04:05.500000+00",
            "{\"k\":[1,2]}",
            "{\"a\":1}",
            "[1,\"x\"]",
        ]
        .map(|v| Some(v.to_owned()))
    );
    assert!(loaded[1][1..].iter().all(Option::is_none), "{:?}", loaded[1]);
}

/// Runs `job`; the rows it loaded.
async fn run(client: &Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_incremental_jobs_load_every_row_once() {
    let fake = FakeSnow::start();
    seed_orders(&fake, "SHOP");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create(&client, "sf", &options(&fake, "SHOP")).await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_snap FROM sf.\"PUBLIC\".\"ORDERS\" INTO warehouse.orders_snap SNAPSHOT; \
             CREATE ETL JOB orders_inc FROM sf.\"PUBLIC\".\"ORDERS\" INTO warehouse.orders_inc \
             INCREMENTAL BY \"UPDATED_AT\" ALL;",
        )
        .await
        .unwrap();
    assert_eq!(run(&client, "orders_snap").await, "3");
    assert_eq!(run(&client, "orders_inc").await, "3");
    assert_eq!(run(&client, "orders_inc").await, "0", "nothing new");
    let reason = one(
        &client,
        "SELECT guard_reason FROM sluice.runs WHERE job = 'orders_inc' ORDER BY run_id DESC LIMIT 1",
    )
    .await;
    assert!(reason.contains("cannot report open transactions"), "{reason}");

    fake.sql(
        "SHOP",
        &[
            "INSERT INTO ORDERS VALUES (4, 40, 'fourth', '2024-01-04 10:00:00'), \
             (5, 50, 'fifth', '2024-01-04 10:00:00')",
            "DELETE FROM ORDERS WHERE ID = 1",
        ],
    );
    assert_eq!(run(&client, "orders_inc").await, "2", "only the new rows");
    assert_eq!(run(&client, "orders_snap").await, "4", "the snapshot replaces the copy");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT \"ID\"), sum(\"ID\") FROM warehouse.orders_inc"
        )
        .await[0],
        ["5", "5", "15"].map(|v| Some(v.to_owned()))
    );
    assert_eq!(
        rows(&client, "SELECT count(*), sum(\"ID\") FROM warehouse.orders_snap").await[0],
        ["4", "14"].map(|v| Some(v.to_owned()))
    );
    let watermark = one(&client, "SELECT watermark FROM sluice.jobs WHERE name = 'orders_inc'").await;
    assert!(watermark.contains("2024-01-04"), "{watermark}");
    assert!(
        !sluice.log_contents().contains(SECRET_PASSWORD),
        "the password stays out of the log"
    );
}

/// The server dies right after the warehouse committed a run: the restart
/// adopts the run, and the next run loads only rows added since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_destination_commit_loads_each_row_once() {
    let fake = FakeSnow::start();
    seed_orders(&fake, "SHOP");
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "after_destination_commit")]);
    let client = sluice.client().await;
    create(&client, "sf", &options(&fake, "SHOP")).await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM sf.\"PUBLIC\".\"ORDERS\" INTO warehouse.orders_inc \
             INCREMENTAL BY \"UPDATED_AT\" ALL;",
        )
        .await
        .unwrap();
    sluice.run_into_failpoint(&client, "RUN ETL JOB orders_inc").await;
    let client = sluice.restart_without_failpoints().await;
    let status = rows(&client, "SELECT status FROM sluice.runs WHERE job = 'orders_inc'").await;
    assert_eq!(status, [[Some("succeeded".to_owned())]], "the committed run is adopted");
    assert_eq!(run(&client, "orders_inc").await, "0", "nothing is loaded twice");
    fake.sql(
        "SHOP",
        &["INSERT INTO ORDERS VALUES (4, 40, 'fourth', '2024-01-04 10:00:00')"],
    );
    assert_eq!(run(&client, "orders_inc").await, "1");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT \"ID\") FROM warehouse.orders_inc"
        )
        .await[0],
        ["4", "4"].map(|v| Some(v.to_owned()))
    );
}

/// The server is killed as a run starts: the run is settled as failed and
/// the re-run loads every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_a_run_then_a_rerun_loads_each_row_once() {
    let fake = FakeSnow::start();
    seed_orders(&fake, "SHOP");
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "run_start")]);
    let client = sluice.client().await;
    create(&client, "sf", &options(&fake, "SHOP")).await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM sf.\"PUBLIC\".\"ORDERS\" INTO warehouse.orders_inc \
             INCREMENTAL BY \"UPDATED_AT\" ALL;",
        )
        .await
        .unwrap();
    sluice.run_into_failpoint(&client, "RUN ETL JOB orders_inc").await;
    let client = sluice.restart_without_failpoints().await;
    let status = rows(&client, "SELECT status FROM sluice.runs WHERE job = 'orders_inc'").await;
    assert_eq!(status, [[Some("failed".to_owned())]], "the killed run is settled");
    assert_eq!(run(&client, "orders_inc").await, "3");
    assert_eq!(run(&client, "orders_inc").await, "0");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT \"ID\") FROM warehouse.orders_inc"
        )
        .await[0],
        ["3", "3"].map(|v| Some(v.to_owned()))
    );
}

/// VERIFY computes the source's checksums in Snowflake's SQL (fakesnow runs
/// it) and agrees with the warehouse; a changed cursor shows in its day,
/// and REPAIR of that day makes the two equal again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_repair_compute_in_snowflake_sql() {
    let fake = FakeSnow::start();
    seed_orders(&fake, "SHOP");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create(&client, "sf", &options(&fake, "SHOP")).await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_snap FROM sf.\"PUBLIC\".\"ORDERS\" INTO warehouse.orders_snap SNAPSHOT; \
             CREATE ETL JOB orders_inc FROM sf.\"PUBLIC\".\"ORDERS\" INTO warehouse.orders_inc \
             INCREMENTAL BY \"UPDATED_AT\" ALL;",
        )
        .await
        .unwrap();
    run(&client, "orders_snap").await;
    run(&client, "orders_inc").await;
    for verify in [
        "VERIFY ETL JOB orders_inc",
        "VERIFY ETL JOB orders_inc BY HOUR",
        "VERIFY ETL JOB orders_inc BY MONTH",
        "VERIFY ETL JOB orders_snap",
    ] {
        assert!(rows(&client, verify).await.is_empty(), "{verify}");
    }
    let buckets = one(
        &client,
        "SELECT buckets FROM sluice.verifications WHERE job = 'orders_inc' AND bucket_by = 'day'",
    )
    .await;
    assert_eq!(buckets, "3");

    fake.sql(
        "SHOP",
        &["UPDATE ORDERS SET UPDATED_AT = '2024-01-02 10:00:00.123457' WHERE ID = 2"],
    );
    let differ = rows(&client, "VERIFY ETL JOB orders_inc").await;
    let days: Vec<_> = differ.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(days, ["2024-01-02"], "{differ:?}");
    let repair = rows(&client, "REPAIR ETL JOB orders_inc FROM '2024-01-02' TO '2024-01-03'").await;
    assert_eq!(repair[0][1].as_deref(), Some("succeeded"), "{repair:?}");
    assert!(rows(&client, "VERIFY ETL JOB orders_inc").await.is_empty());
}
