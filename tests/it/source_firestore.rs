//! Firestore as a source, against the Firestore emulator: the test before
//! save, exploration of root collections and collection groups, every
//! Firestore type, snapshot and incremental jobs (paged with equal
//! timestamps across page boundaries), the window pushed into the query,
//! and a kill -9 between two pages. Each test skips, saying so, only when
//! the emulator's jar is absent.

use serde_json::{Value as Json, json};
use tokio_postgres::Client;

use crate::common::firestore::{FirestoreEmulator, PROJECT};
use crate::common::{Sluice, expect_err, free_port, one, rows};

fn options(firestore: &FirestoreEmulator, extra: &str) -> String {
    format!("project '{PROJECT}', emulator_host '{}'{extra}", firestore.host())
}

/// A user document updated at `2024-01-0{day}T10:00:00Z`.
fn user(name: &str, age: i64, day: u32) -> Json {
    json!({
        "name": {"stringValue": name},
        "age": {"integerValue": age.to_string()},
        "updated_at": {"timestampValue": format!("2024-01-0{day}T10:00:00Z")},
    })
}

async fn setup(extra: &str) -> Option<(FirestoreEmulator, Sluice, Client)> {
    let firestore = FirestoreEmulator::start()?;
    for (i, name) in ["ada", "bob", "cy", "dee", "eve"].iter().enumerate() {
        firestore.put(&format!("users/{name}"), user(name, 20 + i as i64, 1 + i as u32));
    }
    firestore.put("users/ada/orders/o1", json!({"total": {"doubleValue": 9.5}}));
    firestore.put("users/bob/orders/o1", json!({"total": {"doubleValue": 3.25}}));
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION fs TYPE firestore OPTIONS ({})",
            options(&firestore, extra)
        ))
        .await
        .unwrap();
    Some((firestore, sluice, client))
}

async fn run(client: &Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

fn strings(rows: Vec<Vec<Option<String>>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|r| r.into_iter().map(|v| v.unwrap_or_else(|| "NULL".into())).collect())
        .collect()
}

#[tokio::test]
async fn the_test_before_save_names_unreachable_emulators_and_bad_options() {
    let Some(firestore) = FirestoreEmulator::start() else {
        return;
    };
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let closed = free_port();
    let refused = expect_err(
        &client,
        &format!("CREATE CONNECTION c TYPE firestore OPTIONS (project 'p', emulator_host '127.0.0.1:{closed}')"),
        "08001",
    )
    .await;
    assert!(refused.contains("Firestore"), "{refused}");
    let bad_key = expect_err(
        &client,
        "CREATE CONNECTION c TYPE firestore OPTIONS (project 'p', credentials 'not json at all')",
        "28P01",
    )
    .await;
    assert!(bad_key.contains("not JSON"), "{bad_key}");
    assert!(
        !bad_key.contains("not json at all"),
        "the secret is never shown: {bad_key}"
    );
    firestore.put("group_orders/x", json!({}));
    let clash = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION c TYPE firestore OPTIONS ({})",
            options(&firestore, ", collection_groups 'orders'")
        ),
        "22023",
    )
    .await;
    assert!(clash.contains("group_orders"), "{clash}");
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.connections").await,
        "0",
        "nothing half-saved"
    );
    client
        .batch_execute(&format!(
            "CREATE CONNECTION c TYPE firestore OPTIONS ({})",
            options(&firestore, "")
        ))
        .await
        .unwrap();
    let status = rows(&client, "SHOW CONNECTION TYPES").await;
    let firestore_type = status.iter().find(|t| t[0].as_deref() == Some("firestore")).unwrap();
    assert_eq!(firestore_type[3].as_deref(), Some("available"), "{firestore_type:?}");
}

