//! Alerts through a real client against a real sluice: `CREATE ALERT`,
//! webhook messages to a local HTTP receiver (payload and secret header),
//! one message per incident and one on recovery (of a job or a
//! connection), a receiver that is down, a delivery a crash cut short sent
//! after the restart, and the secret header's value never shown.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use serde_json::Value;
use tokio_postgres::Client;

use crate::common::{PgServer, Sluice, create_shop_connection, expect_err, free_port, one, rows};

/// The secret header's value; it must never come back from Sluice.
const TOKEN: &str = "tok-s3cr3t-hook-value";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Value,
}

/// A local webhook receiver recording every POST to `/hook`.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        Self::start_on(0).await
    }

    /// A receiver on `port` of 127.0.0.1 (0: any free port).
    async fn start_on(port: u16) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = received.clone();
        let app = Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let shared = shared.clone();
                async move {
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    shared.lock().unwrap().push(Received { headers, body });
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived, then a little longer to catch any
    /// extra one; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.received().len() < n {
            assert!(
                Instant::now() < deadline,
                "{n} requests expected, got {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.received()
    }
}

/// A local connection `files` over `dir` and a snapshot job `orders` on
/// its `orders.csv`.
async fn orders_job(client: &Client, dir: &Path) {
    std::fs::write(dir.join("orders.csv"), "id,total\n1,10\n2,20\n").unwrap();
    client
        .batch_execute(&format!(
            "CREATE CONNECTION files TYPE local OPTIONS (path '{}'); \
             CREATE ETL JOB orders FROM files.files.orders INTO warehouse.orders SNAPSHOT;",
            dir.display()
        ))
        .await
        .unwrap();
}

/// Runs job `orders`; returns its run id and status.
async fn run_orders(client: &Client) -> (String, String) {
    let _ = client.simple_query("RUN ETL JOB orders").await;
    let last = rows(
        client,
        "SELECT run_id, status FROM sluice.runs WHERE job = 'orders' ORDER BY run_id DESC LIMIT 1",
    )
    .await;
    (last[0][0].clone().unwrap(), last[0][1].clone().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_notifies_once_and_its_recovery_once() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    orders_job(&client, dir.path()).await;
    client
        .batch_execute(&format!(
            "CREATE SECRET hook_token AS '{TOKEN}'; \
             CREATE ALERT failed ON JOB FAILURE FOR orders NOTIFY WEBHOOK '{url}' \
               WITH (secret_header = 'X-Hook-Token', secret = hook_token); \
             CREATE ALERT back ON JOB RECOVERED NOTIFY WEBHOOK '{url}';",
            url = receiver.url
        ))
        .await
        .unwrap();

    assert_eq!(run_orders(&client).await.1, "succeeded");
    std::fs::remove_file(dir.path().join("orders.csv")).unwrap();
    let (first_failed, status) = run_orders(&client).await;
    assert_eq!(status, "failed");
    assert_eq!(run_orders(&client).await.1, "failed");

    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "one message for two failing runs: {got:?}");
    let failure = &got[0];
    assert_eq!(failure.body["event"], "job_failure");
    assert_eq!(failure.body["alert"], "failed");
    assert_eq!(failure.body["job"], "orders");
    assert_eq!(failure.body["run_id"].to_string(), first_failed);
    let text = failure.body["text"].as_str().unwrap();
    assert!(
        text.contains("\"orders\" failed") && text.contains(&format!("run {first_failed}")),
        "{text}"
    );
    assert!(
        failure.body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failure:?}"
    );
    let sql = failure.body["sql"].as_str().unwrap();
    assert_eq!(one(&client, sql).await, first_failed, "the payload's SQL finds the run");
    assert_eq!(failure.headers.get("x-hook-token").unwrap(), TOKEN);
    assert_eq!(failure.headers.get("content-type").unwrap(), "application/json");

    std::fs::write(dir.path().join("orders.csv"), "id,total\n1,10\n").unwrap();
    let (recovered, status) = run_orders(&client).await;
    assert_eq!(status, "succeeded");
    assert_eq!(run_orders(&client).await.1, "succeeded");
    let got = receiver.wait_for(2).await;
    assert_eq!(got.len(), 2, "one message on recovery: {got:?}");
    let recovery = &got[1];
    assert_eq!(recovery.body["event"], "job_recovered");
    assert_eq!(recovery.body["alert"], "back");
    assert_eq!(recovery.body["run_id"].to_string(), recovered);
    assert_eq!(recovery.body["incident"], failure.body["incident"]);
    assert!(recovery.headers.get("x-hook-token").is_none());

    let deliveries = rows(
        &client,
        "SELECT alert, event, subject, status, attempts, incident FROM sluice.alert_deliveries ORDER BY id",
    )
    .await;
    let incident = failure.body["incident"].as_str().unwrap();
    let expected = |alert: &str, event: &str| {
        [alert, event, "orders", "delivered", "1", incident]
            .map(|v| Some(v.to_owned()))
            .to_vec()
    };
    assert_eq!(
        deliveries,
        vec![expected("failed", "JOB FAILURE"), expected("back", "JOB RECOVERED")]
    );

    // The secret header's value is never shown.
    for sql in [
        "SHOW ALERTS",
        "SELECT * FROM sluice.alerts",
        "SELECT * FROM sluice.alert_deliveries",
    ] {
        let shown = format!("{:?}", rows(&client, sql).await);
        assert!(!shown.contains(TOKEN), "{sql}: {shown}");
    }
    let shown = rows(
        &client,
        "SELECT name, event, target, secret_header, secret FROM sluice.alerts WHERE name = 'failed'",
    )
    .await;
    assert_eq!(
        shown[0],
        ["failed", "JOB FAILURE", "orders", "X-Hook-Token", "hook_token"].map(|v| Some(v.to_owned()))
    );
    let log = std::fs::read_to_string(sluice.log_path()).unwrap_or_default();
    assert!(!log.contains(TOKEN), "the log shows the secret");
}

