//! `CONTINUOUS` CDC jobs end to end (issue #22): the scheduler keeps one
//! stream per job open against a real PostgreSQL (wal_level=logical); it
//! commits micro-batches every `flush_interval` with no `RUN ETL JOB`.
//! `ALTER` restarts the stream, `PAUSE` stops it, `RESUME` catches up,
//! `RESYNC` and `DROP` stop it first, a shutdown ends it cleanly. Kill -9
//! at ten random points while a random workload runs (inserts, updates,
//! deletes, key changes, large out-of-line values left unchanged by later
//! updates, in transactions of 1 to 20 statements), each followed by a
//! restart, and five cuts of the streams' connections at the source, leave
//! the destination equal to the source with every change recorded once.
//! A stream whose slot a long-open transaction holds past
//! `max_retained_wal` gives the slot up and waits, failed, for `RESYNC`.
//! Each stream writes its beats on one session it keeps (no new session
//! at the source per beat), replaced when the source ends it, closed when
//! the stream ends. Inside a transaction block, `DROP` and `ALTER` keep
//! the stream stopped until the block ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::cdc_jobs::{assert_equal, big, cdc_state, generate_wal, slots, source, warehouse};
use crate::cdc_schema_changes::{self, Origin};
use crate::common::*;

const TABLE: &str = "CREATE TABLE items (id bigint PRIMARY KEY, name text, big text, qty int); \
                     ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL; \
                     INSERT INTO items VALUES (1, 'a', NULL, 1), (2, 'b', NULL, 2), (3, 'c', NULL, 3);";

/// Creates the table and two continuous jobs (the names `assert_equal`
/// compares) that commit every second, with `settings` (`, name = value`
/// ...) too.
async fn continuous_jobs(pg: &PgServer, sluice: &Sluice, settings: &str) -> Client {
    pg.psql_admin(TABLE);
    let client = sluice.client().await;
    create_shop_connection(&client, pg).await;
    client
        .batch_execute(&format!(
            "CREATE ETL JOB items_merge FROM shop.public.items INTO items_m CDC MERGE CONTINUOUS \
               WITH (flush_interval = '1 second'{settings}); \
             CREATE ETL JOB items_history FROM shop.public.items INTO items_h CDC HISTORY CONTINUOUS \
               WITH (flush_interval = '1 second'{settings});"
        ))
        .await
        .unwrap();
    client
}

/// Waits until both destinations equal the source (no run is asked for).
async fn until_equal(pg: &PgServer, client: &Client, step: &str) {
    cdc_schema_changes::until_equal(Origin::Pg(pg), client, "id, name, md5(big), qty", step).await;
}

/// Waits until `sql` returns `expected`.
async fn until(client: &Client, sql: &str, expected: &str) {
    wait_for(client, sql, Duration::from_secs(60), |value| value == expected).await;
}

