//! Source schema changes in CDC jobs (issue #22, docs/cdc.md "Schema
//! changes"), from a real PostgreSQL into the warehouse of a real sluice:
//! columns added, dropped and widened while changes of the old definition
//! still wait in the slot, and in the middle of a stream (inside the very
//! transaction that changes the table). Under `on_schema_change = 'evolve'`
//! the destination follows and equals the source row by row; under
//! `'fail'` the run fails before anything is written, and goes on once the
//! job may follow. The same from a real MariaDB with
//! `binlog_row_metadata = FULL`; without it, a change older than the
//! binlog's new layout fails the run naming the setting, and a resync
//! recovers.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::cdc_continuous::STREAMS;
use crate::cdc_mysql::{create_connection, maria_rows};
use crate::common::*;

/// Where the test's `items` table lives.
#[derive(Clone, Copy)]
pub(crate) enum Origin<'a> {
    Pg(&'a PgServer),
    Maria(&'a MariaDb),
}

impl Origin<'_> {
    /// `columns` of the source table, by id.
    async fn rows(self, columns: &str) -> Vec<Vec<Option<String>>> {
        let sql = format!("SELECT {columns} FROM items ORDER BY id");
        match self {
            Origin::Pg(pg) => rows(&pg.client().await, &sql).await,
            Origin::Maria(maria) => maria_rows(maria, &sql),
        }
    }

    /// Runs `sql` at the source.
    fn sql(self, sql: &str) {
        match self {
            Origin::Pg(pg) => drop(pg.psql_admin(sql)),
            Origin::Maria(maria) => drop(maria.sql(sql)),
        }
    }
}

const TABLE: &str = "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, n int); \
                     INSERT INTO items VALUES (1, 'a', 1, 10), (2, 'b', 2, 20), (3, 'c', 3, 30);";

async fn jobs(pg: &PgServer, sluice: &Sluice, schedule: &str) -> Client {
    pg.psql_admin(TABLE);
    let client = sluice.client().await;
    create_shop_connection(&client, pg).await;
    client
        .batch_execute(&format!(
            "CREATE ETL JOB items_merge FROM shop.public.items INTO items_m CDC MERGE {schedule}; \
             CREATE ETL JOB items_history FROM shop.public.items INTO items_h CDC HISTORY {schedule};"
        ))
        .await
        .unwrap();
    client
}

/// `columns` of both destinations (MERGE's table, HISTORY's current view)
/// as they equal the source's.
async fn assert_equal(origin: Origin<'_>, client: &Client, columns: &str, step: &str) {
    let expected = origin.rows(columns).await;
    for table in ["items_m", "items_h_current"] {
        let loaded = rows(client, &format!("SELECT {columns} FROM warehouse.{table} ORDER BY id")).await;
        assert_eq!(loaded, expected, "{table} after {step}");
    }
}

