//! EXPLAIN, VERIFY and REPAIR ETL JOB through a real client against a real
//! sluice, with PostgreSQL and MariaDB sources and the local warehouse.

use std::path::Path;

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use tokio_postgres::Client;

use crate::common;
use common::*;

/// Five days of orders, 2024-03-01 to 03-05 (UTC), one every 15 minutes:
/// 96 a day, ids 97-192 on 03-02.
const ORDERS: &str = "
CREATE TABLE public.orders (
    id bigint PRIMARY KEY,
    amount numeric(12,2),
    note text,
    updated_at timestamptz NOT NULL
);
INSERT INTO public.orders
SELECT g, g * 1.25, CASE WHEN g % 9 = 0 THEN NULL ELSE 'n😀' || g END,
       timestamptz '2024-03-01 00:00:00+00' + (g - 1) * interval '15 minutes' + interval '1 microsecond'
FROM generate_series(1, 480) g;
ANALYZE public.orders;
";

async fn pg_setup() -> (PgServer, Sluice, Client) {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", ORDERS);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    (pg, sluice, client)
}

/// EXPLAIN's rows as (step, detail).
pub(crate) async fn explain(client: &Client, job: &str) -> Vec<(String, String)> {
    rows(client, &format!("EXPLAIN ETL JOB {job}"))
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect()
}

pub(crate) fn detail<'a>(plan: &'a [(String, String)], step: &str) -> &'a str {
    plan.iter()
        .find(|(s, _)| s == step)
        .map(|(_, d)| d.as_str())
        .unwrap_or_else(|| panic!("no step {step} in {plan:#?}"))
}

#[tokio::test]
async fn explain_shows_queries_window_guard_estimate_and_destination_steps_for_postgres() {
    let (_pg, _sluice, client) = pg_setup().await;
    client
        .batch_execute(
            "CREATE ETL JOB orders FROM shop.public.orders INCREMENTAL BY updated_at SINCE '2024-03-02T00:00:00Z'; \
             CREATE ETL JOB orders_par FROM shop.public.orders INTO par_orders INCREMENTAL BY updated_at ALL WITH (parallelism = 2)",
        )
        .await
        .unwrap();
    let plan = explain(&client, "orders").await;
    assert!(
        detail(&plan, "window low").contains("updated_at > 2024-03-02T00:00:00")
            && detail(&plan, "window low").contains("SINCE"),
        "{plan:#?}"
    );
    let query = detail(&plan, "source query");
    assert!(
        query.contains("FROM \"public\".\"orders\"")
            && query.contains("\"updated_at\" > '2024-03-02")
            && query.contains("\"updated_at\" <= '"),
        "{query}"
    );
    assert!(detail(&plan, "window cap").starts_with("updated_at <= "), "{plan:#?}");
    assert!(detail(&plan, "cap reason").starts_with("newest row"), "{plan:#?}");
    // The planner's estimate for the window: 4 days of 96 rows.
    let estimate = detail(&plan, "estimate");
    let about: u64 = estimate.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((200..=480).contains(&about), "{estimate}");
    assert!(
        detail(&plan, "stage").contains("Parquet files under bq_orders/data/"),
        "{plan:#?}"
    );
    assert!(detail(&plan, "commit").contains("next manifest version"), "{plan:#?}");
    assert_eq!(detail(&plan, "execution"), "on this server");
    assert!(detail(&plan, "watermark").contains("largest updated_at"), "{plan:#?}");

    // After a run the window starts at the watermark; nothing was loaded by EXPLAIN.
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.bq_orders").await, "0");
    let run = rows(&client, "RUN ETL JOB orders").await;
    assert_eq!(run[0][2].as_deref(), Some("384"));
    let plan = explain(&client, "orders").await;
    assert!(detail(&plan, "window low").ends_with("(the watermark)"), "{plan:#?}");

    // Parallel streams: one query per split range.
    let plan = explain(&client, "orders_par").await;
    let first = detail(&plan, "source query 1/2");
    let second = detail(&plan, "source query 2/2");
    assert!(
        first.contains("\"id\" < 241") && second.contains("\"id\" >= 241"),
        "{plan:#?}"
    );
    assert!(detail(&plan, "job").contains("2 parallel streams"));

    expect_err(&client, "EXPLAIN ETL JOB nope", "42704").await;
}

