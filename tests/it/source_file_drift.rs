//! Schema drift across the files of one table: a column that newer files
//! add is added to the destination as NULLABLE; a column whose type differs
//! between files fails the run before data moves, naming the file and the
//! column.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::parquet::arrow::ArrowWriter;

use crate::common;

use common::*;

/// Writes `events/<name>` as Parquet with `columns`, modified `hours` after
/// 2026-01-01.
fn write_parquet(dir: &Path, name: &str, columns: Vec<(&str, ArrayRef)>, hours: u64) {
    let path = dir.join("events").join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = ArrowWriter::try_new(fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + hours * 3600);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
}

fn ids(values: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(values.to_vec()))
}

fn texts(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_columns_are_added_and_type_conflicts_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_parquet(
        d,
        "a.parquet",
        vec![("id", ids(&[1, 2])), ("kind", texts(&["x", "y"]))],
        0,
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION drops TYPE local OPTIONS (path '{}', file_columns 'true'); \
             CREATE ETL JOB events FROM drops.files.events INTO warehouse.events INCREMENTAL BY _modified_at ALL;",
            d.display()
        ))
        .await
        .unwrap();
    let summary = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");

    // A newer file with one more column: the column is added, NULL for older rows.
    write_parquet(
        d,
        "b.parquet",
        vec![("id", ids(&[3])), ("kind", texts(&["z"])), ("extra", ids(&[30]))],
        1,
    );
    let summary = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(summary[0][2].as_deref(), Some("1"));
    let loaded = rows(&client, "SELECT id, extra FROM warehouse.events ORDER BY id").await;
    assert_eq!(
        loaded,
        [[Some("1"), None], [Some("2"), None], [Some("3"), Some("30")]]
            .map(|r| r.map(|v| v.map(str::to_owned)).to_vec())
    );
    let change = rows(
        &client,
        "SELECT column_name, change FROM sluice.schema_changes WHERE job = 'events'",
    )
    .await;
    assert_eq!(change.len(), 1, "one change recorded: {change:?}");
    assert_eq!(change[0][0].as_deref(), Some("extra"));

    // A file whose "id" is text: the run fails before data moves, naming it.
    write_parquet(
        d,
        "c.parquet",
        vec![("id", texts(&["four"])), ("kind", texts(&["w"]))],
        2,
    );
    let message = expect_err(&client, "RUN ETL JOB events", "42804").await;
    assert!(
        message.contains("column \"id\" is Int64 in /") && message.contains("/events/c.parquet"),
        "{message}"
    );
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.events").await, "3");
}
