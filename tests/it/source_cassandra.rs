//! Cassandra as a source, through the real `scylla` driver inside `sluice`
//! against the CQL native-protocol double in `common/cql_fake.rs` (no
//! Cassandra server installs here): the test before save, exploration,
//! every CQL type, the CQL Sluice sends, snapshot and incremental jobs, a
//! kill -9 between two pages, and a second node found through
//! `system.peers`. With `SLUICE_CASSANDRA_TEST_URL` set, one
//! more test runs against that cluster.

use tokio_postgres::Client;

use crate::common::cql_fake::{CqlFake, Val};
use crate::common::{Sluice, describe_summary, expect_err, free_port, one, rows};

/// 2024-01-01T00:00:00Z plus `day` days, in milliseconds.
fn day(day: i64) -> Val {
    Val::Int(1_704_067_200_000 + day * 86_400_000)
}

fn t(text: &str) -> Val {
    Val::Text(text.to_owned())
}

const ORDER_COLUMNS: &[(&str, &str, &str)] = &[
    ("id", "partition_key", "int"),
    ("updated_at", "regular", "timestamp"),
    ("n", "regular", "bigint"),
    ("small", "regular", "smallint"),
    ("tiny", "regular", "tinyint"),
    ("name", "regular", "text"),
    ("code", "regular", "ascii"),
    ("price", "regular", "double"),
    ("ratio", "regular", "float"),
    ("ok", "regular", "boolean"),
    ("big", "regular", "varint"),
    ("amount", "regular", "decimal"),
    ("sold_on", "regular", "date"),
    ("opens", "regular", "time"),
    ("ident", "regular", "uuid"),
    ("tid", "regular", "timeuuid"),
    ("ip", "regular", "inet"),
    ("payload", "regular", "blob"),
    ("tags", "regular", "set<text>"),
    ("scores", "regular", "list<int>"),
    ("attrs", "regular", "map<text, int>"),
    ("pair", "regular", "tuple<int, text>"),
    ("addr", "regular", "frozen<address>"),
    ("span", "regular", "duration"),
    ("emb", "regular", "vector<float, 2>"),
];

/// An order with a value of every CQL type; `n` its number.
fn order(n: i64) -> Vec<Val> {
    vec![
        Val::Int(n),
        day(n),
        Val::Int(n * 10),
        Val::Int(-n),
        Val::Int(n),
        t(&format!("c{n}")),
        t("A"),
        Val::Float(n as f64 + 0.5),
        Val::Float(0.25),
        Val::Bool(n % 2 == 0),
        // 2^64 for order 2: beyond every fixed-width integer.
        if n == 2 {
            Val::Bytes(vec![0x01, 0, 0, 0, 0, 0, 0, 0, 0])
        } else {
            Val::Int(n)
        },
        // 123.45: scale 2, unscaled 12345.
        Val::Bytes(vec![0, 0, 0, 2, 0x30, 0x39]),
        Val::Int(19_723 + n),
        Val::Int(13 * 3_600_000_000_000 + 5 * 60_000_000_000 + 7_000_000_001),
        t("01234567-89ab-cdef-0123-456789abcdef"),
        t("5f1d9a2e-1dd2-11b2-8080-808080808080"),
        t(&format!("10.0.0.{n}")),
        Val::Bytes(vec![n as u8, 0xff]),
        Val::List(vec![t("a"), t("b")]),
        Val::List(vec![Val::Int(1), Val::Int(n)]),
        Val::Map(vec![(t("k"), Val::Int(n))]),
        Val::List(vec![Val::Int(n), t("x")]),
        Val::List(vec![t("Oslo"), Val::Null]),
        Val::List(vec![Val::Int(1), Val::Int(2), Val::Int(3)]),
        Val::List(vec![Val::Float(0.5), Val::Float(n as f64)]),
    ]
}

