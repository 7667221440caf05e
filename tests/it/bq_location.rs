//! A BigQuery dataset in another location than the connection's is an
//! error Sluice finds itself: `22023` naming the dataset, its location and
//! the fix, never "BigQuery failed", whether the connection test or a job
//! finds it.

use serde_json::json;

use crate::bigquery;
use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_dataset_in_another_location_is_22023_naming_the_fix() {
    let env = bigquery::setup(&[]).await;
    env.fake.state().datasets.insert(
        "us_data".into(),
        json!({"datasetReference": {"projectId": "test-project", "datasetId": "us_data"}, "location": "US"}),
    );
    let keys = tempfile::tempdir().unwrap();
    let key = env.fake.write_key_file(keys.path());
    let create = format!(
        "CREATE CONNECTION wh_eu TYPE bigquery OPTIONS (project 'test-project', dataset 'us_data', location 'EU', \
         credentials_file '{}')",
        key.display()
    );
    let checks = |err: &str| {
        assert!(
            err.contains("test-project:us_data")
                && err.contains("in location US")
                && err.contains("location option is EU")
                && err.contains("SET (location 'US')"),
            "{err}"
        );
        assert!(!err.contains("BigQuery failed") && !err.contains("invalid:"), "{err}");
    };
    // Found by the connection test.
    checks(&expect_err(&env.client, &create, "22023").await);
    // Found when a job sets up its table (the connection saved untested).
    env.client
        .batch_execute(&format!("{create} WITH (validate = false)"))
        .await
        .unwrap();
    checks(
        &expect_err(
            &env.client,
            "CREATE ETL JOB to_us FROM shop.public.orders INTO wh_eu.orders SNAPSHOT",
            "22023",
        )
        .await,
    );
    assert!(env.fake.table("us_data", "orders").is_none(), "nothing created");
}
