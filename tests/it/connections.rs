//! Connection management end to end: a real `sluice` process, real
//! PostgreSQL and MariaDB servers, driven through tokio-postgres and psql.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use tokio_postgres::Client;

async fn one(client: &Client, sql: &str) -> Option<String> {
    let rows = rows(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone()
}

async fn status_of(client: &Client, name: &str) -> String {
    one(
        client,
        &format!("SELECT status FROM sluice.connections WHERE name = '{name}'"),
    )
    .await
    .unwrap()
}

async fn count_connections(client: &Client) -> String {
    one(client, "SELECT count(*) FROM sluice.connections").await.unwrap()
}

fn pg_options(pg: &PgServer, password: &str) -> String {
    format!(
        "host '127.0.0.1', port {}, database 'shop', user 'etl', password '{password}'",
        pg.port
    )
}

#[tokio::test]
async fn postgres_connections_are_tested_before_they_are_saved() {
    let pg = PgServer::start();
    let sluice = Sluice::start();
    let client = sluice.client().await;

    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS ({})",
            pg_options(&pg, ETL_PASSWORD)
        ))
        .await
        .unwrap();
    assert_eq!(status_of(&client, "shop").await, "ok");
    let row = &rows(
        &client,
        "SELECT type, options, last_tested_at IS NOT NULL, last_error FROM sluice.connections",
    )
    .await[0];
    assert_eq!(row[0].as_deref(), Some("postgres"));
    let options = row[1].clone().unwrap();
    assert!(
        options.contains(&format!("port {}", pg.port)) && options.contains("sslmode 'verify-if-offered'"),
        "defaults filled in: {options}"
    );
    assert!(
        options.contains("password '********'") && !options.contains(ETL_PASSWORD),
        "{options}"
    );
    assert_eq!(row[2].as_deref(), Some("t"));
    assert_eq!(row[3], None);

    // Wrong password: 28P01, nothing saved.
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION bad_pw TYPE postgres OPTIONS ({})",
            pg_options(&pg, "nope").replace("'etl'", "'etl2'")
        ),
        "28P01",
    )
    .await;
    assert!(
        message.contains("bad_pw") && message.contains("authentication failed"),
        "{message}"
    );
    // Unknown database: 3D000.
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION bad_db TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'nodb', user 'etl', password '{ETL_PASSWORD}')",
            pg.port
        ),
        "3D000",
    )
    .await;
    assert!(message.contains("nodb"), "{message}");
    // Nothing listening: 08001, connection refused.
    let closed = free_port();
    let message = expect_err(
        &client,
        &format!("CREATE CONNECTION refused TYPE postgres OPTIONS (host '127.0.0.1', port {closed}, database 'shop', user 'etl')"),
        "08001",
    )
    .await;
    assert!(message.contains("refused"), "{message}");
    // Unresolvable host name: 08001, host name not found.
    let message = expect_err(
        &client,
        "CREATE CONNECTION nxdomain TYPE postgres OPTIONS (host 'no-such-host.invalid', database 'shop', user 'etl')",
        "08001",
    )
    .await;
    assert!(message.contains("host name not found"), "{message}");
    // A server that accepts TCP but never answers: the test gives up after connect_timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION silent TYPE postgres OPTIONS (host '127.0.0.1', port {silent_port}, database 'shop', \
             user 'etl', connect_timeout 1)"
        ),
        "08001",
    )
    .await;
    assert!(message.contains("timed out"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the timeout was not honoured"
    );
    drop(silent);
    // sslmode is honoured: the test server has no TLS, so require fails.
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION tls TYPE postgres OPTIONS ({}, sslmode 'require')",
            pg_options(&pg, ETL_PASSWORD).replace("'etl'", "'postgres'")
        ),
        "08001",
    )
    .await;
    assert!(message.contains("TLS"), "{message}");
    assert_eq!(count_connections(&client).await, "1", "failed creates save nothing");

    // Same name: 42710. Same server, database and user under another name: 42710 naming it.
    expect_err(
        &client,
        &format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS ({})",
            pg_options(&pg, ETL_PASSWORD)
        ),
        "42710",
    )
    .await;
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION shop_again TYPE postgres OPTIONS ({})",
            pg_options(&pg, ETL_PASSWORD)
        ),
        "42710",
    )
    .await;
    assert!(message.contains("\"shop\""), "{message}");
    // IF NOT EXISTS skips with a notice, even with options that would fail.
    client
        .batch_execute(
            "CREATE CONNECTION IF NOT EXISTS shop TYPE postgres OPTIONS (host 'elsewhere', database 'x', user 'y')",
        )
        .await
        .unwrap();

    // ALTER re-tests: a failing change leaves the old definition in place.
    expect_err(&client, "ALTER CONNECTION shop SET (password 'wrong')", "28P01").await;
    assert_eq!(status_of(&client, "shop").await, "ok");
    client.batch_execute("TEST CONNECTION shop").await.unwrap();
    client
        .batch_execute("ALTER CONNECTION shop SET (sslmode 'disable', connect_timeout 5)")
        .await
        .unwrap();
    let shown = rows(&client, "SHOW CREATE CONNECTION shop").await;
    let statement = shown[0][1].clone().unwrap();
    assert!(
        statement.starts_with("CREATE CONNECTION shop TYPE postgres OPTIONS ("),
        "{statement}"
    );
    assert!(
        statement.contains("sslmode 'disable'") && statement.contains("connect_timeout 5"),
        "{statement}"
    );
    assert!(!statement.contains(ETL_PASSWORD), "{statement}");
    client
        .batch_execute("ALTER CONNECTION shop RESET (connect_timeout)")
        .await
        .unwrap();
    let shown = rows(&client, "SHOW CREATE CONNECTION shop").await;
    assert!(!shown[0][1].clone().unwrap().contains("connect_timeout"));
    expect_err(&client, "ALTER CONNECTION ghost SET (host 'x')", "42704").await;
    expect_err(&client, "ALTER CONNECTION shop SET (hots 'x')", "42601").await;

    // TEST CONNECTION records failures and fails with the cause.
    pg.stop();
    let message = expect_err(&client, "TEST CONNECTION shop", "08001").await;
    assert!(message.contains("refused"), "{message}");
    assert_eq!(status_of(&client, "shop").await, "failed");
    let failed = rows(
        &client,
        "SELECT name, last_error FROM sluice.connections WHERE status = 'failed'",
    )
    .await;
    assert_eq!(failed[0][0].as_deref(), Some("shop"));
    assert!(failed[0][1].as_deref().unwrap().contains("refused"));
    pg.start_again();
    let tested = rows(&client, "TEST CONNECTIONS").await;
    assert_eq!(tested.len(), 1);
    assert_eq!(tested[0][1].as_deref(), Some("ok"));
    assert_eq!(status_of(&client, "shop").await, "ok");

    // DROP, and IF EXISTS.
    client.batch_execute("DROP CONNECTION shop").await.unwrap();
    expect_err(&client, "DROP CONNECTION shop", "42704").await;
    client.batch_execute("DROP CONNECTION IF EXISTS shop").await.unwrap();
    expect_err(&client, "TEST CONNECTION shop", "42704").await;
}

