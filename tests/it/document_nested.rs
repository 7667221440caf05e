//! Nested document values loaded as RECORD and REPEATED columns through a
//! job's `COLUMNS`: DynamoDB (moto), Redis (redis-server), Firestore (the
//! emulator) and MongoDB (the wire-level double) into the warehouse's
//! nested Parquet, DynamoDB into BigQuery (the fake) as RECORD
//! and REPEATED fields, `on_type_mismatch` for documents that do not fit,
//! and the refusals.

use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::bigquery::table_rows;
use crate::common::dynamodb::Dynamo;
use crate::common::firestore::{FirestoreEmulator, PROJECT};
use crate::common::mongo_fake::MongoFake;
use crate::common::redis::{REDIS_PASSWORD, REDIS_USER, RedisServer};
use crate::common::{PgServer, Sluice, create_shop_connection, expect_err, one, rows};
use crate::fake_bigquery::FakeBigQuery;

const COLUMNS: &str = "COLUMNS (address RECORD(street STRING, zip INT64, geo RECORD(lat FLOAT64)), \
                       tags REPEATED STRING, visits REPEATED RECORD(at INT64, pages REPEATED STRING))";

/// `people` with nested maps and lists: items 1 to 3 fit [`COLUMNS`].
fn people(dynamo: &Dynamo) {
    dynamo.create_table("people");
    dynamo.put(
        "people",
        &[
            json!({"id": {"N": "1"},
                   "address": {"M": {"street": {"S": "Main 1"}, "zip": {"N": "1234"}, "geo": {"M": {"lat": {"N": "52.5"}}}}},
                   "tags": {"L": [{"S": "a"}, {"S": "b"}]},
                   "visits": {"L": [{"M": {"at": {"N": "10"}, "pages": {"SS": ["/", "/x"]}}}, {"M": {"at": {"N": "11"}}}]}}),
            json!({"id": {"N": "2"}, "address": {"M": {"street": {"S": "Side 2"}}}, "tags": {"L": []}}),
            json!({"id": {"N": "3"}, "name": {"S": "no nesting"}}),
        ],
    );
}

