//! CDC jobs into BigQuery (issue #22, docs/cdc.md "BigQuery"), end to end
//! from a real PostgreSQL (wal_level=logical) into the fake BigQuery:
//! `CDC MERGE` (with and without `soft_delete`) and `CDC HISTORY` with its
//! `<table>_current` view equal the source row by row after the first load
//! and after inserts, updates, a primary-key change, a TOASTed value left
//! unchanged, deletes and a TRUNCATE. Each batch is one query job (a
//! transaction with the position record); a commit whose answer is lost
//! is not applied twice, a refused commit fails the run and the next run
//! applies the batch once, a resync starts the tables over from a fresh
//! snapshot, and a kill -9 after the BigQuery commit and
//! before the catalog records it leaves the tables equal to the source
//! after a restart and a run. A `CONTINUOUS` job commits a transaction per
//! batch within one run. The same shapes from a real MariaDB into the fake
//! equal the source in both modes, and so do three continuous jobs' tables
//! after a random workload in small and large transactions that ran while
//! they streamed.

use std::time::Duration;

use axum::http::Method;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::scalar::ScalarValue;

use crate::bigquery::{Env, setup};
use crate::cdc_continuous::{Rng, random_transaction};
use crate::cdc_jobs::big;
use crate::cdc_mysql::{create_connection, maria_rows};
use crate::common::*;
use crate::fake_bigquery::FaultKind;
use crate::fake_bigquery::script::{Row, batch_rows};

pub(crate) const TABLE: &str = "CREATE TABLE items (id bigint PRIMARY KEY, name text, big text, qty int); \
                     ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;";
const COLUMNS: [&str; 4] = ["id", "name", "big", "qty"];
const DATASET: &str = "raw_data";

/// The fake, Sluice, `items` at the source and the jobs `items_merge`
/// (into `wh.items_m`), `items_soft` (`wh.items_s`, soft_delete) and
/// `items_history` (`wh.items_h`).
async fn setup_items(extra_env: &[(&str, &str)]) -> Env {
    setup_items_as(extra_env, false).await
}

/// [`setup_items`], with `continuous` jobs that commit every second.
async fn setup_items_as(extra_env: &[(&str, &str)], continuous: bool) -> Env {
    let env = setup(extra_env).await;
    env.pg.psql_admin_db(
        "shop",
        &format!(
            "{TABLE} INSERT INTO items VALUES (1, 'a', {}, 1), (2, 'b', {}, 2), (3, 'c', NULL, NULL);",
            big('a'),
            big('b')
        ),
    );
    let (stream, every) = match continuous {
        true => (" CONTINUOUS", "flush_interval = '1 second'"),
        false => ("", ""),
    };
    let with = |settings: &[&str]| {
        let settings: Vec<&str> = settings
            .iter()
            .copied()
            .chain([every])
            .filter(|s| !s.is_empty())
            .collect();
        match settings.is_empty() {
            true => String::new(),
            false => format!(" WITH ({})", settings.join(", ")),
        }
    };
    env.client
        .batch_execute(&format!(
            "CREATE ETL JOB items_merge FROM shop.public.items INTO wh.items_m CDC MERGE{stream}{}; \
             CREATE ETL JOB items_soft FROM shop.public.items INTO wh.items_s CDC MERGE{stream}{}; \
             CREATE ETL JOB items_history FROM shop.public.items INTO wh.items_h CDC HISTORY{stream}{};",
            with(&[]),
            with(&["soft_delete = true"]),
            with(&[])
        ))
        .await
        .unwrap();
    env
}

const JOBS: [&str; 3] = ["items_merge", "items_soft", "items_history"];

async fn run(env: &Env, job: &str) {
    if let Err(e) = env.client.simple_query(&format!("RUN ETL JOB {job}")).await {
        panic!("RUN ETL JOB {job}: {e:?}");
    }
}

async fn run_all(env: &Env) {
    for job in JOBS {
        run(env, job).await;
    }
}

/// The source's rows, `id|name|big|qty` with NULL for NULL, by id.
async fn source(env: &Env) -> Vec<String> {
    source_columns(env, &COLUMNS).await
}

/// The source's `columns`, `|`-separated with NULL for NULL, by id.
async fn source_columns(env: &Env, columns: &[&str]) -> Vec<String> {
    let client = env.pg.client().await;
    let sql = format!("SELECT {} FROM items ORDER BY id", columns.join(", "));
    as_lines(rows(&client, &sql).await)
}

