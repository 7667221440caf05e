//! SQL Server and Synapse as sources, through a real `sluice` process,
//! against pysqlbridge (a read-only TDS server over CSV files; see
//! `common/sqlbridge.rs`): connection tests, exploration, streaming scans
//! with `TOP` and filters pushed down, snapshot and incremental jobs, and
//! a kill -9 after the destination commit. The full type mapping is
//! unit-tested on decoded TDS values (`connectors/sqlserver/decode.rs`);
//! `live_sql_server` runs against a real server when `SLUICE_MSSQL_TEST_URL`
//! is set (types, an incremental job by rowversion, and parallel reads in
//! one moment while transfers commit).

use crate::common;

use common::sqlbridge::{BRIDGE_DATABASE, BRIDGE_PASSWORD, BRIDGE_USER, SqlBridge};
use common::{Sluice, expect_err, rows};
use tokio_postgres::Client;

/// Rows of the first load: more than one batch of a scan.
pub(crate) const ROWS: i64 = 20_000;

/// `orders` with ids `1..=n`: a text, a float, a time one second apart per
/// id from 2024-01-01, and a flag.
pub(crate) fn orders_csv(n: i64) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let mut csv = String::from("id,customer,amount,updated_at\n");
    for id in 1..=n {
        let at = start + chrono::Duration::seconds(id);
        csv.push_str(&format!(
            "{id},customer {},{}.25,{}\n",
            id % 7,
            id % 1000,
            at.format("%Y-%m-%d %H:%M:%S")
        ));
    }
    csv
}

/// The options of a connection to the bridge, with `extra` options.
pub(crate) fn options(bridge: &SqlBridge, extra: &str) -> String {
    format!(
        "host '127.0.0.1', port {}, database '{BRIDGE_DATABASE}', user '{BRIDGE_USER}', password '{BRIDGE_PASSWORD}'{extra}",
        bridge.port
    )
}

/// A bridge serving `orders`, a server and a client with connection `mssql`.
async fn setup(n: i64) -> (SqlBridge, Sluice, Client) {
    let bridge = SqlBridge::start(&[("orders", &orders_csv(n))]);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION mssql TYPE sqlserver OPTIONS ({})",
            options(&bridge, ", trust_server_certificate true")
        ))
        .await
        .unwrap();
    (bridge, sluice, client)
}

fn one(rows: &[Vec<Option<String>>]) -> String {
    rows[0][0].clone().unwrap_or_default()
}

/// count, distinct ids and the sum of ids of a warehouse table.
pub(crate) async fn loaded(client: &Client, table: &str) -> (i64, i64, i64) {
    let r = rows(
        client,
        &format!("SELECT count(*), count(DISTINCT id), coalesce(sum(id), 0) FROM warehouse.{table}"),
    )
    .await;
    let n = |i: usize| r[0][i].as_deref().unwrap().parse::<i64>().unwrap();
    (n(0), n(1), n(2))
}

pub(crate) fn expected(n: i64) -> (i64, i64, i64) {
    (n, n, n * (n + 1) / 2)
}

#[tokio::test]
async fn both_types_are_available() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let types = rows(
        &client,
        "SELECT type, status FROM sluice.connection_types WHERE type IN ('sqlserver', 'synapse') ORDER BY type",
    )
    .await;
    assert_eq!(
        types,
        [
            [Some("sqlserver".into()), Some("available".into())],
            [Some("synapse".into()), Some("available".into())]
        ]
    );
}

