//! Catalog behaviour against a real RocksDB in a temp dir.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;
use sluice_catalog::*;

mod job_views;

fn key() -> MasterKey {
    MasterKey::from_hex(&"11".repeat(32)).unwrap()
}

fn open(dir: &Path) -> Catalog {
    Catalog::open(dir, key()).unwrap()
}

/// Saves connection `shop` with an inline password secret.
fn create_shop(catalog: &Catalog, password: &str) {
    let secret = (
        Catalog::inline_secret_name("shop", "password"),
        SecretValue::new(password),
    );
    catalog
        .create_connection(&connection("shop", "pg://a", inline("shop")), &[secret])
        .unwrap();
}

fn connection(name: &str, identity: &str, password: OptionValue) -> ConnectionRecord {
    let mut options = BTreeMap::new();
    options.insert("host".to_string(), OptionValue::Text("db".into()));
    options.insert("password".to_string(), password);
    ConnectionRecord {
        name: name.into(),
        kind: "postgres".into(),
        options,
        identity: Some(identity.into()),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        status: ConnectionStatus::Unknown,
        last_tested_at: None,
        last_error: None,
        last_used_at: None,
    }
}

fn inline(conn: &str) -> OptionValue {
    OptionValue::Secret {
        name: Catalog::inline_secret_name(conn, "password"),
        owned: true,
    }
}

fn all_files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files_contain(&path, needle)
        } else {
            std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle)
        }
    })
}

#[test]
fn connections_and_inline_secrets_survive_reopen_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let catalog = open(dir.path());
        let secret = (
            Catalog::inline_secret_name("shop", "password"),
            SecretValue::new("Hunter2-plaintext"),
        );
        catalog
            .create_connection(&connection("shop", "pg://a", inline("shop")), &[secret])
            .unwrap();
    }
    let catalog = open(dir.path());
    let shop = catalog.connection("shop").unwrap();
    assert_eq!(shop.kind, "postgres");
    assert_eq!(
        catalog.secret_value("shop/password").unwrap().expose(),
        "Hunter2-plaintext"
    );
    assert!(catalog.secrets().unwrap().is_empty(), "inline secrets are not listed");
    drop(catalog);
    assert!(!all_files_contain(dir.path(), b"Hunter2-plaintext"));
}

#[test]
fn names_and_identities_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    catalog.create_secret("pw", &SecretValue::new("x"), false).unwrap();
    let named = OptionValue::Secret {
        name: "pw".into(),
        owned: false,
    };
    catalog
        .create_connection(&connection("a", "pg://a", named.clone()), &[])
        .unwrap();
    let err = catalog
        .create_connection(&connection("a", "pg://other", named.clone()), &[])
        .unwrap_err();
    assert!(matches!(err, CatalogError::AlreadyExists { .. }), "{err}");
    let err = catalog
        .create_connection(&connection("b", "pg://a", named), &[])
        .unwrap_err();
    match err {
        CatalogError::DuplicateCredentials { existing, .. } => assert_eq!(existing, "a"),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn missing_secret_reference_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    let named = OptionValue::Secret {
        name: "nope".into(),
        owned: false,
    };
    let err = catalog
        .create_connection(&connection("a", "pg://a", named), &[])
        .unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::NotFound {
                kind: ObjectKind::Secret,
                ..
            }
        ),
        "{err}"
    );
    assert!(catalog.connections().unwrap().is_empty());
}

#[test]
fn secrets_in_use_cannot_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    assert!(catalog.create_secret("pw", &SecretValue::new("x"), false).unwrap());
    assert!(!catalog.create_secret("pw", &SecretValue::new("y"), true).unwrap());
    assert_eq!(catalog.secret_value("pw").unwrap().expose(), "x");
    let named = OptionValue::Secret {
        name: "pw".into(),
        owned: false,
    };
    catalog
        .create_connection(&connection("a", "pg://a", named), &[])
        .unwrap();
    let err = catalog.drop_secret("pw", false).unwrap_err();
    assert!(err.to_string().contains("\"a\""), "{err}");
    assert_eq!(catalog.secrets().unwrap()[0].used_by, vec!["a".to_string()]);
    catalog.drop_connection("a", false, false).unwrap();
    assert!(catalog.drop_secret("pw", false).unwrap());
    assert!(!catalog.drop_secret("pw", true).unwrap());
}

