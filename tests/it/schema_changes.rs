//! Source schema changes, end to end: a job follows added and dropped
//! columns and widened types (`on_schema_change = 'evolve'`, the default)
//! from PostgreSQL and MariaDB into the local warehouse and into BigQuery
//! (the fake, which checks `tables.patch` as BigQuery does), and fails the
//! run with SQLSTATE 55000 before anything is written on a narrowing change
//! or, under `'fail'`, on any change. Every load is compared row by row
//! with the source.

use crate::common;
use crate::fake_bigquery;

use axum::http::Method;
use common::*;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use fake_bigquery::{FakeBigQuery, FaultKind};
use tokio_postgres::Client;

/// A source database with the `items` table.
enum Source {
    Postgres(PgServer),
    MariaDb(MariaDb),
}

/// Where the job loads.
enum Target {
    Warehouse,
    BigQuery(FakeBigQuery, tempfile::TempDir),
}

struct Env {
    source: Source,
    target: Target,
    sluice: Sluice,
    client: Client,
}

impl Source {
    fn sql(&self, sql: &str) -> String {
        match self {
            Source::Postgres(pg) => pg.psql_admin_db("shop", sql),
            Source::MariaDb(maria) => maria.sql(sql),
        }
    }

    /// `FROM` of a job reading `items`.
    fn table(&self) -> &'static str {
        match self {
            Source::Postgres(_) => "src.public.items",
            Source::MariaDb(_) => "src.shop.items",
        }
    }

    /// The statement changing `column` to `sql_type` (NOT NULL kept where given).
    fn retype(&self, column: &str, sql_type: &str) -> String {
        match self {
            Source::Postgres(_) => {
                let (ty, not_null) = match sql_type.strip_suffix(" NOT NULL") {
                    Some(ty) => (ty, true),
                    None => (sql_type, false),
                };
                let null = if not_null { "SET NOT NULL" } else { "DROP NOT NULL" };
                format!("ALTER TABLE items ALTER COLUMN {column} TYPE {ty}, ALTER COLUMN {column} {null}")
            }
            Source::MariaDb(_) => format!("ALTER TABLE items MODIFY {column} {sql_type}"),
        }
    }

    /// `columns` of every source row, `|`-separated, NULL as `NULL`, by id.
    fn rows(&self, columns: &[&str]) -> Vec<String> {
        let values: Vec<String> = columns
            .iter()
            .map(|c| match self {
                Source::Postgres(_) => format!("coalesce({c}::text, 'NULL')"),
                Source::MariaDb(_) => format!("coalesce(CAST({c} AS CHAR), 'NULL')"),
            })
            .collect();
        self.sql(&format!(
            "SELECT concat_ws('|', {}) FROM items ORDER BY id",
            values.join(", ")
        ))
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

impl Env {
    async fn start(source: &str, target: &str) -> Env {
        let source = match source {
            "postgres" => Source::Postgres(PgServer::start()),
            _ => Source::MariaDb(MariaDb::start()),
        };
        source.sql(
            "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, name varchar(20), note text);
             INSERT INTO items VALUES (1, 10, 'a', 'n1'), (2, 20, 'b', NULL);",
        );
        let (target, sluice) = match target {
            "bigquery" => {
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
                (Target::BigQuery(fake, keys), sluice)
            }
            _ => (Target::Warehouse, Sluice::start()),
        };
        let client = sluice.client().await;
        let (kind, port) = match &source {
            Source::Postgres(pg) => ("postgres", pg.port),
            Source::MariaDb(maria) => ("mariadb", maria.port),
        };
        client
            .batch_execute(&format!(
                "CREATE CONNECTION src TYPE {kind} OPTIONS (host '127.0.0.1', port {port}, database 'shop', \
                 user 'etl', password '{ETL_PASSWORD}')"
            ))
            .await
            .unwrap();
        if let Target::BigQuery(fake, keys) = &target {
            let key_file = fake.write_key_file(keys.path());
            client
                .batch_execute(&format!(
                    "CREATE CONNECTION wh TYPE bigquery OPTIONS (project 'test-project', dataset 'raw_data', \
                     location 'EU', credentials_file '{}', connect_timeout 2)",
                    key_file.display()
                ))
                .await
                .unwrap();
        }
        Env {
            source,
            target,
            sluice,
            client,
        }
    }

    /// Creates job `name` loading `items` incrementally by `id` into table
    /// `name`, with extra `settings`.
    async fn create_job(&self, name: &str, settings: &str) {
        let into = match self.target {
            Target::Warehouse => format!("INTO {name}"),
            Target::BigQuery(..) => format!("INTO wh.{name}"),
        };
        self.client
            .batch_execute(&format!(
                "CREATE ETL JOB {name} FROM {} {into} INCREMENTAL BY id ALL \
                 WITH (commit_guard = 'off'{settings})",
                self.source.table()
            ))
            .await
            .unwrap();
    }

    /// `columns` of every destination row, as [`Source::rows`] gives them;
    /// the first column is `id`.
    async fn loaded(&self, table: &str, columns: &[&str]) -> Vec<String> {
        let mut rows: Vec<(i64, String)> = match &self.target {
            Target::Warehouse => rows(
                &self.client,
                &format!("SELECT {} FROM warehouse.{table}", columns.join(", ")),
            )
            .await
            .into_iter()
            .map(|row| {
                let text: Vec<String> = row.iter().map(|v| v.clone().unwrap_or_else(|| "NULL".into())).collect();
                (text[0].parse().unwrap(), text.join("|"))
            })
            .collect(),
            Target::BigQuery(fake, _) => {
                let table = fake.table("raw_data", table).expect("the table exists");
                table.batches.iter().flat_map(|b| batch_rows(b, columns)).collect()
            }
        };
        rows.sort();
        rows.into_iter().map(|(_, row)| row).collect()
    }

    /// The destination table's column names.
    async fn destination_columns(&self, table: &str) -> Vec<String> {
        match &self.target {
            Target::Warehouse => self
                .client
                .prepare(&format!("SELECT * FROM warehouse.{table}"))
                .await
                .unwrap()
                .columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect(),
            Target::BigQuery(fake, _) => {
                let table = fake.table("raw_data", table).expect("the table exists");
                table.resource["schema"]["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["name"].as_str().unwrap().to_owned())
                    .collect()
            }
        }
    }

    /// Runs `job` through psql (a real client printing the NOTICEs);
    /// returns what psql printed on stderr.
    fn run_in_psql(&self, job: &str) -> String {
        let output = self.sluice.psql(&format!("RUN ETL JOB {job};"));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    }

    /// `sluice.schema_changes` rows of `job`: column, change, before, after.
    async fn changes(&self, job: &str) -> Vec<String> {
        rows(
            &self.client,
            &format!(
                "SELECT column_name, change, coalesce(before, '-'), coalesce(after, '-') FROM sluice.schema_changes \
                 WHERE job = '{job}' ORDER BY run_id, at, column_name"
            ),
        )
        .await
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap).collect::<Vec<_>>().join(" "))
        .collect()
    }
}

