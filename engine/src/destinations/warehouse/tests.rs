use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, Date32Array, Decimal128Array, Decimal256Array, Int64Array, ListArray, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, i256};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::SchemaProvider;
use datafusion::object_store::ObjectStoreExt;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

use super::*;
use crate::contract::{CommitReport, WholeFile};

/// A table spec with nothing but a name and a schema.
fn spec(name: &str, schema: SchemaRef) -> TableSpec {
    TableSpec {
        name: name.into(),
        schema,
        job: "test".into(),
        cursor: None,
        primary_key: Vec::new(),
        layout: Default::default(),
    }
}

fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn orders(ids: &[i64]) -> RecordBatch {
    let names: Vec<String> = ids.iter().map(|id| format!("order {id}")).collect();
    RecordBatch::try_new(
        orders_schema(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}

async fn open(dir: &tempfile::TempDir) -> LocalWarehouse {
    let warehouse = LocalWarehouse::open_dir(dir.path()).unwrap();
    warehouse.ensure_table(&spec("orders", orders_schema())).await.unwrap();
    warehouse
}

async fn load(warehouse: &LocalWarehouse, run_id: u64, mode: WriteMode, batches: &[RecordBatch]) -> CommitReport {
    let mut load = warehouse.begin("orders", run_id, mode).await.unwrap();
    for batch in batches {
        load.write(batch.clone()).await.unwrap();
    }
    load.commit(Some(format!("mark {run_id}"))).await.unwrap()
}

/// A session with the warehouse registered as schema `warehouse`.
async fn session(warehouse: &LocalWarehouse) -> SessionContext {
    let ctx = SessionContext::new();
    let schema = WarehouseSchema::new(warehouse.clone()).await.unwrap();
    ctx.catalog("datafusion")
        .unwrap()
        .register_schema("warehouse", Arc::new(schema))
        .unwrap();
    ctx
}

async fn query(warehouse: &LocalWarehouse, sql: &str) -> Vec<RecordBatch> {
    session(warehouse)
        .await
        .sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
}

async fn query_text(warehouse: &LocalWarehouse, sql: &str) -> String {
    pretty_format_batches(&query(warehouse, sql).await).unwrap().to_string()
}

/// Waits until the table's data directory holds `n` files (writes are
/// encoded in a background task).
async fn wait_for_data_files(warehouse: &LocalWarehouse, n: usize) {
    for _ in 0..500 {
        if data_files(warehouse, "orders").await.len() == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{:?} instead of {n} data files", data_files(warehouse, "orders").await);
}

async fn count(warehouse: &LocalWarehouse, table: &str) -> String {
    query_text(warehouse, &format!("SELECT count(*) AS n FROM warehouse.\"{table}\"")).await
}

fn count_is(n: u64) -> String {
    let n = n.to_string();
    let width = n.len().max(1);
    format!(
        "+{0}+\n| {1:<width$} |\n+{0}+\n| {n:<width$} |\n+{0}+",
        "-".repeat(width + 2),
        "n"
    )
}

/// Names of the objects under `table`'s data folder.
async fn data_files(warehouse: &LocalWarehouse, table: &str) -> Vec<String> {
    let mut names: Vec<String> = warehouse
        .store
        .list(Some(&warehouse.data_dir(table)))
        .map_ok(|meta| meta.location.filename().unwrap().to_owned())
        .try_collect()
        .await
        .unwrap();
    names.sort();
    names
}

#[tokio::test]
async fn append_twice_then_replace_reads_back_exact_rows() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await;

    let report = load(&warehouse, 1, WriteMode::Append, &[orders(&[1, 2])]).await;
    assert_eq!((report.rows, report.files), (2, 1));
    assert!(report.bytes > 0);
    load(&warehouse, 2, WriteMode::Append, &[orders(&[3]), orders(&[4])]).await;
    assert_eq!(
        query_text(&warehouse, "SELECT id, name FROM warehouse.orders ORDER BY id").await,
        "+----+---------+\n\
         | id | name    |\n\
         +----+---------+\n\
         | 1  | order 1 |\n\
         | 2  | order 2 |\n\
         | 3  | order 3 |\n\
         | 4  | order 4 |\n\
         +----+---------+"
    );

    load(&warehouse, 3, WriteMode::Replace, &[orders(&[10])]).await;
    assert_eq!(
        query_text(&warehouse, "SELECT id, name FROM warehouse.orders").await,
        "+----+----------+\n\
         | id | name     |\n\
         +----+----------+\n\
         | 10 | order 10 |\n\
         +----+----------+"
    );
    assert_eq!(count(&warehouse, "orders").await, count_is(1));
}

#[tokio::test]
async fn commits_delete_files_of_versions_no_longer_retained() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await;
    load(&warehouse, 1, WriteMode::Append, &[orders(&[1])]).await;
    load(&warehouse, 2, WriteMode::Replace, &[orders(&[2])]).await;
    // The previous version stays readable for queries planned before the swap.
    assert_eq!(data_files(&warehouse, "orders").await.len(), 2);
    load(&warehouse, 3, WriteMode::Replace, &[orders(&[3])]).await;
    let files = data_files(&warehouse, "orders").await;
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| !f.starts_with("run-1-")), "{files:?}");
    assert_eq!(warehouse.versions("orders").await.unwrap(), vec![2, 3]);
}

