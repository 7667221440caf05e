//! Running a fleet of jobs: freshness targets and labels, through a real
//! client against a real sluice with a PostgreSQL source.

use crate::common::*;

/// Orders whose newest change is three hours old.
const ORDERS: &str = "
CREATE TABLE public.orders (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL);
INSERT INTO public.orders
SELECT g, now() - interval '3 hours' - g * interval '1 minute' FROM generate_series(1, 50) g;
";

/// (health, labels, freshness in whole hours, target in seconds) of a job.
async fn freshness_of(client: &tokio_postgres::Client, job: &str) -> Vec<Option<String>> {
    rows(
        client,
        &format!(
            "SELECT health, labels, \
                    CAST(date_part('epoch', freshness) / 3600 AS BIGINT), \
                    CAST(date_part('epoch', freshness_target) AS BIGINT) \
             FROM sluice.jobs WHERE name = '{job}'"
        ),
    )
    .await
    .remove(0)
}

#[tokio::test]
async fn a_job_past_its_freshness_target_is_stale_and_says_how_old_its_data_is() {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", ORDERS);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute(
            "CREATE ETL JOB tight FROM shop.public.orders INTO tight INCREMENTAL BY updated_at ALL \
                 WITH (freshness_target = '1 hour', labels = 'team=finance, tier=1'); \
             CREATE ETL JOB loose FROM shop.public.orders INTO loose INCREMENTAL BY updated_at ALL \
                 WITH (freshness_target = '1 day'); \
             CREATE ETL JOB snap FROM shop.public.orders INTO snap SNAPSHOT",
        )
        .await
        .unwrap();

    // Nothing committed yet, and the jobs are younger than their targets.
    assert_eq!(
        freshness_of(&client, "tight").await,
        [
            Some("healthy".into()),
            Some("team=finance,tier=1".into()),
            None,
            Some("3600".into())
        ]
    );
    for job in ["tight", "loose", "snap"] {
        rows(&client, &format!("RUN ETL JOB {job}")).await;
    }
    assert_eq!(
        freshness_of(&client, "tight").await,
        [
            Some("stale".into()),
            Some("team=finance,tier=1".into()),
            Some("3".into()),
            Some("3600".into())
        ]
    );
    assert_eq!(
        freshness_of(&client, "loose").await,
        [
            Some("healthy".into()),
            Some("".into()),
            Some("3".into()),
            Some("86400".into())
        ]
    );
    // A snapshot is as old as its last successful run: moments.
    assert_eq!(
        freshness_of(&client, "snap").await,
        [Some("healthy".into()), Some("".into()), Some("0".into()), None]
    );
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM sluice.jobs WHERE freshness > interval '2 hours'"
        )
        .await,
        "2"
    );

    // Both are exported per job.
    let metrics = sluice.metrics();
    assert!(
        metrics.contains(r#"sluice_job_freshness_target_seconds{namespace="sluice",job="tight"} 3600"#),
        "{metrics}"
    );
    let age: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"sluice_job_freshness_seconds{namespace="sluice",job="tight"} "#))
        .unwrap_or_else(|| panic!("no freshness of tight in {metrics}"))
        .parse()
        .unwrap();
    assert!((3 * 3600..4 * 3600).contains(&age), "{age}");
    assert!(
        !metrics.contains(r#"sluice_job_freshness_target_seconds{namespace="sluice",job="snap"}"#),
        "{metrics}"
    );

    // Settings and labels survive SHOW CREATE, and a looser target heals.
    let create = rows(&client, "SHOW CREATE ETL JOB tight").await[0][1].clone().unwrap();
    assert!(create.contains("freshness_target = '3600 seconds'"), "{create}");
    assert!(create.contains("labels = 'team=finance,tier=1'"), "{create}");
    client
        .batch_execute("ALTER ETL JOB tight SET (freshness_target = '5 hours', labels = 'team=ops')")
        .await
        .unwrap();
    assert_eq!(
        freshness_of(&client, "tight").await,
        [
            Some("healthy".into()),
            Some("team=ops".into()),
            Some("3".into()),
            Some("18000".into())
        ]
    );
    expect_err(&client, "ALTER ETL JOB tight SET (labels = 'Team=ops')", "42601").await;
}

#[tokio::test]
async fn options_take_either_syntax_and_common_aliases() {
    let pg = PgServer::start();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (hostname = '127.0.0.1', port = {}, dbname 'shop', \
             username = 'etl', password = '{ETL_PASSWORD}', ssl_mode = 'disable')",
            pg.port
        ))
        .await
        .unwrap();
    let create = rows(&client, "SHOW CREATE CONNECTION shop").await[0][1]
        .clone()
        .unwrap();
    for saved in ["host '127.0.0.1'", "database 'shop'", "user 'etl'", "sslmode 'disable'"] {
        assert!(create.contains(saved), "{saved} in {create}");
    }
    // ALTER takes the aliases and CREATE's `OPTIONS` word too.
    client
        .batch_execute("ALTER CONNECTION shop SET OPTIONS (connect_timeout = 7, hostname '127.0.0.1', password 'x')")
        .await
        .unwrap_err();
    client
        .batch_execute(&format!(
            "ALTER CONNECTION shop SET OPTIONS (connect_timeout = 7, hostname '127.0.0.1', password '{ETL_PASSWORD}')"
        ))
        .await
        .unwrap();
    let create = rows(&client, "SHOW CREATE CONNECTION shop").await[0][1]
        .clone()
        .unwrap();
    assert!(create.contains("connect_timeout 7"), "{create}");
    let message = expect_err(&client, "ALTER CONNECTION shop SET (host 'a', hostname 'b')", "22023").await;
    assert!(message.contains("given twice"), "{message}");
    let message = expect_err(&client, "ALTER CONNECTION shop RESET (conect_timeout)", "42601").await;
    assert!(message.contains("did you mean \"connect_timeout\"?"), "{message}");
    // VALIDATE CONNECTION is TEST CONNECTION.
    let validated = rows(&client, "VALIDATE CONNECTION shop").await;
    assert_eq!(validated[0][..2], [Some("shop".into()), Some("ok".into())]);
    client.batch_execute("VALIDATE CONNECTION shop").await.unwrap();
}

