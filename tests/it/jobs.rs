//! ETL jobs end to end: define, run and inspect jobs from a Postgres client,
//! moving rows from real PostgreSQL and MariaDB into the local warehouse.

use crate::common;

use common::*;
use tokio_postgres::Client;

const ORDERS: &str = "
CREATE TABLE public.orders (
    id bigint PRIMARY KEY,
    customer_id int NOT NULL,
    amount numeric(12,2),
    status text,
    note text,
    updated_at timestamptz NOT NULL
);
INSERT INTO public.orders
SELECT g, g % 7, g * 1.25, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'open' END,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'n😀' || g END,
       now() - interval '10 days' + g * interval '1 minute'
FROM generate_series(1, 1000) g;
CREATE TABLE public.products (sku text PRIMARY KEY, price numeric(10,2));
INSERT INTO public.products VALUES ('a', 1.50), ('b', 2.25);
";

async fn setup() -> (PgServer, Sluice, Client) {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", ORDERS);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    (pg, sluice, client)
}

#[tokio::test]
async fn incremental_job_loads_each_row_exactly_once() {
    let (pg, _sluice, client) = setup().await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM shop.public.orders INCREMENTAL BY updated_at BACKFILL 30 DAYS SCHEDULE HOURLY",
        )
        .await
        .unwrap();
    // The destination table exists (empty) as soon as the job does.
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.bq_orders").await, "0");

    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(summary[0][2].as_deref(), Some("1000"));
    assert!(
        summary[0][3].as_deref().unwrap().parse::<i64>().unwrap() > 0,
        "bytes written"
    );
    let source_sum = pg.psql_admin_db("shop", "SELECT sum(amount), count(note) FROM orders");
    let loaded = rows(
        &client,
        "SELECT sum(amount), count(note), count(DISTINCT id) FROM warehouse.bq_orders",
    )
    .await;
    assert_eq!(
        format!(
            "{}|{}",
            loaded[0][0].as_deref().unwrap(),
            loaded[0][1].as_deref().unwrap()
        ),
        source_sum.trim()
    );
    assert_eq!(loaded[0][2].as_deref(), Some("1000"));
    let emoji = one(&client, "SELECT note FROM warehouse.bq_orders WHERE id = 7").await;
    assert_eq!(emoji, "n😀7");

    // Nothing new: the run loads nothing and keeps the watermark.
    let again = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("0"));
    assert_eq!(again[0][5], again[0][6], "watermark unchanged");

    // New and changed rows past the watermark arrive once.
    pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, 1, 1.00, 'new', NULL, now() FROM generate_series(1001, 1050) g; \
         UPDATE orders SET status = 'refunded', updated_at = now() WHERE id = 1;",
    );
    let third = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(third[0][2].as_deref(), Some("51"));
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.bq_orders").await, "1051");
    assert_eq!(
        one(&client, "SELECT count(*) FROM warehouse.bq_orders WHERE id = 1").await,
        "2",
        "updates append"
    );

    let runs = rows(&client, "SHOW ETL RUNS FOR orders_inc").await;
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r[2].as_deref() == Some("succeeded")), "{runs:?}");
    let backfill_bound = runs[0][8].clone().expect("the first run starts at the backfill bound");
    assert!(backfill_bound.ends_with('Z'), "{backfill_bound}");
    assert_eq!(runs[1][8], runs[0][9], "each run starts where the previous one ended");
    // Statements write times in the session's DateStyle, as queries do.
    client.batch_execute("SET DateStyle = 'German'").await.unwrap();
    let german = rows(&client, "SHOW ETL RUNS FOR orders_inc").await;
    let queried = rows(
        &client,
        "SELECT started_at FROM sluice.runs WHERE job = 'orders_inc' ORDER BY run_id",
    )
    .await;
    let started: Vec<_> = german.iter().map(|r| r[4].clone()).collect();
    assert_eq!(started, queried.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>());
    assert_eq!(
        started[0].as_deref().unwrap().find('.'),
        Some(2),
        "dd.mm.yyyy: {started:?}"
    );
    client.batch_execute("SET DateStyle = 'ISO'").await.unwrap();
    let from_sql = rows(
        &client,
        "SELECT job, status, rows FROM sluice.runs WHERE rows > 0 ORDER BY run_id",
    )
    .await;
    assert_eq!(from_sql.len(), 2);
    let jobs = rows(
        &client,
        "SELECT name, load, schedule, last_run_status, watermark IS NOT NULL FROM sluice.jobs",
    )
    .await;
    assert_eq!(
        jobs[0],
        [
            Some("orders_inc".into()),
            Some("INCREMENTAL BY updated_at BACKFILL 30 DAYS".into()),
            Some("HOURLY".into()),
            Some("succeeded".into()),
            Some("t".into())
        ]
    );
}

