//! The README's demo: a fresh Sluice sets up the bundled sample data as a
//! connection and jobs, and examples/quickstart.sql runs through psql.

use crate::common;

use common::*;

#[tokio::test]
async fn a_fresh_sluice_has_the_demo_ready_and_the_quickstart_runs() {
    let demo_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data");
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_DEMO_DIR", demo_dir)]);
    assert!(
        sluice.log_contents().contains("Demo ready"),
        "{}",
        sluice.log_contents()
    );
    let client = sluice.client().await;
    let jobs = rows(&client, "SELECT name, load FROM sluice.jobs ORDER BY name").await;
    assert_eq!(
        jobs,
        [
            [Some("demo_customers".into()), Some("SNAPSHOT".into())],
            [Some("demo_orders".into()), Some("INCREMENTAL BY updated_at ALL".into())],
            [Some("demo_products".into()), Some("SNAPSHOT".into())],
        ]
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.sql");
    let output = sluice.psql_file(script);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "quickstart failed:\n{stderr}");
    assert!(stderr.contains("NOTICE:  run 1 succeeded: 2000 rows"), "{stderr}");
    assert!(
        stderr.contains("NOTICE:  run 4 succeeded: 0 rows"),
        "the second incremental run finds nothing: {stderr}"
    );
    let count = rows(
        &client,
        "SELECT count(*), count(DISTINCT order_id) FROM warehouse.demo_orders",
    )
    .await;
    assert_eq!(count[0], [Some("2000".into()), Some("2000".into())]);

    // A restart keeps the user's catalog as it is.
    sluice.restart();
    let client = sluice.client().await;
    assert_eq!(sluice.log_contents().matches("Demo ready").count(), 1);
    let jobs = rows(&client, "SELECT count(*) FROM sluice.jobs").await;
    assert_eq!(jobs[0][0].as_deref(), Some("3"));
}