fn text(value: &ScalarValue) -> String {
    if value.is_null() {
        return "NULL".into();
    }
    let array = value.to_array().unwrap();
    ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
        .unwrap()
        .value(0)
        .to_string()
}

/// `rows` as `id|name|big|qty`, by id; with `marked`, only those whose
/// `_sluice_deleted_at` is (`Some(true)`) or is not (`Some(false)`) set.
fn formatted(rows: Vec<Row>, marked: Option<bool>) -> Vec<String> {
    formatted_columns(rows, &COLUMNS, marked)
}

/// [`formatted`] of `columns`; a column a row lacks (written before the
/// column was added) is NULL.
fn formatted_columns(rows: Vec<Row>, columns: &[&str], marked: Option<bool>) -> Vec<String> {
    let mut out: Vec<(i64, String)> = rows
        .into_iter()
        .filter(|row| marked.is_none_or(|m| row.get("_sluice_deleted_at").is_some_and(|d| !d.is_null()) == m))
        .map(|row| {
            let id: i64 = text(&row["id"]).parse().unwrap();
            let values: Vec<String> = columns
                .iter()
                .map(|c| row.get(*c).map_or_else(|| "NULL".to_owned(), text))
                .collect();
            (id, values.join("|"))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, row)| row).collect()
}

fn table(env: &Env, name: &str) -> Vec<Row> {
    let table = env.fake.table(DATASET, name).expect("the table exists");
    table.batches.iter().flat_map(batch_rows).collect()
}

async fn assert_equal(env: &Env, step: &str) {
    let expected = source(env).await;
    assert_eq!(formatted(table(env, "items_m"), None), expected, "MERGE after {step}");
    assert_eq!(
        formatted(table(env, "items_s"), Some(false)),
        expected,
        "soft_delete MERGE's live rows after {step}"
    );
    assert_eq!(
        formatted(env.fake.view_rows(DATASET, "items_h_current"), None),
        expected,
        "HISTORY's current view after {step}"
    );
}

/// The source's changes of the first test, in two rounds.
pub(crate) fn change(pg: &PgServer, round: usize) {
    let sql = match round {
        0 => format!(
            "INSERT INTO items VALUES (4, 'd', {}, 4); \
             UPDATE items SET name = 'a2' WHERE id = 1; \
             UPDATE items SET id = 20, qty = 22 WHERE id = 2; \
             DELETE FROM items WHERE id = 3; \
             BEGIN; INSERT INTO items VALUES (5, 'e', NULL, 5); UPDATE items SET qty = 55, big = {} WHERE id = 5; \
             UPDATE items SET qty = 44 WHERE id = 4; COMMIT;",
            big('d'),
            big('e')
        ),
        _ => "UPDATE items SET qty = 7 WHERE id = 20; TRUNCATE items; \
              INSERT INTO items VALUES (6, 'f', NULL, 6), (7, 'g', 'small', 7); UPDATE items SET name = 'f2' WHERE id = 6;"
            .to_owned(),
    };
    pg.psql_admin_db("shop", &sql);
}