#[test]
fn drop_connection_refuses_while_jobs_use_it_and_cascades() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    create_shop(&catalog, "pw");
    catalog.create_job(&job("orders_daily", "shop")).unwrap();
    assert!(
        catalog.connection("shop").unwrap().last_used_at.is_some(),
        "creating a job marks its connection used"
    );
    let err = catalog.drop_connection("shop", false, false).unwrap_err();
    assert!(matches!(err, CatalogError::InUse { .. }));
    assert!(err.to_string().contains("orders_daily"), "{err}");
    let outcome = catalog.drop_connection("shop", false, true).unwrap();
    assert_eq!(outcome.dropped_jobs, vec!["orders_daily".to_string()]);
    assert!(catalog.jobs_using("shop").unwrap().is_empty());
    assert!(
        catalog.secret_value("shop/password").is_err(),
        "inline secret dropped with its connection"
    );
    assert!(!catalog.drop_connection("shop", true, false).unwrap().dropped);
}

fn job(name: &str, connection: &str) -> JobRecord {
    JobRecord {
        name: name.into(),
        source: JobSource {
            connection: connection.into(),
            schema: "public".into(),
            table: "orders".into(),
            columns: None,
        },
        destination: JobDestination {
            connection: None,
            table: format!("bq_{name}"),
        },
        load: LoadType::Incremental {
            cursor: "updated_at".into(),
            start: IncrementalStart::BackfillDays(90),
            lookback: None,
        },
        column_overrides: vec![],
        schedule: "MANUAL".into(),
        batch_rows: 8192,
        parallelism: None,
        execution: Default::default(),
        max_retries: 3,
        catch_up: Default::default(),
        layout: Default::default(),
        guard: Default::default(),
        on_schema_change: Default::default(),
        verify: Default::default(),
        columns: Vec::new(),
        freshness_target_seconds: None,
        labels: Default::default(),
        source_settings: Default::default(),
        reload: false,
        cdc: Default::default(),
        paused: false,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

/// A catalog with the `shop` connection and one job on it.
fn open_with_job(dir: &Path, name: &str) -> Catalog {
    let catalog = open(dir);
    create_shop(&catalog, "pw");
    catalog.create_job(&job(name, "shop")).unwrap();
    catalog
}

#[test]
fn runs_get_increasing_ids_and_finish_with_their_watermark_atomically() {
    let dir = tempfile::tempdir().unwrap();
    {
        let catalog = open_with_job(dir.path(), "j");
        let first = catalog.start_run("j", RunTrigger::Manual).unwrap();
        let mut second = catalog.start_run("j", RunTrigger::Schedule).unwrap();
        assert_eq!((first.id, second.id), (1, 2));
        second.status = RunStatus::Succeeded;
        second.rows = 42;
        let mark = Watermark {
            job: "j".into(),
            value: "2024-01-01 00:00:00".into(),
            run_id: 2,
            updated_at: Utc::now(),
        };
        catalog.finish_run(&second, Some(&mark)).unwrap();
        assert!(catalog.start_run("ghost", RunTrigger::Manual).is_err());
    }
    let catalog = open(dir.path());
    let runs = catalog.runs(Some("j")).unwrap();
    assert_eq!(
        runs.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        vec![(1, RunStatus::Running), (2, RunStatus::Succeeded)]
    );
    assert_eq!(catalog.run(2).unwrap().rows, 42);
    assert_eq!(catalog.watermark("j").unwrap().unwrap().run_id, 2);
    assert_eq!(
        catalog.start_run("j", RunTrigger::Manual).unwrap().id,
        3,
        "ids survive a reopen"
    );
    catalog.drop_job("j", false).unwrap();
    assert!(
        catalog.watermark("j").unwrap().is_none(),
        "dropping a job drops its watermark"
    );
    assert_eq!(catalog.runs(Some("j")).unwrap().len(), 3, "run history stays");
}

#[test]
fn replace_connection_swaps_inline_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    create_shop(&catalog, "old");
    catalog.create_secret("named", &SecretValue::new("new"), false).unwrap();
    let named = OptionValue::Secret {
        name: "named".into(),
        owned: false,
    };
    catalog
        .replace_connection(&connection("shop", "pg://a", named), &[])
        .unwrap();
    assert!(catalog.secret_value("shop/password").is_err());
    let err = catalog
        .replace_connection(&connection("ghost", "pg://z", inline("ghost")), &[])
        .unwrap_err();
    assert!(matches!(err, CatalogError::NotFound { .. }));
}

#[test]
fn status_updates_are_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    create_shop(&catalog, "pw");
    let update = StatusUpdate {
        status: ConnectionStatus::Failed,
        tested_at: Utc::now(),
        error: Some("refused".into()),
    };
    assert!(catalog.update_status("shop", &update).unwrap());
    assert!(!catalog.update_status("gone", &update).unwrap());
    let shop = catalog.connection("shop").unwrap();
    assert_eq!(shop.status, ConnectionStatus::Failed);
    assert_eq!(shop.last_error.as_deref(), Some("refused"));
}

