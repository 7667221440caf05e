//! The `public` schema's row store through tokio-postgres against a real
//! sluice: the bookkeeping tables of dbmate, Alembic and node-pg-migrate,
//! their constraints, both query protocols, catalog visibility, and
//! transactions shared with Sluice statements.

use crate::common;

use common::*;

#[tokio::test]
async fn bookkeeping_tables_keep_rows_and_enforce_their_keys() {
    let mut sluice = Sluice::start();
    let client = sluice.client().await;

    // dbmate's table, created twice as dbmate does; rows bound as $1.
    let create = "CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) primary key)";
    client.batch_execute(create).await.unwrap();
    client.batch_execute(create).await.unwrap();
    expect_err(&client, "CREATE TABLE schema_migrations (v text)", "42P07").await;
    let insert = "insert into schema_migrations (version) values ($1)";
    for version in ["20240101000000", "20240201000000"] {
        assert_eq!(client.execute(insert, &[&version]).await.unwrap(), 1);
    }
    let duplicate = client.execute(insert, &[&"20240101000000"]).await.unwrap_err();
    let db = duplicate.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "23505", "{db:?}");
    assert_eq!(db.detail(), Some("Key (version)=(20240101000000) already exists."));
    let versions: Vec<String> = client
        .query("select version from schema_migrations order by version desc", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, ["20240201000000", "20240101000000"]);
    assert_eq!(
        client
            .execute("delete from schema_migrations where version = $1", &[&"20240201000000"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(one(&client, "SELECT count(*) FROM public.schema_migrations").await, "1");
    expect_err(
        &client,
        "INSERT INTO schema_migrations VALUES (repeat('x', 129))",
        "22001",
    )
    .await;

    // Alembic's table: a named primary key, UPDATE qualified by the table.
    client
        .batch_execute(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, \
             CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
        )
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO alembic_version (version_num) VALUES ('a1')")
        .await
        .unwrap();
    let updated = client
        .execute(
            "UPDATE alembic_version SET version_num='b2' WHERE alembic_version.version_num = 'a1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1);
    assert_eq!(one(&client, "SELECT version_num FROM alembic_version").await, "b2");
    expect_err(&client, "INSERT INTO alembic_version VALUES (NULL)", "23502").await;
    expect_err(&client, "INSERT INTO alembic_version VALUES ('b2')", "23505").await;

    // node-pg-migrate's table: a serial id, NOW() into a timestamp.
    client
        .batch_execute(
            "CREATE TABLE \"public\".\"pgmigrations\" (id SERIAL PRIMARY KEY, \
             name varchar(255) NOT NULL, run_on timestamp NOT NULL)",
        )
        .await
        .unwrap();
    let returned = rows(
        &client,
        "INSERT INTO \"public\".\"pgmigrations\" (name, run_on) VALUES ('1_first', NOW()), ('2_second', NOW()) \
         RETURNING id, name",
    )
    .await;
    assert_eq!(
        returned,
        [
            [Some("1".to_owned()), Some("1_first".to_owned())],
            [Some("2".to_owned()), Some("2_second".to_owned())]
        ]
    );
    expect_err(&client, "INSERT INTO pgmigrations (name) VALUES ('3_third')", "23502").await;
    // RETURNING writes times in the session's DateStyle, as queries do.
    client.batch_execute("SET DateStyle = 'German'").await.unwrap();
    let returned = rows(
        &client,
        "UPDATE pgmigrations SET run_on = TIMESTAMP '2024-03-05 01:02:03' WHERE id = 1 RETURNING run_on",
    )
    .await;
    assert_eq!(returned[0][0].as_deref(), Some("05.03.2024 01:02:03.000000"));
    client.batch_execute("SET DateStyle = 'ISO'").await.unwrap();
    assert_eq!(
        one(
            &client,
            "SELECT name FROM pgmigrations ORDER BY run_on DESC, id DESC LIMIT 1"
        )
        .await,
        "2_second"
    );

    // The tools' existence checks.
    let tables = rows(
        &client,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    )
    .await;
    assert_eq!(tables.len(), 3, "{tables:?}");
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = 'alembic_version' AND n.nspname = 'public' AND pg_catalog.pg_table_is_visible(c.oid)",
        )
        .await,
        "1"
    );

    // Bad input: a clear error, nothing changed.
    expect_err(&client, "INSERT INTO no_such_table VALUES (1)", "42P01").await;
    expect_err(&client, "INSERT INTO pgmigrations (nope) VALUES (1)", "42703").await;
    expect_err(&client, "CREATE TABLE t (x jsonb)", "0A000").await;
    // Other forms stay refused plain SQL.
    for refused in [
        "CREATE EXTERNAL TABLE ext STORED AS PARQUET LOCATION '/etc/'",
        "CREATE TABLE copied AS SELECT 1 AS a",
        "CREATE TEMPORARY TABLE tmp (a int)",
    ] {
        expect_err(&client, refused, "42501").await;
    }
    expect_err(
        &client,
        "INSERT INTO pgmigrations (name, run_on) SELECT 'n' || value, NOW() FROM generate_series(1, 10001)",
        "54000",
    )
    .await;
    assert_eq!(one(&client, "SELECT count(*) FROM pgmigrations").await, "2");

    client
        .batch_execute("DROP TABLE pgmigrations, alembic_version")
        .await
        .unwrap();
    expect_err(&client, "SELECT * FROM pgmigrations", "42P01").await;
    client.batch_execute("DROP TABLE IF EXISTS pgmigrations").await.unwrap();

    // Rows survive a restart.
    drop(client);
    sluice.restart();
    let client = sluice.client().await;
    assert_eq!(
        one(&client, "SELECT version FROM schema_migrations").await,
        "20240101000000"
    );
}

#[tokio::test]
async fn bookkeeping_rows_commit_and_roll_back_with_sluice_statements() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")
        .await
        .unwrap();

    client
        .batch_execute("BEGIN; CREATE SECRET s1 AS 'x'; INSERT INTO schema_migrations VALUES ('1'); ROLLBACK")
        .await
        .unwrap();
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.secrets").await, "0");
    assert_eq!(one(&client, "SELECT count(*) FROM schema_migrations").await, "0");

    // Inside the block the staged row is visible; another session sees it
    // only after COMMIT.
    let other = sluice.client().await;
    client
        .batch_execute("BEGIN; CREATE SECRET s1 AS 'x'; INSERT INTO schema_migrations VALUES ('1')")
        .await
        .unwrap();
    assert_eq!(one(&client, "SELECT count(*) FROM schema_migrations").await, "1");
    assert_eq!(one(&other, "SELECT count(*) FROM schema_migrations").await, "0");
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(one(&other, "SELECT count(*) FROM schema_migrations").await, "1");
    assert_eq!(one(&other, "SELECT count(*) FROM sluice.secrets").await, "1");

    // A failing statement fails the block: neither the secret nor the row.
    client
        .batch_execute("BEGIN; CREATE SECRET s2 AS 'x'; INSERT INTO schema_migrations VALUES ('2')")
        .await
        .unwrap();
    expect_err(&client, "INSERT INTO schema_migrations VALUES ('1')", "23505").await;
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.secrets").await, "1");
    assert_eq!(one(&client, "SELECT count(*) FROM schema_migrations").await, "1");
}

