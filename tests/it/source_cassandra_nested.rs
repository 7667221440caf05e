//! Cassandra's structured columns (user-defined types, nested ones
//! included, `list`, `set`, `map` and `tuple`) loaded as RECORD and
//! REPEATED warehouse columns through a job's `COLUMNS`, from the CQL
//! double's protocol encoding through the real `scylla` driver; values
//! that do not fit follow `on_type_mismatch`.

use tokio_postgres::Client;

use crate::common::cql_fake::{CqlFake, Val};
use crate::common::{Sluice, expect_err, one, rows};

const COLUMNS: &str = "COLUMNS (address RECORD(street STRING, zip INT64, geo RECORD(lat FLOAT64)), \
                       tags REPEATED STRING, labels REPEATED STRING, \
                       visits REPEATED RECORD(at INT64, pages REPEATED STRING), \
                       sizes RECORD(height INT64, width INT64), point REPEATED INT64)";

fn t(text: &str) -> Val {
    Val::Text(text.to_owned())
}

fn visit(at: i64, pages: &[&str]) -> Val {
    Val::List(vec![Val::Int(at), Val::List(pages.iter().map(|p| t(p)).collect())])
}

/// `shop.people`: person 1 has every structure filled, 2 empty or null
/// ones, 3 a user-defined value with null fields.
fn seed(fake: &CqlFake) {
    fake.create_type("shop", "geo", &[("lat", "double")]);
    fake.create_type(
        "shop",
        "address",
        &[("street", "text"), ("zip", "int"), ("geo", "frozen<geo>")],
    );
    fake.create_type("shop", "visit", &[("at", "bigint"), ("pages", "set<text>")]);
    fake.create_table(
        "shop",
        "people",
        &[
            ("id", "partition_key", "int"),
            ("address", "regular", "frozen<address>"),
            ("tags", "regular", "list<text>"),
            ("labels", "regular", "set<text>"),
            ("visits", "regular", "list<frozen<visit>>"),
            ("sizes", "regular", "map<text, int>"),
            ("point", "regular", "tuple<int, int>"),
        ],
    );
    fake.insert(
        "shop",
        "people",
        vec![
            vec![
                Val::Int(1),
                Val::List(vec![t("Main 1"), Val::Int(1234), Val::List(vec![Val::Float(52.5)])]),
                Val::List(vec![t("a"), t("b")]),
                Val::List(vec![t("new"), t("vip")]),
                Val::List(vec![visit(10, &["/", "/x"]), visit(11, &[])]),
                Val::Map(vec![(t("height"), Val::Int(180)), (t("width"), Val::Int(40))]),
                Val::List(vec![Val::Int(3), Val::Int(-4)]),
            ],
            vec![
                Val::Int(2),
                Val::Null,
                Val::List(vec![]),
                Val::Null,
                Val::Null,
                Val::Map(vec![(t("height"), Val::Int(170))]),
                Val::Null,
            ],
            vec![
                Val::Int(3),
                Val::List(vec![t("Side 3"), Val::Null, Val::Null]),
                Val::Null,
                Val::Null,
                Val::List(vec![visit(12, &["/y"])]),
                Val::Null,
                Val::Null,
            ],
        ],
    );
}

async fn run(client: &Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udts_and_collections_load_as_records_and_repeated_columns() {
    let fake = CqlFake::start(None);
    seed(&fake);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION cass TYPE cassandra OPTIONS (hosts '127.0.0.1', port {});
             CREATE ETL JOB people FROM cass.shop.people INTO warehouse.people SNAPSHOT {COLUMNS}",
            fake.port
        ))
        .await
        .unwrap();
    assert_eq!(run(&client, "people").await, "3");
    assert!(
        one(&client, "SELECT arrow_typeof(address) FROM warehouse.people LIMIT 1")
            .await
            .starts_with("Struct("),
    );
    assert!(
        one(&client, "SELECT arrow_typeof(point) FROM warehouse.people LIMIT 1")
            .await
            .starts_with("List("),
    );
    let got = rows(
        &client,
        "SELECT id, address['street'], address['zip'], address['geo']['lat'], array_length(tags), tags[2], \
         array_to_string(labels, ','), array_length(visits), visits[1]['at'], array_to_string(visits[1]['pages'], ','), \
         array_length(visits[2]['pages']), sizes['height'], sizes['width'], point[1], point[2] \
         FROM warehouse.people ORDER BY id",
    )
    .await;
    let got: Vec<String> = got
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| c.as_deref().unwrap_or("NULL"))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    assert_eq!(
        got,
        [
            "1|Main 1|1234|52.5|2|b|new,vip|2|10|/,/x|0|180|40|3|-4",
            "2|NULL|NULL|NULL|0|NULL|NULL|NULL|NULL|NULL|NULL|170|NULL|NULL|NULL",
            "3|Side 3|NULL|NULL|NULL|NULL|NULL|1|12|/y|NULL|NULL|NULL|NULL|NULL",
        ]
    );

    // A value that does not fit fails the run, naming the row and where,
    // and loads nothing: a tuple's null element in a REPEATED column.
    fake.insert(
        "shop",
        "people",
        vec![vec![
            Val::Int(4),
            Val::Null,
            Val::Null,
            Val::Null,
            Val::Null,
            Val::Null,
            Val::List(vec![Val::Int(1), Val::Null]),
        ]],
    );
    let message = expect_err(&client, "RUN ETL JOB people", "2200G").await;
    assert!(
        message.contains(r#"row (id=4) of shop.people: field "point[1]" holds NULL"#),
        "{message}"
    );
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.people").await, "3");
}
