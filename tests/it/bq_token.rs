//! A Google token endpoint that accepts connections and never answers must
//! not hang BigQuery calls: every token fetch (the first and each later
//! one) has a deadline, and the failure is a transient class-08 error.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common;
use crate::fake_bigquery::{FakeBigQuery, TOKEN};

use common::*;

const ORDERS: &str = "
CREATE TABLE public.orders (id bigint PRIMARY KEY, amount numeric(10,2));
INSERT INTO public.orders SELECT g, g FROM generate_series(1, 10) g;
GRANT SELECT ON public.orders TO etl;
";

/// A token endpoint on a loopback port: it answers as many requests as
/// the returned counter holds with a token for the fake, then only accepts
/// connections and never answers.
fn token_endpoint(answers: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let left = Arc::new(AtomicUsize::new(answers));
    let counter = left.clone();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let answer = counter
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if answer {
                answer_token(&mut stream);
            } else {
                held.push(stream);
            }
        }
    });
    (url, left)
}

fn answer_token(stream: &mut TcpStream) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    // The request line and headers, then a body of content-length bytes.
    loop {
        let n = stream.read(&mut buffer).unwrap_or(0);
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    let body = format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600}}"#);
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The fake's service-account key, with its token URI moved to `token_uri`.
fn key_file(fake: &FakeBigQuery, dir: &Path, token_uri: &str) -> String {
    let path = fake.write_key_file(dir);
    let mut key: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    key["token_uri"] = token_uri.into();
    std::fs::write(&path, key.to_string()).unwrap();
    path.display().to_string()
}

/// Runs `sql`, failing the test if it takes longer than `limit`; the
/// SQLSTATE and message of its error.
async fn error_within(client: &tokio_postgres::Client, sql: &str, limit: Duration) -> (String, String) {
    let started = Instant::now();
    match tokio::time::timeout(limit, client.batch_execute(sql)).await {
        Err(_) => panic!("{sql}: no answer after {limit:?}: the token fetch hangs"),
        Ok(Ok(())) => panic!("{sql}: succeeded against a token endpoint that never answers"),
        Ok(Err(e)) => {
            let message = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
            eprintln!("{sql}: {} after {:?}: {message}", sqlstate(&e), started.elapsed());
            (sqlstate(&e), message)
        }
    }
}

#[tokio::test]
async fn a_silent_token_endpoint_fails_the_run_with_a_retried_08_error() {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", ORDERS);
    let fake = FakeBigQuery::start().await;
    let keys = tempfile::tempdir().unwrap();
    let (token_uri, answers) = token_endpoint(usize::MAX);
    let key = key_file(&fake, keys.path(), &token_uri);
    let sluice = Sluice::start_with(
        &["--retry-delay", "1", "--retry-max-delay", "1"],
        &[("SLUICE_BIGQUERY_ENDPOINT", fake.url.as_str())],
    );
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION wh TYPE bigquery OPTIONS (project 'test-project', dataset 'raw_data', location 'EU', \
             credentials_file '{key}', connect_timeout 2) WITH (validate = false);
             CREATE ETL JOB once FROM shop.public.orders SNAPSHOT INTO wh.orders;
             CREATE ETL JOB ticking FROM shop.public.orders SNAPSHOT INTO wh.ticking \
             SCHEDULE EVERY 1 MINUTE WITH (max_retries = 1);
             ALTER ETL JOB ticking PAUSE;"
        ))
        .await
        .unwrap();
    // From now on the endpoint accepts connections and never answers.
    answers.store(0, Ordering::SeqCst);
    let (code, message) = error_within(&client, "RUN ETL JOB once", Duration::from_secs(30)).await;
    assert_eq!(code, "08006", "{message}");
    assert!(message.contains("2 s"), "{message}");

    // The scheduler retries it: the endpoint may answer next time.
    client.batch_execute("ALTER ETL JOB ticking RESUME").await.unwrap();
    // Every minute: the fastest schedule BigQuery's daily table operations allow.
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        let retried = one(
            &client,
            "SELECT count(*) FROM sluice.runs WHERE job = 'ticking' AND trigger = 'retry' AND status = 'failed'",
        )
        .await;
        if retried != "0" {
            break;
        }
        assert!(Instant::now() < deadline, "no retry of the timed-out run");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        one(
            &client,
            "SELECT DISTINCT sqlstate FROM sluice.runs WHERE job = 'ticking' AND status = 'failed'"
        )
        .await,
        "08006"
    );
}

#[tokio::test]
async fn a_token_fetch_after_the_first_has_a_deadline_too() {
    let fake = FakeBigQuery::start().await;
    let keys = tempfile::tempdir().unwrap();
    // The BigQuery token comes; the staging bucket's token never does.
    let (token_uri, _) = token_endpoint(1);
    let key = key_file(&fake, keys.path(), &token_uri);
    let gcs = fake.gcs_url();
    let sluice = Sluice::start_with(
        &[],
        &[
            ("SLUICE_BIGQUERY_ENDPOINT", fake.url.as_str()),
            ("SLUICE_GCS_ENDPOINT", gcs.as_str()),
        ],
    );
    let client = sluice.client().await;
    let (code, message) = error_within(
        &client,
        &format!(
            "CREATE CONNECTION staged TYPE bigquery OPTIONS (project 'test-project', dataset 'raw_data', \
             location 'EU', credentials_file '{key}', connect_timeout 2, staging_bucket 'gs://stage/x')"
        ),
        Duration::from_secs(30),
    )
    .await;
    assert!(code.starts_with("08"), "{code}: {message}");
    assert_eq!(
        fake.state().tokens_issued,
        0,
        "tokens came from the local endpoint only"
    );
}