fn seed(fake: &CqlFake, count: i64) {
    fake.create_type("shop", "address", &[("city", "text"), ("zip", "int")]);
    fake.create_table("shop", "orders", ORDER_COLUMNS);
    fake.insert("shop", "orders", (1..=count).map(order).collect());
    fake.create_table(
        "shop",
        "customers",
        &[("id", "partition_key", "int"), ("name", "regular", "text")],
    );
    fake.create_table("crm", "leads", &[("id", "partition_key", "text")]);
}

async fn setup(extra: &str) -> (CqlFake, Sluice, Client) {
    let fake = CqlFake::start(None);
    seed(&fake, 5);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION cass TYPE cassandra OPTIONS (hosts '127.0.0.1', port {}{extra})",
            fake.port
        ))
        .await
        .unwrap();
    (fake, sluice, client)
}

async fn run(client: &Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

#[tokio::test]
async fn the_test_before_save_names_bad_credentials_unreachable_hosts_and_unknown_keyspaces() {
    let fake = CqlFake::start(Some(("etl", "right-secret")));
    seed(&fake, 1);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let port = fake.port;
    let wrong = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION c TYPE cassandra OPTIONS (hosts '127.0.0.1', port {port}, user 'etl', password 'nope-secret')"
        ),
        "28P01",
    )
    .await;
    assert!(!wrong.contains("nope-secret"), "the password is never shown: {wrong}");
    let closed = free_port();
    expect_err(
        &client,
        &format!("CREATE CONNECTION c TYPE cassandra OPTIONS (hosts '127.0.0.1', port {closed})"),
        "08001",
    )
    .await;
    let unknown = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION c TYPE cassandra OPTIONS (hosts '127.0.0.1', port {port}, user 'etl', \
             password 'right-secret', keyspace 'shopp')"
        ),
        "3D000",
    )
    .await;
    assert!(unknown.contains("shopp"), "{unknown}");
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.connections").await,
        "0",
        "nothing half-saved"
    );
    client
        .batch_execute(&format!(
            "CREATE CONNECTION c TYPE cassandra OPTIONS (hosts '127.0.0.1', port {port}, user 'etl', \
             password 'right-secret', keyspace 'shop')"
        ))
        .await
        .unwrap();
    assert!(
        !fake.queries("FROM system.local").is_empty(),
        "tested by reading system.local"
    );
    let types = rows(&client, "SHOW CONNECTION TYPES").await;
    let cassandra = types.iter().find(|t| t[0].as_deref() == Some("cassandra")).unwrap();
    assert_eq!(cassandra[3].as_deref(), Some("beta"), "{cassandra:?}");
    assert_eq!(
        rows(&client, "SHOW SCHEMAS FROM c").await,
        [[Some("shop".to_owned())]],
        "the keyspace option shows that keyspace only"
    );
}

