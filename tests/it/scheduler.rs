//! The internal scheduler end to end: jobs on short (seconds) cron schedules
//! against real PostgreSQL, watched through psql-visible tables and the
//! Prometheus endpoint.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use tokio_postgres::Client;

const EVENTS: &str = "
CREATE TABLE public.events (
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    payload text
);
INSERT INTO public.events
SELECT g, now() - interval '1 hour' + g * interval '1 second', 'p' || g
FROM generate_series(1, 500) g;
";

async fn setup(args: &[&str]) -> (PgServer, Sluice, Client) {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", EVENTS);
    let sluice = Sluice::start_with(args, &[]);
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    (pg, sluice, client)
}

/// A view `slow_events` over `events` that takes `seconds` to read.
fn create_slow_view(pg: &PgServer, seconds: u32) {
    pg.psql_admin_db(
        "shop",
        &format!(
            "CREATE VIEW public.slow_events AS SELECT e.id, e.created_at FROM public.events e, \
             (SELECT pg_sleep({seconds})) s;
             GRANT SELECT ON public.slow_events TO etl;"
        ),
    );
}

fn count_at_least(n: i64) -> impl Fn(&str) -> bool {
    move |v| v.parse::<i64>().is_ok_and(|c| c >= n)
}

#[tokio::test]
async fn scheduled_incremental_runs_pick_up_new_rows_exactly_once() {
    let (pg, _sluice, client) = setup(&[]).await;
    client
        .batch_execute(
            "CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY created_at ALL SCHEDULE CRON '*/2 * * * * *'",
        )
        .await
        .unwrap();
    let planned = rows(
        &client,
        "SELECT schedule, next_run_at IS NOT NULL, health FROM sluice.jobs",
    )
    .await;
    assert_eq!(
        planned[0],
        [
            Some("CRON '*/2 * * * * *'".into()),
            Some("t".into()),
            Some("healthy".into())
        ]
    );
    wait_for(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE trigger = 'schedule' AND status = 'succeeded'",
        Duration::from_secs(30),
        count_at_least(1),
    )
    .await;
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.bq_events").await, "500");

    // New rows arrive with later cursors; a later scheduled run loads them.
    pg.psql_admin_db(
        "shop",
        "INSERT INTO public.events SELECT g, now() + g * interval '1 millisecond', 'late' FROM generate_series(501, 650) g",
    );
    wait_for(
        &client,
        "SELECT count(*) FROM warehouse.bq_events",
        Duration::from_secs(30),
        |v| v == "650",
    )
    .await;
    // A few more ticks must not load anything twice.
    let runs_now: i64 = one(&client, "SELECT count(*) FROM sluice.runs").await.parse().unwrap();
    wait_for(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE status = 'succeeded'",
        Duration::from_secs(30),
        count_at_least(runs_now + 2),
    )
    .await;
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM warehouse.bq_events"
        )
        .await[0],
        [
            Some("650".into()),
            Some("650".into()),
            Some("1".into()),
            Some("650".into())
        ]
    );
    let scheduled = one(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE trigger = 'schedule' AND status = 'failed'",
    )
    .await;
    assert_eq!(scheduled, "0");

    // Paused: no more scheduled runs; RUN ETL JOB still works.
    client.batch_execute("ALTER ETL JOB events PAUSE").await.unwrap();
    let paused_at: i64 = one(&client, "SELECT count(*) FROM sluice.runs").await.parse().unwrap();
    assert_eq!(one(&client, "SELECT next_run_at IS NULL FROM sluice.jobs").await, "t");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // A run in flight when the job was paused may still finish.
    let after: i64 = one(&client, "SELECT count(*) FROM sluice.runs").await.parse().unwrap();
    assert!(after <= paused_at + 1, "{paused_at} -> {after}");
    let manual = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(manual[0][1].as_deref(), Some("succeeded"));
}

#[tokio::test]
async fn a_tick_while_the_job_is_running_is_skipped_not_overlapped() {
    let (pg, _sluice, client) = setup(&[]).await;
    // Reading this view takes 3 s, longer than the 1 s schedule.
    create_slow_view(&pg, 3);
    client
        .batch_execute("CREATE ETL JOB slow FROM shop.public.slow_events SNAPSHOT SCHEDULE CRON '* * * * * *'")
        .await
        .unwrap();
    wait_for(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE status = 'skipped'",
        Duration::from_secs(30),
        count_at_least(2),
    )
    .await;
    let skipped = rows(
        &client,
        "SELECT trigger, error FROM sluice.runs WHERE status = 'skipped' LIMIT 1",
    )
    .await;
    assert_eq!(skipped[0][0].as_deref(), Some("schedule"));
    assert!(
        skipped[0][1].as_deref().unwrap().contains("still running"),
        "{skipped:?}"
    );
    // Never two runs of the job at once.
    let running = one(&client, "SELECT count(*) FROM sluice.runs WHERE status = 'running'").await;
    assert!(running == "0" || running == "1", "{running}");
    let live = rows(
        &client,
        "SELECT phase, rows_per_second IS NOT NULL FROM sluice.runs WHERE status = 'running'",
    )
    .await;
    for row in &live {
        assert!(
            matches!(row[0].as_deref(), Some("planning" | "extracting" | "committing")),
            "{live:?}"
        );
        assert_eq!(row[1].as_deref(), Some("t"));
    }
}

