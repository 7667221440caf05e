//! BigQuery loads end to end against a second, independent implementation
//! of the BigQuery REST API: bqemulator (PyPI, over DuckDB), every result
//! read back through the emulator's own query API. Sign-in still goes to
//! the project's fake (the emulator checks no token); what the emulator gets
//! wrong (see `common::bqemulator`) stays covered by the fake's tests.

use crate::bigquery::ORDERS;
use crate::common;
use crate::fake_bigquery::FakeBigQuery;

use std::time::Duration;

use common::bqemulator::BqEmulator;
use common::*;
use tokio_postgres::Client;

const PROJECT: &str = "test-project";

struct Env {
    pg: PgServer,
    emulator: BqEmulator,
    sluice: Sluice,
    client: Client,
    _token: FakeBigQuery,
    _keys: tempfile::TempDir,
}

/// PostgreSQL with `orders`, the emulator, Sluice pointed at it (with
/// `extra_env`), and the `shop` and `wh` connections.
async fn setup(extra_env: &[(&str, &str)]) -> Env {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", ORDERS);
    let emulator = BqEmulator::start(PROJECT);
    let token = FakeBigQuery::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = token.write_key_file(keys.path());
    let mut envs = vec![("SLUICE_BIGQUERY_ENDPOINT", emulator.url.as_str())];
    envs.extend_from_slice(extra_env);
    let sluice = Sluice::start_with(&[], &envs);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', \
             password '{ETL_PASSWORD}'); \
             CREATE CONNECTION wh TYPE bigquery OPTIONS (project '{PROJECT}', dataset 'raw_data', location 'US', \
             credentials_file '{}', connect_timeout 5);",
            pg.port,
            key_file.display()
        ))
        .await
        .unwrap();
    Env {
        pg,
        emulator,
        sluice,
        client,
        _token: token,
        _keys: keys,
    }
}

/// Count, distinct ids and order-independent sums of `orders` in BigQuery.
fn bigquery_totals(env: &Env, table: &str) -> Vec<Option<String>> {
    env.emulator
        .query(&format!(
            "SELECT CAST(COUNT(*) AS STRING), CAST(COUNT(DISTINCT id) AS STRING), CAST(SUM(id) AS STRING), \
             CAST(SUM(amount) AS STRING), CAST(COUNTIF(status = 'paid') AS STRING), \
             CAST(MAX(UNIX_MICROS(updated_at)) AS STRING) FROM `{PROJECT}.raw_data.{table}`"
        ))
        .remove(0)
}

/// The same totals of `orders` in PostgreSQL, `filter` its WHERE clause (the
/// emulator writes a NUMERIC as text with all nine decimals).
fn source_totals(env: &Env, filter: &str) -> Vec<Option<String>> {
    let line = env.pg.psql_admin_db(
        "shop",
        &format!(
            "SELECT count(*), count(DISTINCT id), sum(id), sum(amount)::numeric(38, 9), count(*) FILTER (WHERE status = 'paid'), \
             (extract(epoch FROM max(updated_at)) * 1000000)::int8 FROM orders {filter}"
        ),
    );
    line.trim().split('|').map(|v| Some(v.to_owned())).collect()
}

#[tokio::test]
async fn incremental_runs_land_every_row_once_in_the_emulator() {
    let env = setup(&[("SLUICE_BIGQUERY_CHUNK_BYTES", "3000")]).await;
    env.client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL \
             WITH (batch_rows = 100)",
        )
        .await
        .unwrap();
    let first = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(first[0][2].as_deref(), Some("500"), "{first:?}");
    assert_eq!(bigquery_totals(&env, "orders"), source_totals(&env, ""));

    env.pg.psql_admin_db(
        "shop",
        "INSERT INTO orders SELECT g, g * 0.5, 'paid', timestamptz '2024-03-05 00:00:00+00' + g * interval '1 second' \
         FROM generate_series(501, 520) g",
    );
    let second = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(second[0][2].as_deref(), Some("20"), "{second:?}");
    let third = rows(&env.client, "RUN ETL JOB orders_inc").await;
    assert_eq!(third[0][2].as_deref(), Some("0"), "{third:?}");
    assert_eq!(bigquery_totals(&env, "orders"), source_totals(&env, ""));
    // The table was laid out as Sluice asked.
    let layout = env.emulator.query(&format!(
        "SELECT column_name, data_type, is_nullable FROM `{PROJECT}.raw_data.INFORMATION_SCHEMA.COLUMNS` \
         WHERE table_name = 'orders' ORDER BY ordinal_position"
    ));
    let layout: Vec<String> = layout
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        layout,
        [
            "id INT64 NO",
            "amount NUMERIC YES",
            "status STRING NO",
            "updated_at TIMESTAMP NO"
        ]
    );
}

#[tokio::test]
async fn a_snapshot_replaces_the_emulators_table() {
    let env = setup(&[]).await;
    env.client
        .batch_execute("CREATE ETL JOB orders_snap FROM shop.public.orders INTO wh.orders_copy SNAPSHOT")
        .await
        .unwrap();
    rows(&env.client, "RUN ETL JOB orders_snap").await;
    assert_eq!(bigquery_totals(&env, "orders_copy"), source_totals(&env, ""));
    env.pg.psql_admin_db("shop", "DELETE FROM orders WHERE id > 100");
    rows(&env.client, "RUN ETL JOB orders_snap").await;
    assert_eq!(bigquery_totals(&env, "orders_copy"), source_totals(&env, ""));
}

#[tokio::test]
async fn a_crash_after_the_emulators_commit_is_reconciled_without_loading_twice() {
    let mut env = setup(&[("SLUICE_FAILPOINTS", "after_destination_commit")]).await;
    env.client
        .batch_execute("CREATE ETL JOB orders_inc FROM shop.public.orders INTO wh.orders INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    assert!(env.client.simple_query("RUN ETL JOB orders_inc").await.is_err());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.sluice.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the failpoint did not stop the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        bigquery_totals(&env, "orders"),
        source_totals(&env, ""),
        "the load committed"
    );
    env.sluice.opts.envs.retain(|(k, _)| k != "SLUICE_FAILPOINTS");
    env.sluice.restart();
    let client = env.sluice.client().await;
    let run = rows(&client, "SELECT status FROM sluice.runs").await;
    assert_eq!(run[0][0].as_deref(), Some("succeeded"), "adopted: {run:?}");
    let again = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("0"), "nothing is loaded twice");
    assert_eq!(bigquery_totals(&env, "orders"), source_totals(&env, ""));
}