#[tokio::test]
async fn keyspaces_are_schemas_and_tables_are_described_from_system_schema() {
    let (fake, _sluice, client) = setup("").await;
    assert_eq!(
        rows(&client, "SHOW SCHEMAS FROM cass").await,
        [[Some("crm".to_owned())], [Some("shop".to_owned())]],
        "system keyspaces are hidden"
    );
    let tables = rows(&client, "SHOW TABLES FROM cass.shop").await;
    let names: Vec<_> = tables.iter().map(|r| r[1].clone().unwrap()).collect();
    assert_eq!(names, ["customers", "orders"], "{tables:?}");
    assert!(
        tables[1].iter().any(|v| v.as_deref() == Some("5")),
        "the estimate from system.size_estimates: {tables:?}"
    );
    let describe = rows(&client, "DESCRIBE cass.shop.orders").await;
    let summary = describe_summary(&describe);
    assert_eq!(
        summary,
        [
            "id | int64 (int) | 1 | INT64 | high",
            "addr | json (frozen<address>) | - | JSON | high",
            "amount | string (decimal) | - | STRING | medium",
            "attrs | json (map<text, int>) | - | JSON | high",
            "big | string (varint) | - | STRING | medium",
            "code | string (ascii) | - | STRING | high",
            "emb | json (vector<float, 2>) | - | JSON | high",
            "ident | string (uuid) | - | STRING | high",
            "ip | string (inet) | - | STRING | high",
            "n | int64 (bigint) | - | INT64 | high",
            "name | string (text) | - | STRING | high",
            "ok | bool (boolean) | - | BOOL | high",
            "opens | string (time) | - | STRING | medium",
            "pair | json (tuple<int, text>) | - | JSON | high",
            "payload | bytes (blob) | - | BYTES | high",
            "price | float64 (double) | - | FLOAT64 | high",
            "ratio | float64 (float) | - | FLOAT64 | high",
            "scores | json (list<int>) | - | JSON | high",
            "small | int64 (smallint) | - | INT64 | high",
            "sold_on | string (date) | - | STRING | medium",
            "span | json (duration) | - | JSON | medium",
            "tags | json (set<text>) | - | JSON | high",
            "tid | string (timeuuid) | - | STRING | high",
            "tiny | int64 (tinyint) | - | INT64 | high",
            "updated_at | timestamp (timestamp) | - | TIMESTAMP | high",
        ]
    );
    assert!(
        !fake
            .queries("FROM system_schema.columns WHERE keyspace_name = 'shop' AND table_name = 'orders'")
            .is_empty()
    );
    let missing = expect_err(&client, "DESCRIBE cass.shop.order", "42704").await;
    assert!(missing.contains("orders"), "{missing}");
    let no_keyspace = expect_err(&client, "SHOW TABLES FROM cass.shopp", "42704").await;
    assert!(no_keyspace.contains("shop"), "{no_keyspace}");
}

#[tokio::test]
async fn cql_values_arrive_as_described() {
    let (_fake, _sluice, client) = setup("").await;
    let row = rows(
        &client,
        "SELECT id, CAST(updated_at AS TEXT), n, small, tiny, name, code, price, ratio, ok, big, amount, sold_on, \
         opens, ident, tid, ip, encode(payload, 'hex'), CAST(tags AS TEXT), CAST(scores AS TEXT), \
         CAST(attrs AS TEXT), CAST(pair AS TEXT), CAST(addr AS TEXT), CAST(span AS TEXT), CAST(emb AS TEXT) \
         FROM cass.shop.orders WHERE id = 2",
    )
    .await;
    assert_eq!(
        row,
        [[
            "2",
            "2024-01-03T00:00:00Z",
            "20",
            "-2",
            "2",
            "c2",
            "A",
            "2.5",
            "0.25",
            "t",
            "18446744073709551616",
            "123.45",
            "2024-01-03",
            "13:05:07.000000001",
            "01234567-89ab-cdef-0123-456789abcdef",
            "5f1d9a2e-1dd2-11b2-8080-808080808080",
            "10.0.0.2",
            "02ff",
            r#"["a","b"]"#,
            "[1,2]",
            r#"{"k":2}"#,
            r#"[2,"x"]"#,
            r#"{"city":"Oslo","zip":null}"#,
            r#"{"days":2,"months":1,"nanoseconds":3}"#,
            "[0.5,2.0]",
        ]
        .map(|v| Some(v.to_owned()))]
    );
}