pub(crate) const STREAMS: &str =
    "SELECT count(*) FROM sluice.runs WHERE status = 'running' AND trigger IN ('schedule', 'retry')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_jobs_stream_changes_and_stop_for_pause_alter_resync_shutdown_and_drop() {
    let pg = PgServer::start();
    let mut sluice = Sluice::start();
    let client = continuous_jobs(&pg, &sluice, "").await;

    // The scheduler takes the first load and keeps streaming: no RUN.
    until_equal(&pg, &client, "the first load").await;
    until(&client, STREAMS, "2").await;
    pg.psql_admin(&format!(
        "INSERT INTO items VALUES (4, 'd', {}, 4); \
         UPDATE items SET name = 'a2' WHERE id = 1; \
         UPDATE items SET id = 20, qty = 22 WHERE id = 2; \
         DELETE FROM items WHERE id = 3; \
         BEGIN; INSERT INTO items VALUES (5, 'e', NULL, 5); UPDATE items SET qty = 55, big = {} WHERE id = 5; COMMIT; \
         UPDATE items SET qty = 44 WHERE id = 4;",
        big('d'),
        big('e')
    ));
    until_equal(&pg, &client, "changes while streaming").await;
    assert_equal(&pg, &client, "changes while streaming").await;
    assert_eq!(one(&client, STREAMS).await, "2", "one stream per job, still open");
    // The stream's committed rows reach the metrics while it runs: the
    // 8 change rows (a key change is a delete and an insert).
    let metrics = sluice.metrics();
    let loaded = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"sluice_rows_loaded_total{namespace="sluice",job="items_history"} "#))
        .map(|v| v.trim().to_owned());
    assert_eq!(loaded.as_deref(), Some("8"), "{metrics}");

    // What SQL shows of a stream: its schedule, its lag once a beat came back.
    until(
        &client,
        "SELECT count(*) FROM sluice.jobs WHERE schedule = 'CONTINUOUS' AND lag_seconds < 30 AND next_run_at IS NULL \
         AND freshness < interval '30 seconds'",
        "2",
    )
    .await;
    let shown = rows(&client, "SHOW CREATE ETL JOB items_merge").await[0][1]
        .clone()
        .unwrap();
    assert!(
        shown.contains(" CDC MERGE CONTINUOUS WITH (") && shown.contains("flush_interval = '1 seconds'"),
        "{shown}"
    );
    // A stream is a run in progress: a manual run is refused.
    let message = expect_err(&client, "RUN ETL JOB items_merge", "55006").await;
    assert!(message.contains("items_merge"), "{message}");

    // ALTER restarts the stream with the change.
    let first = one(
        &client,
        "SELECT run_id FROM sluice.runs WHERE job = 'items_merge' AND status = 'running'",
    )
    .await;
    client
        .batch_execute("ALTER ETL JOB items_merge SET (flush_rows = 5)")
        .await
        .unwrap();
    until(
        &client,
        &format!("SELECT status FROM sluice.runs WHERE run_id = {first}"),
        "succeeded",
    )
    .await;
    until(&client, STREAMS, "2").await;
    pg.psql_admin("UPDATE items SET qty = 7 WHERE id = 1;");
    until_equal(&pg, &client, "after ALTER").await;

    // CREATE OR REPLACE with new settings restarts it the same way.
    let second = one(
        &client,
        "SELECT run_id FROM sluice.runs WHERE job = 'items_merge' AND status = 'running'",
    )
    .await;
    client
        .batch_execute(
            "CREATE OR REPLACE ETL JOB items_merge FROM shop.public.items INTO items_m CDC MERGE CONTINUOUS \
             WITH (flush_interval = '1 second', flush_rows = 50)",
        )
        .await
        .unwrap();
    until(
        &client,
        &format!("SELECT status FROM sluice.runs WHERE run_id = {second}"),
        "succeeded",
    )
    .await;
    until(&client, STREAMS, "2").await;

    // PAUSE stops it: a change waits; RESUME catches up.
    client.batch_execute("ALTER ETL JOB items_merge PAUSE").await.unwrap();
    until(&client, STREAMS, "1").await;
    pg.psql_admin("UPDATE items SET qty = 8 WHERE id = 1;");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        one(&client, "SELECT qty FROM warehouse.items_m WHERE id = 1").await,
        "7",
        "a paused job applies nothing"
    );
    client.batch_execute("ALTER ETL JOB items_merge RESUME").await.unwrap();
    until_equal(&pg, &client, "after RESUME").await;

    // RESYNC stops the stream, takes a fresh snapshot from a new slot, and
    // the stream starts again from there.
    let before = one(&client, "SELECT count(*) FROM sluice.runs WHERE job = 'items_history'").await;
    client.batch_execute("RESYNC ETL JOB items_history").await.unwrap();
    until(&client, STREAMS, "2").await;
    pg.psql_admin("DELETE FROM items WHERE id = 1;");
    until_equal(&pg, &client, "after RESYNC").await;
    let after: u64 = one(&client, "SELECT count(*) FROM sluice.runs WHERE job = 'items_history'")
        .await
        .parse()
        .unwrap();
    assert!(
        after >= before.parse::<u64>().unwrap() + 2,
        "the stopped stream, the resync, a new stream"
    );

    // A shutdown (SIGTERM) ends the streams cleanly; they start again with
    // the server and take up what was committed meanwhile.
    let streams = rows(
        &client,
        "SELECT run_id FROM sluice.runs WHERE status = 'running' ORDER BY run_id",
    )
    .await;
    assert_eq!(streams.len(), 2);
    assert!(sluice.terminate().success());
    pg.psql_admin("UPDATE items SET qty = 9 WHERE id = 4;");
    sluice.restart();
    let client = sluice.client().await;
    for stream in &streams {
        let run_id = stream[0].as_deref().unwrap();
        assert_eq!(
            one(
                &client,
                &format!("SELECT status FROM sluice.runs WHERE run_id = {run_id}")
            )
            .await,
            "succeeded",
            "run {run_id} stopped at shutdown"
        );
    }
    until_equal(&pg, &client, "after a restart").await;
    until(&client, STREAMS, "2").await;

    // DROP stops the stream and drops its slot.
    client.batch_execute("DROP ETL JOB items_history").await.unwrap();
    until(&client, STREAMS, "1").await;
    assert_eq!(
        one(
            &pg.client().await,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sluice_%'"
        )
        .await,
        "1",
        "the dropped job's slot is gone, the other job's is there"
    );

    // Only a CDC job can stream.
    let message = expect_err(
        &client,
        "CREATE ETL JOB snap FROM shop.public.items SNAPSHOT CONTINUOUS",
        "22023",
    )
    .await;
    assert!(message.contains("CDC"), "{message}");
    expect_err(
        &client,
        "CREATE ETL JOB snap FROM shop.public.items SNAPSHOT WITH (flush_interval = '5 seconds')",
        "22023",
    )
    .await;
    let message = expect_err(
        &client,
        "ALTER ETL JOB items_merge SET (flush_interval = '0 seconds')",
        "42601",
    )
    .await;
    assert!(message.contains("1 second to 1 hour"), "{message}");
    assert_eq!(warehouse(&client, "items_m").await, source(&pg).await);
}