async fn run(client: &Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_maps_and_lists_load_as_nested_warehouse_columns() {
    let dynamo = Dynamo::start();
    people(&dynamo);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION dyn TYPE dynamodb OPTIONS ({})",
            dynamo.options()
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE ETL JOB people FROM dyn.dynamodb.people INTO warehouse.people SNAPSHOT {COLUMNS}"
        ))
        .await
        .unwrap();
    let shown = format!("{:?}", rows(&client, "SHOW CREATE ETL JOB people").await);
    assert!(
        shown.contains("address RECORD(street STRING, zip INT64, geo RECORD(lat FLOAT64)), tags REPEATED STRING"),
        "{shown}"
    );
    assert_eq!(run(&client, "people").await, "3");

    // Nested in the warehouse: fields and elements are addressable.
    assert!(
        one(&client, "SELECT arrow_typeof(address) FROM warehouse.people LIMIT 1")
            .await
            .starts_with("Struct("),
    );
    let got = rows(
        &client,
        "SELECT id, address['street'], address['zip'], address['geo']['lat'], array_length(tags), tags[2], \
         cardinality(visits[1]['pages']), visits[2]['at'], array_length(visits[2]['pages']) FROM warehouse.people ORDER BY id",
    )
    .await;
    let text = |r: &[Option<String>]| {
        r.iter()
            .map(|c| c.as_deref().unwrap_or("NULL"))
            .collect::<Vec<_>>()
            .join("|")
    };
    let got: Vec<String> = got.iter().map(|r| text(r)).collect();
    assert_eq!(
        got,
        [
            "1|Main 1|1234|52.5|2|b|2|11|NULL",
            "2|Side 2|NULL|NULL|0|NULL|NULL|NULL|NULL",
            "3|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
        ]
    );

    // A document that does not fit fails the run, naming where...
    dynamo.put(
        "people",
        &[json!({"id": {"N": "4"}, "address": {"M": {"street": {"S": "S"}, "zip": {"S": "12-345"}}}})],
    );
    let message = expect_err(&client, "RUN ETL JOB people", "2200G").await;
    assert!(
        message.contains(r#"document 4 of dynamodb.people: field "address.zip" holds the string value "12-345""#),
        "{message}"
    );
    assert_eq!(
        one(&client, "SELECT count(*) FROM warehouse.people").await,
        "3",
        "nothing half-loaded"
    );
    // ... an element that is not the array's type too ...
    dynamo.put(
        "people",
        &[json!({"id": {"N": "4"}, "tags": {"L": [{"S": "a"}, {"N": "5"}]}})],
    );
    let message = expect_err(&client, "RUN ETL JOB people", "2200G").await;
    assert!(
        message.contains(r#"field "tags[1]" holds the int64 value 5"#),
        "{message}"
    );
    // ... and `on_type_mismatch 'null'` loads it as NULL.
    client
        .batch_execute("ALTER CONNECTION dyn SET (on_type_mismatch 'null')")
        .await
        .unwrap();
    assert_eq!(run(&client, "people").await, "4");
    assert_eq!(
        rows(&client, "SELECT tags IS NULL FROM warehouse.people WHERE id = 4").await,
        [[Some("t".to_owned())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_json_values_load_as_records() {
    let redis = RedisServer::with_user();
    redis.run(&[
        &["SET", "cfg:app", r#"{"theme":"dark","limits":[1,2]}"#],
        &["SET", "cfg:web", r#"{"theme":"light","limits":[]}"#],
    ]);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION cache TYPE redis OPTIONS (host '127.0.0.1', port {}, user '{REDIS_USER}', \
             password '{REDIS_PASSWORD}', tables 'config=cfg:*');
             CREATE ETL JOB config FROM cache.db0.config INTO warehouse.config SNAPSHOT \
             COLUMNS (value RECORD(theme STRING, limits REPEATED INT64))",
            redis.port
        ))
        .await
        .unwrap();
    assert_eq!(run(&client, "config").await, "2");
    let got = rows(
        &client,
        "SELECT _key, value['theme'], array_length(value['limits']), value['limits'][2] FROM warehouse.config \
         ORDER BY _key",
    )
    .await;
    assert_eq!(
        got,
        [
            ["cfg:app", "dark", "2", "2"].map(|s| Some(s.to_owned())).to_vec(),
            vec![Some("cfg:web".into()), Some("light".into()), Some("0".into()), None],
        ]
    );
    // A RECORD type on a column that is not JSON is refused before saving.
    let refused = expect_err(
        &client,
        "CREATE ETL JOB keys FROM cache.db0.config INTO warehouse.keys SNAPSHOT COLUMNS (_key RECORD(a STRING))",
        "22023",
    )
    .await;
    assert!(
        refused.contains("RECORD and REPEATED types are for the JSON columns"),
        "{refused}"
    );
    let bad = expect_err(
        &client,
        "CREATE ETL JOB keys FROM cache.db0.config INTO warehouse.keys SNAPSHOT COLUMNS (value RECORD(a DATE))",
        "22023",
    )
    .await;
    assert!(bad.contains("DATE cannot be inside RECORD or REPEATED"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_json_column_cannot_be_a_record() {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", "CREATE TABLE public.docs (id int PRIMARY KEY, doc jsonb)");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    let refused = expect_err(
        &client,
        "CREATE ETL JOB docs FROM shop.public.docs INTO warehouse.docs SNAPSHOT COLUMNS (doc RECORD(a STRING))",
        "22023",
    )
    .await;
    assert!(
        refused.contains("connection \"shop\" cannot load nested types"),
        "{refused}"
    );
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_nested_values_load_into_bigquery_as_record_and_repeated_fields() {
    let dynamo = Dynamo::start();
    people(&dynamo);
    let fake = FakeBigQuery::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = fake.write_key_file(keys.path());
    let gcs = fake.gcs_url();
    let sluice = Sluice::start_with(
        &[],
        &[
            ("SLUICE_BIGQUERY_ENDPOINT", fake.url.as_str()),
            ("SLUICE_GCS_ENDPOINT", gcs.as_str()),
        ],
    );
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION dyn TYPE dynamodb OPTIONS ({});
             CREATE CONNECTION wh TYPE bigquery OPTIONS (project 'test-project', dataset 'raw_data', location 'EU',
                 credentials_file '{}', connect_timeout 2);
             CREATE ETL JOB people FROM dyn.dynamodb.people INTO wh.people SNAPSHOT {COLUMNS}",
            dynamo.options(),
            key_file.display()
        ))
        .await
        .unwrap();
    assert_eq!(run(&client, "people").await, "3");
    let resource = fake
        .table("raw_data", "people")
        .expect("the table was created")
        .resource;
    let fields = resource
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .unwrap()
        .clone();
    let field = |name: &str| fields.iter().find(|f| f["name"] == name).cloned().unwrap();
    let address = field("address");
    assert_eq!(
        (address["type"].as_str(), address["mode"].as_str()),
        (Some("RECORD"), Some("NULLABLE"))
    );
    let children: Vec<_> = address["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(children, ["street STRING", "zip INTEGER", "geo RECORD"]);
    let tags = field("tags");
    assert_eq!(
        (tags["type"].as_str(), tags["mode"].as_str()),
        (Some("STRING"), Some("REPEATED"))
    );
    let visits = field("visits");
    assert_eq!(
        (visits["type"].as_str(), visits["mode"].as_str()),
        (Some("RECORD"), Some("REPEATED"))
    );
    let rows = table_rows(&fake, "people");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows[0].starts_with("1|{street: Main 1, zip: 1234, geo: {lat: 52.5}}|NULL|[a, b]|"),
        "{rows:?}"
    );
}

/// The same nested columns from each store, as warehouse rows.
async fn nested_rows(client: &Client, table: &str) -> Vec<Vec<Option<String>>> {
    rows(
        client,
        &format!(
            "SELECT address['street'], address['zip'], cardinality(tags), tags[1], visits[1]['at'] \
             FROM warehouse.{table} ORDER BY address['street'] NULLS LAST"
        ),
    )
    .await
}

fn expected_rows() -> Vec<Vec<Option<String>>> {
    let row = |cells: [&str; 5]| cells.map(|c| (c != "NULL").then(|| c.to_owned())).to_vec();
    vec![
        row(["Main 1", "1234", "2", "a", "10"]),
        row(["Side 2", "NULL", "0", "NULL", "NULL"]),
        row(["NULL", "NULL", "NULL", "NULL", "NULL"]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firestore_maps_and_arrays_load_as_records() {
    let Some(firestore) = FirestoreEmulator::start() else {
        return;
    };
    firestore.put(
        "people/p1",
        json!({
            "address": {"mapValue": {"fields": {"street": {"stringValue": "Main 1"}, "zip": {"integerValue": "1234"}}}},
            "tags": {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}},
            "visits": {"arrayValue": {"values": [{"mapValue": {"fields": {"at": {"integerValue": "10"}}}}]}},
        }),
    );
    firestore.put(
        "people/p2",
        json!({"address": {"mapValue": {"fields": {"street": {"stringValue": "Side 2"}}}}, "tags": {"arrayValue": {}}}),
    );
    firestore.put("people/p3", json!({"name": {"stringValue": "no nesting"}}));
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION fs TYPE firestore OPTIONS (project '{PROJECT}', emulator_host '{}');
             CREATE ETL JOB people FROM fs.firestore.people INTO warehouse.people SNAPSHOT {COLUMNS}",
            firestore.host()
        ))
        .await
        .unwrap();
    assert_eq!(run(&client, "people").await, "3");
    assert_eq!(nested_rows(&client, "people").await, expected_rows());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_subdocuments_and_arrays_load_as_records() {
    use mongodb::bson::doc;
    let fake = MongoFake::start();
    fake.insert(
        "shop",
        "people",
        vec![
            doc! {"_id": 1, "address": {"street": "Main 1", "zip": 1234i64}, "tags": ["a", "b"], "visits": [{"at": 10i64}]},
            doc! {"_id": 2, "address": {"street": "Side 2"}, "tags": []},
            doc! {"_id": 3, "name": "no nesting"},
        ],
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION docs TYPE mongodb OPTIONS (uri '{}');
             CREATE ETL JOB people FROM docs.shop.people INTO warehouse.people SNAPSHOT {COLUMNS}",
            fake.uri()
        ))
        .await
        .unwrap();
    assert_eq!(run(&client, "people").await, "3");
    assert_eq!(nested_rows(&client, "people").await, expected_rows());
}
