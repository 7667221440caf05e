//! The PostgreSQL change source (issue #22, docs/design/cdc.md steps 2-3)
//! through the engine's API, against a real PostgreSQL with
//! wal_level=logical: the set-up checks with their SQLSTATEs; the first
//! load read in the slot's exported snapshot plus the decoded stream equal
//! the source under inserts, updates (key changes, TOASTed values left
//! unchanged) and deletes in small and large transactions; a restart from
//! the last confirmed position re-delivers exactly the transactions after
//! it; release drops the slot and publication.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::util::display::array_value_to_string;
use futures::TryStreamExt;
use sluice_catalog::{Catalog, CdcMode, CdcState, MasterKey, OptionValue};
use sluice_engine::cdc::{OP_COLUMN, UNCHANGED_COLUMN};
use sluice_engine::contract::{
    Capture, CdcError, ChangeEvent, ChangeSource, ChangeStream, Position, ScanRequest, Source, TableRef,
};
use sluice_engine::{ConnectionManager, CreateConnection};

use crate::common::PgServer;

const ROLE: &str = "cdc_owner";
const PASSWORD: &str = "cdc_pw_123";

/// A catalog with connection `pg` to `pg` as `user`, opened as a source and
/// as a change source.
struct Setup {
    catalog: Arc<Catalog>,
    source: Arc<dyn Source>,
    changes: Arc<dyn ChangeSource>,
    _dir: tempfile::TempDir,
}

async fn setup(pg: &PgServer, user: &str, password: &str) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = MasterKey::from_hex(&"5a".repeat(32)).expect("key");
    let catalog = Arc::new(Catalog::open(&dir.path().join("catalog"), key).expect("open catalog"));
    let manager = ConnectionManager::new(catalog.clone(), Duration::from_secs(10));
    let text = |s: &str| OptionValue::Text(s.to_owned());
    let options = BTreeMap::from([
        ("host".to_owned(), text(&pg.host())),
        ("port".to_owned(), OptionValue::Integer(i64::from(pg.port))),
        ("database".to_owned(), text(&pg.db)),
        ("user".to_owned(), text(user)),
        ("password".to_owned(), text(password)),
        ("sslmode".to_owned(), text("disable")),
    ]);
    manager
        .create(CreateConnection {
            name: "pg".into(),
            type_name: "postgres".into(),
            options,
            if_not_exists: false,
            validate: true,
        })
        .await
        .expect("create connection");
    Setup {
        source: manager.source("pg").expect("a source"),
        changes: manager.change_source("pg").expect("a change source"),
        catalog,
        _dir: dir,
    }
}

fn table(name: &str) -> TableRef {
    TableRef {
        schema: "public".into(),
        name: name.into(),
    }
}

async fn capture(setup: &Setup, name: &str, mode: CdcMode, parallel: Option<(usize, usize)>) -> Capture {
    Capture {
        description: setup.source.describe(&table(name)).await.expect("describe"),
        mode,
        parallel,
        batch_rows: 500,
        publication: None,
        server_id: None,
        every_column: true,
    }
}

fn role_sql(role: &str, replication: bool) -> String {
    let replication = if replication { "REPLICATION" } else { "" };
    format!("CREATE ROLE {role} LOGIN {replication} PASSWORD '{PASSWORD}'; GRANT CREATE ON DATABASE shop TO {role};")
}

