//! Every documented source type loads into BigQuery (the fake) as the type
//! docs/type-mapping.md shows, and intervals load as INTERVAL text or, with
//! a STRING override, as PostgreSQL prints them.

use crate::bigquery::{self, table_rows};
use crate::common::*;
use crate::fake_bigquery::FakeBigQuery;

use serde_json::Value;
use sluice_engine::connectors::{mysql::types as mysql, postgres::types as postgres};
use sluice_engine::type_mapping::{BigQueryType, TypeMapping};

/// The type name the BigQuery API reports for a documented type.
fn api_name(bigquery: BigQueryType) -> &'static str {
    match bigquery {
        BigQueryType::Bool => "BOOLEAN",
        BigQueryType::Int64 => "INTEGER",
        BigQueryType::Float64 => "FLOAT",
        BigQueryType::Numeric { .. } => "NUMERIC",
        BigQueryType::BigNumeric { .. } => "BIGNUMERIC",
        BigQueryType::String => "STRING",
        BigQueryType::Bytes => "BYTES",
        BigQueryType::Date => "DATE",
        BigQueryType::Datetime => "DATETIME",
        BigQueryType::Time => "TIME",
        BigQueryType::Timestamp => "TIMESTAMP",
        BigQueryType::Json => "JSON",
        BigQueryType::Interval => "INTERVAL",
        BigQueryType::Geography => "GEOGRAPHY",
    }
}

