//! Files read in parallel (`parallel_reads`) from moto's S3 still load
//! exactly once: a snapshot and incremental runs by `_modified_at` over
//! many files (most sharing a whole second, as S3 stamps them), and a kill
//! while files are in flight followed by a re-run. That reads really run
//! at once (and no more than allowed) is shown by the unit test
//! `connectors::files::streamed_tests::files_are_read_in_parallel_up_to_the_limit_each_once`.

use std::process::Command;

use crate::common;

use common::emulators::{Emulator, python_path};
use common::*;

/// Rows in each file.
const ROWS: u32 = 20;

/// Uploads `in/events/part-<i>.csv` for `i` in `files` in one go, with ids
/// `i * ROWS ..`.
fn upload(moto: &Emulator, files: std::ops::Range<u32>) {
    let script = format!(
        "import boto3\n\
         s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='a', aws_secret_access_key='b', \
         region_name='us-east-1')\n\
         for i in range({}, {}):\n\
         \x20   rows = ''.join(f'{{i * {ROWS} + r}},k{{i}}\\n' for r in range({ROWS}))\n\
         \x20   s3.put_object(Bucket='landing', Key=f'in/events/part-{{i:03}}.csv', Body=('id,kind\\n' + rows).encode())\n",
        moto.endpoint(),
        files.start,
        files.end
    );
    let out = Command::new(python_path()).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn connect(client: &tokio_postgres::Client, moto: &Emulator) {
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE s3 OPTIONS (bucket 'landing', prefix 'in', endpoint '{}', \
             access_key_id 'a', secret_access_key 'b', region 'us-east-1', parallel_reads 3); \
             CREATE ETL JOB events FROM lake.files.events INTO warehouse.events INCREMENTAL BY _modified_at ALL \
             WITH (guard_margin '0 seconds'); \
             CREATE ETL JOB copy FROM lake.files.events INTO warehouse.events_copy SNAPSHOT;",
            moto.endpoint()
        ))
        .await
        .unwrap();
}

async fn run(client: &tokio_postgres::Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

/// `files` files' rows are in `table` once each: rows, distinct ids, files,
/// and the smallest number of rows a file has there.
async fn assert_once(client: &tokio_postgres::Client, table: &str, files: u32, with_file: bool) {
    let file_column = if with_file { "_file" } else { "kind" };
    let counts = rows(
        client,
        &format!(
            "SELECT count(*), count(DISTINCT id), count(DISTINCT {file_column}), min(n), max(n) \
             FROM warehouse.{table}, (SELECT count(*) AS n FROM warehouse.{table} GROUP BY {file_column}) AS per_file"
        ),
    )
    .await;
    let all = files * ROWS;
    let total = u64::from(all) * u64::from(files);
    assert_eq!(
        counts[0],
        [
            Some(total.to_string()),
            Some(all.to_string()),
            Some(files.to_string()),
            Some(ROWS.to_string()),
            Some(ROWS.to_string())
        ],
        "{table}: every file's rows once (the cross join multiplies by the file count)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_reads_load_each_object_once_by_snapshot_and_incrementally() {
    let moto = Emulator::moto();
    moto.create_bucket("landing");
    upload(&moto, 0..30);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    connect(&client, &moto).await;
    // The objects' whole second is over before the first run.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    assert_eq!(run(&client, "events").await, (30 * ROWS).to_string());
    assert_eq!(run(&client, "events").await, "0");
    upload(&moto, 30..42);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(run(&client, "events").await, (12 * ROWS).to_string());
    assert_eq!(run(&client, "events").await, "0");
    assert_once(&client, "events", 42, true).await;

    assert_eq!(run(&client, "copy").await, (42 * ROWS).to_string());
    assert_once(&client, "events_copy", 42, true).await;
}

/// The server dies while a run has files in flight; nothing of that run is
/// committed, and the re-run loads each object once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_with_files_in_flight_then_a_rerun_loads_each_object_once() {
    let moto = Emulator::moto();
    moto.create_bucket("landing");
    upload(&moto, 0..12);
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "between_files")]);
    let client = sluice.client().await;
    connect(&client, &moto).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sluice.run_into_failpoint(&client, "RUN ETL JOB events").await;
    assert!(
        sluice.log_contents().contains("failpoint hit"),
        "killed at the failpoint"
    );
    let client = sluice.restart_without_failpoints().await;
    assert_eq!(
        rows(&client, "SELECT status FROM sluice.runs WHERE job = 'events'").await,
        [[Some("failed".to_owned())]],
        "the killed run is settled as failed"
    );
    assert_eq!(run(&client, "events").await, (12 * ROWS).to_string());
    assert_eq!(run(&client, "events").await, "0");
    assert_once(&client, "events", 12, true).await;
}
