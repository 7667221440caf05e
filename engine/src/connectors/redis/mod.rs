//! Redis through the `redis` crate (tokio, TLS by rustls): a table is a key
//! pattern named in the `tables` option, read with `SCAN` and pipelines
//! and mapped to rows by the shared document mapping
//! ([`crate::connectors::documents`]; `docs/sources/documents.md`).

mod endpoint;
mod kinds;
mod store;
mod tables;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::connectors::documents::{DocumentSource, KEEP_DOCUMENT, Mapping, ON_TYPE_MISMATCH, SAMPLE};
use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Enum, Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions, Source,
};
use endpoint::Endpoint;
use store::RedisStore;

pub(crate) static REDIS: ConnectionType = ConnectionType {
    name: "redis",
    display_name: "Redis",
    category: Category::NoSql,
    options: &[
        O::required("host", Text, "server host name or address"),
        O::with_default("port", Integer { min: 1, max: 65535 }, "6379", "TCP port"),
        O::with_default(
            "database",
            Integer { min: 0, max: 1024 },
            "0",
            "database number (the schema is dbN)",
        ),
        O::optional("user", Text, "ACL user name (the default user when omitted)"),
        O::optional(
            "password",
            Secret,
            "password of the ACL user, or the requirepass password",
        ),
        O::with_default(
            "tls",
            Enum(&["disable", "require", "verify-full"]),
            "disable",
            "TLS: require encrypts without checking the certificate, verify-full checks it and the host name \
             against the system's roots",
        ),
        O::required(
            "tables",
            Text,
            "tables as name=key pattern pairs, e.g. 'users=user:*, carts=cart:*'",
        ),
        O::with_default(
            "scan_count",
            Integer { min: 1, max: 100_000 },
            "1000",
            "the COUNT hint of each SCAN: keys per page read by one pipeline",
        ),
        SAMPLE,
        KEEP_DOCUMENT,
        ON_TYPE_MISMATCH,
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["host", "port", "database"],
    driver: Some(Driver {
        connector: &RedisConnector,
        source: Some(open),
        destination: None,
        cdc: None,
    }),
};

struct RedisConnector;

#[async_trait]
impl Connector for RedisConnector {
    /// Checks the `tables` option, then connects, authenticates, selects
    /// the database and pings.
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        tables::parse(options.text("tables").unwrap_or_default())
            .map_err(|message| ConnectFailure::new(ConnectFailureKind::OptionMismatch, message))?;
        Endpoint::new(options, timeout).connect().await.map(drop)
    }
}

/// Opens a `redis` connection's options as a source.
fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    let store = RedisStore {
        endpoint: Endpoint::new(options, timeout),
        tables: options.text("tables").unwrap_or_default().to_owned(),
        scan_count: options
            .integer("scan_count")
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(1000),
    };
    Arc::new(DocumentSource {
        store: Arc::new(store),
        mapping: Mapping::from_options(options),
    })
}