#[tokio::test]
async fn connections_are_tested_before_they_are_saved() {
    let bridge = SqlBridge::start(&[("orders", &orders_csv(3))]);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let wrong = options(&bridge, ", trust_server_certificate true").replace(BRIDGE_PASSWORD, "wrong");
    let message = expect_err(
        &client,
        &format!("CREATE CONNECTION bad TYPE sqlserver OPTIONS ({wrong})"),
        "28P01",
    )
    .await;
    assert!(message.contains("Login failed"), "{message}");
    assert!(!message.contains("wrong"), "the password never shows: {message}");
    // The bridge's certificate is self-signed: verifying it fails, naming
    // the option that accepts it.
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION unverified TYPE sqlserver OPTIONS ({})",
            options(&bridge, "")
        ),
        "08001",
    )
    .await;
    assert!(message.contains("trust_server_certificate"), "{message}");
    assert!(!message.contains("Config::"), "the driver's API stays out: {message}");
    let closed = common::free_port();
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION gone TYPE sqlserver OPTIONS (host '127.0.0.1', port {closed}, database 'x', user 'u', \
             password 'not_the_password', trust_server_certificate true)"
        ),
        "08001",
    )
    .await;
    assert!(message.contains("refused"), "{message}");
    // Synapse takes a token or a password, not both.
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION both TYPE synapse OPTIONS ({}, access_token 'eyJ0eXAi.not-a-token.sig')",
            options(&bridge, ", trust_server_certificate true")
        ),
        "22023",
    )
    .await;
    assert!(message.contains("access_token"), "{message}");
    assert!(!message.contains("not-a-token"), "{message}");
    // Nothing failed was saved; a good Synapse connection is.
    client
        .batch_execute(&format!(
            "CREATE CONNECTION pool TYPE synapse OPTIONS ({})",
            options(&bridge, ", trust_server_certificate true")
        ))
        .await
        .unwrap();
    let saved = rows(&client, "SELECT name FROM sluice.connections ORDER BY name").await;
    assert_eq!(saved, [[Some("pool".into())]]);
    // The other encryption levels reach the bridge too (it offers TLS):
    // 'off' encrypts the login only, 'on' everything. ALTER re-tests.
    client
        .batch_execute(&format!(
            "DROP CONNECTION pool; CREATE CONNECTION modes TYPE sqlserver OPTIONS ({}); \
             ALTER CONNECTION modes SET (encrypt 'on');",
            options(&bridge, ", encrypt 'off', trust_server_certificate true")
        ))
        .await
        .unwrap();
    let saved = rows(&client, "SELECT name FROM sluice.connections ORDER BY name").await;
    assert_eq!(saved, [[Some("modes".into())]]);
}

#[tokio::test]
async fn explore_describe_and_stream_with_top_and_filters_pushed_down() {
    let (bridge, _sluice, client) = setup(ROWS).await;
    assert_eq!(one(&rows(&client, "SHOW SCHEMAS FROM mssql").await), "dbo");
    let all = rows(&client, "SHOW TABLES FROM mssql").await;
    assert_eq!(all.len(), 1, "{all:?}");
    let tables = rows(&client, "SHOW TABLES FROM mssql.dbo").await;
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert_eq!(
        (tables[0][1].as_deref(), tables[0][2].as_deref()),
        (Some("orders"), Some("table"))
    );
    let described = rows(&client, "DESCRIBE mssql.dbo.orders").await;
    let columns: Vec<(String, String, String)> = described
        .iter()
        .map(|r| (r[0].clone().unwrap(), r[2].clone().unwrap(), r[7].clone().unwrap()))
        .collect();
    let expect = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        columns,
        [
            expect("id", "int", "INT64"),
            expect("customer", "nvarchar(10)", "STRING"),
            expect("amount", "float", "FLOAT64"),
            // The bridge types CSV text as numbers or nvarchar only.
            expect("updated_at", "nvarchar(19)", "STRING"),
        ]
    );
    // Every row streams through, in more than one batch.
    let count = rows(
        &client,
        "SELECT count(*), sum(id), max(updated_at) FROM mssql.dbo.orders",
    )
    .await;
    assert_eq!(
        count,
        [[
            Some(ROWS.to_string()),
            Some((ROWS * (ROWS + 1) / 2).to_string()),
            Some("2024-01-01 05:33:20".into())
        ]]
    );
    let picked = rows(
        &client,
        "SELECT id, customer, amount FROM mssql.dbo.orders WHERE id > 19990 AND customer = 'customer 3' LIMIT 5",
    )
    .await;
    assert_eq!(
        picked,
        [[Some("19995".into()), Some("customer 3".into()), Some("995.25".into())]]
    );
    let explain = |sql: &'static str| {
        let client = &client;
        async move {
            rows(client, &format!("EXPLAIN {sql}"))
                .await
                .iter()
                .flat_map(|r| r.iter().flatten().cloned())
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let plan = explain("SELECT id FROM mssql.dbo.orders WHERE id > 19990 LIMIT 3").await;
    assert!(
        plan.contains("SELECT TOP (3) [id] FROM [dbo].[orders] WHERE ([id] > 19990)"),
        "{plan}"
    );
    // Text equality goes to the server too, but DataFusion checks it again
    // (collations may ignore case), so the limit stays in DataFusion.
    let plan = explain("SELECT id FROM mssql.dbo.orders WHERE id > 19990 AND customer = 'customer 3' LIMIT 3").await;
    assert!(
        plan.contains(
            "SELECT [id], [customer] FROM [dbo].[orders] WHERE ([id] > 19990) AND ([customer] = N'customer 3')"
        ),
        "{plan}"
    );
    let limited = rows(&client, "SELECT id FROM mssql.dbo.orders WHERE id > 19990 LIMIT 3").await;
    assert_eq!(limited.len(), 3);
    // The bridge received the TOP and the filter: only those rows crossed.
    assert!(
        bridge.logged("SELECT TOP (3) [id] FROM [dbo].[orders] WHERE ([id] > 19990)"),
        "{}",
        bridge.log()
    );
    // A table that is not there names the one that is.
    let message = expect_err(&client, "DESCRIBE mssql.dbo.order", "42704").await;
    assert!(message.contains("orders"), "{message}");
}