/// The commit query jobs' scripts so far.
fn scripts(env: &Env) -> Vec<String> {
    env.fake.state().scripts.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_into_bigquery_follows_every_change_shape_with_one_transaction_per_batch() {
    let env = setup_items(&[]).await;
    run_all(&env).await;
    assert_equal(&env, "the first load").await;
    let first_scripts = scripts(&env);
    assert!(
        first_scripts
            .iter()
            .all(|s| s.starts_with("BEGIN TRANSACTION;\n") && s.ends_with("COMMIT TRANSACTION;")),
        "{first_scripts:?}"
    );
    let positions: Vec<String> = env
        .fake
        .table_names(DATASET)
        .into_iter()
        .filter(|t| t.starts_with("_sluice_position_"))
        .collect();
    assert_eq!(positions.len(), 3, "one position table per CDC table: {positions:?}");
    for name in &positions {
        assert_eq!(table(&env, name).len(), 1, "{name} holds one row");
    }

    change(&env.pg, 0);
    run_all(&env).await;
    assert_equal(
        &env,
        "inserts, updates, a key change, an unchanged TOASTed value and a delete",
    )
    .await;
    let merges: Vec<String> = scripts(&env)[first_scripts.len()..].to_vec();
    assert_eq!(merges.len(), 3, "one query job per batch: {merges:#?}");
    assert!(
        merges.iter().any(|s| s.contains("MERGE `raw_data`.`items_m` T USING")
            && s.contains("LEFT JOIN `raw_data`.`items_m` F")),
        "the key change's unchanged value comes from the stored row: {merges:#?}"
    );
    assert_eq!(
        formatted(table(&env, "items_s"), Some(true)),
        ["2|b|".to_owned() + &"b".repeat(6000) + "|2", "3|c|NULL|NULL".to_owned()],
        "soft_delete keeps the deleted rows, marked"
    );
    let history = table(&env, "items_h");
    let ops = |op: &str| history.iter().filter(|r| text(&r["_sluice_op"]) == op).count();
    assert_eq!(
        (ops("insert"), ops("update"), ops("delete")),
        (6, 3, 2),
        "every change is a history row"
    );

    change(&env.pg, 1);
    run_all(&env).await;
    assert_equal(&env, "an update, a truncate and inserts after it").await;
    assert!(
        formatted(table(&env, "items_s"), Some(true)).is_empty(),
        "a truncate empties the table"
    );

    // Nothing new: each job records its position only.
    let before = (table(&env, "items_m").len(), table(&env, "items_h").len());
    run_all(&env).await;
    assert_eq!((table(&env, "items_m").len(), table(&env, "items_h").len()), before);
    assert_equal(&env, "a run with nothing new").await;

    // A resync replaces the MERGE tables and appends to the history,
    // position included.
    env.pg
        .psql_admin_db("shop", "INSERT INTO items VALUES (8, 'h', NULL, 8);");
    for job in JOBS {
        if let Err(e) = env.client.simple_query(&format!("RESYNC ETL JOB {job}")).await {
            panic!("RESYNC ETL JOB {job}: {e:?}");
        }
    }
    assert_equal(&env, "a resync").await;
    env.pg.psql_admin_db("shop", "DELETE FROM items WHERE id = 8;");
    run_all(&env).await;
    assert_equal(&env, "a change after the resync").await;

    // DROP ETL JOB ... WITH DATA drops the position table and the view too.
    env.client
        .batch_execute("DROP ETL JOB items_history WITH DATA")
        .await
        .unwrap();
    let left = env.fake.table_names(DATASET);
    assert!(!left.iter().any(|t| t.starts_with("items_h")), "{left:?}");
}

/// Continuous jobs (`MERGE`, `MERGE` with `soft_delete`, `HISTORY`) stream
/// while a random workload runs at the source (inserts, updates, deletes,
/// key changes, large out-of-line values later left unchanged), in small
/// transactions and in large ones: at the end the three tables equal the
/// source row by row, and `HISTORY` holds each change once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_workload_streamed_into_bigquery_equals_the_source_in_both_modes() {
    let env = setup_items_as(&[], true).await;
    until_streamed(&env, "the first load", 3).await;
    let (mut rng, seed) = Rng::from_clock();
    let source_client = env.pg.client().await;
    let (mut changes, mut next_id) = (0, 100);
    for round in 0..4 {
        for _ in 0..5 + rng.below(10) {
            let statements = 1 + rng.below(20);
            changes += random_transaction(&source_client, &mut rng, &mut next_id, statements).await;
            tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        }
        if round % 2 == 1 {
            changes += random_transaction(&source_client, &mut rng, &mut next_id, 400).await;
        }
    }
    until_streamed(&env, &format!("the random workload (seed {seed})"), 3 + changes).await;
    env.client
        .batch_execute(
            "ALTER ETL JOB items_merge PAUSE; ALTER ETL JOB items_soft PAUSE; ALTER ETL JOB items_history PAUSE",
        )
        .await
        .unwrap();
}

