//! Dump and restore with watermarks: `SHOW CREATE ALL WITH STATE` replayed
//! with psql on a fresh sluice over the same warehouse continues every job
//! from its watermark, loading nothing twice.

use crate::common::*;

#[tokio::test]
async fn a_dump_with_state_replayed_on_a_fresh_server_loads_nothing_twice() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.orders (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL); \
         INSERT INTO public.orders SELECT g, now() - g * interval '1 minute' FROM generate_series(1, 50) g;",
    );
    let mut old = Sluice::start();
    let client = old.client().await;
    client
        .batch_execute(&format!(
            "CREATE SECRET shop_pw AS '{ETL_PASSWORD}'; \
             CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {port}, database 'shop', \
                 user 'etl', password SECRET shop_pw, sslmode 'disable'); \
             CREATE CONNECTION other TYPE postgres OPTIONS (host '127.0.0.1', port {port}, database 'postgres', \
                 user 'etl', password '{ETL_PASSWORD}', sslmode 'disable'); \
             CREATE ETL JOB orders FROM shop.public.orders INTO orders INCREMENTAL BY updated_at ALL \
                 WITH (labels = 'team=finance'); \
             CREATE ETL JOB snap FROM shop.public.orders INTO snap SNAPSHOT; \
             ALTER ETL JOB snap PAUSE",
            port = pg.port
        ))
        .await
        .unwrap();
    rows(&client, "RUN ETL JOB orders").await;

    let dump = old.psql_args(&["-At", "-c", "SHOW CREATE ALL WITH STATE"]);
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let script = String::from_utf8(dump.stdout).unwrap();
    for line in [
        "CREATE SECRET shop_pw AS :'shop_pw';",
        "password :'other_password'",
        "password SECRET shop_pw",
        "labels = 'team=finance'",
        "ALTER ETL JOB snap PAUSE;",
        "ALTER ETL JOB orders SET WATERMARK '",
    ] {
        assert!(script.contains(line), "{line} in {script}");
    }
    assert!(
        !script.contains(ETL_PASSWORD) && !script.contains("********"),
        "{script}"
    );
    let shown = rows(&client, "SHOW CREATE CONNECTION other").await[0][1]
        .clone()
        .unwrap();
    assert!(shown.contains("password :'other_password'"), "{shown}");
    let warehouse = old.data_dir().join("warehouse");
    old.terminate();

    let fresh = Sluice::start_opts(
        SluiceOpts::default()
            .arg("--warehouse")
            .arg(warehouse.to_str().unwrap()),
    );
    let file = fresh.data_dir().join("dump.sql");
    std::fs::write(&file, &script).unwrap();
    let file = file.to_str().unwrap();
    // A secret not given fails clearly, before anything is created.
    let replay = fresh.psql_args(&["-v", "ON_ERROR_STOP=1", "-f", file]);
    assert!(!replay.status.success());
    assert!(
        String::from_utf8_lossy(&replay.stderr).contains("secret value"),
        "{replay:?}"
    );
    let client = fresh.client().await;
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.secrets").await, "0");

    let password = format!("shop_pw={ETL_PASSWORD}");
    let other = format!("other_password={ETL_PASSWORD}");
    let replay = fresh.psql_args(&["-v", "ON_ERROR_STOP=1", "-v", &password, "-v", &other, "-f", file]);
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let again = fresh.psql_args(&["-At", "-c", "SHOW CREATE ALL WITH STATE"]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), script);

    expect_err(&client, "ALTER ETL JOB snap SET WATERMARK '2024-01-01'", "22023").await;
    let message = expect_err(&client, "ALTER ETL JOB orders SET WATERMARK 'yesterday-ish'", "22023").await;
    assert!(message.contains("not a valid"), "{message}");

    // New rows at the source: the next run loads them and nothing else.
    pg.psql_admin_db(
        "shop",
        "INSERT INTO public.orders SELECT g, now() FROM generate_series(51, 55) g",
    );
    let run = rows(&client, "RUN ETL JOB orders").await;
    assert_eq!(
        (run[0][1].as_deref(), run[0][2].as_deref()),
        (Some("succeeded"), Some("5"))
    );
    assert_eq!(
        one(
            &client,
            "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || min(id) || ' ' || max(id) FROM warehouse.orders"
        )
        .await,
        "55 55 1 55"
    );
}

/// A secret header value and a webhook path that the dump must not show.
const HOOK_TOKEN: &str = "tok-dump-s3cr3t";
const SLACK_PATH: &str = "/services/T0/B0/dump-s3cr3t-path";