/// The schema changes `job` followed: column and change.
async fn followed(client: &Client, job: &str) -> Vec<String> {
    rows(
        client,
        &format!(
            "SELECT column_name || ' ' || change FROM sluice.schema_changes WHERE job = '{job}' \
             ORDER BY run_id, at, column_name"
        ),
    )
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

async fn run(client: &Client, job: &str) {
    if let Err(e) = client.simple_query(&format!("RUN ETL JOB {job}")).await {
        panic!("RUN ETL JOB {job}: {e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_follow_columns_changed_while_older_changes_wait_in_the_slot() {
    let pg = PgServer::start();
    let sluice = Sluice::start();
    let client = jobs(&pg, &sluice, "").await;
    client
        .batch_execute(
            "CREATE ETL JOB items_strict FROM shop.public.items INTO items_s CDC MERGE \
             WITH (on_schema_change = 'fail')",
        )
        .await
        .unwrap();
    for job in ["items_merge", "items_history", "items_strict"] {
        run(&client, job).await;
    }
    assert_equal(Origin::Pg(&pg), &client, "id, name, qty, n", "the first load").await;

    // Changes of the old definition, the change, changes of the new one,
    // all waiting in the slot for the next run.
    pg.psql_admin(
        "INSERT INTO items VALUES (4, 'd', 4, 40); UPDATE items SET qty = 11 WHERE id = 1; \
         ALTER TABLE items ADD COLUMN tag text; \
         INSERT INTO items VALUES (5, 'e', 5, 50, 't5'); UPDATE items SET tag = 't2' WHERE id = 2;",
    );
    for job in ["items_merge", "items_history"] {
        run(&client, job).await;
        assert_eq!(followed(&client, job).await, ["tag added"], "{job}");
    }
    assert_equal(Origin::Pg(&pg), &client, "id, name, qty, n, tag", "a column added").await;

    // 'fail': the run fails before anything is written, naming the column
    // and the fix; allowed to follow, the next run loads everything once.
    let message = expect_err(&client, "RUN ETL JOB items_strict", "55000").await;
    assert!(
        message.contains("\"tag\"") && message.contains("on_schema_change = 'evolve'"),
        "{message}"
    );
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.items_s").await, "3");
    client
        .batch_execute("ALTER ETL JOB items_strict SET (on_schema_change = 'evolve')")
        .await
        .unwrap();
    run(&client, "items_strict").await;
    assert_eq!(
        rows(
            &client,
            "SELECT id, name, qty, n, tag FROM warehouse.items_s ORDER BY id"
        )
        .await,
        Origin::Pg(&pg).rows("id, name, qty, n, tag").await
    );

    // Dropped and widened: the dropped column stays, NULL in the rows
    // changed after it; the widened one holds what only bigint holds.
    pg.psql_admin(
        "UPDATE items SET name = 'c2' WHERE id = 3; \
         ALTER TABLE items DROP COLUMN qty; ALTER TABLE items ALTER COLUMN n TYPE bigint; \
         UPDATE items SET n = 5000000000 WHERE id = 1; INSERT INTO items VALUES (6, 'f', 6000000000, 't6');",
    );
    for job in ["items_merge", "items_history"] {
        run(&client, job).await;
        assert_eq!(
            followed(&client, job).await,
            ["tag added", "n widened", "qty dropped"],
            "{job}"
        );
    }
    assert_equal(
        Origin::Pg(&pg),
        &client,
        "id, name, n, tag",
        "a column dropped and one widened",
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT id, qty FROM warehouse.items_m ORDER BY id").await,
        [
            [Some("1".to_owned()), None],
            [Some("2".to_owned()), Some("2".to_owned())],
            [Some("3".to_owned()), None],
            [Some("4".to_owned()), Some("4".to_owned())],
            [Some("5".to_owned()), Some("5".to_owned())],
            [Some("6".to_owned()), None],
        ],
        "qty is kept for rows no later change touched"
    );
    // Nothing new: an idle run changes nothing.
    run(&client, "items_merge").await;
    assert_equal(Origin::Pg(&pg), &client, "id, name, n, tag", "an idle run").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_follows_a_column_added_inside_a_transaction_and_one_dropped_later() {
    let pg = PgServer::start();
    let sluice = Sluice::start();
    let client = jobs(&pg, &sluice, "CONTINUOUS WITH (flush_interval = '1 second')").await;
    wait_for(&client, STREAMS, Duration::from_secs(60), |n| n == "2").await;
    until_equal(Origin::Pg(&pg), &client, "id, name, qty, n", "the first load").await;

    // Rows of the old definition and of the new one in one transaction.
    pg.psql_admin(
        "BEGIN; INSERT INTO items VALUES (4, 'd', 4, 40); \
         ALTER TABLE items ADD COLUMN tag text; \
         INSERT INTO items VALUES (5, 'e', 5, 50, 't5'); UPDATE items SET tag = 't1', qty = 11 WHERE id = 1; COMMIT; \
         INSERT INTO items VALUES (6, 'f', 6, 60, 't6');",
    );
    until_equal(
        Origin::Pg(&pg),
        &client,
        "id, name, qty, n, tag",
        "a column added while streaming",
    )
    .await;

    pg.psql_admin("ALTER TABLE items DROP COLUMN qty; UPDATE items SET name = 'b2' WHERE id = 2;");
    until_equal(
        Origin::Pg(&pg),
        &client,
        "id, name, n, tag",
        "a column dropped while streaming",
    )
    .await;
    assert_eq!(
        one(&client, "SELECT qty IS NULL FROM warehouse.items_m WHERE id = 2").await,
        "t",
        "a row changed after the drop has no qty"
    );
    assert_streams_followed(&client).await;
}

/// Both streams followed the column added and the one dropped without
/// failing or starting again.
async fn assert_streams_followed(client: &Client) {
    for job in ["items_merge", "items_history"] {
        assert_eq!(followed(client, job).await, ["tag added", "qty dropped"], "{job}");
    }
    assert_eq!(one(client, STREAMS).await, "2");
    assert_eq!(
        one(client, "SELECT count(*) FROM sluice.runs WHERE status <> 'running'").await,
        "0",
        "no stream ended"
    );
}

/// A MariaDB `items` table and two CDC jobs over it, with `schedule`.
async fn maria_jobs(maria: &MariaDb, sluice: &Sluice, schedule: &str) -> Client {
    maria.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(50), qty int) ENGINE=InnoDB; \
         INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3);",
    );
    let client = sluice.client().await;
    create_connection(&client, maria, "crm", &maria.user, &maria.password).await;
    client
        .batch_execute(&format!(
            "CREATE ETL JOB items_merge FROM crm.shop.items INTO items_m CDC MERGE {schedule}; \
             CREATE ETL JOB items_history FROM crm.shop.items INTO items_h CDC HISTORY {schedule};"
        ))
        .await
        .unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_runs_follow_columns_changed_while_older_changes_wait_in_the_binlog() {
    let maria = MariaDb::start();
    let sluice = Sluice::start();
    let origin = Origin::Maria(&maria);
    let client = maria_jobs(&maria, &sluice, "").await;
    for job in ["items_merge", "items_history"] {
        run(&client, job).await;
    }
    assert_equal(origin, &client, "id, name, qty", "the first load").await;

    origin.sql(
        "INSERT INTO items VALUES (4, 'd', 4); UPDATE items SET qty = 11 WHERE id = 1; \
         ALTER TABLE items ADD COLUMN tag varchar(20); \
         INSERT INTO items VALUES (5, 'e', 5, 't5'); UPDATE items SET tag = 't2' WHERE id = 2; \
         ALTER TABLE items DROP COLUMN qty; UPDATE items SET name = 'c2' WHERE id = 3;",
    );
    for job in ["items_merge", "items_history"] {
        run(&client, job).await;
        assert_eq!(followed(&client, job).await, ["qty dropped", "tag added"], "{job}");
    }
    assert_equal(origin, &client, "id, name, tag", "a column added and one dropped").await;
    // qty stays in the destination; every row this run changed has it
    // NULL (the run saw the drop before it read the changes).
    assert_eq!(
        one(&client, "SELECT count(*) || '/' || count(qty) FROM warehouse.items_m").await,
        "5/0"
    );

    // Without column names in the binlog, a change logged before a
    // column was added cannot be read safely: the run fails naming the
    // setting, and a resync recovers.
    origin.sql("SET GLOBAL binlog_row_metadata = NO_LOG;");
    let created = sluice.psql("CREATE ETL JOB items_blind FROM crm.shop.items INTO items_b CDC MERGE;");
    let notices = String::from_utf8_lossy(&created.stderr);
    assert!(created.status.success(), "{notices}");
    assert!(
        notices.contains("binlog_row_metadata is NO_LOG") && notices.contains("SET GLOBAL binlog_row_metadata = FULL"),
        "{notices}"
    );
    run(&client, "items_blind").await;
    origin.sql("INSERT INTO items VALUES (6, 'f', 't6'); ALTER TABLE items ADD COLUMN n int; INSERT INTO items VALUES (7, 'g', 't7', 70);");
    let message = expect_err(&client, "RUN ETL JOB items_blind", "0A000").await;
    assert!(message.contains("binlog_row_metadata = FULL"), "{message}");
    client.batch_execute("RESYNC ETL JOB items_blind").await.unwrap();
    assert_eq!(
        rows(&client, "SELECT id, name, tag, n FROM warehouse.items_b ORDER BY id").await,
        origin.rows("id, name, tag, n").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_stream_follows_a_column_added_and_one_dropped() {
    let maria = MariaDb::start();
    let sluice = Sluice::start();
    let origin = Origin::Maria(&maria);
    let client = maria_jobs(&maria, &sluice, "CONTINUOUS WITH (flush_interval = '1 second')").await;
    wait_for(&client, STREAMS, Duration::from_secs(60), |n| n == "2").await;
    until_equal(origin, &client, "id, name, qty", "the first load").await;

    origin.sql(
        "INSERT INTO items VALUES (4, 'd', 4); ALTER TABLE items ADD COLUMN tag varchar(20); \
         BEGIN; INSERT INTO items VALUES (5, 'e', 5, 't5'); UPDATE items SET tag = 't1', qty = 11 WHERE id = 1; COMMIT;",
    );
    until_equal(origin, &client, "id, name, qty, tag", "a column added while streaming").await;
    origin.sql("ALTER TABLE items DROP COLUMN qty; UPDATE items SET name = 'b2' WHERE id = 2;");
    until_equal(origin, &client, "id, name, tag", "a column dropped while streaming").await;
    assert_streams_followed(&client).await;
}

/// Waits until `columns` of both destinations equal the source's.
pub(crate) async fn until_equal(origin: Origin<'_>, client: &Client, columns: &str, step: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let expected = origin.rows(columns).await;
        let mut equal = true;
        for table in ["items_m", "items_h_current"] {
            let sql = format!("SELECT {columns} FROM warehouse.{table} ORDER BY id");
            equal &= try_rows(client, &sql).await.ok().as_ref() == Some(&expected);
        }
        if equal {
            return;
        }
        if Instant::now() > deadline {
            let runs = rows(
                client,
                "SELECT run_id, job, trigger, status, rows, error FROM sluice.runs ORDER BY run_id",
            )
            .await;
            panic!("{step}: the streams did not catch up with {expected:?}; runs {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