/// A small deterministic generator (the seed is printed, so a failure can
/// be replayed).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// Seeded from the clock; the seed is printed and returned.
    pub(crate) fn from_clock() -> (Rng, u64) {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        println!("seed {seed}");
        (Rng(seed), seed)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One source transaction of `statements` random changes to `items`:
/// inserts, updates, deletes, large out-of-line values (which later
/// updates leave "unchanged" in the log) and key changes, each picking a
/// row among the first 50. Returns the change rows it made (what `HISTORY`
/// records: a key change is a delete and an insert).
pub(crate) async fn random_transaction(client: &Client, rng: &mut Rng, next_id: &mut i64, statements: u64) -> u64 {
    client.batch_execute("BEGIN").await.unwrap();
    let mut made = 0;
    for _ in 0..statements {
        made += match rng.below(6) {
            0 | 1 => {
                *next_id += 1;
                client
                    .execute(
                        &format!("INSERT INTO items VALUES ({next_id}, 'n', NULL, {})", rng.below(1000)),
                        &[],
                    )
                    .await
                    .unwrap()
            }
            2 => client
                .execute(
                    &format!(
                        "UPDATE items SET qty = qty + 1 WHERE id = (SELECT id FROM items ORDER BY id \
                         OFFSET {} LIMIT 1)",
                        rng.below(50)
                    ),
                    &[],
                )
                .await
                .unwrap(),
            3 => client
                .execute(
                    &format!(
                        "DELETE FROM items WHERE id = (SELECT id FROM items ORDER BY id OFFSET {} LIMIT 1)",
                        rng.below(50)
                    ),
                    &[],
                )
                .await
                .unwrap(),
            // A large value stored out of line: later updates of the row
            // leave it "unchanged" in the log.
            4 => client
                .execute(
                    &format!(
                        "UPDATE items SET big = repeat(md5(random()::text), 200) WHERE id = (SELECT id FROM \
                         items ORDER BY id OFFSET {} LIMIT 1)",
                        rng.below(50)
                    ),
                    &[],
                )
                .await
                .unwrap(),
            // A key change: a delete and an insert in HISTORY.
            _ => {
                *next_id += 1;
                2 * client
                    .execute(
                        &format!(
                            "UPDATE items SET id = {next_id} WHERE id = (SELECT id FROM items ORDER BY id \
                             OFFSET {} LIMIT 1)",
                            rng.below(50)
                        ),
                        &[],
                    )
                    .await
                    .unwrap()
            }
        };
    }
    client.batch_execute("COMMIT").await.unwrap();
    made
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_cut_connections_at_random_points_while_streaming_equal_the_source() {
    let pg = PgServer::start();
    // A stream that fails while the killed one still holds its slot is
    // retried a second later.
    let mut sluice = Sluice::start_with(&["--retry-delay", "1"], &[]);
    let mut client = continuous_jobs(&pg, &sluice, "").await;
    until_equal(&pg, &client, "the first load").await;

    let (mut rng, _) = Rng::from_clock();
    let source_client = pg.client().await;
    // Change rows the workload made: what HISTORY must hold besides the
    // first load's 3 rows, each once.
    let mut changes = 0u64;
    let mut next_id = 100;
    for step in 0..15 {
        // A burst of transactions of 1 to 20 changes, with the kill somewhere
        // in it or after it.
        let kill_after = Duration::from_millis(200 + rng.below(1800));
        let started = Instant::now();
        while started.elapsed() < kill_after {
            let statements = 1 + rng.below(20);
            changes += random_transaction(&source_client, &mut rng, &mut next_id, statements).await;
            tokio::time::sleep(Duration::from_millis(rng.below(100))).await;
        }
        if step % 3 == 2 {
            // The source drops the streams' connections (as a network cut
            // or a failover would); they are retried.
            source_client
                .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
                .await
                .unwrap();
            println!("cut {step} after {kill_after:?}, {changes} changes so far");
        } else {
            sluice.kill9();
            println!("kill {step} after {kill_after:?}, {changes} changes so far");
            sluice.restart();
            client = sluice.client().await;
        }
    }
    until_equal(&pg, &client, "ten kills and five cuts while streaming").await;
    assert_equal(&pg, &client, "ten kills and five cuts while streaming").await;
    until(
        &client,
        "SELECT count(*) FROM warehouse.items_h",
        &(3 + changes).to_string(),
    )
    .await;
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM (SELECT _sluice_position, id FROM warehouse.items_h \
             GROUP BY _sluice_position, id HAVING count(*) > 1)"
        )
        .await,
        "0",
        "no change recorded twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_gives_up_a_slot_a_long_transaction_holds_past_max_retained_wal_and_resync_recovers() {
    let pg = PgServer::start();
    // Streams measure their slots at every beat; a stream the scheduler
    // retried would start again a second after it failed.
    let sluice = Sluice::start_with(
        &["--retry-delay", "1", "--retry-max-delay", "1"],
        &[("SLUICE_CDC_MEASURE_SECONDS", "0")],
    );
    let client = continuous_jobs(&pg, &sluice, ", max_retained_wal = '1 MB'").await;
    client
        .batch_execute(&format!(
            "CREATE ALERT failed ON JOB FAILURE NOTIFY WEBHOOK 'http://127.0.0.1:{}/hook'",
            free_port()
        ))
        .await
        .unwrap();
    until_equal(&pg, &client, "the first load").await;
    until(&client, STREAMS, "2").await;

    // A transaction left open holds the slots' restart point back while
    // the source writes more WAL than the limit.
    let long = pg.client().await;
    long.batch_execute("BEGIN; INSERT INTO items VALUES (100, 'long', NULL, 100);")
        .await
        .unwrap();
    pg.psql_admin("UPDATE items SET qty = 10 WHERE id = 1;");
    for _ in 0..5 {
        generate_wal(&pg);
    }
    for job in ["items_merge", "items_history"] {
        until(
            &client,
            &format!("SELECT cdc_state FROM sluice.jobs WHERE name = '{job}'"),
            "needs resync",
        )
        .await;
        let failed = rows(
            &client,
            &format!("SELECT trigger, error FROM sluice.runs WHERE job = '{job}' AND status = 'failed'"),
        )
        .await;
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0][0].as_deref(), Some("schedule"), "the stream's own run failed");
        let error = failed[0][1].clone().unwrap();
        assert!(
            error.contains("more than max_retained_wal (1 MB)") && error.contains(&format!("RESYNC ETL JOB {job}")),
            "{error}"
        );
    }
    assert_eq!(slots(&pg), "", "both slots were given up");
    // What streamed before the long transaction stays committed.
    assert_eq!(
        one(&client, "SELECT qty FROM warehouse.items_m WHERE id = 1").await,
        "10"
    );

    // The jobs wait for a resync: no stream is started again (its retry
    // would be due within a second), one alert per job, failing.
    let runs = "SELECT count(*) FROM sluice.runs";
    let before = one(&client, runs).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        one(&client, runs).await,
        before,
        "no run started while the jobs need a resync"
    );
    assert_eq!(one(&client, STREAMS).await, "0");
    assert_eq!(
        rows(
            &client,
            "SELECT subject FROM sluice.alert_deliveries WHERE event = 'JOB FAILURE' ORDER BY subject"
        )
        .await,
        [[Some("items_history".to_owned())], [Some("items_merge".to_owned())]]
    );
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.jobs WHERE health = 'failing'").await,
        "2"
    );

    // The long transaction commits; a resync takes it with a fresh
    // snapshot and the streams start again from the new slots.
    long.batch_execute("COMMIT").await.unwrap();
    pg.psql_admin("DELETE FROM items WHERE id = 2;");
    for job in ["items_merge", "items_history"] {
        client.batch_execute(&format!("RESYNC ETL JOB {job}")).await.unwrap();
        assert_eq!(cdc_state(&client, job).await, "streaming");
    }
    until(&client, STREAMS, "2").await;
    pg.psql_admin("UPDATE items SET qty = 101 WHERE id = 100;");
    until_equal(&pg, &client, "after the resync").await;
    assert_equal(&pg, &client, "after the resync").await;
    assert_eq!(
        one(&client, "SELECT name FROM warehouse.items_m WHERE id = 100").await,
        "long"
    );
    assert_eq!(slots(&pg).lines().count(), 2, "a new slot per job");
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.jobs WHERE health = 'healthy'").await,
        "2"
    );
}