#[tokio::test]
async fn a_reading_session_forgets_the_footers_of_deleted_files() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await;
    let ctx = session(&warehouse).await;
    let cache = ctx.runtime_env().cache_manager.get_file_metadata_cache();
    let read = async || {
        let sql = "SELECT count(*) FROM warehouse.orders";
        ctx.sql(sql).await.unwrap().collect().await.unwrap();
    };
    let cached = |names: &[String]| -> Vec<bool> {
        (names.iter())
            .map(|name| cache.contains_key(&warehouse.data_path("orders", name)))
            .collect()
    };
    load(&warehouse, 1, WriteMode::Replace, &[orders(&[1])]).await;
    read().await;
    let first = data_files(&warehouse, "orders").await;
    assert_eq!(cached(&first), [true], "the session caches the footer it read");
    load(&warehouse, 2, WriteMode::Replace, &[orders(&[2])]).await;
    read().await;
    assert_eq!(cache.len(), 2);
    // The third version's commit deletes the first version's file.
    load(&warehouse, 3, WriteMode::Replace, &[orders(&[3])]).await;
    assert_eq!(cached(&first), [false], "a deleted file's footer is dropped");
    read().await;
    let kept = data_files(&warehouse, "orders").await;
    assert_eq!(cached(&kept), [true, true]);
    assert_eq!(cache.len(), 2, "the two retained versions' footers");
}

#[tokio::test]
async fn committed_state_is_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await;
    assert_eq!(warehouse.committed_state("orders").await.unwrap(), None);
    assert_eq!(warehouse.committed_state("missing").await.unwrap(), None);
    load(&warehouse, 7, WriteMode::Append, &[orders(&[1])]).await;
    load(&warehouse, 8, WriteMode::Append, &[]).await;
    let state = warehouse.committed_state("orders").await.unwrap().unwrap();
    assert_eq!((state.run_id, state.watermark), (8, Some("mark 8".into())));
    assert!(state.committed_at.is_some());
    // An empty append commits the watermark and keeps the rows.
    assert_eq!(count(&warehouse, "orders").await, count_is(1));
}

#[tokio::test]
async fn abort_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await.with_file_limits(FileLimits {
        max_rows: 2,
        ..FileLimits::default()
    });
    load(&warehouse, 1, WriteMode::Append, &[orders(&[1])]).await;
    let before = data_files(&warehouse, "orders").await;

    let mut transaction = warehouse.begin("orders", 2, WriteMode::Replace).await.unwrap();
    transaction.write(orders(&[2, 3, 4, 5, 6])).await.unwrap();
    transaction.abort().await.unwrap();

    assert_eq!(count(&warehouse, "orders").await, count_is(1));
    assert_eq!(data_files(&warehouse, "orders").await, before);
    assert_eq!(warehouse.committed_state("orders").await.unwrap().unwrap().run_id, 1);
}

#[tokio::test]
async fn crash_leftovers_are_invisible_and_cleaned_by_the_next_begin() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await.with_file_limits(FileLimits {
        max_rows: 2,
        ..FileLimits::default()
    });
    load(&warehouse, 1, WriteMode::Append, &[orders(&[1])]).await;

    // A crash mid-load: finished files, one open, never committed.
    let mut transaction = warehouse.begin("orders", 2, WriteMode::Append).await.unwrap();
    transaction.write(orders(&[2, 3, 4, 5, 6])).await.unwrap();
    drop(transaction);
    // The encoder task finishes the queued batch in the background.
    wait_for_data_files(&warehouse, 3).await;
    assert_eq!(count(&warehouse, "orders").await, count_is(1));
    assert_eq!(warehouse.committed_state("orders").await.unwrap().unwrap().run_id, 1);

    // The retry of run 2 starts by deleting them.
    let mut transaction = warehouse.begin("orders", 2, WriteMode::Append).await.unwrap();
    assert_eq!(data_files(&warehouse, "orders").await.len(), 1);
    transaction.write(orders(&[2])).await.unwrap();
    transaction.commit(None).await.unwrap();
    assert_eq!(count(&warehouse, "orders").await, count_is(2));
}