#[test]
fn a_different_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let other = MasterKey::from_hex(&"22".repeat(32)).unwrap();
    let err = Catalog::open(dir.path(), other)
        .err()
        .expect("wrong key must be refused");
    assert!(matches!(err, CatalogError::MasterKey(_)), "{err}");
}

#[test]
fn concurrent_creates_of_one_name_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = std::sync::Arc::new(open(dir.path()));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let catalog = catalog.clone();
            std::thread::spawn(move || {
                let secret = (Catalog::inline_secret_name("same", "password"), SecretValue::new("pw"));
                catalog.create_connection(&connection("same", &format!("pg://{i}"), inline("same")), &[secret])
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, CatalogError::AlreadyExists { .. }))
    );
}

#[test]
fn prunes_the_oldest_finished_runs_and_keeps_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "j");
    catalog.create_job(&job("other", "shop")).unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut run = catalog.start_run("j", RunTrigger::Manual).unwrap();
        run.status = RunStatus::Succeeded;
        catalog.finish_run(&run, None).unwrap();
        ids.push(run.id);
    }
    let skipped = catalog.skip_run("j", RunTrigger::Schedule, "busy").unwrap();
    assert_eq!(skipped.status, RunStatus::Skipped);
    let running = catalog.start_run("j", RunTrigger::Manual).unwrap();
    let other = catalog.start_run("other", RunTrigger::Manual).unwrap();

    assert_eq!(catalog.prune_runs("j", 3).unwrap(), 3);
    let left: Vec<u64> = catalog.runs(Some("j")).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(left, [ids[3], ids[4], skipped.id, running.id]);
    assert_eq!(catalog.runs(Some("other")).unwrap()[0].id, other.id);
    assert_eq!(catalog.prune_runs("j", 3).unwrap(), 0);
}

#[test]
fn a_queued_run_starts_once_or_ends_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "j");

    let queued = catalog.queue_run("j", RunTrigger::Schedule).unwrap();
    assert_eq!(queued.status, RunStatus::Queued);
    assert_eq!(catalog.run(queued.id).unwrap().status, RunStatus::Queued);
    let started = catalog.start_queued_run(queued.id).unwrap().expect("still queued");
    assert_eq!((started.id, started.status), (queued.id, RunStatus::Running));
    assert!(started.started_at >= queued.started_at);
    assert_eq!(catalog.start_queued_run(queued.id).unwrap(), None, "starts only once");
    let reason = "no longer due";
    assert_eq!(
        catalog.end_queued_run(queued.id, RunStatus::Skipped, reason).unwrap(),
        None
    );

    let second = catalog.queue_run("j", RunTrigger::Schedule).unwrap();
    let cancelled = catalog
        .end_queued_run(second.id, RunStatus::Cancelled, "cancelled by the user")
        .unwrap()
        .expect("still queued");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());
    assert_eq!(catalog.start_queued_run(second.id).unwrap(), None);
    assert_eq!(catalog.run(second.id).unwrap().status, RunStatus::Cancelled);

    let third = catalog.queue_run("j", RunTrigger::Schedule).unwrap();
    catalog.drop_job("j", false).unwrap();
    let dropped = catalog.run(third.id).unwrap();
    assert_eq!(dropped.status, RunStatus::Cancelled);
    assert!(dropped.error.unwrap().contains("dropped"));
    assert_eq!(
        catalog.run(started.id).unwrap().status,
        RunStatus::Running,
        "only queued runs change"
    );
}

