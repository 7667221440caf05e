//! `WITH (parallelism = n)` on a DynamoDB job: the number of parallel
//! `Scan` segments (`TotalSegments`), with the connection's `segments` as
//! the default of jobs that leave it out.

use std::collections::BTreeSet;

use serde_json::json;

use crate::common::rows;
use crate::source_dynamodb_requests::{run, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_parallelism_sets_the_scan_segments_and_loads_every_item_once() {
    let (_dynamo, recorder, _sluice, client) = setup(40, ", segments 2, page_size 3").await;
    client
        .batch_execute(
            "CREATE ETL JOB par FROM dyn.dynamodb.events INTO warehouse.par SNAPSHOT WITH (parallelism = 4); \
             CREATE ETL JOB serial FROM dyn.dynamodb.events INTO warehouse.serial SNAPSHOT",
        )
        .await
        .unwrap();

    let explained = format!("{:?}", rows(&client, "EXPLAIN ETL JOB par").await);
    assert!(explained.contains("Scan events (TotalSegments 4"), "{explained}");
    recorder.take("");

    assert_eq!(run(&client, "par").await, "40");
    let scans = recorder.take("Scan");
    for scan in &scans {
        assert_eq!(scan["TotalSegments"], json!(4), "{scan}");
    }
    let segments: BTreeSet<u64> = scans.iter().map(|s| s["Segment"].as_u64().unwrap()).collect();
    assert_eq!(segments, BTreeSet::from([0, 1, 2, 3]), "every segment read: {scans:?}");

    // The rows equal the source's, each once.
    let columns = "id, kind, ts, total, qty, note";
    let source = rows(
        &client,
        &format!("SELECT {columns} FROM dyn.dynamodb.events ORDER BY id"),
    )
    .await;
    assert_eq!(source.len(), 40);
    assert_eq!(
        rows(&client, &format!("SELECT {columns} FROM warehouse.par ORDER BY id")).await,
        source
    );
    recorder.take("");

    // A job without parallelism scans in the connection's `segments`.
    assert_eq!(run(&client, "serial").await, "40");
    let scans = recorder.take("Scan");
    assert!(!scans.is_empty());
    for scan in &scans {
        assert_eq!(scan["TotalSegments"], json!(2), "{scan}");
    }

    // ALTER sets it too.
    client
        .batch_execute("ALTER ETL JOB serial SET (parallelism = 3)")
        .await
        .unwrap();
    recorder.take("");
    assert_eq!(run(&client, "serial").await, "40");
    let scans = recorder.take("Scan");
    for scan in &scans {
        assert_eq!(scan["TotalSegments"], json!(3), "{scan}");
    }
    assert_eq!(
        rows(&client, &format!("SELECT {columns} FROM warehouse.serial ORDER BY id")).await,
        source
    );
}
