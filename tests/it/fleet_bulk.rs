//! Jobs in bulk, through real clients against a real sluice with a
//! PostgreSQL source: `CREATE ETL JOBS FOR TABLES IN ...` (dry run, all or
//! none, tables already covered), then `ALTER ETL JOBS` and `RUN ETL JOBS`
//! on a selection.

use crate::common::*;

/// Four tables: two with a change cursor DESCRIBE recommends, one without
/// (a snapshot) and one another job loads already; and a view, left out.
const SHOP: &str = "
CREATE TABLE public.orders (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL);
INSERT INTO public.orders SELECT g, now() - g * interval '1 hour' FROM generate_series(1, 50) g;
CREATE TABLE public.order_items (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
INSERT INTO public.order_items SELECT g, now() - g * interval '1 minute' FROM generate_series(1, 20) g;
CREATE TABLE public.customers (id bigint PRIMARY KEY, name text);
INSERT INTO public.customers SELECT g, 'c' || g FROM generate_series(1, 7) g;
CREATE TABLE public.audit_log (id bigint PRIMARY KEY, note text);
CREATE VIEW public.recent_orders AS SELECT * FROM public.orders;
";

async fn job_names(client: &tokio_postgres::Client) -> Vec<String> {
    rows(client, "SELECT name FROM sluice.jobs ORDER BY name")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

#[tokio::test]
async fn create_etl_jobs_plans_creates_all_or_none_and_bulk_statements_act_on_a_selection() {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", SHOP);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute("CREATE ETL JOB audit FROM shop.public.audit_log INTO audit SNAPSHOT")
        .await
        .unwrap();

    // DRY RUN: one row per table, nothing created.
    let plan = rows(&client, "CREATE ETL JOBS FOR TABLES IN shop.public DRY RUN").await;
    let summary: Vec<Vec<Option<String>>> = plan
        .iter()
        .map(|r| vec![r[0].clone(), r[1].clone(), r[3].clone(), r[4].clone(), r[6].clone()])
        .collect();
    let row = |job: &str, table: &str, load: &str, cursor: Option<&str>, action: &str| {
        vec![
            Some(job.to_owned()),
            Some(table.to_owned()),
            Some(load.to_owned()),
            cursor.map(str::to_owned),
            Some(action.to_owned()),
        ]
    };
    assert_eq!(
        summary,
        [
            row("public_audit_log", "public.audit_log", "SNAPSHOT", None, "skipped"),
            row("public_customers", "public.customers", "SNAPSHOT", None, "would create"),
            row(
                "public_order_items",
                "public.order_items",
                "INCREMENTAL",
                Some("created_at"),
                "would create"
            ),
            row(
                "public_orders",
                "public.orders",
                "INCREMENTAL",
                Some("updated_at"),
                "would create"
            ),
        ]
    );
    assert!(plan[0][5].as_deref().unwrap().contains("\"audit\""), "{plan:?}");
    assert!(plan[3][5].as_deref().unwrap().contains("last change"), "{plan:?}");
    assert_eq!(job_names(&client).await, ["audit"]);
    let filtered = rows(
        &client,
        "CREATE ETL JOBS FOR TABLES IN shop.public LIKE 'order%' EXCEPT (order_items) \
         WITH (name_template = 'raw_{table}') DRY RUN",
    )
    .await;
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered[0][0].as_deref(), Some("raw_orders"));
    let message = expect_err(
        &client,
        "CREATE ETL JOBS FOR TABLES IN shop.public EXCEPT (nope) DRY RUN",
        "22023",
    )
    .await;
    assert!(message.contains("\"nope\""), "{message}");

    // A job name that is taken fails that table, and nothing is created.
    client
        .batch_execute("CREATE ETL JOB public_orders FROM shop.public.audit_log INTO elsewhere SNAPSHOT")
        .await
        .unwrap();
    let message = expect_err(&client, "CREATE ETL JOBS FOR TABLES IN shop.public", "42710").await;
    assert!(message.contains("table \"orders\""), "{message}");
    assert!(
        message.starts_with("no ETL jobs were created: 1 table failed"),
        "{message}"
    );
    assert_eq!(job_names(&client).await, ["audit", "public_orders"]);
    // The tables made for the other jobs went with the rollback.
    assert!(!sluice.data_dir().join("warehouse/public_customers").exists());

    // Without the clash every table gets its job, with the shared settings.
    client
        .batch_execute("DROP ETL JOB public_orders WITH DATA")
        .await
        .unwrap();
    let output = sluice.psql(
        "CREATE ETL JOBS FOR TABLES IN shop.public SCHEDULE DAILY AT '02:00' \
         WITH (labels = 'team=finance, tier=1', max_retries = 2);",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{notices}");
    assert_eq!(
        stdout.lines().filter(|l| l.trim_end().ends_with("| created")).count(),
        3,
        "{stdout}"
    );
    assert!(
        notices.contains("NOTICE:  created ETL job \"public_orders\" for public.orders: INCREMENTAL BY updated_at"),
        "{notices}"
    );
    assert!(
        notices.contains("NOTICE:  public.audit_log: skipped, loaded already by ETL job \"audit\""),
        "{notices}"
    );
    assert!(notices.contains("its first run loads the last 90 days"), "{notices}");
    assert_eq!(
        rows(
            &client,
            "SELECT name, load, schedule, labels, max_retries FROM sluice.jobs WHERE name LIKE 'public_%' ORDER BY name"
        )
        .await,
        [
            [
                "public_customers",
                "SNAPSHOT",
                "DAILY AT '02:00'",
                "team=finance,tier=1",
                "2"
            ],
            [
                "public_order_items",
                "INCREMENTAL BY created_at BACKFILL 90 DAYS",
                "DAILY AT '02:00'",
                "team=finance,tier=1",
                "2"
            ],
            [
                "public_orders",
                "INCREMENTAL BY updated_at BACKFILL 90 DAYS",
                "DAILY AT '02:00'",
                "team=finance,tier=1",
                "2"
            ],
        ]
        .map(|r| r.map(|v| Some(v.to_owned())).to_vec())
    );
    // Run again: every table is covered now.
    let again = rows(&client, "CREATE ETL JOBS FOR TABLES IN shop.public").await;
    assert!(again.iter().all(|r| r[6].as_deref() == Some("skipped")), "{again:?}");

    // Bulk changes act on a selection by labels or any column of sluice.jobs.
    let finance = "array_has(string_to_array(labels, ','), 'team=finance')";
    let paused = rows(&client, &format!("ALTER ETL JOBS WHERE {finance} PAUSE")).await;
    assert_eq!(
        paused,
        ["public_customers", "public_order_items", "public_orders"]
            .map(|j| vec![Some(j.to_owned()), Some("paused".into())])
    );
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.jobs WHERE paused").await, "3");
    let resumed = rows(
        &client,
        "ALTER ETL JOBS WHERE paused AND name <> 'public_customers' RESUME",
    )
    .await;
    assert_eq!(resumed.len(), 2, "{resumed:?}");
    assert_eq!(
        rows(
            &client,
            "ALTER ETL JOBS WHERE load LIKE 'INCREMENTAL%' SET (max_retries = 5)"
        )
        .await
        .len(),
        2
    );
    assert_eq!(
        one(
            &client,
            "SELECT max_retries FROM sluice.jobs WHERE name = 'public_orders'"
        )
        .await,
        "5"
    );
    assert!(
        rows(&client, "ALTER ETL JOBS WHERE name = 'nope' PAUSE")
            .await
            .is_empty()
    );
    client
        .batch_execute("ALTER ETL JOBS WHERE no_such_column = 1 PAUSE")
        .await
        .unwrap_err();

    let runs = rows(&client, &format!("RUN ETL JOBS WHERE {finance}")).await;
    let runs: Vec<(String, String, String)> = runs
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[2].clone().unwrap(), r[3].clone().unwrap()))
        .collect();
    assert_eq!(
        runs,
        [
            ("public_customers".into(), "succeeded".into(), "7".into()),
            ("public_order_items".into(), "succeeded".into(), "20".into()),
            ("public_orders".into(), "succeeded".into(), "50".into()),
        ]
    );
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.public_orders").await, "50");
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.runs WHERE job = 'audit'").await,
        "0"
    );
    expect_err(&client, "BEGIN; RUN ETL JOBS WHERE true", "25001").await;
}