#[tokio::test]
async fn files_of_a_later_run_survive_an_earlier_runs_begin() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await.with_file_limits(FileLimits {
        max_rows: 1,
        ..FileLimits::default()
    });
    let mut later = warehouse.begin("orders", 9, WriteMode::Append).await.unwrap();
    later.write(orders(&[9])).await.unwrap();
    let earlier = warehouse.begin("orders", 5, WriteMode::Append).await.unwrap();
    earlier.abort().await.unwrap();
    later.commit(None).await.unwrap();
    assert_eq!(count(&warehouse, "orders").await, count_is(1));
}

#[tokio::test]
async fn a_load_whose_files_were_cleaned_up_does_not_commit() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await.with_file_limits(FileLimits {
        max_rows: 1,
        ..FileLimits::default()
    });
    let mut stale = warehouse.begin("orders", 1, WriteMode::Append).await.unwrap();
    stale.write(orders(&[1])).await.unwrap();
    wait_for_data_files(&warehouse, 1).await;
    // A later run starting meanwhile takes run 1's files for leftovers.
    let later = warehouse.begin("orders", 2, WriteMode::Append).await.unwrap();
    let error = stale.commit(None).await.unwrap_err();
    assert!(error.to_string().contains("was deleted before the commit"), "{error}");
    later.commit(None).await.unwrap();
    assert_eq!(count(&warehouse, "orders").await, count_is(0));
}

#[tokio::test]
async fn concurrent_commits_of_the_same_version_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await;
    let mut first = warehouse.begin("orders", 1, WriteMode::Append).await.unwrap();
    let mut second = warehouse.begin("orders", 2, WriteMode::Append).await.unwrap();
    first.write(orders(&[1])).await.unwrap();
    second.write(orders(&[2, 3])).await.unwrap();
    first.commit(None).await.unwrap();
    let error = second.commit(None).await.unwrap_err();
    assert!(matches!(error, DestinationError::Conflict { .. }), "{error}");
    assert!(
        error.to_string().contains("version 1 was published by another load"),
        "{error}"
    );

    assert_eq!(count(&warehouse, "orders").await, count_is(1));
    assert_eq!(data_files(&warehouse, "orders").await.len(), 1);
    assert_eq!(warehouse.committed_state("orders").await.unwrap().unwrap().run_id, 1);
    // The manifest itself can only be created once.
    let latest = warehouse.latest_manifest("orders").await.unwrap().unwrap();
    let again = warehouse.publish("orders", &latest).await.unwrap_err();
    assert!(matches!(again, object_store::Error::AlreadyExists { .. }), "{again}");
}

#[tokio::test]
async fn ensure_table_adopts_the_same_schema_and_rejects_another() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await;
    warehouse.ensure_table(&spec("orders", orders_schema())).await.unwrap();

    let other = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("total", DataType::Decimal128(12, 2), true),
    ]));
    let error = warehouse.ensure_table(&spec("orders", other)).await.unwrap_err();
    let DestinationError::SchemaMismatch { differences, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(
        differences,
        &[
            "column \"id\" is Int64 NOT NULL in the table but Int32 NOT NULL in the load",
            "column \"name\" is Utf8 in the table but Utf8 NOT NULL in the load",
            "column \"total\" (Decimal128(12, 2)) is not in the table",
        ]
    );
    assert!(
        error
            .to_string()
            .starts_with("the schema of destination table \"orders\" does not match: column")
    );

    let reordered = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("id", DataType::Int64, false),
    ]));
    let error = warehouse.ensure_table(&spec("orders", reordered)).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("(id, name) in the table, (name, id) in the load"),
        "{error}"
    );
}

