//! Azure Synapse (`TYPE synapse`, the SQL Server driver with Synapse's
//! options) end to end against pysqlbridge, as `source_sqlserver` tests
//! `TYPE sqlserver`: exploration, `TOP` and `OFFSET` pushdown, snapshot and
//! incremental jobs, and kill -9 mid-run followed by exact re-runs.

use crate::common;
use crate::source_sqlserver::{ROWS, expected, loaded, options, orders_csv};

use std::time::Duration;

use common::sqlbridge::SqlBridge;
use common::{Sluice, rows};
use tokio_postgres::Client;

/// A bridge serving `orders`, a server and a client with connection `pool`.
async fn setup(n: i64) -> (SqlBridge, Sluice, Client) {
    let bridge = SqlBridge::start(&[("orders", &orders_csv(n))]);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION pool TYPE synapse OPTIONS ({})",
            options(&bridge, ", trust_server_certificate true")
        ))
        .await
        .unwrap();
    (bridge, sluice, client)
}

/// Exploration and live reads of a Synapse connection; `OFFSET m LIMIT n`
/// reaches the server as `TOP (m + n)` (dedicated SQL pools have no
/// `OFFSET ... FETCH`; see docs/sources/sqlserver.md) and returns the right
/// rows.
#[tokio::test]
async fn synapse_is_explored_and_read_with_top_pushed_down() {
    let (bridge, _sluice, client) = setup(ROWS).await;
    let tables = rows(&client, "SHOW TABLES FROM pool.dbo").await;
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert_eq!(tables[0][1].as_deref(), Some("orders"));
    let described = rows(&client, "DESCRIBE pool.dbo.orders").await;
    let names: Vec<_> = described.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(names, ["id", "customer", "amount", "updated_at"]);
    let page = rows(
        &client,
        "SELECT id FROM pool.dbo.orders WHERE id > 19990 ORDER BY id OFFSET 2 LIMIT 3",
    )
    .await;
    let ids: Vec<_> = page.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(ids, ["19993", "19994", "19995"]);
    let unordered = rows(
        &client,
        "SELECT id FROM pool.dbo.orders WHERE id > 19990 OFFSET 2 LIMIT 3",
    )
    .await;
    assert_eq!(unordered.len(), 3);
    assert!(
        bridge.logged("SELECT TOP (5) [id] FROM [dbo].[orders] WHERE ([id] > 19990)"),
        "{}",
        bridge.log()
    );
}

/// Snapshot and incremental jobs from Synapse, each interrupted by kill -9
/// and re-run, then run again after new rows: every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_jobs_survive_kill_9_and_load_every_row_once() {
    let (mut bridge, mut sluice, mut client) = setup(ROWS).await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM pool.dbo.orders INTO warehouse.orders_inc INCREMENTAL BY id ALL \
             WITH (batch_rows = 1000); \
             CREATE ETL JOB orders_snap FROM pool.dbo.orders INTO warehouse.orders_snap SNAPSHOT \
             WITH (batch_rows = 1000);",
        )
        .await
        .unwrap();
    let mut n = ROWS;
    for (round, delay_ms) in [40u64, 300].into_iter().enumerate() {
        for job in ["orders_inc", "orders_snap"] {
            rows(&client, &format!("RUN ETL JOB {job} ASYNC")).await;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            sluice.kill9();
            sluice.restart();
            client = sluice.client().await;
        }
        for job in ["orders_inc", "orders_snap"] {
            let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
            assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
            assert_eq!(loaded(&client, job).await, expected(n), "round {round}: {job}");
        }
        n += 700;
        bridge.write_table("orders", &orders_csv(n));
        bridge.restart();
    }
    let summary = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("700"), "{summary:?}");
    assert_eq!(loaded(&client, "orders_inc").await, expected(n));
    assert!(bridge.logged(&format!("WHERE [id] > {}", n - 700)), "{}", bridge.log());
}