/// `columns` of a fake table's batch (NULL where the batch predates the
/// column), keyed by the first.
fn batch_rows(batch: &RecordBatch, columns: &[&str]) -> Vec<(i64, String)> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<_> = columns
        .iter()
        .map(|name| {
            batch
                .column_by_name(name)
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
        })
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.as_ref().map_or("NULL".into(), |f| f.value(row).to_string()))
                .collect();
            (values[0].parse().unwrap(), values.join("|"))
        })
        .collect()
}

/// Add a column, widen int to bigint, drop a column: each run follows the
/// change, says so in a NOTICE and in `sluice.schema_changes`, and the
/// destination matches the source row by row. A narrowing change then fails
/// with 55000 before anything is written; changed back, the next run loads
/// the waiting row once.
async fn follows_changes(source: &str, target: &str) {
    let env = Env::start(source, target).await;
    let src = &env.source;
    env.create_job("items", "").await;
    let all = ["id", "qty", "name", "note"];
    env.run_in_psql("items");
    assert_eq!(env.loaded("items", &all).await, src.rows(&all));

    // Added: NULLABLE in the destination, loaded from now on.
    src.sql("ALTER TABLE items ADD COLUMN extra varchar(10); INSERT INTO items VALUES (3, 30, 'c', 'n3', 'x3');");
    let notices = env.run_in_psql("items");
    assert!(
        notices.contains("source schema change: column \"extra\" added to the destination as NULLABLE"),
        "{notices}"
    );
    let all = ["id", "qty", "name", "note", "extra"];
    assert_eq!(env.loaded("items", &all).await, src.rows(&all));
    assert_eq!(env.destination_columns("items").await, all);

    // Widened: int to bigint, a value only bigint holds.
    src.sql(&src.retype("qty", "bigint NOT NULL"));
    src.sql("INSERT INTO items VALUES (4, 5000000000, 'd', 'n4', 'x4')");
    let notices = env.run_in_psql("items");
    assert!(notices.contains("column \"qty\" widened"), "{notices}");
    assert_eq!(env.loaded("items", &all).await, src.rows(&all));

    // Dropped: stays in the destination, NULL from now on.
    src.sql("ALTER TABLE items DROP COLUMN note; INSERT INTO items VALUES (5, 50, 'e', 'x5');");
    let notices = env.run_in_psql("items");
    assert!(notices.contains("column \"note\" dropped at the source"), "{notices}");
    let kept = ["id", "qty", "name", "extra"];
    assert_eq!(env.loaded("items", &kept).await, src.rows(&kept));
    assert_eq!(
        env.loaded("items", &["id", "note"]).await,
        ["1|n1", "2|NULL", "3|n3", "4|n4", "5|NULL"]
    );
    assert_eq!(env.destination_columns("items").await, all);

    // Widened: a longer varchar.
    src.sql(&src.retype("name", "varchar(40)"));
    src.sql("INSERT INTO items VALUES (6, 60, 'a name longer than twenty', 'x6')");
    env.run_in_psql("items");
    assert_eq!(env.loaded("items", &kept).await, src.rows(&kept));

    let (int, bigint, varchar10, varchar20, varchar40) = match src {
        Source::Postgres(_) => (
            "integer",
            "bigint",
            "character varying(10)",
            "character varying(20)",
            "character varying(40)",
        ),
        Source::MariaDb(_) => ("int(11)", "bigint(20)", "varchar(10)", "varchar(20)", "varchar(40)"),
    };
    let changes = env.changes("items").await;
    assert_eq!(
        changes,
        [
            format!("extra added - {varchar10}"),
            format!("qty widened {int} NOT NULL {bigint} NOT NULL"),
            "note dropped text -".to_owned(),
            format!("name widened {varchar20} {varchar40}"),
        ]
    );

    // Narrowed: refused before anything is written.
    src.sql(&src.retype("name", "varchar(30)"));
    src.sql("INSERT INTO items VALUES (7, 70, 'g', 'x7')");
    let message = expect_err(&env.client, "RUN ETL JOB items", "55000").await;
    let narrow = match src {
        Source::Postgres(_) => "character varying(30)",
        Source::MariaDb(_) => "varchar(30)",
    };
    for needle in [
        "column \"name\"".to_owned(),
        format!("was {varchar40}, is now {narrow}"),
        "nothing was loaded".into(),
        "DROP ETL JOB items WITH DATA and CREATE ETL JOB items again".into(),
    ] {
        assert!(message.contains(&needle), "{needle}: {message}");
    }
    assert_eq!(env.loaded("items", &kept).await.len(), 6, "nothing was written");
    assert_eq!(env.changes("items").await, changes, "no change recorded");
    assert_eq!(
        rows(
            &env.client,
            "SELECT status, sqlstate, watermark_to FROM sluice.runs WHERE job = 'items' ORDER BY run_id DESC LIMIT 1"
        )
        .await[0],
        [Some("failed".into()), Some("55000".into()), None]
    );
    assert_eq!(one(&env.client, "SELECT watermark FROM sluice.jobs").await, "6");

    // Changed back: the waiting row arrives, once.
    src.sql(&src.retype("name", "varchar(40)"));
    env.run_in_psql("items");
    assert_eq!(env.loaded("items", &kept).await, src.rows(&kept));
    env.run_in_psql("items");
    assert_eq!(env.loaded("items", &kept).await, src.rows(&kept));
}

