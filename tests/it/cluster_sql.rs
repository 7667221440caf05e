//! Plain SQL over warehouse tables on the cluster (`SET sluice.execution =
//! 'cluster'`, docs/cluster.md): the cluster of `cluster.rs` reads the
//! tables' files on its executors and the rows come back to the client,
//! the same rows a query on the server returns.

use crate::cluster::Cluster;
use crate::common::*;

/// Queries whose answers the cluster must give exactly as the server does:
/// aggregates over every column, a grouped and ordered filter, a subquery,
/// a join of two warehouse tables and a limit.
const QUERIES: &[&str] = &[
    "SELECT count(*), count(DISTINCT id), sum(id), sum(customer), sum(amount), min(at), max(note) FROM warehouse.orders",
    "SELECT customer % 7 AS k, count(*), sum(amount) FROM warehouse.orders WHERE id > 1000 AND note LIKE 'a%' \
     GROUP BY 1 ORDER BY 1",
    "SELECT count(*) FROM warehouse.orders WHERE id IN (SELECT id FROM warehouse.orders WHERE customer = 5)",
    "SELECT o.customer, count(*) FROM warehouse.orders o JOIN warehouse.recent r ON o.id = r.id \
     GROUP BY o.customer ORDER BY 2 DESC, 1 LIMIT 5",
    "SELECT id, note FROM warehouse.orders ORDER BY id DESC LIMIT 3",
];

/// The number of tasks the executors' logs say they started.
fn tasks_started(cluster: &Cluster) -> usize {
    (cluster.executors.iter())
        .map(|e| e.log().matches("Execute task").count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_warehouse_tables_run_on_the_cluster_and_answer_as_the_server_does() {
    let cluster = Cluster::start(50_000);
    let client = cluster.client().await;
    client
        .batch_execute(
            "CREATE ETL JOB orders FROM shop.public.orders INTO warehouse.orders SNAPSHOT WITH (parallelism = 4); \
             CREATE ETL JOB recent FROM shop.public.orders INTO warehouse.recent INCREMENTAL BY at ALL \
             WITH (parallelism = 2)",
        )
        .await
        .unwrap();
    for job in ["orders", "recent"] {
        let run = cluster.run(&client, job).await;
        assert_eq!(run[1].as_deref(), Some("succeeded"), "{run:?}");
    }
    let mut here = Vec::new();
    for query in QUERIES {
        here.push(rows(&client, query).await);
    }
    assert_eq!(here[0][0][0].as_deref(), Some("50000"));

    client.batch_execute("SET sluice.execution = 'cluster'").await.unwrap();
    assert_eq!(one(&client, "SHOW sluice.execution").await, "cluster");
    for (query, expected) in QUERIES.iter().zip(&here) {
        let before = tasks_started(&cluster);
        let answer = rows(&client, query).await;
        assert_eq!(&answer, expected, "{query}\n{}", cluster.logs());
        assert!(tasks_started(&cluster) > before, "{query} ran on the executors");
    }
    // The session's time zone and partitions hold on the cluster too.
    let zoned = "SELECT max(at), min(at)::text, date_trunc('day', max(at)), count(DISTINCT date_trunc('hour', at)) \
                 FROM warehouse.orders";
    client
        .batch_execute("SET TimeZone = 'America/New_York'; SET sluice.execution = 'local'")
        .await
        .unwrap();
    let expected = rows(&client, zoned).await;
    client.batch_execute("SET sluice.execution = 'cluster'").await.unwrap();
    assert_eq!(rows(&client, zoned).await, expected);
    // ... and its text styles: dates as DateStyle says, as they are here.
    let styled = "SELECT max(at), min(at) - max(at) FROM warehouse.orders";
    client
        .batch_execute("SET DateStyle = 'German'; SET sluice.execution = 'local'")
        .await
        .unwrap();
    let expected = rows(&client, styled).await;
    assert_eq!(
        expected[0][0].as_deref().unwrap().find('.'),
        Some(2),
        "dd.mm.yyyy: {expected:?}"
    );
    client.batch_execute("SET sluice.execution = 'cluster'").await.unwrap();
    assert_eq!(rows(&client, styled).await, expected);
    client
        .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'")
        .await
        .unwrap();
    // The extended protocol, with a parameter and binary results.
    let row = client
        .query_one(
            "SELECT count(*), sum(id) FROM warehouse.orders WHERE id <= $1",
            &[&1000i64],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1000, 500_500));
    // A query reads the version it was planned on: a load committed later
    // shows in the next query.
    cluster.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, 1, 1.5, md5(g::text), timestamptz '2025-01-01' + g * interval '1 second' \
         FROM generate_series(50001, 50100) g",
    );
    cluster.run(&client, "recent").await;
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.recent").await, "50100");

    // A query reading no warehouse table runs here; one mixing in another
    // table is refused, naming it.
    assert_eq!(one(&client, "SELECT 1 + 1").await, "2");
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs").await, "2");
    let error = expect_err(
        &client,
        "SELECT count(*) FROM warehouse.orders o JOIN sluice.jobs j ON j.name = 'orders'",
        "0A000",
    )
    .await;
    assert!(
        error.contains("reads only warehouse tables in a bucket") && error.contains("sluice.jobs"),
        "{error}"
    );
    // A query stopped by statement_timeout cancels its cluster job.
    client.batch_execute("SET statement_timeout = '300ms'").await.unwrap();
    expect_err(
        &client,
        "SELECT count(*), sum(a.amount * b.amount) FROM warehouse.orders a JOIN warehouse.orders b \
         ON a.customer = b.customer JOIN warehouse.recent c ON c.customer = a.customer",
        "57014",
    )
    .await;
    cluster.wait_for_logs("Received cancellation request for job", 1).await;
    client.batch_execute("SET statement_timeout = 0").await.unwrap();
    let error = expect_err(&client, "SET sluice.execution = 'moon'", "22023").await;
    assert!(error.contains("sluice.execution"), "{error}");
    client.batch_execute("RESET sluice.execution").await.unwrap();
    let before = tasks_started(&cluster);
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.orders").await, "50000");
    assert_eq!(tasks_started(&cluster), before, "local again");
}

/// Loads `shop.public.t` into `warehouse.t` on `sluice`, then asks for it
/// on the cluster: the error's message.
async fn cluster_query_error(sluice: &Sluice, pg: &PgServer) -> String {
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', \
             user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB t FROM shop.public.t INTO warehouse.t SNAPSHOT; RUN ETL JOB t; \
             SET sluice.execution = 'cluster'",
            pg.port
        ))
        .await
        .unwrap();
    // A query of no warehouse table still runs here.
    assert_eq!(one(&client, "SELECT 40 + 2").await, "42");
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs").await, "1");
    expect_err(&client, "SELECT count(*) FROM warehouse.t", "0A000").await
}

#[tokio::test]
async fn without_a_cluster_or_a_bucket_a_cluster_query_says_why() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
    );
    // A warehouse in a local directory cannot be shared.
    let error = cluster_query_error(&Sluice::start(), &pg).await;
    assert!(
        error.contains("warehouse.t is in a warehouse in a local directory"),
        "{error}"
    );
    // One in a bucket, on a server without a cluster.
    let moto = crate::common::emulators::Emulator::moto();
    moto.create_bucket("lake");
    let endpoint = moto.endpoint();
    let env = [
        ("AWS_ACCESS_KEY_ID", "sluice-test"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let sluice = Sluice::start_with(&["--warehouse", "s3://lake/wh"], &env);
    let error = cluster_query_error(&sluice, &pg).await;
    assert!(error.contains("this server has no cluster"), "{error}");
}
