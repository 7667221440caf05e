//! Redis as a source, against a real `redis-server`: the test before save,
//! exploration with inferred columns, snapshot and incremental jobs, type
//! mismatches, and a kill -9 between two pages of a scan.

use tokio_postgres::Client;

use crate::common::redis::{REDIS_PASSWORD, REDIS_USER, RedisServer};
use crate::common::{Sluice, describe_summary, expect_err, free_port, one, rows};

/// Five users as hashes (one without `email`), a JSON string config and a
/// list, each under its own pattern.
fn seed(redis: &RedisServer) {
    let mut commands: Vec<Vec<String>> = Vec::new();
    for id in 1..=5 {
        let mut hset = vec![
            "HSET".to_owned(),
            format!("user:{id}"),
            "name".into(),
            format!("user {id}"),
            "age".into(),
            (20 + id).to_string(),
            "updated_at".into(),
            format!("2024-01-0{id}T10:00:00Z"),
        ];
        if id != 3 {
            hset.extend(["email".into(), format!("u{id}@example.com")]);
        }
        commands.push(hset);
    }
    commands.push(vec![
        "SET".into(),
        "cfg:app".into(),
        r#"{"theme":"dark","limits":[1,2]}"#.into(),
    ]);
    commands.push(vec![
        "RPUSH".into(),
        "queue:jobs".into(),
        "a".into(),
        "b".into(),
        "c".into(),
    ]);
    let commands: Vec<Vec<&str>> = commands
        .iter()
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    let borrowed: Vec<&[&str]> = commands.iter().map(Vec::as_slice).collect();
    redis.run(&borrowed);
}

fn options(redis: &RedisServer, extra: &str) -> String {
    format!(
        "host '127.0.0.1', port {}, user '{REDIS_USER}', password '{REDIS_PASSWORD}', \
         tables 'users=user:*, config=cfg:*, queues=queue:*'{extra}",
        redis.port
    )
}

async fn setup(extra: &str) -> (RedisServer, Sluice, Client) {
    let redis = RedisServer::with_user();
    seed(&redis);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION cache TYPE redis OPTIONS ({})",
            options(&redis, extra)
        ))
        .await
        .unwrap();
    (redis, sluice, client)
}

async fn run(client: &Client, job: &str) -> String {
    let summary = rows(client, &format!("RUN ETL JOB {job}")).await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{job}: {summary:?}");
    summary[0][2].clone().unwrap()
}

#[tokio::test]
async fn the_test_before_save_names_bad_passwords_and_unreachable_servers() {
    let redis = RedisServer::with_user();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let port = redis.port;
    let wrong = expect_err(
        &client,
        &format!("CREATE CONNECTION c TYPE redis OPTIONS (host '127.0.0.1', port {port}, user 'etl', password 'nope', tables 'u=user:*')"),
        "28P01",
    )
    .await;
    assert!(wrong.contains("refused the user or password"), "{wrong}");
    assert!(!wrong.contains("nope"), "the password is never shown: {wrong}");
    let missing = expect_err(
        &client,
        &format!("CREATE CONNECTION c TYPE redis OPTIONS (host '127.0.0.1', port {port}, tables 'u=user:*')"),
        "28P01",
    )
    .await;
    assert!(missing.contains("NOAUTH"), "{missing}");
    let closed = free_port();
    expect_err(
        &client,
        &format!("CREATE CONNECTION c TYPE redis OPTIONS (host '127.0.0.1', port {closed}, tables 'u=user:*')"),
        "08001",
    )
    .await;
    let bad_tables = expect_err(
        &client,
        &format!("CREATE CONNECTION c TYPE redis OPTIONS (host '127.0.0.1', port {port}, tables 'users')"),
        "22023",
    )
    .await;
    assert!(bad_tables.contains("not name=pattern"), "{bad_tables}");
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.connections").await,
        "0",
        "nothing half-saved"
    );
    client
        .batch_execute(&format!(
            "CREATE CONNECTION c TYPE redis OPTIONS (host '127.0.0.1', port {port}, user 'etl', password '{REDIS_PASSWORD}', tables 'u=user:*')"
        ))
        .await
        .unwrap();
    let status = rows(&client, "SHOW CONNECTION TYPES").await;
    let redis_type = status.iter().find(|t| t[0].as_deref() == Some("redis")).unwrap();
    assert_eq!(redis_type[3].as_deref(), Some("available"), "{redis_type:?}");
}

