//! CDC jobs end to end (issue #22): `CREATE ETL JOB ... CDC [MERGE |
//! HISTORY]` from a real PostgreSQL (wal_level=logical) into the warehouse
//! of a real sluice, through a real client. The first run loads the table
//! in the slot's snapshot; each later run drains what was committed before
//! it began: inserts, updates, a primary-key change, a TOASTed value left
//! unchanged, deletes, a multi-statement transaction, TRUNCATE. A kill -9
//! between the destination commit and the confirm to the source, then a
//! re-run, leaves the destination equal to the source with no change
//! applied twice. The CREATE-time checks refuse before anything is saved;
//! DROP ETL JOB drops the slot and publication, and refuses while the
//! source cannot drop them unless FORCE (which names the SQL to run there).

use tokio_postgres::Client;

use crate::common::*;

const TABLE: &str = "CREATE TABLE items (id bigint PRIMARY KEY, name text, big text, qty int); \
                     ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;";

/// `big` values this long are stored out of line (STORAGE EXTERNAL), so an
/// update that leaves them alone logs them as "unchanged".
pub(crate) fn big(c: char) -> String {
    format!("repeat('{c}', 6000)")
}

pub(crate) async fn setup(pg: &PgServer, sluice: &Sluice) -> Client {
    pg.psql_admin(&format!(
        "{TABLE} INSERT INTO items VALUES (1, 'a', {}, 1), (2, 'b', {}, 2), (3, 'c', NULL, NULL);",
        big('a'),
        big('b')
    ));
    let client = sluice.client().await;
    create_shop_connection(&client, pg).await;
    client
        .batch_execute(
            "CREATE ETL JOB items_merge FROM shop.public.items INTO items_m CDC MERGE; \
             CREATE ETL JOB items_history FROM shop.public.items INTO items_h CDC HISTORY;",
        )
        .await
        .unwrap();
    client
}

pub(crate) const COLUMNS: &str = "id, name, md5(big), qty";

pub(crate) async fn source(pg: &PgServer) -> Vec<Vec<Option<String>>> {
    rows(&pg.client().await, &format!("SELECT {COLUMNS} FROM items ORDER BY id")).await
}

pub(crate) async fn warehouse(client: &Client, table: &str) -> Vec<Vec<Option<String>>> {
    rows(client, &format!("SELECT {COLUMNS} FROM warehouse.{table} ORDER BY id")).await
}

pub(crate) async fn run(client: &Client, job: &str) {
    if let Err(e) = client.simple_query(&format!("RUN ETL JOB {job}")).await {
        panic!("RUN ETL JOB {job}: {e:?}");
    }
}

pub(crate) async fn assert_equal(pg: &PgServer, client: &Client, step: &str) {
    let expected = source(pg).await;
    assert_eq!(warehouse(client, "items_m").await, expected, "MERGE after {step}");
    assert_eq!(
        warehouse(client, "items_h_current").await,
        expected,
        "HISTORY's current view after {step}"
    );
}

pub(crate) async fn run_both(client: &Client) {
    run(client, "items_merge").await;
    run(client, "items_history").await;
}

/// The replication slots this Sluice owns at the source.
pub(crate) fn slots(pg: &PgServer) -> String {
    pg.psql_admin("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'sluice\\_%' ORDER BY 1;")
}

/// Writes about 400 kB of WAL at the source.
pub(crate) fn generate_wal(pg: &PgServer) {
    pg.psql_admin(
        "CREATE TABLE IF NOT EXISTS filler (v text); \
         INSERT INTO filler SELECT repeat('x', 200) FROM generate_series(1, 2000);",
    );
}

