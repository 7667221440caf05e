//! Redshift scans through `UNLOAD ... FORMAT PARQUET` to S3: the
//! PostgreSQL stand-in of `source_redshift` behind the UNLOAD proxy
//! (`common/redshift_unload.rs`), which writes the unloaded Parquet files
//! into moto's S3, where Sluice reads them back with the `unload_*`
//! credentials.

use crate::common;
use crate::source_redshift::{
    ALL_TYPES, RS_PASSWORD, RS_USER, fingerprint, insert_orders, redshift_statements, source_fingerprint, standin,
    violations,
};

use std::time::{Duration, Instant};

use common::emulators::Emulator;
use common::redshift_unload::{UnloadProxy, objects};
use common::*;
use tokio_postgres::Client;

const ROLE: &str = "arn:aws:iam::123456789012:role/sluice-unload";
const BUCKET: &str = "unloads";
/// Where the scans' folders are: `unload_bucket`'s prefix, then Sluice's.
const FOLDERS: &str = "exports/sluice-unload/";

/// The stand-in, moto with the bucket, and the proxy in front of both.
struct Redshift {
    pg: PgServer,
    moto: Emulator,
    proxy: UnloadProxy,
}

impl Redshift {
    fn start() -> Self {
        let pg = standin();
        let moto = Emulator::moto();
        moto.create_bucket(BUCKET);
        let proxy = UnloadProxy::start(&pg, &moto.endpoint(), ROLE);
        Self { pg, moto, proxy }
    }

    /// A Redshift connection through the proxy with the UNLOAD options;
    /// `extra` adds or overrides options.
    fn connection_sql(&self, name: &str, extra: &str) -> String {
        format!(
            "CREATE CONNECTION {name} TYPE redshift OPTIONS (host '127.0.0.1', port {}, database '{}', \
             user '{RS_USER}', password '{RS_PASSWORD}', sslmode 'disable', unload_bucket 's3://{BUCKET}/exports', \
             unload_endpoint '{}', unload_region 'us-east-1', unload_access_key_id 'unload-key-id', \
             unload_secret_access_key 'unload-secret-key'{extra})",
            self.proxy.port,
            self.pg.db,
            self.moto.endpoint()
        )
    }

    async fn leftovers(&self) -> Vec<String> {
        objects(&self.moto.endpoint(), BUCKET, FOLDERS).await
    }
}

/// Every column of `table` in the warehouse as text, ordered.
async fn readback(client: &Client, table: &str) -> Vec<Vec<Option<String>>> {
    rows(
        client,
        &format!(
            "SELECT s, i, b, CAST(d AS VARCHAR), r, f, ok, c, v, CAST(dt AS VARCHAR), CAST(ts AS VARCHAR), \
                    CAST(tstz AS VARCHAR), CAST(t AS VARCHAR), ttz, iym, ids, encode(geom, 'hex'), \
                    encode(geog, 'hex'), h, j, encode(vb, 'hex') \
             FROM warehouse.{table} ORDER BY s NULLS LAST"
        ),
    )
    .await
}