#[tokio::test]
async fn writes_must_match_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await;
    let mut transaction = warehouse.begin("orders", 1, WriteMode::Append).await.unwrap();
    let ids_only = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(ids_only, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    let error = transaction.write(batch).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("column \"name\" (Utf8) is missing from the load"),
        "{error}"
    );

    let nullable = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![Some(1), None])),
        Arc::new(StringArray::from(vec!["a", "b"])),
    ];
    let with_null = RecordBatch::try_new(nullable.clone(), columns.clone()).unwrap();
    assert!(matches!(
        transaction.write(with_null).await.unwrap_err(),
        DestinationError::Arrow(_)
    ));
    // Nullable in the batch is fine as long as no NULLs arrive.
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1])),
        Arc::new(StringArray::from(vec!["a"])),
    ];
    transaction
        .write(RecordBatch::try_new(nullable, columns).unwrap())
        .await
        .unwrap();
    assert_eq!(transaction.commit(None).await.unwrap().rows, 1);
}

#[tokio::test]
async fn files_roll_at_the_row_limit() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await.with_file_limits(FileLimits {
        max_rows: 2,
        ..FileLimits::default()
    });
    let report = load(&warehouse, 1, WriteMode::Append, &[orders(&[1, 2, 3]), orders(&[4, 5])]).await;
    assert_eq!((report.rows, report.files), (5, 3));
    assert_eq!(data_files(&warehouse, "orders").await.len(), 3);
    assert_eq!(count(&warehouse, "orders").await, count_is(5));
    assert_eq!(
        query_text(&warehouse, "SELECT sum(id) AS s FROM warehouse.orders WHERE id > 2").await,
        "+----+\n| s  |\n+----+\n| 12 |\n+----+"
    );
}

#[tokio::test]
async fn files_roll_at_the_byte_limit() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await.with_file_limits(FileLimits {
        max_bytes: 1,
        ..FileLimits::default()
    });
    let report = load(
        &warehouse,
        1,
        WriteMode::Append,
        &[orders(&[1, 2]), orders(&[3]), orders(&[4])],
    )
    .await;
    assert_eq!((report.rows, report.files), (4, 3));
    assert_eq!(count(&warehouse, "orders").await, count_is(4));
}

#[tokio::test]
async fn empty_tables_are_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await;
    assert_eq!(count(&warehouse, "orders").await, count_is(0));
    let frame = session(&warehouse)
        .await
        .sql("SELECT * FROM warehouse.orders")
        .await
        .unwrap();
    assert_eq!(frame.schema().as_arrow().fields(), orders_schema().fields());
    let batches = frame.collect().await.unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);

    // A snapshot of nothing empties the table.
    load(&warehouse, 1, WriteMode::Append, &[orders(&[1])]).await;
    load(&warehouse, 2, WriteMode::Replace, &[]).await;
    assert_eq!(count(&warehouse, "orders").await, count_is(0));
    assert_eq!(
        warehouse.latest_manifest("orders").await.unwrap().unwrap().files,
        vec![]
    );
}

#[tokio::test]
async fn tables_are_listed_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await;
    let odd = "bq_Order Items.v2 é𝄞";
    warehouse.ensure_table(&spec(odd, orders_schema())).await.unwrap();
    let mut transaction = warehouse.begin(odd, 1, WriteMode::Append).await.unwrap();
    transaction.write(orders(&[1, 2])).await.unwrap();
    transaction.commit(None).await.unwrap();
    assert_eq!(count(&warehouse, odd).await, count_is(2));

    // A fresh process sees both tables.
    let reopened = LocalWarehouse::open_dir(dir.path()).unwrap();
    let schema = WarehouseSchema::new(reopened.clone()).await.unwrap();
    assert_eq!(schema.table_names(), vec![odd.to_owned(), "orders".to_owned()]);
    assert!(schema.table_exist("orders"));

    reopened.drop_table(odd).await.unwrap();
    assert_eq!(schema.table_names(), vec!["orders".to_owned()]);
    assert!(schema.table(odd).await.unwrap().is_none());
    assert!(matches!(
        reopened.drop_table(odd).await.unwrap_err(),
        DestinationError::TableNotFound(_)
    ));
    assert!(matches!(
        reopened.begin(odd, 2, WriteMode::Append).await.err().unwrap(),
        DestinationError::TableNotFound(_)
    ));
    // Nothing of it remains on disk.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    for bad in ["", "a/b", ".hidden", "x%41", "tab\tle"] {
        assert!(
            matches!(
                warehouse.ensure_table(&spec(bad, orders_schema())).await.unwrap_err(),
                DestinationError::InvalidTableName(_)
            ),
            "{bad:?}"
        );
    }
}