/// Waits until the streamed tables equal the source (the `MERGE` table,
/// the live rows of the `soft_delete` one, `HISTORY`'s current view) and
/// `HISTORY` holds `history_rows` rows.
async fn until_streamed(env: &Env, step: &str, history_rows: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let expected = source(env).await;
        let rows_of = |name: &str| {
            (env.fake.table(DATASET, name)).map(|t| t.batches.iter().flat_map(batch_rows).collect::<Vec<_>>())
        };
        let (merged, soft, history) = (rows_of("items_m"), rows_of("items_s"), rows_of("items_h"));
        let view = env.fake.table(DATASET, "items_h_current").is_some();
        let seen = match (merged, soft, history) {
            (Some(merged), Some(soft), Some(history)) if view => Some((
                formatted(merged, None),
                formatted(soft, Some(false)),
                formatted(env.fake.view_rows(DATASET, "items_h_current"), None),
                history.len() as u64,
            )),
            _ => None,
        };
        if seen.as_ref() == Some(&(expected.clone(), expected.clone(), expected.clone(), history_rows)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{step}: {seen:?} is not {expected:?} with {history_rows} history rows"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_or_refused_commit_never_applies_a_batch_twice() {
    let env = setup_items(&[]).await;
    run_all(&env).await;
    change(&env.pg, 0);
    // The commit's answer is lost (the job ran): the retry finds the job.
    let commit = "POST /bigquery/v2/projects/test-project/jobs";
    let commits = env.fake.count_requests(commit);
    env.fake
        .inject(Method::POST, commit, FaultKind::LateAnswer(Duration::from_secs(3)), 1);
    run(&env, "items_history").await;
    assert_eq!(
        env.fake.count_requests(commit) - commits,
        2,
        "the commit was sent again"
    );
    let applied = scripts(&env)
        .iter()
        .filter(|s| s.contains("INSERT INTO `raw_data`.`items_h` (") && s.contains("` S"))
        .count();
    assert_eq!(applied, 1, "and ran once");
    // The commit is refused: the run fails, nothing of it is applied.
    env.fake
        .inject(Method::POST, commit, FaultKind::Status(400, "invalidQuery"), 1);
    let error = env.client.simple_query("RUN ETL JOB items_merge").await.unwrap_err();
    let message = error.as_db_error().expect("a server error").message().to_owned();
    assert!(message.contains("invalidQuery"), "{message}");
    assert_eq!(formatted(table(&env, "items_m"), None).len(), 3, "the first load only");
    run(&env, "items_merge").await;
    run(&env, "items_soft").await;
    assert_equal(&env, "a lost answer and a refused commit").await;
    let history = table(&env, "items_h");
    assert_eq!(history.len(), 3 + 8, "no change twice in the history");

    // A commit behind the recorded position (as a commit job of a failed
    // run that BigQuery ran after a later run's) changes nothing.
    let name = env
        .fake
        .table_names(DATASET)
        .into_iter()
        .find(|t| t.starts_with("_sluice_position_items_m_"))
        .unwrap();
    let saved = env.fake.table(DATASET, &name).unwrap().batches;
    let ahead = {
        let batch = &saved[0];
        let bound = batch.schema().index_of("bound").unwrap();
        let mut columns = batch.columns().to_vec();
        columns[bound] = std::sync::Arc::new(datafusion::arrow::array::StringArray::from(vec!["Z"]));
        datafusion::arrow::array::RecordBatch::try_new(batch.schema(), columns).unwrap()
    };
    let key = (DATASET.to_owned(), name.clone());
    env.fake.state().tables.get_mut(&key).unwrap().batches = vec![ahead];
    let before = formatted(table(&env, "items_m"), None);
    env.pg.psql_admin_db("shop", "UPDATE items SET qty = 99 WHERE id = 4;");
    let error = env.client.simple_query("RUN ETL JOB items_merge").await.unwrap_err();
    let message = error.as_db_error().expect("a server error").message().to_owned();
    assert!(message.contains("a later change position than this batch"), "{message}");
    assert_eq!(formatted(table(&env, "items_m"), None), before, "nothing applied");
    env.fake.state().tables.get_mut(&key).unwrap().batches = saved;
    run(&env, "items_merge").await;
    assert_eq!(formatted(table(&env, "items_m"), None), source(&env).await);

    // A table of the current view's name that Sluice did not make is not
    // read as one: the run fails and says so.
    let fields = serde_json::json!([{"name": "id", "type": "INTEGER"}]);
    env.fake.put_table(DATASET, "items_x_current", fields, Vec::new());
    env.client
        .batch_execute("CREATE ETL JOB items_x FROM shop.public.items INTO wh.items_x CDC HISTORY")
        .await
        .unwrap();
    let error = env.client.simple_query("RUN ETL JOB items_x").await.unwrap_err();
    let message = error.as_db_error().expect("a server error").message().to_owned();
    assert!(
        message.contains("\"items_x_current\" exists that Sluice did not make"),
        "{message}"
    );
    env.fake
        .state()
        .tables
        .remove(&(DATASET.to_owned(), "items_x_current".to_owned()));
    // The first load committed; the view comes with the next batch.
    env.pg.psql_admin_db("shop", "UPDATE items SET qty = 111 WHERE id = 1;");
    run(&env, "items_x").await;
    assert_eq!(
        formatted(env.fake.view_rows(DATASET, "items_x_current"), None),
        source(&env).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_the_bigquery_commit_then_restart_and_run_equals_the_source() {
    let mut env = setup_items(&[("SLUICE_FAILPOINTS", "cdc_after_batch_commit")]).await;
    // The first loads commit no change batch: no failpoint.
    run_all(&env).await;
    change(&env.pg, 0);
    env.sluice
        .run_into_failpoint(&env.client, "RUN ETL JOB items_history")
        .await;
    env.client = env.sluice.restart_without_failpoints().await;
    change(&env.pg, 1);
    run_all(&env).await;
    assert_equal(&env, "a kill after the commit, a restart and a run").await;
    // 3 first-load rows, 8 changes of the first round, 5 of the second.
    assert_eq!(
        table(&env, "items_h").len(),
        3 + 8 + 5,
        "no change is in the history twice"
    );
}

/// A `CONTINUOUS` job into BigQuery commits a batch per `flush_interval`
/// in one run (each its own staging table and commit job) and keeps the
/// table equal to the source with no `RUN ETL JOB`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_job_commits_one_transaction_per_batch_in_one_run() {
    let env = setup(&[]).await;
    env.pg.psql_admin_db(
        "shop",
        &format!("{TABLE} INSERT INTO items VALUES (1, 'a', {}, 1);", big('a')),
    );
    env.client
        .batch_execute(
            "CREATE ETL JOB items_stream FROM shop.public.items INTO wh.items_m CDC MERGE CONTINUOUS \
             WITH (flush_interval = '1 second')",
        )
        .await
        .unwrap();
    let until_equal = |step: &'static str| {
        let env = &env;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let expected = source(env).await;
                let loaded = env
                    .fake
                    .table(DATASET, "items_m")
                    .map(|t| formatted(t.batches.iter().flat_map(batch_rows).collect(), None));
                if loaded.as_ref() == Some(&expected) {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{step}: {loaded:?} is not {expected:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    until_equal("the first load").await;
    for (i, sql) in [
        "UPDATE items SET name = 'a2' WHERE id = 1; INSERT INTO items VALUES (2, 'b', NULL, 2);".to_owned(),
        "UPDATE items SET id = 10 WHERE id = 1; DELETE FROM items WHERE id = 2;".to_owned(),
        format!("INSERT INTO items VALUES (3, 'c', {}, 3);", big('c')),
    ]
    .iter()
    .enumerate()
    {
        env.pg.psql_admin_db("shop", sql);
        until_equal(["an update and an insert", "a key change and a delete", "an insert"][i]).await;
    }
    let batches: Vec<String> = scripts(&env)
        .into_iter()
        .filter(|s| s.contains("MERGE `raw_data`.`items_m`"))
        .collect();
    assert!(batches.len() >= 3, "a batch per change: {batches:#?}");
    let runs = rows(
        &env.client,
        "SELECT count(*) FROM sluice.runs WHERE job = 'items_stream'",
    )
    .await;
    assert_eq!(runs[0][0].as_deref(), Some("1"), "one run streams");
    env.client
        .batch_execute("ALTER ETL JOB items_stream PAUSE")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_added_and_dropped_at_the_source_are_followed_into_bigquery() {
    let env = setup_items(&[]).await;
    run_all(&env).await;
    assert_equal(&env, "the first load").await;

    env.pg.psql_admin_db(
        "shop",
        "INSERT INTO items VALUES (4, 'd', NULL, 4); ALTER TABLE items ADD COLUMN tag text; \
         INSERT INTO items VALUES (5, 'e', NULL, 5, 't5'); UPDATE items SET tag = 't1' WHERE id = 1;",
    );
    run_all(&env).await;
    let patches = env.fake.state().schema_patches;
    assert_eq!(patches, 3, "one tables.patch per table adds the column");
    let columns = ["id", "name", "qty", "tag"];
    let equal = async |step: &str, columns: &[&str]| {
        let expected = source_columns(&env, columns).await;
        assert_eq!(
            formatted_columns(table(&env, "items_m"), columns, None),
            expected,
            "MERGE after {step}"
        );
        assert_eq!(
            formatted_columns(table(&env, "items_s"), columns, Some(false)),
            expected,
            "soft_delete MERGE after {step}"
        );
        assert_eq!(
            formatted_columns(env.fake.view_rows(DATASET, "items_h_current"), columns, None),
            expected,
            "HISTORY's current view after {step}"
        );
    };
    equal("a column added", &columns).await;

    env.pg.psql_admin_db(
        "shop",
        "ALTER TABLE items DROP COLUMN qty; UPDATE items SET name = 'b2' WHERE id = 2;",
    );
    run_all(&env).await;
    equal("a column dropped", &["id", "name", "tag"]).await;
    assert_eq!(
        formatted_columns(table(&env, "items_m"), &["id", "qty"], None),
        ["1|1", "2|NULL", "3|NULL", "4|4", "5|5"],
        "qty stays, NULL in the row changed after the drop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_changes_into_bigquery_equal_the_source_in_both_modes() {
    let env = setup(&[]).await;
    let maria = MariaDb::start();
    maria.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(50), qty int, note text) ENGINE=InnoDB; \
         INSERT INTO items VALUES (1, 'a', 1, 'n1'), (2, 'b', 2, NULL), (3, NULL, NULL, NULL);",
    );
    create_connection(&env.client, &maria, "crm", &maria.user, &maria.password).await;
    env.client
        .batch_execute(
            "CREATE ETL JOB m_merge FROM crm.shop.items INTO wh.mitems_m CDC MERGE; \
             CREATE ETL JOB m_history FROM crm.shop.items INTO wh.mitems_h CDC HISTORY;",
        )
        .await
        .unwrap();
    let columns = ["id", "name", "qty", "note"];
    let equal = async |step: &str| {
        let expected = as_lines(maria_rows(&maria, "SELECT id, name, qty, note FROM items ORDER BY id"));
        assert_eq!(
            formatted_columns(table(&env, "mitems_m"), &columns, None),
            expected,
            "MERGE after {step}"
        );
        assert_eq!(
            formatted_columns(env.fake.view_rows(DATASET, "mitems_h_current"), &columns, None),
            expected,
            "HISTORY's current view after {step}"
        );
    };
    let run_both = async || {
        run(&env, "m_merge").await;
        run(&env, "m_history").await;
    };
    run_both().await;
    equal("the first load").await;

    maria.sql(
        "INSERT INTO items VALUES (4, 'd', 4, 'n4'); UPDATE items SET name = 'a2' WHERE id = 1; \
         UPDATE items SET id = 20, qty = 22 WHERE id = 2; DELETE FROM items WHERE id = 3; \
         BEGIN; INSERT INTO items VALUES (5, 'e', NULL, NULL); UPDATE items SET qty = 55, note = 'n5' WHERE id = 5; \
         UPDATE items SET qty = 44 WHERE id = 4; COMMIT;",
    );
    run_both().await;
    equal("inserts, updates, a key change and a delete").await;
    let history = table(&env, "mitems_h");
    let ops = |op: &str| history.iter().filter(|r| text(&r["_sluice_op"]) == op).count();
    assert_eq!(
        (ops("insert"), ops("update"), ops("delete")),
        (6, 3, 2),
        "3 first-load rows, then 3 inserts (one the key change's), 3 updates, 2 deletes (one the key change's)"
    );

    maria.sql("TRUNCATE items; INSERT INTO items VALUES (6, 'f', 6, NULL); UPDATE items SET name = 'f2' WHERE id = 6;");
    run_both().await;
    equal("TRUNCATE").await;
    // Nothing new: a run runs no query job.
    let scripts_before = scripts(&env).len();
    run_both().await;
    equal("an idle run").await;
    assert_eq!(scripts(&env).len(), scripts_before, "an idle run commits nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_batch_spilled_to_disk_bigquery_still_equals_the_source() {
    // A budget of 0 MB: every change batch goes through the partitions on
    // disk (a key change that keeps a TOASTed value links two of them).
    let env = setup_items(&[("SLUICE_CDC_SPILL_MB", "0")]).await;
    run_all(&env).await;
    assert_equal(&env, "the first load").await;
    for round in 0..2 {
        change(&env.pg, round);
        run_all(&env).await;
        assert_equal(&env, &format!("round {round}")).await;
    }
}