#[tokio::test]
async fn snapshot_and_incremental_jobs_load_every_row_once() {
    let (mut bridge, _sluice, client) = setup(ROWS).await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM mssql.dbo.orders INTO warehouse.orders_inc INCREMENTAL BY id ALL; \
             CREATE ETL JOB orders_snap FROM mssql.dbo.orders INTO warehouse.orders_snap SNAPSHOT;",
        )
        .await
        .unwrap();
    for job in ["orders_inc", "orders_snap"] {
        let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
        assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
        assert_eq!(summary[0][2].as_deref(), Some(ROWS.to_string().as_str()), "{summary:?}");
    }
    assert_eq!(loaded(&client, "orders_inc").await, expected(ROWS));
    assert_eq!(loaded(&client, "orders_snap").await, expected(ROWS));

    // New rows (the bridge serves files as they were at its start).
    let more = ROWS + 500;
    bridge.write_table("orders", &orders_csv(more));
    bridge.restart();
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("500"), "{summary:?}");
    assert!(
        bridge.logged(&format!("WHERE [id] > {ROWS}")),
        "the next run reads past the watermark at the source:\n{}",
        bridge.log()
    );
    rows(&client, "RUN ETL JOB orders_snap").await;
    assert_eq!(loaded(&client, "orders_inc").await, expected(more));
    assert_eq!(loaded(&client, "orders_snap").await, expected(more));
    // Nothing new: nothing loaded.
    let again = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("0"), "{again:?}");
    assert_eq!(loaded(&client, "orders_inc").await, expected(more));
}

#[tokio::test]
async fn a_datetime_cursor_reads_past_the_watermark_by_one_microsecond() {
    let mut bridge = SqlBridge::start_with_events(&[], Some(3000));
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION mssql TYPE sqlserver OPTIONS ({}); \
             CREATE ETL JOB ev FROM mssql.dbo.events INTO warehouse.ev INCREMENTAL BY at ALL;",
            options(&bridge, ", trust_server_certificate true")
        ))
        .await
        .unwrap();
    let described = rows(&client, "DESCRIBE mssql.dbo.events").await;
    let at = described.iter().find(|r| r[0].as_deref() == Some("at")).unwrap();
    assert_eq!(
        (at[2].as_deref(), at[7].as_deref()),
        (Some("datetime"), Some("DATETIME")),
        "{at:?}"
    );
    let summary = rows(&client, "RUN ETL JOB ev").await;
    assert_eq!(summary[0][2].as_deref(), Some("3000"), "{summary:?}");
    // datetime counts 1/300 s: .234 is stored as 70 ticks, 0.233333 s.
    let value = rows(&client, "SELECT CAST(at AS VARCHAR) FROM warehouse.ev WHERE id = 1234").await;
    assert_eq!(one(&value), "2024-01-01T00:20:34.233333", "{value:?}");
    // The source has no sys.dm_tran_active_transactions: the run says so.
    let guard = rows(&client, "SELECT guard_reason FROM sluice.runs WHERE job = 'ev'").await;
    assert!(one(&guard).contains("sys.dm_tran_active_transactions"), "{guard:?}");
    bridge.write_events(3500);
    bridge.restart();
    let summary = rows(&client, "RUN ETL JOB ev").await;
    assert_eq!(summary[0][2].as_deref(), Some("500"), "{summary:?}");
    // The watermark is 00:50:00 (id 3000); the next window starts a
    // microsecond past it, against the value the server compares.
    assert!(
        bridge.logged("[at] >= CAST('2024-01-01 00:50:00.000001' AS datetime2"),
        "{}",
        bridge.log()
    );
    assert_eq!(loaded(&client, "ev").await, expected(3500));
}