fn types_batch() -> RecordBatch {
    let utc = TimeUnit::Microsecond;
    let schema = Arc::new(Schema::new(vec![
        Field::new("d128", DataType::Decimal128(38, 9), true),
        Field::new("d256", DataType::Decimal256(76, 38), true),
        Field::new("ts_utc", DataType::Timestamp(utc, Some("UTC".into())), true),
        Field::new("ts_naive", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("day", DataType::Date32, true),
        Field::new("bytes", DataType::Binary, true),
        Field::new(
            "list",
            DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
            true,
        ),
        Field::new("text", DataType::Utf8, true),
    ]));
    let max128 = 10_i128.pow(38) - 1;
    let max256 = i256::from_string(&"9".repeat(76)).unwrap();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            Decimal128Array::from(vec![Some(max128), Some(-max128), Some(1), None])
                .with_precision_and_scale(38, 9)
                .unwrap(),
        ),
        Arc::new(
            Decimal256Array::from(vec![Some(max256), Some(max256.wrapping_neg()), Some(i256::ONE), None])
                .with_precision_and_scale(76, 38)
                .unwrap(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(vec![Some(1_700_000_000_123_456), Some(-1), Some(0), None])
                .with_timezone("UTC"),
        ),
        Arc::new(TimestampMicrosecondArray::from(vec![
            Some(253_402_300_799_999_999),
            Some(-62_135_596_800_000_000),
            Some(1),
            None,
        ])),
        Arc::new(Date32Array::from(vec![Some(19_000), Some(-719_162), Some(0), None])),
        Arc::new(BinaryArray::from(vec![
            Some(&b"\0\0\0"[..]),
            Some(&b""[..]),
            Some(&b"a\0b"[..]),
            None,
        ])),
        Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), None, Some(i64::MIN)]),
            Some(vec![]),
            None,
            Some(vec![Some(i64::MAX)]),
        ])),
        Arc::new(StringArray::from(vec![
            Some("𝄞 music 😀"),
            Some(""),
            Some("naïve"),
            None,
        ])),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

#[tokio::test]
async fn logical_types_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = LocalWarehouse::open_dir(dir.path()).unwrap();
    let batch = types_batch();
    warehouse.ensure_table(&spec("types", batch.schema())).await.unwrap();
    // The manifest keeps the schema exactly.
    let manifest = warehouse.latest_manifest("types").await.unwrap().unwrap();
    assert_eq!(manifest.schema, batch.schema());

    let mut transaction = warehouse.begin("types", 1, WriteMode::Append).await.unwrap();
    transaction.write(batch.clone()).await.unwrap();
    transaction.commit(None).await.unwrap();

    // The Parquet file itself carries the exact types.
    let manifest = warehouse.latest_manifest("types").await.unwrap().unwrap();
    let path = warehouse.data_path("types", &manifest.files[0].name);
    let bytes = warehouse.store.get(&path).await.unwrap().bytes().await.unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let from_file = reader.collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(from_file[0].schema().fields(), batch.schema().fields());
    assert_eq!(concat_batches(&batch.schema(), &from_file).unwrap(), batch);

    // And so does SQL.
    let from_sql = query(&warehouse, "SELECT * FROM warehouse.types").await;
    assert_eq!(concat_batches(&batch.schema(), &from_sql).unwrap(), batch);
    assert_eq!(from_sql[0].schema(), batch.schema());
}

#[tokio::test]
async fn a_commit_syncs_its_files_and_directories_before_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = open(&dir).await;
    load(&warehouse, 1, WriteMode::Append, &[orders(&[1, 2])]).await;
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let synced: Vec<std::path::PathBuf> = sync::SYNCED
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.starts_with(&root))
        .cloned()
        .collect();
    let table = root.join("orders");
    let data: Vec<_> = std::fs::read_dir(table.join(DATA_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!data.is_empty());
    for file in &data {
        assert!(synced.contains(file), "data file {file:?} not synced: {synced:?}");
    }
    let manifest = table.join(MANIFEST_DIR).join(manifest::file_name(1));
    for path in [
        manifest.clone(),
        table.join(DATA_DIR),
        table.join(MANIFEST_DIR),
        table.clone(),
        root.clone(),
    ] {
        assert!(synced.contains(&path), "{path:?} not synced: {synced:?}");
    }
    // Data files are synced before the manifest that names them.
    let first_manifest_sync = synced.iter().position(|p| p == &manifest).unwrap();
    assert!(
        data.iter()
            .all(|f| synced.iter().position(|p| p == f).unwrap() < first_manifest_sync)
    );
}

