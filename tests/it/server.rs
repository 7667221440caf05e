//! The wire front end: authentication, protocols, plain SQL, errors, psql.

use crate::common;

use std::time::Duration;

use common::*;
use tokio_postgres::SimpleQueryMessage;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn first_value(messages: &[SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
        _ => None,
    })?
}

#[tokio::test]
async fn scram_login_accepts_only_the_admin_password() {
    let sluice = Sluice::start();
    sluice.client().await;
    let mut wrong = sluice.config();
    wrong.password("not-it");
    let err = connect(&wrong).await.expect_err("a wrong password must be refused");
    assert_eq!(sqlstate(&err), "28P01", "{err:?}");
    let mut stranger = sluice.config();
    stranger.user("mallory");
    let err = connect(&stranger).await.expect_err("an unknown user must be refused");
    assert_eq!(sqlstate(&err), "28P01", "{err:?}");
    // A database that does not exist is refused after the password check.
    let mut other_db = sluice.config();
    other_db.dbname("whatever");
    let err = connect(&other_db)
        .await
        .expect_err("an unknown database must be refused");
    assert_eq!(sqlstate(&err), "3D000", "{err:?}");
}

#[tokio::test]
async fn a_generated_password_is_printed_once_and_stored_hashed() {
    let mut sluice = Sluice::try_start_opts(
        SluiceOpts {
            wait_for_login: false,
            ..SluiceOpts::default()
        }
        .env_remove("SLUICE_PASSWORD"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let password = loop {
        let log = sluice.log_contents();
        if let Some(line) = log
            .lines()
            .find(|l| l.starts_with("Generated a password for user \"admin\": "))
        {
            break line.rsplit(": ").next().unwrap().trim().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no generated password in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(password.len(), 24);
    sluice.opts.password = password.clone();
    sluice.client().await;
    assert!(
        files_containing(sluice.data_dir(), password.as_bytes()).is_empty(),
        "the password must be stored hashed only"
    );
    sluice.restart();
    sluice.client().await;
    let printed = sluice.log_contents().matches("Generated a password").count();
    assert_eq!(printed, 1, "the password is printed only on first start");
}

#[tokio::test]
async fn plain_sql_and_client_startup_queries_work() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let version = first_value(&client.simple_query("select version()").await.unwrap()).unwrap();
    assert!(!version.is_empty());
    let schema = first_value(&client.simple_query("select current_schema()").await.unwrap()).unwrap();
    assert_eq!(schema, "public");
    client.batch_execute("SET application_name = 'tests'").await.unwrap();
    let name = first_value(&client.simple_query("SHOW application_name").await.unwrap()).unwrap();
    assert_eq!(name, "tests");
    // Extended protocol with parameters on plain SQL and a Sluice statement.
    let row = client.query_one("SELECT $1::bigint + 1 AS n", &[&41i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>("n"), 42);
    let types = client.query("SHOW CONNECTION TYPES", &[]).await.unwrap();
    assert_eq!(types.len(), 20);
    assert_eq!(types[0].get::<_, String>("type"), "postgres");
    let statement = client.prepare("SHOW CONNECTIONS").await.unwrap();
    let columns: Vec<_> = statement.columns().iter().map(|c| c.name().to_owned()).collect();
    assert_eq!(columns[..3], ["name", "type", "status"]);
    // Unknown tables and bad SQL get proper SQLSTATEs and the session lives on.
    expect_err(&client, "SELECT * FROM nowhere", "42P01").await;
    expect_err(&client, "SELEKT 1", "42601").await;
    expect_err_extended(&client, "SELECT * FROM nowhere", "42P01").await;
    assert_eq!(
        first_value(&client.simple_query("SELECT 1").await.unwrap()).unwrap(),
        "1"
    );
}

#[tokio::test]
async fn syntax_errors_carry_positions_and_stop_the_query_string() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let sql =
        "CREATE SECRET a AS 'x'; CREATE CONNECTION c TYPE postgres OPTIONS (host 'h' @ 'i'); CREATE SECRET b AS 'y'";
    let err = client.batch_execute(sql).await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42601");
    let position = match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => *p as usize,
        other => panic!("no position: {other:?}"),
    };
    assert_eq!(&sql[position - 1..position], "@", "position {position} in {sql}");
    let secrets = client.simple_query("SELECT name FROM sluice.secrets").await.unwrap();
    let names: Vec<_> = secrets
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        vec!["a"],
        "statements before the error apply, the ones after do not"
    );
    expect_err_extended(&client, "SHOW CONNECTIONS please", "42601").await;
}

#[test]
fn psql_runs_scripts_and_shows_notices() {
    let sluice = Sluice::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("setup.sql");
    std::fs::write(
        &script,
        "-- a migration script\nCREATE SECRET IF NOT EXISTS s AS 'v';\nCREATE SECRET IF NOT EXISTS s AS 'v';\n\
         CREATE CONNECTION IF NOT EXISTS offline TYPE mysql OPTIONS (host 'db', user 'u') WITH (validate = false);\n\
         SHOW CONNECTIONS;\nSELECT name, status FROM sluice.connections;\n",
    )
    .unwrap();
    let output = sluice.psql_file(&script);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("NOTICE:  secret \"s\" already exists, skipping"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("offline | unknown"), "{}", stdout(&output));
    // Running it again is idempotent.
    assert!(sluice.psql_file(&script).status.success());
    let failing = sluice.psql("SHOW CONNECTION offline;");
    assert!(!failing.status.success());
    assert!(stderr(&failing).contains("syntax error"), "{}", stderr(&failing));
}

#[test]
fn bad_start_up_configuration_is_refused_clearly() {
    let err = Sluice::try_start_opts(SluiceOpts::default().env("SLUICE_MASTER_KEY", "abc"))
        .err()
        .unwrap();
    assert!(err.contains("64 hexadecimal digits"), "{err}");
    let err = Sluice::try_start_opts(SluiceOpts::default().arg("--tls-cert").arg("/nonexistent.pem"))
        .err()
        .unwrap();
    assert!(err.contains("--tls-key"), "{err}");
}

#[tokio::test]
async fn tls_is_offered_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed by .ci/run");
    assert!(status.status.success(), "{}", stderr(&status));
    let sluice = Sluice::start_with(
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
        &[],
    );
    let encrypted = std::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=admin dbname=sluice sslmode=require",
            sluice.port
        ))
        .args(["-X", "-At", "-c", "SHOW CONNECTION TYPES"])
        .env("PGPASSWORD", sluice.password())
        .output()
        .unwrap();
    assert!(encrypted.status.success(), "TLS login failed: {}", stderr(&encrypted));
    assert_eq!(stdout(&encrypted).lines().count(), 20, "{}", stdout(&encrypted));
}