#[tokio::test]
async fn tables_are_key_patterns_described_from_a_sample() {
    let (_redis, _sluice, client) = setup("").await;
    assert_eq!(
        rows(&client, "SHOW SCHEMAS FROM cache").await,
        [[Some("db0".to_owned())]]
    );
    let tables: Vec<_> = rows(&client, "SHOW TABLES FROM cache.db0")
        .await
        .into_iter()
        .map(|r| r[1].clone().unwrap())
        .collect();
    assert_eq!(tables, ["users", "config", "queues"]);
    let describe: Vec<Vec<Option<String>>> = rows(&client, "DESCRIBE cache.db0.users").await;
    let summary = describe_summary(&describe);
    assert_eq!(
        summary,
        [
            "_key | string (redis key of hashes) | 1 | STRING | high",
            "age | int64 (from text) | - | INT64 | medium",
            "email | string | - | STRING | medium",
            "name | string | - | STRING | high",
            "updated_at | timestamp (from text) | - | TIMESTAMP | medium",
        ]
    );
    let email_warnings = describe[2][10].clone().unwrap();
    assert!(
        email_warnings.contains("missing or null in 1 of 5 sampled documents"),
        "{email_warnings}"
    );
    let config: Vec<_> = rows(&client, "DESCRIBE cache.db0.config")
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[7].clone().unwrap()))
        .collect();
    assert_eq!(
        config,
        [("_key".into(), "STRING".into()), ("value".into(), "JSON".into())]
    );
    let queue = rows(
        &client,
        "SELECT _key, position, member FROM cache.db0.queues ORDER BY position",
    )
    .await;
    assert_eq!(queue.len(), 3);
    assert_eq!(queue[2], ["queue:jobs", "2", "c"].map(|v| Some(v.to_owned())));
    let filtered = rows(&client, "SELECT name FROM cache.db0.users WHERE age > 23 ORDER BY age").await;
    assert_eq!(filtered, [[Some("user 4".to_owned())], [Some("user 5".to_owned())]]);
    let missing = expect_err(&client, "DESCRIBE cache.db0.user", "42704").await;
    assert!(missing.contains("users"), "{missing}");
}

#[tokio::test]
async fn a_snapshot_job_replaces_the_table_with_every_key() {
    let (redis, _sluice, client) = setup(", keep_document true").await;
    client
        .batch_execute("CREATE ETL JOB users_snap FROM cache.db0.users INTO warehouse.users SNAPSHOT")
        .await
        .unwrap();
    assert_eq!(run(&client, "users_snap").await, "5");
    redis.run(&[
        &["DEL", "user:1"],
        &[
            "HSET",
            "user:9",
            "name",
            "nine",
            "age",
            "99",
            "updated_at",
            "2024-02-01T00:00:00Z",
        ],
    ]);
    assert_eq!(run(&client, "users_snap").await, "5");
    let keys: Vec<_> = rows(&client, "SELECT _key FROM warehouse.users ORDER BY _key")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(keys, ["user:2", "user:3", "user:4", "user:5", "user:9"]);
    let document = one(&client, "SELECT _document FROM warehouse.users WHERE _key = 'user:9'").await;
    assert_eq!(
        document,
        r#"{"_key":"user:9","age":"99","name":"nine","updated_at":"2024-02-01T00:00:00Z"}"#
    );
}

#[tokio::test]
async fn an_incremental_job_loads_each_change_once() {
    let (redis, _sluice, client) = setup("").await;
    client
        .batch_execute(
            "CREATE ETL JOB users_inc FROM cache.db0.users INTO warehouse.users INCREMENTAL BY updated_at ALL",
        )
        .await
        .unwrap();
    assert_eq!(run(&client, "users_inc").await, "5");
    assert_eq!(run(&client, "users_inc").await, "0");
    redis.run(&[
        &[
            "HSET",
            "user:6",
            "name",
            "six",
            "age",
            "26",
            "updated_at",
            "2024-03-01T00:00:00Z",
        ],
        &["HSET", "user:2", "age", "30", "updated_at", "2024-03-02T00:00:00Z"],
    ]);
    assert_eq!(run(&client, "users_inc").await, "2");
    let rows = rows(
        &client,
        "SELECT _key, age FROM warehouse.users WHERE updated_at >= '2024-03-01' ORDER BY _key",
    )
    .await;
    assert_eq!(
        rows,
        [["user:2", "30"], ["user:6", "26"]].map(|r| r.map(|v| Some(v.to_owned())))
    );
}