#[tokio::test]
async fn an_evolved_table_reads_old_files_under_the_new_schema_and_keeps_its_last_load() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = LocalWarehouse::open_dir(dir.path()).unwrap();
    let narrow = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), false),
    ]));
    warehouse.ensure_table(&spec("orders", narrow.clone())).await.unwrap();
    let mut load = warehouse.begin("orders", 1, WriteMode::Append).await.unwrap();
    load.write(
        RecordBatch::try_new(
            narrow.clone(),
            vec![
                Arc::new(datafusion::arrow::array::Int32Array::from(vec![7])),
                Arc::new(TimestampMicrosecondArray::from(vec![1_000_000])),
            ],
        )
        .unwrap(),
    )
    .await
    .unwrap();
    load.commit(Some("7".into())).await.unwrap();

    // Widened, relaxed to NULLABLE, one column added.
    let wide = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("extra", DataType::Utf8, true),
    ]));
    warehouse.evolve_table("orders", &wide).await.unwrap();
    let versions = warehouse.versions("orders").await.unwrap();
    // Again: nothing to do, no new version.
    warehouse.evolve_table("orders", &wide).await.unwrap();
    assert_eq!(warehouse.versions("orders").await.unwrap(), versions);
    let state = warehouse.committed_state("orders").await.unwrap().unwrap();
    assert_eq!((state.run_id, state.watermark.as_deref()), (1, Some("7")));
    let rows = query(&warehouse, "SELECT id, at, extra FROM warehouse.orders").await;
    assert_eq!(rows[0].schema().field(0).data_type(), &DataType::Int64);
    let text = pretty_format_batches(&rows).unwrap().to_string();
    assert!(text.contains("| 7  | 1970-01-01T00:00:01Z |       |"), "{text}");

    // Narrowing, NOT NULL again, removing and adding NOT NULL are refused.
    for (name, refused) in [
        ("narrowing", Field::new("id", DataType::Int32, true)),
        ("not null again", Field::new("id", DataType::Int64, false)),
    ] {
        let mut fields: Vec<Field> = wide.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[0] = refused;
        let err = warehouse
            .evolve_table("orders", &Arc::new(Schema::new(fields)))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DestinationError::SchemaMismatch { differences, .. } if differences[0].contains("\"id\"")),
            "{name}: {err}"
        );
    }
    let removed = Arc::new(Schema::new(vec![wide.field(0).clone(), wide.field(2).clone()]));
    assert!(warehouse.evolve_table("orders", &removed).await.is_err());
    let mut fields: Vec<Field> = wide.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("required", DataType::Utf8, false));
    assert!(
        warehouse
            .evolve_table("orders", &Arc::new(Schema::new(fields)))
            .await
            .is_err()
    );
    assert_eq!(
        warehouse.versions("orders").await.unwrap(),
        versions,
        "refusals change nothing"
    );
}

/// `orders` columns, then a landed file's URL and time.
fn landed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("_file", DataType::Utf8, true),
        Field::new(
            "_modified_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]))
}

/// The instant every landed file was modified at in these tests.
const LANDED_AT: i64 = 1_764_844_800_000_000;

/// Writes `batch` as Parquet file `name` of `source` (a directory store);
/// the file as a scan hands it over, claiming `rows` rows.
async fn landed_file(
    source: &Arc<dyn datafusion::object_store::ObjectStore>,
    name: &str,
    batch: &RecordBatch,
) -> (WholeFile, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    let path = datafusion::object_store::path::Path::from(name);
    source.put(&path, bytes.clone().into()).await.unwrap();
    let meta = source.head(&path).await.unwrap();
    let url = format!("s3://landing/{name}");
    let file = WholeFile {
        store: source.clone(),
        meta,
        url: url.clone(),
        rows: batch.num_rows() as u64,
        constants: vec![
            ("_file".into(), ScalarValue::Utf8(Some(url))),
            (
                "_modified_at".into(),
                ScalarValue::TimestampMicrosecond(Some(LANDED_AT), Some("UTC".into())),
            ),
        ],
    };
    (file, bytes)
}

fn source_store(dir: &tempfile::TempDir) -> Arc<dyn datafusion::object_store::ObjectStore> {
    Arc::new(datafusion::object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap())
}

