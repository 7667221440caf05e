//! Buckets as sources, end to end against real emulators (moto for S3,
//! fake-gcs-server for GCS, Azurite for Azure Blob) and a real `sluice`
//! server: the test before save and its precise errors, exploring files as
//! tables (compressed, Hive-partitioned, `_file` and `_modified_at`),
//! snapshot and incremental loads by `_modified_at` with files arriving
//! between runs, and a crash between the destination's commit and the
//! catalog's.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common;

use common::emulators::{AZURITE_ACCOUNT, AZURITE_KEY, Emulator};
use common::*;

/// The bucket (or container) every test reads.
const BUCKET: &str = "landing";
/// A secret that must never be shown.
const S3_SECRET: &str = "s3-secret-Zq81";
/// The guard margin of the incremental jobs: files stamped this close to a
/// run's start are left for the next run.
const MARGIN_SECONDS: u64 = 3;

#[derive(Clone, Copy, PartialEq)]
enum Cloud {
    S3,
    Gcs,
    Azure,
}

/// An emulator with the bucket `landing` in it.
struct Bucket {
    cloud: Cloud,
    emulator: Emulator,
}

impl Bucket {
    fn start(cloud: Cloud) -> Bucket {
        let emulator = match cloud {
            Cloud::S3 => Emulator::moto(),
            Cloud::Gcs => Emulator::fake_gcs(),
            Cloud::Azure => Emulator::azurite(),
        };
        match cloud {
            Cloud::S3 => emulator.create_bucket(BUCKET),
            Cloud::Gcs => emulator.create_gcs_bucket(BUCKET),
            Cloud::Azure => emulator.create_container(BUCKET),
        }
        Bucket { cloud, emulator }
    }

    fn put(&self, key: &str, data: &[u8]) {
        match self.cloud {
            Cloud::S3 => self.emulator.put_s3(BUCKET, key, data),
            Cloud::Gcs => self.emulator.put_gcs(BUCKET, key, data),
            Cloud::Azure => self.emulator.put_blob(BUCKET, key, data),
        }
    }

    fn type_name(&self) -> &'static str {
        match self.cloud {
            Cloud::S3 => "s3",
            Cloud::Gcs => "gcs",
            Cloud::Azure => "azure_blob",
        }
    }

    /// The OPTIONS of a connection to `bucket` under `prefix`.
    fn options(&self, bucket: &str, prefix: &str) -> String {
        options(self.cloud, &self.emulator.endpoint(), bucket, prefix)
    }

    /// How `_file` names an object.
    fn url(&self, key: &str) -> String {
        match self.cloud {
            Cloud::S3 => format!("s3://{BUCKET}/{key}"),
            Cloud::Gcs => format!("gs://{BUCKET}/{key}"),
            Cloud::Azure => format!("az://{AZURITE_ACCOUNT}/{BUCKET}/{key}"),
        }
    }
}

/// Connection options for `cloud` at `endpoint`.
fn options(cloud: Cloud, endpoint: &str, bucket: &str, prefix: &str) -> String {
    match cloud {
        Cloud::S3 => format!(
            "bucket '{bucket}', prefix '{prefix}', endpoint '{endpoint}', region 'us-east-1', \
             access_key_id 'sluice-test', secret_access_key '{S3_SECRET}'"
        ),
        Cloud::Gcs => format!(
            "bucket '{bucket}', prefix '{prefix}', credentials '{}'",
            gcs_key(endpoint)
        ),
        Cloud::Azure => format!(
            "account '{AZURITE_ACCOUNT}', container '{bucket}', prefix '{prefix}', connection_string '{}'",
            azure_connection_string(endpoint, AZURITE_KEY)
        ),
    }
}

/// A service-account key that points object_store at fake-gcs-server.
fn gcs_key(endpoint: &str) -> String {
    format!(
        r#"{{"gcs_base_url": "{endpoint}", "disable_oauth": true, "client_email": "etl@test.iam.gserviceaccount.com", "private_key": "", "private_key_id": ""}}"#
    )
}

fn azure_connection_string(endpoint: &str, key: &str) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};"
    )
}

/// `data` gzip-compressed (by the system's gzip).
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Waits until files written now are older than the guard margin.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(MARGIN_SECONDS * 1000 + 1500)).await;
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

async fn create_is_refused(client: &tokio_postgres::Client, type_name: &str, options: &str, code: &str) -> String {
    expect_err(
        client,
        &format!("CREATE CONNECTION bad TYPE {type_name} OPTIONS ({options})"),
        code,
    )
    .await
}