#[tokio::test]
async fn drop_keeps_the_data_unless_with_data_and_the_default_backfill_is_announced() {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", SHOP);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;

    // Without BACKFILL, SINCE or ALL the 90-day window is said out loud.
    let output = sluice.psql("CREATE ETL JOB orders FROM shop.public.orders INTO orders INCREMENTAL BY updated_at;");
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{notices}");
    assert!(
        notices.contains(
            "NOTICE:  ETL job \"orders\" has no BACKFILL, SINCE or ALL: its first run loads the last 90 days by \
             \"updated_at\" only"
        ),
        "{notices}"
    );
    let output = sluice.psql(
        "CREATE ETL JOB items FROM shop.public.order_items INTO items INCREMENTAL BY created_at ALL; \
         CREATE ETL JOB customers FROM shop.public.customers INTO customers SNAPSHOT;",
    );
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && !notices.contains("BACKFILL"), "{notices}");

    for job in ["orders", "items", "customers"] {
        rows(&client, &format!("RUN ETL JOB {job}")).await;
    }
    // A plain DROP keeps the table and everything loaded; KEEP DATA too.
    client
        .batch_execute("DROP ETL JOB orders; DROP ETL JOB items KEEP DATA")
        .await
        .unwrap();
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.orders").await, "50");
    assert_eq!(one(&client, "SELECT count(*) FROM warehouse.items").await, "20");
    // WITH DATA deletes it.
    client.batch_execute("DROP ETL JOB customers WITH DATA").await.unwrap();
    expect_err(&client, "SELECT count(*) FROM warehouse.customers", "42P01").await;
    assert!(rows(&client, "SELECT name FROM sluice.jobs").await.is_empty());
}

#[tokio::test]
async fn drop_keeps_a_bigquery_table_unless_with_data() {
    let env = crate::bigquery::setup(&[]).await;
    env.client
        .batch_execute(
            "CREATE ETL JOB kept FROM shop.public.orders INTO wh.kept SNAPSHOT; \
             CREATE ETL JOB gone FROM shop.public.orders INTO wh.gone SNAPSHOT",
        )
        .await
        .unwrap();
    assert!(env.fake.table("raw_data", "kept").is_some() && env.fake.table("raw_data", "gone").is_some());
    env.client
        .batch_execute("DROP ETL JOB kept; DROP ETL JOB gone WITH DATA")
        .await
        .unwrap();
    assert!(env.fake.table("raw_data", "kept").is_some());
    assert!(env.fake.table("raw_data", "gone").is_none());
}