#[tokio::test]
async fn cancel_etl_job_stops_the_jobs_running_run() {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", ORDERS);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute("CREATE ETL JOB snap FROM shop.public.orders INTO snap SNAPSHOT")
        .await
        .unwrap();
    expect_err(&client, "CANCEL ETL JOB snap", "55000").await;
    expect_err(&client, "CANCEL ETL JOB nope", "42704").await;

    // A session holding the table locked keeps the run's read waiting.
    let port = pg.port;
    let dir = pg.dir.clone();
    let locker = std::thread::spawn(move || {
        let _ = std::process::Command::new(pg_bin_dir().join("psql"))
            .args([
                "-X",
                "-h",
                dir.to_str().unwrap(),
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "shop",
            ])
            .args(["-c", "BEGIN; LOCK TABLE public.orders; SELECT pg_sleep(60); COMMIT"])
            .output();
    });
    let locked = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                  WHERE c.relname = 'orders' AND l.mode = 'AccessExclusiveLock' AND l.granted";
    while pg.psql_admin_db("shop", locked).trim() != "1" {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let run_id = rows(&client, "RUN ETL JOB snap ASYNC").await[0][0].clone().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    client.batch_execute("CANCEL ETL JOB snap").await.unwrap();
    let mut status = String::new();
    for _ in 0..200 {
        status = one(
            &client,
            &format!("SELECT status FROM sluice.runs WHERE run_id = {run_id}"),
        )
        .await;
        if status != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "cancelled");
    pg.psql_admin_db(
        "shop",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()",
    );
    locker.join().unwrap();
    expect_err(&client, "CANCEL ETL JOB snap", "55000").await;
    // Nothing of the cancelled run was committed; the next run loads all.
    rows(&client, "RUN ETL JOB snap").await;
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.snap").await, "50");
}