#[tokio::test]
async fn snapshot_job_replaces_the_table_and_jobs_are_validated() {
    let (pg, _sluice, client) = setup().await;
    client
        .batch_execute(
            "CREATE ETL JOB products_snap FROM shop.public.products (sku, price) INTO warehouse.products \
             SNAPSHOT COLUMNS (price STRING)",
        )
        .await
        .unwrap();
    rows(&client, "RUN ETL JOB products_snap").await;
    pg.psql_admin_db(
        "shop",
        "DELETE FROM products WHERE sku = 'a'; INSERT INTO products VALUES ('c', 9.99);",
    );
    let summary = rows(&client, "RUN ETL JOB products_snap").await;
    assert_eq!(summary[0][2].as_deref(), Some("2"));
    let loaded = rows(&client, "SELECT sku, price FROM warehouse.products ORDER BY sku").await;
    assert_eq!(
        loaded,
        [
            [Some("b".into()), Some("2.25".into())],
            [Some("c".into()), Some("9.99".into())]
        ]
    );
    let shown = rows(&client, "SHOW CREATE ETL JOB products_snap").await;
    assert_eq!(
        shown[0][1].as_deref(),
        Some(
            "CREATE ETL JOB products_snap FROM shop.public.products (sku, price) INTO warehouse.products SNAPSHOT \
             COLUMNS (price STRING) SCHEDULE MANUAL WITH (batch_rows = 8192, max_retries = 3, catch_up = 'once');"
        )
    );

    // What may change, changes; what defines the destination table may not.
    client
        .batch_execute("ALTER ETL JOB products_snap PAUSE; ALTER ETL JOB products_snap SET SCHEDULE EVERY 15 MINUTES")
        .await
        .unwrap();
    let job = rows(&client, "SELECT paused, schedule FROM sluice.jobs").await;
    assert_eq!(job[0], [Some("t".into()), Some("EVERY 15 MINUTES".into())]);
    client
        .batch_execute("ALTER ETL JOB products_snap RESUME")
        .await
        .unwrap();
    // A loaded column's type cannot change (editing a job, tests/it/edit_jobs.rs).
    let message = expect_err(
        &client,
        "ALTER ETL JOB products_snap SET COLUMNS (price NUMERIC)",
        "55000",
    )
    .await;
    assert!(message.contains("\"price\" is STRING"), "{message}");
    expect_err(&client, "ALTER ETL JOB nope PAUSE", "42704").await;

    // Validation: nothing is saved when something is wrong.
    let message = expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.orders (id, nope) SNAPSHOT",
        "42703",
    )
    .await;
    assert!(message.contains("nope") && message.contains("updated_at"), "{message}");
    let message = expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.orders INCREMENTAL BY status",
        "22023",
    )
    .await;
    assert!(message.contains("timestamp, date or integer"), "{message}");
    expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.orders INCREMENTAL BY id BACKFILL 3 DAYS",
        "22023",
    )
    .await;
    expect_err(&client, "CREATE ETL JOB bad FROM shop.public.nope SNAPSHOT", "42704").await;
    expect_err(
        &client,
        "CREATE ETL JOB bad FROM nowhere.public.orders SNAPSHOT",
        "42704",
    )
    .await;
    expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.orders SNAPSHOT COLUMNS (status WIBBLE)",
        "22023",
    )
    .await;
    expect_err(
        &client,
        "CREATE ETL JOB products_snap FROM shop.public.orders SNAPSHOT",
        "42710",
    )
    .await;
    client
        .batch_execute("CREATE ETL JOB IF NOT EXISTS products_snap FROM shop.public.orders SNAPSHOT")
        .await
        .unwrap();
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs").await, "1");
    expect_err(&client, "RUN ETL JOB nope", "42704").await;

    // Jobs hold on to their connection.
    let message = expect_err(&client, "DROP CONNECTION shop", "2BP01").await;
    assert!(message.contains("products_snap"), "{message}");
    let used = rows(
        &client,
        "SELECT used_by_jobs, last_used_at IS NOT NULL FROM sluice.connections",
    )
    .await;
    assert_eq!(used[0], [Some("{products_snap}".into()), Some("t".into())]);
    client.batch_execute("DROP CONNECTION shop CASCADE").await.unwrap();
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs").await, "0");
}

