//! What exploring a file connection tells about its files: `SHOW TABLES`
//! counts each table's files, and `DESCRIBE` warns when the CSV files of a
//! table type a column differently (read with a type that fits them all).

use std::fs;
use std::path::Path;

use crate::common;

use common::*;

fn write(dir: &Path, name: &str, data: &str) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_tables_counts_each_tables_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "events/a.csv", "id\n1\n");
    write(d, "events/b.csv", "id\n2\n3\n");
    write(d, "events/c.csv", "id\n4\n");
    write(d, "orders.csv", "id\n1\n");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE local OPTIONS (path '{}')",
            d.display()
        ))
        .await
        .unwrap();
    let tables = rows(&client, "SHOW TABLES FROM lake.files").await;
    let counts: Vec<(String, String, String)> = tables
        .iter()
        .map(|t| (t[1].clone().unwrap(), t[4].clone().unwrap(), t[6].clone().unwrap()))
        .collect();
    assert_eq!(
        counts,
        [
            ("events".to_owned(), "17".to_owned(), "3".to_owned()),
            ("orders".into(), "5".into(), "1".into())
        ],
        "(table, size_bytes, files): {tables:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_that_disagree_on_a_type_are_widened_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "mixed/a.csv", "id,amount,note\n1,10,x\n2,20,y\n");
    write(d, "mixed/b.csv", "id,amount,note\nx7,2.5,z\n");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE local OPTIONS (path '{}')",
            d.display()
        ))
        .await
        .unwrap();
    let described = rows(&client, "DESCRIBE lake.files.mixed").await;
    let column = |name: &str| {
        described
            .iter()
            .find(|c| c[0].as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} in {described:?}"))
            .clone()
    };
    let (id, amount, note) = (column("id"), column("amount"), column("note"));
    assert_eq!(
        (id[7].as_deref(), id[9].as_deref()),
        (Some("STRING"), Some("low")),
        "{id:?}"
    );
    let warnings = id[10].clone().unwrap();
    assert!(
        warnings.contains("Int64 in ") && warnings.contains("mixed/a.csv") && warnings.contains("Utf8 in "),
        "{warnings}"
    );
    assert!(warnings.contains("mixed/b.csv"), "{warnings}");
    assert_eq!(
        (amount[7].as_deref(), amount[9].as_deref()),
        (Some("FLOAT64"), Some("low")),
        "{amount:?}"
    );
    assert_eq!(
        note[9].as_deref(),
        Some("medium"),
        "a column the files agree on: {note:?}"
    );
    assert_eq!(note[10].as_deref(), Some("{}"), "{note:?}");

    assert_eq!(
        one(&client, "SELECT string_agg(id, ',' ORDER BY id) FROM lake.files.mixed").await,
        "1,2,x7"
    );
    client
        .batch_execute("CREATE ETL JOB mixed FROM lake.files.mixed INTO warehouse.mixed SNAPSHOT")
        .await
        .unwrap();
    let summary = rows(&client, "RUN ETL JOB mixed").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(one(&client, "SELECT sum(amount) FROM warehouse.mixed").await, "32.5");
}