#[test]
fn a_table_has_one_job_and_the_catalog_one_instance_id() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "first");
    let mut second = job("second", "shop");
    second.destination.table = "bq_first".into();
    match catalog.create_job(&second) {
        Err(CatalogError::TableTaken { table, job }) => {
            assert_eq!((table.as_str(), job.as_str()), ("bq_first", "first"))
        }
        other => panic!("expected TableTaken, got {other:?}"),
    }
    let instance = catalog.instance_id().to_owned();
    assert_eq!(instance.len(), 16);
    drop(catalog);
    let reopened = open(dir.path());
    assert_eq!(reopened.instance_id(), instance, "kept across restarts");
    let other = tempfile::tempdir().unwrap();
    let fresh = open_with_job(other.path(), "first");
    assert_ne!(fresh.instance_id(), instance, "a new catalog gets a new id");
}

#[test]
fn a_table_is_free_again_once_its_job_or_connection_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "first");
    let table = job("first", "shop").destination;
    assert_eq!(catalog.table_owner(&table).unwrap().as_deref(), Some("first"));
    let mut bigquery = job("elsewhere", "shop");
    bigquery.destination.connection = Some("shop".into());
    bigquery.destination.table = "bq_first".into();
    catalog.create_job(&bigquery).unwrap();
    assert_eq!(
        catalog.table_owner(&bigquery.destination).unwrap().as_deref(),
        Some("elsewhere"),
        "the same table name on another connection is another table"
    );
    catalog.drop_job("first", false).unwrap();
    assert_eq!(catalog.table_owner(&table).unwrap(), None);
    let mut second = job("second", "shop");
    second.destination = table.clone();
    catalog.create_job(&second).unwrap();
    assert_eq!(catalog.table_owner(&table).unwrap().as_deref(), Some("second"));
    catalog.drop_connection("shop", false, true).unwrap();
    assert_eq!(catalog.table_owner(&table).unwrap(), None);
    assert_eq!(catalog.table_owner(&bigquery.destination).unwrap(), None);
}

#[test]
fn a_layout_2_catalog_gets_its_tables_indexed_on_open_shared_tables_included() {
    let dir = tempfile::tempdir().unwrap();
    let shared = {
        let catalog = open_with_job(dir.path(), "a");
        let mut b = job("b", "shop");
        b.destination.table = "other".into();
        catalog.create_job(&b).unwrap();
        catalog.create_job(&job("c", "shop")).unwrap();
        job("a", "shop").destination
    };
    {
        // What layout 2 held: no table index, and, from before one job per
        // table, job `b` loading `a`'s table too.
        let mut db = raw_db(dir.path());
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(meta, "schema_version", "2").unwrap();
        let jobs = db.cf_handle("jobs").unwrap();
        let stored = db.get_cf(jobs, "b").unwrap().unwrap();
        let moved = String::from_utf8(stored).unwrap().replace("\"other\"", "\"bq_a\"");
        db.put_cf(jobs, "b", moved).unwrap();
        db.drop_cf("table_jobs").unwrap();
    }
    let catalog = open(dir.path());
    assert_eq!(catalog.job("b").unwrap().destination, shared);
    assert_eq!(catalog.table_owner(&shared).unwrap().as_deref(), Some("a"));
    let other = JobDestination {
        connection: None,
        table: "other".into(),
    };
    assert_eq!(catalog.table_owner(&other).unwrap(), None, "b moved away from it");
    catalog.drop_job("a", false).unwrap();
    assert_eq!(
        catalog.table_owner(&shared).unwrap().as_deref(),
        Some("b"),
        "the table stays owned while one of its jobs is left"
    );
    catalog.drop_job("b", false).unwrap();
    assert_eq!(catalog.table_owner(&shared).unwrap(), None);
    assert_eq!(
        catalog.table_owner(&job("c", "shop").destination).unwrap().as_deref(),
        Some("c")
    );
}

