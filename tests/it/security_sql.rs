//! The plain SQL surface is read-only and bounded: DataFusion's DDL, DML,
//! `COPY ... TO` and runtime settings are refused (42501) in both protocols,
//! settings stay in their session, statements time out (57014), queries
//! share a bounded memory pool (53200) that ETL jobs do not use, and
//! connection options may only name files in `--allowed-paths`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common;

use common::*;
use tokio_postgres::Client;

/// A query that runs for hours: a count over a 10^12-row cross join.
/// (The filter keeps DataFusion from answering from row-count statistics.)
const RUNAWAY: &str = "SELECT count(*) FROM generate_series(1, 1000000) a CROSS JOIN generate_series(1, 1000000) b \
                       WHERE a.value + b.value > 0";

/// Asserts `sql` fails with 42501 through both protocols, naming `kind`.
async fn refused_both_ways(client: &Client, sql: &str, kind: &str) {
    let simple = expect_err(client, sql, "42501").await;
    assert!(simple.contains(kind), "{sql}: {simple}");
    let extended = expect_err_extended(client, sql, "42501").await;
    assert!(extended.contains(kind), "{sql}: {extended}");
}

#[tokio::test]
async fn copy_to_files_is_refused() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let dir = tempfile::tempdir().unwrap();
    let forged_manifest = sluice.data_dir().join("warehouse/forged/manifest.json");
    let targets = [
        dir.path().join("out.csv"),
        dir.path().join("out.parquet"),
        dir.path().join("out.json"),
        forged_manifest,
    ];
    for target in &targets {
        let sql = format!("COPY (SELECT 1 AS a) TO '{}'", target.display());
        refused_both_ways(&client, &sql, "COPY").await;
        assert!(!target.exists(), "{} was written", target.display());
    }
}

#[tokio::test]
async fn external_tables_cannot_read_server_files() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    refused_both_ways(
        &client,
        "CREATE EXTERNAL TABLE stolen STORED AS PARQUET LOCATION '/etc/'",
        "CREATE",
    )
    .await;
    expect_err(&client, "SELECT * FROM stolen", "42P01").await;
}

#[tokio::test]
async fn ddl_and_dml_on_the_shared_session_are_refused() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    for (sql, kind) in [
        ("CREATE TABLE t AS SELECT 1 AS a", "CREATE TABLE"),
        // Outside the `public` schema of bookkeeping tables (public_tables.rs).
        ("CREATE TABLE warehouse.t2 (a int)", "CREATE TABLE"),
        ("CREATE VIEW v AS SELECT 1 AS a", "CREATE VIEW"),
        ("CREATE SCHEMA s", "CREATE SCHEMA"),
        ("INSERT INTO sluice.connections VALUES ('x')", "INSERT"),
        ("DROP TABLE sluice.connections", "DROP"),
        ("EXPLAIN ANALYZE CREATE TABLE t3 AS SELECT 1", "CREATE TABLE"),
        ("SELECT 1 AS a INTO t4", "SELECT INTO"),
        ("SET datafusion.runtime.memory_limit = '100G'", "datafusion.runtime"),
    ] {
        refused_both_ways(&client, sql, kind).await;
    }
    let other = sluice.client().await;
    for name in ["t", "t2", "v", "t3", "t4"] {
        expect_err(&other, &format!("SELECT * FROM {name}"), "42P01").await;
    }
}

