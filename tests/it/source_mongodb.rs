//! MongoDB as a source, through the real driver inside `sluice` against the
//! wire-level double in `common/mongo_fake.rs` (no MongoDB server installs
//! here): the test before save, exploration, the `find` Sluice sends,
//! snapshot and incremental jobs, and a kill -9 between two pages. With
//! `SLUICE_MONGODB_TEST_URL` set, one more test runs against that server.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Binary, Bson, DateTime, Decimal128, Document, Timestamp, doc};
use tokio_postgres::Client;

use crate::common::mongo_fake::MongoFake;
use crate::common::{Sluice, describe_summary, expect_err, free_port, one, rows};

/// 2024-01-01T00:00:00Z plus `day` days, in milliseconds.
fn day(day: i64) -> DateTime {
    DateTime::from_millis(1_704_067_200_000 + day * 86_400_000)
}

/// An order with every common BSON type; `n` its number.
fn order(n: i64) -> Document {
    let mut d = doc! {
        "_id": ObjectId::parse_str(format!("65a1b2c3d4e5f607182930{n:02x}")).unwrap(),
        "n": n as i32,
        "big": Bson::Int64((1 << 40) + n),
        "price": n as f64 + 0.5,
        "amount": "12.34".parse::<Decimal128>().unwrap(),
        "updated_at": day(n),
        "ts": Timestamp { time: 1_700_000_000, increment: n as u32 },
        "payload": Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![n as u8, 0xff] },
        "customer": { "name": format!("c{n}"), "vip": n % 2 == 0 },
        "tags": ["a", n],
    };
    if n == 3 {
        d.remove("amount");
    }
    d
}

fn seed(fake: &MongoFake, count: i64) {
    fake.insert("shop", "orders", (1..=count).map(order).collect());
    fake.insert("shop", "customers", vec![doc! {"_id": 1, "name": "ann"}]);
    fake.insert(
        "admin",
        "system.version",
        vec![doc! {"_id": "featureCompatibilityVersion"}],
    );
    fake.insert("crm", "leads", vec![doc! {"_id": "l1", "score": 0.5}]);
}

async fn setup(extra: &str) -> (MongoFake, Sluice, Client) {
    let fake = MongoFake::start();
    seed(&fake, 5);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION docs TYPE mongodb OPTIONS (uri '{}'{extra})",
            fake.uri()
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
async fn the_test_before_save_names_bad_passwords_and_unreachable_servers() {
    let fake = MongoFake::start();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let port = fake.port;
    let wrong = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION m TYPE mongodb OPTIONS (host '127.0.0.1', port {port}, user 'etl', password 'nope-secret')"
        ),
        "28P01",
    )
    .await;
    assert!(!wrong.contains("nope-secret"), "the password is never shown: {wrong}");
    assert!(
        !fake.commands("saslStart").is_empty(),
        "the driver tried SCRAM: {wrong}"
    );
    let closed = free_port();
    expect_err(
        &client,
        &format!(
            "CREATE CONNECTION m TYPE mongodb OPTIONS (uri 'mongodb://127.0.0.1:{closed}/?connectTimeoutMS=2000')"
        ),
        "08001",
    )
    .await;
    expect_err(
        &client,
        "CREATE CONNECTION m TYPE mongodb OPTIONS (port 27017)",
        "22023",
    )
    .await;
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.connections").await,
        "0",
        "nothing half-saved"
    );
    client
        .batch_execute(&format!(
            "CREATE CONNECTION m TYPE mongodb OPTIONS (host '127.0.0.1', port {port})"
        ))
        .await
        .unwrap();
    assert!(!fake.commands("ping").is_empty(), "tested with ping");
    let types = rows(&client, "SHOW CONNECTION TYPES").await;
    let mongo = types.iter().find(|t| t[0].as_deref() == Some("mongodb")).unwrap();
    assert_eq!(mongo[3].as_deref(), Some("beta"), "{mongo:?}");
}