async fn landed_warehouse(dir: &tempfile::TempDir) -> LocalWarehouse {
    let warehouse = LocalWarehouse::open_dir(dir.path()).unwrap();
    warehouse.ensure_table(&spec("landed", landed_schema())).await.unwrap();
    warehouse
}

#[tokio::test]
async fn whole_files_are_copied_byte_for_byte_and_read_with_their_constants() {
    let (dir, landing) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let warehouse = landed_warehouse(&dir).await;
    let source = source_store(&landing);
    let (first, first_bytes) = landed_file(&source, "in/a.parquet", &orders(&[1, 2])).await;
    let (second, second_bytes) = landed_file(&source, "in/b.parquet", &orders(&[3])).await;

    let mut load = warehouse.begin("landed", 7, WriteMode::Replace).await.unwrap();
    assert!(load.copies_files());
    load.copy_file(first).await.unwrap();
    load.copy_file(second).await.unwrap();
    // Rows of the same load that were decoded are encoded beside them.
    let decoded = RecordBatch::try_new(
        landed_schema(),
        vec![
            Arc::new(Int64Array::from(vec![4])),
            Arc::new(StringArray::from(vec!["order 4"])),
            Arc::new(StringArray::from(vec!["s3://landing/in/c.parquet"])),
            Arc::new(TimestampMicrosecondArray::from(vec![LANDED_AT + 1]).with_timezone("UTC")),
        ],
    )
    .unwrap();
    load.write(decoded).await.unwrap();
    let report = load.commit(None).await.unwrap();
    assert_eq!((report.rows, report.files), (4, 3));

    assert_eq!(
        query_text(&warehouse, "SELECT * FROM warehouse.landed ORDER BY id").await,
        "+----+---------+---------------------------+-----------------------------+\n\
         | id | name    | _file                     | _modified_at                |\n\
         +----+---------+---------------------------+-----------------------------+\n\
         | 1  | order 1 | s3://landing/in/a.parquet | 2025-12-04T10:40:00Z        |\n\
         | 2  | order 2 | s3://landing/in/a.parquet | 2025-12-04T10:40:00Z        |\n\
         | 3  | order 3 | s3://landing/in/b.parquet | 2025-12-04T10:40:00Z        |\n\
         | 4  | order 4 | s3://landing/in/c.parquet | 2025-12-04T10:40:00.000001Z |\n\
         +----+---------+---------------------------+-----------------------------+"
    );
    // Constants filter, group and project like any column, alone too.
    assert_eq!(
        query_text(
            &warehouse,
            "SELECT _file, count(*) AS n FROM warehouse.landed WHERE _modified_at = '2025-12-04T10:40:00Z' \
             GROUP BY _file ORDER BY _file"
        )
        .await,
        "+---------------------------+---+\n\
         | _file                     | n |\n\
         +---------------------------+---+\n\
         | s3://landing/in/a.parquet | 2 |\n\
         | s3://landing/in/b.parquet | 1 |\n\
         +---------------------------+---+"
    );
    assert_eq!(count(&warehouse, "landed").await, count_is(4));

    // The copies hold the source files' very bytes.
    let copies: Vec<String> = (data_files(&warehouse, "landed").await.into_iter())
        .filter(|name| name.contains("-copy-"))
        .collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    let mut copied = Vec::new();
    for name in &copies {
        let path = warehouse.data_path("landed", name);
        copied.push(
            warehouse
                .store
                .get(&path)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec(),
        );
    }
    assert!(copied.contains(&first_bytes) && copied.contains(&second_bytes));
}