/// The catalog's RocksDB opened directly, to write what an older layout or
/// a damaged record looks like.
fn raw_db(dir: &Path) -> rocksdb::DB {
    let mut opts = rocksdb::Options::default();
    opts.create_missing_column_families(true);
    let families = [
        "connections",
        "secrets",
        "jobs",
        "runs",
        "watermarks",
        "schedules",
        "meta",
        "run_index",
        "schema_changes",
        "verifications",
        "table_ops",
        "public_tables",
        "cdc",
        "alerts",
        "alert_incidents",
        "alert_deliveries",
        "roles",
        "grants",
        "audit",
        "table_jobs",
        "namespaces",
    ];
    rocksdb::DB::open_cf(&opts, dir, families).unwrap()
}

/// Catalog `dir` with jobs `a` and `b` whose runs interleave: a1 b2 a3 b4 a5.
fn interleaved_runs(dir: &Path) {
    let catalog = open_with_job(dir, "a");
    catalog.create_job(&job("b", "shop")).unwrap();
    for name in ["a", "b", "a", "b", "a"] {
        catalog.start_run(name, RunTrigger::Manual).unwrap();
    }
}

#[test]
fn a_jobs_runs_come_in_order_without_reading_other_jobs_runs() {
    let dir = tempfile::tempdir().unwrap();
    interleaved_runs(dir.path());
    {
        // Damage b's runs: reading one of them fails.
        let db = raw_db(dir.path());
        let runs = db.cf_handle("runs").unwrap();
        db.put_cf(runs, format!("{:020}", 2), b"not a run").unwrap();
        db.put_cf(runs, format!("{:020}", 4), b"not a run").unwrap();
    }
    let catalog = open(dir.path());
    let ids = |runs: Vec<RunRecord>| runs.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(catalog.runs(Some("a")).unwrap()), vec![1, 3, 5]);
    assert!(catalog.runs(Some("b")).is_err(), "b's runs are read (and are damaged)");
    assert!(catalog.runs(None).is_err());
    assert_eq!(catalog.prune_runs("a", 1).unwrap(), 0, "a's runs are still running");
    assert!(catalog.runs(Some("nobody")).unwrap().is_empty());
}

#[test]
fn a_jobs_newest_runs_are_read_without_reading_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    interleaved_runs(dir.path());
    {
        let catalog = open(dir.path());
        catalog.create_job(&job("a2", "shop")).unwrap();
        catalog.start_run("a2", RunTrigger::Manual).unwrap();
    }
    {
        // Damage a's oldest run: a reader that stops early never sees it.
        let db = raw_db(dir.path());
        let runs = db.cf_handle("runs").unwrap();
        db.put_cf(runs, format!("{:020}", 1), b"not a run").unwrap();
    }
    let catalog = open(dir.path());
    let newest: Vec<u64> = catalog.runs_newest_first("a").take(2).map(|r| r.unwrap().id).collect();
    assert_eq!(newest, vec![5, 3], "a's runs, newest first, not b's nor a2's");
    assert!(
        catalog.runs_newest_first("a").nth(2).unwrap().is_err(),
        "the third is the damaged one"
    );
    let ids = |job| {
        catalog
            .runs_newest_first(job)
            .map(|r| r.unwrap().id)
            .collect::<Vec<_>>()
    };
    assert_eq!((ids("b"), ids("a2"), ids("nobody")), (vec![4, 2], vec![6], vec![]));
    // One cursor over many jobs, in any order, gives each job the same.
    let mut cursor = catalog.run_cursor();
    let mut ids = |job| {
        cursor
            .newest_first(job)
            .take(2)
            .map(|r| r.unwrap().id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (ids("b"), ids("nobody"), ids("a"), ids("a2"), ids("b")),
        (vec![4, 2], vec![], vec![5, 3], vec![6], vec![4, 2])
    );
}