pub(crate) async fn cdc_state(client: &Client, job: &str) -> String {
    one(
        client,
        &format!("SELECT cdc_state FROM sluice.jobs WHERE name = '{job}'"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_jobs_follow_every_change_shape_in_both_modes() {
    let pg = PgServer::start();
    let sluice = Sluice::start();
    let client = setup(&pg, &sluice).await;

    run_both(&client).await;
    assert_equal(&pg, &client, "the first load").await;
    assert_eq!(warehouse(&client, "items_m").await.len(), 3);

    pg.psql_admin(&format!(
        "INSERT INTO items VALUES (4, 'd', {}, 4); \
         UPDATE items SET name = 'a2' WHERE id = 1; \
         UPDATE items SET id = 20, qty = 22 WHERE id = 2; \
         DELETE FROM items WHERE id = 3; \
         BEGIN; INSERT INTO items VALUES (5, 'e', NULL, 5); UPDATE items SET qty = 55, big = {} WHERE id = 5; \
         UPDATE items SET qty = 44 WHERE id = 4; COMMIT;",
        big('d'),
        big('e')
    ));
    run_both(&client).await;
    assert_equal(&pg, &client, "inserts, updates, a key change and a delete").await;
    assert_eq!(
        rows(
            &client,
            "SELECT _sluice_op, count(*) FROM warehouse.items_h GROUP BY _sluice_op ORDER BY _sluice_op"
        )
        .await,
        [
            [Some("delete".to_owned()), Some("2".to_owned())],
            [Some("insert".to_owned()), Some("6".to_owned())],
            [Some("update".to_owned()), Some("3".to_owned())],
        ],
        "3 first-load rows, then 3 inserts (one the key change's), 3 updates, 2 deletes (one the key change's)"
    );

    // The WAL each slot holds back, as measured at the end of the run.
    let lag = rows(
        &client,
        "SELECT name, lag_bytes FROM sluice.jobs WHERE name LIKE 'items_%' ORDER BY name",
    )
    .await;
    assert_eq!(lag.len(), 2);
    for row in &lag {
        let bytes: u64 = row[1].as_deref().expect("lag_bytes of a CDC job").parse().unwrap();
        assert!(bytes < 1 << 20, "{row:?}");
    }

    // Nothing new: the run ends at its marker and changes nothing.
    run_both(&client).await;
    assert_equal(&pg, &client, "an idle run").await;

    pg.psql_admin(&format!(
        "TRUNCATE items; INSERT INTO items VALUES (30, 'z', {}, 3);",
        big('z')
    ));
    run_both(&client).await;
    assert_equal(&pg, &client, "TRUNCATE").await;
    assert_eq!(warehouse(&client, "items_m").await.len(), 1);
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM warehouse.items_h WHERE _sluice_op = 'truncate'"
        )
        .await,
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_batch_spilled_to_disk_the_warehouse_still_equals_the_source() {
    let pg = PgServer::start();
    // A budget of 0 MB: every change batch goes through the partitions on
    // disk (a key change that keeps a TOASTed value links two of them).
    let sluice = Sluice::start_with(&[], &[("SLUICE_CDC_SPILL_MB", "0")]);
    let client = setup(&pg, &sluice).await;
    run_both(&client).await;
    pg.psql_admin(&format!(
        "INSERT INTO items VALUES (4, 'd', {}, 4); UPDATE items SET name = 'a2' WHERE id = 1; \
         UPDATE items SET id = 20, qty = 22 WHERE id = 2; DELETE FROM items WHERE id = 3; \
         BEGIN; INSERT INTO items SELECT g, 'n' || g, NULL, g FROM generate_series(100, 3000) g; \
         UPDATE items SET qty = qty + 1 WHERE id % 7 = 0; DELETE FROM items WHERE id % 11 = 0; COMMIT;",
        big('d')
    ));
    run_both(&client).await;
    assert_equal(&pg, &client, "changes spilled to disk").await;
    pg.psql_admin("TRUNCATE items; INSERT INTO items VALUES (5, 'e', NULL, 5); UPDATE items SET qty = 6 WHERE id = 5;");
    run_both(&client).await;
    assert_equal(&pg, &client, "a truncate spilled to disk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_destination_commit_and_confirm_then_rerun_equals_the_source() {
    let pg = PgServer::start();
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "cdc_after_batch_commit")]);
    let client = setup(&pg, &sluice).await;
    // The first loads commit no change batch: no failpoint.
    run_both(&client).await;
    pg.psql_admin(&format!(
        "UPDATE items SET name = 'a2' WHERE id = 1; DELETE FROM items WHERE id = 2; \
         INSERT INTO items VALUES (7, 'g', {}, 7);",
        big('g')
    ));
    sluice.run_into_failpoint(&client, "RUN ETL JOB items_history").await;
    let client = sluice.restart_without_failpoints().await;
    // The batch is committed, the slot was not told: it re-sends the
    // transactions, and the re-run skips them. (The killed session may
    // still hold the slot for a moment: the run waits for it.)
    run_both(&client).await;
    assert_equal(&pg, &client, "a kill between commit and confirm").await;
    assert_eq!(
        one(&client, "SELECT count(*) FROM warehouse.items_h").await,
        "6",
        "3 first-load rows and 3 changes, none applied twice"
    );
    pg.psql_admin("UPDATE items SET qty = 100 WHERE id = 7;");
    run_both(&client).await;
    assert_equal(&pg, &client, "a later change").await;
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.items_h").await, "7");
}

/// A connection `role` to the `shop` database as source role `role`.
async fn role_connection(client: &Client, pg: &PgServer, role: &str, password: &str) {
    client
        .batch_execute(&format!(
            "CREATE CONNECTION {role} TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', \
             user '{role}', password '{password}')",
            pg.port
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_checks_refuse_before_saving_and_drop_releases_the_slot() {
    let replica = PgServer::start_with_settings(&["wal_level=replica"]);
    replica.psql_admin(TABLE);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &replica).await;
    let message = expect_err(&client, "CREATE ETL JOB j FROM shop.public.items CDC", "55000").await;
    assert!(message.contains("wal_level"), "{message}");
    drop(replica);

    let pg = PgServer::start();
    pg.psql_admin(&format!(
        "{TABLE} CREATE TABLE keyless (v text); \
         CREATE ROLE plain LOGIN PASSWORD 'plain_pw_123'; GRANT SELECT ON items TO plain;"
    ));
    client.batch_execute("DROP CONNECTION shop").await.unwrap();
    create_shop_connection(&client, &pg).await;
    role_connection(&client, &pg, "plain", "plain_pw_123").await;
    let message = expect_err(&client, "CREATE ETL JOB j FROM plain.public.items CDC", "42501").await;
    assert!(message.contains("REPLICATION"), "{message}");
    let message = expect_err(&client, "CREATE ETL JOB j FROM shop.public.keyless CDC MERGE", "42P10").await;
    assert!(message.contains("primary key"), "{message}");
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.jobs").await,
        "0",
        "nothing saved"
    );
    assert_eq!(
        pg.psql_admin("SELECT count(*) FROM pg_replication_slots; SELECT count(*) FROM pg_publication;"),
        "0\n0\n"
    );

    client
        .batch_execute("CREATE ETL JOB j FROM shop.public.items INTO items_m CDC")
        .await
        .unwrap();
    run(&client, "j").await;
    let owned = "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sluice\\_%'; \
                 SELECT count(*) FROM pg_publication WHERE pubname LIKE 'sluice\\_%';";
    assert_eq!(pg.psql_admin(owned), "1\n1\n", "the job's slot and publication");
    client.batch_execute("DROP ETL JOB j").await.unwrap();
    assert_eq!(pg.psql_admin(owned), "0\n0\n", "dropped with the job");

    // A role that does not own the table streams from a publication the
    // owner made; the checks name what is missing.
    pg.psql_admin(
        "CREATE ROLE streamer LOGIN REPLICATION PASSWORD 'streamer_pw_1'; GRANT SELECT ON items TO streamer; \
         CREATE PUBLICATION other_pub FOR TABLE keyless; \
         CREATE PUBLICATION inserts_pub FOR TABLE items WITH (publish = 'insert');",
    );
    role_connection(&client, &pg, "streamer", "streamer_pw_1").await;
    let message = expect_err(&client, "CREATE ETL JOB s FROM streamer.public.items CDC", "42501").await;
    assert!(message.contains("does not own"), "{message}");
    for (publication, code, needle) in [
        ("missing_pub", "42704", "does not exist"),
        ("other_pub", "55000", "does not publish public.items"),
        ("inserts_pub", "55000", "does not publish update, delete, truncate"),
    ] {
        let message = expect_err(
            &client,
            &format!("CREATE ETL JOB s FROM streamer.public.items CDC WITH (publication = '{publication}')"),
            code,
        )
        .await;
        assert!(message.contains(needle), "{publication}: {message}");
    }
    expect_err(
        &client,
        "CREATE ETL JOB s FROM streamer.public.items SNAPSHOT WITH (publication = 'other_pub')",
        "22023",
    )
    .await;
    let message = expect_err(
        &client,
        "CREATE ETL JOB s FROM shop.public.items CDC WITH (server_id = 7)",
        "0A000",
    )
    .await;
    assert!(message.contains("MySQL"), "{message}");
    pg.psql_admin("CREATE PUBLICATION items_pub FOR TABLE items;");
    client
        .batch_execute("CREATE ETL JOB s FROM streamer.public.items INTO items_s CDC WITH (publication = 'items_pub')")
        .await
        .unwrap();
    run(&client, "s").await;
    pg.psql_admin("INSERT INTO items VALUES (9, 'i', NULL, 9); DELETE FROM items WHERE id = 1;");
    run(&client, "s").await;
    assert_eq!(warehouse(&client, "items_s").await, source(&pg).await);
    let shown = rows(&client, "SHOW CREATE ETL JOB s").await[0][1].clone().unwrap();
    assert!(shown.contains("publication = 'items_pub'"), "{shown}");
    expect_err(&client, "ALTER ETL JOB s SET (publication = 'other_pub')", "22023").await;
    client.batch_execute("DROP ETL JOB s").await.unwrap();
    assert_eq!(
        pg.psql_admin(
            "SELECT count(*) FROM pg_replication_slots; SELECT string_agg(pubname, ',' ORDER BY pubname) FROM pg_publication;"
        ),
        "0\ninserts_pub,items_pub,other_pub\n",
        "the slot is dropped, the owner's publications are left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_rows_commits_smaller_batches_each_exactly_once() {
    let pg = PgServer::start();
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "cdc_after_batch_commit")]);
    let client = setup(&pg, &sluice).await;
    client
        .batch_execute("ALTER ETL JOB items_history SET (flush_rows = 1)")
        .await
        .unwrap();
    let shown = rows(&client, "SHOW CREATE ETL JOB items_history").await[0][1]
        .clone()
        .unwrap();
    assert!(shown.contains(", flush_rows = 1);"), "{shown}");
    expect_err(
        &client,
        "CREATE ETL JOB snap FROM shop.public.items SNAPSHOT WITH (flush_rows = 5)",
        "22023",
    )
    .await;
    run(&client, "items_history").await;
    // Three transactions of one change each: with flush_rows = 1 the first
    // batch holds the first transaction only.
    pg.psql_admin(
        "INSERT INTO items VALUES (4, 'd', NULL, 4); INSERT INTO items VALUES (5, 'e', NULL, 5); \
         UPDATE items SET qty = 30 WHERE id = 3;",
    );
    sluice.run_into_failpoint(&client, "RUN ETL JOB items_history").await;
    let client = sluice.restart_without_failpoints().await;
    assert_eq!(
        one(&client, "SELECT count(*) FROM warehouse.items_h").await,
        "4",
        "3 first-load rows and the first transaction's change"
    );
    run(&client, "items_history").await;
    assert_eq!(
        one(&client, "SELECT count(*) FROM warehouse.items_h").await,
        "6",
        "every change once"
    );
    let ops = rows(
        &client,
        "SELECT id, _sluice_op FROM warehouse.items_h WHERE id >= 3 ORDER BY _sluice_position",
    )
    .await;
    assert_eq!(
        ops,
        [["3", "insert"], ["4", "insert"], ["5", "insert"], ["3", "update"]]
            .map(|r| r.map(|v| Some(v.to_owned())).to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_refuses_while_the_source_cannot_drop_the_slot_and_force_drops_the_job_naming_the_sql() {
    let pg = PgServer::start();
    let sluice = Sluice::start();
    let client = setup(&pg, &sluice).await;
    run_both(&client).await;
    let held = slots(&pg);
    assert_eq!(held.lines().count(), 2);
    let slot = held
        .lines()
        .find(|name| name.contains("_items_merge_"))
        .expect("the job's slot")
        .trim()
        .to_owned();

    pg.stop();
    let error = client.batch_execute("DROP ETL JOB items_merge").await.unwrap_err();
    let db = error.as_db_error().expect("a server error");
    assert!(db.code().code().starts_with("08"), "{:?}: {}", db.code(), db.message());
    assert!(
        db.message().contains("ETL job \"items_merge\" is not dropped")
            && db.message().contains(&format!("replication slot \"{slot}\"")),
        "{}",
        db.message()
    );
    assert_eq!(
        db.hint(),
        Some("DROP ETL JOB items_merge FORCE drops the job anyway and names what to drop at the source by hand.")
    );
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.jobs WHERE name = 'items_merge'").await,
        "1",
        "nothing dropped"
    );

    let out = sluice.psql("DROP ETL JOB items_merge FORCE;");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The publication Sluice made has the slot's name.
    let sql = format!("SELECT pg_drop_replication_slot('{slot}'); DROP PUBLICATION \"{slot}\";");
    assert!(stderr.contains("NOTICE") && stderr.contains(&sql), "{stderr}");
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.jobs WHERE name = 'items_merge'").await,
        "0"
    );

    // The SQL the notice names drops what the job left.
    pg.start_again();
    assert_eq!(slots(&pg), held, "the slot stayed at the source");
    pg.psql_admin(&sql);
    assert_eq!(slots(&pg).lines().count(), 1);
    client.batch_execute("DROP ETL JOB items_history").await.unwrap();
    assert_eq!(slots(&pg), "");
}
