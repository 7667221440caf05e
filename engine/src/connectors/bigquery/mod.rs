//! Google BigQuery as a destination: connection test, table set-up and
//! exactly-once batch loads (see `docs/bigquery.md`).
//!
//! Metadata calls go through `gcp-bigquery-client`; load jobs with their
//! Parquet or Avro chunks ([`chunk`]) go through the media upload endpoint in [`upload`], or
//! reference chunks staged in a Cloud Storage bucket ([`bucket`]), with the
//! same credentials; on a cluster, executors stage the chunks ([`part`]).

mod api;
mod bucket;
pub mod budget;
mod change_sql;
mod changes;
mod chunk;
mod destination;
mod keys;
mod layout;
mod load;
mod part;
mod partition;
mod position;
mod read_api;
mod reasons;
mod record;
mod resumable;
mod retry;
mod schema;
mod ship;
mod source;
mod staged;
mod streamed;
pub(crate) mod types;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Connector, DestinationDriver, Driver,
    MAX_CONCURRENT_RUNS,
    OptionKind::{Enum, Integer, Secret, Text},
    OptionSpec as O, ResolvedOptions,
};
use crate::google::Credentials;

pub(crate) static BIGQUERY: ConnectionType = ConnectionType {
    name: "bigquery",
    display_name: "Google BigQuery",
    category: Category::Warehouse,
    options: &[
        O::required("project", Text, "GCP project id"),
        O::required(
            "dataset",
            Text,
            "dataset that tables are loaded into (created when missing)",
        ),
        O::with_default("location", Text, "US", "dataset location, e.g. EU or europe-west1"),
        O::optional(
            "credentials_file",
            Text,
            "path of a credentials JSON file: service-account key, authorized_user, external_account or \
             impersonated_service_account",
        ),
        O::optional(
            "credentials",
            Secret,
            "credentials JSON (as credentials_file), or 'application_default'",
        ),
        O::optional(
            "impersonate_service_account",
            Text,
            "e-mail of a service account to act as (IAM credentials generateAccessToken)",
        ),
        O::optional("staging_bucket", Text, "gs://bucket/prefix used to stage large loads"),
        O::with_default(
            "chunk_format",
            Text,
            "parquet",
            "file format of loaded chunks: parquet or avro",
        ),
        O::with_default(
            "read_api",
            Enum(&["auto", "on", "off"]),
            "auto",
            "read tables through the Storage Read API: auto (falls back to jobs.query when it cannot), on or off",
        ),
        O::with_default(
            "read_streams",
            Integer { min: 1, max: 100 },
            "4",
            "most Storage Read API streams one scan reads at once",
        ),
        O::optional(
            "connect_timeout",
            Integer { min: 1, max: 3600 },
            "seconds to wait for a connection and for each API answer (default: the server's --connect-timeout)",
        ),
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["project", "dataset"],
    driver: Some(Driver {
        connector: &BigQueryConnector,
        source: Some(source::open),
        destination: Some(DestinationDriver {
            open: destination::open,
            table_options: layout::TABLE_OPTIONS,
            table_operations_per_day: Some(budget::DAILY_TABLE_OPERATIONS),
            part_writer: Some(part::open),
        }),
        cdc: None,
    }),
};

/// Where the BigQuery REST API is; `SLUICE_BIGQUERY_ENDPOINT` replaces it
/// (tests point it at a local fake server).
const DEFAULT_ENDPOINT: &str = "https://bigquery.googleapis.com";

/// A BigQuery connection's settings, checked.
#[derive(Clone)]
pub(super) struct Settings {
    pub project: String,
    pub dataset: String,
    pub location: String,
    pub credentials: Credentials,
    /// The service account to act as, if any.
    pub impersonate: Option<String>,
    /// `https://bigquery.googleapis.com` or its replacement.
    pub endpoint: String,
    /// Bounds connecting and each API answer (uploads get more).
    pub timeout: Duration,
    /// Where chunks are staged instead of uploaded with their load jobs.
    pub staging_bucket: Option<bucket::BucketUrl>,
    /// How chunks are encoded.
    pub chunk_format: chunk::ChunkFormat,
    /// Whether and how table scans use the Storage Read API.
    pub read_api: read_api::ReadApi,
}

impl Settings {
    /// Reads and checks a connection's options.
    pub(super) fn new(options: &ResolvedOptions, timeout: Duration) -> Result<Self, String> {
        let credentials = credentials_from(options)?;
        let staging_bucket = options
            .text("staging_bucket")
            .map(bucket::BucketUrl::parse)
            .transpose()?;
        let chunk_format = chunk::ChunkFormat::parse(options.text("chunk_format").unwrap_or("parquet"))?;
        let read_api = read_api::ReadApi::new(
            read_api::ReadApiMode::parse(options.text("read_api").unwrap_or("auto"))?,
            options.integer("read_streams").unwrap_or(4) as i32,
        );
        let endpoint = std::env::var("SLUICE_BIGQUERY_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.into());
        Ok(Self {
            project: options.text("project").unwrap_or_default().to_owned(),
            dataset: options.text("dataset").unwrap_or_default().to_owned(),
            location: options.text("location").unwrap_or("US").to_owned(),
            credentials,
            impersonate: options.text("impersonate_service_account").map(str::to_owned),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            timeout,
            staging_bucket,
            chunk_format,
            read_api,
        })
    }
}

/// A connection's settings and its signed-in client, made at first use and
/// shared by every call through the same source or destination.
pub(super) struct Session {
    settings: Result<Settings, String>,
    api: OnceCell<Arc<api::Api>>,
}

impl Session {
    fn new(options: &ResolvedOptions, timeout: Duration) -> Self {
        Self {
            settings: Settings::new(options, timeout),
            api: OnceCell::new(),
        }
    }

    /// The signed-in client.
    async fn api(&self) -> Result<Arc<api::Api>, ConnectFailure> {
        let settings = self
            .settings
            .as_ref()
            .map_err(|e| ConnectFailure::new(ConnectFailureKind::Other, e.clone()))?;
        self.api
            .get_or_try_init(|| async { api::Api::connect(settings.clone()).await.map(Arc::new) })
            .await
            .cloned()
    }
}

struct BigQueryConnector;

#[async_trait]
impl Connector for BigQueryConnector {
    /// Signs in, then checks that the dataset exists in the connection's
    /// location, creating it when missing (which proves the permission),
    /// and that the staging bucket, if any, takes and deletes an object.
    async fn test(&self, options: &ResolvedOptions, timeout: Duration) -> Result<(), ConnectFailure> {
        let settings =
            Settings::new(options, timeout).map_err(|e| ConnectFailure::new(ConnectFailureKind::Other, e))?;
        let api = api::Api::connect(settings).await?;
        api.ensure_dataset().await.map_err(|e| e.into_connect_failure())?;
        match &api.bucket {
            Some(bucket) => bucket.probe().await.map_err(|e| e.into_connect_failure()),
            None => Ok(()),
        }
    }
}

/// The `credentials_file` or `credentials` option of a Google connection
/// (BigQuery, Firestore).
pub(crate) fn credentials_from(options: &ResolvedOptions) -> Result<Credentials, String> {
    let secret = options.secret("credentials");
    Credentials::from_options(options.text("credentials_file"), secret.map(|s| s.expose()))
}
