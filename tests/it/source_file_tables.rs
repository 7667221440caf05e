//! The connection option `tables`: glob patterns mapped to table names,
//! seen by SHOW TABLES, DESCRIBE, queries and jobs through a real client.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common;

use common::*;

fn write(dir: &Path, name: &str, data: &[u8]) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_patterns_name_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "exports/orders/2026-01.csv.gz", &gzip(b"id,total\n1,10\n2,20\n"));
    write(d, "exports/orders/2026-02.csv", b"id,total\n3,30\n");
    write(d, "exports/orders/old/2025-12.csv", b"id,total\n0,0\n");
    write(d, "exports/orders/notes.txt", b"not data");
    write(d, "events/day=1/a.json", b"{\"id\": 1}\n");
    write(d, "events/day=2/hour=3/b.json", b"{\"id\": 2}\n{\"id\": 3}\n");
    write(d, "loose.csv", b"id\n9\n");
    let sluice = Sluice::start();
    let client = sluice.client().await;

    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION bad TYPE local OPTIONS (path '{}', tables 'orders')",
            d.display()
        ),
        "22023",
    )
    .await;
    assert!(message.contains("\"orders\" is not name=pattern"), "{message}");
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION bad TYPE local OPTIONS (path '{}', tables 'orders=exports/[.csv')",
            d.display()
        ),
        "22023",
    )
    .await;
    assert!(message.contains("table \"orders\""), "{message}");

    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE local OPTIONS (path '{}', \
             tables 'orders=exports/orders/*.csv*, events=events/**/*.json, missing=nowhere/*.csv')",
            d.display()
        ))
        .await
        .unwrap();
    let tables = rows(&client, "SHOW TABLES FROM lake.files").await;
    let names: Vec<_> = tables.iter().map(|t| t[1].clone().unwrap()).collect();
    assert_eq!(names, ["events", "orders"], "the mapped tables that have files, only");
    let described = rows(&client, "DESCRIBE lake.files.orders").await;
    let columns: Vec<_> = described.iter().map(|c| c[0].clone().unwrap()).collect();
    assert_eq!(columns, ["id", "total"]);
    assert_eq!(
        one(&client, "SELECT sum(total) FROM lake.files.orders").await,
        "60",
        "the files * matches in the folder, compressed or not; not those below it"
    );
    assert_eq!(
        one(&client, "SELECT count(*) FROM lake.files.events").await,
        "3",
        "** spans folders"
    );
    expect_err(&client, "DESCRIBE lake.files.loose", "42704").await;

    client
        .batch_execute(
            "CREATE ETL JOB orders FROM lake.files.orders INTO warehouse.orders SNAPSHOT; \
             CREATE ETL JOB events FROM lake.files.events INTO warehouse.events SNAPSHOT;",
        )
        .await
        .unwrap();
    for (job, loaded) in [("orders", "3"), ("events", "3")] {
        let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
        assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
        assert_eq!(summary[0][2].as_deref(), Some(loaded), "{job}");
    }
    assert_eq!(one(&client, "SELECT sum(id) FROM warehouse.orders").await, "6");
}
