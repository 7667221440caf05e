//! Job extracts on a cluster (the `cluster` build, docs/cluster.md): a
//! scheduler and two executors as separate processes on loopback ports, a
//! PostgreSQL source and a warehouse in S3 (moto; one test in Azure Blob
//! Storage, Azurite). The run is split over
//! both executors, each writing its parts' Parquet files into the bucket,
//! and the server commits them as one manifest version.

use crate::common;

use crate::job_ops::{detail, explain};
use crate::source_dynamodb_requests::event;
use common::cluster::{ClusterProcess, key_file};
use common::dynamodb::Dynamo;
use common::emulators::{AZURITE_ACCOUNT, AZURITE_KEY, Emulator};
use common::*;
use std::time::Duration;

const SECRET: &str = "cluster-secret-Zr4";

/// The environment every process of the cluster reaches the bucket with.
fn bucket_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "sluice-test".into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", endpoint.into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

/// Where the cluster's warehouse lives.
#[derive(Clone, Copy)]
pub(crate) enum Lake {
    /// `s3://lake/wh` in moto.
    S3,
    /// `az://lake/wh` in Azurite.
    Azure,
}

/// What a test needs: the source, the bucket, the cluster and the server.
pub(crate) struct Cluster {
    pub(crate) pg: PgServer,
    moto: Emulator,
    /// The warehouse's container with [`Lake::Azure`].
    _azurite: Option<Emulator>,
    scheduler: ClusterProcess,
    pub(crate) executors: Vec<ClusterProcess>,
    pub(crate) sluice: Sluice,
    _keys: tempfile::TempDir,
}

impl Cluster {
    pub(crate) fn start(rows: u64) -> Cluster {
        Self::start_with(rows, &[])
    }

    /// The cluster, `orders` holding `rows` rows, every process with
    /// `extra` in its environment too.
    pub(crate) fn start_with(rows: u64, extra: &[(&str, &str)]) -> Cluster {
        Self::start_in(Lake::S3, rows, extra)
    }