/// Checks that the fake's table `table` has column `c{i}` of the documented
/// type and mode of `documented[i]`, for every column the source could
/// create; returns how many columns were checked.
fn check_columns(fake: &FakeBigQuery, table: &str, documented: &[(String, TypeMapping)]) -> usize {
    let resource = fake.table("raw_data", table).expect("the table was created").resource;
    let fields = resource
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .unwrap()
        .clone();
    let mut checked = 0;
    for field in &fields {
        let name = field["name"].as_str().unwrap();
        let Some(index) = name.strip_prefix('c').and_then(|i| i.parse::<usize>().ok()) else {
            continue;
        };
        let (label, mapping) = &documented[index];
        assert_eq!(
            field["type"].as_str(),
            Some(api_name(mapping.bigquery)),
            "{label} is documented as {}, BigQuery got {field}",
            mapping.bigquery_ddl()
        );
        assert_eq!(
            field["mode"].as_str(),
            Some(mapping.mode(true).to_string().as_str()),
            "{label}: {field}"
        );
        checked += 1;
    }
    checked
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_postgres_type_loads_as_documented() {
    let env = bigquery::setup(&[]).await;
    let documented: Vec<(String, TypeMapping)> = postgres::examples()
        .into_iter()
        .map(|(label, column)| (label.to_owned(), postgres::map(&column)))
        .collect();
    let mut script = String::from(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
         CREATE TYPE address AS (street text, no integer);
         CREATE TABLE public.all_types (id integer PRIMARY KEY);",
    );
    // Types of extensions that are not installed (and pseudo-types) cannot
    // be columns: those are skipped, everything else must load.
    for (i, (_, column)) in postgres::examples().iter().enumerate() {
        script.push_str(&format!(
            "DO $$ BEGIN EXECUTE 'ALTER TABLE public.all_types ADD COLUMN c{i} {}';
             EXCEPTION WHEN undefined_object OR invalid_table_definition THEN NULL; END $$;",
            column.formatted.replace('\'', "''")
        ));
    }
    script.push_str("INSERT INTO public.all_types (id) VALUES (1);");
    env.pg.psql_admin_db("shop", &script);
    env.client
        .batch_execute("CREATE ETL JOB all_pg FROM shop.public.all_types INTO wh.all_pg SNAPSHOT; RUN ETL JOB all_pg")
        .await
        .unwrap();
    let checked = check_columns(&env.fake, "all_pg", &documented);
    // All but citext, hstore, PostGIS geography and geometry, ltree and anyarray.
    assert_eq!(checked, documented.len() - 6, "columns checked");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_mysql_type_loads_as_documented() {
    let env = bigquery::setup(&[]).await;
    let maria = MariaDb::start();
    let documented: Vec<(String, TypeMapping)> = mysql::examples()
        .into_iter()
        .map(|(label, column)| (label.to_owned(), mysql::map(&column)))
        .collect();
    maria.sql_db("shop", "CREATE TABLE all_types (id int PRIMARY KEY)");
    let mut created = 0;
    for (i, (label, column)) in mysql::examples().iter().enumerate() {
        if *label == "json" {
            // MariaDB's JSON is LONGTEXT with a check: it reports longtext.
            continue;
        }
        // Types this MariaDB version lacks (uuid, inet4, vector...) are skipped.
        let added = maria.cli_tcp(&format!("ALTER TABLE all_types ADD COLUMN c{i} {}", column.column_type));
        created += usize::from(added.status.success());
    }
    maria.sql_db("shop", "INSERT INTO all_types (id) VALUES (1)");
    env.client
        .batch_execute(&format!(
            "CREATE CONNECTION crm TYPE mariadb OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', \
             password '{ETL_PASSWORD}');
             CREATE ETL JOB all_my FROM crm.shop.all_types INTO wh.all_my SNAPSHOT; RUN ETL JOB all_my",
            maria.port
        ))
        .await
        .unwrap();
    assert!(created >= documented.len() - 5, "MariaDB created {created} columns");
    assert_eq!(check_columns(&env.fake, "all_my", &documented), created);
}

const INTERVALS: &str = "
CREATE TABLE public.waits (id integer PRIMARY KEY, iv interval);
INSERT INTO public.waits VALUES (1, '1 year 2 mons 3 days 04:05:06.789'), (2, '-1 days +01:00:00'), (3, NULL);
";

#[tokio::test(flavor = "multi_thread")]
async fn intervals_load_as_interval_text_or_postgres_text() {
    let env = bigquery::setup(&[]).await;
    env.pg.psql_admin_db("shop", INTERVALS);
    env.client
        .batch_execute(
            "CREATE ETL JOB waits FROM shop.public.waits INTO wh.waits SNAPSHOT; RUN ETL JOB waits;
             CREATE ETL JOB waits_text FROM shop.public.waits INTO wh.waits_text SNAPSHOT COLUMNS (iv STRING);
             RUN ETL JOB waits_text",
        )
        .await
        .unwrap();
    assert_eq!(
        table_rows(&env.fake, "waits"),
        ["1|1-2 3 4:5:6.789", "2|0-0 -1 1:0:0", "3|NULL"]
    );
    let resource = env.fake.table("raw_data", "waits").unwrap().resource;
    assert_eq!(
        resource.pointer("/schema/fields/1/type"),
        Some(&Value::from("INTERVAL"))
    );
    assert_eq!(
        table_rows(&env.fake, "waits_text"),
        ["1|1 year 2 mons 3 days 04:05:06.789", "2|-1 days +01:00:00", "3|NULL"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interval_beyond_bigquery_range_is_refused_naming_the_column() {
    let env = bigquery::setup(&[]).await;
    env.pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.long_waits (id integer PRIMARY KEY, iv interval);
         INSERT INTO public.long_waits VALUES (1, '20000 years');",
    );
    env.client
        .batch_execute("CREATE ETL JOB long_waits FROM shop.public.long_waits INTO wh.long_waits SNAPSHOT")
        .await
        .unwrap();
    let err = env.client.batch_execute("RUN ETL JOB long_waits").await.unwrap_err();
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(
        message.contains("column \"iv\"") && message.contains("beyond BigQuery's INTERVAL range"),
        "{message}"
    );
    assert!(!message.contains("BigQuery failed"), "{message}");
    assert_eq!(
        env.fake
            .table("raw_data", "long_waits")
            .map(|t| t.num_rows())
            .unwrap_or(0),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layout_that_does_not_fit_is_sluices_own_error() {
    let env = bigquery::setup(&[]).await;
    let err = env
        .client
        .batch_execute(
            "CREATE ETL JOB orders_bad FROM shop.public.orders INTO wh.orders_bad SNAPSHOT WITH (cluster_by = 'nope')",
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22023", "{err:?}");
    let message = err.as_db_error().unwrap().message().to_owned();
    assert!(
        message.contains("cluster_by column \"nope\"") && !message.contains("BigQuery failed"),
        "{message}"
    );
    assert!(env.fake.table("raw_data", "orders_bad").is_none());
}