#[tokio::test]
async fn databases_are_schemas_and_collections_are_described_from_a_sample() {
    let (fake, _sluice, client) = setup("").await;
    assert_eq!(
        rows(&client, "SHOW SCHEMAS FROM docs").await,
        [[Some("crm".to_owned())], [Some("shop".to_owned())]],
        "admin, local and config are hidden"
    );
    let tables = rows(&client, "SHOW TABLES FROM docs.shop").await;
    let names: Vec<_> = tables.iter().map(|r| r[1].clone().unwrap()).collect();
    assert_eq!(names, ["customers", "orders"], "{tables:?}");
    assert!(
        tables[1].iter().any(|v| v.as_deref() == Some("5")),
        "the count from $collStats: {tables:?}"
    );
    let describe = rows(&client, "DESCRIBE docs.shop.orders").await;
    let summary = describe_summary(&describe);
    assert_eq!(
        summary,
        [
            "_id | string (mongodb _id) | 1 | STRING | high",
            "amount | string | - | STRING | medium",
            "big | int64 | - | INT64 | high",
            "customer | json | - | JSON | high",
            "n | int64 | - | INT64 | high",
            "payload | bytes | - | BYTES | high",
            "price | float64 | - | FLOAT64 | high",
            "tags | json | - | JSON | high",
            "ts | json | - | JSON | high",
            "updated_at | timestamp | - | TIMESTAMP | high",
        ]
    );
    let sampled = fake.commands("aggregate");
    assert!(
        sampled.iter().any(|c| c.get_array("pipeline").unwrap()[0]
            .as_document()
            .unwrap()
            .contains_key("$sample")),
        "{sampled:?}"
    );
    let missing = expect_err(&client, "DESCRIBE docs.shop.order", "42704").await;
    assert!(missing.contains("orders"), "{missing}");
    let no_db = expect_err(&client, "SHOW TABLES FROM docs.shopp", "42704").await;
    assert!(no_db.contains("shop"), "{no_db}");
}

#[tokio::test]
async fn bson_values_arrive_as_described() {
    let (_fake, _sluice, client) = setup("").await;
    let row = rows(
        &client,
        "SELECT _id, n, big, price, amount, CAST(updated_at AS TEXT), CAST(ts AS TEXT), encode(payload, 'hex'), \
         CAST(customer AS TEXT), CAST(tags AS TEXT) FROM docs.shop.orders WHERE n = 2",
    )
    .await;
    assert_eq!(
        row,
        [[
            "65a1b2c3d4e5f60718293002",
            "2",
            "1099511627778",
            "2.5",
            "12.34",
            "2024-01-03T00:00:00Z",
            r#"{"i":2,"t":1700000000}"#,
            "02ff",
            r#"{"name":"c2","vip":true}"#,
            r#"["a",2]"#,
        ]
        .map(|v| Some(v.to_owned()))]
    );
}

#[tokio::test]
async fn filters_projection_and_limits_go_into_find() {
    let (fake, _sluice, client) = setup(", batch_size 2").await;
    fake.clear_commands();
    let picked = rows(
        &client,
        "SELECT n FROM docs.shop.orders WHERE updated_at > '2024-01-02T00:00:00Z' AND n <= 4 ORDER BY n",
    )
    .await;
    assert_eq!(picked, [["2"], ["3"], ["4"]].map(|r| r.map(|v| Some(v.to_owned()))));
    let finds = fake.commands("find");
    let find = finds.last().unwrap();
    let filter = find.get_document("filter").unwrap();
    let conditions = filter.get_array("$and").unwrap();
    assert!(
        conditions.contains(&Bson::Document(doc! {"updated_at": {"$gt": day(1)}}))
            && conditions.contains(&Bson::Document(doc! {"n": {"$lte": 4i64}})),
        "{find}"
    );
    assert_eq!(
        find.get_document("projection").unwrap(),
        &doc! {"_id": 1, "n": 1, "updated_at": 1}
    );
    assert_eq!(find.get("batchSize").and_then(Bson::as_i32), Some(2));

    fake.clear_commands();
    let limited = rows(&client, "SELECT n FROM docs.shop.orders LIMIT 3").await;
    assert_eq!(limited.len(), 3);
    let find = fake.commands("find").pop().unwrap();
    let limit = find.get("limit").map(|l| l.to_string());
    assert_eq!(limit.as_deref(), Some("3"), "{find}");
    assert!(!fake.commands("getMore").is_empty(), "the cursor was followed");

    fake.clear_commands();
    let text = rows(
        &client,
        "SELECT n FROM docs.shop.orders WHERE _id = '65a1b2c3d4e5f60718293001'",
    )
    .await;
    assert_eq!(text, [[Some("1".to_owned())]]);
    let find = fake.commands("find").pop().unwrap();
    assert_eq!(
        find.get_document("filter").unwrap(),
        &Document::new(),
        "an ObjectId read as text is compared in Sluice: {find}"
    );
    let explain = rows(&client, "EXPLAIN SELECT n FROM docs.shop.orders WHERE n > 3").await;
    let plan = format!("{explain:?}");
    assert!(
        plan.contains("find shop.orders filter") && plan.contains("$gt"),
        "{plan}"
    );
}

#[tokio::test]
async fn counts_fall_back_when_coll_stats_is_not_allowed() {
    let (fake, _sluice, client) = setup("").await;
    fake.deny_coll_stats();
    let tables = rows(&client, "SHOW TABLES FROM docs.shop").await;
    assert!(
        tables[1].iter().any(|v| v.as_deref() == Some("5")),
        "the count from estimatedDocumentCount: {tables:?}"
    );
    assert!(!fake.commands("count").is_empty());
}