#[test]
fn pruning_removes_runs_from_their_jobs_index() {
    let dir = tempfile::tempdir().unwrap();
    interleaved_runs(dir.path());
    let catalog = open(dir.path());
    for mut run in catalog.runs(None).unwrap() {
        run.status = RunStatus::Succeeded;
        catalog.finish_run(&run, None).unwrap();
    }
    assert_eq!(catalog.prune_runs("a", 1).unwrap(), 2);
    let ids = |job| {
        catalog
            .runs(Some(job))
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!((ids("a"), ids("b")), (vec![5], vec![2, 4]));
    drop(catalog);
    let db = raw_db(dir.path());
    let index = db.cf_handle("run_index").unwrap();
    let entries = db.iterator_cf(index, rocksdb::IteratorMode::Start).count();
    assert_eq!(entries, 3, "pruned runs leave no index entries");
}

#[test]
fn a_layout_1_catalog_gets_its_runs_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    interleaved_runs(dir.path());
    {
        // What layout 1 wrote: runs by id only, no run index.
        let db = raw_db(dir.path());
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(meta, "schema_version", "1").unwrap();
        drop(db);
        let mut db = raw_db(dir.path());
        db.drop_cf("run_index").unwrap();
    }
    {
        let catalog = open(dir.path());
        let ids = |job| {
            catalog
                .runs(Some(job))
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!((ids("a"), ids("b")), (vec![1, 3, 5], vec![2, 4]));
        assert_eq!(catalog.start_run("b", RunTrigger::Manual).unwrap().id, 6);
        assert_eq!(ids("b"), vec![2, 4, 6]);
    }
    let db = raw_db(dir.path());
    let meta = db.cf_handle("meta").unwrap();
    assert_eq!(
        db.get_cf(meta, "schema_version").unwrap().as_deref(),
        Some(SCHEMA_VERSION.to_string().as_bytes())
    );
}

#[test]
fn schema_changes_are_saved_with_the_jobs_columns_and_outlive_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "j");
    let column = sluice_catalog::JobColumn {
        name: "extra".into(),
        source_type: "text".into(),
        source_arrow: "Utf8".into(),
        arrow: "Utf8".into(),
        tag: None,
        nullable: true,
        dropped: false,
    };
    let change = sluice_catalog::SchemaChangeRecord {
        job: "j".into(),
        run_id: 7,
        seq: 0,
        column: "extra".into(),
        kind: sluice_catalog::SchemaChangeKind::Added,
        before: None,
        after: Some("text".into()),
        at: Utc::now(),
    };
    catalog
        .record_schema_changes("j", std::slice::from_ref(&column), std::slice::from_ref(&change))
        .unwrap();
    assert_eq!(catalog.job("j").unwrap().columns, [column]);
    drop(catalog);
    let catalog = open(dir.path());
    catalog.drop_job("j", false).unwrap();
    assert_eq!(catalog.schema_changes().unwrap(), [change]);
}

#[test]
fn cdc_state_survives_reopen_and_goes_with_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let state = CdcState {
        phase: CdcPhase::Snapshotting { run: 3 },
        slot: Some("sluice_0123abcd_a_1a2b3c4d".into()),
        publication: Some("sluice_0123abcd_a_1a2b3c4d".into()),
        created_publication: true,
        ..CdcState::new("a")
    };
    {
        let catalog = open_with_job(dir.path(), "a");
        assert_eq!(catalog.cdc_state("a").unwrap(), None);
        assert!(catalog.set_cdc_state(&state).unwrap());
        assert!(
            !catalog.set_cdc_state(&CdcState::new("nope")).unwrap(),
            "no state for a job that does not exist"
        );
    }
    let catalog = open(dir.path());
    assert_eq!(catalog.cdc_state("a").unwrap(), Some(state));
    assert_eq!(catalog.cdc_state("nope").unwrap(), None);
    catalog.drop_job("a", false).unwrap();
    assert_eq!(catalog.cdc_state("a").unwrap(), None, "dropped with its job");
}

#[test]
fn a_cdc_state_update_changes_only_what_it_sets_on_the_state_saved_last() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "a");
    assert!(
        !catalog.update_cdc_state("a", |s| s.lag_bytes = Some(1)).unwrap(),
        "no state to update yet"
    );
    let saved = CdcState {
        phase: CdcPhase::Streaming,
        position: Some("{\"lsn\":\"0/10\"}".into()),
        ..CdcState::new("a")
    };
    assert!(catalog.set_cdc_state(&saved).unwrap());
    assert!(catalog.update_cdc_state("a", |s| s.lag_bytes = Some(42)).unwrap());
    assert_eq!(
        catalog.cdc_state("a").unwrap(),
        Some(CdcState {
            lag_bytes: Some(42),
            ..saved
        })
    );
    assert!(!catalog.update_cdc_state("nope", |s| s.lag_bytes = Some(1)).unwrap());
    catalog.drop_job("a", false).unwrap();
    assert!(!catalog.update_cdc_state("a", |s| s.lag_bytes = Some(1)).unwrap());
    assert_eq!(
        catalog.cdc_state("a").unwrap(),
        None,
        "a dropped job's state does not come back"
    );
}