#[tokio::test]
async fn kill_9_after_the_destination_commit_loads_every_row_once() {
    let mut bridge = SqlBridge::start(&[("orders", &orders_csv(ROWS))]);
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "after_destination_commit")]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION mssql TYPE sqlserver OPTIONS ({}); \
             CREATE ETL JOB orders_inc FROM mssql.dbo.orders INTO warehouse.orders_inc INCREMENTAL BY id ALL;",
            options(&bridge, ", trust_server_certificate true")
        ))
        .await
        .unwrap();
    sluice.run_into_failpoint(&client, "RUN ETL JOB orders_inc").await;
    let client = sluice.restart_without_failpoints().await;
    // The destination committed: start-up adopts the run and its watermark.
    let runs = rows(&client, "SELECT status, rows FROM sluice.runs WHERE job = 'orders_inc'").await;
    assert_eq!(runs, [[Some("succeeded".into()), Some(ROWS.to_string())]]);
    bridge.write_table("orders", &orders_csv(ROWS + 100));
    bridge.restart();
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("100"), "{summary:?}");
    assert_eq!(loaded(&client, "orders_inc").await, expected(ROWS + 100));
}

#[tokio::test]
async fn kill_9_at_any_point_then_rerun_loads_every_row_once() {
    let (mut bridge, mut sluice, client) = setup(ROWS).await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM mssql.dbo.orders INTO warehouse.orders_inc INCREMENTAL BY id ALL \
             WITH (batch_rows = 1000); \
             CREATE ETL JOB orders_snap FROM mssql.dbo.orders INTO warehouse.orders_snap SNAPSHOT WITH (batch_rows = 1000);",
        )
        .await
        .unwrap();
    let mut client = client;
    let mut n = ROWS;
    for (round, delay_ms) in [20u64, 150, 400].into_iter().enumerate() {
        for job in ["orders_inc", "orders_snap"] {
            rows(&client, &format!("RUN ETL JOB {job} ASYNC")).await;
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            sluice.kill9();
            sluice.restart();
            client = sluice.client().await;
            let unsettled = rows(
                &client,
                "SELECT run_id FROM sluice.runs WHERE status IN ('running', 'queued')",
            )
            .await;
            assert!(unsettled.is_empty(), "round {round}: {unsettled:?}");
        }
        for job in ["orders_inc", "orders_snap"] {
            let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
            assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
            assert_eq!(loaded(&client, job).await, expected(n), "round {round}: {job}");
        }
        n += 1000;
        bridge.write_table("orders", &orders_csv(n));
        bridge.restart();
    }
}

