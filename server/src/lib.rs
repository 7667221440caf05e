//! The Sluice server: the Postgres wire front end, Sluice statements and the
//! system tables. It turns engine errors into SQLSTATEs.

mod advisory_locks;
mod app;
mod auth;
pub mod cli;
mod copy_out;
mod demo;
mod errors;
mod execute;
mod handler;
mod listener;
mod login;
mod metrics;
mod pg_catalog_overlay;
mod pg_functions;
mod pg_rewrite;
mod public_table_error;
mod public_tables;
mod scram;
mod session_settings;
mod session_time_zone;
mod settings_hook;
mod source_catalogs;
mod sql_guard;
mod sql_session;
mod state;
mod statements;
mod system_filter;
mod system_tables;
mod throttle;
mod tls;
mod transaction_block;
mod type_modifiers;
mod views;
mod wide_decimals;
