//! Redshift as a source, against a PostgreSQL 15 stand-in: catalog views
//! created in the stand-in mimic Redshift's (`svv_tables`, `svv_columns`,
//! `svv_table_info`), domains stand in for Redshift-only types, and the
//! stand-in logs every statement. Each test fails if the Redshift connection
//! ever sent `COPY`, used the extended protocol (whose results may be
//! binary) or touched a catalog object Redshift lacks.

use crate::common;

use std::time::Duration;

use common::*;
use tokio_postgres::{Client, NoTls};

pub(crate) const RS_USER: &str = "rs_etl";
pub(crate) const RS_PASSWORD: &str = "rs_pw_123";

/// Catalog objects and forms of PostgreSQL that Redshift lacks or refuses.
const NOT_IN_REDSHIFT: &[&str] = &[
    "copy ",
    "pg_enum",
    "typarray",
    "pg_range",
    "pg_partition_tree",
    "pg_total_relation_size",
    "pg_stat_activity",
    "pg_export_snapshot",
    "unnest",
    "format_type",
    // Redshift's CONCAT takes two arguments; Sluice writes `||`.
    "concat(",
];

/// The stand-in: `svv_transactions` shows what `pg_stat_activity` shows the
/// user, and `svl_user_info` calls `pg_read_all_stats` members
/// `UNRESTRICTED`, as Redshift shows other users' transactions only to
/// superusers and users with `SYSLOG ACCESS UNRESTRICTED`; `getdate()` has
/// no fractional seconds, as Redshift's.
///
/// The stand-in: statements logged with their user, the Redshift catalog
/// views, types and functions Sluice uses, and a login for the connection.
pub(crate) fn standin() -> PgServer {
    let pg = PgServer::start_with_settings(&["log_statement=all", "log_line_prefix=%u:%p:"]);
    pg.psql_admin(&format!(
        r#"
        CREATE ROLE {RS_USER} LOGIN PASSWORD '{RS_PASSWORD}';
        ALTER ROLE {RS_USER} SET search_path = "$user", public, information_schema;
        CREATE VIEW information_schema.svv_tables AS
            SELECT table_catalog::text, table_schema::text, table_name::text, table_type::text, NULL::text AS remarks
            FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema');
        CREATE VIEW information_schema.svv_columns AS
            SELECT table_catalog::text, table_schema::text, table_name::text, column_name::text,
                   ordinal_position::int, column_default::text, is_nullable::text,
                   CASE WHEN domain_name IS NOT NULL THEN domain_name::text
                        WHEN data_type = 'interval' THEN 'interval' || coalesce(' ' || lower(interval_type), '')
                        ELSE data_type::text END AS data_type,
                   character_maximum_length::int, numeric_precision::int, numeric_scale::int, NULL::text AS remarks
            FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema');
        CREATE VIEW information_schema.svv_table_info AS
            SELECT current_database()::text AS database, n.nspname::text AS schema, c.oid::int AS table_id,
                   c.relname::text AS "table", 'EVEN'::text AS diststyle,
                   (SELECT a.attname::text FROM pg_index i
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = c.oid AND i.indisprimary) AS sortkey1,
                   (pg_total_relation_size(c.oid) / 1048576 + 1)::bigint AS size,
                   c.reltuples::bigint AS tbl_rows, c.reltuples::numeric(38,0) AS estimated_visible_rows
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND c.reltuples >= 0 AND n.nspname !~ '^pg_'
              AND n.nspname NOT IN ('information_schema');
        GRANT SELECT ON information_schema.svv_tables, information_schema.svv_columns,
                        information_schema.svv_table_info TO {RS_USER};
        CREATE VIEW information_schema.svv_transactions AS
            SELECT usename::text AS txn_owner, datname::text AS txn_db, backend_xid::text::bigint AS xid, pid,
                   xact_start AT TIME ZONE 'UTC' AS txn_start, 'AccessShareLock'::text AS lock_mode,
                   'relation'::text AS lockable_object_type, NULL::int AS relation, true AS granted
            FROM pg_stat_activity WHERE xact_start IS NOT NULL;
        CREATE VIEW information_schema.svl_user_info AS
            SELECT usename::text, usesysid, usesuper,
                   CASE WHEN usesuper OR pg_has_role(usename, 'pg_read_all_stats', 'member')
                        THEN 'UNRESTRICTED' ELSE 'RESTRICTED' END AS syslogaccess
            FROM pg_user;
        GRANT SELECT ON information_schema.svv_transactions, information_schema.svl_user_info TO {RS_USER};
        CREATE FUNCTION public.getdate() RETURNS timestamp LANGUAGE sql VOLATILE
            AS $$SELECT date_trunc('second', clock_timestamp() AT TIME ZONE 'UTC')$$;
        CREATE DOMAIN public.super AS text;
        CREATE DOMAIN public.hllsketch AS text;
        CREATE DOMAIN public.geometry AS bytea;
        CREATE DOMAIN public.geography AS bytea;
        CREATE DOMAIN public.varbyte AS bytea;
        CREATE FUNCTION public.st_asbinary(geometry) RETURNS bytea LANGUAGE sql IMMUTABLE AS 'SELECT $1::bytea';
        CREATE FUNCTION public.st_asbinary(geography) RETURNS bytea LANGUAGE sql IMMUTABLE AS 'SELECT $1::bytea';
        CREATE SCHEMA sales;
        ALTER DEFAULT PRIVILEGES IN SCHEMA sales GRANT SELECT ON TABLES TO {RS_USER};
        GRANT USAGE ON SCHEMA sales TO {RS_USER};
        CREATE TABLE sales.orders (id integer PRIMARY KEY, customer varchar(40), amount numeric(12,2),
                                   updated_at timestamptz NOT NULL);
        CREATE VIEW sales.big_orders AS SELECT * FROM sales.orders WHERE amount > 500;
        "#
    ));
    pg
}

