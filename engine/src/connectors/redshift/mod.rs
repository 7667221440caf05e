//! Amazon Redshift: reached through the PostgreSQL connector's endpoint
//! (same options, same TLS), but read as Redshift is: metadata from its
//! catalog views (`svv_tables`, `svv_columns`, `svv_table_info`) and rows
//! through a server-side cursor in text format, all in the simple query
//! protocol (Redshift has no `COPY ... TO STDOUT` and no binary results).
//! With `unload_bucket` and `iam_role`, scans of whole tables go through
//! `UNLOAD ... FORMAT PARQUET` to S3 instead (see [`unload`]).

mod decode;
mod dialect;
mod horizon;
mod metadata;
mod source;
pub mod types;
mod unload;

use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Enum, Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions,
};

use std::time::Duration;

use async_trait::async_trait;

use super::postgres::{PostgresConnector, SSL_MODES};

pub(crate) static REDSHIFT: ConnectionType = ConnectionType {
    name: "redshift",
    display_name: "Amazon Redshift",
    category: Category::Warehouse,
    options: &[
        O::required("host", Text, "cluster or workgroup endpoint"),
        O::with_default("port", Integer { min: 1, max: 65535 }, "5439", "TCP port"),
        O::required("database", Text, "database name"),
        O::required("user", Text, "user name"),
        O::optional("password", Secret, "password"),
        O::with_default(
            "sslmode",
            Enum(SSL_MODES),
            "verify-if-offered",
            "TLS mode, as libpq's sslmode; the default verifies the certificate and host name when the server offers TLS",
        ),
        O::optional(
            "sslrootcert",
            Text,
            "PEM file of CA certificates trusted for verify-ca/verify-full",
        ),
        O::optional(
            "connect_timeout",
            Integer { min: 1, max: 3600 },
            "seconds to wait for a connection (default: the server's --connect-timeout)",
        ),
        O::optional(
            "unload_bucket",
            Text,
            "s3://bucket/prefix where scans of whole tables are unloaded as Parquet (UNLOAD ... FORMAT PARQUET); \
             needs iam_role",
        ),
        O::optional(
            "iam_role",
            Text,
            "ARN of the IAM role Redshift assumes to write unload_bucket (arn:aws:iam::<account>:role/<name>)",
        ),
        O::optional(
            "unload_min_rows",
            Integer { min: 0, max: i64::MAX },
            "unload only tables whose svv_table_info estimate has at least this many rows (default 0: every scan \
             without LIMIT); smaller ones are read through a cursor",
        ),
        O::optional(
            "unload_region",
            Text,
            "AWS region of unload_bucket (default: AWS_REGION, else us-east-1)",
        ),
        O::optional(
            "unload_endpoint",
            Text,
            "endpoint URL of an S3-compatible store serving unload_bucket",
        ),
        O::optional(
            "unload_access_key_id",
            Text,
            "access key id Sluice reads unload_bucket with; without it, the server's default AWS credential chain",
        ),
        O::optional(
            "unload_secret_access_key",
            Secret,
            "secret access key of unload_access_key_id",
        ),
        O::optional(
            "unload_session_token",
            Secret,
            "session token of temporary unload credentials",
        ),
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["host", "port", "database", "user"],
    driver: Some(Driver {
        // PostgreSQL's live test (a login and a simple `SELECT 1`), then
        // a listing of unload_bucket when it is set.
        connector: &RedshiftConnector,
        source: Some(source::open),
        destination: None,
        cdc: None,
    }),
};

/// PostgreSQL's live test, plus the UNLOAD options: consistent, and
/// `unload_bucket` readable with the `unload_*` credentials.
struct RedshiftConnector;

#[async_trait]
impl Connector for RedshiftConnector {
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        unload::Unload::check(options)
            .map_err(|message| ConnectFailure::new(ConnectFailureKind::OptionMismatch, message))?;
        PostgresConnector.test(options, timeout).await?;
        match unload::Unload::from_options(options, timeout) {
            Some(unload) => unload.test(timeout).await,
            None => Ok(()),
        }
    }
}
