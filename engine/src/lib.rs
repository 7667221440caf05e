//! The Sluice engine: connection types and their drivers, connection
//! testing, sources and destinations, ETL jobs and their runs (extraction
//! and loading), and the scheduler.
//!
//! The engine knows nothing about the wire protocol; the server turns its
//! typed errors into SQLSTATEs.

pub mod allowed_paths;
pub mod connection_types;
pub mod connections;
pub mod connectors;
pub mod destinations;
mod error;
mod explore;
mod failpoint;
mod failure;
pub mod jobs;
pub mod metrics;
pub mod options;
pub mod schedule;
pub mod scheduler;
pub mod scrub;
pub mod sources;
mod tls;
pub mod type_mapping;

pub use connections::{AlterConnection, ConnectionManager, CreateConnection, CreateOutcome, TestOutcome};
pub use error::{EngineError, find_cause, set_sqlstate_mapping};
pub use failure::{ConnectFailure, ConnectFailureKind};