#[tokio::test]
async fn reads_and_session_settings_keep_working() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    assert_eq!(one(&client, "SELECT 1 + 1").await, "2");
    let row = client.query_one("SELECT $1::bigint + 1", &[&41i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    assert!(!rows(&client, "EXPLAIN SELECT 1").await.is_empty());
    assert!(!rows(&client, "SHOW TABLES").await.is_empty());
    client
        .batch_execute("SET application_name = 'probe'; SET TIME ZONE 'UTC'; SET extra_float_digits = 3; BEGIN; COMMIT")
        .await
        .unwrap();
    assert_eq!(one(&client, "SHOW application_name").await, "probe");
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.connections").await, "0");
}

#[tokio::test]
async fn datafusion_settings_stay_in_their_session() {
    let sluice = Sluice::start();
    let setter = sluice.client().await;
    let other = sluice.client().await;
    let batch_size = "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.batch_size'";
    let default = one(&other, batch_size).await;
    assert_ne!(default, "17");
    setter
        .batch_execute("SET datafusion.execution.batch_size = 17")
        .await
        .unwrap();
    assert_eq!(one(&setter, batch_size).await, "17");
    assert_eq!(
        one(&other, batch_size).await,
        default,
        "a SET leaked into another session"
    );
    let later = sluice.client().await;
    assert_eq!(
        one(&later, batch_size).await,
        default,
        "a SET leaked into a new session"
    );
}

/// Asserts `run` fails with 57014 well before `limit`, and the session then
/// still answers.
async fn times_out(client: &Client, extended: bool, limit: Duration) {
    let started = Instant::now();
    if extended {
        expect_err_extended(client, RUNAWAY, "57014").await;
    } else {
        expect_err(client, RUNAWAY, "57014").await;
    }
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    assert_eq!(one(client, "SELECT 1").await, "1");
}

#[tokio::test]
async fn statements_time_out_by_default_and_per_session() {
    let sluice = Sluice::start_with(&["--statement-timeout", "2"], &[]);
    let client = sluice.client().await;
    assert_eq!(one(&client, "SHOW statement_timeout").await, "2s");
    times_out(&client, false, Duration::from_secs(20)).await;
    client.batch_execute("SET statement_timeout = '300ms'").await.unwrap();
    assert_eq!(one(&client, "SHOW statement_timeout").await, "300ms");
    times_out(&client, true, Duration::from_secs(10)).await;
    times_out(&client, false, Duration::from_secs(10)).await;
    // Another session keeps the server's default.
    let other = sluice.client().await;
    assert_eq!(one(&other, "SHOW statement_timeout").await, "2s");
    other.batch_execute("SET statement_timeout = 0").await.unwrap();
    assert_eq!(one(&other, "SHOW statement_timeout").await, "0");

    // While one session runs away, the others are answered at once.
    client.batch_execute("SET statement_timeout = '4s'").await.unwrap();
    let runaway = tokio::spawn(async move { expect_err(&client, RUNAWAY, "57014").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    assert_eq!(one(&other, "SELECT 1").await, "1");
    assert!(rows(&other, "SHOW CONNECTIONS").await.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    runaway.await.unwrap();
}

const WIDE: &str = "
CREATE TABLE public.left_side AS
    SELECT g AS id, md5((g % 1000)::text) || md5(g::text) || md5((g + 1)::text) AS k FROM generate_series(1, 200000) g;
CREATE TABLE public.right_side AS
    SELECT g AS id, md5((g % 1000)::text) || md5(g::text) || md5((g + 1)::text) AS k FROM generate_series(1, 200000) g;
GRANT SELECT ON public.left_side, public.right_side TO etl;
";

#[tokio::test]
async fn plain_sql_memory_is_bounded_and_jobs_are_not() {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", WIDE);
    let sluice = Sluice::start_with(&["--query-memory", "4M"], &[]);
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    let join = "SELECT count(*) FROM shop.public.left_side l JOIN shop.public.right_side r ON l.k = r.k";
    let message = expect_err(&client, join, "53200").await;
    assert!(!message.is_empty());
    expect_err_extended(&client, join, "53200").await;
    assert_eq!(one(&client, "SELECT 1").await, "1", "the session survives");

    // A job moves the same rows while plain SQL is limited.
    client
        .batch_execute("CREATE ETL JOB wide FROM shop.public.left_side INTO warehouse.wide SNAPSHOT")
        .await
        .unwrap();
    rows(&client, "RUN ETL JOB wide").await;
    let status = one(&client, "SELECT status FROM sluice.runs WHERE job = 'wide'").await;
    assert_eq!(status, "succeeded");
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.wide").await, "200000");
}

/// `CREATE CONNECTION name TYPE local OPTIONS (path '<path>')`.
fn local(name: &str, path: &Path) -> String {
    format!(
        "CREATE CONNECTION {name} TYPE local OPTIONS (path '{}') WITH (validate = false)",
        path.display()
    )
}

#[tokio::test]
async fn connection_paths_must_be_allowed() {
    let root = tempfile::tempdir().unwrap();
    let allowed = root.path().join("allowed");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(allowed.join("files")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("key.json"), "{}").unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
    let allowed_env = allowed.display().to_string();
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_ALLOWED_PATHS", &allowed_env)]);
    let client = sluice.client().await;

    for (i, path) in [
        outside.clone(),
        allowed.join("link"),
        allowed.join("../outside"),
        allowed.join("files/../../outside"),
        "/etc".into(),
    ]
    .iter()
    .enumerate()
    {
        let message = expect_err(&client, &local(&format!("l{i}"), path), "42501").await;
        assert!(
            message.contains("path") && message.contains("--allowed-paths"),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    let key = outside.join("key.json").display().to_string();
    for sql in [
        format!("CREATE CONNECTION bq TYPE bigquery OPTIONS (project 'p', dataset 'd', credentials_file '{key}')"),
        format!(
            "CREATE CONNECTION pg TYPE postgres OPTIONS (host 'h', database 'd', user 'u', password 'p', sslmode 'verify-full', sslrootcert '{key}') WITH (validate = false)"
        ),
        format!(
            "CREATE CONNECTION my TYPE mysql OPTIONS (host 'h', database 'd', user 'u', password 'p', ssl_ca '{key}') WITH (validate = false)"
        ),
    ] {
        let message = expect_err(&client, &sql, "42501").await;
        assert!(message.contains(&key), "{message}");
    }
    assert!(rows(&client, "SHOW CONNECTIONS").await.is_empty(), "nothing was saved");

    // Inside is fine; ALTER is checked too.
    client
        .batch_execute(&local("files", &allowed.join("files")))
        .await
        .unwrap();
    let alter = format!("ALTER CONNECTION files SET (path '{}')", outside.display());
    expect_err(&client, &alter, "42501").await;

    // A stored connection is checked again at use, after the server narrows
    // its allowed paths.
    let narrower = allowed.join("elsewhere");
    std::fs::create_dir_all(&narrower).unwrap();
    sluice.opts.envs = vec![("SLUICE_ALLOWED_PATHS".into(), narrower.display().to_string())];
    sluice.restart();
    let client = sluice.client().await;
    expect_err(&client, "TEST CONNECTION files", "42501").await;
}
