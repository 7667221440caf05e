//! Apache Cassandra (and ScyllaDB) through the `scylla` driver: keyspaces
//! are schemas, tables are tables, described from `system_schema` with a
//! fixed CQL-type mapping ([`types`]) and read in pages of the driver's
//! paging state; rows become Arrow batches through the shared document
//! conversion ([`crate::connectors::documents`]). `beta`: no Cassandra
//! server runs in the test environment (`docs/sources/cassandra.md` says
//! what was verified against what).

mod cql;
mod session;
mod source;
mod types;
mod values;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Enum, Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions, Source,
};

pub(crate) static CASSANDRA: ConnectionType = ConnectionType {
    name: "cassandra",
    display_name: "Apache Cassandra",
    category: Category::NoSql,
    options: &[
        O::required(
            "hosts",
            Text,
            "comma-separated contact points, host or host:port (the driver discovers the other nodes)",
        ),
        O::with_default("port", Integer { min: 1, max: 65535 }, "9042", "native protocol port"),
        O::optional(
            "keyspace",
            Text,
            "the one keyspace to show (must exist); all but the system keyspaces when omitted",
        ),
        O::optional("user", Text, "user name (PasswordAuthenticator)"),
        O::optional("password", Secret, "password"),
        O::with_default(
            "tls",
            Enum(&["disable", "require", "verify-full"]),
            "disable",
            "TLS: require encrypts without checking the certificate, verify-full checks it and the host name",
        ),
        O::optional("tls_ca_file", Text, "PEM file of the certificate authorities to trust"),
        O::optional("datacenter", Text, "local datacenter: its nodes are asked first"),
        O::with_default(
            "consistency",
            Enum(&["one", "local_one", "quorum", "local_quorum", "all"]),
            "local_quorum",
            "consistency level of every read",
        ),
        O::with_default(
            "page_size",
            Integer { min: 1, max: 100_000 },
            "5000",
            "rows per page of a read (the driver's paging state fetches the next)",
        ),
        O::with_default(
            "split_ranges",
            Integer { min: 1, max: 16 },
            "1",
            "token ranges a scan without a LIMIT reads in parallel (a job's WITH (parallelism = n) reads n); 1 reads \
             the table with one SELECT",
        ),
        O::with_default(
            "incremental_filter",
            Enum(&["client", "allow_filtering"]),
            "client",
            "an incremental window: client reads every row and keeps the window's in Sluice; allow_filtering \
             sends the bounds in the CQL WHERE with ALLOW FILTERING (still a full scan on the cluster)",
        ),
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["hosts", "port", "keyspace"],
    driver: Some(Driver {
        connector: &CassandraConnector,
        source: Some(open),
        destination: None,
        cdc: None,
    }),
};

struct CassandraConnector;

#[async_trait]
impl Connector for CassandraConnector {
    /// Opens a session (authenticating the user and, with `keyspace`,
    /// running `USE`) and reads `system.local` within the timeout.
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        let work = async {
            let session = session::connect(&options.into(), timeout).await?;
            session
                .query_unpaged("SELECT release_version FROM system.local", ())
                .await
                .map_err(|e| session::connect_failure(&e))?;
            Ok(())
        };
        tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
            Err(ConnectFailure::new(
                ConnectFailureKind::Timeout,
                format!("Cassandra did not answer within {} seconds", timeout.as_secs()),
            ))
        })
    }

    fn beta(&self) -> bool {
        true
    }
}

/// Opens a `cassandra` connection's options as a source.
fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(source::CassandraSource::new(options, timeout))
}