#[tokio::test]
async fn projection_limit_and_paging_go_into_the_cql() {
    let (fake, _sluice, client) = setup(", page_size 2").await;
    let limited = rows(&client, "SELECT n FROM cass.shop.orders LIMIT 3").await;
    assert_eq!(limited.len(), 3);
    let sent = fake.queries(r#"SELECT "id", "n" FROM "shop"."orders" LIMIT 3"#);
    assert!(!sent.is_empty(), "{:?}", fake.queries("shop"));
    assert_eq!(sent[0].page_size, Some(2));

    let all = rows(
        &client,
        "SELECT id, name FROM cass.shop.orders WHERE n > 20 ORDER BY id",
    )
    .await;
    assert_eq!(
        all,
        [["3", "c3"], ["4", "c4"], ["5", "c5"]].map(|r| r.map(|v| Some(v.to_owned())))
    );
    let pages = fake.queries(r#"SELECT "id", "n", "name" FROM "shop"."orders""#);
    assert_eq!(pages.len(), 3, "5 rows in pages of 2: {pages:?}");
    assert!(!pages[0].paged && pages[1].paged && pages[2].paged, "{pages:?}");
    assert!(
        pages.iter().all(|q| !q.text.contains("WHERE")),
        "by default a filter stays in Sluice: {pages:?}"
    );
    let explain = rows(&client, "EXPLAIN SELECT n FROM cass.shop.orders LIMIT 2").await;
    let plan = format!("{explain:?}");
    assert!(
        plan.contains(r#"SELECT \"id\", \"n\" FROM \"shop\".\"orders\" LIMIT 2 (pages of 2 rows)"#),
        "{plan}"
    );
}

#[tokio::test]
async fn a_snapshot_job_replaces_the_table_with_every_row() {
    let (fake, _sluice, client) = setup("").await;
    client
        .batch_execute("CREATE ETL JOB orders_snap FROM cass.shop.orders INTO warehouse.orders SNAPSHOT")
        .await
        .unwrap();
    assert_eq!(run(&client, "orders_snap").await, "5");
    fake.insert("shop", "orders", vec![order(9)]);
    assert_eq!(run(&client, "orders_snap").await, "6");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), sum(n) FROM warehouse.orders"
        )
        .await[0],
        ["6", "6", "240"].map(|v| Some(v.to_owned()))
    );
    assert_eq!(
        one(&client, "SELECT CAST(addr AS TEXT) FROM warehouse.orders WHERE id = 9").await,
        r#"{"city":"Oslo","zip":null}"#
    );
}

#[tokio::test]
async fn an_incremental_job_with_allow_filtering_sends_its_window() {
    let (fake, _sluice, client) = setup(", incremental_filter 'allow_filtering'").await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM cass.shop.orders INTO warehouse.orders INCREMENTAL BY updated_at ALL",
        )
        .await
        .unwrap();
    assert_eq!(run(&client, "orders_inc").await, "5");
    assert_eq!(run(&client, "orders_inc").await, "0");
    let windowed = fake.queries(r#"WHERE "updated_at" >= 1704499200000"#);
    assert!(
        windowed.iter().any(|q| q.text.ends_with("ALLOW FILTERING")),
        "the lower bound (the watermark, day 5) is sent: {:?}",
        fake.queries("shop")
    );
    fake.insert("shop", "orders", vec![order(6), order(7)]);
    let mut late = order(8);
    late[1] = day(0);
    fake.insert("shop", "orders", vec![late]);
    assert_eq!(
        run(&client, "orders_inc").await,
        "2",
        "the late row is behind the watermark"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), sum(n) FROM warehouse.orders"
        )
        .await[0],
        ["7", "7", "280"].map(|v| Some(v.to_owned()))
    );
}