/// Redis has no aggregate query: VERIFY computes the source's checksums in
/// Sluice over a full scan, and names the day of a key that changed.
#[tokio::test]
async fn verify_checksums_a_scan_and_names_a_changed_day() {
    let (redis, _sluice, client) = setup("").await;
    client
        .batch_execute(
            "CREATE ETL JOB users_inc FROM cache.db0.users INTO warehouse.users INCREMENTAL BY updated_at ALL; \
             CREATE ETL JOB users_snap FROM cache.db0.users INTO warehouse.users_snap SNAPSHOT",
        )
        .await
        .unwrap();
    assert_eq!(run(&client, "users_inc").await, "5");
    assert_eq!(run(&client, "users_snap").await, "5");
    assert!(rows(&client, "VERIFY ETL JOB users_inc").await.is_empty());
    assert!(rows(&client, "VERIFY ETL JOB users_snap").await.is_empty());
    assert_eq!(
        one(
            &client,
            "SELECT buckets FROM sluice.verifications WHERE job = 'users_inc'"
        )
        .await,
        "5"
    );
    redis.run(&[&["HSET", "user:4", "updated_at", "2024-01-04T11:00:00Z"]]);
    let differ = rows(&client, "VERIFY ETL JOB users_inc").await;
    let days: Vec<_> = differ.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(days, ["2024-01-04"], "{differ:?}");
}

/// With a sample of one key, whichever of `42` and `hello` is sampled, the
/// other does not fit the `value` column inferred from it.
#[tokio::test]
async fn a_value_that_does_not_fit_fails_or_follows_on_type_mismatch() {
    let redis = RedisServer::start();
    redis.run(&[&["SET", "kv:a", "42"], &["SET", "kv:b", "hello"]]);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION cache TYPE redis OPTIONS (host '127.0.0.1', port {}, tables 'kv=kv:*', sample 1)",
            redis.port
        ))
        .await
        .unwrap();
    let message = expect_err(&client, "SELECT * FROM cache.db0.kv", "2200G").await;
    assert!(
        message.contains("document kv:") && message.contains("field \"value\" holds the"),
        "{message}"
    );
    assert!(message.contains("on_type_mismatch"), "{message}");
    client
        .batch_execute("ALTER CONNECTION cache SET (on_type_mismatch 'null')")
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SELECT count(*), count(value) FROM cache.db0.kv").await[0],
        ["2", "1"].map(|v| Some(v.to_owned()))
    );
    client
        .batch_execute("ALTER CONNECTION cache SET (on_type_mismatch 'json')")
        .await
        .unwrap();
    let kept = rows(&client, "SELECT _document FROM cache.db0.kv WHERE value IS NULL").await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    let document = kept[0][0].clone().unwrap();
    assert!(
        document == r#"{"_key":"kv:a","value":42}"# || document == r#"{"_key":"kv:b","value":"hello"}"#,
        "{document}"
    );
}

/// The server is killed between two pages of a scan: nothing of the run is
/// committed, and the re-run after the restart loads every key once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_pages_then_a_rerun_loads_each_key_once() {
    let redis = RedisServer::start();
    let commands: Vec<Vec<String>> = (1..=40)
        .map(|i| vec!["HSET".into(), format!("user:{i}"), "n".into(), i.to_string()])
        .collect();
    let commands: Vec<Vec<&str>> = commands
        .iter()
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    let borrowed: Vec<&[&str]> = commands.iter().map(Vec::as_slice).collect();
    redis.run(&borrowed);
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", "between_pages")]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION cache TYPE redis OPTIONS (host '127.0.0.1', port {}, tables 'users=user:*', scan_count 5); \
             CREATE ETL JOB users FROM cache.db0.users INTO warehouse.users SNAPSHOT",
            redis.port
        ))
        .await
        .unwrap();
    sluice.run_into_failpoint(&client, "RUN ETL JOB users").await;
    assert!(
        sluice.log_contents().contains("failpoint hit"),
        "killed at the failpoint"
    );
    let client = sluice.restart_without_failpoints().await;
    let interrupted = rows(&client, "SELECT status FROM sluice.runs WHERE job = 'users'").await;
    assert_eq!(
        interrupted,
        [[Some("failed".to_owned())]],
        "the killed run is settled as failed"
    );
    assert_eq!(run(&client, "users").await, "40");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT _key), sum(n) FROM warehouse.users"
        )
        .await[0],
        ["40", "40", "820"].map(|v| Some(v.to_owned()))
    );
}