#[tokio::test]
async fn mariadb_and_mysql_connections_are_tested_live() {
    let maria = MariaDb::start();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let options = |user: &str, password: &str, database: &str| {
        format!(
            "host '127.0.0.1', port {}, database '{database}', user '{user}', password '{password}'",
            maria.port
        )
    };
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS ({})",
            options("etl", ETL_PASSWORD, "shop")
        ))
        .await
        .unwrap();
    assert_eq!(status_of(&client, "crm").await, "ok");
    // The mysql type uses the same driver; a different type is a different identity.
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm_mysql TYPE mysql OPTIONS ({})",
            options("etl", ETL_PASSWORD, "shop")
        ))
        .await
        .unwrap();
    expect_err(
        &client,
        &format!(
            "CREATE CONNECTION x TYPE mariadb OPTIONS ({})",
            options("etl", "wrong", "shop")
        ),
        "28P01",
    )
    .await;
    expect_err(
        &client,
        &format!(
            "CREATE CONNECTION x TYPE mariadb OPTIONS ({})",
            options("etl", ETL_PASSWORD, "nodb")
        ),
        "3D000",
    )
    .await;
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION x TYPE mariadb OPTIONS ({}, ssl_mode 'required')",
            options("etl", ETL_PASSWORD, "mysql")
        ),
        "08001",
    )
    .await;
    assert!(message.contains("TLS"), "{message}");
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION crm2 TYPE mariadb OPTIONS ({})",
            options("etl", ETL_PASSWORD, "shop")
        ),
        "42710",
    )
    .await;
    assert!(message.contains("\"crm\""), "{message}");
    assert_eq!(count_connections(&client).await, "2");

    let mut maria = maria;
    maria.stop();
    let tested = rows(&client, "TEST CONNECTIONS").await;
    assert_eq!(tested.len(), 2);
    assert!(tested.iter().all(|r| r[1].as_deref() == Some("failed")), "{tested:?}");
    assert!(
        tested.iter().all(|r| r[3].as_deref().unwrap().contains("refused")),
        "{tested:?}"
    );
}