#[tokio::test]
async fn a_commit_that_conflicts_ends_the_transaction() {
    let sluice = Sluice::start();
    let first = sluice.client().await;
    let second = sluice.client().await;
    first
        .batch_execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")
        .await
        .unwrap();

    // Two blocks add rows to the same table: the second COMMIT conflicts.
    for (simple, version) in [(true, "1"), (false, "2")] {
        first
            .batch_execute(&format!("BEGIN; INSERT INTO schema_migrations VALUES ('{version}')"))
            .await
            .unwrap();
        second
            .batch_execute(&format!("BEGIN; INSERT INTO schema_migrations VALUES ('{version}x')"))
            .await
            .unwrap();
        first.batch_execute("COMMIT").await.unwrap();
        if simple {
            expect_err(&second, "COMMIT", "40001").await;
        } else {
            expect_err_extended(&second, "COMMIT", "40001").await;
        }
        // As in PostgreSQL the failed COMMIT ended the block: no ROLLBACK
        // needed, and the next statements run (outside a block).
        assert_eq!(one(&second, "SELECT count(*) FROM schema_migrations").await, version);
        second
            .batch_execute(&format!("INSERT INTO schema_migrations VALUES ('{version}x')"))
            .await
            .unwrap();
        second
            .batch_execute(&format!("DELETE FROM schema_migrations WHERE version = '{version}x'"))
            .await
            .unwrap();
    }
}