/// Snapshot and incremental jobs through UNLOAD load every Redshift type
/// exactly as the cursor path loads it, only new rows on the next
/// incremental run; the statements are UNLOADs with the select quoted as a
/// Redshift literal, the connection sent no COPY, cursor or extended
/// protocol, and no unloaded file is left.
#[tokio::test]
async fn snapshot_and_incremental_through_unload_equal_the_cursor_path_for_every_type() {
    let rs = Redshift::start();
    rs.pg.psql_admin(ALL_TYPES);
    rs.pg.psql_admin(
        "INSERT INTO sales.all_types (s, v, ts, d, tstz) VALUES (7, 'it''s', '2024-03-01 00:00:00', -0.05, \
         '1969-12-31 23:59:59.999999+00')",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    // The reference: the same table read through a cursor, straight from
    // the stand-in.
    client
        .batch_execute(&format!(
            "CREATE CONNECTION rs_cursor TYPE redshift OPTIONS (host '127.0.0.1', port {}, database '{}', \
             user '{RS_USER}', password '{RS_PASSWORD}', sslmode 'disable'); \
             CREATE ETL JOB by_cursor FROM rs_cursor.sales.all_types INTO warehouse.by_cursor SNAPSHOT; \
             RUN ETL JOB by_cursor",
            rs.pg.port, rs.pg.db
        ))
        .await
        .unwrap();
    let cursor_statements = redshift_statements(&rs.pg).len();

    client
        .batch_execute(&format!(
            "{}; \
             CREATE ETL JOB snap FROM rs.sales.all_types INTO warehouse.snap SNAPSHOT; \
             CREATE ETL JOB inc FROM rs.sales.all_types INTO warehouse.inc INCREMENTAL BY ts ALL",
            rs.connection_sql("rs", &format!(", iam_role '{ROLE}'"))
        ))
        .await
        .unwrap();
    for job in ["snap", "inc"] {
        let run = rows(&client, &format!("RUN ETL JOB {job}")).await;
        assert_eq!(run[0][1].as_deref(), Some("succeeded"), "{job}: {run:?}");
    }
    let reference = readback(&client, "by_cursor").await;
    assert_eq!(reference.len(), 3);
    assert_eq!(readback(&client, "snap").await, reference);
    let with_cursor: Vec<_> = reference.iter().filter(|r| r[10].is_some()).cloned().collect();
    assert_eq!(readback(&client, "inc").await, with_cursor);

    // The next incremental run reads only the new row, through UNLOAD.
    rs.pg
        .psql_admin("INSERT INTO sales.all_types (s, ts) VALUES (8, '2024-03-02 00:00:00')");
    let run = rows(&client, "RUN ETL JOB inc").await;
    assert_eq!(run[0][1].as_deref(), Some("succeeded"), "{run:?}");
    let last = rows(
        &client,
        "SELECT rows FROM sluice.runs WHERE job = 'inc' ORDER BY run_id DESC LIMIT 1",
    )
    .await;
    assert_eq!(last[0][0].as_deref(), Some("1"));
    assert_eq!(readback(&client, "inc").await.len(), 3);

    let unloads = rs.proxy.received();
    assert_eq!(unloads.len(), 3, "{unloads:#?}");
    for unload in &unloads {
        assert!(unload.starts_with("UNLOAD ('SELECT "), "{unload}");
        assert!(
            unload.contains(&format!("') TO 's3://{BUCKET}/{FOLDERS}sales.all_types/"))
                && unload.ends_with(&format!(
                    "/' IAM_ROLE '{ROLE}' FORMAT PARQUET PARALLEL ON MAXFILESIZE 256 MB"
                )),
            "{unload}"
        );
        assert!(unload.contains("ST_AsBinary(\"geom\") AS \"geom\""), "{unload}");
        assert!(
            unload.contains("CAST(\"ttz\" AS VARCHAR(65535)) AS \"ttz\""),
            "{unload}"
        );
    }
    // The window's literal is quoted inside the UNLOAD's literal.
    assert!(unloads[2].contains("''2024-03-01 00:00:00"), "{}", unloads[2]);
    // Only the cursor reference declared a cursor; nothing sent COPY, a
    // catalog object Redshift lacks or the extended protocol.
    let sent = redshift_statements(&rs.pg);
    let after: Vec<&String> = sent[cursor_statements..]
        .iter()
        .filter(|s| s.contains("DECLARE") || s.contains("FETCH"))
        .collect();
    assert!(after.is_empty(), "the UNLOAD connection used a cursor: {after:?}");
    assert!(violations(&sent).is_empty(), "{:?}", violations(&sent));
    assert!(rs.leftovers().await.is_empty(), "{:?}", rs.leftovers().await);
    // The log says which path each scan took.
    let log = sluice.log_contents();
    assert_eq!(log.matches("Redshift scan through UNLOAD").count(), 3, "{log}");
    assert_eq!(log.matches("Redshift scan through a cursor").count(), 1, "{log}");
}

/// `unload_min_rows` keeps small tables on the cursor path, and a LIMIT
/// never unloads.
#[tokio::test]
async fn small_tables_and_limits_stay_on_the_cursor() {
    let rs = Redshift::start();
    insert_orders(&rs.pg, 1, 20);
    rs.pg.psql_admin("ANALYZE sales.orders");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "{}; CREATE ETL JOB small FROM rs.sales.orders INTO warehouse.small SNAPSHOT",
            rs.connection_sql("rs", &format!(", iam_role '{ROLE}', unload_min_rows 1000"))
        ))
        .await
        .unwrap();
    assert_eq!(rows(&client, "SELECT id FROM rs.sales.orders LIMIT 3").await.len(), 3);
    let run = rows(&client, "RUN ETL JOB small").await;
    assert_eq!(run[0][1].as_deref(), Some("succeeded"), "{run:?}");
    assert_eq!(fingerprint(&client, "small").await, source_fingerprint(&rs.pg));
    assert!(rs.proxy.received().is_empty(), "{:?}", rs.proxy.received());
    assert!(!sluice.log_contents().contains("through UNLOAD"));
}