#[tokio::test]
async fn options_are_validated_against_the_type() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let message = expect_err(
        &client,
        "CREATE CONNECTION c TYPE postgres OPTIONS (hots 'x', database 'd', user 'u')",
        "42601",
    )
    .await;
    assert!(
        message.contains("\"hots\"")
            && message.contains("did you mean \"host\"?")
            && message.contains("Valid options: host, port"),
        "{message}"
    );
    let message = expect_err(
        &client,
        "CREATE CONNECTION c TYPE postgres OPTIONS (host 'x', database 'd', user 'u', port 'abc')",
        "22023",
    )
    .await;
    assert!(message.contains("port") && message.contains("integer"), "{message}");
    expect_err(
        &client,
        "CREATE CONNECTION c TYPE postgres OPTIONS (host 'x', database 'd', user 'u', port 70000)",
        "22023",
    )
    .await;
    let message = expect_err(
        &client,
        "CREATE CONNECTION c TYPE postgres OPTIONS (host 'x', user 'u')",
        "22023",
    )
    .await;
    assert!(message.contains("requires option \"database\""), "{message}");
    let message = expect_err(
        &client,
        "CREATE CONNECTION c TYPE postgres OPTIONS (host 'x', database 'd', user 'u', sslmode 'sometimes')",
        "22023",
    )
    .await;
    assert!(message.contains("verify-full"), "{message}");
    expect_err(
        &client,
        "CREATE CONNECTION c TYPE postgres OPTIONS (host SECRET s, database 'd', user 'u')",
        "22023",
    )
    .await;
    let message = expect_err(
        &client,
        "CREATE CONNECTION c TYPE oracle OPTIONS (host 'h', service_name 's', user 'u')",
        "0A000",
    )
    .await;
    assert!(
        message.contains("oracle") && message.contains("not supported yet"),
        "{message}"
    );
    let message = expect_err(
        &client,
        "CREATE CONNECTION c TYPE postgress OPTIONS (host 'h')",
        "42704",
    )
    .await;
    assert!(message.contains("postgres, mysql, mariadb"), "{message}");
    expect_err(
        &client,
        "CREATE CONNECTION c TYPE postgres OPTIONS (host 'x', database 'd', user 'u') WITH (validate = maybe)",
        "42601",
    )
    .await;
    expect_err(&client, "CREATE CONNECTION c TYPE postgres OPTIONS (host 'x', database 'd', user 'u', password SECRET missing) WITH (validate = false)", "42704").await;
    assert_eq!(count_connections(&client).await, "0");

    // validate = false saves without testing, status unknown; numbers as strings are accepted.
    client
        .batch_execute("CREATE CONNECTION offline TYPE postgres OPTIONS (host 'db.internal', port '6543', database 'd', user 'u') WITH (validate = false)")
        .await
        .unwrap();
    let row = &rows(
        &client,
        "SELECT status, options, last_tested_at FROM sluice.connections",
    )
    .await[0];
    assert_eq!(row[0].as_deref(), Some("unknown"));
    assert!(row[1].as_deref().unwrap().contains("port 6543"), "{row:?}");
    assert_eq!(row[2], None);

    // SHOW CONNECTION TYPES lists all 20 with their status and options.
    let types = rows(&client, "SHOW CONNECTION TYPES").await;
    assert_eq!(types.len(), 20);
    let available: Vec<_> = types
        .iter()
        .filter(|t| t[3].as_deref() == Some("available"))
        .map(|t| t[0].clone().unwrap())
        .collect();
    assert_eq!(
        available,
        vec![
            "postgres",
            "mysql",
            "mariadb",
            "sqlserver",
            "redshift",
            "bigquery",
            "snowflake",
            "synapse",
            "gcs",
            "s3",
            "azure_blob",
            "redis",
            "firestore",
            "dynamodb",
            "local"
        ]
    );
    let beta: Vec<String> = types
        .iter()
        .filter(|t| t[3].as_deref() == Some("beta"))
        .map(|t| t[0].clone().unwrap())
        .collect();
    assert_eq!(beta, ["mongodb", "cassandra"]);
    let postgres = types.iter().find(|t| t[0].as_deref() == Some("postgres")).unwrap();
    assert!(
        postgres[4].as_deref().unwrap().contains("port integer default 5432"),
        "{postgres:?}"
    );
    let bigquery_options = one(
        &client,
        "SELECT count(*) FROM sluice.connection_type_options WHERE type = 'bigquery'",
    )
    .await;
    // read_api and read_streams among them.
    assert_eq!(bigquery_options.as_deref(), Some("12"));
}