/// The server is killed between two pages of a scan: nothing of the run is
/// committed, and the re-run after the restart loads every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_pages_then_a_rerun_loads_each_row_once() {
    let fake = CqlFake::start(None);
    fake.create_table(
        "shop",
        "events",
        &[
            ("id", "partition_key", "int"),
            ("n", "regular", "bigint"),
            ("at", "regular", "timestamp"),
        ],
    );
    fake.insert(
        "shop",
        "events",
        (1..=40).map(|i| vec![Val::Int(i), Val::Int(i), day(i)]).collect(),
    );
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "between_pages")]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION cass TYPE cassandra OPTIONS (hosts '127.0.0.1', port {}, page_size 5); \
             CREATE ETL JOB events FROM cass.shop.events INTO warehouse.events INCREMENTAL BY at ALL",
            fake.port
        ))
        .await
        .unwrap();
    sluice.run_into_failpoint(&client, "RUN ETL JOB events").await;
    assert!(
        sluice.log_contents().contains("failpoint hit"),
        "killed at the failpoint"
    );
    let client = sluice.restart_without_failpoints().await;
    let interrupted = rows(&client, "SELECT status FROM sluice.runs WHERE job = 'events'").await;
    assert_eq!(interrupted, [[Some("failed".to_owned())]]);
    assert_eq!(run(&client, "events").await, "40");
    fake.insert(
        "shop",
        "events",
        (41..=45).map(|i| vec![Val::Int(i), Val::Int(i), day(i)]).collect(),
    );
    assert_eq!(run(&client, "events").await, "5");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), sum(n) FROM warehouse.events"
        )
        .await[0],
        ["45", "45", "1035"].map(|v| Some(v.to_owned()))
    );
}

/// A two-node cluster given by one contact point: the driver prepares and
/// runs its topology reads (`system.local`, `system.peers`), finds the
/// peer on 127.0.0.2, connects to it and sends it reads too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_discovers_a_peer_and_reads_from_it() {
    let fake = CqlFake::start_nodes(None, 2);
    seed(&fake, 5);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION cass TYPE cassandra OPTIONS (hosts '127.0.0.1', port {}, datacenter 'dc1')",
            fake.port
        ))
        .await
        .unwrap();
    let topology = fake.queries("FROM system.peers");
    assert!(
        topology.iter().any(|q| q.prepared && q.node == "127.0.0.1"),
        "the control connection executes its prepared peers read: {topology:?}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert_eq!(one(&client, "SELECT count(id) FROM cass.shop.orders").await, "5");
        // A scan of no columns returns batches without columns (it failed
        // with "Batch has 1 columns but BatchCoalescer expects 0").
        assert_eq!(one(&client, "SELECT count(*) FROM cass.shop.orders").await, "5");
        let reads = fake.queries(r#"FROM "shop"."orders""#);
        if reads.iter().any(|q| q.node == "127.0.0.2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no read reached the peer 127.0.0.2: {reads:?}"
        );
    }
}

/// Against a real cluster, when `SLUICE_CASSANDRA_TEST_URL` names one as
/// `host:port/keyspace` (optionally `user:password@` first): the keyspace
/// must hold a table `orders (id int PRIMARY KEY, n bigint, updated_at
/// timestamp)` with at least one row; the test reads it, never writes.
#[tokio::test]
async fn live_cluster_when_configured() {
    let Ok(url) = std::env::var("SLUICE_CASSANDRA_TEST_URL") else {
        eprintln!("SLUICE_CASSANDRA_TEST_URL is not set: the live Cassandra test does not run");
        return;
    };
    let (credentials, rest) = match url.rsplit_once('@') {
        Some((c, r)) => (Some(c.split_once(':').expect("user:password@")), r),
        None => (None, url.as_str()),
    };
    let (address, keyspace) = rest.split_once('/').expect("host:port/keyspace");
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let login = credentials
        .map(|(u, p)| format!(", user '{u}', password '{}'", p.replace('\'', "''")))
        .unwrap_or_default();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION live TYPE cassandra OPTIONS (hosts '{host}', port {port}, keyspace '{keyspace}'{login}); \
             CREATE ETL JOB live_orders FROM live.{keyspace}.orders INTO warehouse.orders INCREMENTAL BY updated_at ALL"
        ))
        .await
        .unwrap();
    let describe = rows(&client, &format!("DESCRIBE live.{keyspace}.orders")).await;
    assert_eq!(describe[0][0].as_deref(), Some("id"), "{describe:?}");
    let count = one(&client, &format!("SELECT count(*) FROM live.{keyspace}.orders")).await;
    assert_eq!(run(&client, "live_orders").await, count);
    assert_eq!(run(&client, "live_orders").await, "0");
}