/// Runs of `job` in progress, as another session sees them.
async fn running(client: &Client, job: &str) -> String {
    one(
        client,
        &format!("SELECT count(*) FROM sluice.runs WHERE job = '{job}' AND status = 'running'"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_transaction_block_drop_and_alter_keep_the_stream_stopped_until_the_block_ends() {
    let pg = PgServer::start();
    let sluice = Sluice::start();
    let client = continuous_jobs(&pg, &sluice, "").await;
    until_equal(&pg, &client, "the first load").await;
    until(&client, STREAMS, "2").await;
    let block = sluice.client().await;

    // DROP, then COMMIT: no stream of the job runs in between (the
    // scheduler sees the committed job until COMMIT), and none after.
    block.batch_execute("BEGIN").await.unwrap();
    block.batch_execute("DROP ETL JOB items_merge").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        running(&client, "items_merge").await,
        "0",
        "no stream while the block is open"
    );
    block.batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(running(&client, "items_merge").await, "0");
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.jobs WHERE name = 'items_merge'").await,
        "0"
    );
    assert_eq!(slots(&pg).lines().count(), 1, "the dropped job's slot is gone");

    // DROP, then ROLLBACK: the job stays; its slot is gone, so it needs a
    // resync (and waits for it: no stream starts from the missing slot).
    block.batch_execute("BEGIN").await.unwrap();
    block.batch_execute("DROP ETL JOB items_history").await.unwrap();
    assert_eq!(running(&client, "items_history").await, "0");
    block.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(cdc_state(&client, "items_history").await, "needs resync");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(running(&client, "items_history").await, "0");
    let runs = rows(
        &client,
        "SELECT status FROM sluice.runs WHERE job = 'items_history' AND status NOT IN ('succeeded', 'running')",
    )
    .await;
    assert!(runs.is_empty(), "no stream failed on the missing slot: {runs:?}");
    client.batch_execute("RESYNC ETL JOB items_history").await.unwrap();
    until(&client, STREAMS, "1").await;
    pg.psql_admin("UPDATE items SET qty = 30 WHERE id = 3;");
    let history = "SELECT qty FROM warehouse.items_h_current WHERE id = 3";
    until(&client, history, "30").await;

    // ALTER ... PAUSE, then COMMIT: the stream stops at once and does not
    // start again with the definition committed before the block.
    block.batch_execute("BEGIN").await.unwrap();
    block.batch_execute("ALTER ETL JOB items_history PAUSE").await.unwrap();
    until(&client, STREAMS, "0").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        running(&client, "items_history").await,
        "0",
        "not started again inside the block"
    );
    block.batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(running(&client, "items_history").await, "0", "paused after COMMIT");

    // RESUME rolled back stays paused; RESUME committed streams again.
    block.batch_execute("BEGIN").await.unwrap();
    block.batch_execute("ALTER ETL JOB items_history RESUME").await.unwrap();
    block.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(running(&client, "items_history").await, "0", "still paused");
    block.batch_execute("BEGIN").await.unwrap();
    block.batch_execute("ALTER ETL JOB items_history RESUME").await.unwrap();
    block.batch_execute("COMMIT").await.unwrap();
    until(&client, STREAMS, "1").await;
    pg.psql_admin("UPDATE items SET qty = 31 WHERE id = 3;");
    until(&client, history, "31").await;
}

