//! Destination errors are scrubbed of the connection's secret values like
//! source errors: a BigQuery answer quoting parts of the service-account key
//! reaches the client, `sluice.runs` and the log as `********`.

use crate::bigquery::setup;
use crate::common::*;
use crate::fake_bigquery::FaultKind;

use axum::http::Method;

#[tokio::test]
async fn bigquery_errors_quoting_the_key_are_scrubbed_everywhere() {
    let env = setup(&[]).await;
    let keys = tempfile::tempdir().unwrap();
    let key_text = std::fs::read_to_string(env.fake.write_key_file(keys.path())).unwrap();
    let key: serde_json::Value = serde_json::from_str(&key_text).unwrap();
    let key_id = key["private_key_id"].as_str().unwrap().to_owned();
    let pem_line = key["private_key"].as_str().unwrap().lines().nth(1).unwrap().to_owned();
    env.client
        .batch_execute(&format!(
            "CREATE SECRET sa AS '{}';
             CREATE CONNECTION keyed TYPE bigquery OPTIONS (project 'test-project', dataset 'keyed', location 'EU',
                 credentials SECRET sa, connect_timeout 2);
             CREATE ETL JOB orders_keyed FROM shop.public.orders INTO keyed.orders INCREMENTAL BY updated_at ALL",
            key_text.replace('\'', "''")
        ))
        .await
        .unwrap();
    env.fake.inject(
        Method::POST,
        "/upload/",
        FaultKind::Message(
            400,
            "invalid",
            format!("Invalid credentials in request: key {key_id}, {pem_line}"),
        ),
        1,
    );

    let err = expect_err(&env.client, "RUN ETL JOB orders_keyed", "58030").await;
    assert!(
        err.contains("Invalid credentials in request: key ********, ********"),
        "{err}"
    );
    let stored = rows(
        &env.client,
        "SELECT status, error FROM sluice.runs WHERE job = 'orders_keyed'",
    )
    .await;
    assert_eq!(stored[0][0].as_deref(), Some("failed"), "{stored:?}");
    let stored_error = stored[0][1].clone().unwrap_or_default();
    assert!(stored_error.contains("key ********, ********"), "{stored_error}");
    let last_error = one(
        &env.client,
        "SELECT last_error FROM sluice.jobs WHERE name = 'orders_keyed'",
    )
    .await;
    assert!(last_error.contains("key ********"), "{last_error}");
    let log = env.sluice.log_contents();
    assert!(
        log.contains("key ********, ********"),
        "the failed run is logged, scrubbed"
    );
    for text in [&err, &stored_error, &last_error, &log] {
        assert!(!text.contains(&key_id), "the key id leaked: {text}");
        assert!(!text.contains(&pem_line), "the private key leaked: {text}");
    }
}