/// Against a real SQL Server when `SLUICE_MSSQL_TEST_URL` is set
/// (`sqlserver://user:password@host:port/database`, optionally with
/// `?trust_server_certificate=true`; the user may create tables in `dbo`):
/// creates `dbo.sluice_live_types` with a column of each documented type,
/// checks `DESCRIBE` against the type mapping, reads the values back exactly,
/// and loads the table incrementally by its `rowversion`. Skips silently
/// without the variable.
#[tokio::test]
async fn live_sql_server() {
    let Ok(url) = std::env::var("SLUICE_MSSQL_TEST_URL") else {
        return;
    };
    // sqlserver://user:password@host:port/database[?trust_server_certificate=true]
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (credentials, rest) = rest.rsplit_once('@').expect("user:password@ in SLUICE_MSSQL_TEST_URL");
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let (address, database) = rest.split_once('/').expect("/database in SLUICE_MSSQL_TEST_URL");
    let (host, port) = address.split_once(':').unwrap_or((address, "1433"));
    let port: u16 = port.parse().expect("a port number");
    let trust = query.contains("trust_server_certificate=true");

    let mut config = tiberius::Config::new();
    config.host(host);
    config.port(port);
    config.database(database);
    config.authentication(tiberius::AuthMethod::sql_server(user, password));
    if trust {
        config.trust_cert();
    }
    let connect = || async {
        use tokio_util::compat::TokioAsyncWriteCompatExt;
        let tcp = tokio::net::TcpStream::connect(config.get_addr()).await.unwrap();
        tiberius::Client::connect(config.clone(), tcp.compat_write())
            .await
            .unwrap()
    };
    let mut server = connect().await;
    server
        .simple_query(LIVE_TABLE)
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();

    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION live TYPE sqlserver OPTIONS (host '{host}', port {port}, database '{database}', \
             user '{user}', password '{}', trust_server_certificate {trust})",
            password.replace('\'', "''"),
        ))
        .await
        .unwrap();
    assert!(
        rows(&client, "SHOW SCHEMAS FROM live")
            .await
            .iter()
            .any(|s| s[0].as_deref() == Some("dbo"))
    );
    let described = rows(&client, "DESCRIBE live.dbo.sluice_live_types").await;
    let types: Vec<(String, String, String)> = described
        .iter()
        .map(|r| (r[0].clone().unwrap(), r[2].clone().unwrap(), r[7].clone().unwrap()))
        .collect();
    let expect = [
        ("id", "int", "INT64"),
        ("b", "bit", "BOOL"),
        ("ti", "tinyint", "INT64"),
        ("si", "smallint", "INT64"),
        ("bi", "bigint", "INT64"),
        ("d", "decimal(12,2)", "NUMERIC(12, 2)"),
        ("m", "money", "NUMERIC(19, 4)"),
        ("sm", "smallmoney", "NUMERIC(10, 4)"),
        ("r", "real", "FLOAT64"),
        ("f", "float", "FLOAT64"),
        ("c", "char(3)", "STRING"),
        ("nvc", "nvarchar(max)", "STRING"),
        ("bin", "varbinary(4)", "BYTES"),
        ("dt", "date", "DATE"),
        ("t", "time(7)", "TIME"),
        ("sdt", "smalldatetime", "DATETIME"),
        ("dtm", "datetime", "DATETIME"),
        ("dt2", "datetime2(7)", "DATETIME"),
        ("dto", "datetimeoffset(7)", "TIMESTAMP"),
        ("u", "uniqueidentifier", "STRING"),
        ("x", "xml", "STRING"),
        ("rv", "rowversion", "INT64"),
        ("v", "sql_variant", "STRING"),
        ("g", "geography", "GEOGRAPHY"),
        ("h", "hierarchyid", "STRING"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(types, expect);
    let rv = described.iter().find(|r| r[0].as_deref() == Some("rv")).unwrap();
    assert!(rv[6].as_deref().unwrap_or_default().contains("recommended"), "{rv:?}");

    let values = rows(
        &client,
        "SELECT CAST(d AS VARCHAR), CAST(m AS VARCHAR), CAST(sm AS VARCHAR), CAST(dtm AS VARCHAR), \
         CAST(dt2 AS VARCHAR), CAST(dto AS BIGINT), CAST(t AS VARCHAR), u, x, h, nvc, encode(bin, 'hex'), \
         CAST(bi AS VARCHAR), CAST(v AS VARCHAR) FROM live.dbo.sluice_live_types WHERE id = 1",
    )
    .await;
    let expected: Vec<Option<String>> = [
        "-1234567890.12",
        "922337203685477.5807",
        "-214748.3648",
        "2024-01-02T00:20:34.233333",
        "2024-01-02T03:04:05.123456",
        "1704157445123456",
        "23:59:59.999999",
        "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "<a>1</a>",
        "/1/3/",
        "zażółć 😀",
        "00ff",
        "9223372036854775807",
        "42",
    ]
    .iter()
    .map(|v| Some((*v).to_owned()))
    .collect();
    assert_eq!(values, [expected]);

    client
        .batch_execute(
            "CREATE ETL JOB live_rv FROM live.dbo.sluice_live_types INTO warehouse.live_rv INCREMENTAL BY rv ALL",
        )
        .await
        .unwrap();
    let first = rows(&client, "RUN ETL JOB live_rv").await;
    assert_eq!(first[0][2].as_deref(), Some("2"), "{first:?}");
    server
        .simple_query("UPDATE dbo.sluice_live_types SET ti = 7 WHERE id = 2")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let second = rows(&client, "RUN ETL JOB live_rv").await;
    assert_eq!(second[0][2].as_deref(), Some("1"), "the updated row only: {second:?}");

    // Parallel reads see one moment while transfers commit all along (the
    // database must allow snapshot isolation; this turns it on).
    server
        .simple_query(LIVE_ACCOUNTS)
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, mut conn) = (stop.clone(), connect().await);
        tokio::spawn(async move {
            let (mut n, mut transfers) = (0u32, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n = n.wrapping_add(7919);
                let (from, to) = (1 + n % 500, 2000 - n % 500);
                conn.simple_query(format!(
                    "BEGIN TRANSACTION; UPDATE dbo.sluice_live_accounts SET balance = balance - 1 WHERE id = {from}; \
                     UPDATE dbo.sluice_live_accounts SET balance = balance + 1 WHERE id = {to}; COMMIT"
                ))
                .await
                .unwrap()
                .into_results()
                .await
                .unwrap();
                transfers += 1;
            }
            transfers
        })
    };
    client
        .batch_execute(
            "CREATE ETL JOB live_par FROM live.dbo.sluice_live_accounts INTO warehouse.live_par SNAPSHOT \
             WITH (parallelism = 4)",
        )
        .await
        .unwrap();
    for round in 0..5 {
        let run = rows(&client, "RUN ETL JOB live_par").await;
        assert_eq!(run[0][1].as_deref(), Some("succeeded"), "{run:?}");
        let total = rows(&client, "SELECT count(*), sum(balance) FROM warehouse.live_par").await;
        assert_eq!(
            (total[0][0].as_deref(), total[0][1].as_deref()),
            (Some("2000"), Some("200000")),
            "round {round}: four streams, one moment"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0, "transfers ran");
    server
        .simple_query("DROP TABLE dbo.sluice_live_accounts")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    server
        .simple_query("DROP TABLE dbo.sluice_live_types")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
}

