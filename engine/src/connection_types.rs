//! The registry of connection types: their options, status and driver.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_catalog::OptionValue;

use crate::connectors::{self, Connector};
use crate::destinations::Destination;
use crate::error::EngineError;
use crate::options::{OptionSpec, ResolvedOptions};
use crate::sources::Source;

/// Whether Sluice can use a connection type today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeStatus {
    /// Connections of this type are tested live and usable.
    Available,
    /// Known and documented, but no driver yet: CREATE fails with 0A000.
    Planned,
}

impl fmt::Display for TypeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TypeStatus::Available => "available",
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

/// Everything Sluice knows about one connection type.
pub struct ConnectionType {
    /// The name used in `TYPE ...`.
    pub name: &'static str,
    pub display_name: &'static str,
    pub category: Category,
    pub status: TypeStatus,
    pub options: &'static [OptionSpec],
    /// Options whose values identify the remote end; two connections may not
    /// share them all.
    pub identity_options: &'static [&'static str],
    /// The live driver, for available types.
    pub connector: Option<&'static dyn Connector>,
    /// Opens the connection as a source of tables, for types that are one.
    pub source: Option<SourceFactory>,
    /// Opens the connection as a destination of ETL jobs, for types that are one.
    pub destination: Option<DestinationFactory>,
}

/// Builds a [`Source`] from a connection's resolved options; `timeout`
/// bounds every connection attempt.
pub type SourceFactory = fn(&ResolvedOptions, Duration) -> Arc<dyn Source>;

/// Builds a [`Destination`] from a connection's resolved options;
/// `timeout` bounds every connection attempt; `instance` is the catalog's
/// [instance id](sluice_catalog::Catalog::instance_id), for names that must
/// never repeat across catalogs.
pub type DestinationFactory = fn(&ResolvedOptions, Duration, &str) -> Result<Arc<dyn Destination>, EngineError>;

impl ConnectionType {
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

/// Every known connection type, in display order.
pub fn all() -> &'static [&'static ConnectionType] {
    connectors::ALL
}

/// Looks a type up by name (case-insensitive).
pub fn lookup(name: &str) -> Result<&'static ConnectionType, EngineError> {
    let lower = name.to_ascii_lowercase();
    all()
        .iter()
        .copied()
        .find(|t| t.name == lower)
        .ok_or_else(|| EngineError::UnknownConnectionType {
            name: name.into(),
            known: all().iter().map(|t| t.name.to_string()).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_of_the_original_system_is_known_once() {
        let names: Vec<_> = all().iter().map(|t| t.name).collect();
        for expected in [
            "postgres",
            "mysql",
            "mariadb",
            "oracle",
            "sqlserver",
            "db2",
            "redshift",
            "bigquery",
            "snowflake",
            "synapse",
            "teradata",
            "gcs",
            "s3",
            "azure_blob",
            "mongodb",
            "cassandra",
            "redis",
            "firestore",
            "dynamodb",
            "local",
        ] {
            assert_eq!(names.iter().filter(|n| **n == expected).count(), 1, "{expected}");
        }
        assert_eq!(names.len(), 20);
    }

    #[test]
    fn available_types_have_a_driver_and_planned_ones_do_not() {
        for t in all() {
            assert_eq!(t.connector.is_some(), t.status == TypeStatus::Available, "{}", t.name);
            for identity in t.identity_options {
                assert!(t.options.iter().any(|o| o.name == *identity), "{}: {identity}", t.name);
            }
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_lists_known_types() {
        assert_eq!(lookup("PostgreS").unwrap().name, "postgres");
        let err = lookup("postgress").err().unwrap().to_string();
        assert!(err.contains("postgres, mysql"), "{err}");
    }
}
