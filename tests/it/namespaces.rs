//! Namespaces (issue #15): the connection string's `dbname` picks a
//! database with its own connections, secrets, jobs, runs, public tables
//! and warehouse; `CREATE DATABASE` / `DROP DATABASE`; `\l`; roles see only
//! the databases they hold a grant on; `sluice_admin.*` for the superuser.

use crate::common;

use common::*;
use tokio_postgres::Client;

/// A local connection `files` over a folder with `orders.csv` of `rows`
/// rows, and a snapshot job `orders` into `warehouse.orders`, run once.
async fn load_orders(sluice: &Sluice, client: &Client, folder: &str, rows: usize) {
    let dir = sluice.data_dir().join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("id,amount\n");
    for id in 1..=rows {
        csv.push_str(&format!("{id},{}\n", id * 10));
    }
    std::fs::write(dir.join("orders.csv"), csv).unwrap();
    client
        .batch_execute(&format!(
            "CREATE CONNECTION files TYPE local OPTIONS (path '{}'); \
             CREATE SECRET token AS '{folder}-secret'; \
             CREATE ETL JOB orders FROM files.files.orders INTO orders SNAPSHOT; \
             RUN ETL JOB orders; \
             CREATE TABLE notes (id int PRIMARY KEY, note text); \
             INSERT INTO notes VALUES (1, '{folder}');",
            dir.display()
        ))
        .await
        .unwrap();
}

/// Runs `drop` once the sessions just closed are gone from the server.
pub(crate) async fn drop_when_closed(client: &Client, drop: &str) {
    for _ in 0..50 {
        match client.batch_execute(drop).await {
            Err(e) if sqlstate(&e) == "55006" => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            other => return other.unwrap(),
        }
    }
    panic!("{drop}: the closed sessions stayed");
}

async fn connect_to(sluice: &Sluice, database: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config = sluice.config();
    config.dbname(database);
    connect(&config).await
}

async fn login_as(sluice: &Sluice, user: &str, database: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config = sluice.config();
    config.user(user).password(format!("pw-{user}")).dbname(database);
    connect(&config).await
}

