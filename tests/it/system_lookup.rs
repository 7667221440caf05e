//! Looking up jobs and runs by name in the system tables: the lookup reads
//! only the named jobs' records (issue #16) and returns exactly the rows an
//! unfiltered read would, whatever the shape of the condition.

use crate::common::*;

const ORDERS: &str = "
CREATE TABLE public.orders (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL);
INSERT INTO public.orders SELECT g, now() - g * interval '1 minute' FROM generate_series(1, 20) g;
";

/// Every row of `sql` with the columns that do not move between two reads.
async fn stable_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = rows(client, sql).await;
    rows.sort();
    rows
}

#[tokio::test]
async fn lookups_by_name_return_exactly_the_rows_of_a_full_read() {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", ORDERS);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    // `a` and `a_b` share a prefix; `b` fails once, then succeeds, then fails.
    client
        .batch_execute(
            "CREATE ETL JOB a FROM shop.public.orders INTO a SNAPSHOT; \
             CREATE ETL JOB a_b FROM shop.public.orders INTO a_b SNAPSHOT; \
             CREATE ETL JOB b FROM shop.public.orders INTO b INCREMENTAL BY updated_at ALL",
        )
        .await
        .unwrap();
    for job in ["a", "a", "a_b"] {
        rows(&client, &format!("RUN ETL JOB {job}")).await;
    }
    pg.psql_admin_db("shop", "ALTER TABLE orders RENAME TO orders_gone");
    assert!(client.simple_query("RUN ETL JOB b").await.is_err());
    pg.psql_admin_db("shop", "ALTER TABLE orders_gone RENAME TO orders");
    rows(&client, "RUN ETL JOB b").await;
    pg.psql_admin_db("shop", "ALTER TABLE orders RENAME TO orders_gone");
    assert!(client.simple_query("RUN ETL JOB b").await.is_err());

    let columns = "name, load, last_run_status, health, consecutive_failures, last_error, watermark, \
                   CAST(freshness IS NULL AS text)";
    let all = stable_rows(&client, &format!("SELECT {columns} FROM sluice.jobs")).await;
    let of = |names: &[&str]| -> Vec<Vec<Option<String>>> {
        all.iter()
            .filter(|row| names.contains(&row[0].as_deref().unwrap()))
            .cloned()
            .collect()
    };
    assert_eq!(all.len(), 3);
    assert_eq!(
        of(&["b"])[0][3].as_deref(),
        Some("healthy"),
        "one failure is not failing yet"
    );
    assert_eq!(of(&["b"])[0][4].as_deref(), Some("1"));
    assert!(
        of(&["b"])[0][5].as_deref().unwrap().contains("orders"),
        "{:?}",
        of(&["b"])
    );
    for (condition, names) in [
        ("name = 'a'", &["a"][..]),
        ("'b' = name", &["b"]),
        ("name IN ('a', 'b', 'nobody')", &["a", "b"]),
        ("name = 'a' OR name = 'a_b'", &["a", "a_b"]),
        ("name = 'a' AND health = 'healthy'", &["a"]),
        ("name = 'nobody'", &[]),
        ("name LIKE 'a%'", &["a", "a_b"]),
    ] {
        let got = stable_rows(&client, &format!("SELECT {columns} FROM sluice.jobs WHERE {condition}")).await;
        assert_eq!(got, of(names), "WHERE {condition}");
    }

    let runs = "run_id, job, status, trigger, rows";
    let all_runs = rows(&client, &format!("SELECT {runs} FROM sluice.runs ORDER BY run_id")).await;
    assert_eq!(all_runs.len(), 6);
    for (condition, jobs) in [
        ("job = 'a'", &["a"][..]),
        ("job IN ('a_b', 'b')", &["a_b", "b"]),
        ("job = 'a' AND status = 'succeeded'", &["a"]),
    ] {
        let got = rows(
            &client,
            &format!("SELECT {runs} FROM sluice.runs WHERE {condition} ORDER BY run_id"),
        )
        .await;
        let want: Vec<_> = all_runs
            .iter()
            .filter(|r| jobs.contains(&r[1].as_deref().unwrap()))
            .cloned()
            .collect();
        assert_eq!(got, want, "WHERE {condition}");
    }
    // Bulk statements select through the same table.
    let paused = rows(&client, "ALTER ETL JOBS WHERE name IN ('a', 'b') PAUSE").await;
    assert_eq!(paused.len(), 2);
    assert_eq!(
        rows(&client, "SELECT name FROM sluice.jobs WHERE paused ORDER BY name").await,
        [[Some("a".to_owned())], [Some("b".to_owned())]]
    );
}
