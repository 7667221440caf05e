//! Cluster runs into BigQuery (docs/cluster.md): the executors cut their
//! parts into load chunks and stage them in the connection's
//! `staging_bucket`; the server loads the chunks they report and commits
//! with one copy job. Against the fake BigQuery and its Cloud Storage
//! (`tests/fake_bigquery`), the cluster of `cluster.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::bigquery::{fake_fingerprint, source_fingerprint, table_rows};
use crate::cluster::Cluster;
use crate::common::*;
use crate::fake_bigquery::FakeBigQuery;
use crate::job_ops::{detail, explain};

/// The fake, a cluster whose processes reach it, and connection `bq`
/// (staging in `gs://stage/cluster`); chunks of `chunk_bytes`, at most
/// five to a load job.
async fn start(rows: u64, chunk_bytes: &str) -> (FakeBigQuery, Cluster, tokio_postgres::Client, tempfile::TempDir) {
    let fake = FakeBigQuery::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = fake.write_key_file(keys.path());
    let gcs = fake.gcs_url();
    let cluster = Cluster::start_with(
        rows,
        &[
            ("SLUICE_BIGQUERY_ENDPOINT", fake.url.as_str()),
            ("SLUICE_GCS_ENDPOINT", gcs.as_str()),
            ("SLUICE_BIGQUERY_CHUNK_BYTES", chunk_bytes),
            ("SLUICE_BIGQUERY_URIS_PER_JOB", "5"),
        ],
    );
    let client = cluster.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION bq TYPE bigquery OPTIONS (project 'test-project', dataset 'raw_data', location 'EU', \
             credentials_file '{}', connect_timeout 5, staging_bucket 'gs://stage/cluster')",
            key_file.display()
        ))
        .await
        .unwrap();
    (fake, cluster, client, keys)
}

/// The `sourceUris` of every load job the fake ran.
fn loaded_uris(fake: &FakeBigQuery) -> Vec<String> {
    let state = fake.state();
    let uris = (state.jobs.values()).filter_map(|job| job.pointer("/configuration/load/sourceUris"));
    uris.flat_map(|uris| uris.as_array().unwrap().clone())
        .map(|uri| uri.as_str().unwrap().to_owned())
        .collect()
}

/// The staged objects an executor wrote (`.../p<part>-<token>-c<n>.parquet`).
fn executor_chunks(uris: &[String]) -> Vec<&String> {
    uris.iter()
        .filter(|uri| uri.rsplit('/').next().is_some_and(|name| name.starts_with('p')))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigquery_load_is_staged_by_both_executors_and_committed_once() {
    let (fake, cluster, client, _keys) = start(20_000, "30000").await;
    client
        .batch_execute(
            "CREATE ETL JOB to_bq FROM shop.public.orders INTO bq.orders SNAPSHOT WITH (parallelism = 4, batch_rows = 1000); \
             CREATE ETL JOB here FROM shop.public.orders INTO bq.orders_here SNAPSHOT WITH (execution = 'local')",
        )
        .await
        .unwrap();
    let plan = explain(&client, "to_bq").await;
    let execution = detail(&plan, "execution");
    assert!(
        execution.starts_with("on the cluster at df://") && execution.contains("the destination's staging bucket"),
        "{execution}"
    );
    let run = cluster.run(&client, "to_bq").await;
    assert_eq!(run[1..], [Some("succeeded".into()), Some("20000".into())], "{run:?}");
    assert!(
        cluster.tasks_done().iter().all(|&n| n > 0),
        "both executors staged chunks: {:?}",
        cluster.tasks_done()
    );
    // The server staged nothing itself and uploaded no chunk.
    let uris = loaded_uris(&fake);
    let staged = executor_chunks(&uris);
    assert_eq!(staged.len(), uris.len(), "{uris:?}");
    assert_eq!(fake.count_requests("/upload/"), 0);
    // Each part's chunks, each loaded once, at most five to a load job.
    let distinct: BTreeSet<&String> = staged.iter().copied().collect();
    assert_eq!(distinct.len(), staged.len(), "no chunk loaded twice");
    let parts: BTreeSet<&str> = (staged.iter())
        .map(|uri| uri.rsplit('/').next().unwrap().split('-').next().unwrap())
        .collect();
    assert_eq!(parts, BTreeSet::from(["p0", "p1", "p2", "p3"]));
    assert!(staged.len() > 4, "parts of several chunks: {staged:?}");
    assert!(
        staged
            .iter()
            .all(|uri| uri.starts_with("gs://stage/cluster/sluice_orders_")),
        "{staged:?}"
    );
    let load_jobs = (fake.state().jobs.values())
        .filter(|job| job.pointer("/configuration/load").is_some())
        .count();
    assert_eq!(load_jobs, staged.len().div_ceil(5), "five chunks to a load job");

    // The same rows as a load on the server, value for value.
    let here = cluster.run(&client, "here").await;
    assert_eq!(here[2].as_deref(), Some("20000"), "{here:?}");
    let loaded = table_rows(&fake, "orders");
    assert_eq!(loaded.len(), 20_000);
    assert!(
        loaded == table_rows(&fake, "orders_here"),
        "the cluster loaded what the server loads"
    );
    // Nothing is left behind: no chunk, no staging table.
    assert_eq!(fake.objects("stage"), Vec::<String>::new());
    let staging: Vec<String> = (fake.table_names("raw_data").into_iter())
        .filter(|t| t.starts_with("_sluice_staging"))
        .collect();
    assert_eq!(staging, Vec::<String>::new());

    // Incremental runs append past the watermark.
    client
        .batch_execute(
            "CREATE ETL JOB inc_bq FROM shop.public.orders INTO bq.orders_inc INCREMENTAL BY at ALL \
             WITH (parallelism = 3, execution = 'cluster')",
        )
        .await
        .unwrap();
    let first = cluster.run(&client, "inc_bq").await;
    assert_eq!(first[2].as_deref(), Some("20000"), "{first:?}");
    cluster.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g % 977, 1.5, md5(g::text), timestamptz '2025-01-01' + g * interval '1 second' \
         FROM generate_series(20001, 20300) g",
    );
    let second = cluster.run(&client, "inc_bq").await;
    assert_eq!(second[2].as_deref(), Some("300"), "{second:?}");
    let again = cluster.run(&client, "inc_bq").await;
    assert_eq!(again[2].as_deref(), Some("0"), "{again:?}");
    assert_eq!(fake_fingerprint(&fake, "orders_inc"), source_fingerprint(&cluster.pg));
    assert_eq!(fake.objects("stage"), Vec::<String>::new());
}

