//! The commit guard (issue #20): a row written inside a transaction that is
//! still open when a run reads the table, stamped with a cursor value older
//! than rows committed around it, is loaded exactly once after it commits.

use std::time::Duration;

use crate::common;

use common::*;
use mysql_async::prelude::Queryable;
use tokio_postgres::{Client, NoTls};

const EVENTS_PG: &str = "
CREATE TABLE public.events (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO public.events SELECT g, now() - interval '1 hour' + g * interval '1 second' FROM generate_series(1, 10) g;
GRANT SELECT ON public.events TO etl;
";

/// A session of the `postgres` superuser on `shop`.
async fn admin(pg: &PgServer) -> Client {
    let mut config = pg.config();
    config.user("postgres").password(pg.admin_password.as_str());
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// `(guard_cap, guard_reason, guard_warning)` of a run.
async fn guard_of(client: &Client, run: &str) -> Vec<Option<String>> {
    rows(
        client,
        &format!("SELECT guard_cap, guard_reason, guard_warning FROM sluice.runs WHERE run_id = {run}"),
    )
    .await
    .remove(0)
}

#[tokio::test]
async fn postgres_row_committed_late_is_loaded_once() {
    postgres_late_row_scenario("").await;
}

#[tokio::test]
async fn postgres_row_committed_late_is_loaded_once_by_parallel_streams() {
    postgres_late_row_scenario("WITH (parallelism = 2)").await;
}

#[tokio::test]
async fn postgres_row_committed_late_is_loaded_once_with_lookback() {
    postgres_late_row_scenario("LOOKBACK 2 HOURS DEDUPE ON (id)").await;
}

/// On a streaming replica the cap stays at the replay point (minus the
/// margin) while received WAL waits to be replayed, and follows the clock
/// once the replica has caught up, so the last rows of an idle primary load.
#[tokio::test]
async fn postgres_replica_caps_at_its_replay_point_while_it_lags() {
    let primary = PgServer::start();
    primary.psql_admin_db("shop", EVENTS_PG);
    let replica = primary.start_replica();
    replica.wait_for_replay("SELECT count(*) FROM public.events", "10");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &replica).await;
    client
        .batch_execute(
            "CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY updated_at ALL \
             WITH (guard_margin = '1 second')",
        )
        .await
        .unwrap();

    primary.psql_admin("INSERT INTO events (id) SELECT g FROM generate_series(11, 20) g");
    replica.wait_for_replay("SELECT count(*) FROM public.events", "20");
    replica.psql_admin("SELECT pg_wal_replay_pause()");
    primary.psql_admin("INSERT INTO events (id) SELECT g FROM generate_series(21, 25) g");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while replica
        .psql_admin("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")
        .trim()
        != "t"
    {
        assert!(std::time::Instant::now() < deadline, "the replica received nothing");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Lagging: rows 11-20 were stamped within the margin of the last
    // replayed commit, so only the hour-old rows load.
    let first = rows(&client, "RUN ETL JOB events").await;
    let guard = guard_of(&client, first[0][0].as_deref().unwrap()).await;
    assert_eq!(first[0][2].as_deref(), Some("10"), "{first:?} {guard:?}");
    assert_eq!(guard[1].as_deref(), Some("replica replay"), "{guard:?}");

    // Caught up and idle: the replica's clock caps, and the rest loads once.
    replica.psql_admin("SELECT pg_wal_replay_resume()");
    replica.wait_for_replay("SELECT count(*) FROM public.events", "25");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = rows(&client, "RUN ETL JOB events").await;
    let guard = guard_of(&client, second[0][0].as_deref().unwrap()).await;
    assert_eq!(second[0][2].as_deref(), Some("15"), "{second:?} {guard:?}");
    assert_eq!(
        rows(&client, "SELECT count(*), count(DISTINCT id) FROM warehouse.bq_events").await[0],
        [Some("25".to_owned()), Some("25".to_owned())]
    );
}

/// A row stamped in a transaction left open while newer rows commit and a
/// run reads the table is loaded once, by the run after it commits; `tail`
/// ends the job's definition.
async fn postgres_late_row_scenario(tail: &str) {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", EVENTS_PG);
    pg.psql_admin("GRANT pg_read_all_stats TO etl");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute(&format!(
            "CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY updated_at ALL {tail}"
        ))
        .await
        .unwrap();

    // A writer stamps row 100 with its transaction's start and keeps it open
    // while newer rows commit.
    let writer = admin(&pg).await;
    writer
        .batch_execute("BEGIN; INSERT INTO events (id) VALUES (100)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    pg.psql_admin_db(
        "shop",
        "INSERT INTO events (id) SELECT g FROM generate_series(11, 20) g",
    );

    let first = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(first[0][1].as_deref(), Some("succeeded"), "{first:?}");
    assert_eq!(
        first[0][2].as_deref(),
        Some("10"),
        "only rows older than the open transaction: {first:?} {:?}",
        guard_of(&client, "1").await
    );
    let guard = guard_of(&client, first[0][0].as_deref().unwrap()).await;
    let reason = guard[1].clone().unwrap();
    assert!(reason.starts_with("oldest transaction started "), "{reason}");
    assert!(reason.contains(" by pid "), "{reason}");
    assert!(guard[0].is_some() && guard[2].is_none(), "{guard:?}");

    writer.batch_execute("COMMIT").await.unwrap();
    let second = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(
        second[0][2].as_deref(),
        Some("11"),
        "the late row and the newer rows: {second:?}"
    );
    assert_eq!(
        guard_of(&client, second[0][0].as_deref().unwrap()).await[1].as_deref(),
        Some("newest row")
    );
    let third = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(third[0][2].as_deref(), Some("0"));
    assert_eq!(
        rows(&client, "SELECT count(*), count(DISTINCT id) FROM warehouse.bq_events").await[0],
        [Some("21".to_owned()), Some("21".to_owned())]
    );
    assert_eq!(
        one(&client, "SELECT count(*) FROM warehouse.bq_events WHERE id = 100").await,
        "1"
    );
}

#[tokio::test]
async fn postgres_transaction_open_past_max_hold_stops_holding_the_cap_and_degrades() {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", EVENTS_PG);
    pg.psql_admin("GRANT pg_read_all_stats TO etl");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute(
            "CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY updated_at ALL \
             WITH (guard_margin = '0 seconds', guard_max_hold = '1 second')",
        )
        .await
        .unwrap();
    let shown = rows(&client, "SHOW CREATE ETL JOB events").await[0][1].clone().unwrap();
    assert!(
        shown.contains("commit_guard = 'on', guard_margin = '0 seconds', guard_max_hold = '1 seconds'"),
        "{shown}"
    );
    let writer = admin(&pg).await;
    writer
        .batch_execute("BEGIN; INSERT INTO events (id) VALUES (100)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    pg.psql_admin_db(
        "shop",
        "INSERT INTO events (id) SELECT g FROM generate_series(11, 20) g",
    );
    let output = sluice.psql("RUN ETL JOB events;");
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(
        notices.contains("NOTICE:  commit guard: transaction started ") && notices.contains("guard_max_hold"),
        "{notices}"
    );
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.bq_events").await, "20");
    let guard = guard_of(&client, "1").await;
    assert!(
        guard[2].as_deref().unwrap().contains("longer than guard_max_hold"),
        "{guard:?}"
    );
    assert_eq!(
        one(&client, "SELECT health FROM sluice.jobs WHERE name = 'events'").await,
        "degraded"
    );
    writer.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn postgres_user_without_pg_read_all_stats_is_told_and_runs_record_it() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        &format!("{EVENTS_PG} CREATE ROLE reader LOGIN PASSWORD 'reader_pw_123'; GRANT SELECT ON events TO reader;"),
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', \
             user 'reader', password 'reader_pw_123')",
            pg.port
        ))
        .await
        .unwrap();
    let output = sluice.psql("CREATE ETL JOB events FROM shop.public.events INCREMENTAL BY updated_at ALL;");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(
        notices.contains("cannot see other sessions' transactions") && notices.contains("grant it pg_read_all_stats"),
        "{notices}"
    );
    rows(&client, "RUN ETL JOB events").await;
    let reason = guard_of(&client, "1").await[1].clone().unwrap();
    assert!(reason.contains("the source user needs pg_read_all_stats"), "{reason}");
    // An integer cursor is not covered: the NOTICE says LOOKBACK is needed.
    let output =
        sluice.psql("CREATE ETL JOB by_id FROM shop.public.events INTO warehouse.by_id INCREMENTAL BY id ALL;");
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(notices.contains("needs LOOKBACK"), "{notices}");
}

