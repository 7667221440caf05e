//! BEGIN ... COMMIT over Sluice statements, through psql and tokio-postgres
//! against a real sluice and PostgreSQL: changes staged per session and
//! committed in one catalog write, discarded at ROLLBACK or when a
//! statement fails, refused statements, conflicts between sessions, and a
//! scheduler that never sees an uncommitted job.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use tokio_postgres::Client;

const TABLE: &str = "
CREATE TABLE public.t (id bigint PRIMARY KEY, name text);
INSERT INTO public.t VALUES (1, 'a'), (2, 'b'), (3, 'c');
GRANT SELECT ON public.t TO etl;
";

async fn setup() -> (PgServer, Sluice, Client) {
    let pg = PgServer::start();
    pg.psql_admin(TABLE);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    (pg, sluice, client)
}

/// The second value of the first row.
async fn second(client: &Client, sql: &str) -> String {
    rows(client, sql).await[0][1].clone().unwrap_or_default()
}

async fn names(client: &Client, view: &str) -> Vec<String> {
    rows(client, &format!("SELECT name FROM sluice.{view} ORDER BY name"))
        .await
        .into_iter()
        .map(|row| row[0].clone().unwrap_or_default())
        .collect()
}

/// A pipelines file: a secret, a connection using it, and a job on that
/// connection; `table` is the job's source table.
fn pipelines(pg: &PgServer, table: &str) -> String {
    format!(
        "CREATE SECRET pg_pass AS '{ETL_PASSWORD}';
         CREATE CONNECTION src TYPE postgres
           OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password SECRET pg_pass);
         CREATE ETL JOB copy_t FROM src.public.{table} INTO warehouse.copy_t SNAPSHOT;\n",
        pg.port
    )
}

