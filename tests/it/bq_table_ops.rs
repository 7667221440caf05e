//! BigQuery's daily table operations, counted: every job that writes a
//! destination table (the copy that commits a run, failed ones too) adds
//! one to the table's count for the UTC day, kept in the catalog across
//! restarts and shown as `sluice.jobs.bq_table_ops_today` and the
//! `sluice_bq_table_ops_today` metric; at 80 % of the daily 1,500 the run
//! warns with a NOTICE and the job's health is `degraded`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use chrono::Utc;
use sluice_catalog::{Catalog, MasterKey, RunRecord, RunStatus, RunTrigger};
use tokio_postgres::AsyncMessage;

use crate::bigquery;
use crate::common::*;
use crate::fake_bigquery::FaultKind;

/// The job's `bq_table_ops_today` and `health`.
async fn ops_and_health(client: &tokio_postgres::Client, job: &str) -> (Option<String>, String) {
    let row = rows(
        client,
        &format!("SELECT bq_table_ops_today, health FROM sluice.jobs WHERE name = '{job}'"),
    )
    .await;
    (row[0][0].clone(), row[0][1].clone().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn table_operations_are_counted_per_table_and_day_and_warned_of_at_80_percent() {
    let mut env = bigquery::setup(&[]).await;
    env.client
        .batch_execute(
            "CREATE ETL JOB snap FROM shop.public.orders INTO wh.snap SNAPSHOT;
             CREATE ETL JOB local_snap FROM shop.public.orders SNAPSHOT;
             RUN ETL JOB local_snap;",
        )
        .await
        .unwrap();
    assert_eq!(
        ops_and_health(&env.client, "snap").await,
        (Some("0".into()), "healthy".into())
    );
    assert_eq!(
        ops_and_health(&env.client, "local_snap").await.0,
        None,
        "no quota locally"
    );

    for _ in 0..2 {
        rows(&env.client, "RUN ETL JOB snap").await;
    }
    assert_eq!(ops_and_health(&env.client, "snap").await.0.as_deref(), Some("2"));

    // A copy job BigQuery accepted and the run then failed on: spent too.
    env.fake.state().job_delay = Some(Duration::from_millis(300));
    env.fake
        .inject(Method::GET, "_commit", FaultKind::Status(400, "invalid"), 1);
    env.client.batch_execute("RUN ETL JOB snap").await.unwrap_err();
    env.fake.state().job_delay = None;
    assert_eq!(
        one(
            &env.client,
            "SELECT status FROM sluice.runs WHERE job = 'snap' ORDER BY run_id DESC LIMIT 1"
        )
        .await,
        "failed"
    );
    assert_eq!(ops_and_health(&env.client, "snap").await.0.as_deref(), Some("3"));
    let text = env.sluice.metrics();
    assert!(
        text.contains(r#"sluice_bq_table_ops_today{namespace="sluice",connection="wh",table="snap"} 3"#),
        "{text}"
    );

    // The count is in the catalog: 1,196 more runs today (written the way a
    // run's end is), then a restart.
    env.sluice.terminate();
    {
        let data = env.sluice.data_dir().to_owned();
        let key = MasterKey::load_or_create_file(&data.join("master.key")).unwrap();
        let catalog = Catalog::open(&data.join("catalog"), key).unwrap();
        let mut run = RunRecord::start(1_000_000, "snap", RunTrigger::Schedule);
        run.status = RunStatus::Succeeded;
        run.finished_at = Some(Utc::now());
        run.table_ops = Some(1_196);
        catalog.finish_run(&run, None).unwrap();
    }
    env.sluice.restart();
    let (client, mut connection) = env.sluice.config().connect(tokio_postgres::NoTls).await.unwrap();
    let notices: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures::StreamExt::next(&mut messages).await {
            if let AsyncMessage::Notice(notice) = message {
                seen.lock().unwrap().push(notice.message().to_owned());
            }
        }
    });
    assert_eq!(
        ops_and_health(&client, "snap").await,
        (Some("1199".into()), "healthy".into())
    );
    rows(&client, "RUN ETL JOB snap").await;
    assert_eq!(
        ops_and_health(&client, "snap").await,
        (Some("1200".into()), "degraded".into())
    );
    let warned: Vec<String> = notices
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.contains("daily table operations"))
        .cloned()
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("wh.snap")
            && warned[0].contains("1200 of Google BigQuery's 1500")
            && warned[0].contains("\"snap\""),
        "{warned:?}"
    );
    assert!(
        env.sluice.log_contents().contains("daily table operations"),
        "the warning is logged for scheduled runs too"
    );
}