async fn check_error(setup: &Setup, name: &str, mode: CdcMode) -> CdcError {
    setup
        .changes
        .check(&capture(setup, name, mode, None).await)
        .await
        .expect_err("the check refuses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_setup_check_names_what_to_change_with_its_sqlstate() {
    // wal_level.
    let replica = PgServer::start_with_settings(&["wal_level=replica"]);
    replica.psql_admin(&format!(
        "{} CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO {ROLE};",
        role_sql(ROLE, true)
    ));
    let err = check_error(&setup(&replica, ROLE, PASSWORD).await, "t", CdcMode::Merge).await;
    assert!(
        matches!(&err, CdcError::WalLevel { found } if found == "replica"),
        "{err}"
    );
    assert_eq!(err.sqlstate(), Some("55000"));
    assert!(err.hint().unwrap().contains("wal_level = logical"));
    drop(replica);

    let pg = PgServer::start_with_settings(&["max_replication_slots=1"]);
    pg.psql_admin(&format!(
        "{} {} CREATE TABLE t (id int PRIMARY KEY, v text); ALTER TABLE t OWNER TO {ROLE}; \
         CREATE TABLE keyless (v text); ALTER TABLE keyless OWNER TO {ROLE}; \
         CREATE TABLE full_identity (v text); ALTER TABLE full_identity REPLICA IDENTITY FULL; \
         ALTER TABLE full_identity OWNER TO {ROLE}; \
         CREATE TABLE nothing (id int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING; \
         ALTER TABLE nothing OWNER TO {ROLE}; \
         CREATE TABLE not_mine (id int PRIMARY KEY);",
        role_sql(ROLE, true),
        role_sql("plain", false)
    ));

    // The REPLICATION privilege.
    let plain = setup(&pg, "plain", PASSWORD).await;
    let err = check_error(&plain, "t", CdcMode::Merge).await;
    assert!(
        matches!(&err, CdcError::NoReplicationPrivilege { role } if role == "plain"),
        "{err}"
    );
    assert_eq!(err.sqlstate(), Some("42501"));
    assert!(err.hint().unwrap().contains("ALTER ROLE \"plain\" REPLICATION"));

    // A key: MERGE needs one; REPLICA IDENTITY FULL serves HISTORY only;
    // NOTHING serves neither.
    let owner = setup(&pg, ROLE, PASSWORD).await;
    let err = check_error(&owner, "keyless", CdcMode::Merge).await;
    assert!(matches!(&err, CdcError::NoKey { nothing: false, .. }), "{err}");
    assert_eq!(err.sqlstate(), Some("42P10"));
    assert!(
        err.hint().unwrap().contains("REPLICA IDENTITY FULL"),
        "{:?}",
        err.hint()
    );
    let err = check_error(&owner, "keyless", CdcMode::History).await;
    assert_eq!(
        err.sqlstate(),
        Some("42P10"),
        "the source refuses its updates once published"
    );
    let err = check_error(&owner, "full_identity", CdcMode::Merge).await;
    assert_eq!(err.sqlstate(), Some("42P10"));
    let history = capture(&owner, "full_identity", CdcMode::History, None).await;
    owner
        .changes
        .check(&history)
        .await
        .expect("HISTORY with the whole row as identity");
    let err = check_error(&owner, "nothing", CdcMode::History).await;
    assert!(matches!(&err, CdcError::NoKey { nothing: true, .. }), "{err}");
    assert!(err.to_string().contains("REPLICA IDENTITY NOTHING"), "{err}");

    // Ownership, to create the publication.
    let err = check_error(&owner, "not_mine", CdcMode::Merge).await;
    assert!(matches!(&err, CdcError::NotTableOwner { .. }), "{err}");
    assert_eq!(err.sqlstate(), Some("42501"));
    assert!(err.hint().unwrap().contains("CREATE PUBLICATION"));

    // A free slot.
    let merge = capture(&owner, "t", CdcMode::Merge, None).await;
    owner.changes.check(&merge).await.expect("everything in place");
    pg.psql_admin("SELECT pg_create_logical_replication_slot('someone_else', 'pgoutput')");
    let err = owner.changes.check(&merge).await.expect_err("no slot left");
    assert!(matches!(&err, CdcError::NoFreeSlot { max: 1 }), "{err}");
    assert_eq!(err.sqlstate(), Some("53400"));
    assert!(err.hint().unwrap().contains("max_replication_slots"));
}

/// One row as text, by column name.
type Row = BTreeMap<String, Option<String>>;

fn rows_of(batch: &RecordBatch, columns: &[String]) -> Vec<Row> {
    (0..batch.num_rows())
        .map(|row| {
            columns
                .iter()
                .map(|name| {
                    let array = batch.column_by_name(name).expect("column");
                    let value = array.is_valid(row).then(|| array_value_to_string(array, row).unwrap());
                    (name.clone(), value)
                })
                .collect()
        })
        .collect()
}

fn id_of(row: &Row) -> i64 {
    row["id"].as_deref().expect("an id").parse().expect("a number")
}

/// The table as the engine's own scan reads it (binary COPY), by id.
async fn source_rows(setup: &Setup, capture: &Capture, columns: &[String]) -> BTreeMap<i64, Row> {
    let request = ScanRequest::every_column(&capture.description);
    let batches: Vec<RecordBatch> = setup
        .source
        .scan(&capture.description, &request)
        .await
        .expect("scan")
        .try_collect()
        .await
        .expect("rows");
    batches
        .iter()
        .flat_map(|b| rows_of(b, columns))
        .map(|row| (id_of(&row), row))
        .collect()
}

/// What a destination does with change rows, in memory: inserts and
/// updates upsert (keeping the stored value of each column named in
/// `_sluice_unchanged`), deletes delete. The insert half of a key change
/// comes right after its delete half and takes unchanged values from it.
#[derive(Default)]
struct Replica {
    rows: BTreeMap<i64, Row>,
    last_deleted: Option<Row>,
}

impl Replica {
    fn apply(&mut self, batch: &RecordBatch, columns: &[String]) {
        let ops = batch.column_by_name(OP_COLUMN).unwrap().as_string::<i32>();
        let unchanged = batch.column_by_name(UNCHANGED_COLUMN).unwrap().as_list::<i32>();
        for (i, mut row) in rows_of(batch, columns).into_iter().enumerate() {
            let kept: Vec<String> = if unchanged.is_valid(i) {
                let names = unchanged.value(i);
                names.as_string::<i32>().iter().map(|n| n.unwrap().to_owned()).collect()
            } else {
                Vec::new()
            };
            let id = id_of(&row);
            match ops.value(i) {
                // Gone already when a re-delivered delete is applied again.
                "delete" => self.last_deleted = self.rows.remove(&id),
                op @ ("insert" | "update") => {
                    let before = match op {
                        "update" => self.rows.get(&id).cloned(),
                        _ => self.last_deleted.take(),
                    };
                    for name in &kept {
                        let before = before.as_ref().expect("an unchanged value has a stored row");
                        row.insert(name.clone(), before[name].clone());
                    }
                    self.rows.insert(id, row);
                }
                other => panic!("unexpected op {other}"),
            }
        }
    }
}

/// The next event other than Idle, within 30 s.
async fn next(stream: &mut Box<dyn ChangeStream>) -> ChangeEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream stays up")
            .expect("the stream has not ended");
        if !matches!(event, ChangeEvent::Idle { .. }) {
            return event;
        }
    }
}

