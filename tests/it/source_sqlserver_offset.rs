//! `OFFSET m LIMIT n` over a SQL Server table reaches the server as
//! `OFFSET m ROWS FETCH NEXT n ROWS ONLY` (Sluice's `PushDownOffset` rule),
//! against pysqlbridge; with an `ORDER BY` or a filter DataFusion must check
//! again, the offset stays in DataFusion.

use crate::common;
use crate::source_sqlserver::{options, orders_csv};

use common::sqlbridge::SqlBridge;
use common::{Sluice, rows};
use tokio_postgres::Client;

/// The ids `sql` returns.
async fn ids(client: &Client, sql: &str) -> Vec<String> {
    rows(client, sql)
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

/// The plan text of `sql`.
async fn explain(client: &Client, sql: &str) -> String {
    rows(client, &format!("EXPLAIN {sql}"))
        .await
        .iter()
        .flat_map(|r| r.iter().flatten().cloned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn offset_limit_is_sent_as_offset_fetch() {
    let bridge = SqlBridge::start(&[("orders", &orders_csv(20))]);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION mssql TYPE sqlserver OPTIONS ({})",
            options(&bridge, ", trust_server_certificate true")
        ))
        .await
        .unwrap();
    let sql = "SELECT id FROM mssql.dbo.orders WHERE id > 10 OFFSET 2 LIMIT 3";
    let sent =
        "SELECT [id] FROM [dbo].[orders] WHERE ([id] > 10) ORDER BY (SELECT NULL) OFFSET 2 ROWS FETCH NEXT 3 ROWS ONLY";
    let plan = explain(&client, sql).await;
    assert!(plan.contains(sent), "{plan}");
    assert_eq!(ids(&client, sql).await, ["13", "14", "15"]);
    assert!(bridge.logged(sent), "{}", bridge.log());

    // An ORDER BY is not pushed down, so neither is the offset.
    let sql = "SELECT id FROM mssql.dbo.orders WHERE id > 10 ORDER BY id DESC OFFSET 2 LIMIT 3";
    let plan = explain(&client, sql).await;
    assert!(!plan.contains("OFFSET 2 ROWS"), "{plan}");
    assert_eq!(ids(&client, sql).await, ["18", "17", "16"]);

    // DataFusion checks text equality again, so it skips the rows itself.
    let sql = "SELECT id FROM mssql.dbo.orders WHERE customer = 'customer 3' OFFSET 1 LIMIT 2";
    let plan = explain(&client, sql).await;
    assert!(!plan.contains("OFFSET 1 ROWS"), "{plan}");
    assert_eq!(ids(&client, sql).await, ["10", "17"]);
}
