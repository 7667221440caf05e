//! Amazon DynamoDB through its JSON API, requests signed with SigV4 by
//! `aws-sigv4` and sent with reqwest: every table is a table of the
//! `dynamodb` schema, read by parallel `Scan` (or a `Query` when a filter
//! fixes a partition key; `expression.rs`) and mapped to rows by the
//! shared document mapping ([`crate::connectors::documents`];
//! `docs/sources/documents.md`).

mod api;
mod expression;
mod items;
mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::connectors::documents::{DocumentSource, KEEP_DOCUMENT, Mapping, ON_TYPE_MISMATCH, SAMPLE};
use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Bool, Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions, Source, SourceError,
};
use api::Api;
use store::{DynamoStore, check_listed};

pub(crate) static DYNAMODB: ConnectionType = ConnectionType {
    name: "dynamodb",
    display_name: "Amazon DynamoDB",
    category: Category::NoSql,
    options: &[
        O::with_default("region", Text, "us-east-1", "AWS region"),
        O::optional(
            "endpoint",
            Text,
            "endpoint URL (DynamoDB Local, moto, a VPC endpoint); default https://dynamodb.<region>.amazonaws.com",
        ),
        O::optional(
            "access_key_id",
            Text,
            "access key id (the AWS credential chain when omitted: environment, shared files, container, instance)",
        ),
        O::optional("secret_access_key", Secret, "secret access key"),
        O::optional("session_token", Secret, "session token of temporary credentials"),
        O::optional(
            "profile",
            Text,
            "profile of the server's shared AWS credentials/config files, when no keys are given (else AWS_PROFILE, \
             else default)",
        ),
        O::optional(
            "tables",
            Text,
            "comma-separated table names to show (all tables when omitted)",
        ),
        O::with_default(
            "segments",
            Integer { min: 1, max: 64 },
            "1",
            "parallel Scan segments (TotalSegments), each with one page in flight",
        ),
        O::with_default(
            "page_size",
            Integer { min: 1, max: 10_000 },
            "1000",
            "items per Scan page (Limit)",
        ),
        O::optional(
            "index_partitions",
            Text,
            "table.index=value|value|..., comma-separated: the complete partition values of an index, so that a read \
             bounding its sort key (an incremental job's window) is one Query per value instead of a Scan",
        ),
        O::with_default(
            "consistent_read",
            Bool,
            "false",
            "strongly consistent Scans (twice the read capacity)",
        ),
        SAMPLE,
        KEEP_DOCUMENT,
        ON_TYPE_MISMATCH,
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["region", "endpoint", "access_key_id"],
    driver: Some(Driver {
        connector: &DynamoConnector,
        source: Some(open),
        destination: None,
        cdc: None,
    }),
};

struct DynamoConnector;

#[async_trait]
impl Connector for DynamoConnector {
    /// Lists the tables (which checks endpoint, credentials and the
    /// `dynamodb:ListTables` permission) and checks that `tables` names
    /// existing ones.
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        let store = store(options, timeout, None);
        let listing = tokio::time::timeout(timeout, store.table_names()).await.map_err(|_| {
            ConnectFailure::new(
                ConnectFailureKind::Timeout,
                format!("DynamoDB did not answer within {} seconds", timeout.as_secs()),
            )
        })?;
        let existing = listing.map_err(|e| match e {
            SourceError::Connect(failure) => failure,
            other => ConnectFailure::new(ConnectFailureKind::Other, other.to_string()),
        })?;
        if let Some(text) = options.text("index_partitions") {
            expression::index_partitions(text).map_err(|e| {
                ConnectFailure::new(ConnectFailureKind::OptionMismatch, format!("index_partitions: {e}"))
            })?;
        }
        if let Some(only) = listed(options) {
            check_listed(&only, &existing)
                .map_err(|e| ConnectFailure::new(ConnectFailureKind::OptionMismatch, format!("tables: {e}")))?;
        }
        Ok(())
    }
}

/// The `tables` option as names.
fn listed(options: &ResolvedOptions) -> Option<Vec<String>> {
    options.text("tables").map(|t| {
        t.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

fn store(options: &ResolvedOptions, timeout: Duration, only: Option<Vec<String>>) -> DynamoStore {
    let integer = |name: &str, default: u32| {
        options
            .integer(name)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(default)
    };
    DynamoStore {
        api: Api::new(options, timeout),
        only,
        segments: integer("segments", 1),
        page_size: integer("page_size", 1000),
        consistent_read: options.boolean("consistent_read").unwrap_or(false),
        index_partitions: options
            .text("index_partitions")
            .and_then(|t| expression::index_partitions(t).ok())
            .unwrap_or_default(),
        described: Default::default(),
    }
}

/// Opens a `dynamodb` connection's options as a source.
fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn Source> {
    Arc::new(DocumentSource {
        store: Arc::new(store(options, timeout, listed(options))),
        mapping: Mapping::from_options(options),
    })
}
