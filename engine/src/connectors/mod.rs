//! The registry of connection types: one folder per type family, each
//! declaring its [`ConnectionType`] entries, and the one list of them all.

mod azure_blob;
pub(crate) mod bigquery;
mod cassandra;
mod documents;
mod dynamodb;
mod files;
mod firestore;
mod gcs;
mod local;
mod mongodb;
pub mod mysql;
mod planned;
pub mod postgres;
mod redis;
pub mod redshift;
mod s3;
pub mod snowflake;
pub mod sqlserver;
#[cfg(test)]
mod type_docs;

use crate::contract::{ConnectionType, TableOption};
use crate::error::EngineError;

/// Every connection type, in the order `SHOW CONNECTION TYPES` lists them.
static ALL: &[&ConnectionType] = &[
    &postgres::POSTGRES,
    &mysql::MYSQL,
    &mysql::MARIADB,
    &planned::ORACLE,
    &sqlserver::SQLSERVER,
    &planned::DB2,
    &redshift::REDSHIFT,
    &bigquery::BIGQUERY,
    &snowflake::SNOWFLAKE,
    &sqlserver::SYNAPSE,
    &planned::TERADATA,
    &gcs::GCS,
    &s3::S3,
    &azure_blob::AZURE_BLOB,
    &mongodb::MONGODB,
    &cassandra::CASSANDRA,
    &redis::REDIS,
    &firestore::FIRESTORE,
    &dynamodb::DYNAMODB,
    &local::LOCAL,
];

/// Every known connection type, in display order.
pub fn all() -> &'static [&'static ConnectionType] {
    ALL
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

/// The destination table options every destination type declares, with
/// the types that declare each.
fn table_options() -> impl Iterator<Item = (&'static ConnectionType, &'static TableOption)> {
    all().iter().flat_map(|kind| {
        let options = kind.driver.as_ref().and_then(|d| d.destination.as_ref());
        options
            .into_iter()
            .flat_map(|d| d.table_options)
            .map(move |option| (*kind, option))
    })
}

/// The table option called `name` (case-insensitive) of some destination
/// type, for parsing a job's `WITH (...)`.
pub fn table_option(name: &str) -> Option<&'static TableOption> {
    table_options()
        .map(|(_, option)| option)
        .find(|option| option.name.eq_ignore_ascii_case(name))
}

/// The names of every destination's table options, for messages.
pub fn table_option_names() -> Vec<&'static str> {
    let mut names: Vec<_> = table_options().map(|(_, option)| option.name).collect();
    names.dedup();
    names
}

/// The types whose tables take option `name`, for messages.
pub fn table_option_types(name: &str) -> Vec<&'static str> {
    table_options()
        .filter(|(_, option)| option.name == name)
        .map(|(kind, _)| kind.name)
        .collect()
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
    fn identity_options_are_options_of_their_type() {
        for t in all() {
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