fn alert(name: &str, event: AlertEvent, target: Option<&str>, secret: Option<&str>) -> AlertRecord {
    AlertRecord {
        name: name.into(),
        event,
        target: target.map(Into::into),
        webhook_url: "https://hooks.example.com/x".into(),
        secret_header: secret.map(|s| SecretHeader {
            header: "X-Token".into(),
            secret: s.into(),
        }),
        created_at: Utc::now(),
    }
}

#[test]
fn alerts_need_their_target_and_secret_and_keep_the_secret_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "orders");
    let refused = |record: AlertRecord| catalog.create_alert(&record, false).unwrap_err().to_string();
    assert_eq!(
        refused(alert("a", AlertEvent::JobFailure, Some("nope"), None)),
        "ETL job \"nope\" does not exist"
    );
    assert_eq!(
        refused(alert("a", AlertEvent::ConnectionFailed, Some("orders"), None)),
        "connection \"orders\" does not exist"
    );
    assert_eq!(
        refused(alert("a", AlertEvent::JobFailure, None, Some("token"))),
        "secret \"token\" does not exist"
    );
    assert!(catalog.alerts().unwrap().is_empty());

    catalog
        .create_secret("token", &SecretValue::new("t0k3n"), false)
        .unwrap();
    let pager = alert("a", AlertEvent::JobFailure, Some("orders"), Some("token"));
    assert!(catalog.create_alert(&pager, false).unwrap());
    assert!(!catalog.create_alert(&pager, true).unwrap(), "IF NOT EXISTS");
    assert_eq!(refused(pager.clone()), "alert \"a\" already exists");
    assert_eq!(
        catalog.drop_secret("token", false).unwrap_err().to_string(),
        "cannot drop secret \"token\" because alerts depend on it: \"a\""
    );
    drop(catalog);
    let catalog = open(dir.path());
    assert_eq!(catalog.alerts().unwrap(), vec![pager]);
    assert!(!all_files_contain(dir.path(), b"t0k3n"), "the header's value is sealed");
    assert!(catalog.drop_alert("a", false).unwrap());
    assert!(!catalog.drop_alert("a", true).unwrap());
    assert!(catalog.drop_secret("token", false).unwrap());
}

#[test]
fn an_incident_stays_open_until_closed_and_goes_with_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_with_job(dir.path(), "orders");
    let incident = Incident {
        subject: Subject::Job,
        name: "orders".into(),
        key: "job/orders/run/7".into(),
        opened_at: Utc::now(),
        run_id: Some(7),
    };
    catalog.open_incident(&incident).unwrap();
    assert_eq!(
        catalog.incident(Subject::Job, "orders").unwrap(),
        Some(incident.clone())
    );
    assert_eq!(catalog.incident(Subject::Connection, "orders").unwrap(), None);
    assert_eq!(
        catalog.close_incident(Subject::Job, "orders").unwrap(),
        Some(incident.clone())
    );
    assert_eq!(catalog.close_incident(Subject::Job, "orders").unwrap(), None);

    catalog.open_incident(&incident).unwrap();
    catalog.drop_job("orders", false).unwrap();
    assert_eq!(
        catalog.incident(Subject::Job, "orders").unwrap(),
        None,
        "dropped with its job"
    );
}

fn role(name: &str) -> RoleRecord {
    RoleRecord {
        name: name.into(),
        login: true,
        verifier: Some(AdminCredentials::from_salted_password(name, &[1, 2], 4096, &[3; 32])),
        created_at: Utc::now(),
    }
}

fn grant(role: &str, privilege: Privilege) -> GrantRecord {
    GrantRecord {
        database: "sluice".into(),
        role: role.into(),
        privilege,
        granted_by: "admin".into(),
        granted_at: Utc::now(),
    }
}