#[tokio::test]
async fn databases_hold_the_same_names_apart_and_each_sees_only_its_own() {
    let sluice = Sluice::start();
    let admin = sluice.client().await;
    admin
        .batch_execute(
            "CREATE DATABASE model_5; CREATE DATABASE IF NOT EXISTS model_6; CREATE DATABASE IF NOT EXISTS model_6",
        )
        .await
        .unwrap();
    expect_err(&admin, "CREATE DATABASE model_5", "42P04").await;
    expect_err(&admin, "CREATE DATABASE \"bad-name\"", "42602").await;
    let model_5 = connect_to(&sluice, "model_5").await.unwrap();
    let model_6 = connect_to(&sluice, "model_6").await.unwrap();
    load_orders(&sluice, &admin, "default", 1).await;
    load_orders(&sluice, &model_5, "five", 5).await;
    load_orders(&sluice, &model_6, "six", 6).await;

    for (client, name, rows) in [
        (&admin, "sluice", "1"),
        (&model_5, "model_5", "5"),
        (&model_6, "model_6", "6"),
    ] {
        assert_eq!(one(client, "SELECT current_database()").await, name);
        assert_eq!(one(client, "SELECT count(*) FROM warehouse.orders").await, rows);
        assert_eq!(one(client, "SELECT count(*) FROM sluice.runs").await, "1");
        assert_eq!(one(client, "SELECT count(*) FROM sluice.connections").await, "1");
        assert_eq!(one(client, "SELECT count(*) FROM sluice.secrets").await, "1");
        assert_eq!(one(client, "SELECT count(*) FROM notes").await, "1");
    }
    assert_eq!(one(&model_5, "SELECT note FROM notes").await, "five");
    // A run in one database leaves the others' warehouses alone.
    model_5.batch_execute("RUN ETL JOB orders").await.unwrap();
    assert_eq!(one(&model_6, "SELECT count(*) FROM sluice.runs").await, "1");
    assert_eq!(one(&model_5, "SELECT count(*) FROM sluice.runs").await, "2");
    // Another database's tables cannot be named.
    expect_err(&model_5, "SELECT * FROM model_6.warehouse.orders", "42P01").await;
    let cross = expect_err(&model_5, "INSERT INTO model_6.public.notes VALUES (2, 'x')", "0A000").await;
    assert!(cross.contains("model_6.public.notes"), "{cross}");
    assert_eq!(one(&model_6, "SELECT count(*) FROM notes").await, "1");

    // \l lists them all for the superuser; psql connects by dbname.
    let out = sluice.psql_args(&["-At", "-c", "SELECT datname FROM pg_database ORDER BY 1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "model_5\nmodel_6\nsluice\n");
    let out = sluice.psql_args(&["-c", "\\l"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listing.contains("model_6"), "{listing}");

    // The superuser sees every database's system tables in sluice_admin.
    let jobs = rows(&admin, "SELECT namespace, name FROM sluice_admin.jobs ORDER BY 1").await;
    let jobs: Vec<String> = jobs
        .iter()
        .map(|r| format!("{}.{}", r[0].as_deref().unwrap(), r[1].as_deref().unwrap()))
        .collect();
    assert_eq!(jobs, ["model_5.orders", "model_6.orders", "sluice.orders"]);
    // Metrics name the database.
    let metrics = sluice.metrics();
    assert!(
        metrics.contains("sluice_runs_total{namespace=\"model_5\",job=\"orders\",status=\"succeeded\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn clients_that_name_no_database_of_their_own_land_in_sluice() {
    let sluice = Sluice::start();
    for database in ["admin", "postgres"] {
        let client = connect_to(&sluice, database).await.unwrap();
        assert_eq!(one(&client, "SELECT current_database()").await, "sluice");
    }
    let err = connect_to(&sluice, "modle_5").await.expect_err("a misspelt database");
    assert_eq!(sqlstate(&err), "3D000", "{err:?}");
}

#[tokio::test]
async fn a_role_sees_only_the_databases_it_holds_a_grant_on() {
    let sluice = Sluice::start();
    let admin = sluice.client().await;
    admin
        .batch_execute(
            "CREATE DATABASE model_5; CREATE DATABASE model_6; \
             CREATE ROLE r LOGIN PASSWORD 'pw-r'; GRANT USAGE ON DATABASE model_5 TO r;",
        )
        .await
        .unwrap();
    expect_err(&admin, "GRANT USAGE ON DATABASE model_7 TO r", "3D000").await;
    let model_6 = connect_to(&sluice, "model_6").await.unwrap();
    load_orders(&sluice, &model_6, "six", 2).await;
    model_6.batch_execute("CREATE SECRET only_in_six AS 'x'").await.unwrap();
    let model_5 = connect_to(&sluice, "model_5").await.unwrap();
    load_orders(&sluice, &model_5, "five", 1).await;

    // No grant: no connection, and nothing tells whether it exists.
    for database in ["model_6", "model_7"] {
        let err = login_as(&sluice, "r", database).await.expect_err("no grant");
        assert_eq!(sqlstate(&err), "42501", "{database}: {err:?}");
    }
    let r = login_as(&sluice, "r", "model_5").await.unwrap();
    assert_eq!(one(&r, "SELECT count(*) FROM warehouse.orders").await, "1");
    let secrets: Vec<_> = rows(&r, "SHOW SECRETS")
        .await
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    assert_eq!(secrets, [Some("token".to_owned())]);
    assert_eq!(one(&r, "SELECT count(*) FROM sluice.grants").await, "1");
    let datnames: Vec<_> = rows(&r, "SELECT datname FROM pg_database")
        .await
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    assert_eq!(datnames, [Some("model_5".to_owned())]);
    let denied = expect_err(&r, "RUN ETL JOB orders", "42501").await;
    assert!(denied.contains("OPERATE on database model_5"), "{denied}");
    expect_err(&r, "SELECT * FROM sluice_admin.secrets", "42501").await;
    expect_err(&r, "CREATE DATABASE mine", "42501").await;
    expect_err(&r, "SELECT * FROM model_6.sluice.secrets", "42P01").await;
    // Each database's dump has its grants; roles are in the default one's.
    let dump = |rows: Vec<Vec<Option<String>>>| {
        rows.into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let default_dump = dump(rows(&admin, "SHOW CREATE ALL").await);
    let model_5_dump = dump(rows(&model_5, "SHOW CREATE ALL").await);
    assert!(default_dump.contains("CREATE ROLE r LOGIN;"), "{default_dump}");
    assert!(!default_dump.contains("model_5"), "{default_dump}");
    assert!(
        model_5_dump.contains("GRANT USAGE ON DATABASE model_5 TO r;"),
        "{model_5_dump}"
    );
    assert!(!model_5_dump.contains("CREATE ROLE"), "{model_5_dump}");
    // The audit trail records the refusal with the database.
    let audit = rows(
        &admin,
        "SELECT database, role, statement, outcome FROM sluice_admin.audit WHERE role = 'r'",
    )
    .await;
    assert!(
        audit.contains(&vec![
            Some("model_5".to_owned()),
            Some("r".to_owned()),
            Some("RUN ETL JOB".to_owned()),
            Some("42501".to_owned())
        ]),
        "{audit:?}"
    );
}

#[tokio::test]
async fn drop_database_is_refused_while_in_use_and_cascade_removes_everything() {
    let mut sluice = Sluice::start();
    let admin = sluice.client().await;
    admin.batch_execute("CREATE DATABASE model_5").await.unwrap();
    let model_5 = connect_to(&sluice, "model_5").await.unwrap();
    load_orders(&sluice, &model_5, "five", 3).await;
    let files = sluice.data_dir().join("warehouse/.namespaces/model_5/orders");
    assert!(files.exists(), "{}", files.display());

    expect_err(&model_5, "DROP DATABASE model_5", "55006").await;
    expect_err(&admin, "DROP DATABASE sluice", "55006").await;
    let busy = expect_err(&admin, "DROP DATABASE model_5 CASCADE", "55006").await;
    assert!(busy.contains("1 other session"), "{busy}");
    drop(model_5);
    let mut refused = String::new();
    for _ in 0..50 {
        // The other session's end is seen shortly after it closes.
        let err = admin.batch_execute("DROP DATABASE model_5").await.unwrap_err();
        refused = err
            .as_db_error()
            .map(|e| format!("{} {}", e.code().code(), e.message()))
            .unwrap_or_default();
        if !refused.contains("other session") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        refused,
        "2BP01 cannot drop database \"model_5\" because ETL jobs depend on it: \"orders\""
    );
    admin.batch_execute("BEGIN").await.unwrap();
    expect_err(&admin, "DROP DATABASE model_5 CASCADE", "25001").await;
    admin.batch_execute("ROLLBACK").await.unwrap();

    // Survives a restart as it was.
    sluice.restart();
    let model_5 = connect_to(&sluice, "model_5").await.unwrap();
    assert_eq!(one(&model_5, "SELECT count(*) FROM warehouse.orders").await, "3");
    drop(model_5);
    let admin = sluice.client().await;
    drop_when_closed(&admin, "DROP DATABASE model_5 CASCADE").await;
    assert!(!files.exists(), "its warehouse files are deleted");
    let err = connect_to(&sluice, "model_5").await.expect_err("dropped");
    assert_eq!(sqlstate(&err), "3D000", "{err:?}");
    admin.batch_execute("DROP DATABASE IF EXISTS model_5").await.unwrap();

    // A database of the same name starts empty.
    assert_created_empty(&sluice, &admin).await;
}

/// `CREATE DATABASE model_5` makes a database with nothing in it.
async fn assert_created_empty(sluice: &Sluice, admin: &Client) {
    admin.batch_execute("CREATE DATABASE model_5").await.unwrap();
    assert!(!sluice.data_dir().join("warehouse/.namespaces/model_5/orders").exists());
    let model_5 = connect_to(sluice, "model_5").await.unwrap();
    for table in ["connections", "secrets", "jobs", "runs"] {
        assert_eq!(
            one(&model_5, &format!("SELECT count(*) FROM sluice.{table}")).await,
            "0",
            "{table}"
        );
    }
    expect_err(&model_5, "SELECT * FROM warehouse.orders", "42P01").await;
}

/// A database with a connection and a loaded job, then `DROP DATABASE
/// model_5 CASCADE` into the failure point `point`, and a restart.
async fn crash_in_drop_database(point: &str) -> (Sluice, Client) {
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_FAILPOINTS", point)]);
    let admin = sluice.client().await;
    admin.batch_execute("CREATE DATABASE model_5").await.unwrap();
    let model_5 = connect_to(&sluice, "model_5").await.unwrap();
    load_orders(&sluice, &model_5, "five", 3).await;
    drop(model_5);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    sluice.run_into_failpoint(&admin, "DROP DATABASE model_5 CASCADE").await;
    let admin = sluice.restart_without_failpoints().await;
    (sluice, admin)
}

#[tokio::test]
async fn a_crash_in_drop_database_leaves_it_whole_or_gone() {
    // After its jobs were dropped: the database is whole, without them.
    let (sluice, admin) = crash_in_drop_database("drop_database_jobs_dropped").await;
    let model_5 = connect_to(&sluice, "model_5").await.unwrap();
    assert_eq!(one(&model_5, "SELECT count(*) FROM sluice.jobs").await, "0");
    assert_eq!(one(&model_5, "SELECT count(*) FROM sluice.connections").await, "1");
    assert_eq!(one(&model_5, "SELECT note FROM notes").await, "five");
    drop(model_5);
    drop_when_closed(&admin, "DROP DATABASE model_5").await;

    // After its records were deleted: gone, and made again it is empty
    // although its warehouse files were left behind.
    let (sluice, admin) = crash_in_drop_database("drop_database_records_deleted").await;
    let err = connect_to(&sluice, "model_5").await.expect_err("dropped");
    assert_eq!(sqlstate(&err), "3D000", "{err:?}");
    assert!(sluice.data_dir().join("warehouse/.namespaces/model_5").exists());
    assert_created_empty(&sluice, &admin).await;
}

#[tokio::test]
async fn every_database_is_scheduled_and_they_share_the_run_limit() {
    let sluice = Sluice::start_with(&["--max-concurrent-runs", "1"], &[]);
    let admin = sluice.client().await;
    admin
        .batch_execute("CREATE DATABASE model_5; CREATE DATABASE model_6")
        .await
        .unwrap();
    for (database, folder) in [("model_5", "five"), ("model_6", "six")] {
        let client = connect_to(&sluice, database).await.unwrap();
        load_orders(&sluice, &client, folder, 2000).await;
        client
            .batch_execute("ALTER ETL JOB orders SET SCHEDULE CRON '* * * * * *'")
            .await
            .unwrap();
    }
    // Both databases' jobs are due every second; one run at a time over both.
    let scheduled = "SELECT namespace, count(*) FROM sluice_admin.runs \
                     WHERE trigger = 'schedule' AND status = 'succeeded' GROUP BY namespace ORDER BY namespace";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let counts = rows(&admin, scheduled).await;
        let each: Vec<u64> = counts
            .iter()
            .map(|r| r[1].as_deref().unwrap().parse().unwrap())
            .collect();
        if counts.len() == 2 && each.iter().all(|&n| n >= 3) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "scheduled runs: {counts:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for database in ["model_5", "model_6"] {
        let client = connect_to(&sluice, database).await.unwrap();
        client.batch_execute("ALTER ETL JOB orders PAUSE").await.unwrap();
    }
    let runs = rows(
        &admin,
        "SELECT namespace, date_part('epoch', started_at) AS started, date_part('epoch', finished_at) AS finished \
         FROM sluice_admin.runs WHERE trigger = 'schedule' AND status = 'succeeded' ORDER BY started_at",
    )
    .await;
    let seconds = |v: &Option<String>| v.as_deref().unwrap().parse::<f64>().unwrap();
    for pair in runs.windows(2) {
        assert!(
            seconds(&pair[1][1]) >= seconds(&pair[0][2]),
            "a run started before the one before it ended: {pair:?}"
        );
    }
}