#[tokio::test]
async fn collections_and_collection_groups_are_tables_described_from_a_sample() {
    let Some((_firestore, _sluice, client)) = setup(", collection_groups 'orders'").await else {
        return;
    };
    assert_eq!(
        rows(&client, "SHOW SCHEMAS FROM fs").await,
        [[Some("firestore".to_owned())]]
    );
    let tables: Vec<_> = rows(&client, "SHOW TABLES FROM fs.firestore")
        .await
        .into_iter()
        .map(|r| r[1].clone().unwrap())
        .collect();
    assert_eq!(tables, ["users", "group_orders"]);
    let describe: Vec<String> = rows(&client, "DESCRIBE fs.firestore.users")
        .await
        .iter()
        .map(|r| {
            format!(
                "{} | {} | {} | {}",
                r[0].as_deref().unwrap(),
                r[2].as_deref().unwrap(),
                r[7].as_deref().unwrap(),
                r[9].as_deref().unwrap()
            )
        })
        .collect();
    assert_eq!(
        describe,
        [
            "_id | string (document id) | STRING | high",
            "age | int64 | INT64 | high",
            "name | string | STRING | high",
            "updated_at | timestamp | TIMESTAMP | high",
        ]
    );
    let orders = strings(
        rows(
            &client,
            "SELECT _path, total FROM fs.firestore.group_orders ORDER BY _path",
        )
        .await,
    );
    assert_eq!(
        orders,
        [["users/ada/orders/o1", "9.5"], ["users/bob/orders/o1", "3.25"]]
    );
    let filtered = strings(
        rows(
            &client,
            "SELECT name FROM fs.firestore.users WHERE age > 22 ORDER BY age",
        )
        .await,
    );
    assert_eq!(filtered, [["dee"], ["eve"]]);
    let plan: String = rows(
        &client,
        "EXPLAIN SELECT name FROM fs.firestore.users WHERE updated_at > TIMESTAMPTZ '2024-01-03 00:00:00+00'",
    )
    .await
    .into_iter()
    .flatten()
    .flatten()
    .collect::<Vec<_>>()
    .join("\n");
    assert!(
        plan.contains("GREATER_THAN") && plan.contains("updated_at") && plan.contains("\"select\""),
        "the window and the projection go to Firestore: {plan}"
    );
    let missing = expect_err(&client, "DESCRIBE fs.firestore.user", "42704").await;
    assert!(missing.contains("users"), "{missing}");
}

#[tokio::test]
async fn every_firestore_type_loads_predictably() {
    let Some((firestore, _sluice, client)) = setup("").await else {
        return;
    };
    firestore.put(
        "kinds/k1",
        json!({
            "ts": {"timestampValue": "2024-05-06T07:08:09.123456Z"},
            "geo": {"geoPointValue": {"latitude": 52.5, "longitude": 13.25}},
            "ref": {"referenceValue": format!("projects/{PROJECT}/databases/(default)/documents/users/ada")},
            "raw": {"bytesValue": "AP8="},
            "map": {"mapValue": {"fields": {"a": {"integerValue": "1"}, "b": {"arrayValue": {}}}}},
            "list": {"arrayValue": {"values": [{"stringValue": "x"}, {"nullValue": null}]}},
            "nothing": {"nullValue": null},
            "flag": {"booleanValue": true},
            "big": {"integerValue": "9223372036854775807"},
            "ratio": {"doubleValue": 0.1},
        }),
    );
    client
        .batch_execute("CREATE ETL JOB kinds FROM fs.firestore.kinds INTO warehouse.kinds SNAPSHOT")
        .await
        .unwrap();
    assert_eq!(run(&client, "kinds").await, "1");
    let loaded = strings(
        rows(
            &client,
            "SELECT CAST(ts AS TEXT), geo, ref, encode(raw, 'hex'), map, list, CAST(flag AS TEXT), CAST(big AS TEXT), \
             CAST(ratio AS TEXT) FROM warehouse.kinds",
        )
        .await,
    );
    assert_eq!(
        loaded,
        [[
            "2024-05-06T07:08:09.123456Z",
            r#"{"latitude":52.5,"longitude":13.25}"#,
            "users/ada",
            "00ff",
            r#"{"a":1,"b":[]}"#,
            r#"["x",null]"#,
            "true",
            "9223372036854775807",
            "0.1",
        ]]
    );
    let types: Vec<String> = rows(&client, "DESCRIBE fs.firestore.kinds")
        .await
        .iter()
        .map(|r| format!("{}={}", r[0].as_deref().unwrap(), r[7].as_deref().unwrap()))
        .collect();
    assert!(types.contains(&"nothing=JSON".to_owned()), "{types:?}");
    assert!(types.contains(&"raw=BYTES".to_owned()), "{types:?}");
}

