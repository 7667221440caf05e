//! Editing loaded jobs through a real client against a real sluice, with a
//! PostgreSQL source and the local warehouse: `ALTER ETL JOB ... ADD
//! COLUMN`, `DROP COLUMN`, `SET COLUMNS`, `SET INCREMENTAL BY`, `SET
//! SNAPSHOT`, `RESET WATERMARK`, and `CREATE OR REPLACE ETL JOB` as an
//! edit. Every load is compared row by row: no row lost or loaded twice.

use std::time::Duration;

use tokio_postgres::Client;

use crate::common;
use crate::fake_bigquery::FakeBigQuery;
use common::*;

/// PostgreSQL with `shop.public.items` (ids 1 and 2), a sluice with its
/// `shop` connection.
async fn setup() -> (PgServer, Sluice, Client) {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.items (id int PRIMARY KEY, qty int NOT NULL, name text, note text);
         INSERT INTO public.items VALUES (1, 10, 'a', 'n1'), (2, 20, 'b', 'n2');",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    (pg, sluice, client)
}

/// The destination rows of `warehouse.items` as `|`-separated text by id.
async fn loaded(client: &Client, columns: &str) -> Vec<String> {
    as_lines(rows(client, &format!("SELECT {columns} FROM warehouse.items ORDER BY id")).await)
}

/// Runs `items` and checks it succeeded.
async fn run(client: &Client) {
    let run = rows(client, "RUN ETL JOB items").await;
    assert_eq!(run[0][1].as_deref(), Some("succeeded"), "{run:?}");
}