/// Reads until marker `prefix`, applying rows; returns each transaction's
/// key and resume position.
async fn drain(
    stream: &mut Box<dyn ChangeStream>,
    replica: &mut Replica,
    columns: &[String],
    prefix: &str,
) -> Vec<(Position, Position)> {
    let (mut transactions, mut open) = (Vec::new(), None);
    loop {
        match next(stream).await {
            ChangeEvent::Begin { key, .. } => open = Some(key),
            ChangeEvent::Rows(batch) => replica.apply(&batch, columns),
            ChangeEvent::Commit { resume } => transactions.push((open.take().expect("begun"), resume)),
            ChangeEvent::Marker { prefix: p, .. } if p == prefix => return transactions,
            other => panic!("unexpected event {other:?}"),
        }
    }
}

fn slot_sql(pg: &PgServer, sql: &str) -> String {
    pg.psql_admin(sql).trim().to_owned()
}

const WORKLOAD: [&str; 5] = [
    // A small transaction.
    "BEGIN; INSERT INTO items (id, n, big) VALUES (5001, 1, 'small'); \
     UPDATE items SET n = -5 WHERE id = 5; DELETE FROM items WHERE id = 7; COMMIT;",
    // A large one: thousands of inserts, updates leaving TOASTed values unchanged, deletes.
    "BEGIN; INSERT INTO items SELECT g, g % 7, CASE WHEN g % 50 = 0 THEN big_text(g) END, g * 1.25, \
       ARRAY['x' || g, ''], '2024-01-01'::timestamptz + g * interval '1 minute', \
       jsonb_build_object('g', g), int4send(g), make_interval(days => g), g % 2 = 0, g / 3.0, \
       '2024-01-01'::date + g FROM generate_series(10000, 14000) g; \
     UPDATE items SET n = n + 100 WHERE id % 3 = 0; DELETE FROM items WHERE id % 11 = 0; COMMIT;",
    // Key changes of rows with TOASTed values.
    "UPDATE items SET id = id + 100000 WHERE id IN (20, 40, 60);",
    // TOASTed values left unchanged, and one changed.
    "BEGIN; UPDATE items SET n = 42 WHERE id IN (80, 100); UPDATE items SET big = 'replaced' WHERE id = 120; COMMIT;",
    "DELETE FROM items WHERE id BETWEEN 140 AND 160;",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_stream_equal_the_source_and_resume_after_the_confirmed_position() {
    let pg = PgServer::start();
    pg.psql_admin(&format!(
        "{} \
         CREATE FUNCTION big_text(seed int) RETURNS text LANGUAGE sql AS \
           $$ SELECT string_agg(md5((seed * 1000 + i)::text), '') FROM generate_series(1, 300) i $$; \
         CREATE TABLE items (id bigint PRIMARY KEY, n int, big text, price numeric(12,2), tags text[], \
           at timestamptz, doc jsonb, raw bytea, span interval, flag boolean, ratio float8, day date); \
         ALTER TABLE items ALTER big SET STORAGE EXTERNAL; \
         INSERT INTO items SELECT g, g, CASE WHEN g % 20 = 0 THEN big_text(g) END, g * 0.5, \
           ARRAY['a\"b', 'c,d', ''], '2024-06-01 12:00:00.123456+00'::timestamptz + g * interval '1 hour', \
           jsonb_build_object('k', g, 'l', jsonb_build_array(1, 'two')), '\\x00ff'::bytea || int4send(g), \
           interval '1 year 2 months 3 days 04:05:06.5' * g, g % 3 = 0, g / 7.0, '2000-02-29'::date + g \
           FROM generate_series(1, 2000) g; \
         ALTER TABLE items OWNER TO {ROLE};",
        role_sql(ROLE, true)
    ));
    let setup = setup(&pg, ROLE, PASSWORD).await;
    let capture = capture(&setup, "items", CdcMode::Merge, Some((0, 3))).await;
    let columns: Vec<String> = capture.description.columns.iter().map(|c| c.name.clone()).collect();
    setup.changes.check(&capture).await.expect("set up for CDC");

    let mut state = CdcState::new("items_job");
    setup
        .changes
        .prepare(&capture, setup.catalog.instance_id(), &mut state)
        .await
        .expect("prepare");
    let slot = state.slot.clone().expect("a slot name");
    let instance = &setup.catalog.instance_id()[..8];
    assert!(slot.starts_with(&format!("sluice_{instance}_items_job_")), "{slot}");
    assert!(state.created_publication);
    assert_eq!(
        slot_sql(
            &pg,
            &format!("SELECT count(*) FROM pg_publication WHERE pubname = '{slot}'")
        ),
        "1"
    );

    // The first load, read in the slot's snapshot while the workload runs.
    let (snapshot, start) = setup.changes.snapshot(&capture, &state).await.expect("snapshot");
    let Position::Postgres {
        end_lsn: consistent_point,
        ..
    } = start
    else {
        panic!("a PostgreSQL position")
    };
    for sql in WORKLOAD {
        pg.psql_admin(sql);
    }
    pg.psql_admin("SELECT pg_logical_emit_message(false, 'sluice.test.1', '')");
    let batches: Vec<RecordBatch> = snapshot.try_collect().await.expect("snapshot rows");
    let mut replica = Replica::default();
    for batch in &batches {
        for row in rows_of(batch, &columns) {
            replica.rows.insert(id_of(&row), row);
        }
    }
    assert_eq!(replica.rows.len(), 2000, "the snapshot is as of the slot");
    assert!(replica.rows.contains_key(&7) && !replica.rows.contains_key(&5001));

    // The stream from the slot's consistent point.
    let mut stream = setup.changes.stream(&capture, &state, &start).await.expect("stream");
    let transactions = drain(&mut stream, &mut replica, &columns, "sluice.test.1").await;
    assert_eq!(transactions.len(), WORKLOAD.len(), "{transactions:?}");
    for (key, _) in &transactions {
        assert!(!start.contains(key), "every streamed transaction is after the snapshot");
    }
    let source = source_rows(&setup, &capture, &columns).await;
    assert_eq!(replica.rows.len(), source.len());
    for (id, row) in &source {
        assert_eq!(replica.rows.get(id), Some(row), "row {id}");
    }

    // Nothing is confirmed until the caller says so; then the slot moves.
    let confirmed = || {
        slot_sql(
            &pg,
            &format!("SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = '{slot}'"),
        )
    };
    assert_eq!(confirmed(), consistent_point.to_string());
    let (_, committed) = transactions[2].clone();
    stream.confirm(&committed);
    let Position::Postgres { end_lsn, .. } = committed else {
        unreachable!()
    };
    let mut moved = String::new();
    for _ in 0..100 {
        moved = confirmed();
        if moved == end_lsn.to_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(moved, end_lsn.to_string());
    tokio::time::timeout(Duration::from_secs(30), stream.close())
        .await
        .expect("closed within 30 s")
        .expect("close");

    // A restart from the confirmed position re-delivers exactly the
    // transactions after it, and applying them again changes nothing.
    let mut again = setup
        .changes
        .stream(&capture, &state, &committed)
        .await
        .expect("stream again");
    let redelivered = drain(&mut again, &mut replica, &columns, "sluice.test.1").await;
    assert_eq!(redelivered, transactions[3..]);
    for (key, _) in &redelivered {
        assert!(!committed.contains(key));
    }
    for (key, _) in &transactions[..3] {
        assert!(committed.contains(key), "the skip rule holds what was committed");
    }
    for (id, row) in &source {
        assert_eq!(replica.rows.get(id), Some(row), "row {id} after re-delivery");
    }
    tokio::time::timeout(Duration::from_secs(30), again.close())
        .await
        .expect("closed within 30 s")
        .expect("close");

    // Release drops the slot and the publication.
    setup.changes.release(&state).await.expect("release");
    assert_eq!(
        slot_sql(
            &pg,
            &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'")
        ),
        "0"
    );
    assert_eq!(
        slot_sql(
            &pg,
            &format!("SELECT count(*) FROM pg_publication WHERE pubname = '{slot}'")
        ),
        "0"
    );
    setup.changes.release(&state).await.expect("releasing twice is fine");
}