/// Every failure is precise and saves nothing; a good connection saves, a
/// second one to the same place is a duplicate.
async fn test_before_save(cloud: Cloud) {
    let bucket = Bucket::start(cloud);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let type_name = bucket.type_name();

    let missing = create_is_refused(
        &client,
        type_name,
        &bucket.options("nope", ""),
        match cloud {
            // fake-gcs-server answers a missing bucket with HTTP 500 (real GCS: 404 NoSuchBucket).
            Cloud::Gcs => "08001",
            _ => "3D000",
        },
    )
    .await;
    match cloud {
        Cloud::Gcs => assert!(missing.contains("no bucket named nope"), "{missing}"),
        Cloud::Azure => assert!(
            missing.contains("container \"nope\" of account \"devstoreaccount1\" does not exist (ContainerNotFound"),
            "{missing}"
        ),
        Cloud::S3 => assert!(
            missing.contains("bucket \"nope\" does not exist (NoSuchBucket"),
            "{missing}"
        ),
    }

    let unreachable = options(cloud, &format!("http://127.0.0.1:{}", closed_port()), BUCKET, "");
    let message = create_is_refused(&client, type_name, &unreachable, "08001").await;
    assert!(message.contains("cannot reach the endpoint"), "{message}");

    match cloud {
        Cloud::Azure => {
            let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==";
            let bad = format!(
                "account '{AZURITE_ACCOUNT}', container '{BUCKET}', connection_string '{}'",
                azure_connection_string(&bucket.emulator.endpoint(), wrong_key)
            );
            let message = create_is_refused(&client, type_name, &bad, "28P01").await;
            assert!(message.contains("the credentials were rejected"), "{message}");
            assert!(!message.contains(wrong_key), "{message}");
            let sas = format!(
                "account '{AZURITE_ACCOUNT}', container '{BUCKET}', sas_token 'sv=2020-08-04&sig=bm9wZQ%3D%3D'"
            );
            // No endpoint: the public cloud's account host, unreachable here.
            let message = create_is_refused(&client, type_name, &sas, "08001").await;
            assert!(!message.contains("bm9wZQ"), "{message}");
        }
        Cloud::Gcs => {
            let bad = format!("bucket '{BUCKET}', credentials 'not a key {S3_SECRET}'");
            let message = create_is_refused(&client, type_name, &bad, "28P01").await;
            assert!(
                message.contains("credentials is not a service-account JSON key"),
                "{message}"
            );
            assert!(!message.contains(S3_SECRET), "{message}");
        }
        Cloud::S3 => {} // Signatures: s3_credentials_are_checked_against_iam.
    }

    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE {type_name} OPTIONS ({})",
            bucket.options(BUCKET, "in")
        ))
        .await
        .unwrap();
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION lake_again TYPE {type_name} OPTIONS ({})",
            bucket.options(BUCKET, "in")
        ),
        "42710",
    )
    .await;
    assert!(message.contains("lake"), "{message}");
    let saved = rows(&client, "SELECT name, status FROM sluice.connections ORDER BY name").await;
    assert_eq!(saved, [[Some("lake".to_owned()), Some("ok".to_owned())]]);
    assert!(
        !sluice.log_contents().contains(S3_SECRET),
        "secrets stay out of the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_connections_are_tested_before_save() {
    test_before_save(Cloud::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_connections_are_tested_before_save() {
    test_before_save(Cloud::Gcs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_connections_are_tested_before_save() {
    test_before_save(Cloud::Azure).await;
}

/// moto checking signatures: an unknown key id and a wrong secret are bad
/// credentials (28P01), a user without permissions is denied (42501).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credentials_are_checked_against_iam() {
    let (moto, (etl_id, etl_secret), (nobody_id, nobody_secret)) = Emulator::moto_iam(BUCKET);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let with = |id: &str, secret: &str| {
        format!(
            "bucket '{BUCKET}', endpoint '{}', region 'us-east-1', access_key_id '{id}', secret_access_key '{secret}'",
            moto.endpoint()
        )
    };
    let message = create_is_refused(&client, "s3", &with("AKIAUNKNOWN", "unknown-secret-1"), "28P01").await;
    assert!(message.contains("InvalidAccessKeyId"), "{message}");
    let message = create_is_refused(&client, "s3", &with(&etl_id, "wrong-secret-9"), "28P01").await;
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(!message.contains("wrong-secret-9"), "{message}");
    let message = create_is_refused(&client, "s3", &with(&nobody_id, &nobody_secret), "42501").await;
    assert!(
        message.contains("access denied to bucket \"landing\": the credentials need s3:ListBucket"),
        "{message}"
    );
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE s3 OPTIONS ({})",
            with(&etl_id, &etl_secret)
        ))
        .await
        .unwrap();
}

const ORDERS_CSV: &str = "id,amount,note\n1,10.5,first\n2,20.25,\"with, comma\"\n3,7,third\n";

/// An Avro object container file of two rows.
fn avro_file() -> Vec<u8> {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec![Some("cpu"), None])),
            Arc::new(Float64Array::from(vec![Some(0.5), Some(2.25)])),
        ],
    )
    .unwrap();
    let mut writer = arrow_avro::writer::WriterBuilder::new(schema.as_ref().clone())
        .build::<_, arrow_avro::writer::format::AvroOcfFormat>(Vec::new())
        .unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    writer.into_inner()
}