#[tokio::test]
async fn a_snapshot_job_replaces_the_table_with_every_document() {
    let Some((firestore, _sluice, client)) = setup(", keep_document true").await else {
        return;
    };
    client
        .batch_execute("CREATE ETL JOB users_snap FROM fs.firestore.users INTO warehouse.users SNAPSHOT")
        .await
        .unwrap();
    assert_eq!(run(&client, "users_snap").await, "5");
    firestore.delete("users/ada");
    firestore.put("users/zed", user("zed", 99, 9));
    assert_eq!(run(&client, "users_snap").await, "5");
    let ids: Vec<_> = strings(rows(&client, "SELECT _id FROM warehouse.users ORDER BY _id").await)
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(ids, ["bob", "cy", "dee", "eve", "zed"]);
    assert_eq!(
        one(&client, "SELECT _document FROM warehouse.users WHERE _id = 'zed'").await,
        r#"{"_id":"zed","age":99,"name":"zed","updated_at":"2024-01-09T10:00:00.000000Z"}"#
    );
}

/// Pages of two documents, with three documents sharing one timestamp
/// across a page boundary and more arriving between runs (some with the
/// same timestamp as the last run's newest): every document once.
#[tokio::test]
async fn an_incremental_job_pages_exactly_through_equal_timestamps() {
    let Some((firestore, _sluice, client)) = setup(", page_size 2").await else {
        return;
    };
    for name in ["fay", "gus", "hal"] {
        firestore.put(&format!("users/{name}"), user(name, 40, 6));
    }
    client
        .batch_execute(
            "CREATE ETL JOB users_inc FROM fs.firestore.users INTO warehouse.users INCREMENTAL BY updated_at ALL",
        )
        .await
        .unwrap();
    assert_eq!(run(&client, "users_inc").await, "8");
    assert_eq!(run(&client, "users_inc").await, "0");
    firestore.put("users/ivy", user("ivy", 50, 7));
    firestore.put("users/jon", user("jon", 51, 7));
    firestore.put("users/bob", user("bob", 31, 8));
    assert_eq!(run(&client, "users_inc").await, "3");
    let loaded = strings(
        rows(
            &client,
            "SELECT _id, count(*) FROM warehouse.users GROUP BY _id HAVING count(*) > 1 ORDER BY _id",
        )
        .await,
    );
    assert_eq!(loaded, [["bob", "2"]], "only bob changed, loaded twice (append)");
    assert_eq!(
        one(&client, "SELECT count(DISTINCT _id) FROM warehouse.users").await,
        "10"
    );
}

/// The server is killed between two pages of a scan: nothing of the run is
/// committed, and the re-run after the restart loads every document once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_pages_then_a_rerun_loads_each_document_once() {
    let Some(firestore) = FirestoreEmulator::start() else {
        return;
    };
    for i in 1..=12 {
        firestore.put(
            &format!("items/i{i:02}"),
            json!({"n": {"integerValue": i.to_string()}, "at": {"timestampValue": "2024-02-01T00:00:00Z"}}),
        );
    }
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "between_pages")]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION fs TYPE firestore OPTIONS ({}); \
             CREATE ETL JOB items FROM fs.firestore.items INTO warehouse.items INCREMENTAL BY at ALL",
            options(&firestore, ", page_size 5")
        ))
        .await
        .unwrap();
    sluice.run_into_failpoint(&client, "RUN ETL JOB items").await;
    assert!(
        sluice.log_contents().contains("failpoint hit"),
        "killed at the failpoint"
    );
    let client = sluice.restart_without_failpoints().await;
    let interrupted = rows(&client, "SELECT status FROM sluice.runs WHERE job = 'items'").await;
    assert_eq!(
        interrupted,
        [[Some("failed".to_owned())]],
        "the killed run is settled as failed"
    );
    assert_eq!(run(&client, "items").await, "12");
    assert_eq!(run(&client, "items").await, "0");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT _id), sum(n) FROM warehouse.items"
        )
        .await[0],
        ["12", "12", "78"].map(|v| Some(v.to_owned()))
    );
}