/// What the system tables show of roles, grants and alerts (no timestamps).
async fn teams(client: &tokio_postgres::Client) -> Vec<Vec<Vec<Option<String>>>> {
    let mut shown = Vec::new();
    for sql in [
        "SELECT name, superuser, login, privilege FROM sluice.roles ORDER BY name",
        "SELECT database, role, privilege, granted_by FROM sluice.grants ORDER BY role, privilege",
        "SELECT name, event, target, webhook, secret_header, secret FROM sluice.alerts ORDER BY name",
    ] {
        shown.push(rows(client, sql).await);
    }
    shown
}

#[tokio::test]
async fn a_dump_recreates_roles_grants_and_alerts_without_passwords_or_webhook_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.csv"), "id,total\n1,10\n").unwrap();
    let old = Sluice::start();
    let client = old.client().await;
    let hook = format!("https://hooks.example.com{SLACK_PATH}");
    client
        .batch_execute(&format!(
            "CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw'; \
             CREATE ROLE \"Release Bot\" LOGIN PASSWORD 'bot-pw'; \
             CREATE ROLE deployer NOLOGIN; \
             GRANT USAGE ON DATABASE sluice TO analyst; \
             GRANT ALL ON DATABASE sluice TO \"Release Bot\"; \
             GRANT OPERATE ON DATABASE sluice TO deployer; \
             CREATE SECRET hook_token AS '{HOOK_TOKEN}'; \
             CREATE CONNECTION files TYPE local OPTIONS (path '{path}'); \
             CREATE ETL JOB orders FROM files.files.orders INTO warehouse.orders SNAPSHOT; \
             CREATE ALERT pager ON JOB FAILURE FOR orders NOTIFY WEBHOOK '{hook}' \
               WITH (secret_header = 'X-Hook-Token', secret = hook_token); \
             CREATE ALERT \"All Back\" ON JOB RECOVERED NOTIFY WEBHOOK 'http://127.0.0.1:9/hook'; \
             CREATE ALERT files_down ON CONNECTION FAILED FOR files NOTIFY WEBHOOK '{hook}';",
            path = dir.path().display()
        ))
        .await
        .unwrap();
    let before = teams(&client).await;

    let dump = old.psql_args(&["-At", "-c", "SHOW CREATE ALL"]);
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let script = String::from_utf8(dump.stdout).unwrap();
    for line in [
        "CREATE ROLE analyst LOGIN;",
        "CREATE ROLE \"Release Bot\" LOGIN;",
        "CREATE ROLE deployer NOLOGIN;",
        "GRANT USAGE ON DATABASE sluice TO analyst;",
        "GRANT ADMIN ON DATABASE sluice TO \"Release Bot\";",
        "CREATE ALERT pager ON JOB FAILURE FOR orders NOTIFY WEBHOOK :'pager_webhook' \
         WITH (secret_header = 'X-Hook-Token', secret = hook_token);",
        "CREATE ALERT \"All Back\" ON JOB RECOVERED NOTIFY WEBHOOK :'All_Back_webhook';",
    ] {
        assert!(script.contains(line), "{line} in {script}");
    }
    for hidden in [
        HOOK_TOKEN,
        SLACK_PATH,
        "analyst-pw",
        "bot-pw",
        "SCRAM-SHA-256",
        "127.0.0.1:9",
    ] {
        assert!(!script.contains(hidden), "the dump shows {hidden}: {script}");
    }
    // Roles come first: a replay by someone who may not create them stops
    // before it creates anything.
    assert!(script.starts_with("CREATE ROLE"), "{script}");
    assert!(
        script.find("CREATE ALERT pager").unwrap() > script.find("CREATE ETL JOB orders").unwrap(),
        "{script}"
    );

    let fresh = Sluice::start();
    let file = fresh.data_dir().join("dump.sql");
    std::fs::write(&file, &script).unwrap();
    let token = format!("hook_token={HOOK_TOKEN}");
    let pager = format!("pager_webhook={hook}");
    let down = format!("files_down_webhook={hook}");
    let replay = fresh.psql_args(&[
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        &token,
        "-v",
        &pager,
        "-v",
        &down,
        "-v",
        "All_Back_webhook=http://127.0.0.1:9/hook",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let fresh_client = fresh.client().await;
    assert_eq!(teams(&fresh_client).await, before);
    let again = fresh.psql_args(&["-At", "-c", "SHOW CREATE ALL"]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), script);
    // No password came along: the roles exist but cannot log in until one is set.
    assert_eq!(
        one(&fresh_client, "SELECT count(*) FROM sluice.roles WHERE has_password").await,
        "1",
        "only the built-in user has one"
    );
    // A webhook not given with -v fails its alert clearly.
    let missing =
        fresh.psql("\\set ON_ERROR_STOP 1\nCREATE ALERT late ON JOB FAILURE NOTIFY WEBHOOK :'late_webhook';\n");
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("expected the webhook URL"), "{stderr}");
}