#[test]
fn grants_follow_their_role_through_renames_and_drops() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    catalog.create_role(&role("alice")).unwrap();
    assert!(matches!(
        catalog.create_role(&role("alice")),
        Err(CatalogError::AlreadyExists {
            kind: ObjectKind::Role,
            ..
        })
    ));
    assert!(matches!(
        catalog.grant(&grant("ghost", Privilege::Usage)),
        Err(CatalogError::NotFound {
            kind: ObjectKind::Role,
            ..
        })
    ));
    assert!(catalog.grant(&grant("alice", Privilege::Usage)).unwrap());
    assert!(!catalog.grant(&grant("alice", Privilege::Usage)).unwrap());
    assert!(catalog.grant(&grant("alice", Privilege::Operate)).unwrap());
    assert_eq!(catalog.privilege("sluice", "alice").unwrap(), Some(Privilege::Operate));
    assert_eq!(catalog.privilege("other", "alice").unwrap(), None);
    assert!(catalog.revoke("sluice", "alice", Privilege::Operate).unwrap());
    assert!(!catalog.revoke("sluice", "alice", Privilege::Operate).unwrap());
    assert_eq!(catalog.privilege("sluice", "alice").unwrap(), Some(Privilege::Usage));

    catalog.update_role("alice", &role("alicia")).unwrap();
    assert!(catalog.role("alice").unwrap().is_none());
    assert_eq!(catalog.privilege("sluice", "alicia").unwrap(), Some(Privilege::Usage));
    assert_eq!(catalog.privilege("sluice", "alice").unwrap(), None);
    drop(catalog);
    let catalog = open(dir.path());
    let names: Vec<String> = catalog.roles().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["alicia"]);
    assert!(catalog.drop_role("alicia", false).unwrap());
    assert!(catalog.grants().unwrap().is_empty());
    assert!(!catalog.drop_role("alicia", true).unwrap());
}

#[test]
fn the_audit_trail_keeps_the_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    let record = |n: u64| AuditRecord {
        id: 0,
        at: Utc::now(),
        role: "alice".into(),
        database: "sluice".into(),
        statement: "RUN ETL JOB".into(),
        object: Some(format!("job{n}")),
        outcome: "ok".into(),
    };
    for n in 1..=5 {
        assert_eq!(catalog.record_audit(&record(n), 3).unwrap(), n);
    }
    let kept: Vec<_> = catalog.audit().unwrap().into_iter().map(|a| (a.id, a.object)).collect();
    assert_eq!(
        kept,
        [
            (3, Some("job3".into())),
            (4, Some("job4".into())),
            (5, Some("job5".into()))
        ]
    );
    // Keeping fewer from now on deletes the older ones at the next record.
    assert_eq!(catalog.record_audit(&record(6), 1).unwrap(), 6);
    let kept: Vec<_> = catalog.audit().unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(kept, [6]);
}

#[test]
fn namespaces_keep_jobs_runs_and_tables_apart_and_the_default_keys_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let default = open_with_job(dir.path(), "j");
        default.create_namespace("model_5", false).unwrap();
        let model_5 = default.namespace("model_5").unwrap();
        // Same connection, job and destination table names: no clash.
        create_shop(&model_5, "pw5");
        model_5.create_job(&job("j", "shop")).unwrap();
        let first = default.start_run("j", RunTrigger::Manual).unwrap();
        let second = model_5.start_run("j", RunTrigger::Manual).unwrap();
        assert!(second.id > first.id, "run ids are unique across namespaces");
        let ids = |c: &Catalog| c.runs(Some("j")).unwrap().iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(&default), [first.id]);
        assert_eq!(ids(&model_5), [second.id]);
        assert_eq!(default.runs(None).unwrap().len(), 1);
        let newest: Vec<u64> = model_5.runs_newest_first("j").map(|r| r.unwrap().id).collect();
        assert_eq!(newest, [second.id]);
        assert_eq!(
            model_5.table_owner(&job("j", "shop").destination).unwrap().as_deref(),
            Some("j")
        );
        default.drop_job("j", false).unwrap();
        assert_eq!(
            model_5.jobs().unwrap().len(),
            1,
            "a drop in one namespace leaves the other"
        );
    }
    // The default namespace's keys are stored as before namespaces; the
    // other's carry the 0xFF name NUL prefix.
    let db = raw_db(dir.path());
    let keys: Vec<Vec<u8>> = db
        .iterator_cf(db.cf_handle("connections").unwrap(), rocksdb::IteratorMode::Start)
        .map(|item| item.unwrap().0.into_vec())
        .collect();
    assert_eq!(keys, [b"shop".to_vec(), b"\xffmodel_5\0shop".to_vec()]);
}