#[tokio::test]
async fn explain_shows_the_plan_for_mariadb() {
    let maria = MariaDb::start();
    maria.sql_db(
        "shop",
        "CREATE TABLE events (id int PRIMARY KEY, kind varchar(20), at datetime(6) NOT NULL); \
         INSERT INTO events VALUES (1, 'a', '2024-01-01 00:00:00.000001'), (2, 'b', '2024-01-02 00:00:00'), \
         (3, NULL, '2024-01-03 12:00:00'); ANALYZE TABLE events;",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB events FROM crm.shop.events INCREMENTAL BY at ALL;",
            maria.port
        ))
        .await
        .unwrap();
    let plan = explain(&client, "events").await;
    assert_eq!(detail(&plan, "window low"), "none: the first run reads every row (ALL)");
    let query = detail(&plan, "source query");
    assert!(
        query.starts_with("SELECT `id`, `kind`, `at` FROM `shop`.`events` WHERE `at` <= TIMESTAMP '"),
        "{query}"
    );
    assert!(detail(&plan, "estimate").starts_with("about "), "{plan:#?}");
    assert!(detail(&plan, "cap reason").contains("newest row"), "{plan:#?}");

    // VERIFY computes the same checksums in MariaDB and in DataFusion.
    rows(&client, "RUN ETL JOB events").await;
    assert!(rows(&client, "VERIFY ETL JOB events").await.is_empty());
    maria.sql_db("shop", "UPDATE events SET id = 20 WHERE id = 2");
    let differ = rows(&client, "VERIFY ETL JOB events BY DAY").await;
    assert_eq!(differ.len(), 1, "{differ:?}");
    assert_eq!(differ[0][0].as_deref(), Some("2024-01-02"));
    assert_eq!(
        (differ[0][1].as_deref(), differ[0][2].as_deref()),
        (Some("1"), Some("1"))
    );
    assert_ne!(
        differ[0][3], differ[0][4],
        "same count, other key: the checksum differs"
    );
    rows(&client, "REPAIR ETL JOB events FROM '2024-01-02' TO '2024-01-03'").await;
    assert!(rows(&client, "VERIFY ETL JOB events").await.is_empty());
    let loaded = rows(&client, "SELECT id FROM warehouse.bq_events ORDER BY id").await;
    assert_eq!(loaded.concat(), [Some("1".into()), Some("3".into()), Some("20".into())]);
}