/// MariaDB with `shop.events` (ten hour-old rows, `updated_at` stamped by
/// the server), `etl` granted PROCESS, and Sluice with its connection `crm`.
async fn mariadb_events() -> (MariaDb, Sluice, Client) {
    let maria = MariaDb::start();
    maria.sql(
        "CREATE TABLE events (id int PRIMARY KEY, updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6)); \
         INSERT INTO events SELECT seq, now(6) - INTERVAL 1 HOUR + INTERVAL seq SECOND FROM seq_1_to_10; \
         GRANT PROCESS ON *.* TO 'etl'@'%';",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', \
             password '{ETL_PASSWORD}')",
            maria.port
        ))
        .await
        .unwrap();
    (maria, sluice, client)
}

#[tokio::test]
async fn mariadb_row_committed_late_is_loaded_once() {
    let (maria, sluice, client) = mariadb_events().await;
    let output = sluice.psql("CREATE ETL JOB events FROM crm.shop.events INCREMENTAL BY updated_at ALL;");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("PROCESS"));

    // A session holds a transaction open with an uncommitted row stamped now().
    let mut writer = mysql_async::Conn::new(mysql_async::Opts::from_url(&maria.url()).unwrap())
        .await
        .unwrap();
    writer.query_drop("BEGIN").await.unwrap();
    writer.query_drop("INSERT INTO events (id) VALUES (100)").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while maria.sql("SELECT count(*) FROM information_schema.innodb_trx").trim() == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer's transaction is not in innodb_trx"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1100));
    maria.sql("INSERT INTO events (id) SELECT seq FROM seq_11_to_20");

    let first = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(first[0][2].as_deref(), Some("10"), "{first:?}");
    let reason = guard_of(&client, first[0][0].as_deref().unwrap()).await[1]
        .clone()
        .unwrap();
    assert!(reason.starts_with("oldest transaction started "), "{reason}");

    writer.query_drop("COMMIT").await.unwrap();
    let thread = writer.id();
    writer.disconnect().await.unwrap();
    // innodb_trx is a cache refreshed at most every 100 ms: a run right
    // after the commit may still see the transaction (and wait one more run);
    // and the cap stays a second behind the clock.
    wait_until_transaction_ended(&maria, thread);
    std::thread::sleep(Duration::from_millis(1100));
    let second = rows(&client, "RUN ETL JOB events").await;
    assert_eq!(
        second[0][2].as_deref(),
        Some("11"),
        "{second:?} {:?} {}",
        guard_of(&client, second[0][0].as_deref().unwrap()).await,
        maria.sql("SELECT * FROM information_schema.innodb_trx")
    );
    assert_eq!(
        rows(&client, "SELECT count(*), count(DISTINCT id) FROM warehouse.bq_events").await[0],
        [Some("21".to_owned()), Some("21".to_owned())]
    );
}

