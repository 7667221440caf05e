//! Amazon S3 (and S3-compatible stores through `endpoint`) as a file
//! source: a bucket prefix read by [`crate::connectors::files`].

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::aws::AmazonS3Builder;

use crate::connectors::files::{self, Backend, BucketConnector, FromOptions, Location, open_bucket};
use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Secret, Text},
    OptionSpec as O, ResolvedOptions, error_chain,
};

pub(crate) static S3: ConnectionType = ConnectionType {
    name: "s3",
    display_name: "Amazon S3",
    category: Category::ObjectStorage,
    options: &[
        O::required("bucket", Text, "bucket name"),
        O::optional(
            "prefix",
            Text,
            "folder (key prefix) inside the bucket whose files are the tables",
        ),
        O::optional(
            "region",
            Text,
            "AWS region of the bucket (default: AWS_REGION, else us-east-1)",
        ),
        O::optional(
            "endpoint",
            Text,
            "endpoint URL of an S3-compatible store (MinIO, emulators)",
        ),
        O::optional(
            "access_key_id",
            Text,
            "access key id; without it, the server's default AWS credential chain",
        ),
        O::optional("secret_access_key", Secret, "secret access key of access_key_id"),
        O::optional("session_token", Secret, "session token of temporary credentials"),
        files::TABLES,
        files::PARALLEL_READS,
        files::csv::HEADER,
        files::csv::DELIMITER,
        files::csv::QUOTE,
        files::csv::ESCAPE,
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["endpoint", "bucket", "prefix", "access_key_id"],
    driver: Some(Driver {
        connector: &BucketConnector::<S3Bucket>(PhantomData),
        source: Some(open_bucket::<S3Bucket>),
        destination: None,
        cdc: None,
    }),
};

/// An S3 connection's options (also the bucket Redshift's `UNLOAD`
/// writes to, which `connectors/redshift` reads through this backend).
pub(crate) struct S3Bucket {
    pub(crate) bucket: String,
    pub(crate) prefix: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) session_token: Option<String>,
    pub(crate) timeout: Duration,
}

impl FromOptions for S3Bucket {
    fn from_options(options: &ResolvedOptions, timeout: Duration) -> Self {
        let text = |name| options.text(name).map(str::to_owned);
        let secret = |name| options.secret(name).map(|s| s.expose().to_owned());
        Self {
            bucket: text("bucket").unwrap_or_default(),
            prefix: text("prefix"),
            region: text("region"),
            endpoint: text("endpoint"),
            access_key_id: text("access_key_id"),
            secret_access_key: secret("secret_access_key"),
            session_token: secret("session_token"),
            timeout,
        }
    }
}

impl S3Bucket {
    fn what(&self) -> String {
        format!("bucket \"{}\"", self.bucket)
    }
}

#[async_trait]
impl Backend for S3Bucket {
    fn location(&self) -> Result<Location, ConnectFailure> {
        let invalid = |message: String| ConnectFailure::new(ConnectFailureKind::Other, message);
        let mut builder = match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => AmazonS3Builder::new()
                .with_access_key_id(id)
                .with_secret_access_key(secret),
            (None, None) => AmazonS3Builder::from_env(),
            (Some(_), None) => return Err(invalid("access_key_id needs secret_access_key".into())),
            (None, Some(_)) => return Err(invalid("secret_access_key needs access_key_id".into())),
        };
        if let Some(token) = &self.session_token {
            builder = builder.with_token(token);
        }
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        let (client, retry) = files::client_options(self.timeout);
        let store = builder
            .with_bucket_name(&self.bucket)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| invalid(format!("cannot set up {}: {}", self.what(), error_chain(&e))))?;
        Ok(Location {
            store: Arc::new(store),
            prefix: files::prefix_path(self.prefix.as_deref()),
            url: format!("s3://{}/", self.bucket),
        })
    }

    fn failure(&self, error: &datafusion::object_store::Error) -> ConnectFailure {
        files::classify(&self.what(), "s3:ListBucket and s3:GetObject on it", error)
    }
}
