//! What a connection type is: its options, status and [`Driver`] (the
//! [`Connector`] that tests it live and the factories of its source,
//! destination and change source). The list of types is the registry in
//! `connectors/mod.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sluice_catalog::OptionValue;

use super::change_source::ChangeSource;
use super::destination::{Destination, DestinationError};
use super::failure::ConnectFailure;
use super::options::{OptionSpec, ResolvedOptions};
use super::source::Source;
use super::table_options::TableOption;

/// Whether Sluice can use a connection type today (see
/// [`ConnectionType::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeStatus {
    /// Connections of this type are tested live and usable.
    Available,
    /// Usable, but verified only against a stand-in of the real server
    /// (see [`Connector::beta`]).
    Beta,
    /// Known and documented, but no driver yet: CREATE fails with 0A000.
    Planned,
}

impl fmt::Display for TypeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TypeStatus::Available => "available",
            TypeStatus::Beta => "beta",
            TypeStatus::Planned => "planned",
        })
    }
}

/// The family a connection type belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Relational,
    Warehouse,
    ObjectStorage,
    NoSql,
    Files,
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Category::Relational => "relational",
            Category::Warehouse => "warehouse",
            Category::ObjectStorage => "object storage",
            Category::NoSql => "nosql",
            Category::Files => "files",
        })
    }
}

/// A live driver for one connection type.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Opens a connection with these options and checks that it works,
    /// giving up after `timeout`.
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure>;

    /// Whether the driver is `beta`: its tests run against a test double
    /// of the server, not a real one.
    fn beta(&self) -> bool {
        false
    }
}

/// Everything Sluice knows about one connection type.
pub struct ConnectionType {
    /// The name used in `TYPE ...`.
    pub name: &'static str,
    pub display_name: &'static str,
    pub category: Category,
    pub options: &'static [OptionSpec],
    /// Options whose values identify the remote end; two connections may not
    /// share them all.
    pub identity_options: &'static [&'static str],
    /// The live driver; `None` for planned types.
    pub driver: Option<Driver>,
}

/// What makes a connection type available: the code that tests, reads and
/// loads its connections.
pub struct Driver {
    /// Tests a connection live.
    pub connector: &'static dyn Connector,
    /// Opens the connection as a source of tables, for types that are one.
    pub source: Option<SourceFactory>,
    /// Opens the connection as a destination of ETL jobs, for types that are one.
    pub destination: Option<DestinationDriver>,
    /// Opens the connection as a source of change data capture, for types
    /// whose change log Sluice reads.
    pub cdc: Option<ChangeSourceFactory>,
}

/// Builds a [`ChangeSource`] from a connection's resolved options;
/// `timeout` bounds every connection attempt.
pub type ChangeSourceFactory = fn(&ResolvedOptions, Duration) -> Arc<dyn ChangeSource>;

/// Builds a [`Source`] from a connection's resolved options; `timeout`
/// bounds every connection attempt.
pub type SourceFactory = fn(&ResolvedOptions, Duration) -> Arc<dyn Source>;

/// Builds a [`Destination`] from a connection's resolved options;
/// `timeout` bounds every connection attempt; `instance` is the catalog's
/// [instance id](sluice_catalog::Catalog::instance_id), for names that must
/// never repeat across catalogs.
pub type DestinationFactory = fn(&ResolvedOptions, Duration, &str) -> Result<Arc<dyn Destination>, DestinationError>;

/// What makes a type's connections destinations of ETL jobs.
pub struct DestinationDriver {
    pub open: DestinationFactory,
    /// The options of the tables it creates (a job's `WITH (...)`).
    pub table_options: &'static [TableOption],
    /// The table operations (loads, copies, DML) the service allows on one
    /// table per UTC day, if it limits them (BigQuery: 1,500). Loads record
    /// what they spend; the engine shows the day's count, warns at 80 %
    /// and marks the job degraded.
    pub table_operations_per_day: Option<u32>,
    /// Writes a cluster task's part into the connection's own staging
    /// store, for types whose loads take files written elsewhere
    /// ([`SharedStore::Connection`](super::SharedStore::Connection)).
    pub part_writer: Option<super::PartWriterFactory>,
}

impl ConnectionType {
    /// Available (or beta) when the type has a driver, planned otherwise.
    pub fn status(&self) -> TypeStatus {
        match &self.driver {
            Some(d) if d.connector.beta() => TypeStatus::Beta,
            Some(_) => TypeStatus::Available,
            None => TypeStatus::Planned,
        }
    }

    /// The identity of a connection with these (prepared) options.
    pub fn identity(&self, options: &BTreeMap<String, OptionValue>) -> Option<String> {
        if self.identity_options.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .identity_options
            .iter()
            .map(|name| match options.get(*name) {
                Some(OptionValue::Text(s)) => format!("{name}={s}"),
                Some(OptionValue::Integer(i)) => format!("{name}={i}"),
                Some(OptionValue::Bool(b)) => format!("{name}={b}"),
                Some(OptionValue::Secret { .. }) | None => format!("{name}=-"),
            })
            .collect();
        Some(format!("{} ({})", self.name, parts.join(", ")))
    }
}