/// Waits until `information_schema.innodb_trx` no longer lists a
/// transaction of connection `thread`.
fn wait_until_transaction_ended(maria: &MariaDb, thread: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let query = format!("SELECT count(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = {thread}");
    while maria.sql(&query).trim() != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the transaction of connection {thread} stays open: {}",
            maria.sql("SELECT * FROM information_schema.innodb_trx")
        );
        // InnoDB refreshes the list only when it was not read in the last
        // 100 ms: polling faster would keep it stale for ever.
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// InnoDB lists open transactions from a cache up to 100 ms old, so one that
/// has just begun may be missing: the cap stays a second behind the source's
/// clock, and a row committed in that second waits for the next run.
#[tokio::test]
async fn mariadb_cap_stays_behind_the_transaction_list_cache() {
    let (maria, _sluice, client) = mariadb_events().await;
    client
        .batch_execute("CREATE ETL JOB events FROM crm.shop.events INCREMENTAL BY updated_at ALL")
        .await
        .unwrap();
    let run = rows(&client, "RUN ETL JOB events").await;
    let [cap, reason, _] = &guard_of(&client, run[0][0].as_deref().unwrap()).await[..] else {
        panic!("three guard columns")
    };
    assert_eq!(reason.as_deref(), Some("newest row"));
    // The guard read the clock before the run; one second before *now* is
    // later still, so a cap read without the lag would exceed it.
    let cap = cap
        .as_deref()
        .unwrap()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned();
    assert_eq!(
        maria
            .sql(&format!("SELECT TIMESTAMP('{cap}') <= NOW(6) - INTERVAL 1 SECOND"))
            .trim(),
        "1",
        "cap {cap}"
    );
}

#[tokio::test]
async fn mariadb_user_without_process_is_told() {
    let maria = MariaDb::start();
    maria.sql(
        "CREATE TABLE events (id int PRIMARY KEY, updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6)); \
              CREATE USER 'reader'@'%' IDENTIFIED BY 'reader_pw_123'; GRANT SELECT ON shop.* TO 'reader'@'%';",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'reader', \
             password 'reader_pw_123')",
            maria.port
        ))
        .await
        .unwrap();
    let output = sluice.psql("CREATE ETL JOB events FROM crm.shop.events INCREMENTAL BY updated_at ALL;");
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(notices.contains("grant it PROCESS"), "{notices}");
    rows(&client, "RUN ETL JOB events").await;
    let reason = guard_of(&client, "1").await[1].clone().unwrap();
    assert!(reason.contains("the source user needs PROCESS"), "{reason}");
}