#[tokio::test]
async fn secrets_are_named_encrypted_and_guarded() {
    let pg = PgServer::start();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!("CREATE SECRET pg_pass AS '{ETL_PASSWORD}'"))
        .await
        .unwrap();
    expect_err(&client, "CREATE SECRET pg_pass AS 'other'", "42710").await;
    client
        .batch_execute("CREATE SECRET IF NOT EXISTS pg_pass AS 'other'")
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password SECRET pg_pass)",
            pg.port
        ))
        .await
        .unwrap();
    let secrets = rows(&client, "SHOW SECRETS").await;
    assert_eq!(secrets.len(), 1, "inline secrets are not listed: {secrets:?}");
    assert_eq!(secrets[0][0].as_deref(), Some("pg_pass"));
    assert_eq!(secrets[0][2].as_deref(), Some("{shop}"));
    let shown = rows(&client, "SHOW CREATE CONNECTION shop").await;
    assert!(
        shown[0][1].as_deref().unwrap().contains("password SECRET pg_pass"),
        "{shown:?}"
    );
    let message = expect_err(&client, "DROP SECRET pg_pass", "2BP01").await;
    assert!(message.contains("shop"), "{message}");
    expect_err(&client, "DROP SECRET nope", "42704").await;
    client.batch_execute("DROP SECRET IF EXISTS nope").await.unwrap();
    client
        .batch_execute("DROP CONNECTION shop; DROP SECRET pg_pass")
        .await
        .unwrap();
    assert!(rows(&client, "SHOW SECRETS").await.is_empty());
}

#[tokio::test]
async fn concurrent_creates_of_one_name_have_exactly_one_winner() {
    let sluice = Sluice::start();
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(sluice.client().await);
    }
    let attempts = clients.iter().enumerate().map(|(i, client)| async move {
        client
            .batch_execute(&format!(
                "CREATE CONNECTION same TYPE postgres OPTIONS (host 'h{i}', database 'd', user 'u') WITH (validate = false)"
            ))
            .await
    });
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    for result in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(sqlstate(result), "42710", "{result:?}");
    }
}

#[tokio::test]
async fn background_retest_updates_status() {
    let pg = PgServer::start();
    let sluice = Sluice::start_with(&["--retest-interval", "1"], &[]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS ({})",
            pg_options(&pg, ETL_PASSWORD)
        ))
        .await
        .unwrap();
    pg.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_of(&client, "shop").await != "failed" {
        assert!(
            Instant::now() < deadline,
            "the background re-test never marked the connection failed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pg.start_again();
    while status_of(&client, "shop").await != "ok" {
        assert!(
            Instant::now() < deadline,
            "the background re-test never marked the connection ok again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
