//! BigQuery loads end to end against a second, independent implementation
//! of the BigQuery REST API: bqemulator (PyPI, over DuckDB), every result
//! read back through the emulator's own query API. Sign-in still goes to
//! the project's fake (the emulator checks no token); what the emulator gets
//! wrong (see `common::bqemulator`) stays covered by the fake's tests.

use crate::bigquery::ORDERS;
use crate::common;
use crate::fake_bigquery::FakeBigQuery;

use common::bqemulator::BqEmulator;
use common::*;
use tokio_postgres::Client;

const PROJECT: &str = "test-project";

pub(crate) struct Env {
    pub(crate) pg: PgServer,
    pub(crate) emulator: BqEmulator,
    pub(crate) sluice: Sluice,
    pub(crate) client: Client,
    _token: FakeBigQuery,
    _keys: tempfile::TempDir,
}

/// PostgreSQL with `orders`, the emulator, Sluice pointed at it (with
/// `extra_env`), and the `shop` and `wh` connections.
pub(crate) async fn setup(extra_env: &[(&str, &str)]) -> Env {
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
pub(crate) fn bigquery_totals(env: &Env, table: &str) -> Vec<Option<String>> {
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
pub(crate) fn source_totals(env: &Env, filter: &str) -> Vec<Option<String>> {
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
    env.sluice
        .run_into_failpoint(&env.client, "RUN ETL JOB orders_inc")
        .await;
    assert_eq!(
        bigquery_totals(&env, "orders"),
        source_totals(&env, ""),
        "the load committed"
    );
    let client = env.sluice.restart_without_failpoints().await;
    let run = rows(&client, "SELECT status FROM sluice.runs").await;
    assert_eq!(run[0][0].as_deref(), Some("succeeded"), "adopted: {run:?}");
    let again = rows(&client, "RUN ETL JOB orders_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("0"), "nothing is loaded twice");
    assert_eq!(bigquery_totals(&env, "orders"), source_totals(&env, ""));
}

/// One PostgreSQL column type, a value, and how to read it back as text on
/// each side (`{c}` stands for the column).
struct Typed {
    pg_type: &'static str,
    value: &'static str,
    pg_text: &'static str,
    bigquery_text: &'static str,
}

const TYPED: &[Typed] = &[
    Typed {
        pg_type: "smallint",
        value: "-7",
        pg_text: "{c}::text",
        bigquery_text: "CAST({c} AS STRING)",
    },
    Typed {
        pg_type: "bigint",
        value: "9007199254740993",
        pg_text: "{c}::text",
        bigquery_text: "CAST({c} AS STRING)",
    },
    Typed {
        pg_type: "double precision",
        value: "1.5",
        pg_text: "{c}::text",
        bigquery_text: "CAST({c} AS STRING)",
    },
    Typed {
        pg_type: "boolean",
        value: "true",
        pg_text: "{c}::text",
        bigquery_text: "CAST({c} AS STRING)",
    },
    Typed {
        pg_type: "text",
        value: "'héllo, \"world\"'",
        pg_text: "{c}",
        bigquery_text: "{c}",
    },
    Typed {
        pg_type: "varchar(10)",
        value: "'ab'",
        pg_text: "{c}",
        bigquery_text: "{c}",
    },
    Typed {
        pg_type: "date",
        value: "'2024-02-29'",
        pg_text: "{c}::text",
        bigquery_text: "CAST({c} AS STRING)",
    },
    Typed {
        pg_type: "timestamptz",
        value: "'2024-03-01 12:34:56.789012+02'",
        pg_text: "(extract(epoch FROM {c}) * 1000000)::int8::text",
        bigquery_text: "CAST(UNIX_MICROS({c}) AS STRING)",
    },
    Typed {
        pg_type: "timestamp",
        value: "'2024-03-01 12:34:56.789012'",
        pg_text: "to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')",
        bigquery_text: "FORMAT_DATETIME('%Y-%m-%d %H:%M:%E6S', {c})",
    },
    Typed {
        pg_type: "bytea",
        value: "'\\x00ff10'",
        pg_text: "encode({c}, 'base64')",
        bigquery_text: "TO_BASE64({c})",
    },
    Typed {
        pg_type: "uuid",
        value: "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        pg_text: "{c}::text",
        bigquery_text: "{c}",
    },
];

#[tokio::test]
async fn types_read_back_through_the_emulator_as_the_source_has_them() {
    let env = setup(&[]).await;
    let columns: Vec<String> = (0..TYPED.len()).map(|i| format!("c{i} {}", TYPED[i].pg_type)).collect();
    let values: Vec<&str> = TYPED.iter().map(|t| t.value).collect();
    env.pg.psql_admin_db(
        "shop",
        &format!(
            "CREATE TABLE typed (id int PRIMARY KEY, {}); INSERT INTO typed VALUES (1, {}), (2{});",
            columns.join(", "),
            values.join(", "),
            ", NULL".repeat(TYPED.len())
        ),
    );
    env.client
        .batch_execute("CREATE ETL JOB typed FROM shop.public.typed INTO wh.typed SNAPSHOT; RUN ETL JOB typed")
        .await
        .unwrap();
    for (i, t) in TYPED.iter().enumerate() {
        let column = format!("c{i}");
        let pg = env
            .pg
            .psql_admin_db(
                "shop",
                &format!(
                    "SELECT coalesce({}, 'NULL') FROM typed ORDER BY id",
                    t.pg_text.replace("{c}", &column)
                ),
            )
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        let bigquery: Vec<String> = env
            .emulator
            .query(&format!(
                "SELECT {} FROM `{PROJECT}.raw_data.typed` ORDER BY id",
                t.bigquery_text.replace("{c}", &column)
            ))
            .into_iter()
            .map(|row| row[0].clone().unwrap_or_else(|| "NULL".into()))
            .collect();
        assert_eq!(bigquery, pg, "{}", t.pg_type);
    }
}