/// Waits until each of the source's `slots` Sluice slots has confirmed a
/// new position `beats` more times than when asked: a beat that comes back
/// confirms its marker's position (the test writes nothing meanwhile).
/// Returns the last positions, to wait from for more.
async fn confirmed_beats(
    probe: &Client,
    slots: usize,
    beats: usize,
    from: HashMap<String, String>,
) -> HashMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut moves: HashMap<String, usize> = HashMap::new();
    let mut last = from;
    loop {
        for row in rows(
            probe,
            "SELECT slot_name, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name LIKE 'sluice\\_%'",
        )
        .await
        {
            let (slot, lsn) = (row[0].clone().unwrap(), row[1].clone().unwrap_or_default());
            if last.get(&slot) != Some(&lsn) {
                *moves.entry(slot.clone()).or_default() += usize::from(last.contains_key(&slot));
                last.insert(slot, lsn);
            }
        }
        if last.len() == slots && last.keys().all(|slot| moves.get(slot).copied().unwrap_or(0) >= beats) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "the slots did not confirm {beats} beats: {moves:?} of {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sessions the source's `shop` database has seen (PostgreSQL 14 and
/// later count each backend; WAL senders do not count).
async fn sessions(probe: &Client) -> u64 {
    one(probe, "SELECT sessions FROM pg_stat_database WHERE datname = 'shop'")
        .await
        .parse()
        .unwrap()
}

/// The sessions kept for markers and slot measurements (idle, their last
/// statement one of those), by pid.
const MARKER_SESSIONS: &str = "SELECT pid FROM pg_stat_activity \
                               WHERE (query LIKE 'SELECT pg_logical_emit_message(%' \
                                      OR query LIKE 'SELECT pg_wal_lsn_diff(%') \
                                 AND pid <> pg_backend_pid() \
                               ORDER BY pid";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stream_writes_its_beats_on_one_kept_session_replaced_when_the_source_ends_it() {
    let pg = PgServer::start();
    // Each beat also measures the slot, on the same kept session.
    let sluice = Sluice::start_with(&[], &[("SLUICE_CDC_MEASURE_SECONDS", "0")]);
    let client = continuous_jobs(&pg, &sluice, "").await;
    until_equal(&pg, &client, "the first load").await;
    until(&client, STREAMS, "2").await;
    let streams = rows(
        &client,
        "SELECT run_id FROM sluice.runs WHERE status = 'running' ORDER BY run_id",
    )
    .await;

    // Two beats per stream have come back: each stream has written a
    // marker, on the session it keeps.
    let probe = pg.client().await;
    let confirmed = confirmed_beats(&probe, 2, 2, HashMap::new()).await;
    let before = sessions(&probe).await;
    let markers = rows(&probe, MARKER_SESSIONS).await;
    // Six more beats per stream, each with a measurement of the slot: no
    // new session at the source (nothing else of Sluice's opens one while
    // the streams run; the probe was opened before), the same two kept
    // sessions.
    let confirmed = confirmed_beats(&probe, 2, 6, confirmed).await;
    assert_eq!(
        sessions(&probe).await - before,
        0,
        "twelve beats or more of two streams opened no session"
    );
    assert_eq!(rows(&probe, MARKER_SESSIONS).await, markers);
    assert_eq!(markers.len(), 2, "one kept marker session per stream");

    // The source ends both marker sessions: the next beats open new ones,
    // the streams go on (the same runs, none failed), take new changes and
    // stay fresh.
    probe
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM ({MARKER_SESSIONS}) markers"
        ))
        .await
        .unwrap();
    pg.psql_admin("UPDATE items SET qty = 30 WHERE id = 3; INSERT INTO items VALUES (6, 'f', NULL, 6);");
    until_equal(&pg, &client, "after the marker sessions ended").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replaced = rows(&probe, MARKER_SESSIONS).await;
        if replaced.len() == 2 && replaced.iter().all(|pid| !markers.contains(pid)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new marker sessions: {replaced:?}, ended {markers:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    confirmed_beats(&probe, 2, 2, confirmed).await;
    until(&client, "SELECT count(*) FROM sluice.jobs WHERE lag_seconds < 10", "2").await;
    assert_eq!(
        rows(
            &client,
            "SELECT run_id FROM sluice.runs WHERE status = 'running' ORDER BY run_id"
        )
        .await,
        streams,
        "the same streams still run"
    );
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.runs WHERE status = 'failed'").await,
        "0"
    );

    // A stream that ends closes its marker session.
    client
        .batch_execute("ALTER ETL JOB items_merge PAUSE; ALTER ETL JOB items_history PAUSE")
        .await
        .unwrap();
    until(&client, STREAMS, "0").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rows(&probe, MARKER_SESSIONS).await.is_empty() {
        assert!(Instant::now() < deadline, "the marker sessions stay open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
