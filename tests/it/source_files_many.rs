//! A folder of a few thousand files (more than one listing page): SHOW
//! TABLES counts them while the listing streams, a snapshot loads each
//! file's rows once, and incremental runs load each file exactly once as
//! more files land, with the progress total the listing counted.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::common;

use common::*;

/// Files in the first batch, and files that land later.
const FIRST: u32 = 2000;
const LATER: u32 = 500;

/// Writes `events/part-<i>.csv` with row `i`, its time `i` seconds after a
/// fixed day (files 2000.. share one time with file 1999).
fn write_file(dir: &Path, i: u32) -> u64 {
    let path = dir.join("events").join(format!("part-{i:05}.csv"));
    let text = format!("id,kind\n{i},k{i}\n");
    fs::write(&path, &text).unwrap();
    let seconds = u64::from(i.min(FIRST - 1));
    let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + seconds);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    text.len() as u64
}

async fn run(client: &tokio_postgres::Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_files_load_once_with_streamed_listings() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("events")).unwrap();
    let mut bytes: u64 = (0..FIRST).map(|i| write_file(dir.path(), i)).sum();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION landing TYPE local OPTIONS (path '{}', file_columns 'true'); \
             CREATE ETL JOB events FROM landing.files.events INTO warehouse.events INCREMENTAL BY _modified_at ALL; \
             CREATE ETL JOB copy FROM landing.files.events INTO warehouse.events_copy SNAPSHOT;",
            dir.path().display()
        ))
        .await
        .unwrap();

    let tables = rows(&client, "SHOW TABLES FROM landing.files").await;
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert!(
        tables[0].contains(&Some(bytes.to_string())),
        "size_bytes adds up every file: {tables:?}"
    );

    assert_eq!(run(&client, "events").await, FIRST.to_string());
    assert_eq!(run(&client, "events").await, "0");
    let watermark = one(&client, "SELECT watermark FROM sluice.jobs WHERE name = 'events'").await;
    assert!(
        watermark.contains("part-01999.csv") && watermark.matches(".csv").count() == 1,
        "the watermark keeps only the file at the newest time: {watermark}"
    );

    // More files land, all at the newest time the watermark holds.
    bytes += (FIRST..FIRST + LATER).map(|i| write_file(dir.path(), i)).sum::<u64>();
    assert_eq!(run(&client, "events").await, LATER.to_string());
    assert_eq!(run(&client, "events").await, "0");
    let total = FIRST + LATER;
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), count(DISTINCT _file), min(id), max(id) FROM warehouse.events"
        )
        .await,
        [[
            Some(total.to_string()),
            Some(total.to_string()),
            Some(total.to_string()),
            Some("0".into()),
            Some((total - 1).to_string())
        ]],
        "each file's row once"
    );

    assert_eq!(run(&client, "copy").await, total.to_string());
    assert_eq!(
        one(&client, "SELECT count(DISTINCT id) FROM warehouse.events_copy").await,
        total.to_string()
    );
    let tables = rows(&client, "SHOW TABLES FROM landing.files").await;
    assert!(tables[0].contains(&Some(bytes.to_string())), "{tables:?}");
}