#[tokio::test]
async fn due_runs_queue_for_a_free_slot_and_a_queued_run_can_be_cancelled() {
    let (pg, _sluice, client) = setup(&["--max-concurrent-runs", "1"]).await;
    create_slow_view(&pg, 3);
    client
        .batch_execute(
            "CREATE ETL JOB slow FROM shop.public.slow_events SNAPSHOT SCHEDULE CRON '* * * * * *';
             CREATE ETL JOB fast FROM shop.public.events SNAPSHOT SCHEDULE CRON '* * * * * *';",
        )
        .await
        .unwrap();
    // While one job holds the only slot the other waits, visibly queued;
    // cancel queued runs until one is cancelled before it could start.
    let deadline = Instant::now() + Duration::from_secs(40);
    let cancelled = loop {
        assert!(Instant::now() < deadline, "no run was seen queued");
        let queued = one(
            &client,
            "SELECT coalesce(max(run_id)::text, '') FROM sluice.runs WHERE status = 'queued'",
        )
        .await;
        if !queued.is_empty() {
            match client.batch_execute(&format!("CANCEL ETL RUN {queued}")).await {
                // Cancelled while queued, or it started between the query
                // and the cancel, which then stopped the running run: look
                // for another queued one.
                Ok(()) => {
                    let error = one(
                        &client,
                        &format!("SELECT coalesce(error, '') FROM sluice.runs WHERE run_id = {queued}"),
                    )
                    .await;
                    if error.contains("before it started") {
                        break queued;
                    }
                }
                // It ended between the query and the cancel.
                Err(e) => assert_eq!(e.code().unwrap().code(), "55000", "{e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let run = rows(
        &client,
        &format!("SELECT status, error, rows FROM sluice.runs WHERE run_id = {cancelled}"),
    )
    .await;
    assert_eq!(run[0][0].as_deref(), Some("cancelled"), "{run:?}");
    assert!(run[0][1].as_deref().unwrap().contains("before it started"), "{run:?}");
    assert_eq!(run[0][2].as_deref(), Some("0"));
    // The pool holds: never two runs at once, and both jobs still get runs.
    for _ in 0..10 {
        let running = one(&client, "SELECT count(*) FROM sluice.runs WHERE status = 'running'").await;
        assert!(running == "0" || running == "1", "{running}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    wait_for(
        &client,
        "SELECT count(DISTINCT job) FROM sluice.runs WHERE status = 'succeeded'",
        Duration::from_secs(30),
        |v| v == "2",
    )
    .await;
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_and_flag_the_job() {
    let (pg, _sluice, client) = setup(&["--retry-delay", "1", "--retry-max-delay", "2"]).await;
    client
        .batch_execute(
            "CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY created_at ALL \
             SCHEDULE CRON '*/5 * * * * *' WITH (max_retries = 2)",
        )
        .await
        .unwrap();
    pg.stop();
    wait_for(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE trigger = 'retry' AND status = 'failed'",
        Duration::from_secs(40),
        count_at_least(2),
    )
    .await;
    let failing = wait_for(
        &client,
        "SELECT health FROM sluice.jobs",
        Duration::from_secs(30),
        |v| v == "failing",
    )
    .await;
    assert_eq!(failing, "failing");
    let (failures, error) = {
        let row = &rows(&client, "SELECT consecutive_failures, last_error FROM sluice.jobs").await[0];
        (row[0].clone().unwrap(), row[1].clone().unwrap())
    };
    assert!(failures.parse::<i64>().unwrap() >= 3, "{failures}");
    assert!(error.contains("connection refused"), "{error}");
    assert_eq!(
        one(&client, "SELECT status FROM sluice.connections WHERE name = 'shop'").await,
        "failed"
    );
    // Retries of one failed tick stop at max_retries: between two scheduled
    // failures there are at most 2 retries.
    let triggers: Vec<String> = rows(&client, "SELECT trigger FROM sluice.runs ORDER BY run_id")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    let longest_retry_streak = triggers.split(|t| t != "retry").map(<[String]>::len).max().unwrap_or(0);
    assert!(longest_retry_streak <= 2, "{triggers:?}");

    pg.start_again();
    wait_for(
        &client,
        "SELECT health FROM sluice.jobs",
        Duration::from_secs(40),
        |v| v == "healthy",
    )
    .await;
    // The run that worked again also shows the connection working again.
    assert_eq!(
        one(&client, "SELECT status FROM sluice.connections WHERE name = 'shop'").await,
        "ok"
    );
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.bq_events").await, "500");
}

#[tokio::test]
async fn an_interrupted_scheduled_run_is_re_run_once_after_a_crash() {
    let (pg, mut sluice, client) = setup(&[]).await;
    create_slow_view(&pg, 4);
    client
        .batch_execute(
            "CREATE ETL JOB slow FROM shop.public.slow_events INCREMENTAL BY created_at ALL \
             SCHEDULE CRON '*/30 * * * * *'",
        )
        .await
        .unwrap();
    wait_for(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE status = 'running'",
        Duration::from_secs(40),
        |v| v == "1",
    )
    .await;
    sluice.kill9();
    sluice.restart();
    let client = sluice.client().await;
    let interrupted = wait_for(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE status = 'failed' AND error LIKE 'interrupted%'",
        Duration::from_secs(10),
        |v| v == "1",
    )
    .await;
    assert_eq!(interrupted, "1");
    wait_for(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE trigger = 'retry' AND status = 'succeeded'",
        Duration::from_secs(20),
        |v| v == "1",
    )
    .await;
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT id) FROM warehouse.bq_slow_events"
        )
        .await[0],
        [Some("500".into()), Some("500".into())]
    );
}

/// `GET path` on the metrics endpoint: (status line, body).
fn http_get(url: &str, path: &str) -> (String, String) {
    let address = url.trim_start_matches("http://").trim_end_matches("/metrics");
    let mut stream = TcpStream::connect(address).expect("connect to the metrics endpoint");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn the_metrics_endpoint_reports_runs_rows_and_connections() {
    let (_pg, sluice, client) = setup(&[]).await;
    client
        .batch_execute("CREATE ETL JOB events FROM shop.public.events SNAPSHOT")
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "RUN ETL JOB events").await[0][1].as_deref(),
        Some("succeeded")
    );
    client.batch_execute("RUN ETL JOB events").await.unwrap();

    let url = sluice.metrics_url();
    let (status, body) = http_get(&url, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        sample(
            &body,
            r#"sluice_runs_total{namespace="sluice",job="events",status="succeeded"}"#
        ),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, r#"sluice_rows_loaded_total{namespace="sluice",job="events"}"#),
        Some(1000.0),
        "{body}"
    );
    assert!(
        sample(&body, r#"sluice_loaded_bytes_total{namespace="sluice",job="events"}"#).unwrap() > 0.0,
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            r#"sluice_run_duration_seconds_count{namespace="sluice",job="events"}"#
        ),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            r#"sluice_connection_up{namespace="sluice",connection="shop",connection_type="postgres"}"#
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(sample(&body, "sluice_jobs"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "sluice_runs_running"), Some(0.0), "{body}");
    assert!(sample(&body, "sluice_catalog_size_bytes").unwrap() > 0.0, "{body}");
    assert!(
        body.contains("# TYPE sluice_scheduler_lateness_seconds histogram"),
        "{body}"
    );
    assert!(
        sample(&body, "sluice_scheduler_pass_seconds_count").is_some_and(|passes| passes >= 1.0),
        "the scheduler's passes are timed: {body}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    let (status, _) = http_get(&url, "/other");
    assert!(status.contains("404"), "{status}");
}

#[tokio::test]
async fn bad_schedules_and_settings_are_refused_with_the_reason() {
    let (_pg, _sluice, client) = setup(&[]).await;
    let message = expect_err(
        &client,
        "CREATE ETL JOB j FROM shop.public.events SNAPSHOT SCHEDULE DAILY AT '02:00' TIMEZONE 'Mars/Base'",
        "42601",
    )
    .await;
    assert!(message.contains("unknown time zone 'Mars/Base'"), "{message}");
    let message = expect_err(
        &client,
        "CREATE ETL JOB j FROM shop.public.events SNAPSHOT SCHEDULE CRON '61 * * * *'",
        "42601",
    )
    .await;
    assert!(message.contains("invalid cron expression"), "{message}");
    let message = expect_err(
        &client,
        "CREATE ETL JOB j FROM shop.public.events SNAPSHOT WITH (max_retries = 99)",
        "42601",
    )
    .await;
    assert!(message.contains("between 0 and 20"), "{message}");
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs").await, "0");

    client
        .batch_execute(
            "CREATE ETL JOB j FROM shop.public.events SNAPSHOT SCHEDULE weekly on sun at '3:05' timezone 'Europe/Warsaw' \
             WITH (catch_up = 'skip', max_retries = 0)",
        )
        .await
        .unwrap();
    let create = rows(&client, "SHOW CREATE ETL JOB j").await[0][1].clone().unwrap();
    assert!(
        create.contains(
            "SCHEDULE WEEKLY ON SUNDAY AT '03:05' TIMEZONE 'Europe/Warsaw' \
             WITH (batch_rows = 8192, max_retries = 0, catch_up = 'skip')"
        ),
        "{create}"
    );
    // The shown statement recreates the same job.
    client.batch_execute("DROP ETL JOB j WITH DATA").await.unwrap();
    client.batch_execute(&create).await.unwrap();
    let shown = rows(&client, "SELECT schedule, catch_up, max_retries FROM sluice.jobs").await;
    assert_eq!(
        shown[0],
        [
            Some("WEEKLY ON SUNDAY AT '03:05' TIMEZONE 'Europe/Warsaw'".into()),
            Some("skip".into()),
            Some("0".into())
        ]
    );
}