/// Replaces the warehouse table's current version by one whose rows are
/// `SELECT ... FROM t` (`t`: the current rows), as a hand-made manifest.
async fn rewrite_table(data_dir: &Path, table: &str, select: &str) {
    let dir = data_dir.join("warehouse").join(table);
    let (_, mut manifest) = latest_manifest(data_dir, table);
    let files: Vec<String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| dir.join("data").join(f["name"].as_str().unwrap()).display().to_string())
        .collect();
    let ctx = SessionContext::new();
    ctx.register_parquet("t", &files[0], ParquetReadOptions::default())
        .await
        .unwrap();
    assert_eq!(files.len(), 1, "one load, one file");
    let name = "run-0-0000000000000000-0.parquet";
    let path = dir.join("data").join(name);
    ctx.sql(select)
        .await
        .unwrap()
        .write_parquet(
            path.to_str().unwrap(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
        .unwrap();
    let rows: usize = ctx
        .read_parquet(path.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap()
        .count()
        .await
        .unwrap();
    let version = manifest["version"].as_u64().unwrap() + 1;
    manifest["version"] = version.into();
    manifest["files"] = serde_json::json!([{
        "name": name,
        "rows": rows,
        "bytes": std::fs::metadata(&path).unwrap().len(),
    }]);
    std::fs::write(
        dir.join("_manifests").join(format!("{version:020}.json")),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}

#[tokio::test]
async fn verify_names_exactly_the_changed_buckets_and_repair_makes_them_equal_again() {
    let (pg, sluice, client) = pg_setup().await;
    client
        .batch_execute("CREATE ETL JOB orders FROM shop.public.orders INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    expect_err(&client, "VERIFY ETL JOB orders", "55000").await;
    rows(&client, "RUN ETL JOB orders").await;
    let watermark = one(&client, "SELECT watermark_to FROM sluice.runs WHERE job = 'orders'").await;

    // Freshly loaded: every bucket agrees.
    assert!(rows(&client, "VERIFY ETL JOB orders").await.is_empty());
    assert!(rows(&client, "VERIFY ETL JOB orders BY HOUR").await.is_empty());

    // Rows 100-102 (2024-03-02) deleted, rows 300 and 301 (2024-03-04) twice.
    rewrite_table(
        sluice.data_dir(),
        "bq_orders",
        "SELECT * FROM t WHERE id NOT IN (100, 101, 102) UNION ALL SELECT * FROM t WHERE id IN (300, 301)",
    )
    .await;
    let differ = rows(&client, "VERIFY ETL JOB orders BY DAY").await;
    let buckets: Vec<_> = differ.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(buckets, ["2024-03-02", "2024-03-04"], "{differ:?}");
    assert_eq!(
        (differ[0][1].as_deref(), differ[0][2].as_deref()),
        (Some("96"), Some("93"))
    );
    assert_eq!(
        (differ[1][1].as_deref(), differ[1][2].as_deref()),
        (Some("96"), Some("98"))
    );
    let by_hour = rows(
        &client,
        "VERIFY ETL JOB orders BETWEEN '2024-03-02' AND '2024-03-03' BY HOUR",
    )
    .await;
    let hours: Vec<_> = by_hour.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(
        hours,
        ["2024-03-02 00:00", "2024-03-02 01:00"],
        "rows 100-102: 00:45 to 01:15"
    );
    let saved = rows(
        &client,
        "SELECT bucket_by, buckets, differing FROM sluice.verifications WHERE job = 'orders' ORDER BY verified_at",
    )
    .await;
    assert_eq!(saved.len(), 4);
    assert_eq!(saved[2], [Some("day".into()), Some("5".into()), Some("2".into())]);

    // Repair one day: only the other bucket still differs.
    let repair = rows(&client, "REPAIR ETL JOB orders FROM '2024-03-02' TO '2024-03-03'").await;
    assert_eq!(
        (repair[0][1].as_deref(), repair[0][2].as_deref()),
        (Some("succeeded"), Some("96"))
    );
    let differ = rows(&client, "VERIFY ETL JOB orders").await;
    assert_eq!(differ.len(), 1);
    assert_eq!(differ[0][0].as_deref(), Some("2024-03-04"));
    rows(
        &client,
        "REPAIR ETL JOB orders FROM '2024-03-04T00:00:00Z' TO '2024-03-05'",
    )
    .await;
    assert!(rows(&client, "VERIFY ETL JOB orders").await.is_empty());

    // The destination equals the source row by row; the watermark stayed.
    let loaded = rows(
        &client,
        "SELECT id, CAST(amount AS VARCHAR), note, CAST(updated_at AS BIGINT) FROM warehouse.bq_orders ORDER BY id",
    )
    .await;
    let source = pg.psql_admin_db(
        "shop",
        "SELECT id, amount, coalesce(note, '<null>'), (extract(epoch FROM updated_at) * 1000000)::bigint \
         FROM orders ORDER BY id",
    );
    let source: Vec<String> = source.lines().map(str::to_owned).collect();
    let loaded: Vec<String> = loaded
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}",
                r[0].as_deref().unwrap(),
                r[1].as_deref().unwrap(),
                r[2].as_deref().unwrap_or("<null>"),
                r[3].as_deref().unwrap()
            )
        })
        .collect();
    assert_eq!(loaded, source);
    let runs = rows(
        &client,
        "SELECT trigger, watermark_from, watermark_to FROM sluice.runs WHERE job = 'orders' ORDER BY run_id",
    )
    .await;
    assert_eq!(
        runs.iter().map(|r| r[0].clone().unwrap()).collect::<Vec<_>>(),
        ["manual", "repair", "repair"]
    );
    let next = rows(&client, "RUN ETL JOB orders").await;
    assert_eq!(
        (next[0][2].as_deref(), next[0][5].as_deref()),
        (Some("0"), Some(watermark.as_str())),
        "the watermark did not move"
    );
}

