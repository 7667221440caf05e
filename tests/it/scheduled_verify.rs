//! `WITH (verify = 'daily')`: the internal scheduler verifies a job after
//! its runs, at most once a day, into `sluice.verifications`.

use std::time::{Duration, Instant};

use crate::common;

use common::*;

async fn verifications(client: &tokio_postgres::Client, job: &str) -> String {
    one(
        client,
        &format!("SELECT count(*) FROM sluice.verifications WHERE job = '{job}'"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_verification_follows_a_run_once_a_day() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.csv"), "id,total\n1,10\n2,20\n3,30\n").unwrap();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION files TYPE local OPTIONS (path '{}'); \
             CREATE ETL JOB checked FROM files.files.orders INTO warehouse.checked SNAPSHOT WITH (verify = 'daily'); \
             CREATE ETL JOB unchecked FROM files.files.orders INTO warehouse.unchecked SNAPSHOT;",
            dir.path().display()
        ))
        .await
        .unwrap();
    let shown = rows(&client, "SHOW CREATE ETL JOB checked").await;
    assert!(
        shown[0][1].as_deref().unwrap().contains("verify = 'daily'"),
        "{shown:?}"
    );
    let refused = client
        .batch_execute("ALTER ETL JOB unchecked SET (verify = 'hourly')")
        .await
        .unwrap_err();
    assert!(
        format!("{refused:?}").contains("verify must be 'daily' or 'off'"),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        verifications(&client, "checked").await,
        "0",
        "nothing loaded, nothing verified"
    );

    for job in ["checked", "unchecked"] {
        let summary = rows(&client, &format!("RUN ETL JOB {job}")).await;
        assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while verifications(&client, "checked").await == "0" {
        assert!(
            Instant::now() < deadline,
            "the scheduler did not verify the job after its run"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let result = rows(
        &client,
        "SELECT bucket_by, buckets, differing FROM sluice.verifications WHERE job = 'checked'",
    )
    .await;
    assert_eq!(
        result[0],
        ["all", "1", "0"].map(|v| Some(v.to_owned())),
        "a clean load verifies clean"
    );

    // Another run the same day: no second verification.
    rows(&client, "RUN ETL JOB checked").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(verifications(&client, "checked").await, "1", "at most once a day");
    assert_eq!(
        verifications(&client, "unchecked").await,
        "0",
        "only jobs that ask for it"
    );
}