#[tokio::test]
async fn a_whole_file_with_other_columns_fails_the_load_and_leaves_nothing() {
    let (dir, landing) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let warehouse = landed_warehouse(&dir).await;
    let source = source_store(&landing);
    let narrow = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(datafusion::arrow::array::Int32Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["order 1"])),
        ],
    )
    .unwrap();
    let (file, _) = landed_file(&source, "in/narrow.parquet", &narrow).await;
    let mut load = warehouse.begin("landed", 1, WriteMode::Replace).await.unwrap();
    load.copy_file(file).await.unwrap();
    let error = load.commit(None).await.unwrap_err();
    assert!(
        matches!(&error, DestinationError::CopiedFile { file, .. } if file == "s3://landing/in/narrow.parquet"),
        "{error}"
    );
    assert!(error.to_string().contains("id Int32"), "{error}");
    assert_eq!(count(&warehouse, "landed").await, count_is(0));
    assert_eq!(data_files(&warehouse, "landed").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_whole_file_changed_after_its_listing_is_not_loaded() {
    let (dir, landing) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let warehouse = landed_warehouse(&dir).await;
    let source = source_store(&landing);
    let (file, _) = landed_file(&source, "in/a.parquet", &orders(&[1, 2])).await;
    // Rewritten with other rows after the listing: another entity tag.
    landed_file(&source, "in/a.parquet", &orders(&[1, 2, 3])).await;
    let mut load = warehouse.begin("landed", 1, WriteMode::Replace).await.unwrap();
    load.copy_file(file).await.unwrap();
    let error = load.commit(None).await.unwrap_err();
    assert!(error.to_string().contains("changed after it was listed"), "{error}");
    assert_eq!(data_files(&warehouse, "landed").await, Vec::<String>::new());

    // A listing whose row count the file's footer does not confirm.
    let (mut file, _) = landed_file(&source, "in/b.parquet", &orders(&[1])).await;
    file.rows = 5;
    let mut load = warehouse.begin("landed", 2, WriteMode::Replace).await.unwrap();
    load.copy_file(file).await.unwrap();
    let error = load.commit(None).await.unwrap_err();
    assert!(error.to_string().contains("footer says 1 rows, 5"), "{error}");
    assert_eq!(data_files(&warehouse, "landed").await, Vec::<String>::new());
}

#[tokio::test]
async fn an_aborted_load_deletes_its_copies() {
    let (dir, landing) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let warehouse = landed_warehouse(&dir).await;
    let source = source_store(&landing);
    let mut load = warehouse.begin("landed", 1, WriteMode::Replace).await.unwrap();
    for name in [
        "in/a.parquet",
        "in/b.parquet",
        "in/c.parquet",
        "in/d.parquet",
        "in/e.parquet",
    ] {
        load.copy_file(landed_file(&source, name, &orders(&[1])).await.0)
            .await
            .unwrap();
    }
    load.abort().await.unwrap();
    assert_eq!(data_files(&warehouse, "landed").await, Vec::<String>::new());
    assert_eq!(count(&warehouse, "landed").await, count_is(0));
}

#[tokio::test]
async fn a_namespace_has_its_own_tables_and_its_drop_deletes_only_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = open(&dir).await;
    let (a, b) = (root.for_namespace("a").unwrap(), root.for_namespace("b").unwrap());
    for (warehouse, ids) in [(&root, &[1][..]), (&a, &[1, 2]), (&b, &[1, 2, 3])] {
        warehouse.ensure_table(&spec("orders", orders_schema())).await.unwrap();
        load(warehouse, 1, WriteMode::Append, &[orders(ids)]).await;
    }
    assert_eq!(count(&a, "orders").await, count_is(2));
    assert_eq!(count(&root, "orders").await, count_is(1));
    assert_eq!(root.list_tables().await.unwrap(), BTreeSet::from(["orders".to_owned()]));
    root.drop_namespace("a").await.unwrap();
    assert!(!dir.path().join(".namespaces/a").exists(), "its files are deleted");
    assert!(root.for_namespace("a").unwrap().list_tables().await.unwrap().is_empty());
    assert_eq!(count(&b, "orders").await, count_is(3));
    assert_eq!(count(&root, "orders").await, count_is(1));
}

#[tokio::test]
async fn in_a_bucket_a_namespace_is_a_prefix_and_its_drop_deletes_only_it() {
    let store: Arc<dyn ObjectStore> = Arc::new(datafusion::object_store::memory::InMemory::new());
    let root = LocalWarehouse::new(store.clone(), Path::from("wh"));
    let a = root.for_namespace("a").unwrap();
    for (warehouse, ids) in [(&root, &[1][..]), (&a, &[1, 2])] {
        warehouse.ensure_table(&spec("orders", orders_schema())).await.unwrap();
        load(warehouse, 1, WriteMode::Append, &[orders(ids)]).await;
    }
    let names = || async {
        let listed: Vec<_> = store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        listed
    };
    assert!(names().await.iter().any(|n| n.starts_with("wh/.namespaces/a/orders/")));
    assert_eq!(count(&a, "orders").await, count_is(2));
    root.drop_namespace("a").await.unwrap();
    let left = names().await;
    assert!(left.iter().all(|n| !n.starts_with("wh/.namespaces/")), "{left:?}");
    assert_eq!(count(&root, "orders").await, count_is(1));
}
