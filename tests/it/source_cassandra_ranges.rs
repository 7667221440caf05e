//! Cassandra scans split into token ranges read in parallel (the
//! connection's `split_ranges`, a job's `WITH (parallelism = n)`), against
//! the CQL double, which computes `token()` as Cassandra's Murmur3
//! partitioner does: the ranges sent cover the ring once, each row loads
//! once, the watermark still moves only after the commit; a `LIMIT` stays
//! one `SELECT`, and so does a cluster with another partitioner.

use tokio_postgres::Client;

use crate::common::cql_fake::{CqlFake, Query, Val, token};
use crate::common::{Sluice, one, rows};

/// Cassandra's own tokens of `int` partition keys (the cqlsh and dtest
/// suites: `SELECT token(num) ... WHERE num = 1` is
/// -4069959284402364209; -1 is 7297452126230313552), and of text keys
/// from the `scylla` driver's partitioner tests, whose tail bytes above
/// 0x7f exercise Cassandra's sign extension.
#[test]
fn the_doubles_tokens_are_cassandras_murmur3_tokens() {
    for (n, expected) in [
        (1_i32, -4069959284402364209),
        (2, -3248873570005575792),
        (3, 9010454139840013625),
        (5, -7509452495886106294),
        (12, 8582886034424406875),
        (20, 1388667306199997068),
        // Bytes above 0x7f in the tail: Cassandra sign-extends them.
        (-1, 7297452126230313552),
    ] {
        assert_eq!(token(&[n.to_be_bytes().to_vec()]), expected, "int {n}");
    }
    for (text, expected) in [
        ("test", -6017608668500074083),
        ("xd", 4507812186440344727),
        ("primary_key", -1632642444691073360),
        ("kremówki", 4354931215268080151),
    ] {
        assert_eq!(token(&[text.as_bytes().to_vec()]), expected, "text {text}");
    }
}