    /// [`Self::start_with`], the warehouse in `lake`.
    pub(crate) fn start_in(lake: Lake, rows: u64, extra: &[(&str, &str)]) -> Cluster {
        let pg = PgServer::start();
        pg.psql_admin_db(
            "shop",
            &format!(
                "CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount numeric(12,2), note text, \
                   at timestamptz NOT NULL); \
                 INSERT INTO orders SELECT g, g % 977, (g % 10000) / 100.0, md5(g::text), \
                   timestamptz '2024-01-01' + g * interval '1 second' FROM generate_series(1, {rows}) g;"
            ),
        );
        let moto = Emulator::moto();
        moto.create_bucket("lake");
        let mut env = bucket_env(&moto.endpoint());
        let (location, azurite) = match lake {
            Lake::S3 => ("s3://lake/wh", None),
            Lake::Azure => {
                let azurite = Emulator::azurite();
                azurite.create_container("lake");
                env.extend([
                    ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT.to_owned()),
                    ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY.to_owned()),
                    (
                        "AZURE_STORAGE_ENDPOINT",
                        format!("{}/{AZURITE_ACCOUNT}", azurite.endpoint()),
                    ),
                    ("AZURE_ALLOW_HTTP", "true".to_owned()),
                ]);
                ("az://lake/wh", Some(azurite))
            }
        };
        let env: Vec<(&str, &str)> = (env.iter().map(|(k, v)| (*k, v.as_str())))
            .chain(extra.iter().copied())
            .collect();
        let keys = tempfile::tempdir().unwrap();
        let key = key_file(keys.path());
        let (scheduler, port) = ClusterProcess::scheduler();
        let executors = ["exec-a", "exec-b"]
            .iter()
            .map(|id| ClusterProcess::executor(id, port, &key, &env))
            .collect();
        let opts = env.iter().fold(
            SluiceOpts::default()
                .arg("--warehouse")
                .arg(location)
                .arg("--cluster")
                .arg(&format!("df://127.0.0.1:{port}"))
                .arg("--cluster-key-file")
                .arg(key.to_str().unwrap()),
            |o, (k, v)| o.env(k, v),
        );
        let sluice = Sluice::start_opts(opts);
        Cluster {
            pg,
            moto,
            _azurite: azurite,
            scheduler,
            executors,
            sluice,
            _keys: keys,
        }
    }

    /// Creates job `orders`, a SNAPSHOT in 8 tasks, and starts a run of it
    /// in the background: a client, and the run's end.
    async fn start_snapshot_run(
        &self,
    ) -> (
        tokio_postgres::Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ) {
        let client = self.client().await;
        create_snapshot_job(&client).await;
        let runner = self.sluice.client().await;
        let run = tokio::spawn(async move { runner.simple_query("RUN ETL JOB orders").await.map(drop) });
        (client, run)
    }

    /// Waits until the cluster's logs together hold `count` lines with
    /// `text`.
    pub(crate) async fn wait_for_logs(&self, text: &str, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.logs().matches(text).count() < count {
            assert!(std::time::Instant::now() < deadline, "no {text:?} in:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The names of the files in the `orders` table's data folder.
    async fn data_files(&self) -> Vec<String> {
        use datafusion::object_store::aws::AmazonS3Builder;
        use datafusion::object_store::{ObjectStore, path::Path};
        use futures::TryStreamExt;
        let store = AmazonS3Builder::new()
            .with_bucket_name("lake")
            .with_endpoint(self.moto.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("sluice-test")
            .with_secret_access_key(SECRET)
            .build()
            .unwrap();
        let listed: Vec<_> = store
            .list(Some(&Path::from("wh/orders/data")))
            .try_collect()
            .await
            .unwrap();
        listed
            .into_iter()
            .map(|meta| meta.location.filename().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits until `executor`'s log shows a task running, then kills it.
    pub(crate) async fn kill9_executor_mid_task(&mut self, executor: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !self.executors[executor].log().contains("Execute task") {
            assert!(
                std::time::Instant::now() < deadline,
                "no task reached executor {executor}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            self.executors[executor].log().matches("task done").count(),
            0,
            "killed before a task of it ended"
        );
        self.executors[executor].kill9();
    }

    pub(crate) async fn client(&self) -> tokio_postgres::Client {
        let client = self.sluice.client().await;
        client
            .batch_execute(&format!(
                "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', \
                 user 'etl', password '{ETL_PASSWORD}')",
                self.pg.port
            ))
            .await
            .unwrap();
        client
    }

    /// `RUN ETL JOB job`'s summary row; a failure shows every log.
    pub(crate) async fn run(&self, client: &tokio_postgres::Client, job: &str) -> Vec<Option<String>> {
        match client.simple_query(&format!("RUN ETL JOB {job}")).await {
            Ok(_) => rows(
                client,
                &format!(
                    "SELECT run_id, status, rows FROM sluice.runs WHERE job = '{job}' ORDER BY run_id DESC LIMIT 1"
                ),
            )
            .await
            .remove(0),
            Err(e) => panic!(
                "RUN ETL JOB {job}: {e:?}\n{}\n{}",
                self.sluice.log_contents(),
                self.logs()
            ),
        }
    }

    /// The cluster's logs, for failure messages.
    pub(crate) fn logs(&self) -> String {
        let executors = self.executors.iter().map(|e| e.log());
        std::iter::once(self.scheduler.log())
            .chain(executors)
            .collect::<Vec<_>>()
            .join("\n-----\n")
    }

    /// The number of tasks each executor's log says it finished.
    pub(crate) fn tasks_done(&self) -> Vec<usize> {
        self.executors
            .iter()
            .map(|e| e.log().matches("task done").count())
            .collect()
    }
}

/// Creates job `orders`: a SNAPSHOT of the table in 8 tasks.
async fn create_snapshot_job(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE ETL JOB orders FROM shop.public.orders INTO warehouse.orders SNAPSHOT WITH (parallelism = 8)",
        )
        .await
        .unwrap();
}

/// Count, distinct ids, and sums over the columns, as text (the cursor's
/// values are checked through the watermark).
const FINGERPRINT: &str =
    "SELECT count(*), count(DISTINCT id), sum(id), sum(customer), sum(amount), sum(length(note)) FROM ";

async fn source_fingerprint(pg: &PgServer) -> Vec<Option<String>> {
    let source = pg.client().await;
    rows(&source, &format!("{FINGERPRINT} orders")).await.remove(0)
}

/// Checks that the warehouse's `orders` has the source's fingerprint.
async fn assert_orders_equal_the_source(client: &tokio_postgres::Client, pg: &PgServer, why: &str) {
    let loaded = rows(client, &format!("{FINGERPRINT} warehouse.orders")).await.remove(0);
    assert_eq!(loaded, source_fingerprint(pg).await, "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_split_over_two_executors_equals_the_source() {
    let cluster = Cluster::start(1_000_000);
    let client = cluster.client().await;
    create_snapshot_job(&client).await;
    let plan = explain(&client, "orders").await;
    let execution = detail(&plan, "execution");
    assert!(
        execution.starts_with("on the cluster at df://127.0.0.1:") && execution.contains(": 8 tasks"),
        "{execution}"
    );
    let run = cluster.run(&client, "orders").await;
    assert_eq!(
        (run[1].as_deref(), run[2].as_deref()),
        (Some("succeeded"), Some("1000000")),
        "{run:?}"
    );
    assert_orders_equal_the_source(&client, &cluster.pg, "the table equals the source").await;
    let shown = rows(
        &client,
        "SELECT tasks_done, tasks_total, executors FROM sluice.runs WHERE job = 'orders'",
    )
    .await;
    let [done_shown, total_shown, executors_shown] = <[_; 3]>::try_from(shown[0].clone()).unwrap();
    assert_eq!((done_shown.as_deref(), total_shown.as_deref()), (Some("8"), Some("8")));
    let executors_shown = executors_shown.unwrap();
    assert!(
        executors_shown.contains("exec-a (") && executors_shown.contains("exec-b ("),
        "{executors_shown}"
    );
    let done = cluster.tasks_done();
    assert_eq!(done.iter().sum::<usize>(), 8, "every part ran once: {done:?}");
    assert!(done.iter().all(|&n| n > 0), "both executors did work: {done:?}");
    assert!(
        cluster.sluice.log_contents().contains("cluster tasks done"),
        "the server says the cluster ran the extract"
    );

    // A snapshot replaces: rows deleted at the source are gone after the
    // next run, and the files of the first run are no longer listed.
    cluster.pg.psql_admin_db("shop", "DELETE FROM orders WHERE id % 10 = 0");
    let again = cluster.run(&client, "orders").await;
    assert_eq!(again[2].as_deref(), Some("900000"), "{again:?}");
    assert_orders_equal_the_source(&client, &cluster.pg, "the table equals the source").await;

    for (executor, log) in cluster.executors.iter().map(|e| e.log()).enumerate() {
        assert!(!log.contains(SECRET), "executor {executor} never logs a secret");
        assert!(
            !log.contains(ETL_PASSWORD),
            "executor {executor} never logs the source's password"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warehouse_in_azure_blob_storage_is_loaded_by_both_executors() {
    let cluster = Cluster::start_in(Lake::Azure, 100_000, &[]);
    let client = cluster.client().await;
    create_snapshot_job(&client).await;
    client
        .batch_execute(
            "CREATE ETL JOB recent FROM shop.public.orders INTO warehouse.recent INCREMENTAL BY at ALL \
             WITH (parallelism = 4)",
        )
        .await
        .unwrap();
    for job in ["orders", "recent"] {
        let run = cluster.run(&client, job).await;
        assert_eq!(
            (run[1].as_deref(), run[2].as_deref()),
            (Some("succeeded"), Some("100000")),
            "{job}: {run:?}"
        );
    }
    let done = cluster.tasks_done();
    assert_eq!(done.iter().sum::<usize>(), 8 + 4, "every part ran once: {done:?}");
    assert!(done.iter().all(|&n| n > 0), "both executors did work: {done:?}");
    cluster.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g % 977, 1.5, md5(g::text), timestamptz '2025-01-01' + g * interval '1 second' \
         FROM generate_series(100001, 100300) g; DELETE FROM orders WHERE id <= 100000 AND id % 10 = 0",
    );
    let replaced = cluster.run(&client, "orders").await;
    assert_eq!(replaced[2].as_deref(), Some("90300"), "{replaced:?}");
    let appended = cluster.run(&client, "recent").await;
    assert_eq!(appended[2].as_deref(), Some("300"), "{appended:?}");
    assert_orders_equal_the_source(&client, &cluster.pg, "the snapshot equals the source").await;
    let appended = one(&client, "SELECT count(*) FROM warehouse.recent WHERE id > 100000").await;
    assert_eq!(appended, "300");
    for (executor, log) in cluster.executors.iter().map(|e| e.log()).enumerate() {
        assert!(
            !log.contains(AZURITE_KEY),
            "executor {executor} never logs the account key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_on_the_cluster_append_past_the_watermark() {
    let cluster = Cluster::start(50_000);
    let client = cluster.client().await;
    client
        .batch_execute("CREATE ETL JOB orders FROM shop.public.orders INTO warehouse.orders INCREMENTAL BY at ALL WITH (parallelism = 4)")
        .await
        .unwrap();
    let first = cluster.run(&client, "orders").await;
    assert_eq!(first[2].as_deref(), Some("50000"), "{first:?}");
    cluster.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g % 977, 1.5, md5(g::text), timestamptz '2025-01-01' + g * interval '1 second' \
         FROM generate_series(50001, 50300) g",
    );
    let second = cluster.run(&client, "orders").await;
    assert_eq!(second[2].as_deref(), Some("300"), "{second:?}");
    assert_orders_equal_the_source(&client, &cluster.pg, "the table equals the source").await;
    let watermark = one(&client, "SELECT watermark FROM sluice.jobs WHERE name = 'orders'").await;
    // The largest cursor value any task read: row 50300's.
    assert_eq!(watermark, "2025-01-01T13:58:20Z");
    assert!(
        cluster.tasks_done().iter().all(|&n| n > 0),
        "{:?}",
        cluster.tasks_done()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_runs_shows_the_tasks_done_while_the_run_runs() {
    let cluster = Cluster::start(1_000_000);
    let client = cluster.client().await;
    // 16 tasks, two at a time on each executor: four waves.
    client
        .batch_execute(
            "CREATE ETL JOB orders FROM shop.public.orders INTO warehouse.orders SNAPSHOT WITH (parallelism = 16)",
        )
        .await
        .unwrap();
    let runner = cluster.sluice.client().await;
    let run = tokio::spawn(async move { runner.simple_query("RUN ETL JOB orders").await.map(drop) });
    let mut seen = Vec::new();
    while !run.is_finished() {
        let shown = rows(
            &client,
            "SELECT status, tasks_done, tasks_total FROM sluice.runs WHERE job = 'orders'",
        )
        .await;
        if let Some(row) = shown.first() {
            seen.push(row.clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.await.unwrap().unwrap();
    let partly_done = seen.iter().any(|row| {
        let done: u64 = row[1].as_deref().map_or(0, |n| n.parse().unwrap());
        row[0].as_deref() == Some("running") && (1..16).contains(&done) && row[2].as_deref() == Some("16")
    });
    assert!(partly_done, "some tasks done while others ran: {seen:?}");
    let end = rows(
        &client,
        "SELECT status, tasks_done FROM sluice.runs WHERE job = 'orders'",
    )
    .await;
    assert_eq!(end, [[Some("succeeded".into()), Some("16".into())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_table_is_split_by_scan_segment_over_both_executors() {
    const DYNAMO_SECRET: &str = "dynamo-secret-Kq7";
    let cluster = Cluster::start(10);
    let dynamo = Dynamo::start();
    dynamo.create_table("events");
    dynamo.put("events", &(1..=300).map(event).collect::<Vec<_>>());
    let client = cluster.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION dyn TYPE dynamodb OPTIONS (endpoint '{}', region 'us-east-1', \
             access_key_id 'test', secret_access_key '{DYNAMO_SECRET}', page_size 25); \
             CREATE ETL JOB events FROM dyn.dynamodb.events INTO warehouse.events SNAPSHOT \
             WITH (parallelism = 6)",
            dynamo.endpoint()
        ))
        .await
        .unwrap();
    let plan = explain(&client, "events").await;
    let execution = detail(&plan, "execution");
    assert!(
        execution.contains(": 6 tasks, each one of the source's own segments of the read"),
        "{execution}"
    );
    let run = cluster.run(&client, "events").await;
    assert_eq!(
        (run[1].as_deref(), run[2].as_deref()),
        (Some("succeeded"), Some("300")),
        "{run:?}"
    );
    let done = cluster.tasks_done();
    assert_eq!(done.iter().sum::<usize>(), 6, "every segment ran once: {done:?}");
    assert!(done.iter().all(|&n| n > 0), "both executors did work: {done:?}");
    // Each item once, equal to the table's.
    let columns = "id, kind, ts, total, qty, note";
    let source = rows(
        &client,
        &format!("SELECT {columns} FROM dyn.dynamodb.events ORDER BY id"),
    )
    .await;
    assert_eq!(source.len(), 300);
    let loaded = rows(&client, &format!("SELECT {columns} FROM warehouse.events ORDER BY id")).await;
    assert_eq!(loaded, source);
    for (executor, log) in cluster.executors.iter().map(|e| e.log()).enumerate() {
        assert!(
            !log.contains(DYNAMO_SECRET),
            "executor {executor} never logs the source's secret key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_table_is_split_by_key_range_over_both_executors_in_one_snapshot() {
    use mysql_async::prelude::Queryable;
    const ACCOUNTS: u32 = 20_000;
    let cluster = Cluster::start(10);
    let maria = MariaDb::start();
    maria.sql_db(
        "shop",
        &format!(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, note varchar(40)); \
             INSERT INTO accounts SELECT n, 100, MD5(n) FROM (SELECT seq AS n FROM seq_1_to_{ACCOUNTS}) g;"
        ),
    );
    let client = cluster.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, user 'etl', \
             password '{ETL_PASSWORD}'); \
             CREATE ETL JOB accounts FROM crm.shop.accounts INTO warehouse.accounts SNAPSHOT \
             WITH (parallelism = 4)",
            maria.port
        ))
        .await
        .unwrap();
    let plan = explain(&client, "accounts").await;
    let execution = detail(&plan, "execution");
    assert!(
        execution.contains(": 4 tasks, each a range of the split column read in one snapshot"),
        "{execution}"
    );
    // Transfers between the first and the last keys run all along: one
    // snapshot has the balances' total.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&maria.url()).unwrap())
        .await
        .unwrap();
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n: u32 = 0;
            let mut transfers = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n = n.wrapping_add(7919);
                let (from, to) = (1 + n % 1000, ACCOUNTS - n % 1000);
                conn.query_drop(format!(
                    "START TRANSACTION; UPDATE accounts SET balance = balance - 1 WHERE id = {from}; \
                     UPDATE accounts SET balance = balance + 1 WHERE id = {to}; COMMIT"
                ))
                .await
                .unwrap();
                transfers += 1;
            }
            transfers
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = cluster.run(&client, "accounts").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let transfers = writer.await.unwrap();
    assert!(transfers > 10, "transfers ran: {transfers}");
    assert_eq!(
        (run[1].as_deref(), run[2].as_deref()),
        (Some("succeeded"), Some("20000")),
        "{run:?}"
    );
    let done = cluster.tasks_done();
    assert_eq!(done.iter().sum::<usize>(), 4, "every range ran once: {done:?}");
    assert!(done.iter().all(|&n| n > 0), "both executors did work: {done:?}");
    let loaded = rows(
        &client,
        "SELECT count(*), count(DISTINCT id), sum(balance), min(id), max(id) FROM warehouse.accounts",
    )
    .await;
    let expected = [20_000, 20_000, 20_000 * 100, 1, 20_000].map(|n| Some(n.to_string()));
    assert_eq!(loaded[0], expected, "every row once, all from one moment");
    for (executor, log) in cluster.executors.iter().map(|e| e.log()).enumerate() {
        assert!(
            !log.contains(ETL_PASSWORD),
            "executor {executor} never logs the password"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_table_in_a_bucket_is_split_by_file_over_both_executors() {
    const FILES: u32 = 14;
    const ROWS: u32 = 50;
    let cluster = Cluster::start(10);
    cluster.moto.create_bucket("landing");
    // Partitioned CSV files of different sizes.
    for i in 0..FILES {
        let body: String = (0..ROWS * (1 + i % 3))
            .map(|r| format!("{},k{i},{}.5\n", i * 1000 + r, r))
            .collect();
        let body = format!("id,kind,amount\n{body}");
        let day = 1 + i % 2;
        cluster.moto.put_s3(
            "landing",
            &format!("in/events/day={day}/part-{i:02}.csv"),
            body.as_bytes(),
        );
    }
    let client = cluster.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE s3 OPTIONS (bucket 'landing', prefix 'in', endpoint '{}', \
             access_key_id 'lake-key', secret_access_key '{SECRET}', region 'us-east-1'); \
             CREATE ETL JOB events FROM lake.files.events INTO warehouse.events SNAPSHOT WITH (parallelism = 4); \
             CREATE ETL JOB recent FROM lake.files.events INTO warehouse.recent INCREMENTAL BY _modified_at ALL \
             WITH (execution = 'cluster', parallelism = 3, guard_margin '0 seconds');",
            cluster.moto.endpoint()
        ))
        .await
        .unwrap();
    let plan = explain(&client, "events").await;
    let execution = detail(&plan, "execution");
    assert!(
        execution.contains(": 4 tasks, each one of the source's own segments"),
        "{execution}"
    );
    let run = cluster.run(&client, "events").await;
    let total: u32 = (0..FILES).map(|i| ROWS * (1 + i % 3)).sum();
    assert_eq!(
        (run[1].as_deref(), run[2].as_deref()),
        (Some("succeeded"), Some(total.to_string().as_str())),
        "{run:?}"
    );
    let done = cluster.tasks_done();
    assert_eq!(done.iter().sum::<usize>(), 4, "four shares of the files: {done:?}");
    assert!(done.iter().all(|&n| n > 0), "both executors did work: {done:?}");
    // Every file read once, each row with its file and partition.
    let columns = "id, kind, amount, day, _file";
    let source = rows(&client, &format!("SELECT {columns} FROM lake.files.events ORDER BY id")).await;
    assert_eq!(source.len(), total as usize);
    let loaded = rows(&client, &format!("SELECT {columns} FROM warehouse.events ORDER BY id")).await;
    assert_eq!(loaded, source);
    let files = rows(
        &client,
        "SELECT count(DISTINCT _file), count(DISTINCT day) FROM warehouse.events",
    )
    .await;
    assert_eq!(files[0], [Some(FILES.to_string()), Some("2".into())]);
    // By _modified_at: each run loads the files new since the last, the
    // tasks reporting the files they read at the newest time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let first = cluster.run(&client, "recent").await;
    assert_eq!(first[2].as_deref(), Some(total.to_string().as_str()), "{first:?}");
    assert_eq!(cluster.run(&client, "recent").await[2].as_deref(), Some("0"));
    for i in FILES..FILES + 3 {
        let body = format!("id,kind,amount\n{},new,1.5\n{},new,2.5\n", i * 1000, i * 1000 + 1);
        cluster
            .moto
            .put_s3("landing", &format!("in/events/day=3/part-{i:02}.csv"), body.as_bytes());
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(cluster.run(&client, "recent").await[2].as_deref(), Some("6"));
    assert_eq!(cluster.run(&client, "recent").await[2].as_deref(), Some("0"));
    let source = rows(&client, &format!("SELECT {columns} FROM lake.files.events ORDER BY id")).await;
    let loaded = rows(&client, &format!("SELECT {columns} FROM warehouse.recent ORDER BY id")).await;
    assert_eq!(loaded, source, "every file once");
    let mark = rows(&client, "SELECT watermark FROM sluice.jobs WHERE name = 'recent'").await;
    let mark = mark[0][0].clone().unwrap();
    assert!(mark.contains(" with files [") && mark.contains("day=3/part-"), "{mark}");
    for (executor, log) in cluster.executors.iter().map(|e| e.log()).enumerate() {
        assert!(!log.contains(SECRET), "executor {executor} never logs the secret key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_the_cluster_cannot_run_say_why() {
    let cluster = Cluster::start(10);
    let client = cluster.client().await;
    cluster.pg.psql_admin_db(
        "shop",
        "CREATE TABLE tags (name text PRIMARY KEY); INSERT INTO tags VALUES ('a'), ('b');",
    );
    // Asked for the cluster, a table with nothing to split on is refused...
    client
        .batch_execute("CREATE ETL JOB tags FROM shop.public.tags SNAPSHOT WITH (execution = 'cluster')")
        .await
        .unwrap();
    let error = expect_err(&client, "RUN ETL JOB tags", "0A000").await;
    assert!(error.contains("no integer primary key"), "{error}");
    // ...and runs here when it may choose, as EXPLAIN says.
    client
        .batch_execute("ALTER ETL JOB tags SET (execution = 'default')")
        .await
        .unwrap();
    let plan = explain(&client, "tags").await;
    let execution = detail(&plan, "execution");
    assert_eq!(
        execution,
        "on this server: its table has no integer primary key or NOT NULL integer cursor to split on"
    );
    let run = rows(&client, "RUN ETL JOB tags").await;
    assert_eq!(run[0][2].as_deref(), Some("2"), "{run:?}");
    // execution = 'local' keeps a splittable job on the server.
    client
        .batch_execute(
            "CREATE ETL JOB here FROM shop.public.orders INTO warehouse.here SNAPSHOT WITH (execution = 'local')",
        )
        .await
        .unwrap();
    assert_eq!(rows(&client, "RUN ETL JOB here").await[0][2].as_deref(), Some("10"));
    assert_eq!(cluster.tasks_done(), [0, 0], "nothing ran on the cluster");
    // A CDC job streams on the server.
    let error = expect_err(
        &client,
        "CREATE ETL JOB changes FROM shop.public.orders CDC WITH (execution = 'cluster')",
        "22023",
    )
    .await;
    assert!(error.contains("streams changes on this server"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_run_has_its_tasks_run_again_elsewhere_exactly_once() {
    let mut cluster = Cluster::start(1_000_000);
    let (client, run) = cluster.start_snapshot_run().await;
    cluster.kill9_executor_mid_task(0).await;
    run.await
        .unwrap()
        .unwrap_or_else(|e| panic!("the run fails: {e:?}\n{}", cluster.logs()));
    let summary = rows(&client, "SELECT status, rows FROM sluice.runs WHERE job = 'orders'").await;
    assert_eq!(summary, [[Some("succeeded".into()), Some("1000000".into())]]);
    assert_orders_equal_the_source(&client, &cluster.pg, "no row lost or loaded twice").await;
    assert!(
        cluster.tasks_done()[1] >= 8,
        "the survivor ran every part in the end: {:?}",
        cluster.tasks_done()
    );
}

/// An executor dies during a MySQL run. Its parts run again elsewhere:
/// inside the table's freeze (which lasts until every part has opened its
/// snapshot) they read the run's snapshot and the run succeeds; after it
/// they fail with 40001 (see `parallel_mysql` for that refusal) and the
/// run fails whole. Either way nothing is lost or loaded twice, and a run
/// that failed committed nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_run_that_loses_an_executor_loads_exactly_once() {
    let mut cluster = Cluster::start(10);
    let maria = MariaDb::start();
    maria.sql_db(
        "shop",
        "CREATE TABLE events (id int PRIMARY KEY, payload varchar(40), amount decimal(10,2)); \
         INSERT INTO events SELECT seq, MD5(seq), seq / 100 FROM seq_1_to_300000;",
    );
    let client = cluster.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, user 'etl', \
             password '{ETL_PASSWORD}'); \
             CREATE ETL JOB events FROM crm.shop.events INTO warehouse.events SNAPSHOT WITH (parallelism = 4)",
            maria.port
        ))
        .await
        .unwrap();
    let runner = cluster.sluice.client().await;
    let run = tokio::spawn(async move { runner.simple_query("RUN ETL JOB events").await.map(drop) });
    cluster.kill9_executor_mid_task(0).await;
    let fingerprint = "SELECT count(*), count(DISTINCT id), sum(id), sum(amount) FROM ";
    let source = rows(&client, &format!("{fingerprint} crm.shop.events")).await;
    if let Err(error) = run.await.unwrap() {
        let message = error.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
        assert!(message.contains("freeze ended"), "{message}\n{}", cluster.logs());
        assert_eq!(
            rows(&client, "SELECT status FROM sluice.runs WHERE job = 'events'").await,
            [[Some("failed".into())]]
        );
        let loaded = try_rows(&client, "SELECT count(*) FROM warehouse.events").await;
        assert!(
            loaded.as_ref().map_or(true, |r| r[0][0].as_deref() == Some("0")),
            "nothing committed: {loaded:?}"
        );
        let again = cluster.run(&client, "events").await;
        assert_eq!(again[1].as_deref(), Some("succeeded"), "{again:?}");
    }
    let loaded = rows(&client, &format!("{fingerprint} warehouse.events")).await;
    assert_eq!(loaded, source, "no row lost or loaded twice");
    assert_eq!(source[0][0].as_deref(), Some("300000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_commits_nothing_and_the_next_run_loads_exactly_once() {
    let mut cluster = Cluster::start(1_000_000);
    let (_, run) = cluster.start_snapshot_run().await;
    // Killed once a task has written its files, while others run.
    cluster.wait_for_logs("task done", 1).await;
    cluster.sluice.kill9();
    assert!(run.await.unwrap().is_err(), "the client saw the server go");
    // The cluster's job ends on its own (tasks that had not imported the
    // snapshot fail with it), leaving files no manifest lists.
    cluster.wait_for_logs("Job f", 1).await;
    let orphans = cluster.data_files().await;
    assert!(orphans.iter().any(|f| f.starts_with("run-1-")), "{orphans:?}");
    cluster.sluice.restart();
    let client = cluster.sluice.client().await;
    let interrupted = rows(&client, "SELECT status FROM sluice.runs WHERE job = 'orders'").await;
    assert_ne!(interrupted[0][0].as_deref(), Some("succeeded"), "{interrupted:?}");
    let again = cluster.run(&client, "orders").await;
    assert_eq!(again[1].as_deref(), Some("succeeded"), "{again:?}");
    assert_orders_equal_the_source(&client, &cluster.pg, "no row lost or loaded twice").await;
    // The commit's garbage collection deleted the killed run's files.
    let files = cluster.data_files().await;
    assert!(files.iter().all(|f| f.starts_with("run-2-")), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_cancels_its_cluster_job() {
    let cluster = Cluster::start(1_000_000);
    let (client, run) = cluster.start_snapshot_run().await;
    // Cancelled once a task has written its files, while others run.
    cluster.wait_for_logs("task done", 1).await;
    let run_id = one(&client, "SELECT run_id FROM sluice.runs WHERE job = 'orders'").await;
    client.batch_execute(&format!("CANCEL ETL RUN {run_id}")).await.unwrap();
    assert!(run.await.unwrap().is_err(), "the run ends cancelled");
    // The server asks the scheduler to cancel the job, which stops the
    // tasks still running rather than let them read and write to the end.
    cluster.wait_for_logs("Received cancellation request for job", 1).await;
    cluster.wait_for_logs("Job cancelled", 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cluster.sluice.log_contents().contains("cancelled the cluster job") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            cluster.sluice.log_contents()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = one(&client, "SELECT status FROM sluice.runs WHERE job = 'orders'").await;
    assert_eq!(status, "cancelled");
    // Nothing of it was committed; the next run loads exactly once.
    let again = cluster.run(&client, "orders").await;
    assert_eq!(again[1].as_deref(), Some("succeeded"), "{again:?}");
    assert_orders_equal_the_source(&client, &cluster.pg, "the table equals the source").await;
}

#[test]
fn a_cluster_needs_a_warehouse_in_a_bucket() {
    let error = Sluice::try_start_opts(SluiceOpts::default().arg("--cluster").arg("df://127.0.0.1:1"))
        .err()
        .expect("a local warehouse is refused");
    assert!(
        error.contains("--cluster needs a warehouse every executor can write to"),
        "{error}"
    );
}
