//! Integration tests: one test crate (one link), a module per area.
//! Servers are started per test by the harness in `common`.

mod common;
mod fake_bigquery;

mod bigquery;
mod bigquery_live;
mod bigquery_restore;
mod bq_budget;
mod bq_credentials;
mod bq_emulator;
mod bq_location;
mod bq_table_ops;
mod bq_token;
mod bq_types;
mod clients;
mod commit_guard;
mod connections;
mod demo;
mod docs_examples;
mod durability;
mod durability_runs;
mod exactly_once;
mod explore;
mod harness;
mod job_ops;
mod jobs;
mod parallel;
mod redaction;
mod reserved_names;
mod scheduler;
mod schema_changes;
mod secrets_destinations;
mod security_errors;
mod security_sql;
mod security_wire;
mod server;
mod source_buckets;
mod source_dynamodb;
mod source_local;
mod source_mysql;
mod source_postgres;
mod source_redis;
mod source_tls;
mod trust_store;
mod warehouse_cloud;
mod warehouse_trust;