#[tokio::test]
async fn postgres_changes_are_followed_into_the_warehouse() {
    follows_changes("postgres", "warehouse").await;
}

#[tokio::test]
async fn mariadb_changes_are_followed_into_the_warehouse() {
    follows_changes("mariadb", "warehouse").await;
}

#[tokio::test]
async fn postgres_changes_are_followed_into_bigquery() {
    follows_changes("postgres", "bigquery").await;
}

#[tokio::test]
async fn mariadb_changes_are_followed_into_bigquery() {
    follows_changes("mariadb", "bigquery").await;
}

/// Under `on_schema_change = 'fail'` any change fails the run with 55000
/// and the fix, and nothing is written; after `ALTER ETL JOB ... SET
/// (on_schema_change = 'evolve')` the next run follows it.
async fn fail_mode_fails_on_any_change(source: &str, target: &str) {
    let env = Env::start(source, target).await;
    let src = &env.source;
    env.create_job("strict", ", on_schema_change = 'fail'").await;
    let show = rows(&env.client, "SHOW CREATE ETL JOB strict").await[0][1]
        .clone()
        .unwrap();
    assert!(show.contains("on_schema_change = 'fail'"), "{show}");
    env.run_in_psql("strict");
    let before = ["id", "qty", "name", "note"];
    assert_eq!(env.loaded("strict", &before).await, src.rows(&before));

    src.sql("ALTER TABLE items ADD COLUMN extra text; INSERT INTO items VALUES (3, 30, 'c', 'n3', 'x3');");
    let message = expect_err(&env.client, "RUN ETL JOB strict", "55000").await;
    for needle in [
        "column \"extra\"",
        "on_schema_change = 'fail'",
        "ALTER ETL JOB strict SET (on_schema_change = 'evolve')",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert_eq!(env.loaded("strict", &before).await.len(), 2, "nothing was written");
    assert_eq!(
        env.destination_columns("strict").await,
        before,
        "the table is unchanged"
    );
    assert!(env.changes("strict").await.is_empty());

    // A widening is a change too.
    src.sql("ALTER TABLE items DROP COLUMN extra; DELETE FROM items WHERE id = 3;");
    src.sql(&src.retype("qty", "bigint NOT NULL"));
    expect_err(&env.client, "RUN ETL JOB strict", "55000").await;

    env.client
        .batch_execute("ALTER ETL JOB strict SET (on_schema_change = 'evolve')")
        .await
        .unwrap();
    src.sql("INSERT INTO items VALUES (3, 30, 'c', 'n3')");
    env.run_in_psql("strict");
    assert_eq!(env.loaded("strict", &before).await, src.rows(&before));
    assert_eq!(env.changes("strict").await.len(), 1);
}

#[tokio::test]
async fn fail_mode_fails_on_any_change_postgres_into_the_warehouse() {
    fail_mode_fails_on_any_change("postgres", "warehouse").await;
}

#[tokio::test]
async fn fail_mode_fails_on_any_change_mariadb_into_bigquery() {
    fail_mode_fails_on_any_change("mariadb", "bigquery").await;
}

/// A run that patched the BigQuery table and then failed its load leaves a
/// table the next run loads into: the rows arrive exactly once, and the
/// patch is not sent again.
#[tokio::test]
async fn a_failed_load_after_the_patch_does_not_break_the_rerun() {
    let env = Env::start("postgres", "bigquery").await;
    let src = &env.source;
    env.create_job("items", "").await;
    env.run_in_psql("items");
    let Target::BigQuery(fake, _) = &env.target else {
        unreachable!()
    };
    src.sql("ALTER TABLE items ADD COLUMN extra text; INSERT INTO items VALUES (3, 30, 'c', 'n3', 'x3');");
    fake.inject(Method::POST, "upload/bigquery", FaultKind::Status(400, "invalid"), 1);
    let patches = || fake.state().schema_patches;
    let before = patches();
    env.client.simple_query("RUN ETL JOB items").await.unwrap_err();
    let failed = rows(
        &env.client,
        "SELECT status FROM sluice.runs WHERE job = 'items' ORDER BY run_id DESC LIMIT 1",
    )
    .await;
    assert_eq!(failed[0][0].as_deref(), Some("failed"));
    assert_eq!(patches(), before + 1, "the columns were patched once");
    assert_eq!(env.loaded("items", &["id"]).await, ["1", "2"], "nothing was loaded");

    env.run_in_psql("items");
    let all = ["id", "qty", "name", "note", "extra"];
    assert_eq!(env.loaded("items", &all).await, src.rows(&all));
    assert_eq!(patches(), before + 1, "the re-run did not patch again");
    assert_eq!(env.changes("items").await, ["extra added - text"]);
}

/// `timestamp` to `timestamptz` at the source: the local warehouse follows
/// it (rows loaded before read as UTC), BigQuery cannot turn a DATETIME
/// column into a TIMESTAMP one, so the run fails with 55000 and the fix,
/// and nothing reaches the table.
async fn timestamp_to_timestamptz(target: &str) {
    let env = Env::start("postgres", target).await;
    let src = &env.source;
    src.sql(
        "CREATE TABLE events (id int PRIMARY KEY, at timestamp NOT NULL);
         INSERT INTO events VALUES (1, '2024-03-01 10:00:00'), (2, '2024-03-01 11:30:00.25');",
    );
    let into = match env.target {
        Target::Warehouse => "warehouse.events",
        Target::BigQuery(..) => "wh.events",
    };
    env.client
        .batch_execute(&format!(
            "CREATE ETL JOB events FROM src.public.events INTO {into} INCREMENTAL BY id ALL WITH (commit_guard = 'off')"
        ))
        .await
        .unwrap();
    env.run_in_psql("events");
    src.sql(
        "SET TIME ZONE 'UTC'; ALTER TABLE events ALTER COLUMN at TYPE timestamptz;
         INSERT INTO events VALUES (3, '2024-03-02 09:00:00+02');",
    );
    let epochs = |sql: &str| -> Vec<String> { src.sql(sql).lines().map(str::to_owned).collect() };
    let source = epochs("SELECT id || '|' || (extract(epoch FROM at) * 1000000)::bigint FROM events ORDER BY id");
    match &env.target {
        Target::Warehouse => {
            let notices = env.run_in_psql("events");
            assert!(notices.contains("column \"at\" widened"), "{notices}");
            let loaded: Vec<String> = rows(
                &env.client,
                "SELECT id, CAST(at AS BIGINT) FROM warehouse.events ORDER BY id",
            )
            .await
            .into_iter()
            .map(|r| format!("{}|{}", r[0].as_deref().unwrap(), r[1].as_deref().unwrap()))
            .collect();
            assert_eq!(loaded, source);
            assert_eq!(
                env.changes("events").await,
                ["at widened timestamp without time zone NOT NULL timestamp with time zone NOT NULL"]
            );
        }
        Target::BigQuery(..) => {
            let message = expect_err(&env.client, "RUN ETL JOB events", "55000").await;
            for needle in ["column \"at\"", "DATETIME", "TIMESTAMP", "DROP ETL JOB events"] {
                assert!(message.contains(needle), "{needle}: {message}");
            }
            assert_eq!(env.loaded("events", &["id"]).await, ["1", "2"], "nothing was loaded");
            assert!(env.changes("events").await.is_empty());
        }
    }
}

#[tokio::test]
async fn timestamp_to_timestamptz_is_followed_in_the_warehouse() {
    timestamp_to_timestamptz("warehouse").await;
}

#[tokio::test]
async fn timestamp_to_timestamptz_is_refused_by_bigquery() {
    timestamp_to_timestamptz("bigquery").await;
}

/// A run no session waits for (ASYNC here, scheduled alike) keeps the
/// NOTICEs it would have sent in `sluice.runs.notices`.
#[tokio::test]
async fn an_async_run_keeps_its_schema_change_notices_in_sluice_runs() {
    let env = Env::start("postgres", "warehouse").await;
    env.create_job("items", "").await;
    env.run_in_psql("items");
    env.source
        .sql("ALTER TABLE items ADD COLUMN extra varchar(10); INSERT INTO items VALUES (3, 30, 'c', 'n3', 'x3');");
    env.client.batch_execute("RUN ETL JOB items ASYNC").await.unwrap();
    let latest = "SELECT status, notices FROM sluice.runs WHERE job = 'items' ORDER BY run_id DESC LIMIT 1";
    let mut last = rows(&env.client, latest).await;
    for _ in 0..300 {
        if last[0][0].as_deref() != Some("running") && last[0][0].as_deref() != Some("queued") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        last = rows(&env.client, latest).await;
    }
    assert_eq!(last[0][0].as_deref(), Some("succeeded"), "{last:?}");
    let notices = last[0][1].clone().unwrap_or_default();
    assert!(
        notices.contains("source schema change: column \"extra\" added to the destination as NULLABLE"),
        "{notices}"
    );
    assert_eq!(
        one(
            &env.client,
            "SELECT count(*) FROM sluice.runs WHERE job = 'items' AND notices IS NULL"
        )
        .await,
        "1",
        "the first run had nothing to say"
    );
}
