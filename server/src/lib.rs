//! The Sluice server: the Postgres wire front end, Sluice statements and the
//! system tables. It turns engine errors into SQLSTATEs.

mod app;
mod auth;
pub mod cli;
mod demo;
mod errors;
mod execute;
mod handler;
mod metrics;
mod source_catalogs;
mod sql_guard;
mod sql_session;
mod statements;
mod system_tables;
mod views;
mod wide_decimals;
