//! BigQuery's 1,500 daily table operations per table as a budget: a
//! SCHEDULE whose worst UTC day would spend more is refused, at CREATE and
//! at ALTER, naming the table and the largest safe frequency.

use crate::bigquery;
use crate::common::*;

const TOO_OFTEN: &str = "CRON '*/30 * * * * *'";

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_beyond_the_daily_table_operations_is_refused() {
    let env = bigquery::setup(&[]).await;
    let err = env
        .client
        .batch_execute(&format!(
            "CREATE ETL JOB fast FROM shop.public.orders INTO wh.fast SNAPSHOT SCHEDULE {TOO_OFTEN}"
        ))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22023", "{err:?}");
    let message = err.as_db_error().unwrap().message().to_owned();
    assert!(
        message.contains("more than 1500 runs") && message.contains("table fast") && message.contains("58 seconds"),
        "{message}"
    );
    let jobs = env
        .client
        .query("SELECT name FROM sluice.jobs WHERE name = 'fast'", &[])
        .await
        .unwrap();
    assert!(jobs.is_empty(), "nothing saved");

    env.client
        .batch_execute("CREATE ETL JOB fast FROM shop.public.orders INTO wh.fast SNAPSHOT SCHEDULE EVERY 1 MINUTE")
        .await
        .unwrap();
    let err = env
        .client
        .batch_execute(&format!("ALTER ETL JOB fast SET SCHEDULE {TOO_OFTEN}"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22023", "{err:?}");
    let schedule: String = env
        .client
        .query_one("SELECT schedule FROM sluice.jobs WHERE name = 'fast'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(schedule, "EVERY 1 MINUTES", "the old schedule stays");
    // The local warehouse has no such quota.
    env.client
        .batch_execute(&format!(
            "CREATE ETL JOB local_fast FROM shop.public.orders SNAPSHOT SCHEDULE {TOO_OFTEN}"
        ))
        .await
        .unwrap();
}