/// Polls `sql` (one value) until it is `expected`; panics after 60 s.
async fn wait_until(client: &Client, sql: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = one(client, sql).await;
        if value == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: still {value:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_notifies_after_its_retries_and_its_source_once() {
    let receiver = Receiver::start().await;
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO public.events SELECT g, now() - interval '1 hour' + g * interval '1 second' FROM generate_series(1, 50) g; \
         GRANT SELECT ON public.events TO etl;",
    );
    let sluice = Sluice::start_with(&["--retry-delay", "1", "--retry-max-delay", "1"], &[]);
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute(&format!(
            "CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY created_at ALL \
               SCHEDULE CRON '*/3 * * * * *' WITH (max_retries = 1); \
             CREATE ALERT failed ON JOB FAILURE NOTIFY WEBHOOK '{url}'; \
             CREATE ALERT back ON JOB RECOVERED FOR events NOTIFY WEBHOOK '{url}'; \
             CREATE ALERT source_down ON CONNECTION FAILED FOR shop NOTIFY WEBHOOK '{url}';",
            url = receiver.url
        ))
        .await
        .unwrap();
    wait_until(
        &client,
        "SELECT count(*) > 0 FROM sluice.runs WHERE status = 'succeeded'",
        "t",
    )
    .await;
    pg.stop();
    // Several ticks, each retried once, all failing.
    wait_until(
        &client,
        "SELECT count(*) >= 2 FROM sluice.runs WHERE trigger = 'retry' AND status = 'failed'",
        "t",
    )
    .await;
    let got = receiver.wait_for(2).await;
    let events = |got: &[Received]| {
        got.iter()
            .map(|r| r.body["event"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let mut seen = events(&got);
    seen.sort();
    assert_eq!(seen, ["connection_failed", "job_failure"], "{got:?}");
    let failure = got.iter().find(|r| r.body["event"] == "job_failure").unwrap();
    let run = failure.body["run_id"].to_string();
    assert_eq!(
        one(
            &client,
            &format!("SELECT trigger FROM sluice.runs WHERE run_id = {run}")
        )
        .await,
        "retry",
        "the failure is told once the retry failed too"
    );
    let down = got.iter().find(|r| r.body["event"] == "connection_failed").unwrap();
    assert_eq!(down.body["connection"], "shop");

    pg.start_again();
    wait_until(&client, "SELECT health FROM sluice.jobs", "healthy").await;
    let got = receiver.wait_for(3).await;
    assert_eq!(events(&got[2..]), ["job_recovered"], "{got:?}");
    assert_eq!(got[2].body["incident"], failure.body["incident"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_retries_recorded_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    orders_job(&client, dir.path()).await;
    let down = format!("http://127.0.0.1:{}/hook", free_port());
    client
        .batch_execute(&format!("CREATE ALERT pager ON JOB FAILURE NOTIFY WEBHOOK '{down}'"))
        .await
        .unwrap();
    std::fs::remove_file(dir.path().join("orders.csv")).unwrap();
    let started = Instant::now();
    assert_eq!(run_orders(&client).await.1, "failed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the run waited for the webhook"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let delivery = loop {
        let delivery = rows(
            &client,
            "SELECT status, attempts, last_error, finished_at IS NOT NULL FROM sluice.alert_deliveries",
        )
        .await;
        if delivery.len() == 1 && delivery[0][0].as_deref() == Some("failed") {
            break delivery[0].clone();
        }
        assert!(Instant::now() < deadline, "the delivery never gave up: {delivery:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(delivery[1].as_deref(), Some("5"), "{delivery:?}");
    let error = delivery[2].clone().unwrap();
    assert!(error.contains("could not reach the webhook"), "{error}");
    assert!(!error.contains("/hook"), "the error shows the URL: {error}");
    assert_eq!(delivery[3].as_deref(), Some("t"));
    // Sluice still works normally.
    assert_eq!(
        one(&client, "SELECT status FROM sluice.runs WHERE job = 'orders'").await,
        "failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_connection_notifies_once_and_its_recovery_once() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("landing");
    std::fs::create_dir(&files).unwrap();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION files TYPE local OPTIONS (path '{}'); \
             CREATE ALERT down ON CONNECTION FAILED FOR files NOTIFY WEBHOOK '{url}'; \
             CREATE ALERT up ON CONNECTION RECOVERED FOR files NOTIFY WEBHOOK '{url}';",
            files.display(),
            url = receiver.url
        ))
        .await
        .unwrap();
    std::fs::remove_dir(&files).unwrap();
    for _ in 0..2 {
        assert!(client.batch_execute("TEST CONNECTION files").await.is_err());
    }
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body["event"], "connection_failed");
    assert_eq!(got[0].body["connection"], "files");
    assert_eq!(got[0].body["job"], Value::Null);
    assert_eq!(
        got[0].body["sql"],
        "SELECT * FROM sluice.connections WHERE name = 'files'"
    );

    // The connection works again: one message closes the incident.
    std::fs::create_dir(&files).unwrap();
    for _ in 0..2 {
        client.batch_execute("TEST CONNECTION files").await.unwrap();
    }
    let got = receiver.wait_for(2).await;
    assert_eq!(got.len(), 2, "one message on recovery: {got:?}");
    let recovery = &got[1].body;
    assert_eq!(recovery["event"], "connection_recovered");
    assert_eq!(recovery["alert"], "up");
    assert_eq!(recovery["connection"], "files");
    assert_eq!(recovery["job"], Value::Null);
    assert_eq!(recovery["error"], Value::Null);
    assert_eq!(recovery["incident"], got[0].body["incident"]);
    assert_eq!(recovery["text"], "Sluice: connection \"files\" recovered");
    assert_eq!(
        one(
            &client,
            "SELECT event || ' ' || status FROM sluice.alert_deliveries WHERE alert = 'up'"
        )
        .await,
        "CONNECTION RECOVERED delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_alerts_are_refused_and_transactions_stage_them() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    orders_job(&client, dir.path()).await;
    let hook = "https://hooks.example.com/services/T0/B0/xyz";
    for (sql, code, names) in [
        (
            format!("CREATE ALERT a ON JOB FAILURE FOR nope NOTIFY WEBHOOK '{hook}'"),
            "42704",
            "ETL job \"nope\"",
        ),
        (
            format!("CREATE ALERT a ON CONNECTION FAILED FOR nope NOTIFY WEBHOOK '{hook}'"),
            "42704",
            "connection \"nope\"",
        ),
        (
            format!(
                "CREATE ALERT a ON JOB FAILURE NOTIFY WEBHOOK '{hook}' WITH (secret_header = 'X-T', secret = nope)"
            ),
            "42704",
            "secret \"nope\"",
        ),
        (
            "CREATE ALERT a ON JOB FAILURE NOTIFY WEBHOOK 'http://hooks.example.com/x'".to_owned(),
            "22023",
            "use https",
        ),
        (
            "CREATE ALERT a ON JOB FAILURE NOTIFY WEBHOOK 'hooks'".to_owned(),
            "22023",
            "invalid webhook URL",
        ),
        (
            format!(
                "CREATE ALERT a ON JOB FAILURE NOTIFY WEBHOOK '{hook}' WITH (secret_header = 'bad header', secret = s)"
            ),
            "22023",
            "\"bad header\"",
        ),
        ("DROP ALERT nope".to_owned(), "42704", "alert \"nope\""),
    ] {
        let message = expect_err(&client, &sql, code).await;
        assert!(message.contains(names), "{sql}: {message}");
    }
    assert!(rows(&client, "SHOW ALERTS").await.is_empty(), "nothing half-saved");

    client
        .batch_execute(&format!(
            "CREATE SECRET s AS 'v'; \
             CREATE ALERT a ON JOB FAILURE FOR orders NOTIFY WEBHOOK '{hook}' WITH (secret_header = 'X-T', secret = s)"
        ))
        .await
        .unwrap();
    let message = expect_err(
        &client,
        &format!("CREATE ALERT a ON JOB RECOVERED NOTIFY WEBHOOK '{hook}'"),
        "42710",
    )
    .await;
    assert!(message.contains("alert \"a\" already exists"), "{message}");
    client
        .batch_execute(&format!(
            "CREATE ALERT IF NOT EXISTS a ON JOB RECOVERED NOTIFY WEBHOOK '{hook}'"
        ))
        .await
        .unwrap();
    let shown = rows(&client, "SHOW ALERTS").await;
    assert_eq!(shown.len(), 1);
    assert_eq!(
        shown[0][1].as_deref(),
        Some("JOB FAILURE"),
        "IF NOT EXISTS changed nothing"
    );
    assert_eq!(
        shown[0][3].as_deref(),
        Some("https://hooks.example.com/…"),
        "the webhook's path (often its token) is hidden"
    );
    let message = expect_err(&client, "DROP SECRET s", "2BP01").await;
    assert!(message.contains("alerts depend on it: \"a\""), "{message}");

    // Staged in a transaction block like the other DDL.
    client
        .batch_execute(&format!(
            "BEGIN; CREATE ALERT b ON JOB RECOVERED NOTIFY WEBHOOK '{hook}'; DROP ALERT a; ROLLBACK;"
        ))
        .await
        .unwrap();
    assert_eq!(
        one(&client, "SELECT string_agg(name, ',') FROM sluice.alerts").await,
        "a"
    );
    client
        .batch_execute(&format!(
            "BEGIN; CREATE ALERT b ON JOB RECOVERED NOTIFY WEBHOOK '{hook}'; DROP ALERT a; COMMIT;"
        ))
        .await
        .unwrap();
    assert_eq!(
        one(&client, "SELECT string_agg(name, ',') FROM sluice.alerts").await,
        "b"
    );
    client
        .batch_execute("DROP ALERT IF EXISTS a; DROP ALERT b")
        .await
        .unwrap();
    assert!(rows(&client, "SHOW ALERTS").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_pending_at_a_crash_is_sent_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut sluice = Sluice::start();
    let client = sluice.client().await;
    orders_job(&client, dir.path()).await;
    let port = free_port();
    client
        .batch_execute(&format!(
            "CREATE ALERT pager ON JOB FAILURE NOTIFY WEBHOOK 'http://127.0.0.1:{port}/hook'"
        ))
        .await
        .unwrap();
    std::fs::remove_file(dir.path().join("orders.csv")).unwrap();
    let (run_id, status) = run_orders(&client).await;
    assert_eq!(status, "failed");
    // The receiver is down: the delivery is retrying when the server dies.
    wait_until(
        &client,
        "SELECT status || ' ' || (attempts >= 1) FROM sluice.alert_deliveries",
        "pending true",
    )
    .await;
    sluice.kill9();

    let receiver = Receiver::start_on(port).await;
    sluice.restart();
    let client = sluice.client().await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "one message: {got:?}");
    assert_eq!(got[0].body["event"], "job_failure");
    assert_eq!(got[0].body["run_id"].to_string(), run_id);
    let error = got[0].body["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty() && error != "unknown error", "{got:?}");
    wait_until(
        &client,
        "SELECT status || ' ' || count(*) FROM sluice.alert_deliveries GROUP BY status",
        "delivered 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_keep_as_many_rows_as_configured() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start_with(&["--keep-alert-deliveries", "2"], &[]);
    let client = sluice.client().await;
    orders_job(&client, dir.path()).await;
    for name in ["a1", "a2", "a3"] {
        client
            .batch_execute(&format!(
                "CREATE ALERT {name} ON JOB FAILURE NOTIFY WEBHOOK '{}'",
                receiver.url
            ))
            .await
            .unwrap();
    }
    std::fs::remove_file(dir.path().join("orders.csv")).unwrap();
    assert_eq!(run_orders(&client).await.1, "failed");
    assert_eq!(receiver.wait_for(3).await.len(), 3, "every alert is told");
    // The newest two are kept, each finished: the oldest's outcome did not
    // bring it back.
    assert_eq!(
        one(
            &client,
            "SELECT string_agg(alert || ' ' || status, ',' ORDER BY id) FROM sluice.alert_deliveries"
        )
        .await,
        "a2 delivered,a3 delivered"
    );
}
