//! The replication transport that change data capture (issue #22,
//! docs/design/cdc.md) is to be built on, checked against a real
//! PostgreSQL before any engine code depends on it: `pgwire-replication`
//! opens a gated session that creates a slot exporting a snapshot; a normal
//! session reads exactly the rows before the slot through that snapshot;
//! the stream then delivers exactly the transactions committed after it,
//! which `pg_walstream`'s parser decodes (inserts, updates, deletes with
//! their text values, and a logical message emitted by a non-superuser
//! REPLICATION role); and acknowledging a commit moves the slot's
//! `confirmed_flush_lsn`, which is what lets the server recycle WAL.

use std::collections::BTreeMap;
use std::time::Duration;

use pg_walstream::{LogicalReplicationMessage, LogicalReplicationParser, TupleData};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use tokio_postgres::NoTls;

use crate::common::PgServer;

const ROLE: &str = "cdc_reader";
const PASSWORD: &str = "cdc_pw_123";
const SLOT: &str = "sluice_spike";
const PUBLICATION: &str = "sluice_spike_pub";

fn text(tuple: &TupleData) -> Vec<Option<String>> {
    tuple.columns.iter().map(|c| c.as_string()).collect()
}

/// The next event that is not a keepalive, within 20 seconds.
async fn next(client: &mut ReplicationClient) -> ReplicationEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), client.recv())
            .await
            .expect("an event within 20 s")
            .expect("the stream stays up")
            .expect("the stream has not ended");
        if !matches!(event, ReplicationEvent::KeepAlive { .. }) {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_snapshot_and_its_stream_together_hold_every_row_once() {
    let pg = PgServer::start();
    pg.psql_admin(&format!(
        "CREATE ROLE {ROLE} LOGIN REPLICATION PASSWORD '{PASSWORD}'; \
         CREATE TABLE items (id int PRIMARY KEY, name text); \
         GRANT SELECT ON items TO {ROLE}; \
         INSERT INTO items SELECT g, 'before ' || g FROM generate_series(1, 100) g; \
         CREATE PUBLICATION {PUBLICATION} FOR TABLE items;"
    ));
    let config = ReplicationConfig::new("127.0.0.1", ROLE, PASSWORD, pg.db.as_str(), SLOT, PUBLICATION)
        .with_port(pg.port)
        .with_tls(TlsConfig::disabled())
        .with_status_interval(Duration::from_millis(200));

    // The slot and its snapshot, on the gated session.
    let mut replication = ReplicationClient::connect_gated(config).await.unwrap();
    let created = replication
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT \"{SLOT}\" LOGICAL pgoutput EXPORT_SNAPSHOT"
        ))
        .await
        .unwrap();
    let cell = |i: usize| String::from_utf8(created[0][i].clone().unwrap().to_vec()).unwrap();
    let (consistent_point, snapshot) = (Lsn::parse(&cell(1)).unwrap(), cell(2));

    // Committed after the slot: in the stream, not in the snapshot.
    pg.psql_admin(
        "INSERT INTO items VALUES (101, 'after'); \
         UPDATE items SET name = 'changed' WHERE id = 5; \
         DELETE FROM items WHERE id = 7;",
    );

    // The snapshot, read by a normal session while the gated one idles.
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(pg.port)
        .user(ROLE)
        .password(PASSWORD)
        .dbname(&pg.db);
    let (reader, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    reader
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'"
        ))
        .await
        .unwrap();
    let mut table: BTreeMap<i32, String> = reader
        .query("SELECT id, name FROM items", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    reader.batch_execute("COMMIT").await.unwrap();
    assert_eq!(table.len(), 100, "the snapshot is as of the slot");
    assert_eq!(table[&5], "before 5");

    // A logical message from the non-superuser REPLICATION role.
    reader
        .batch_execute("SELECT pg_logical_emit_message(false, 'sluice', 'drain')")
        .await
        .unwrap();

    // The stream from the slot's consistent point, applied to the copy.
    replication.start().await.unwrap();
    replication.wait_started().await.unwrap();
    let mut parser = LogicalReplicationParser::with_protocol_version(1);
    let (mut commits, mut messages, mut last_commit) = (0, Vec::new(), Lsn(0));
    while commits < 3 || messages.is_empty() {
        match next(&mut replication).await {
            ReplicationEvent::Begin { final_lsn, .. } => assert!(final_lsn > consistent_point),
            ReplicationEvent::Commit { end_lsn, .. } => {
                commits += 1;
                last_commit = end_lsn;
            }
            ReplicationEvent::Message { prefix, content, .. } => messages.push((prefix, content.to_vec())),
            ReplicationEvent::XLogData { data, .. } => match parser.parse_wal_message_bytes(data).unwrap().message {
                LogicalReplicationMessage::Insert { tuple, .. } => {
                    let values = text(&tuple);
                    table.insert(
                        values[0].as_deref().unwrap().parse().unwrap(),
                        values[1].clone().unwrap(),
                    );
                }
                LogicalReplicationMessage::Update { new_tuple, .. } => {
                    let values = text(&new_tuple);
                    table.insert(
                        values[0].as_deref().unwrap().parse().unwrap(),
                        values[1].clone().unwrap(),
                    );
                }
                LogicalReplicationMessage::Delete {
                    old_tuple, key_type, ..
                } => {
                    assert_eq!(key_type, 'K', "the primary key identifies the row");
                    table.remove(&text(&old_tuple)[0].as_deref().unwrap().parse().unwrap());
                }
                LogicalReplicationMessage::Relation { relation_name, .. } => assert_eq!(&*relation_name, "items"),
                other => panic!("unexpected message {other:?}"),
            },
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(messages, [("sluice".to_owned(), b"drain".to_vec())]);

    // Snapshot plus stream equals the source.
    let source: BTreeMap<i32, String> = pg
        .psql_admin("SELECT id || '|' || name FROM items")
        .lines()
        .map(|line| {
            let (id, name) = line.split_once('|').unwrap();
            (id.parse().unwrap(), name.to_owned())
        })
        .collect();
    assert_eq!(table, source);

    // Acknowledging the last commit moves the slot's confirmed position.
    replication.update_applied_lsn(last_commit);
    let mut confirmed = Lsn(0);
    for _ in 0..100 {
        let text = pg.psql_admin(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        ));
        confirmed = Lsn::parse(text.trim()).unwrap();
        if confirmed >= last_commit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(confirmed >= last_commit, "{confirmed} < {last_commit}");
    replication.shutdown().await.unwrap();
    pg.psql_admin(&format!("SELECT pg_drop_replication_slot('{SLOT}')"));
}
