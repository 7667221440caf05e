//! Errors keep their meaning through runs and scans (typed SQLSTATEs, no
//! retries of data errors, no panics on out-of-range numbers) and secrets
//! stay owned (no references to another connection's inline secret, no
//! stored password sent to a new host, no secret values in run errors).

use std::time::Duration;

use tokio_postgres::Client;

use crate::common;

use common::*;

/// A table whose second row holds a numeric 'NaN', which no Arrow decimal
/// can represent.
const MEASURES: &str = "
    CREATE TABLE public.measures (id int PRIMARY KEY, v numeric(10,2));
    INSERT INTO public.measures VALUES (1, 1.5), (2, 'NaN');
    GRANT SELECT ON public.measures TO etl;
";

async fn setup(args: &[&str]) -> (PgServer, Sluice, Client) {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", MEASURES);
    let sluice = Sluice::start_with(args, &[]);
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    (pg, sluice, client)
}

#[tokio::test]
async fn a_nan_fails_the_run_with_its_sqlstate_and_is_never_retried() {
    let (_pg, _sluice, client) = setup(&["--retry-delay", "1", "--retry-max-delay", "1"]).await;
    client
        .batch_execute("CREATE ETL JOB once FROM shop.public.measures SNAPSHOT")
        .await
        .unwrap();
    let message = expect_err(&client, "RUN ETL JOB once", "22003").await;
    assert!(message.contains("NaN"), "{message}");
    assert_eq!(
        rows(&client, "SELECT status, sqlstate FROM sluice.runs WHERE job = 'once'").await,
        vec![vec![Some("failed".into()), Some("22003".into())]]
    );

    // A data error fails again on every try: the scheduler must not retry.
    client
        .batch_execute(
            "CREATE ETL JOB ticking FROM shop.public.measures INTO ticking_measures SNAPSHOT \
             SCHEDULE CRON '*/3 * * * * *' WITH (max_retries = 3)",
        )
        .await
        .unwrap();
    wait_for(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE job = 'ticking' AND status = 'failed'",
        Duration::from_secs(30),
        |n| n.parse::<i64>().unwrap() >= 2,
    )
    .await;
    // A retry would come a second after a failure, before the next tick.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rows(
            &client,
            "SELECT DISTINCT trigger, sqlstate FROM sluice.runs WHERE job = 'ticking' AND status = 'failed'"
        )
        .await,
        vec![vec![Some("schedule".into()), Some("22003".into())]]
    );
}

#[tokio::test]
async fn plain_sql_scans_return_the_source_sqlstate() {
    let (_pg, _sluice, client) = setup(&[]).await;
    let message = expect_err(&client, "SELECT * FROM shop.public.measures", "22003").await;
    assert!(message.contains("NaN"), "{message}");
    expect_err_extended(&client, "SELECT * FROM shop.public.measures", "22003").await;
    assert_eq!(
        one(&client, "SELECT v FROM shop.public.measures WHERE id = 1").await,
        "1.50"
    );
}

#[tokio::test]
async fn out_of_range_numbers_are_errors_not_panics() {
    let (_pg, _sluice, client) = setup(&[]).await;
    let job = |backfill: &str| {
        format!("CREATE ETL JOB far FROM shop.public.measures INCREMENTAL BY id BACKFILL {backfill} DAYS")
    };
    let message = expect_err(&client, &job("100000000"), "22008").await;
    assert!(message.contains("365000"), "{message}");
    expect_err(&client, &job("99999999999"), "22003").await;
    expect_err(&client, "CANCEL ETL RUN 99999999999999999999", "22003").await;
    // The server is still there.
    assert_eq!(one(&client, "SELECT 1").await, "1");
}

#[tokio::test]
async fn an_inline_secret_cannot_be_used_by_another_connection() {
    let (pg, _sluice, client) = setup(&[]).await;
    let port = pg.port;
    let thief = |validate: bool| {
        format!(
            "CREATE CONNECTION thief TYPE postgres OPTIONS (host '127.0.0.1', port {port}, database 'shop', \
             user 'etl', password SECRET \"shop/password\") WITH (validate = {validate})"
        )
    };
    let message = expect_err(&client, &thief(true), "42501").await;
    assert!(message.contains("shop/password"), "{message}");
    expect_err(&client, &thief(false), "42501").await;
    // Not by ALTER either, and not by the owner itself under its name.
    client
        .batch_execute(&format!(
            "CREATE SECRET named AS '{ETL_PASSWORD}';
             CREATE CONNECTION other TYPE postgres OPTIONS (host 'localhost', port {port}, database 'shop', \
             user 'etl', password SECRET named)"
        ))
        .await
        .unwrap();
    expect_err(
        &client,
        "ALTER CONNECTION other SET (password SECRET \"shop/password\")",
        "42501",
    )
    .await;
    expect_err(
        &client,
        "ALTER CONNECTION shop SET (password SECRET \"shop/password\")",
        "42501",
    )
    .await;
    // A named secret cannot take the name of an inline one.
    expect_err(&client, "CREATE SECRET \"later/password\" AS 'x'", "42601").await;
    // Dropping the owner leaves no connection pointing at its secret.
    client.batch_execute("DROP CONNECTION shop").await.unwrap();
    assert_eq!(
        rows(&client, "TEST CONNECTION other").await[0][1].as_deref(),
        Some("ok")
    );
}

#[tokio::test]
async fn moving_a_connection_needs_its_password_again() {
    let (pg, _sluice, client) = setup(&[]).await;
    for change in ["host 'localhost'", "port 1", "user 'postgres'"] {
        let message = expect_err(&client, &format!("ALTER CONNECTION shop SET ({change})"), "28000").await;
        assert!(message.contains("password"), "{message}");
    }
    // Other options, or the same endpoint, keep the stored password.
    client
        .batch_execute(&format!(
            "ALTER CONNECTION shop SET (connect_timeout 5);
             ALTER CONNECTION shop SET (host '127.0.0.1', port {})",
            pg.port
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "ALTER CONNECTION shop SET (host 'localhost', password '{ETL_PASSWORD}')"
        ))
        .await
        .unwrap();
    let definition = format!("{:?}", rows(&client, "SHOW CREATE CONNECTION shop").await);
    assert!(definition.contains("host 'localhost'"), "{definition}");
}

#[tokio::test]
async fn run_and_scan_errors_are_scrubbed_of_secret_values() {
    const MARKER: &str = "Xq7secretPw9zz";
    let pg = PgServer::start();
    pg.psql_admin(&format!("ALTER ROLE etl PASSWORD '{MARKER}'"));
    // A column named like the password: any error about it names it.
    pg.psql_admin_db(
        "shop",
        &format!(
            "CREATE TABLE public.leaky (id int, \"{MARKER}\" numeric(10,2));
             INSERT INTO public.leaky VALUES (1, 'NaN');
             GRANT SELECT ON public.leaky TO etl;"
        ),
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', \
             user 'etl', password '{MARKER}');
             CREATE ETL JOB leaky FROM shop.public.leaky SNAPSHOT",
            pg.port
        ))
        .await
        .unwrap();
    let run = expect_err(&client, "RUN ETL JOB leaky", "22003").await;
    let scan = expect_err(&client, "SELECT * FROM shop.public.leaky", "22003").await;
    let recorded = one(&client, "SELECT error FROM sluice.runs WHERE job = 'leaky'").await;
    for text in [&run, &scan, &recorded] {
        assert!(text.contains("column \"********\""), "{text}");
        assert!(!text.contains(MARKER), "{text}");
    }
}