/// Files of every kind under `in/`.
fn seed(bucket: &Bucket) {
    bucket.put("in/orders.csv", ORDERS_CSV.as_bytes());
    bucket.put("in/logs.csv.gz", &gzip(b"level,message\ninfo,started\nwarn,slow\n"));
    bucket.put("in/sales/region=eu/part-0.csv", b"id,total\n1,100\n2,200\n");
    bucket.put("in/sales/region=us/part-0.csv", b"id,total\n3,300\n");
    bucket.put("in/book.xlsx", b"PK not really a workbook");
    bucket.put("in/metrics.avro", &avro_file());
    bucket.put("in/tagged.csv", b"id,_file\n1,mine\n");
    bucket.put("in/_SUCCESS", b"");
    bucket.put("outside.csv", b"a\n1\n");
}

async fn explore(cloud: Cloud) {
    let bucket = Bucket::start(cloud);
    seed(&bucket);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE {} OPTIONS ({})",
            bucket.type_name(),
            bucket.options(BUCKET, "in/")
        ))
        .await
        .unwrap();

    assert_eq!(one(&client, "SHOW SCHEMAS FROM lake").await, "files");
    let tables = rows(&client, "SHOW TABLES FROM lake.files").await;
    let names: Vec<_> = tables.iter().map(|t| t[1].clone().unwrap()).collect();
    assert_eq!(names, ["book", "logs", "metrics", "orders", "sales", "tagged"]);
    let orders = tables.iter().find(|t| t[1].as_deref() == Some("orders")).unwrap();
    assert_eq!(
        orders[4].as_deref(),
        Some(ORDERS_CSV.len().to_string().as_str()),
        "size in bytes"
    );
    assert!(orders[5].is_some(), "last modified: {orders:?}");

    let described = rows(&client, "DESCRIBE lake.files.sales").await;
    let columns: Vec<_> = described.iter().map(|c| c[0].clone().unwrap()).collect();
    assert_eq!(columns, ["id", "total", "region", "_file", "_modified_at"]);
    let modified = described
        .iter()
        .find(|c| c[0].as_deref() == Some("_modified_at"))
        .unwrap();
    assert!(modified.contains(&Some("TIMESTAMP".to_owned())), "{modified:?}");
    let confidence: Vec<_> = described.iter().map(|c| c[9].clone().unwrap()).collect();
    assert_eq!(
        confidence,
        ["medium", "medium", "high", "high", "high"],
        "CSV types are inferred"
    );
    let avro = rows(&client, "DESCRIBE lake.files.metrics").await;
    assert_eq!(avro[0][9].as_deref(), Some("high"), "Avro types are exact: {avro:?}");
    let source_types: Vec<_> = described.iter().map(|c| c[2].clone().unwrap()).collect();
    assert_eq!(
        source_types[2..],
        ["key=value folder", "object URL", "object last-modified time"]
    );
    // A file's own column wins over a pseudo-column of the same name.
    let tagged = rows(&client, "SELECT _file, _modified_at IS NOT NULL FROM lake.files.tagged").await;
    assert_eq!(tagged, [[Some("mine".to_owned()), Some("t".to_owned())]]);

    let sales = rows(
        &client,
        "SELECT id, total, region, _file FROM lake.files.sales ORDER BY id",
    )
    .await;
    assert_eq!(
        sales,
        [
            ["1", "100", "eu", &bucket.url("in/sales/region=eu/part-0.csv")],
            ["2", "200", "eu", &bucket.url("in/sales/region=eu/part-0.csv")],
            ["3", "300", "us", &bucket.url("in/sales/region=us/part-0.csv")],
        ]
        .map(|r| r.map(|v| Some(v.to_owned())))
    );
    let logs = rows(&client, "SELECT level, message FROM lake.files.logs").await;
    assert_eq!(
        logs,
        [["info", "started"], ["warn", "slow"]].map(|r| r.map(|v| Some(v.to_owned())))
    );
    let preview = rows(&client, "SELECT id, note FROM lake.files.orders LIMIT 2").await;
    assert_eq!(
        preview,
        [["1", "first"], ["2", "with, comma"]].map(|r| r.map(|v| Some(v.to_owned())))
    );
    let metrics = rows(&client, "SELECT id, name, value FROM lake.files.metrics ORDER BY id").await;
    assert_eq!(
        metrics,
        [
            [Some("1".to_owned()), Some("cpu".to_owned()), Some("0.5".to_owned())],
            [Some("2".to_owned()), None, Some("2.25".to_owned())]
        ]
    );
    let message = expect_err(&client, "DESCRIBE lake.files.book", "0A000").await;
    assert!(message.contains("Excel"), "{message}");
    let message = expect_err(&client, "DESCRIBE lake.files.ordres", "42704").await;
    assert!(message.contains("orders"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_files_are_explored_as_tables() {
    explore(Cloud::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_files_are_explored_as_tables() {
    explore(Cloud::Gcs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_files_are_explored_as_tables() {
    explore(Cloud::Azure).await;
}

fn ndjson(ids: std::ops::RangeInclusive<u32>) -> Vec<u8> {
    ids.map(|id| format!("{{\"id\": {id}, \"kind\": \"k{id}\"}}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Runs `job`; the rows it loaded.
async fn run(client: &tokio_postgres::Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

async fn loads(cloud: Cloud) {
    let bucket = Bucket::start(cloud);
    bucket.put("in/orders.csv", ORDERS_CSV.as_bytes());
    bucket.put("in/events/part-001.json", &ndjson(1..=2));
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE {} OPTIONS ({}); \
             CREATE ETL JOB orders FROM lake.files.orders INTO warehouse.orders SNAPSHOT; \
             CREATE ETL JOB events FROM lake.files.events INTO warehouse.events INCREMENTAL BY _modified_at ALL \
             WITH (guard_margin '{MARGIN_SECONDS} seconds');",
            bucket.type_name(),
            bucket.options(BUCKET, "in")
        ))
        .await
        .unwrap();

    // Snapshot: every file as of one listing, replaced on each run.
    assert_eq!(run(&client, "orders").await, "3");
    bucket.put("in/orders.csv", format!("{ORDERS_CSV}4,1,fourth\n").as_bytes());
    assert_eq!(run(&client, "orders").await, "4");
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.orders").await, "4");

    settle().await;
    assert_eq!(run(&client, "events").await, "2");
    assert_eq!(run(&client, "events").await, "0", "a file is loaded once");

    // A file stamped within the guard margin waits for the next run.
    bucket.put("in/events/part-002.json", &ndjson(3..=5));
    assert_eq!(run(&client, "events").await, "0");
    let reason = one(
        &client,
        "SELECT guard_reason FROM sluice.runs WHERE job = 'events' ORDER BY run_id DESC LIMIT 1",
    )
    .await;
    assert_eq!(reason, "files still uploading (guard_margin)");

    // Files arriving between runs, several sharing one timestamp.
    bucket.put("in/events/part-003.json", &ndjson(6..=6));
    bucket.put("in/events/part-004.json", &ndjson(7..=8));
    settle().await;
    assert_eq!(run(&client, "events").await, "6");
    assert_eq!(run(&client, "events").await, "0");

    // A changed file is loaded again, whole.
    bucket.put("in/events/part-001.json", &ndjson(101..=101));
    settle().await;
    assert_eq!(run(&client, "events").await, "1");
    let loaded = rows(
        &client,
        "SELECT count(*), count(DISTINCT id), count(DISTINCT _file), min(id), max(id) FROM warehouse.events",
    )
    .await;
    assert_eq!(loaded[0], ["9", "9", "4", "1", "101"].map(|v| Some(v.to_owned())));
    let watermark = one(&client, "SELECT watermark FROM sluice.jobs WHERE name = 'events'").await;
    assert!(!watermark.is_empty(), "the watermark is the newest file's time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_files_load_by_snapshot_and_once_each_by_modified_time() {
    loads(Cloud::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_files_load_by_snapshot_and_once_each_by_modified_time() {
    loads(Cloud::Gcs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_files_load_by_snapshot_and_once_each_by_modified_time() {
    loads(Cloud::Azure).await;
}

/// The server dies after the warehouse committed a run's files but before
/// the catalog recorded it: after a restart the run is adopted and the
/// files are not loaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_destination_commit_loads_each_file_once() {
    let bucket = Bucket::start(Cloud::S3);
    bucket.put("in/events/part-001.json", &ndjson(1..=3));
    bucket.put("in/events/part-002.json", &ndjson(4..=5));
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "after_destination_commit")]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE s3 OPTIONS ({}); \
             CREATE ETL JOB events FROM lake.files.events INTO warehouse.events INCREMENTAL BY _modified_at ALL \
             WITH (guard_margin '{MARGIN_SECONDS} seconds');",
            bucket.options(BUCKET, "in")
        ))
        .await
        .unwrap();
    settle().await;
    sluice.run_into_failpoint(&client, "RUN ETL JOB events").await;
    sluice.opts.envs.clear();
    sluice.restart();
    let client = sluice.client().await;
    let run_status = rows(&client, "SELECT status FROM sluice.runs WHERE job = 'events'").await;
    assert_eq!(
        run_status,
        [[Some("succeeded".to_owned())]],
        "the committed run is adopted"
    );
    bucket.put("in/events/part-003.json", &ndjson(6..=6));
    settle().await;
    assert_eq!(run(&client, "events").await, "1", "only the new file");
    assert_eq!(
        rows(&client, "SELECT count(*), count(DISTINCT id) FROM warehouse.events").await[0],
        ["6", "6"].map(|v| Some(v.to_owned()))
    );
    assert!(
        !sluice.log_contents().contains(S3_SECRET),
        "secrets stay out of the log"
    );
}

/// The server is killed between two files of a run: nothing of the run is
/// committed, and the re-run after the restart loads every file once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_files_then_a_rerun_loads_each_file_once() {
    kill_between_files(Cloud::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcs_kill_between_files_then_a_rerun_loads_each_file_once() {
    kill_between_files(Cloud::Gcs).await;
}

async fn kill_between_files(cloud: Cloud) {
    let bucket = Bucket::start(cloud);
    bucket.put("in/events/part-001.json", &ndjson(1..=3));
    bucket.put("in/events/part-002.json", &ndjson(4..=5));
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "between_files")]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE {} OPTIONS ({}); \
             CREATE ETL JOB events FROM lake.files.events INTO warehouse.events INCREMENTAL BY _modified_at ALL \
             WITH (guard_margin '{MARGIN_SECONDS} seconds');",
            bucket.type_name(),
            bucket.options(BUCKET, "in")
        ))
        .await
        .unwrap();
    settle().await;
    sluice.run_into_failpoint(&client, "RUN ETL JOB events").await;
    assert!(
        sluice.log_contents().contains("failpoint hit"),
        "killed at the failpoint"
    );
    sluice.opts.envs.clear();
    sluice.restart();
    let client = sluice.client().await;
    let interrupted = rows(&client, "SELECT status FROM sluice.runs WHERE job = 'events'").await;
    assert_eq!(
        interrupted,
        [[Some("failed".to_owned())]],
        "the killed run is settled as failed"
    );
    assert_eq!(run(&client, "events").await, "5");
    assert_eq!(run(&client, "events").await, "0");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), sum(id) FROM warehouse.events"
        )
        .await[0],
        ["5", "5", "15"].map(|v| Some(v.to_owned()))
    );
    assert_eq!(
        rows(
            &client,
            "SELECT _file, count(*) FROM warehouse.events GROUP BY _file ORDER BY _file"
        )
        .await,
        [
            [Some(bucket.url("in/events/part-001.json")), Some("3".to_owned())],
            [Some(bucket.url("in/events/part-002.json")), Some("2".to_owned())]
        ],
        "each file's rows once"
    );
}

/// A Parquet file of rows `ids` (`id` and `name`, in the other order where
/// `reversed`), as another writer would make it.
fn parquet_file(ids: std::ops::RangeInclusive<i64>, reversed: bool) -> Vec<u8> {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    let mut columns: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("id", DataType::Int64, true),
            Arc::new(Int64Array::from_iter_values(ids.clone())),
        ),
        (
            Field::new("name", DataType::Utf8, true),
            Arc::new(StringArray::from_iter_values(ids.map(|i| format!("order {i}")))),
        ),
    ];
    if reversed {
        columns.reverse();
    }
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let mut bytes = Vec::new();
    let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

/// The warehouse's copies of source files loaded as they are.
fn copied_files(sluice: &Sluice, table: &str) -> Vec<Vec<u8>> {
    let dir = sluice.data_dir().join("warehouse").join(table).join("data");
    let mut copies = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().contains("-copy-") {
            copies.push(std::fs::read(path).unwrap());
        }
    }
    copies
}

