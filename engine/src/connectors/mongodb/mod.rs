//! MongoDB through the official `mongodb` driver: databases are schemas,
//! collections are tables, mapped to rows by the shared document mapping
//! ([`crate::connectors::documents`]; `docs/sources/documents.md`).
//! `beta`: its end-to-end tests run against a wire-level test double
//! (`tests/it/common/mongo_fake.rs`), not a real server.

mod client;
mod errors;
mod pushdown;
mod source;
mod store;
mod values;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::doc;

use crate::connectors::documents::{KEEP_DOCUMENT, ON_TYPE_MISMATCH, SAMPLE};
use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Enum, Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions, Source,
};
use errors::connect_failure;

pub(crate) static MONGODB: ConnectionType = ConnectionType {
    name: "mongodb",
    display_name: "MongoDB",
    category: Category::NoSql,
    options: &[
        O::optional(
            "uri",
            Secret,
            "connection string, mongodb:// or mongodb+srv:// (may hold the password); instead of host, port, user, \
             password, auth_source and tls",
        ),
        O::optional("host", Text, "server host name or address (when no uri)"),
        O::with_default("port", Integer { min: 1, max: 65535 }, "27017", "TCP port"),
        O::optional("user", Text, "user name (SCRAM)"),
        O::optional("password", Secret, "password"),
        O::with_default("auth_source", Text, "admin", "database the user is defined in"),
        O::with_default(
            "tls",
            Enum(&["disable", "require", "verify-full"]),
            "disable",
            "TLS: require encrypts without checking the certificate, verify-full checks it and the host name",
        ),
        O::optional("tls_ca_file", Text, "PEM file of the certificate authorities to trust"),
        O::optional(
            "databases",
            Text,
            "comma-separated databases to show (all but admin, local and config when omitted)",
        ),
        O::with_default(
            "batch_size",
            Integer { min: 1, max: 100_000 },
            "1000",
            "documents per find/getMore batch",
        ),
        SAMPLE,
        KEEP_DOCUMENT,
        ON_TYPE_MISMATCH,
        MAX_CONCURRENT_RUNS,
    ],
    // A uri is a secret, so connections cannot be told apart by their options.
    identity_options: &[],
    driver: Some(Driver {
        connector: &MongoConnector,
        source: Some(open),
        destination: None,
        cdc: None,
    }),
};

struct MongoConnector;

#[async_trait]
impl Connector for MongoConnector {
    /// Runs `hello` and `ping` against the auth database (which
    /// authenticates the user) within the timeout.
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        let work = async {
            let (client, auth_db) = client::connect(&options.into(), timeout).await?;
            let db = client.database(&auth_db);
            for command in [doc! { "hello": 1 }, doc! { "ping": 1 }] {
                db.run_command(command).await.map_err(|e| {
                    connect_failure(&e).unwrap_or_else(|| ConnectFailure::new(ConnectFailureKind::Other, e.to_string()))
                })?;
            }
            Ok(())
        };
        tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
            Err(ConnectFailure::new(
                ConnectFailureKind::Timeout,
                format!("MongoDB did not answer within {} seconds", timeout.as_secs()),
            ))
        })
    }

    fn beta(&self) -> bool {
        true
    }
}

/// Opens a `mongodb` connection's options as a source.
fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(source::MongoSource::new(options, timeout))
}