#[tokio::test]
async fn a_snapshot_job_replaces_the_table_with_every_document() {
    let (fake, _sluice, client) = setup(", keep_document true").await;
    client
        .batch_execute("CREATE ETL JOB orders_snap FROM docs.shop.orders INTO warehouse.orders SNAPSHOT")
        .await
        .unwrap();
    assert_eq!(run(&client, "orders_snap").await, "5");
    fake.delete("shop", "orders", &order(1).get("_id").unwrap().clone());
    fake.insert("shop", "orders", vec![order(9)]);
    assert_eq!(run(&client, "orders_snap").await, "5");
    let ns: Vec<_> = rows(&client, "SELECT n FROM warehouse.orders ORDER BY n")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(ns, ["2", "3", "4", "5", "9"]);
    let document = one(&client, "SELECT _document FROM warehouse.orders WHERE n = 3").await;
    assert!(
        document.starts_with(r#"{"_id":"65a1b2c3d4e5f60718293003","big":1099511627779,"#),
        "{document}"
    );
}

#[tokio::test]
async fn an_incremental_job_reads_its_window_sorted_by_cursor_and_id() {
    let (fake, _sluice, client) = setup(", batch_size 2").await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM docs.shop.orders INTO warehouse.orders INCREMENTAL BY updated_at ALL",
        )
        .await
        .unwrap();
    assert_eq!(run(&client, "orders_inc").await, "5");
    fake.clear_commands();
    assert_eq!(run(&client, "orders_inc").await, "0");
    let find = fake.commands("find").pop().unwrap();
    let filter = find.get_document("filter").unwrap().to_string();
    assert!(filter.contains("updated_at") && filter.contains("$gt"), "{find}");
    assert_eq!(
        find.get_document("sort").unwrap(),
        &doc! {"updated_at": 1, "_id": 1},
        "{find}"
    );
    fake.insert("shop", "orders", vec![order(6), order(7)]);
    let mut late = order(8);
    late.insert("updated_at", day(0));
    fake.insert("shop", "orders", vec![late]);
    assert_eq!(
        run(&client, "orders_inc").await,
        "2",
        "the late document is behind the watermark"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT _id), sum(n) FROM warehouse.orders"
        )
        .await[0],
        ["7", "7", "28"].map(|v| Some(v.to_owned()))
    );
}

/// The server is killed between two pages of a scan: nothing of the run is
/// committed, and the re-run after the restart loads every document once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_pages_then_a_rerun_loads_each_document_once() {
    let fake = MongoFake::start();
    fake.insert(
        "shop",
        "events",
        (1..=40).map(|i| doc! {"_id": i, "n": i, "at": day(i)}).collect(),
    );
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "between_pages")]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION docs TYPE mongodb OPTIONS (uri '{}', batch_size 5); \
             CREATE ETL JOB events FROM docs.shop.events INTO warehouse.events INCREMENTAL BY at ALL",
            fake.uri()
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
        (41..=45).map(|i| doc! {"_id": i, "n": i, "at": day(i)}).collect(),
    );
    assert_eq!(run(&client, "events").await, "5");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT _id), sum(n) FROM warehouse.events"
        )
        .await[0],
        ["45", "45", "1035"].map(|v| Some(v.to_owned()))
    );
}

/// Against a real server, when `SLUICE_MONGODB_TEST_URL` names one (the
/// user needs readWrite on a scratch database `sluice_it_<random>`, which
/// the test drops at the end).
#[tokio::test]
async fn live_server_when_configured() {
    let Ok(url) = std::env::var("SLUICE_MONGODB_TEST_URL") else {
        eprintln!("SLUICE_MONGODB_TEST_URL is not set: the live MongoDB test does not run");
        return;
    };
    let mongo = mongodb::Client::with_uri_str(&url).await.unwrap();
    let db_name = format!("sluice_it_{}", std::process::id());
    let db = mongo.database(&db_name);
    db.collection::<Document>("orders")
        .insert_many((1..=5).map(order).collect::<Vec<_>>())
        .await
        .unwrap();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let outcome = async {
        client
            .batch_execute(&format!(
                "CREATE CONNECTION live TYPE mongodb OPTIONS (uri '{}', databases '{db_name}'); \
                 CREATE ETL JOB live_orders FROM live.{db_name}.orders INTO warehouse.orders INCREMENTAL BY updated_at ALL",
                url.replace('\'', "''")
            ))
            .await
            .unwrap();
        let describe = rows(&client, &format!("DESCRIBE live.{db_name}.orders")).await;
        assert_eq!(describe.len(), 10, "{describe:?}");
        assert_eq!(run(&client, "live_orders").await, "5");
        db.collection::<Document>("orders").insert_one(order(6)).await.unwrap();
        assert_eq!(run(&client, "live_orders").await, "1");
        assert_eq!(one(&client, "SELECT sum(n) FROM warehouse.orders").await, "21");
    };
    let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    db.drop().await.unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