/// A snapshot of Parquet files copies those whose columns are the table's
/// byte for byte (their `_file` and `_modified_at` kept beside them) and
/// decodes the others; both read back alike.
async fn parquet_files_load_as_they_are(cloud: Cloud) {
    let bucket = Bucket::start(cloud);
    let (first, second) = (parquet_file(1..=3, false), parquet_file(4..=5, false));
    bucket.put("in/orders/part-0.parquet", &first);
    bucket.put("in/orders/part-1.parquet", &second);
    // Its columns in another order: this file is decoded.
    bucket.put("in/orders/part-2.parquet", &parquet_file(6..=6, true));
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE {} OPTIONS ({}); \
             CREATE ETL JOB orders FROM lake.files.orders INTO warehouse.orders SNAPSHOT;",
            bucket.type_name(),
            bucket.options(BUCKET, "in")
        ))
        .await
        .unwrap();
    for attempt in 0..2 {
        assert_eq!(run(&client, "orders").await, "6");
        let url = |part: &str| Some(bucket.url(&format!("in/orders/{part}")));
        assert_eq!(
            rows(
                &client,
                "SELECT _file, count(*), sum(id), min(name) FROM warehouse.orders GROUP BY _file ORDER BY _file"
            )
            .await,
            [
                [
                    url("part-0.parquet"),
                    Some("3".into()),
                    Some("6".into()),
                    Some("order 1".into())
                ],
                [
                    url("part-1.parquet"),
                    Some("2".into()),
                    Some("9".into()),
                    Some("order 4".into())
                ],
                [
                    url("part-2.parquet"),
                    Some("1".into()),
                    Some("6".into()),
                    Some("order 6".into())
                ],
            ]
        );
        assert_eq!(
            one(
                &client,
                "SELECT count(*) FROM warehouse.orders WHERE _modified_at > now() - INTERVAL '1 hour'"
            )
            .await,
            "6"
        );
        // The second run's copies are beside the first's, which the
        // warehouse keeps with the earlier table versions.
        let copies = copied_files(&sluice, "orders");
        assert_eq!(copies.len(), 2 * (attempt + 1), "one copy of each matching file");
        assert!(copies.contains(&first) && copies.contains(&second));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_parquet_files_load_as_they_are() {
    parquet_files_load_as_they_are(Cloud::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_parquet_files_load_as_they_are() {
    parquet_files_load_as_they_are(Cloud::Gcs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_parquet_files_load_as_they_are() {
    parquet_files_load_as_they_are(Cloud::Azure).await;
}

/// Killed between two copied files, a snapshot publishes nothing; the next
/// run loads every file once and the killed run's copies are cleaned up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_copied_files_then_a_rerun_loads_each_file_once() {
    let bucket = Bucket::start(Cloud::S3);
    for (part, ids) in [(0, 1..=3), (1, 4..=5), (2, 6..=9)] {
        bucket.put(&format!("in/orders/part-{part}.parquet"), &parquet_file(ids, false));
    }
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "between_files")]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE s3 OPTIONS ({}); \
             CREATE ETL JOB orders FROM lake.files.orders INTO warehouse.orders SNAPSHOT;",
            bucket.options(BUCKET, "in")
        ))
        .await
        .unwrap();
    sluice.run_into_failpoint(&client, "RUN ETL JOB orders").await;
    sluice.opts.envs.clear();
    sluice.restart();
    let client = sluice.client().await;
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.orders").await, "0");
    assert_eq!(run(&client, "orders").await, "9");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), sum(id) FROM warehouse.orders"
        )
        .await[0],
        ["9", "9", "45"].map(|v| Some(v.to_owned()))
    );
    assert_eq!(
        copied_files(&sluice, "orders").len(),
        3,
        "the killed run's copies are gone"
    );
}