/// Inserts orders `from..=to`, one second apart.
pub(crate) fn insert_orders(pg: &PgServer, from: i64, to: i64) {
    pg.psql_admin(&format!(
        "INSERT INTO sales.orders SELECT g, 'customer ' || g, g % 1000 + 0.25, \
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' FROM generate_series({from}, {to}) g;"
    ));
}

fn connection_sql(name: &str, pg: &PgServer, port: u16, password: &str) -> String {
    format!(
        "CREATE CONNECTION {name} TYPE redshift OPTIONS (host '127.0.0.1', port {port}, database '{}', \
         user '{RS_USER}', password '{password}', sslmode 'disable')",
        pg.db
    )
}

async fn connect_rs(client: &Client, pg: &PgServer) {
    client
        .batch_execute(&connection_sql("rs", pg, pg.port, RS_PASSWORD))
        .await
        .unwrap();
}

/// What the Redshift connection's sessions sent, from the stand-in's log.
pub(crate) fn redshift_statements(pg: &PgServer) -> Vec<String> {
    let mut ours = Vec::new();
    let mut current_is_ours = false;
    for line in pg.log_contents().lines() {
        let prefix: Vec<&str> = line.splitn(3, ':').collect();
        if prefix.len() == 3 && prefix[1].chars().all(|c| c.is_ascii_digit()) && !prefix[1].is_empty() {
            current_is_ours = prefix[0] == RS_USER;
            if current_is_ours {
                ours.push(prefix[2].to_owned());
            }
        } else if current_is_ours && let Some(last) = ours.last_mut() {
            last.push('\n');
            last.push_str(line);
        }
    }
    ours
}

/// What of `sent` Redshift would refuse: extended-protocol messages (the
/// only way to ask for binary results) and objects or forms it lacks.
pub(crate) fn violations(sent: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in sent {
        let lower = entry.to_lowercase();
        if ["log:  execute", "log:  bind", "log:  parse"]
            .iter()
            .any(|m| lower.contains(m))
        {
            found.push(format!("extended protocol: {entry}"));
        }
        for word in NOT_IN_REDSHIFT.iter().filter(|w| lower.contains(*w)) {
            found.push(format!("{word:?}: {entry}"));
        }
    }
    found
}

