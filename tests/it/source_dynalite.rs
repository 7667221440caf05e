//! DynamoDB as a source against dynalite, the second DynamoDB of the tests
//! (it validates requests like the real service): the connection test,
//! DESCRIBE, a parallel snapshot, a filtered SELECT sent as a `Query` of a
//! global index, an incremental job with its `FilterExpression`, and a
//! nested RECORD / REPEATED column.

use crate::common::dynalite::Dynalite;
use crate::common::{Sluice, expect_err, free_port, one, rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynalite_serves_snapshots_queries_increments_and_nested_columns() {
    let dynalite = Dynalite::start();
    dynalite.python(
        "d.create_table(TableName='events', KeySchema=[{'AttributeName': 'id', 'KeyType': 'HASH'}], \
         AttributeDefinitions=[{'AttributeName': 'id', 'AttributeType': 'N'}, \
         {'AttributeName': 'kind', 'AttributeType': 'S'}, {'AttributeName': 'ts', 'AttributeType': 'N'}], \
         GlobalSecondaryIndexes=[{'IndexName': 'by_kind', 'KeySchema': [{'AttributeName': 'kind', 'KeyType': 'HASH'}, \
         {'AttributeName': 'ts', 'KeyType': 'RANGE'}], 'Projection': {'ProjectionType': 'ALL'}, \
         'ProvisionedThroughput': {'ReadCapacityUnits': 5, 'WriteCapacityUnits': 5}}], \
         ProvisionedThroughput={'ReadCapacityUnits': 5, 'WriteCapacityUnits': 5})\n\
         d.get_waiter('table_exists').wait(TableName='events')\n\
         for i in range(1, 31):\n    \
         d.put_item(TableName='events', Item={'id': {'N': str(i)}, 'kind': {'S': 'ab'[i % 2]}, 'ts': {'N': str(i // 3)}, \
         'tags': {'L': [{'S': 't%d' % i}]}, 'meta': {'M': {'n': {'N': str(i)}}}})",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    expect_err(
        &client,
        &format!(
            "CREATE CONNECTION bad TYPE dynamodb OPTIONS (endpoint 'http://127.0.0.1:{}', access_key_id 'a', secret_access_key 'b')",
            free_port()
        ),
        "08001",
    )
    .await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION dyn TYPE dynamodb OPTIONS ({}, page_size 4)",
            dynalite.options()
        ))
        .await
        .unwrap();
    let described = rows(&client, "DESCRIBE dyn.dynamodb.events").await;
    let columns: Vec<String> = described
        .iter()
        .map(|r| format!("{} {}", r[0].as_deref().unwrap(), r[2].as_deref().unwrap()))
        .collect();
    assert_eq!(
        columns,
        [
            "id int64 (partition key)",
            "kind string",
            "meta json",
            "tags json",
            "ts int64"
        ]
    );
    // A global index query.
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM dyn.dynamodb.events WHERE kind = 'a' AND ts > 2 AND ts <= 5"
        )
        .await,
        "4",
        "ids 10, 12, 14 and 16"
    );
    let explained = format!(
        "{:?}",
        rows(
            &client,
            "EXPLAIN SELECT id FROM dyn.dynamodb.events WHERE kind = 'a' AND ts > 2"
        )
        .await
    );
    assert!(explained.contains("Query events index by_kind"), "{explained}");

    client
        .batch_execute(
            "CREATE ETL JOB snap FROM dyn.dynamodb.events INTO warehouse.snap SNAPSHOT \
               COLUMNS (meta RECORD(n INT64), tags REPEATED STRING) WITH (parallelism = 3);
             CREATE ETL JOB inc FROM dyn.dynamodb.events INTO warehouse.inc INCREMENTAL BY ts ALL",
        )
        .await
        .unwrap();
    for job in ["snap", "inc"] {
        let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
        assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
        assert_eq!(summary[0][2].as_deref(), Some("30"));
    }
    assert_eq!(
        rows(
            &client,
            "SELECT count(DISTINCT id), sum(meta['n']), sum(cardinality(tags)) FROM warehouse.snap"
        )
        .await,
        [[Some("30".to_owned()), Some("465".to_owned()), Some("30".to_owned())]]
    );
    dynalite.python(
        "for i in range(31, 35):\n    d.put_item(TableName='events', Item={'id': {'N': str(i)}, 'kind': {'S': 'a'}, 'ts': {'N': '20'}})",
    );
    let summary = rows(&client, "RUN ETL JOB inc").await;
    assert_eq!(summary[0][2].as_deref(), Some("4"), "{summary:?}");
    assert_eq!(one(&client, "SELECT count(DISTINCT id) FROM warehouse.inc").await, "34");
}