#[tokio::test]
async fn repair_and_verify_refuse_what_they_cannot_do() {
    let (_pg, _sluice, client) = pg_setup().await;
    client
        .batch_execute(
            "CREATE ETL JOB snap FROM shop.public.orders INTO snap_orders SNAPSHOT; \
             CREATE ETL JOB inc FROM shop.public.orders INCREMENTAL BY updated_at ALL",
        )
        .await
        .unwrap();
    expect_err(&client, "VERIFY ETL JOB nope", "42704").await;
    expect_err(
        &client,
        "REPAIR ETL JOB nope FROM '2024-01-01' TO '2024-01-02'",
        "42704",
    )
    .await;
    expect_err(
        &client,
        "REPAIR ETL JOB snap FROM '2024-01-01' TO '2024-01-02'",
        "0A000",
    )
    .await;
    expect_err(&client, "REPAIR ETL JOB inc FROM '2024-01-01' TO '2024-01-02'", "55000").await;
    rows(&client, "RUN ETL JOB snap").await;
    rows(&client, "RUN ETL JOB inc").await;
    // A snapshot is one bucket: the whole table.
    assert!(rows(&client, "VERIFY ETL JOB snap").await.is_empty());
    expect_err(&client, "VERIFY ETL JOB snap BY DAY", "0A000").await;
    expect_err(&client, "REPAIR ETL JOB inc FROM '2024-03-03' TO '2024-03-02'", "22023").await;
    let failed = one(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE trigger = 'repair' AND status = 'failed'",
    )
    .await;
    assert_eq!(failed, "1", "a refused window is a failed repair run");
}

/// The examples of docs/operations.md's Freshness, Many jobs, Explain,
/// Verify and Repair sections run, in order, through psql.
#[tokio::test]
async fn operations_examples_run() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.orders (id bigint PRIMARY KEY, amount numeric(12,2), updated_at timestamptz); \
         INSERT INTO public.orders SELECT g, g * 2.5, now() FROM generate_series(1, 10) g; ANALYZE;",
    );
    let sluice = Sluice::start();
    create_shop_connection(&sluice.client().await, &pg).await;
    let markdown = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    let section = |from: &str, to: &str| {
        let start = markdown.find(from).unwrap_or_else(|| panic!("no {from} section"));
        let end = start
            + markdown[start..]
                .find(to)
                .unwrap_or_else(|| panic!("{to} does not follow {from}"));
        &markdown[start..end]
    };
    let freshness = section("\n## Freshness\n", "\n## Schema changes\n");
    let explain_to_repair = section("\n## Explain\n", "\n## Backups\n");
    let mut ran = 0;
    for (info, sql) in crate::docs_examples::code_blocks(freshness)
        .into_iter()
        .chain(crate::docs_examples::code_blocks(explain_to_repair))
    {
        if info == "sql" {
            let output = sluice.psql(&sql);
            assert!(
                output.status.success(),
                "example failed:\n{sql}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            ran += 1;
        }
    }
    assert_eq!(ran, 6, "the five sections' examples");
}

