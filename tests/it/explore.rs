//! Exploring sources from a Postgres client: SHOW SCHEMAS, SHOW TABLES,
//! DESCRIBE and live SELECTs with pushdown, against real PostgreSQL and
//! MariaDB servers.

use crate::common;

use common::*;
use tokio_postgres::Client;

fn texts(rows: &[Vec<Option<String>>], column: usize) -> Vec<String> {
    rows.iter()
        .map(|r| r[column].clone().unwrap_or_else(|| "NULL".into()))
        .collect()
}

const PG_FIXTURE: &str = r#"
CREATE SCHEMA sales;
CREATE SCHEMA "Mixed Case";
CREATE TABLE sales.orders (
    id bigint PRIMARY KEY,
    customer_id int NOT NULL,
    amount numeric(12,2),
    status text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz
);
CREATE INDEX ON sales.orders (updated_at);
INSERT INTO sales.orders
SELECT g, g % 7, g * 1.25, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'open' END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour',
       timestamptz '2024-02-01 00:00:00+00' + g * interval '1 minute'
FROM generate_series(1, 50) g;
CREATE VIEW sales.open_orders AS SELECT * FROM sales.orders WHERE status = 'open';
CREATE TABLE sales.events (id int, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE sales.events_2024 PARTITION OF sales.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE "Mixed Case"."Order ""Items""; DROP TABLE x;--" ("select" int, "Ünïcode" text);
INSERT INTO "Mixed Case"."Order ""Items""; DROP TABLE x;--" VALUES (1, 'ä😀'), (2, NULL);
CREATE TABLE public.customers (id int PRIMARY KEY, name text);
INSERT INTO public.customers SELECT g, 'customer ' || g FROM generate_series(0, 6) g;
ANALYZE;
"#;

async fn pg_setup() -> (PgServer, Sluice, Client) {
    let pg = PgServer::start();
    pg.psql_admin_db("shop", PG_FIXTURE);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    (pg, sluice, client)
}

#[tokio::test]
async fn postgres_schemas_tables_and_describe() {
    let (_pg, _sluice, client) = pg_setup().await;
    assert_eq!(
        texts(&rows(&client, "SHOW SCHEMAS FROM shop").await, 0),
        ["Mixed Case", "public", "sales"]
    );

    let tables = rows(&client, "SHOW TABLES FROM shop.sales").await;
    let summary: Vec<_> = tables
        .iter()
        .map(|t| (t[1].clone().unwrap(), t[2].clone().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("events".to_string(), "partitioned table".to_string()),
            ("open_orders".to_string(), "view".to_string()),
            ("orders".to_string(), "table".to_string())
        ]
    );
    let orders = tables.iter().find(|t| t[1].as_deref() == Some("orders")).unwrap();
    assert_eq!(orders[3].as_deref(), Some("50"), "estimated rows from statistics");
    assert!(
        orders[4].as_deref().unwrap().parse::<i64>().unwrap() > 0,
        "size in bytes"
    );
    let all = rows(&client, "SHOW TABLES FROM shop").await;
    assert!(
        all.iter()
            .any(|t| t[0].as_deref() == Some("public") && t[1].as_deref() == Some("customers"))
    );

    let described = rows(&client, "DESCRIBE shop.sales.orders").await;
    let columns: Vec<_> = described
        .iter()
        .map(|r| {
            (
                r[0].clone().unwrap(),
                r[2].clone().unwrap(),
                r[3].clone().unwrap(),
                r[5].clone(),
                r[7].clone().unwrap(),
                r[8].clone().unwrap(),
                r[9].clone().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("id", "bigint", "f", Some("1"), "INT64", "REQUIRED", "high"),
        ("customer_id", "integer", "f", None, "INT64", "REQUIRED", "high"),
        (
            "amount",
            "numeric(12,2)",
            "t",
            None,
            "NUMERIC(12, 2)",
            "NULLABLE",
            "high",
        ),
        ("status", "text", "t", None, "STRING", "NULLABLE", "high"),
        (
            "created_at",
            "timestamp with time zone",
            "f",
            None,
            "TIMESTAMP",
            "REQUIRED",
            "high",
        ),
        (
            "updated_at",
            "timestamp with time zone",
            "t",
            None,
            "TIMESTAMP",
            "NULLABLE",
            "high",
        ),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(a, b, c, d, e, f, g)| {
            (
                a.to_string(),
                b.to_string(),
                c.to_string(),
                d.map(str::to_owned),
                e.to_string(),
                f.to_string(),
                g.to_string(),
            )
        })
        .collect();
    assert_eq!(columns, expected);
    let updated = described
        .iter()
        .find(|r| r[0].as_deref() == Some("updated_at"))
        .unwrap();
    assert!(
        updated[6].as_deref().unwrap().starts_with("#1, recommended"),
        "{updated:?}"
    );
    let created = described
        .iter()
        .find(|r| r[0].as_deref() == Some("created_at"))
        .unwrap();
    assert!(created[6].as_deref().unwrap().starts_with("#2"), "{created:?}");
    assert_eq!(described[0][11].as_deref(), Some("{1,2,3}"), "sample values");
    assert_eq!(described[4][4].as_deref(), Some("now()"), "default");
}

#[tokio::test]
async fn postgres_live_queries_push_down_and_join() {
    let (_pg, _sluice, client) = pg_setup().await;
    let top = rows(
        &client,
        "SELECT id, amount, status FROM shop.sales.orders WHERE id > 45 ORDER BY id LIMIT 3",
    )
    .await;
    assert_eq!(
        top,
        [
            [Some("46".into()), Some("57.50".into()), Some("paid".into())],
            [Some("47".into()), Some("58.75".into()), Some("open".into())],
            [Some("48".into()), Some("60.00".into()), Some("paid".into())],
        ]
    );
    let plan = rows(
        &client,
        "EXPLAIN SELECT id FROM shop.sales.orders WHERE id > 45 LIMIT 3",
    )
    .await;
    let plan_text: String = plan
        .iter()
        .flat_map(|r| r.iter().flatten().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan_text.contains("SourceScanExec: query="), "{plan_text}");
    assert!(
        plan_text.contains("\"id\" > 45") && plan_text.contains("LIMIT 3"),
        "{plan_text}"
    );
    let count = rows(&client, "SELECT count(*) FROM shop.sales.orders").await;
    assert_eq!(count[0][0].as_deref(), Some("50"));
    let joined = rows(
        &client,
        "SELECT c.name, count(*) AS orders FROM shop.sales.orders o JOIN shop.public.customers c ON c.id = o.customer_id \
         GROUP BY c.name ORDER BY c.name LIMIT 2",
    )
    .await;
    assert_eq!(
        joined,
        [
            [Some("customer 0".into()), Some("7".into())],
            [Some("customer 1".into()), Some("8".into())]
        ]
    );
    let hostile = rows(
        &client,
        r#"SELECT "select", "Ünïcode" FROM shop."Mixed Case"."Order ""Items""; DROP TABLE x;--" ORDER BY 1"#,
    )
    .await;
    assert_eq!(
        hostile,
        [[Some("1".into()), Some("ä😀".into())], [Some("2".into()), None]]
    );
    let described = rows(
        &client,
        r#"DESCRIBE shop."Mixed Case"."Order ""Items""; DROP TABLE x;--""#,
    )
    .await;
    assert_eq!(texts(&described, 0), ["select", "Ünïcode"]);
}

#[tokio::test]
async fn postgres_exploration_errors_name_what_exists() {
    let (pg, _sluice, client) = pg_setup().await;
    let message = expect_err(&client, "DESCRIBE shop.sales.ordres", "42704").await;
    assert!(message.contains("ordres") && message.contains("orders"), "{message}");
    let message = expect_err(&client, "SHOW TABLES FROM shop.sale", "42704").await;
    assert!(message.contains("sales"), "{message}");
    expect_err(&client, "SELECT * FROM shop.sales.nope", "42704").await;
    expect_err(&client, "SHOW SCHEMAS FROM nowhere", "42704").await;
    client
        .batch_execute(
            "CREATE CONNECTION offline_src TYPE teradata OPTIONS (host 'h', user 'u') WITH (validate = false)",
        )
        .await
        .expect_err("teradata is not available yet");
    pg.stop();
    let message = expect_err(&client, "SHOW TABLES FROM shop", "08001").await;
    assert!(message.contains("refused"), "{message}");
    let status = rows(&client, "SELECT status FROM sluice.connections WHERE name = 'shop'").await;
    assert_eq!(
        status[0][0].as_deref(),
        Some("failed"),
        "a source that is down is marked failed"
    );
}

#[tokio::test]
async fn mariadb_schemas_tables_describe_and_select() {
    let maria = MariaDb::start();
    maria.sql_db(
        "shop",
        "CREATE TABLE orders (id bigint PRIMARY KEY, amount decimal(12,2), paid tinyint(1), note varchar(40), \
         updated_at datetime(6), KEY (updated_at)); \
         INSERT INTO orders VALUES (1, 10.50, 1, 'a', '2024-01-01 10:00:00.000001'), (2, NULL, 0, 'ß😀', NULL), \
         (3, 3.00, 1, NULL, '2024-01-03 00:00:00'); \
         CREATE VIEW paid_orders AS SELECT * FROM orders WHERE paid = 1; \
         CREATE DATABASE crm;",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, user 'etl', password '{ETL_PASSWORD}')",
            maria.port
        ))
        .await
        .unwrap();
    let schemas = texts(&rows(&client, "SHOW SCHEMAS FROM crm").await, 0);
    assert_eq!(schemas, ["crm", "shop"]);
    let tables = rows(&client, "SHOW TABLES FROM crm.shop").await;
    let summary: Vec<_> = tables
        .iter()
        .map(|t| (t[1].clone().unwrap(), t[2].clone().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("orders".to_string(), "table".to_string()),
            ("paid_orders".to_string(), "view".to_string())
        ]
    );
    let described = rows(&client, "DESCRIBE crm.shop.orders").await;
    let types: Vec<_> = described
        .iter()
        .map(|r| (r[0].clone().unwrap(), r[7].clone().unwrap()))
        .collect();
    assert_eq!(
        types,
        [
            ("id".to_string(), "INT64".to_string()),
            ("amount".to_string(), "NUMERIC(12, 2)".to_string()),
            ("paid".to_string(), "BOOL".to_string()),
            ("note".to_string(), "STRING".to_string()),
            ("updated_at".to_string(), "DATETIME".to_string())
        ]
    );
    assert!(
        described[4][6].as_deref().unwrap().contains("recommended"),
        "{:?}",
        described[4]
    );
    let values = rows(
        &client,
        "SELECT id, amount, paid, note, updated_at FROM crm.shop.orders WHERE id >= 2 ORDER BY id",
    )
    .await;
    assert_eq!(
        values,
        [
            [Some("2".into()), None, Some("f".into()), Some("ß😀".into()), None],
            [
                Some("3".into()),
                Some("3.00".into()),
                Some("t".into()),
                None,
                Some("2024-01-03 00:00:00.000000".into())
            ],
        ]
    );
}

#[tokio::test]
async fn tables_of_two_connections_join() {
    let (_pg, _sluice, client) = pg_setup().await;
    let maria = MariaDb::start();
    maria.sql_db(
        "shop",
        "CREATE TABLE regions (customer_id int PRIMARY KEY, region varchar(10)); \
         INSERT INTO regions VALUES (0, 'north'), (1, 'south'), (2, 'east');",
    );
    client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, user 'etl', password '{ETL_PASSWORD}')",
            maria.port
        ))
        .await
        .unwrap();
    let joined = rows(
        &client,
        "SELECT r.region, count(*) FROM shop.sales.orders o JOIN crm.shop.regions r ON r.customer_id = o.customer_id \
         GROUP BY r.region ORDER BY r.region",
    )
    .await;
    assert_eq!(
        joined,
        [
            [Some("east".into()), Some("7".into())],
            [Some("north".into()), Some("7".into())],
            [Some("south".into()), Some("8".into())]
        ]
    );
}