/// The live test's accounts (2,000 of balance 100), in a database that
/// allows snapshot isolation.
const LIVE_ACCOUNTS: &str = "ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON; \
    IF OBJECT_ID('dbo.sluice_live_accounts') IS NOT NULL DROP TABLE dbo.sluice_live_accounts; \
    CREATE TABLE dbo.sluice_live_accounts (id int NOT NULL PRIMARY KEY, balance int NOT NULL); \
    WITH n AS (SELECT TOP (2000) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS id FROM sys.all_objects a \
    CROSS JOIN sys.all_objects b) INSERT INTO dbo.sluice_live_accounts SELECT id, 100 FROM n;";

/// The live test's table: one column of each documented type, a row of
/// edge values and a row of NULLs.
const LIVE_TABLE: &str = "IF OBJECT_ID('dbo.sluice_live_types') IS NOT NULL DROP TABLE dbo.sluice_live_types; \
    CREATE TABLE dbo.sluice_live_types (id int NOT NULL PRIMARY KEY, b bit, ti tinyint, si smallint, bi bigint, \
    d decimal(12,2), m money, sm smallmoney, r real, f float, c char(3), nvc nvarchar(max), bin varbinary(4), \
    dt date, t time(7), sdt smalldatetime, dtm datetime, dt2 datetime2(7), dto datetimeoffset(7), \
    u uniqueidentifier, x xml, rv rowversion, v sql_variant, g geography, h hierarchyid); \
    INSERT INTO dbo.sluice_live_types (id, b, ti, si, bi, d, m, sm, r, f, c, nvc, bin, dt, t, sdt, dtm, dt2, dto, \
    u, x, v, g, h) VALUES (1, 1, 255, -32768, 9223372036854775807, -1234567890.12, 922337203685477.5807, \
    -214748.3648, 1.5, 0.1, 'abc', N'zażółć 😀', 0x00FF, '2024-01-02', '23:59:59.9999999', '2024-01-02 12:34', \
    '2024-01-02 00:20:34.234', '2024-01-02 03:04:05.1234567', '2024-01-02 03:04:05.1234567 +02:00', \
    '6F9619FF-8B86-D011-B42D-00C04FC964FF', '<a>1</a>', CAST(42 AS int), geography::Point(52.2, 21.0, 4326), \
    hierarchyid::Parse('/1/3/')); \
    INSERT INTO dbo.sluice_live_types (id) VALUES (2);";