#[tokio::test]
async fn mariadb_source_loads_into_the_warehouse() {
    let maria = MariaDb::start();
    maria.sql_db(
        "shop",
        "CREATE TABLE events (id int PRIMARY KEY, kind varchar(20), at datetime(6) NOT NULL); \
         INSERT INTO events VALUES (1, 'a', '2024-01-01 00:00:00.000001'), (2, 'b', '2024-01-02 00:00:00'), \
         (3, NULL, '2024-01-03 12:00:00');",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB events FROM crm.shop.events INCREMENTAL BY id ALL;",
            maria.port
        ))
        .await
        .unwrap();
    let summary = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(summary[0][2].as_deref(), Some("3"));
    assert_eq!(summary[0][6].as_deref(), Some("3"), "integer watermark");
    maria.sql_db("shop", "INSERT INTO events VALUES (4, 'd', '2024-01-04 00:00:00')");
    let summary = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(
        (summary[0][2].as_deref(), summary[0][5].as_deref()),
        (Some("1"), Some("3"))
    );
    let loaded = rows(&client, "SELECT id, kind FROM warehouse.bq_events ORDER BY id").await;
    assert_eq!(
        loaded.iter().map(|r| r[0].clone().unwrap()).collect::<Vec<_>>(),
        ["1", "2", "3", "4"]
    );
    assert_eq!(loaded[2][1], None);
}

#[tokio::test]
async fn psql_shows_run_progress_notices() {
    let (_pg, sluice, client) = setup().await;
    client
        .batch_execute("CREATE ETL JOB orders_all FROM shop.public.orders SNAPSHOT")
        .await
        .unwrap();
    let output = sluice.psql("RUN ETL JOB orders_all;");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(notices.contains("NOTICE:  run 1 succeeded: 1000 rows, "), "{notices}");
    assert!(
        notices.contains(" MB stored in ") && notices.contains("rows/s)"),
        "{notices}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("succeeded") && stdout.contains("1000"), "{stdout}");
}

#[tokio::test]
async fn a_long_run_sends_a_progress_notice_every_second() {
    let (pg, sluice, client) = setup().await;
    // 600 rows produced 5 ms apart, extracted in batches of 50: about 3 s.
    pg.psql_admin_db(
        "shop",
        "CREATE VIEW public.trickle AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 600) g, \
         LATERAL (SELECT pg_sleep(0.005) WHERE g > 0) s;
         GRANT SELECT ON public.trickle TO etl;",
    );
    client
        .batch_execute("CREATE ETL JOB trickle FROM shop.public.trickle SNAPSHOT WITH (batch_rows = 50)")
        .await
        .unwrap();
    let output = sluice.psql("RUN ETL JOB trickle;");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let notices = String::from_utf8_lossy(&output.stderr);
    let progress: Vec<(u64, f64)> = notices
        .lines()
        .filter_map(|line| line.split_once("NOTICE:  run 1: ").map(|(_, rest)| rest))
        .map(|rest| {
            let fields: Vec<&str> = rest.split(", ").collect();
            let rows = fields[0].strip_suffix(" rows").unwrap().parse().unwrap();
            let mb = fields[1].strip_suffix(" MB read").unwrap().parse().unwrap();
            assert!(fields[2].ends_with(" rows/s") && fields[3].ends_with(" s"), "{rest}");
            (rows, mb)
        })
        .collect();
    assert!(progress.len() >= 2, "{notices}");
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
        "{notices}"
    );
    let (rows, mb) = *progress.last().unwrap();
    assert!(rows > 0 && rows < 600 && mb > 0.0, "{notices}");
    assert!(notices.contains("NOTICE:  run 1 succeeded: 600 rows, "), "{notices}");
}