/// Text keys (non-ASCII too), date and zoned timestamp cursors: the source
/// and DataFusion render them alike, so a fresh load verifies clean, and a
/// changed key shows in its bucket.
#[tokio::test]
async fn checksums_agree_across_postgres_mariadb_and_the_warehouse_for_text_dates_and_timestamps() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.tags (code text PRIMARY KEY, day date NOT NULL, n int); \
         INSERT INTO public.tags SELECT 'tag-é😀-' || g, date '2024-01-01' + g, g FROM generate_series(1, 60) g;",
    );
    let maria = MariaDb::start();
    maria.sql_db(
        "shop",
        "CREATE TABLE tags (code varchar(40) PRIMARY KEY, seen timestamp(6) NOT NULL) CHARACTER SET utf8mb4; \
         INSERT INTO tags VALUES ('ü-1', '2024-02-01 10:00:00.5'), ('ü-2', '2024-02-01 11:30:00'), \
         ('x 3', '2024-03-05 00:00:00.000001');",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB pg_tags FROM shop.public.tags INCREMENTAL BY day ALL; \
             CREATE ETL JOB maria_tags FROM crm.shop.tags INTO maria_tags INCREMENTAL BY seen ALL; \
             RUN ETL JOB pg_tags; RUN ETL JOB maria_tags;",
            maria.port
        ))
        .await
        .unwrap();
    for by in ["", " BY HOUR", " BY MONTH"] {
        assert!(
            rows(&client, &format!("VERIFY ETL JOB pg_tags{by}")).await.is_empty(),
            "{by}"
        );
        assert!(
            rows(&client, &format!("VERIFY ETL JOB maria_tags{by}"))
                .await
                .is_empty(),
            "{by}"
        );
    }
    let buckets = one(
        &client,
        "SELECT buckets FROM sluice.verifications WHERE job = 'pg_tags' AND bucket_by = 'month'",
    )
    .await;
    assert_eq!(buckets, "3", "January to March");
    pg.psql_admin_db("shop", "UPDATE public.tags SET code = 'renamed' WHERE n = 40");
    let differ = rows(&client, "VERIFY ETL JOB pg_tags BY MONTH").await;
    assert_eq!(differ.len(), 1);
    assert_eq!(differ[0][0].as_deref(), Some("2024-02"));
    maria.sql_db("shop", "DELETE FROM tags WHERE code = 'ü-2'");
    let differ = rows(&client, "VERIFY ETL JOB maria_tags BY HOUR").await;
    assert_eq!(differ.len(), 1);
    assert_eq!(
        (
            differ[0][0].as_deref(),
            differ[0][1].as_deref(),
            differ[0][2].as_deref()
        ),
        (Some("2024-02-01 11:00"), Some("0"), Some("1"))
    );
}