/// An executor dies after staging chunks of a part it had not finished.
/// Ballista runs the part again elsewhere; the dead attempt's chunks are
/// never loaded (the load takes only the chunks a finished task reports)
/// and are deleted with the run's folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigquery_run_that_loses_an_executor_loads_exactly_once() {
    let (fake, mut cluster, client, _keys) = start(400_000, "300000").await;
    client
        .batch_execute("CREATE ETL JOB to_bq FROM shop.public.orders INTO bq.orders SNAPSHOT WITH (parallelism = 4)")
        .await
        .unwrap();
    let runner = cluster.sluice.client().await;
    let run = tokio::spawn(async move { runner.simple_query("RUN ETL JOB to_bq").await.map(drop) });
    // Killed once it has staged a chunk, before any task of it ended.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let log = cluster.executors[0].log();
        assert!(!log.contains("task done"), "a task of executor 0 ended first:\n{log}");
        if log.contains("staged a chunk") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "executor 0 staged nothing:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.executors[0].kill9();
    run.await
        .unwrap()
        .unwrap_or_else(|e| panic!("the run fails: {e:?}\n{}", cluster.logs()));
    assert_eq!(
        fake_fingerprint(&fake, "orders"),
        source_fingerprint(&cluster.pg),
        "no row lost or loaded twice"
    );
    // Every loaded chunk was staged, once; what the dead attempt staged
    // was not loaded, and the run's folder is gone.
    let uris = loaded_uris(&fake);
    let written: BTreeSet<String> = fake.state().gcs.written.iter().cloned().collect();
    let loaded: BTreeSet<String> = uris.iter().cloned().collect();
    assert_eq!(loaded.len(), uris.len(), "no chunk loaded twice");
    assert!(loaded.is_subset(&written));
    let written: Vec<String> = written.into_iter().collect();
    let orphans: Vec<&String> = (executor_chunks(&written).into_iter())
        .filter(|uri| !loaded.contains(*uri))
        .collect();
    assert!(
        !orphans.is_empty(),
        "the dead attempt staged chunks that were not loaded"
    );
    assert_eq!(fake.objects("stage"), Vec::<String>::new());
    let status = one(&client, "SELECT status FROM sluice.runs WHERE job = 'to_bq'").await;
    assert_eq!(status, "succeeded");
}