#[tokio::test]
async fn psql_single_transaction_is_all_or_nothing() {
    let (pg, sluice, client) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipelines.sql");

    // The third statement fails: nothing of the first two stays.
    std::fs::write(&file, pipelines(&pg, "no_such_table")).unwrap();
    let out = sluice.psql_args(&["-1", "-v", "ON_ERROR_STOP=1", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success(), "psql -1 should fail: {out:?}");
    assert!(names(&client, "secrets").await.is_empty());
    assert!(names(&client, "connections").await.is_empty());
    assert!(names(&client, "jobs").await.is_empty());

    // Without ON_ERROR_STOP psql goes on: the rest is refused with 25P02
    // and COMMIT answers ROLLBACK.
    let failing = format!(
        "BEGIN;\n{}CREATE SECRET later AS 'x';\nCOMMIT;\n",
        pipelines(&pg, "no_such_table")
    );
    std::fs::write(&file, failing).unwrap();
    let out = sluice.psql_args(&["-v", "ON_ERROR_STOP=0", "-f", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stderr.contains("current transaction is aborted"), "stderr: {stderr}");
    assert!(stdout.trim_end().ends_with("ROLLBACK"), "stdout: {stdout}");
    assert!(names(&client, "secrets").await.is_empty());
    assert!(names(&client, "connections").await.is_empty());

    // Fixed, the same file applies everything; each statement saw the
    // ones before it (the connection its secret, the job its connection).
    std::fs::write(&file, pipelines(&pg, "t")).unwrap();
    let out = sluice.psql_args(&["-1", "-v", "ON_ERROR_STOP=1", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(names(&client, "secrets").await, ["pg_pass"]);
    assert_eq!(names(&client, "connections").await, ["src"]);
    assert_eq!(names(&client, "jobs").await, ["copy_t"]);
    client.batch_execute("RUN ETL JOB copy_t").await.unwrap();
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.copy_t").await, "3");
}

#[tokio::test]
async fn rollback_keeps_nothing_and_others_see_nothing_before_commit() {
    let (pg, sluice, client) = setup().await;
    let other = sluice.client().await;

    client.batch_execute("BEGIN; CREATE SECRET s AS 'x'").await.unwrap();
    // This session sees its own staged secret; another does not.
    assert_eq!(names(&client, "secrets").await, ["s"]);
    assert!(names(&other, "secrets").await.is_empty());
    client.batch_execute("ROLLBACK").await.unwrap();
    assert!(names(&client, "secrets").await.is_empty());

    // A job rolled back leaves no destination table behind.
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute("BEGIN; CREATE ETL JOB j FROM shop.public.t INTO warehouse.rolled SNAPSHOT; ROLLBACK")
        .await
        .unwrap();
    assert!(names(&client, "jobs").await.is_empty());
    expect_err(&client, "SELECT * FROM warehouse.rolled", "42P01").await;

    // The extended protocol works the same way.
    client.execute("BEGIN", &[]).await.unwrap();
    client.execute("CREATE SECRET e AS 'x'", &[]).await.unwrap();
    client.execute("ROLLBACK", &[]).await.unwrap();
    assert!(names(&client, "secrets").await.is_empty());
    client.execute("BEGIN", &[]).await.unwrap();
    client.execute("CREATE SECRET e AS 'x'", &[]).await.unwrap();
    assert!(names(&other, "secrets").await.is_empty());
    client.execute("COMMIT", &[]).await.unwrap();
    assert_eq!(names(&other, "secrets").await, ["e"]);
}

#[tokio::test]
async fn dropping_a_job_in_a_rolled_back_block_keeps_its_data() {
    let (pg, _sluice, client) = setup().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute("CREATE ETL JOB j FROM shop.public.t INTO warehouse.kept SNAPSHOT; RUN ETL JOB j")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; DROP ETL JOB j WITH DATA; DROP CONNECTION shop; ROLLBACK")
        .await
        .unwrap();
    assert_eq!(names(&client, "jobs").await, ["j"]);
    assert_eq!(names(&client, "connections").await, ["shop"]);
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.kept").await, "3");

    // Committed, a drop WITH DATA takes the table with it.
    client
        .batch_execute("BEGIN; DROP ETL JOB j WITH DATA; COMMIT")
        .await
        .unwrap();
    assert!(names(&client, "jobs").await.is_empty());
    expect_err(&client, "SELECT * FROM warehouse.kept", "42P01").await;
}

#[tokio::test]
async fn statements_outside_the_catalog_are_refused_in_a_block() {
    let (pg, _sluice, client) = setup().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute("CREATE ETL JOB j FROM shop.public.t INTO warehouse.j SNAPSHOT")
        .await
        .unwrap();
    for statement in [
        "RUN ETL JOB j",
        "CANCEL ETL RUN 1",
        "TEST CONNECTIONS",
        "TEST CONNECTION shop",
    ] {
        client.batch_execute("BEGIN").await.unwrap();
        let message = expect_err(&client, statement, "25001").await;
        assert!(message.contains("cannot run inside a transaction block"), "{message}");
        // The block failed: everything is refused until it ends.
        expect_err(&client, "SHOW SECRETS", "25P02").await;
        expect_err(&client, "SELECT 1", "25P02").await;
        expect_err_extended(&client, "SELECT 1", "25P02").await;
        client.batch_execute("ROLLBACK").await.unwrap();
    }
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.runs").await, "0");

    // A failed statement fails the block; COMMIT then keeps nothing.
    client.batch_execute("BEGIN; CREATE SECRET a AS 'x'").await.unwrap();
    expect_err(&client, "CREATE SECRET a AS 'y'", "42710").await;
    client.batch_execute("COMMIT").await.unwrap();
    assert!(names(&client, "secrets").await.is_empty());
}

#[tokio::test]
async fn concurrent_blocks_on_the_same_name_conflict_at_commit() {
    let (_pg, sluice, first) = setup().await;
    let second = sluice.client().await;

    first.batch_execute("BEGIN; CREATE SECRET s AS 'one'").await.unwrap();
    second.batch_execute("BEGIN; CREATE SECRET s AS 'two'").await.unwrap();
    first.batch_execute("COMMIT").await.unwrap();
    let message = expect_err(&second, "COMMIT", "40001").await;
    assert!(message.contains("secret \"s\""), "{message}");
    second.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(names(&second, "secrets").await, ["s"]);

    // Retried, the second session sees the first one's secret.
    second.batch_execute("BEGIN").await.unwrap();
    expect_err(&second, "CREATE SECRET s AS 'two'", "42710").await;
    second.batch_execute("ROLLBACK").await.unwrap();

    // Different names do not conflict.
    first.batch_execute("BEGIN; CREATE SECRET a AS '1'").await.unwrap();
    second.batch_execute("BEGIN; CREATE SECRET b AS '2'").await.unwrap();
    first.batch_execute("COMMIT").await.unwrap();
    second.batch_execute("COMMIT").await.unwrap();
    assert_eq!(names(&first, "secrets").await, ["a", "b", "s"]);

    // Two drops of the same secret conflict too.
    first.batch_execute("BEGIN; DROP SECRET a").await.unwrap();
    second.batch_execute("BEGIN; DROP SECRET a").await.unwrap();
    second.batch_execute("COMMIT").await.unwrap();
    expect_err(&first, "COMMIT", "40001").await;
    first.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(names(&first, "secrets").await, ["b", "s"]);
}

#[tokio::test]
async fn the_scheduler_never_sees_an_uncommitted_job() {
    let (pg, sluice, client) = setup().await;
    create_shop_connection(&client, &pg).await;
    let other = sluice.client().await;
    client
        .batch_execute(
            "BEGIN; CREATE ETL JOB every_second FROM shop.public.t INTO warehouse.ticks SNAPSHOT SCHEDULE CRON '* * * * * *'",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(one(&other, "SELECT count(*) FROM sluice.runs").await, "0");
    assert!(names(&other, "jobs").await.is_empty());

    client.batch_execute("COMMIT").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while one(&other, "SELECT count(*) FROM sluice.runs WHERE status = 'succeeded'").await == "0" {
        assert!(Instant::now() < deadline, "the committed job never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A pipelines file of `CREATE OR REPLACE` statements.
fn replaceable_pipelines(pg: &PgServer, schedule: &str, table: &str) -> String {
    format!(
        "CREATE OR REPLACE SECRET pg_pass AS '{ETL_PASSWORD}';
         CREATE OR REPLACE CONNECTION src TYPE postgres
           OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password SECRET pg_pass);
         CREATE OR REPLACE ETL JOB copy_t FROM src.public.t INTO warehouse.{table} SNAPSHOT SCHEDULE {schedule};\n",
        pg.port
    )
}

#[tokio::test]
async fn a_pipelines_file_of_create_or_replace_can_be_applied_again() {
    let (pg, sluice, client) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipelines.sql");
    let apply = |sql: String| {
        std::fs::write(&file, sql).unwrap();
        sluice.psql_args(&["-1", "-f", file.to_str().unwrap()])
    };

    let out = apply(replaceable_pipelines(&pg, "MANUAL", "copy_t"));
    assert!(out.status.success(), "{out:?}");
    client.batch_execute("RUN ETL JOB copy_t").await.unwrap();
    let updated = "SELECT updated_at FROM sluice.connections WHERE name = 'src'";
    let before = one(&client, updated).await;

    // Again, unchanged: nothing happens, each statement says so.
    let out = apply(replaceable_pipelines(&pg, "MANUAL", "copy_t"));
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for what in ["secret \"pg_pass\"", "connection \"src\"", "ETL job \"copy_t\""] {
        assert!(stderr.contains(&format!("{what} is unchanged")), "{stderr}");
    }
    assert_eq!(one(&client, updated).await, before);
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.runs").await, "1");

    // A new schedule changes the job in place; its data stays.
    let out = apply(replaceable_pipelines(&pg, "DAILY AT '02:00'", "copy_t"));
    assert!(out.status.success(), "{out:?}");
    let schedule = one(&client, "SELECT schedule FROM sluice.jobs WHERE name = 'copy_t'").await;
    assert!(schedule.contains("DAILY"), "{schedule}");
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.copy_t").await, "3");

    // A new destination table cannot replace one with data: the error
    // names it, and nothing of the file is applied.
    let changed = replaceable_pipelines(&pg, "MANUAL", "elsewhere").replace(ETL_PASSWORD, "other_pw");
    let out = apply(changed);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot change the destination table of ETL job \"copy_t\""),
        "{stderr}"
    );
    assert!(schedule.contains("DAILY"));
    client.batch_execute("TEST CONNECTION src").await.unwrap();
}

#[tokio::test]
async fn create_or_replace_alters_what_can_change() {
    let (pg, _sluice, client) = setup().await;
    create_shop_connection(&client, &pg).await;
    let options = |timeout: u32, password: &str| {
        format!(
            "OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password '{password}', connect_timeout {timeout})",
            pg.port
        )
    };

    // New options are tested like ALTER CONNECTION; a failing test keeps the old ones.
    client
        .batch_execute(&format!(
            "CREATE OR REPLACE CONNECTION shop TYPE postgres {}",
            options(7, ETL_PASSWORD)
        ))
        .await
        .unwrap();
    let created = second(&client, "SHOW CREATE CONNECTION shop").await;
    assert!(created.contains("connect_timeout 7"), "{created}");
    expect_err(
        &client,
        &format!(
            "CREATE OR REPLACE CONNECTION shop TYPE postgres {}",
            options(9, "wrong")
        ),
        "28P01",
    )
    .await;
    assert!(
        second(&client, "SHOW CREATE CONNECTION shop")
            .await
            .contains("connect_timeout 7")
    );
    // The type cannot change.
    let message = expect_err(
        &client,
        "CREATE OR REPLACE CONNECTION shop TYPE local OPTIONS (path '/tmp')",
        "55000",
    )
    .await;
    assert!(message.contains("the type (postgres to local)"), "{message}");

    // A job that loaded nothing is made again with another load type.
    client
        .batch_execute("CREATE ETL JOB j FROM shop.public.t INTO warehouse.j SNAPSHOT")
        .await
        .unwrap();
    client
        .batch_execute("CREATE OR REPLACE ETL JOB j FROM shop.public.t (id) INTO warehouse.j INCREMENTAL BY id ALL")
        .await
        .unwrap();
    let definition = second(&client, "SHOW CREATE ETL JOB j").await;
    assert!(definition.contains("INCREMENTAL BY id"), "{definition}");
    client.batch_execute("RUN ETL JOB j").await.unwrap();
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.j").await, "3");
    // Once loaded, a new load type is an edit: the table stays.
    client
        .batch_execute("CREATE OR REPLACE ETL JOB j FROM shop.public.t (id) INTO warehouse.j SNAPSHOT")
        .await
        .unwrap();
    assert!(second(&client, "SHOW CREATE ETL JOB j").await.contains("SNAPSHOT"));
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.j").await, "3");

    // A secret gets a new value in place.
    client.batch_execute("CREATE SECRET s AS 'one'").await.unwrap();
    client
        .batch_execute("CREATE OR REPLACE SECRET s AS 'two'")
        .await
        .unwrap();
    assert_eq!(names(&client, "secrets").await, ["s"]);
    expect_err(&client, "CREATE OR REPLACE SECRET IF NOT EXISTS s AS 'x'", "42601").await;
}

#[tokio::test]
async fn advisory_locks_keep_sessions_apart_until_released_or_disconnected() {
    let sluice = Sluice::start();
    let first = sluice.client().await;
    let second = sluice.client().await;

    assert_eq!(one(&first, "SELECT pg_advisory_lock(42)").await, "");
    assert_eq!(one(&second, "SELECT pg_try_advisory_lock(42)").await, "f");
    assert_eq!(one(&second, "SELECT pg_advisory_unlock(42)").await, "f");
    // Taken twice by its holder, it needs two unlocks.
    assert_eq!(one(&first, "SELECT pg_try_advisory_lock(42)").await, "t");
    assert_eq!(one(&first, "SELECT pg_advisory_unlock(42)").await, "t");
    assert_eq!(one(&second, "SELECT pg_try_advisory_lock(42)").await, "f");
    assert_eq!(one(&first, "SELECT pg_advisory_unlock(42)").await, "t");
    assert_eq!(one(&second, "SELECT pg_try_advisory_lock(42)").await, "t");
    // The two-key form is another lock.
    assert_eq!(one(&first, "SELECT pg_try_advisory_lock(0, 42)").await, "t");

    // A waiting lock is granted when the holder disconnects.
    let waiting = tokio::spawn(async move { one(&first, "SELECT pg_advisory_lock(42)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "pg_advisory_lock did not wait");
    drop(second);
    let granted = tokio::time::timeout(Duration::from_secs(10), waiting).await;
    assert_eq!(granted.expect("the lock was never granted").unwrap(), "");
}

#[tokio::test]
async fn a_client_that_disconnects_inside_a_block_keeps_nothing() {
    let (pg, sluice, client) = setup().await;
    create_shop_connection(&client, &pg).await;
    let leaving = sluice.client().await;
    leaving
        .batch_execute(
            "BEGIN; CREATE SECRET gone AS 'x'; CREATE ETL JOB j FROM shop.public.t INTO warehouse.gone SNAPSHOT",
        )
        .await
        .unwrap();
    drop(leaving);
    // The job's new table is dropped once the server sees the disconnect.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.simple_query("SELECT * FROM warehouse.gone").await.is_ok() {
        assert!(Instant::now() < deadline, "the rolled back job's table stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(names(&client, "secrets").await.is_empty());
    assert!(names(&client, "jobs").await.is_empty());
}