/// Every statement of the Redshift connection was a simple query in a form
/// Redshift serves; `expected` must all have been sent.
fn assert_speaks_redshift(pg: &PgServer, expected: &[&str]) {
    let sent = redshift_statements(pg);
    assert!(!sent.is_empty(), "the stand-in logged nothing of {RS_USER}");
    let found = violations(&sent);
    assert!(found.is_empty(), "sent what Redshift refuses:\n{}", found.join("\n"));
    for needle in expected {
        assert!(
            sent.iter().any(|entry| entry.contains(needle)),
            "never sent {needle:?}; sent:\n{}",
            sent.join("\n")
        );
    }
}

/// The log check catches what a PostgreSQL connection sends: the same
/// user through `TYPE postgres` (binary `COPY`, catalog queries with bind
/// parameters) is flagged.
#[tokio::test]
async fn the_statement_log_check_catches_what_postgres_sends() {
    let pg = standin();
    insert_orders(&pg, 1, 3);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION as_pg TYPE postgres OPTIONS (host '127.0.0.1', port {}, database '{}', \
             user '{RS_USER}', password '{RS_PASSWORD}', sslmode 'disable')",
            pg.port, pg.db
        ))
        .await
        .unwrap();
    assert_eq!(rows(&client, "SELECT id FROM as_pg.sales.orders").await.len(), 3);
    let found = violations(&redshift_statements(&pg)).join("\n");
    assert!(
        found.contains("extended protocol") && found.contains("\"copy \""),
        "{found}"
    );
}

#[tokio::test]
async fn connections_are_tested_before_they_are_saved() {
    let pg = standin();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let types = rows(&client, "SHOW CONNECTION TYPES").await;
    let redshift = types.iter().find(|t| t[0].as_deref() == Some("redshift")).unwrap();
    assert_eq!(redshift[3].as_deref(), Some("available"), "{redshift:?}");
    assert!(
        redshift[4].as_deref().unwrap().contains("port integer default 5439"),
        "{redshift:?}"
    );

    let message = expect_err(&client, &connection_sql("bad_pw", &pg, pg.port, "nope"), "28P01").await;
    assert!(message.contains("bad_pw"), "{message}");
    let closed = free_port();
    let message = expect_err(&client, &connection_sql("refused", &pg, closed, RS_PASSWORD), "08001").await;
    assert!(message.contains("refused"), "{message}");
    assert!(rows(&client, "SHOW CONNECTIONS").await.is_empty(), "nothing half-saved");

    connect_rs(&client, &pg).await;
    client.batch_execute("TEST CONNECTION rs").await.unwrap();
    let listed = rows(&client, "SHOW CONNECTIONS").await;
    assert_eq!(listed[0][1].as_deref(), Some("redshift"));
    assert!(
        !listed[0].iter().flatten().any(|v| v.contains(RS_PASSWORD)),
        "{listed:?}"
    );
    assert_speaks_redshift(&pg, &["statement: SELECT 1"]);
}

