//! An incremental DynamoDB job whose cursor is the sort key of a global
//! index whose partition values the connection lists (`index_partitions`):
//! its runs after the first are one `Query` of the index per value, not a
//! `Scan`, and load each item once (moto, through the recording proxy).

use serde_json::json;

use crate::common::{expect_err, rows};
use crate::source_dynamodb_requests::{event, filled, run, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_on_an_index_sort_key_is_one_query_per_listed_partition() {
    let (dynamo, recorder, _sluice, client) = setup(20, ", page_size 2, index_partitions 'events.by_kind=a|b'").await;
    client
        .batch_execute("CREATE ETL JOB ev FROM dyn.dynamodb.events INTO warehouse.events INCREMENTAL BY ts ALL")
        .await
        .unwrap();
    recorder.take("");
    // The first run has no lower bound yet: a Scan.
    assert_eq!(run(&client, "ev").await, "20");
    assert!(!recorder.take("Scan").is_empty());

    dynamo.put(
        "events",
        &(21..=25)
            .map(|id| {
                let mut item = event(id);
                item["ts"] = json!({"N": "9"});
                item
            })
            .collect::<Vec<_>>(),
    );
    recorder.take("");
    assert_eq!(run(&client, "ev").await, "5");
    let queries = recorder.take("Query");
    let mut conditions: Vec<String> = queries
        .iter()
        .map(|q| {
            assert_eq!(q["IndexName"], json!("by_kind"), "{q}");
            filled(q, "KeyConditionExpression").unwrap()
        })
        .collect();
    conditions.dedup();
    assert_eq!(
        conditions,
        [
            r#"kind = {"S":"a"} AND ts > {"N":"6"}"#,
            r#"kind = {"S":"b"} AND ts > {"N":"6"}"#
        ],
        "one query per partition, paged: {queries:?}"
    );
    assert_eq!(run(&client, "ev").await, "0");
    assert!(
        recorder.take("Scan").is_empty(),
        "no Scan once the window has a lower bound"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), sum(id) FROM warehouse.events"
        )
        .await,
        [[
            Some("25".to_owned()),
            Some("25".to_owned()),
            Some((1..=25).sum::<u32>().to_string())
        ]]
    );

    // A malformed option is refused by the connection test.
    let bad = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION bad TYPE dynamodb OPTIONS ({}, index_partitions 'events.by_kind')",
            dynamo.options()
        ),
        "22023",
    )
    .await;
    assert!(bad.contains("index_partitions"), "{bad}");
}