/// EXPLAIN shows a BigQuery destination's steps; VERIFY computes the
/// checksums in BigQuery (the fake runs the query) and names a changed
/// bucket (REPAIR into BigQuery: `bq_repair.rs`).
#[tokio::test]
async fn bigquery_destinations_explain_and_verify() {
    let env = crate::bigquery::setup(&[]).await;
    let client = &env.client;
    client
        .batch_execute("CREATE ETL JOB orders_bq FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    let plan = explain(client, "orders_bq").await;
    assert!(
        detail(&plan, "stage").contains("test-project.raw_data.orders"),
        "{plan:#?}"
    );
    assert!(detail(&plan, "load jobs").contains("load jobs"), "{plan:#?}");
    assert!(detail(&plan, "commit").contains("WRITE_APPEND"), "{plan:#?}");
    rows(client, "RUN ETL JOB orders_bq").await;
    assert!(rows(client, "VERIFY ETL JOB orders_bq BY HOUR").await.is_empty());
    assert_eq!(
        env.fake.count_requests("/queries"),
        1,
        "the checksum query ran in BigQuery"
    );
    env.pg.psql_admin_db("shop", "DELETE FROM public.orders WHERE id = 130");
    let differ = rows(client, "VERIFY ETL JOB orders_bq BY HOUR").await;
    assert_eq!(differ.len(), 1, "{differ:?}");
    assert_eq!(
        (
            differ[0][0].as_deref(),
            differ[0][1].as_deref(),
            differ[0][2].as_deref()
        ),
        (Some("2024-03-01 02:00"), Some("59"), Some("60"))
    );

    // A BigQuery source counts its rows in BigQuery too (it has no primary
    // key: the snapshot is compared by count).
    client
        .batch_execute(
            "CREATE ETL JOB from_bq FROM wh.raw_data.orders INTO warehouse.orders_back SNAPSHOT; RUN ETL JOB from_bq",
        )
        .await
        .unwrap();
    let before = env.fake.count_requests("/queries");
    assert!(rows(client, "VERIFY ETL JOB from_bq").await.is_empty());
    assert_eq!(
        env.fake.count_requests("/queries"),
        before + 1,
        "the count ran in BigQuery"
    );
}

/// A repair never overlaps a run of its job: while one runs it fails with
/// 55006 and changes nothing; afterwards it runs.
#[tokio::test]
async fn repair_fails_with_55006_while_the_job_runs() {
    let (pg, _sluice, client) = pg_setup().await;
    client
        .batch_execute(
            "CREATE ETL JOB orders FROM shop.public.orders INCREMENTAL BY updated_at ALL; RUN ETL JOB orders",
        )
        .await
        .unwrap();
    // A lock at the source holds the next run in its read.
    let mut config = pg.config();
    config.dbname("shop");
    let locker = connect(&config).await.unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    rows(&client, "RUN ETL JOB orders ASYNC").await;
    let message = expect_err(
        &client,
        "REPAIR ETL JOB orders FROM '2024-03-02' TO '2024-03-03'",
        "55006",
    )
    .await;
    assert!(message.contains("already running"), "{message}");
    locker.batch_execute("COMMIT").await.unwrap();
    let status = loop {
        let status = one(
            &client,
            "SELECT status FROM sluice.runs WHERE job = 'orders' ORDER BY run_id DESC LIMIT 1",
        )
        .await;
        if status != "running" {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status, "succeeded");
    let repair = rows(&client, "REPAIR ETL JOB orders FROM '2024-03-02' TO '2024-03-03'").await;
    assert_eq!(repair[0][1].as_deref(), Some("succeeded"));
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM sluice.runs WHERE job = 'orders' AND trigger = 'repair'"
        )
        .await,
        "1",
        "the refused repair left no run"
    );
}

/// Local files: EXPLAIN shows the DataFusion query and no estimate; VERIFY
/// computes the source side in the files' own DataFusion session.
#[tokio::test]
async fn local_files_explain_and_verify() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let files = tempfile::tempdir().unwrap();
    let csv = files.path().join("events.csv");
    std::fs::write(
        &csv,
        "id,kind,at\n1,a,2024-01-01T10:00:00Z\n2,b,2024-01-02T11:30:00.25Z\n3,c,2024-01-02T12:00:00Z\n",
    )
    .unwrap();
    client
        .batch_execute(&format!(
            "CREATE CONNECTION files TYPE local OPTIONS (path '{}'); \
             CREATE ETL JOB events FROM files.files.events INCREMENTAL BY at ALL; RUN ETL JOB events",
            files.path().display()
        ))
        .await
        .unwrap();
    let plan = explain(&client, "events").await;
    assert!(
        detail(&plan, "source query").contains("FROM \"events\" WHERE \"at\" > "),
        "{plan:#?}"
    );
    assert_eq!(detail(&plan, "estimate"), "the source gives no row estimate");
    assert!(rows(&client, "VERIFY ETL JOB events BY HOUR").await.is_empty());
    // A row the job never loaded, back-dated into a loaded hour.
    std::fs::write(
        &csv,
        "id,kind,at\n1,a,2024-01-01T10:00:00Z\n2,b,2024-01-02T11:30:00.25Z\n3,c,2024-01-02T12:00:00Z\n4,d,2024-01-02T11:45:00Z\n",
    )
    .unwrap();
    let differ = rows(&client, "VERIFY ETL JOB events BY HOUR").await;
    assert_eq!(differ.len(), 1, "{differ:?}");
    assert_eq!(
        (
            differ[0][0].as_deref(),
            differ[0][1].as_deref(),
            differ[0][2].as_deref()
        ),
        (Some("2024-01-02 11:00"), Some("2"), Some("1"))
    );
}
