//! DynamoDB as a source, against moto's server: the test before save,
//! exploration with inferred columns, parallel-scan snapshot and
//! incremental jobs, and a kill -9 between two pages of a scan.

use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::common::dynamodb::Dynamo;
use crate::common::{Sluice, describe_summary, expect_err, free_port, rows};

fn order(id: u32, version: u32) -> Value {
    let mut item = json!({
        "id": {"N": id.to_string()},
        "customer": {"S": format!("c{}", id % 3)},
        "total": {"N": format!("{}.5", id * 10)},
        "version": {"N": version.to_string()},
        "lines": {"L": [{"M": {"sku": {"S": "x"}, "qty": {"N": "2"}}}]},
    });
    if id.is_multiple_of(2) {
        item["note"] = json!({"S": "gift"});
    }
    item
}

async fn setup(items: u32, extra: &str) -> (Dynamo, Sluice, Client) {
    let dynamo = Dynamo::start();
    dynamo.create_table("orders");
    dynamo.put("orders", &(1..=items).map(|id| order(id, 1)).collect::<Vec<_>>());
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION dyn TYPE dynamodb OPTIONS ({}{extra})",
            dynamo.options()
        ))
        .await
        .unwrap();
    (dynamo, sluice, client)
}

async fn run(client: &Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

#[tokio::test]
async fn the_test_before_save_lists_tables() {
    let (dynamo, _sluice, client) = setup(1, "").await;
    let closed = free_port();
    expect_err(
        &client,
        &format!(
            "CREATE CONNECTION d2 TYPE dynamodb OPTIONS (endpoint 'http://127.0.0.1:{closed}', access_key_id 'a', secret_access_key 'b')"
        ),
        "08001",
    )
    .await;
    let missing = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION d3 TYPE dynamodb OPTIONS ({}, tables 'orderz')",
            dynamo.options()
        ),
        "22023",
    )
    .await;
    assert!(missing.contains("orderz") && missing.contains("orders"), "{missing}");
    let types = rows(&client, "SHOW CONNECTION TYPES").await;
    let dynamodb = types.iter().find(|t| t[0].as_deref() == Some("dynamodb")).unwrap();
    assert_eq!(dynamodb[3].as_deref(), Some("available"), "{dynamodb:?}");
}

#[tokio::test]
async fn tables_are_described_from_a_sample_of_items() {
    let (_dynamo, _sluice, client) = setup(6, "").await;
    let tables = rows(&client, "SHOW TABLES FROM dyn.dynamodb").await;
    assert_eq!(tables[0][1].as_deref(), Some("orders"));
    let describe = describe_summary(&rows(&client, "DESCRIBE dyn.dynamodb.orders").await);
    assert_eq!(
        describe,
        [
            "id | int64 (partition key) | 1 | INT64 | high",
            "customer | string | - | STRING | high",
            "lines | json | - | JSON | high",
            "note | string | - | STRING | medium",
            "total | float64 | - | FLOAT64 | high",
            "version | int64 | - | INT64 | high",
        ]
    );
    let filtered = rows(
        &client,
        "SELECT id, lines FROM dyn.dynamodb.orders WHERE total > 45 ORDER BY id",
    )
    .await;
    assert_eq!(filtered.len(), 2, "{filtered:?}");
    assert_eq!(filtered[0][0].as_deref(), Some("5"));
    assert_eq!(filtered[0][1].as_deref(), Some(r#"[{"qty":2,"sku":"x"}]"#));
}

#[tokio::test]
async fn a_parallel_scan_snapshot_and_an_incremental_job_load_each_item_once() {
    let (dynamo, _sluice, client) = setup(25, ", segments 3, page_size 4").await;
    client
        .batch_execute(
            "CREATE ETL JOB snap FROM dyn.dynamodb.orders INTO warehouse.orders_snap SNAPSHOT; \
             CREATE ETL JOB inc FROM dyn.dynamodb.orders INTO warehouse.orders_inc INCREMENTAL BY version ALL;",
        )
        .await
        .unwrap();
    assert_eq!(run(&client, "snap").await, "25");
    assert_eq!(run(&client, "inc").await, "25");
    assert_eq!(run(&client, "inc").await, "0");
    dynamo.put("orders", &[order(3, 2), order(26, 2)]);
    assert_eq!(run(&client, "inc").await, "2");
    assert_eq!(run(&client, "snap").await, "26");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id) FROM warehouse.orders_snap"
        )
        .await[0],
        ["26", "26"].map(|v| Some(v.to_owned()))
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM warehouse.orders_inc WHERE version = 2").await[0],
        [Some("2".to_owned())]
    );
}

#[tokio::test]
async fn rejected_keys_are_28p01_and_good_ones_are_saved() {
    let (dynamo, (key, secret)) = Dynamo::start_checking_keys();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let endpoint = dynamo.endpoint();
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION dyn TYPE dynamodb OPTIONS (endpoint '{endpoint}', access_key_id 'AKIAWRONG', secret_access_key 'wrong-secret')"
        ),
        "28P01",
    )
    .await;
    assert!(!message.contains("wrong-secret"), "{message}");
    client
        .batch_execute(&format!(
            "CREATE CONNECTION dyn TYPE dynamodb OPTIONS (endpoint '{endpoint}', access_key_id '{key}', secret_access_key '{secret}')"
        ))
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SHOW TABLES FROM dyn.dynamodb").await[0][1].as_deref(),
        Some("orders")
    );
}

/// The server is killed between two pages of a scan: nothing of the run is
/// committed, and the re-run after the restart loads every item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_pages_then_a_rerun_loads_each_item_once() {
    let dynamo = Dynamo::start();
    dynamo.create_table("orders");
    dynamo.put("orders", &(1..=12).map(|id| order(id, 1)).collect::<Vec<_>>());
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "between_pages")]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION dyn TYPE dynamodb OPTIONS ({}, page_size 5); \
             CREATE ETL JOB orders FROM dyn.dynamodb.orders INTO warehouse.orders SNAPSHOT",
            dynamo.options()
        ))
        .await
        .unwrap();
    sluice.run_into_failpoint(&client, "RUN ETL JOB orders").await;
    let client = sluice.restart_without_failpoints().await;
    let interrupted = rows(&client, "SELECT status FROM sluice.runs WHERE job = 'orders'").await;
    assert_eq!(
        interrupted,
        [[Some("failed".to_owned())]],
        "the killed run is settled as failed"
    );
    assert_eq!(run(&client, "orders").await, "12");
    assert_eq!(
        rows(&client, "SELECT count(*), count(DISTINCT id) FROM warehouse.orders").await[0],
        ["12", "12"].map(|v| Some(v.to_owned()))
    );
}
