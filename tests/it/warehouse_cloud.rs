//! The warehouse in S3 (moto) and Azure Blob Storage (Azurite), through the
//! same object_store code path as the local one: incremental runs, snapshot
//! replaces and SQL over the tables, across a restart; credentials come from
//! the environment and never reach the log.

use crate::common;

use common::emulators::{AZURITE_ACCOUNT, AZURITE_KEY, Emulator};
use common::*;

const SECRET: &str = "warehouse-secret-Xq7";

/// Runs jobs into the warehouse at `location` and checks what SQL sees.
/// `secret` is the credential among `envs` that must never be shown.
async fn load_and_query(location: &str, envs: &[(&str, &str)], secret: &str) {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE events (id bigint PRIMARY KEY, kind text, at timestamptz NOT NULL); \
         INSERT INTO events SELECT g, 'k' || (g % 3), timestamptz '2024-01-01' + g * interval '1 second' \
         FROM generate_series(1, 20000) g;",
    );
    let mut sluice = Sluice::start_opts(
        envs.iter()
            .fold(SluiceOpts::default().arg("--warehouse").arg(location), |o, (k, v)| {
                o.env(k, v)
            }),
    );
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB events_inc FROM shop.public.events INCREMENTAL BY at ALL LOOKBACK 1 HOUR DEDUPE ON (id); \
             CREATE ETL JOB events_snap FROM shop.public.events INTO warehouse.snap SNAPSHOT;",
            pg.port
        ))
        .await
        .unwrap();
    for job in ["events_inc", "events_snap"] {
        let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
        assert_eq!(
            (summary[0][1].as_deref(), summary[0][2].as_deref()),
            (Some("succeeded"), Some("20000")),
            "{job}: {summary:?}"
        );
    }
    pg.psql_admin_db(
        "shop",
        "INSERT INTO events SELECT g, 'new', timestamptz '2024-01-02' + g * interval '1 second' FROM generate_series(20001, 20100) g; \
         DELETE FROM events WHERE id <= 100;",
    );
    let second = rows(&client, "RUN ETL JOB events_inc").await;
    assert_eq!(second[0][2].as_deref(), Some("100"), "{second:?}");
    let replaced = rows(&client, "RUN ETL JOB events_snap").await;
    assert_eq!(replaced[0][2].as_deref(), Some("20000"), "{replaced:?}");

    // Tables are found again after a restart, read from the object store.
    sluice.restart();
    let client = sluice.client().await;
    let tables = rows(
        &client,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'warehouse' ORDER BY 1",
    )
    .await;
    assert_eq!(tables, [[Some("bq_events".into())], [Some("snap".into())]]);
    let counts = rows(
        &client,
        "SELECT (SELECT count(*) FROM warehouse.bq_events) AS a, (SELECT count(DISTINCT id) FROM warehouse.bq_events) AS b, \
                (SELECT count(*) FROM warehouse.snap) AS c, (SELECT min(id) FROM warehouse.snap) AS d, \
                (SELECT count(*) FROM warehouse.snap WHERE kind = 'new') AS e",
    )
    .await;
    assert_eq!(
        counts[0],
        ["20100", "20100", "20000", "101", "100"].map(|v| Some(v.to_owned()))
    );
    let again = rows(&client, "RUN ETL JOB events_inc").await;
    assert_eq!(again[0][2].as_deref(), Some("0"));

    // A database's tables live under a prefix of their own in the bucket.
    client.batch_execute("CREATE DATABASE model_5").await.unwrap();
    let mut config = sluice.config();
    config.dbname("model_5");
    let model_5 = connect(&config).await.unwrap();
    model_5
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password '{ETL_PASSWORD}'); \
             CREATE ETL JOB events_snap FROM shop.public.events INTO warehouse.snap SNAPSHOT;",
            pg.port
        ))
        .await
        .unwrap();
    model_5.batch_execute("RUN ETL JOB events_snap").await.unwrap();
    pg.psql_admin_db("shop", "DELETE FROM events WHERE id <= 200;");
    model_5.batch_execute("RUN ETL JOB events_snap").await.unwrap();
    assert_eq!(one(&model_5, "SELECT count(*) FROM warehouse.snap").await, "19900");
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.snap").await, "20000");
    drop(model_5);
    crate::namespaces::drop_when_closed(&client, "DROP DATABASE model_5 CASCADE").await;
    client.batch_execute("CREATE DATABASE model_5").await.unwrap();
    let model_5 = connect(&config).await.unwrap();
    expect_err(&model_5, "SELECT count(*) FROM warehouse.snap", "42P01").await;
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.snap").await, "20000");
    assert!(
        files_containing(sluice.data_dir(), secret.as_bytes()).is_empty(),
        "the credentials stay out of the data dir"
    );
    assert!(
        !sluice.log_contents().contains(secret),
        "the credentials stay out of the log"
    );
    assert!(
        !sluice.data_dir().join("warehouse").exists(),
        "nothing went to the local warehouse directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouse_in_s3() {
    let moto = Emulator::moto();
    moto.create_bucket("lake");
    let endpoint = moto.endpoint();
    load_and_query(
        "s3://lake/sluice/prod",
        &[
            ("AWS_ACCESS_KEY_ID", "sluice-test"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_ALLOW_HTTP", "true"),
        ],
        SECRET,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouse_in_azure_blob_storage() {
    let azurite = Emulator::azurite();
    azurite.create_container("lake");
    let endpoint = format!("{}/{AZURITE_ACCOUNT}", azurite.endpoint());
    load_and_query(
        "az://lake/sluice",
        &[
            ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT),
            ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
            ("AZURE_STORAGE_ENDPOINT", &endpoint),
            ("AZURE_ALLOW_HTTP", "true"),
        ],
        AZURITE_KEY,
    )
    .await;
}

#[test]
fn a_bad_warehouse_location_stops_the_start_with_a_clear_error() {
    let error = Sluice::try_start_opts(
        SluiceOpts::default()
            .arg("--warehouse")
            .arg(&format!("s3://lake/p?aws_secret_access_key={SECRET}")),
    )
    .err()
    .expect("the server refuses to start");
    assert!(error.contains("invalid warehouse location \"s3://lake/p\""), "{error}");
    assert!(error.contains("AWS_*"), "{error}");
    assert!(!error.contains(SECRET), "{error}");
}
