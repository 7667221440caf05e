//! REPAIR ETL JOB into BigQuery when the window is one whole partition of
//! the destination (DAY-partitioned on the cursor, as incremental jobs
//! create it): the commit is one copy job of that partition of the staging
//! table over the same partition of the target (`WRITE_TRUNCATE` with
//! `$YYYYMMDD` decorators), not a DML transaction; windows over several
//! partitions stay one transaction. VERIFY agrees afterwards and the
//! watermark does not move.

use serde_json::Value;

use crate::bigquery::{fake_fingerprint, setup, source_fingerprint};
use crate::bq_repair::{damage, staging_tables};
use crate::common::*;

/// The copy jobs whose destination is a partition (`table$id`).
fn partition_copies(fake: &crate::fake_bigquery::FakeBigQuery) -> Vec<(String, Value)> {
    fake.state()
        .jobs
        .iter()
        .filter(|(_, job)| {
            job.pointer("/configuration/copy/destinationTable/tableId")
                .and_then(Value::as_str)
                .is_some_and(|t| t.contains('$'))
        })
        .map(|(id, job)| (id.clone(), job["configuration"]["copy"].clone()))
        .collect()
}

#[tokio::test]
async fn repairing_one_whole_day_copies_that_partition_and_verify_agrees() {
    let env = setup(&[]).await;
    let client = &env.client;
    client
        .batch_execute("CREATE ETL JOB orders_bq FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    rows(client, "RUN ETL JOB orders_bq").await;
    let partitioning = env.fake.table("raw_data", "orders").unwrap().resource["timePartitioning"].clone();
    assert_eq!(
        (partitioning["type"].as_str(), partitioning["field"].as_str()),
        (Some("DAY"), Some("updated_at")),
        "{partitioning}"
    );
    let watermark = rows(client, "SELECT watermark FROM sluice.jobs WHERE name = 'orders_bq'").await;
    damage(&env.fake, 130, 140);
    env.pg
        .psql_admin_db("shop", "UPDATE orders SET amount = 9999.99 WHERE id = 135");
    assert!(!rows(client, "VERIFY ETL JOB orders_bq BY HOUR").await.is_empty());
    let scripts = env.fake.state().scripts.len();

    let repair = rows(
        client,
        "REPAIR ETL JOB orders_bq FROM '2024-03-01T00:00:00Z' TO '2024-03-02T00:00:00Z'",
    )
    .await;
    assert_eq!(
        (repair[0][1].as_deref(), repair[0][2].as_deref()),
        (Some("succeeded"), Some("500")),
        "{repair:?}"
    );
    assert_eq!(env.fake.state().scripts.len(), scripts, "no DML transaction");
    let copies = partition_copies(&env.fake);
    assert_eq!(copies.len(), 1, "{copies:?}");
    let (job_id, copy) = &copies[0];
    assert!(job_id.ends_with("_commit"), "the run's commit job: {job_id}");
    let source = copy["sourceTable"]["tableId"].as_str().unwrap();
    assert!(
        source.starts_with("_sluice_staging_") && source.ends_with("$20240301"),
        "{copy}"
    );
    assert_eq!(copy["destinationTable"]["tableId"], "orders$20240301", "{copy}");
    assert_eq!(copy["destinationTable"]["datasetId"], "raw_data", "{copy}");
    assert_eq!(copy["writeDisposition"], "WRITE_TRUNCATE", "{copy}");
    assert_eq!(copy["createDisposition"], "CREATE_NEVER", "{copy}");
    assert!(staging_tables(&env.fake).is_empty());

    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
    assert!(rows(client, "VERIFY ETL JOB orders_bq BY HOUR").await.is_empty());
    assert_eq!(
        rows(client, "SELECT watermark FROM sluice.jobs WHERE name = 'orders_bq'").await,
        watermark,
        "the watermark did not move"
    );

    // Two days are two partitions: one transaction, no partition copy.
    damage(&env.fake, 10, 20);
    let repair = rows(
        client,
        "REPAIR ETL JOB orders_bq FROM '2024-03-01T00:00:00Z' TO '2024-03-03T00:00:00Z'",
    )
    .await;
    assert_eq!(repair[0][1].as_deref(), Some("succeeded"), "{repair:?}");
    assert_eq!(env.fake.state().scripts.len(), scripts + 1);
    assert!(
        env.fake
            .state()
            .scripts
            .last()
            .unwrap()
            .starts_with("BEGIN TRANSACTION;"),
        "{:?}",
        env.fake.state().scripts.last()
    );
    assert_eq!(partition_copies(&env.fake).len(), 1);
    assert_eq!(fake_fingerprint(&env.fake, "orders"), source_fingerprint(&env.pg));
    assert!(rows(client, "VERIFY ETL JOB orders_bq BY HOUR").await.is_empty());
}