#[tokio::test]
async fn every_kind_of_value_arrives_exactly_through_a_run() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        r#"CREATE TABLE public.kinds (
            id int PRIMARY KEY, i2 int2, i8 int8, n numeric(38,9), big numeric(60,20), f8 float8, f4 float4,
            b bool, t text, bin bytea, d date, ts timestamp, tstz timestamptz, tm time, u uuid, j jsonb,
            ints int[], texts text[], money_col money);
        INSERT INTO public.kinds VALUES
          (1, -32768, 9223372036854775807, 99999999999999999999999999999.999999999,
           1234567890123456789012345678901234567890.12345678901234567890, '-0'::float8, 1.5,
           true, 'żółw 😀', '\x00ff10'::bytea, '0001-01-01', '2024-02-29 23:59:59.999999',
           '2024-01-01 00:00:00.000001+02', '23:59:59.999999', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
           '{"a": [1, 2], "b": null}', '{}', '{"x","y,z"}', 12.34),
          (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);"#,
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB kinds FROM shop.public.kinds SNAPSHOT;",
            pg.port
        ))
        .await
        .unwrap();
    let summary = rows(&client, "RUN ETL JOB kinds").await;
    assert_eq!(summary[0][2].as_deref(), Some("2"));
    let loaded = rows(
        &client,
        "SELECT i2, i8, n, big, f8, f4, b, t, bin, d, ts, tstz, tm, u, j, ints, texts, money_col \
         FROM warehouse.bq_kinds ORDER BY id",
    )
    .await;
    let expected: Vec<Option<String>> = [
        "-32768",
        "9223372036854775807",
        "99999999999999999999999999999.999999999",
        "1234567890123456789012345678901234567890.12345678901234567890",
        "0",
        "1.5",
        "t",
        "żółw 😀",
        "\\x00ff10",
        "0001-01-01",
        "2024-02-29 23:59:59.999999",
        "2023-12-31 22:00:00.000001+00",
        "23:59:59.999999",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        r#"{"a": [1, 2], "b": null}"#,
        "{}",
        r#"{x,"y,z"}"#,
        "12.34",
    ]
    .iter()
    .map(|v| Some(v.to_string()))
    .collect();
    assert_eq!(loaded[0], expected);
    assert!(
        loaded[1].iter().all(Option::is_none),
        "NULLs stay NULL: {:?}",
        loaded[1]
    );
    // The wire shows negative zero as 0; the stored value keeps its sign.
    let sign = rows(&client, "SELECT 1.0 / f8 < 0 FROM warehouse.bq_kinds WHERE id = 1").await;
    assert_eq!(sign[0][0].as_deref(), Some("t"), "negative zero keeps its sign");
}