/// The NOTICEs psql prints for `sql`.
fn notices(sluice: &Sluice, sql: &str) -> String {
    let output = sluice.psql(sql);
    assert!(output.status.success(), "{sql}: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn columns_are_added_and_dropped_after_data_was_loaded() {
    let (pg, sluice, client) = setup().await;
    client
        .batch_execute(
            "CREATE ETL JOB items FROM shop.public.items (id, qty) INTO items INCREMENTAL BY id ALL \
             WITH (commit_guard = 'off')",
        )
        .await
        .unwrap();
    run(&client).await;

    // Added: rows loaded before have NULL, rows loaded after the value.
    let said = notices(&sluice, "ALTER ETL JOB items ADD COLUMN name");
    assert!(
        said.contains("column \"name\" is loaded from now on") && said.contains("have NULL in it"),
        "{said}"
    );
    pg.psql_admin_db("shop", "INSERT INTO public.items VALUES (3, 30, 'c', 'n3')");
    run(&client).await;
    assert_eq!(
        loaded(&client, "id, qty, name").await,
        ["1|10|NULL", "2|20|NULL", "3|30|c"]
    );

    // Dropped: the destination keeps the column; rows loaded after have NULL.
    let said = notices(&sluice, "ALTER ETL JOB items DROP COLUMN qty");
    assert!(said.contains("the destination table keeps it"), "{said}");
    pg.psql_admin_db("shop", "INSERT INTO public.items VALUES (4, 40, 'd', 'n4')");
    run(&client).await;
    assert_eq!(
        loaded(&client, "id, qty, name").await,
        ["1|10|NULL", "2|20|NULL", "3|30|c", "4|NULL|d"]
    );
    let create = show_create(&client).await;
    assert!(create.contains("shop.public.items (id, name)"), "{create}");

    // SET COLUMNS with a type the column already has, and a relaxation.
    client
        .batch_execute("ALTER ETL JOB items SET COLUMNS (id, name STRING, note STRING NULLABLE)")
        .await
        .unwrap();
    pg.psql_admin_db("shop", "INSERT INTO public.items VALUES (5, 50, 'e', 'n5')");
    run(&client).await;
    assert_eq!(
        loaded(&client, "id, qty, name, note").await,
        [
            "1|10|NULL|NULL",
            "2|20|NULL|NULL",
            "3|30|c|NULL",
            "4|NULL|d|NULL",
            "5|NULL|e|n5"
        ]
    );

    // Refused, each naming the column (and the types), nothing changed.
    let message = expect_err(
        &client,
        "ALTER ETL JOB items SET COLUMNS (id, name INT64, note)",
        "55000",
    )
    .await;
    assert!(
        message.contains("column \"name\" is STRING in the destination table and cannot become INT64"),
        "{message}"
    );
    let message = expect_err(
        &client,
        "ALTER ETL JOB items SET COLUMNS (id, name STRING REQUIRED)",
        "55000",
    )
    .await;
    assert!(
        message.contains("\"name\"") && message.contains("cannot become REQUIRED"),
        "{message}"
    );
    let message = expect_err(&client, "ALTER ETL JOB items ADD COLUMN qty INT64 REQUIRED", "55000").await;
    assert!(message.contains("\"qty\"") && message.contains("NULLABLE"), "{message}");
    let message = expect_err(&client, "ALTER ETL JOB items ADD COLUMN nope", "42703").await;
    assert!(message.contains("nope"), "{message}");
    let message = expect_err(&client, "ALTER ETL JOB items DROP COLUMN id", "22023").await;
    assert!(message.contains("cursor column \"id\""), "{message}");
    let create_after = show_create(&client).await;
    assert!(create_after.contains("(id, name, note)"), "{create_after}");
    expect_err(&client, "BEGIN; ALTER ETL JOB items DROP COLUMN note", "25001").await;
    client.batch_execute("ROLLBACK").await.unwrap();

    // Refused while a run is in flight.
    let mut config = pg.config();
    config.dbname("shop");
    let locker = connect(&config).await.unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE public.items IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    rows(&client, "RUN ETL JOB items ASYNC").await;
    let message = expect_err(&client, "ALTER ETL JOB items DROP COLUMN note", "55006").await;
    assert!(message.contains("already running"), "{message}");
    expect_err(&client, "ALTER ETL JOB items RESET WATERMARK", "55006").await;
    locker.batch_execute("COMMIT").await.unwrap();
    wait_for_run(&client).await;
    assert_eq!(
        loaded(&client, "id").await.len(),
        5,
        "the refused edits changed nothing"
    );
}

/// The statement of `SHOW CREATE ETL JOB items`.
async fn show_create(client: &Client) -> String {
    rows(client, "SHOW CREATE ETL JOB items").await[0][1].clone().unwrap()
}

/// Waits until no run of `items` is running.
async fn wait_for_run(client: &Client) {
    loop {
        let status = one(
            client,
            "SELECT status FROM sluice.runs WHERE job = 'items' AND trigger <> 'watermark' ORDER BY run_id DESC LIMIT 1",
        )
        .await;
        if status != "running" {
            assert_eq!(status, "succeeded");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn switching_between_snapshot_and_incremental_loads_every_row_once() {
    let (pg, _sluice, client) = setup().await;
    client
        .batch_execute("CREATE ETL JOB items FROM shop.public.items (id, name) INTO items SNAPSHOT")
        .await
        .unwrap();
    run(&client).await;
    pg.psql_admin_db("shop", "INSERT INTO public.items VALUES (3, 30, 'c', 'n3')");

    let message = expect_err(&client, "ALTER ETL JOB items SET INCREMENTAL BY name ALL", "22023").await;
    assert!(message.contains("cursor column \"name\""), "{message}");
    client
        .batch_execute("ALTER ETL JOB items SET INCREMENTAL BY id ALL")
        .await
        .unwrap();
    run(&client).await;
    assert_eq!(loaded(&client, "id, name").await, ["1|a", "2|b", "3|c"]);
    pg.psql_admin_db("shop", "INSERT INTO public.items VALUES (4, 40, 'd', 'n4')");
    run(&client).await;
    assert_eq!(loaded(&client, "id").await, ["1", "2", "3", "4"]);
    assert_eq!(
        one(&client, "SELECT watermark FROM sluice.jobs WHERE name = 'items'").await,
        "4"
    );

    // Back to a snapshot: the watermark goes (recorded), the next run
    // replaces the rows with the source's.
    client.batch_execute("ALTER ETL JOB items SET SNAPSHOT").await.unwrap();
    assert_eq!(
        one(
            &client,
            "SELECT coalesce(watermark, 'none') FROM sluice.jobs WHERE name = 'items'"
        )
        .await,
        "none"
    );
    let moved = rows(
        &client,
        "SELECT status, watermark_from, coalesce(watermark_to, 'none') FROM sluice.runs \
         WHERE job = 'items' AND trigger = 'watermark' ORDER BY run_id",
    )
    .await;
    let none = || Some("none".to_owned());
    assert_eq!(
        moved,
        [
            [Some("skipped".into()), None, none()],
            [Some("skipped".into()), Some("4".into()), none()]
        ],
        "each switch of load type is recorded"
    );
    pg.psql_admin_db(
        "shop",
        "DELETE FROM public.items WHERE id = 1; INSERT INTO public.items VALUES (5, 50, 'e', 'n5')",
    );
    run(&client).await;
    assert_eq!(loaded(&client, "id").await, ["2", "3", "4", "5"]);

    // And incremental again, from a start rule that reads a part only.
    client
        .batch_execute("ALTER ETL JOB items SET INCREMENTAL BY id SINCE '3'")
        .await
        .unwrap();
    run(&client).await;
    assert_eq!(
        loaded(&client, "id").await,
        ["4", "5"],
        "the start rule's window in place of the rows"
    );
    let differences = rows(&client, "VERIFY ETL JOB items").await;
    assert!(
        differences.is_empty(),
        "VERIFY compares the window loaded since the switch: {differences:?}"
    );
}

#[tokio::test]
async fn reset_watermark_reloads_the_start_window_once_and_is_recorded() {
    let (pg, mut sluice, client) = setup().await;
    client
        .batch_execute(
            "CREATE ETL JOB items FROM shop.public.items (id, name) INTO items INCREMENTAL BY id ALL \
             WITH (commit_guard = 'off')",
        )
        .await
        .unwrap();
    run(&client).await;
    client
        .batch_execute("ALTER ETL JOB items SET WATERMARK '1'")
        .await
        .unwrap();
    client
        .batch_execute("ALTER ETL JOB items RESET WATERMARK")
        .await
        .unwrap();
    let moved = rows(
        &client,
        "SELECT status, coalesce(watermark_from, 'none'), coalesce(watermark_to, 'none'), error FROM sluice.runs \
         WHERE job = 'items' AND trigger = 'watermark' ORDER BY run_id",
    )
    .await;
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert_eq!(
        moved[0][..3],
        [Some("skipped".into()), Some("2".into()), Some("1".into())]
    );
    assert_eq!(
        moved[1][..3],
        [Some("skipped".into()), Some("1".into()), Some("none".into())]
    );
    assert!(moved[1][3].as_deref().unwrap().contains("RESET WATERMARK"), "{moved:?}");

    // A restart keeps the reset: the destination's last load does not
    // bring the old watermark back.
    drop(client);
    sluice.restart();
    let client = sluice.client().await;
    assert_eq!(
        one(
            &client,
            "SELECT coalesce(watermark, 'none') FROM sluice.jobs WHERE name = 'items'"
        )
        .await,
        "none"
    );

    pg.psql_admin_db(
        "shop",
        "UPDATE public.items SET name = 'a2' WHERE id = 1; INSERT INTO public.items VALUES (3, 30, 'c', 'n3')",
    );
    run(&client).await;
    assert_eq!(
        loaded(&client, "id, name").await,
        ["1|a2", "2|b", "3|c"],
        "re-backfilled once, not appended"
    );
    pg.psql_admin_db("shop", "INSERT INTO public.items VALUES (4, 40, 'd', 'n4')");
    run(&client).await;
    assert_eq!(loaded(&client, "id").await, ["1", "2", "3", "4"], "later runs append");

    client
        .batch_execute("CREATE ETL JOB snap FROM shop.public.items INTO snap SNAPSHOT")
        .await
        .unwrap();
    let message = expect_err(&client, "ALTER ETL JOB snap RESET WATERMARK", "22023").await;
    assert!(message.contains("snapshot"), "{message}");
}

#[tokio::test]
async fn create_or_replace_a_loaded_job_edits_it_or_names_what_cannot_change() {
    let (pg, sluice, client) = setup().await;
    let create = |columns: &str, rest: &str| {
        format!(
            "CREATE OR REPLACE ETL JOB items FROM shop.public.items ({columns}) INTO items INCREMENTAL BY id ALL {rest}"
        )
    };
    client.batch_execute(&create("id, qty", "")).await.unwrap();
    run(&client).await;
    let said = notices(&sluice, &create("id, qty", ""));
    assert!(said.contains("is unchanged"), "{said}");

    let said = notices(&sluice, &create("id, qty, name", ""));
    assert!(said.contains("column \"name\" is loaded from now on"), "{said}");
    pg.psql_admin_db("shop", "INSERT INTO public.items VALUES (3, 30, 'c', 'n3')");
    run(&client).await;
    assert_eq!(
        loaded(&client, "id, qty, name").await,
        ["1|10|NULL", "2|20|NULL", "3|30|c"]
    );

    let message = expect_err(&client, &create("id, qty, name", "COLUMNS (qty STRING)"), "55000").await;
    assert!(
        message.contains("column \"qty\" is INT64") && message.contains("STRING"),
        "{message}"
    );
    let message = expect_err(
        &client,
        "CREATE OR REPLACE ETL JOB items FROM shop.public.items (id, qty, name) INTO other INCREMENTAL BY id ALL",
        "55000",
    )
    .await;
    assert!(message.contains("cannot change the destination table"), "{message}");
    assert_eq!(loaded(&client, "id").await, ["1", "2", "3"]);
}

/// Into BigQuery (the fake, which checks `tables.patch` as BigQuery does):
/// an added column comes as NULLABLE, a REQUIRED one relaxes to NULLABLE,
/// and another type is refused before BigQuery is asked.
#[tokio::test]
async fn bigquery_tables_gain_nullable_columns_and_relax_required_ones() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.items (id int PRIMARY KEY, qty int NOT NULL, name text);
         INSERT INTO public.items VALUES (1, 10, 'a'), (2, 20, 'b');",
    );
    let fake = FakeBigQuery::start().await;
    let keys = tempfile::tempdir().unwrap();
    let gcs = fake.gcs_url();
    let sluice = Sluice::start_with(
        &[],
        &[
            ("SLUICE_BIGQUERY_ENDPOINT", fake.url.as_str()),
            ("SLUICE_GCS_ENDPOINT", gcs.as_str()),
        ],
    );
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    let key_file = fake.write_key_file(keys.path());
    client
        .batch_execute(&format!(
            "CREATE CONNECTION wh TYPE bigquery OPTIONS (project 'test-project', dataset 'raw_data', \
             location 'EU', credentials_file '{}', connect_timeout 2); \
             CREATE ETL JOB items FROM shop.public.items (id, qty) INTO wh.items INCREMENTAL BY id ALL \
             WITH (commit_guard = 'off')",
            key_file.display()
        ))
        .await
        .unwrap();
    run(&client).await;
    let modes = || {
        let table = fake.table("raw_data", "items").expect("the table exists");
        table.resource["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{} {} {}",
                    f["name"].as_str().unwrap(),
                    f["type"].as_str().unwrap(),
                    f["mode"].as_str().unwrap_or("NULLABLE")
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(modes(), ["id INTEGER REQUIRED", "qty INTEGER REQUIRED"]);

    client
        .batch_execute("ALTER ETL JOB items ADD COLUMN name")
        .await
        .unwrap();
    client
        .batch_execute("ALTER ETL JOB items SET COLUMNS (id, qty INT64 NULLABLE, name)")
        .await
        .unwrap();
    assert_eq!(
        modes(),
        ["id INTEGER REQUIRED", "qty INTEGER NULLABLE", "name STRING NULLABLE"]
    );
    let message = expect_err(
        &client,
        "ALTER ETL JOB items SET COLUMNS (id, qty STRING, name)",
        "55000",
    )
    .await;
    assert!(
        message.contains("column \"qty\" is INT64 in the destination table and cannot become STRING"),
        "{message}"
    );
    pg.psql_admin_db("shop", "INSERT INTO public.items VALUES (3, 30, 'c')");
    run(&client).await;
    let rows: usize = fake
        .table("raw_data", "items")
        .unwrap()
        .batches
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 3, "every row loaded once");
}

/// A job with LOOKBACK ... DEDUPE ON skips rows already in the table; the
/// run after RESET WATERMARK replaces those rows, so it skips none.
#[tokio::test]
async fn reset_watermark_of_a_lookback_job_reloads_every_row() {
    let (pg, _sluice, client) = setup().await;
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.events (id int PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO public.events VALUES (1, now() - interval '3 hours'), (2, now() - interval '1 minute');",
    );
    client
        .batch_execute(
            "CREATE ETL JOB events FROM shop.public.events INTO events INCREMENTAL BY at ALL \
             LOOKBACK '2 hours' DEDUPE ON (id) WITH (commit_guard = 'off'); \
             RUN ETL JOB events; \
             ALTER ETL JOB events RESET WATERMARK; \
             RUN ETL JOB events",
        )
        .await
        .unwrap();
    let ids: Vec<_> = rows(&client, "SELECT id FROM warehouse.events ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2"]);
}