/// `(after, to)` of a recorded range read: `after` is `None` for the
/// ring's start (`>=` the smallest token).
fn range_of(query: &Query) -> (Option<i64>, i64) {
    let after = query
        .text
        .split(r#"token("region", "id") > "#)
        .nth(1)
        .map(|r| r.split(' ').next().unwrap().parse().unwrap());
    let to = query
        .text
        .split(r#"token("region", "id") <= "#)
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    if after.is_none() {
        assert!(
            query.text.contains(r#"token("region", "id") >= -9223372036854775808"#),
            "{}",
            query.text
        );
    }
    (after, to)
}

/// The first page of each range read among `queries`, sorted: they must
/// tile the ring from its smallest to its largest token.
fn assert_ranges_tile_the_ring(queries: &[Query], n: usize) {
    let mut ranges: Vec<(Option<i64>, i64)> = queries.iter().filter(|q| !q.paged).map(range_of).collect();
    ranges.sort();
    assert_eq!(ranges.len(), n, "{queries:?}");
    assert_eq!(ranges[0].0, None, "the first range starts at the ring's start");
    assert_eq!(ranges[n - 1].1, i64::MAX, "the last ends at the ring's end");
    for pair in ranges.windows(2) {
        assert_eq!(pair[1].0, Some(pair[0].1), "no gap, no overlap: {ranges:?}");
    }
}

async fn run(client: &Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

fn event(region: &str, id: i64) -> Vec<Val> {
    vec![
        Val::Text(region.to_owned()),
        Val::Int(id),
        Val::Int(id),
        Val::Int(1_704_067_200_000 + id * 60_000),
    ]
}

/// `shop.events` with a composite partition key (region, id), `count` rows.
fn seed(fake: &CqlFake, ids: std::ops::RangeInclusive<i64>) {
    fake.insert(
        "shop",
        "events",
        ids.map(|id| event(["eu", "us", "ap"][id as usize % 3], id)).collect(),
    );
}

async fn setup(extra: &str) -> (CqlFake, Sluice, Client) {
    let fake = CqlFake::start(None);
    fake.create_table(
        "shop",
        "events",
        &[
            ("region", "partition_key", "text"),
            ("id", "partition_key", "int"),
            ("n", "clustering", "bigint"),
            ("at", "regular", "timestamp"),
        ],
    );
    seed(&fake, 1..=60);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION cass TYPE cassandra OPTIONS (hosts '127.0.0.1', port {}, page_size 4{extra})",
            fake.port
        ))
        .await
        .unwrap();
    (fake, sluice, client)
}

/// The rows of the scans of `shop.events` received since `before` reads.
fn scans(fake: &CqlFake, before: usize) -> Vec<Query> {
    fake.queries(r#"FROM "shop"."events""#).split_off(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_parallelism_reads_token_ranges_that_cover_the_ring_once() {
    let (fake, _sluice, client) = setup("").await;
    client
        .batch_execute(
            "CREATE ETL JOB par FROM cass.shop.events INTO warehouse.par INCREMENTAL BY at ALL WITH (parallelism = 4)",
        )
        .await
        .unwrap();
    let explained = format!("{:?}", rows(&client, "EXPLAIN ETL JOB par").await);
    assert!(
        explained.contains(
            r#"4 token ranges read in parallel, the first SELECT \"region\", \"id\", \"n\", \"at\" FROM \"shop\".\"events\" WHERE token(\"region\", \"id\") >= -9223372036854775808 AND token(\"region\", \"id\") <= -4611686018427387905 (pages of 4 rows); ranges [-9223372036854775808, -4611686018427387905], (-4611686018427387905, -1], (-1, 4611686018427387903], (4611686018427387903, 9223372036854775807]"#
        ),
        "{explained}"
    );

    let before = fake.queries(r#"FROM "shop"."events""#).len();
    assert_eq!(run(&client, "par").await, "60");
    let sent = scans(&fake, before);
    assert_ranges_tile_the_ring(&sent, 4);
    assert!(
        sent.iter().filter(|q| q.paged).count() >= 4,
        "ranges of about 15 rows read in pages of 4: {sent:?}"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), sum(n) FROM warehouse.par"
        )
        .await[0],
        ["60", "60", "1830"].map(|v| Some(v.to_owned())),
        "every row once"
    );

    // The watermark is the greatest cursor of every range: a re-run reads
    // the ring again and loads only the new rows.
    assert_eq!(run(&client, "par").await, "0");
    seed(&fake, 61..=70);
    let before = fake.queries(r#"FROM "shop"."events""#).len();
    assert_eq!(run(&client, "par").await, "10");
    assert_ranges_tile_the_ring(&scans(&fake, before), 4);
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), sum(n) FROM warehouse.par"
        )
        .await[0],
        ["70", "70", "2485"].map(|v| Some(v.to_owned()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_ranges_splits_every_scan_but_a_limit_and_a_foreign_partitioner() {
    let (fake, _sluice, client) = setup(", split_ranges 3").await;
    client
        .batch_execute("CREATE ETL JOB snap FROM cass.shop.events INTO warehouse.snap SNAPSHOT")
        .await
        .unwrap();
    let before = fake.queries(r#"FROM "shop"."events""#).len();
    assert_eq!(run(&client, "snap").await, "60");
    assert_ranges_tile_the_ring(&scans(&fake, before), 3);

    // A query reads the same rows through the ranges.
    assert_eq!(
        one(
            &client,
            "SELECT count(DISTINCT id) FROM cass.shop.events WHERE region = 'eu'"
        )
        .await,
        "20"
    );

    // A LIMIT is one SELECT: a preview reads the first pages only.
    let before = fake.queries(r#"FROM "shop"."events""#).len();
    assert_eq!(rows(&client, "SELECT id FROM cass.shop.events LIMIT 5").await.len(), 5);
    let limited = scans(&fake, before);
    assert!(
        limited
            .iter()
            .all(|q| !q.text.contains("token(") && q.text.ends_with("LIMIT 5")),
        "{limited:?}"
    );

    // A cluster whose partitioner is not Murmur3 is read with one SELECT.
    let other = CqlFake::start(None);
    other.set_partitioner("org.apache.cassandra.dht.RandomPartitioner");
    other.create_table(
        "shop",
        "events",
        &[
            ("region", "partition_key", "text"),
            ("id", "partition_key", "int"),
            ("n", "clustering", "bigint"),
            ("at", "regular", "timestamp"),
        ],
    );
    seed(&other, 1..=9);
    client
        .batch_execute(&format!(
            "CREATE CONNECTION random TYPE cassandra OPTIONS (hosts '127.0.0.1', port {}, split_ranges 3); \
             CREATE ETL JOB random FROM random.shop.events INTO warehouse.random SNAPSHOT",
            other.port
        ))
        .await
        .unwrap();
    assert_eq!(run(&client, "random").await, "9");
    let sent = other.queries(r#"FROM "shop"."events""#);
    assert!(
        !sent.is_empty() && sent.iter().all(|q| !q.text.contains("token(")),
        "{sent:?}"
    );
    assert!(!other.queries("SELECT partitioner FROM system.local").is_empty());
}