#[tokio::test]
async fn lookback_loads_late_rows_once_and_skips_rows_read_again() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE events (id bigint PRIMARY KEY, kind text, at timestamptz NOT NULL); \
         INSERT INTO events SELECT g, 'on time', timestamptz '2024-01-01 12:00:00+00' + g * interval '1 minute' \
         FROM generate_series(1, 100) g;",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY at ALL LOOKBACK '2 hours' DEDUPE ON (id);",
            pg.port
        ))
        .await
        .unwrap();
    let first = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(first[0][2].as_deref(), Some("100"));
    assert_eq!(first[0][6].as_deref(), Some("2024-01-01T13:40:00Z"));

    // Late rows with a cursor inside the window (after 11:40), one outside
    // it, and one new row.
    pg.psql_admin_db(
        "shop",
        "INSERT INTO events SELECT g, 'late', timestamptz '2024-01-01 13:00:00+00' FROM generate_series(101, 110) g; \
         INSERT INTO events VALUES (111, 'too late', '2024-01-01 10:00:00+00'), (112, 'new', '2024-01-01 14:00:00+00');",
    );
    let second = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(
        (
            second[0][2].as_deref(),
            second[0][5].as_deref(),
            second[0][6].as_deref()
        ),
        (Some("11"), Some("2024-01-01T13:40:00Z"), Some("2024-01-01T14:00:00Z")),
        "only the late rows in the window and the new one are loaded: {second:?}"
    );
    let third = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(
        third[0][2].as_deref(),
        Some("0"),
        "rows read again are not loaded again"
    );
    assert_eq!(
        third[0][6].as_deref(),
        Some("2024-01-01T14:00:00Z"),
        "the watermark never moves back"
    );

    let loaded = rows(
        &client,
        "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE kind = 'late'), max(id) FILTER (WHERE id <> 112) \
         FROM warehouse.bq_events",
    )
    .await;
    assert_eq!(
        loaded[0],
        [
            Some("111".into()),
            Some("111".into()),
            Some("10".into()),
            Some("110".into())
        ],
        "row 111 is older than the window and stays behind"
    );

    // The lookback is part of the definition.
    let shown = one(&client, "SELECT load FROM sluice.jobs").await;
    assert_eq!(shown, "INCREMENTAL BY at ALL LOOKBACK 2 HOURS DEDUPE ON (id)");
    let create = rows(&client, "SHOW CREATE ETL JOB events").await;
    assert!(
        create[0][1]
            .as_deref()
            .unwrap()
            .contains("INCREMENTAL BY at ALL LOOKBACK 2 HOURS DEDUPE ON (id) SCHEDULE"),
        "{create:?}"
    );

    // Validation at CREATE: nothing is saved when something is wrong.
    let message = expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.events INCREMENTAL BY at ALL LOOKBACK 2 HOURS DEDUPE ON (nope)",
        "42703",
    )
    .await;
    assert!(message.contains("nope") && message.contains("kind"), "{message}");
    let message = expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.events (id, at) INCREMENTAL BY at ALL LOOKBACK 2 HOURS DEDUPE ON (kind)",
        "22023",
    )
    .await;
    assert!(message.contains("loaded columns"), "{message}");
    let message = expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.events INCREMENTAL BY at ALL LOOKBACK 500 DEDUPE ON (id)",
        "22023",
    )
    .await;
    assert!(message.contains("2 HOURS"), "{message}");
    let message = expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.events INCREMENTAL BY id ALL LOOKBACK 2 HOURS DEDUPE ON (id)",
        "22023",
    )
    .await;
    assert!(message.contains("LOOKBACK 1000"), "{message}");
    expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.events SNAPSHOT LOOKBACK 2 HOURS DEDUPE ON (id)",
        "42601",
    )
    .await;
    expect_err(
        &client,
        "CREATE ETL JOB bad FROM shop.public.events INCREMENTAL BY at ALL LOOKBACK 0 HOURS DEDUPE ON (id)",
        "42601",
    )
    .await;
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs").await, "1");

    // An integer cursor looks back a number of values.
    client
        .batch_execute(
            "CREATE ETL JOB by_id FROM shop.public.events INTO warehouse.by_id INCREMENTAL BY id ALL LOOKBACK 5 DEDUPE ON (id)",
        )
        .await
        .unwrap();
    let by_id = |sql: &'static str| {
        let client = &client;
        async move { rows(client, sql).await[0][2].clone().unwrap() }
    };
    assert_eq!(by_id("RUN ETL JOB by_id").await, "112");
    pg.psql_admin_db(
        "shop",
        "INSERT INTO events VALUES (115, 'x', now()), (120, 'x', now());",
    );
    assert_eq!(by_id("RUN ETL JOB by_id").await, "2");
    // 117 is within 5 of the watermark 120, 113 is not.
    pg.psql_admin_db(
        "shop",
        "INSERT INTO events VALUES (117, 'late', now()), (113, 'too late', now());",
    );
    assert_eq!(by_id("RUN ETL JOB by_id").await, "1");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), max(id) FILTER (WHERE id < 115) FROM warehouse.by_id"
        )
        .await[0],
        [Some("115".into()), Some("115".into()), Some("112".into())]
    );
}

/// A clause given twice used to be accepted with the last one winning
/// (`INCREMENTAL BY a SNAPSHOT` made a snapshot job); now it is a syntax
/// error naming the clause, in both protocols, and nothing is saved.
#[tokio::test]
async fn a_clause_given_twice_is_refused_and_nothing_is_saved() {
    let (_pg, _sluice, client) = setup().await;
    for sql in [
        "CREATE ETL JOB twice FROM shop.public.orders INCREMENTAL BY updated_at SNAPSHOT",
        "CREATE ETL JOB twice FROM shop.public.orders INTO warehouse.a INTO warehouse.b SNAPSHOT",
        "CREATE ETL JOB twice FROM shop.public.orders SNAPSHOT SCHEDULE EVERY 1 HOUR SCHEDULE EVERY 2 HOURS",
    ] {
        let message = expect_err(&client, sql, "42601").await;
        assert!(message.contains("is given twice"), "{sql}: {message}");
        expect_err_extended(&client, sql, "42601").await;
    }
    let jobs = rows(&client, "SELECT count(*) FROM sluice.jobs WHERE name = 'twice'").await;
    assert_eq!(jobs[0][0].as_deref(), Some("0"));
}
