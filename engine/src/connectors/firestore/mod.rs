//! Google Cloud Firestore (native mode) through its REST API: root
//! collections and the collection groups the connection names are tables
//! of the `firestore` schema, read by paged `runQuery` and mapped to rows by
//! the shared document mapping ([`crate::connectors::documents`];
//! `docs/sources/documents.md`).

mod api;
mod store;
mod values;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::connectors::documents::{DocumentSource, KEEP_DOCUMENT, Mapping, ON_TYPE_MISMATCH, SAMPLE};
use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions, Source, SourceError,
};
use api::Api;
use store::{FirestoreStore, GROUP_PREFIX};

pub(crate) static FIRESTORE: ConnectionType = ConnectionType {
    name: "firestore",
    display_name: "Google Firestore",
    category: Category::NoSql,
    options: &[
        O::required("project", Text, "GCP project id"),
        O::with_default("database", Text, "(default)", "database id"),
        O::optional(
            "credentials_file",
            Text,
            "path of a credentials JSON file (service-account key, authorized_user, external_account)",
        ),
        O::optional(
            "credentials",
            Secret,
            "credentials JSON (as credentials_file), or 'application_default' (the default)",
        ),
        O::optional(
            "emulator_host",
            Text,
            "host:port of a Firestore emulator (plain HTTP, no sign-in) instead of firestore.googleapis.com",
        ),
        O::optional(
            "collection_groups",
            Text,
            "comma-separated collection ids whose collection groups are tables named group_<id>",
        ),
        O::with_default(
            "page_size",
            Integer { min: 1, max: 10_000 },
            "1000",
            "documents per runQuery page",
        ),
        SAMPLE,
        KEEP_DOCUMENT,
        ON_TYPE_MISMATCH,
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["project", "database", "emulator_host"],
    driver: Some(Driver {
        connector: &FirestoreConnector,
        source: Some(open),
        destination: None,
        cdc: None,
    }),
};

struct FirestoreConnector;

#[async_trait]
impl Connector for FirestoreConnector {
    /// Lists the root collections, which checks the endpoint, the
    /// credentials and the permission to read the database, and checks
    /// that no collection group's table name is a root collection's.
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        let store = store(options, timeout);
        let listing = tokio::time::timeout(timeout, store.collection_ids())
            .await
            .map_err(|_| {
                ConnectFailure::new(
                    ConnectFailureKind::Timeout,
                    format!("Firestore did not answer within {} seconds", timeout.as_secs()),
                )
            })?;
        let ids = listing.map_err(|e| match e {
            SourceError::Connect(failure) => failure,
            other => ConnectFailure::new(ConnectFailureKind::Other, other.to_string()),
        })?;
        if let Some(clash) = store
            .groups
            .iter()
            .find(|g| ids.contains(&format!("{GROUP_PREFIX}{g}")))
        {
            return Err(ConnectFailure::new(
                ConnectFailureKind::OptionMismatch,
                format!(
                    "collection_groups: the table of collection group {clash} would be named \
                     {GROUP_PREFIX}{clash}, which is a root collection; leave {clash} out"
                ),
            ));
        }
        Ok(())
    }
}

fn store(options: &ResolvedOptions, timeout: Duration) -> FirestoreStore {
    FirestoreStore {
        api: Api::new(options, timeout),
        groups: options
            .text("collection_groups")
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        page_size: options
            .integer("page_size")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1000),
    }
}

/// Opens a `firestore` connection's options as a source.
fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(DocumentSource {
        store: Arc::new(store(options, timeout)),
        mapping: Mapping::from_options(options),
    })
}