/// kill -9 while Redshift is unloading (its files written, the answer not
/// yet sent), then a re-run: the destination equals the source, and the
/// killed run's folder is deleted by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_unload_then_rerun_is_exact_and_cleans_up() {
    let rs = Redshift::start();
    let mut sluice = Sluice::start();
    let mut client = sluice.client().await;
    client
        .batch_execute(&format!(
            "{}; \
             CREATE ETL JOB orders_inc FROM rs.sales.orders INTO warehouse.orders_inc INCREMENTAL BY updated_at ALL; \
             CREATE ETL JOB orders_snap FROM rs.sales.orders INTO warehouse.orders_snap SNAPSHOT",
            rs.connection_sql("rs", &format!(", iam_role '{ROLE}'"))
        ))
        .await
        .unwrap();
    let mut next = 1;
    for round in 0..2 {
        insert_orders(&rs.pg, next, next + 4999);
        next += 5000;
        for job in ["orders_inc", "orders_snap"] {
            rs.proxy.set_delay(Duration::from_secs(30));
            rows(&client, &format!("RUN ETL JOB {job} ASYNC")).await;
            let deadline = Instant::now() + Duration::from_secs(30);
            while rs.leftovers().await.len() < 5 {
                assert!(Instant::now() < deadline, "round {round} {job}: no unloaded files");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sluice.kill9();
            sluice.restart();
            client = sluice.client().await;
            assert!(!rs.leftovers().await.is_empty(), "the killed run's files are there");
            rs.proxy.set_delay(Duration::ZERO);
            let run = rows(&client, &format!("RUN ETL JOB {job}")).await;
            assert_eq!(run[0][1].as_deref(), Some("succeeded"), "round {round} {job}: {run:?}");
            assert!(
                rs.leftovers().await.is_empty(),
                "round {round} {job}: {:?}",
                rs.leftovers().await
            );
        }
        let expected = source_fingerprint(&rs.pg);
        assert_eq!(fingerprint(&client, "orders_inc").await, expected, "round {round}");
        assert_eq!(fingerprint(&client, "orders_snap").await, expected, "round {round}");
    }
    let interrupted = rows(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE status = 'failed' AND error LIKE 'interrupted%'",
    )
    .await;
    assert_eq!(interrupted[0][0].as_deref(), Some("4"));
    assert!(violations(&redshift_statements(&rs.pg)).is_empty());
}

/// A role Redshift may not assume fails the run with 42501 naming
/// iam_role; a bucket Sluice cannot reach, or UNLOAD options that do not
/// go together, are refused before the connection is saved, naming the
/// option.
#[tokio::test]
async fn a_bad_role_or_an_unreachable_bucket_is_named() {
    let rs = Redshift::start();
    insert_orders(&rs.pg, 1, 10);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let wrong_role = "arn:aws:iam::123456789012:role/not-this-one";
    client
        .batch_execute(&format!(
            "{}; CREATE ETL JOB orders FROM rs.sales.orders INTO warehouse.orders SNAPSHOT",
            rs.connection_sql("rs", &format!(", iam_role '{wrong_role}'"))
        ))
        .await
        .unwrap();
    let message = expect_err(&client, "RUN ETL JOB orders", "42501").await;
    assert!(
        message.contains("iam_role") && message.contains(wrong_role) && message.contains("not authorized"),
        "{message}"
    );
    let failed = rows(&client, "SELECT status, sqlstate FROM sluice.runs WHERE job = 'orders'").await;
    assert_eq!(failed[0], [Some("failed".into()), Some("42501".into())]);

    // A bucket that does not exist, and an endpoint nothing listens on.
    let missing = rs
        .connection_sql("missing", &format!(", iam_role '{ROLE}'"))
        .replace("s3://unloads/", "s3://no-such-bucket/");
    let message = expect_err(&client, &missing, "3D000").await;
    assert!(
        message.contains("unload_bucket 's3://no-such-bucket/exports'"),
        "{message}"
    );
    let closed = format!("http://127.0.0.1:{}", free_port());
    let refused = rs
        .connection_sql("refused", &format!(", iam_role '{ROLE}'"))
        .replace(&rs.moto.endpoint(), &closed);
    let message = expect_err(&client, &refused, "08001").await;
    assert!(message.contains("unload_bucket"), "{message}");

    // No role, or unload options without a bucket.
    let message = expect_err(&client, &rs.connection_sql("no_role", ""), "22023").await;
    assert!(message.contains("iam_role"), "{message}");
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION half TYPE redshift OPTIONS (host '127.0.0.1', port {}, database '{}', \
             user '{RS_USER}', password '{RS_PASSWORD}', sslmode 'disable', iam_role '{ROLE}')",
            rs.proxy.port, rs.pg.db
        ),
        "22023",
    )
    .await;
    assert!(message.contains("iam_role needs unload_bucket"), "{message}");
    let saved = rows(&client, "SELECT name FROM sluice.connections ORDER BY name").await;
    assert_eq!(saved, [[Some("rs".to_owned())]]);
}