#[tokio::test]
async fn schemas_tables_and_columns_come_from_the_catalog_views() {
    let pg = standin();
    insert_orders(&pg, 1, 1000);
    pg.psql_admin("ANALYZE sales.orders;");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    connect_rs(&client, &pg).await;

    let schemas: Vec<_> = rows(&client, "SHOW SCHEMAS FROM rs")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(schemas, ["public", "sales"]);

    let tables = rows(&client, "SHOW TABLES FROM rs.sales").await;
    let orders = tables.iter().find(|t| t[1].as_deref() == Some("orders")).unwrap();
    assert_eq!(orders[2].as_deref(), Some("table"));
    assert_eq!(
        orders[3].as_deref(),
        Some("1000"),
        "estimated rows from svv_table_info: {orders:?}"
    );
    assert_eq!(
        orders[4].as_deref(),
        Some("1048576"),
        "size from svv_table_info blocks: {orders:?}"
    );
    let view = tables.iter().find(|t| t[1].as_deref() == Some("big_orders")).unwrap();
    assert_eq!((view[2].as_deref(), view[3].as_deref()), (Some("view"), None));

    let described = rows(&client, "DESCRIBE rs.sales.orders").await;
    let summary: Vec<_> = described
        .iter()
        .map(|r| {
            (
                r[0].clone().unwrap(),
                r[2].clone().unwrap(),
                r[3].clone().unwrap(),
                r[7].clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("id".into(), "integer".into(), "f".into(), "INT64".into()),
            (
                "customer".into(),
                "character varying(40)".into(),
                "t".into(),
                "STRING".into()
            ),
            (
                "amount".into(),
                "numeric(12,2)".into(),
                "t".into(),
                "NUMERIC(12, 2)".into()
            ),
            (
                "updated_at".into(),
                "timestamp with time zone".into(),
                "f".into(),
                "TIMESTAMP".into()
            ),
        ],
        "{described:?}"
    );
    let updated_at = &described[3];
    assert!(
        updated_at[6].as_deref().unwrap_or_default().contains("recommended"),
        "{updated_at:?}"
    );

    let message = expect_err(&client, "DESCRIBE rs.sales.ordres", "42704").await;
    assert!(message.contains("orders"), "{message}");
    expect_err(&client, "SHOW TABLES FROM rs.sale", "42704").await;

    // Live SQL with the filter and limit pushed into the cursor's query.
    let picked = rows(
        &client,
        "SELECT id, amount FROM rs.sales.orders WHERE id > 995 ORDER BY id",
    )
    .await;
    assert_eq!(picked.len(), 5);
    assert_eq!(picked[0], [Some("996".into()), Some("996.25".into())]);
    let counted = rows(&client, "SELECT count(*) FROM rs.sales.orders").await;
    assert_eq!(counted[0][0].as_deref(), Some("1000"));
    // A value Arrow cannot hold is refused, naming the column and the value.
    pg.psql_admin("CREATE TABLE sales.odd (d date); INSERT INTO sales.odd VALUES ('infinity');");
    let message = expect_err(&client, "SELECT d FROM rs.sales.odd", "22P02").await;
    assert!(
        message.contains("column \"d\"") && message.contains("infinity"),
        "{message}"
    );
    assert_speaks_redshift(
        &pg,
        &[
            "FROM svv_tables",
            "FROM svv_columns",
            "svv_table_info",
            "DECLARE sluice_scan CURSOR FOR SELECT \"id\", \"amount\" FROM \"sales\".\"orders\" WHERE",
            "FETCH FORWARD",
        ],
    );
}

/// A table of every Redshift type: one row of values, one of NULLs.
pub(crate) const ALL_TYPES: &str = r#"
        CREATE TABLE sales.all_types (
            s smallint, i integer, b bigint, d numeric(12,2), r real, f double precision, ok boolean,
            c char(3), v varchar(10), dt date, ts timestamp, tstz timestamptz, t time, ttz timetz,
            iym interval year to month, ids interval day to second, geom geometry, geog geography,
            h hllsketch, j super, vb varbyte);
        INSERT INTO sales.all_types VALUES (
            1, 2, 3, 12.34, 1.5, 2.25, true, 'ab', 'hello', '2024-01-02', '2024-01-02 03:04:05.123456',
            '2024-01-02 03:04:05.5+00', '10:30:00', '10:30:00+02', '1 year 2 months', '3 days 04:05:06',
            decode('0101000000000000000000f03f0000000000000040', 'hex'),
            decode('0101000000000000000000f03f0000000000000040', 'hex'),
            '{"version":1,"logm":15}', '{"a": [1, 2]}', decode('deadbeef', 'hex'));
        INSERT INTO sales.all_types DEFAULT VALUES;
        "#;

#[tokio::test]
async fn every_redshift_type_is_described_and_read_as_documented() {
    let pg = standin();
    pg.psql_admin(ALL_TYPES);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    connect_rs(&client, &pg).await;

    let described = rows(&client, "DESCRIBE rs.sales.all_types").await;
    let types: Vec<(String, String)> = described
        .iter()
        .map(|r| (r[2].clone().unwrap(), r[7].clone().unwrap()))
        .collect();
    let expected = [
        ("smallint", "INT64"),
        ("integer", "INT64"),
        ("bigint", "INT64"),
        ("numeric(12,2)", "NUMERIC(12, 2)"),
        ("real", "FLOAT64"),
        ("double precision", "FLOAT64"),
        ("boolean", "BOOL"),
        ("character(3)", "STRING"),
        ("character varying(10)", "STRING"),
        ("date", "DATE"),
        ("timestamp without time zone", "DATETIME"),
        ("timestamp with time zone", "TIMESTAMP"),
        ("time without time zone", "TIME"),
        ("time with time zone", "STRING"),
        ("interval year to month", "STRING"),
        ("interval day to second", "STRING"),
        ("geometry", "BYTES"),
        ("geography", "GEOGRAPHY"),
        ("hllsketch", "STRING"),
        ("super", "JSON"),
        ("varbyte", "BYTES"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(types, expected);

    // Through a snapshot job into the warehouse, then read back.
    client
        .batch_execute("CREATE ETL JOB all_types FROM rs.sales.all_types INTO warehouse.all_types SNAPSHOT")
        .await
        .unwrap();
    let run = rows(&client, "RUN ETL JOB all_types").await;
    assert_eq!(run[0][1].as_deref(), Some("succeeded"), "{run:?}");
    let loaded = rows(
        &client,
        "SELECT s, i, b, CAST(d AS VARCHAR), r, f, ok, c, v, CAST(dt AS VARCHAR), CAST(ts AS VARCHAR), \
                CAST(tstz AS VARCHAR), CAST(t AS VARCHAR), ttz, iym, ids, encode(geom, 'hex'), encode(geog, 'hex'), \
                h, j, encode(vb, 'hex') \
         FROM warehouse.all_types ORDER BY s NULLS LAST",
    )
    .await;
    let point = "0101000000000000000000f03f0000000000000040";
    let expected = [
        "1",
        "2",
        "3",
        "12.34",
        "1.5",
        "2.25",
        "t",
        "ab ",
        "hello",
        "2024-01-02",
        "2024-01-02T03:04:05.123456",
        "2024-01-02T03:04:05.500Z",
        "10:30:00",
        "10:30:00+02",
        "1 year 2 mons",
        "3 days 04:05:06",
        point,
        point,
        r#"{"version":1,"logm":15}"#,
        r#"{"a": [1, 2]}"#,
        "deadbeef",
    ];
    let first: Vec<&str> = loaded[0].iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
    assert_eq!(first, expected);
    assert!(loaded[1].iter().all(Option::is_none), "{:?}", loaded[1]);
    assert_speaks_redshift(&pg, &["ST_AsBinary(\"geom\")", "ST_AsBinary(\"geog\")"]);
}

pub(crate) async fn fingerprint(client: &Client, table: &str) -> String {
    let r = rows(
        client,
        &format!("SELECT count(*), count(DISTINCT id), sum(id) FROM warehouse.{table}"),
    )
    .await;
    r[0].iter()
        .map(|v| v.clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("|")
}

pub(crate) fn source_fingerprint(pg: &PgServer) -> String {
    pg.psql_admin("SELECT count(*), count(DISTINCT id), sum(id) FROM sales.orders")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn snapshot_and_incremental_jobs_load_every_row_once() {
    let pg = standin();
    insert_orders(&pg, 1, 2500);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    connect_rs(&client, &pg).await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM rs.sales.orders INTO warehouse.orders_inc INCREMENTAL BY updated_at ALL \
             WITH (batch_rows = 1000); \
             CREATE ETL JOB orders_snap FROM rs.sales.orders INTO warehouse.orders_snap SNAPSHOT WITH (batch_rows = 1000)",
        )
        .await
        .unwrap();
    for (round, (from, to)) in [(0, 0), (2501, 4000), (4001, 4001)].into_iter().enumerate() {
        if from > 0 {
            insert_orders(&pg, from, to);
        }
        for job in ["orders_inc", "orders_snap"] {
            let run = rows(&client, &format!("RUN ETL JOB {job}")).await;
            assert_eq!(run[0][1].as_deref(), Some("succeeded"), "round {round} {job}: {run:?}");
        }
        let expected = source_fingerprint(&pg);
        assert_eq!(fingerprint(&client, "orders_inc").await, expected, "round {round}");
        assert_eq!(fingerprint(&client, "orders_snap").await, expected, "round {round}");
    }
    // Only the new rows were read by the last incremental run.
    let last = rows(
        &client,
        "SELECT rows FROM sluice.runs WHERE job = 'orders_inc' ORDER BY run_id DESC LIMIT 1",
    )
    .await;
    assert_eq!(last[0][0].as_deref(), Some("1"));
    assert_speaks_redshift(
        &pg,
        &["FETCH FORWARD 1000 FROM sluice_scan", "CLOSE sluice_scan; COMMIT"],
    );
}

/// VERIFY computes the source's checksums in Redshift's SQL (`||`, not a
/// many-argument CONCAT; VARCHAR(65535), not Redshift's 256-character
/// `text`; microseconds that do not depend on how Redshift splits
/// EXTRACT's parts) and agrees with the warehouse's, also for fractional
/// and pre-1970 cursor values; a changed row shows in its hour, and REPAIR
/// of that hour makes the two equal again.
#[tokio::test]
async fn verify_and_repair_compute_in_redshift_sql() {
    let pg = standin();
    insert_orders(&pg, 1, 7300);
    pg.psql_admin(
        "INSERT INTO sales.orders VALUES \
         (90001, 'before 1970', 1, '1969-12-31 23:59:59.123456+00'), \
         (90002, 'fraction', 2, '2024-01-01 00:30:00.000001+00'), \
         (90003, 'é😀', 3, '2024-01-01 01:59:59.999999+00');",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    connect_rs(&client, &pg).await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM rs.sales.orders INTO warehouse.orders_inc INCREMENTAL BY updated_at ALL; \
             CREATE ETL JOB orders_snap FROM rs.sales.orders INTO warehouse.orders_snap SNAPSHOT; \
             RUN ETL JOB orders_inc; RUN ETL JOB orders_snap",
        )
        .await
        .unwrap();
    for verify in [
        "VERIFY ETL JOB orders_inc",
        "VERIFY ETL JOB orders_inc BY HOUR",
        "VERIFY ETL JOB orders_snap",
    ] {
        assert!(rows(&client, verify).await.is_empty(), "{verify}");
    }
    let buckets = rows(
        &client,
        "SELECT buckets FROM sluice.verifications WHERE job = 'orders_inc' AND bucket_by = 'hour'",
    )
    .await;
    assert_eq!(
        buckets[0][0].as_deref(),
        Some("4"),
        "1969-12-31 23:00 and three hours of 2024"
    );

    pg.psql_admin("UPDATE sales.orders SET updated_at = updated_at + interval '1 microsecond' WHERE id = 4000");
    let differ = rows(&client, "VERIFY ETL JOB orders_inc BY HOUR").await;
    let hours: Vec<_> = differ.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(hours, ["2024-01-01 01:00"], "{differ:?}");
    let repair = rows(
        &client,
        "REPAIR ETL JOB orders_inc FROM '2024-01-01 01:00:00+00' TO '2024-01-01 02:00:00+00'",
    )
    .await;
    assert_eq!(repair[0][1].as_deref(), Some("succeeded"), "{repair:?}");
    assert!(rows(&client, "VERIFY ETL JOB orders_inc BY HOUR").await.is_empty());
    assert_eq!(fingerprint(&client, "orders_inc").await, source_fingerprint(&pg));
    assert_speaks_redshift(&pg, &["VARCHAR(65535)", "md5(("]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_rerun_loads_every_row_once() {
    const ROWS: i64 = 60_000;
    let pg = standin();
    let mut sluice = Sluice::start();
    let mut client = sluice.client().await;
    connect_rs(&client, &pg).await;
    client
        .batch_execute(
            "CREATE ETL JOB orders_inc FROM rs.sales.orders INTO warehouse.orders_inc INCREMENTAL BY updated_at ALL \
             WITH (batch_rows = 2000); \
             CREATE ETL JOB orders_snap FROM rs.sales.orders INTO warehouse.orders_snap SNAPSHOT WITH (batch_rows = 2000)",
        )
        .await
        .unwrap();
    let mut next = 1;
    for (round, delay_ms) in [50u64, 300, 900].into_iter().enumerate() {
        insert_orders(&pg, next, next + ROWS - 1);
        next += ROWS;
        for job in ["orders_inc", "orders_snap"] {
            rows(&client, &format!("RUN ETL JOB {job} ASYNC")).await;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            sluice.kill9();
            sluice.restart();
            client = sluice.client().await;
            let unsettled = rows(&client, "SELECT run_id FROM sluice.runs WHERE status = 'running'").await;
            assert!(unsettled.is_empty(), "round {round}: {unsettled:?}");
        }
        for job in ["orders_inc", "orders_snap"] {
            let run = rows(&client, &format!("RUN ETL JOB {job}")).await;
            assert_eq!(run[0][1].as_deref(), Some("succeeded"), "{run:?}");
        }
        let expected = source_fingerprint(&pg);
        assert_eq!(fingerprint(&client, "orders_inc").await, expected, "round {round}");
        assert_eq!(fingerprint(&client, "orders_snap").await, expected, "round {round}");
    }
    let interrupted = rows(
        &client,
        "SELECT count(*) FROM sluice.runs WHERE status = 'failed' AND error LIKE 'interrupted%'",
    )
    .await;
    assert_ne!(interrupted[0][0].as_deref(), Some("0"), "some kills interrupted a run");
    assert_speaks_redshift(&pg, &["DECLARE sluice_scan CURSOR"]);
}

/// A session of the `postgres` superuser on the stand-in.
async fn admin(pg: &PgServer) -> Client {
    let mut config = pg.config();
    config.user("postgres").password(pg.admin_password.as_str());
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn the_commit_guard_waits_for_transactions_open_in_svv_transactions() {
    let pg = standin();
    insert_orders(&pg, 1, 10);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    connect_rs(&client, &pg).await;
    // Without unrestricted system table access the user sees only its own
    // transactions: the job is created with a NOTICE, its runs say so.
    let output = sluice.psql(
        "CREATE ETL JOB orders FROM rs.sales.orders INTO warehouse.orders INCREMENTAL BY updated_at ALL \
         WITH (guard_margin = '1 second');",
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(
        notices.contains("cannot see other sessions' transactions") && notices.contains("SYSLOG ACCESS UNRESTRICTED"),
        "{notices}"
    );
    pg.psql_admin(&format!("GRANT pg_read_all_stats TO {RS_USER}"));

    // A writer stamps row 100 with its transaction's start and keeps it open
    // while newer rows commit.
    let writer = admin(&pg).await;
    writer
        .batch_execute("BEGIN; INSERT INTO sales.orders VALUES (100, 'late', 1, now())")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    pg.psql_admin("INSERT INTO sales.orders SELECT g, 'new', 1, now() FROM generate_series(11, 20) g");
    let first = rows(&client, "RUN ETL JOB orders").await;
    assert_eq!(first[0][1].as_deref(), Some("succeeded"), "{first:?}");
    assert_eq!(
        first[0][2].as_deref(),
        Some("10"),
        "only rows older than the open transaction: {first:?}"
    );
    let reason = one(
        &client,
        &format!(
            "SELECT guard_reason FROM sluice.runs WHERE run_id = {}",
            first[0][0].as_deref().unwrap()
        ),
    )
    .await;
    assert!(reason.starts_with("oldest transaction started "), "{reason}");

    writer.batch_execute("COMMIT").await.unwrap();
    // getdate() has whole seconds: let the clock pass the newest rows.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = rows(&client, "RUN ETL JOB orders").await;
    assert_eq!(
        second[0][2].as_deref(),
        Some("11"),
        "the late row and the newer rows: {second:?}"
    );
    let third = rows(&client, "RUN ETL JOB orders").await;
    assert_eq!(third[0][2].as_deref(), Some("0"));
    assert_eq!(fingerprint(&client, "orders").await, source_fingerprint(&pg));
    assert_speaks_redshift(&pg, &["FROM svv_transactions"]);
}
