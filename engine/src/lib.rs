//! The Sluice engine: everything between the server's statements and the
//! catalog, with no wire-protocol code.
//!
//! - [`contract`] is what a connection type implements: its
//!   [`ConnectionType`](contract::ConnectionType) and
//!   [`Driver`](contract::Driver), the [`Source`](contract::Source),
//!   [`Destination`](contract::Destination) and
//!   [`ChangeSource`](contract::ChangeSource) traits, the types they
//!   exchange and their typed errors. It names no other engine module but
//!   plain-data leaves.
//! - [`connectors`] is the registry of every type, one folder per driver
//!   family holding its live test, source, dialect, type mapping and, for
//!   BigQuery, its destination.
//! - [`connections`] creates, alters, tests and drops saved connections and
//!   opens them as sources and destinations; [`options`] validates and
//!   resolves their options and secrets.
//! - [`sources`] turns source tables into DataFusion tables with filters
//!   pushed down; [`type_mapping`] maps column types to Arrow and BigQuery.
//! - [`destinations`] holds the local Parquet warehouse.
//! - [`jobs`] defines ETL jobs and runs them exactly once (window, copy,
//!   destination commit, then the catalog); [`scheduler`] runs them on their
//!   [`schedule`]s with retries; [`alerts`] tells webhooks when runs fail
//!   or recover and connections fail.
//!
//! Errors are typed ([`EngineError`] and the contract's errors); the server
//! turns them into SQLSTATEs. docs/architecture.md walks a run through these
//! modules.

pub mod alerts;
pub mod allowed_paths;
mod aws;
mod backoff;
pub mod cdc;
pub mod connections;
pub mod connectors;
pub mod contract;
pub mod destinations;
mod error;
mod explore;
pub mod failpoint;
mod google;
pub mod jobs;
pub mod memory;
pub mod metrics;
pub mod options;
pub mod schedule;
pub mod scheduler;
pub mod scrub;
pub mod secret_stores;
pub mod sources;
mod tls;
pub mod type_mapping;

pub use connections::{AlterConnection, ConnectionManager, CreateConnection, CreateOutcome, TestOutcome};
pub use error::{EngineError, find_cause, set_sqlstate_mapping};
