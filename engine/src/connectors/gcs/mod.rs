//! Google Cloud Storage as a file source: a bucket prefix read by
//! [`crate::connectors::files`]. An emulator is reached through the key's
//! `gcs_base_url` (with `disable_oauth`), as `object_store` reads it.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::gcp::GoogleCloudStorageBuilder;

use crate::connectors::files::{self, Backend, BucketConnector, FromOptions, Location, open_bucket};
use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Secret, Text},
    OptionSpec as O, ResolvedOptions, error_chain,
};

pub(crate) static GCS: ConnectionType = ConnectionType {
    name: "gcs",
    display_name: "Google Cloud Storage",
    category: Category::ObjectStorage,
    options: &[
        O::required("bucket", Text, "bucket name"),
        O::optional(
            "prefix",
            Text,
            "folder (object name prefix) inside the bucket whose files are the tables",
        ),
        O::optional("credentials", Secret, "service-account JSON key"),
        O::optional(
            "credentials_file",
            Text,
            "path of a service-account JSON key file; without either, application default credentials",
        ),
        files::TABLES,
        files::PARALLEL_READS,
        files::csv::HEADER,
        files::csv::DELIMITER,
        files::csv::QUOTE,
        files::csv::ESCAPE,
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["bucket", "prefix", "credentials_file"],
    driver: Some(Driver {
        connector: &BucketConnector::<GcsBucket>(PhantomData),
        source: Some(open_bucket::<GcsBucket>),
        destination: None,
        cdc: None,
    }),
};

/// A GCS connection's options.
struct GcsBucket {
    bucket: String,
    prefix: Option<String>,
    credentials: Option<String>,
    credentials_file: Option<String>,
    timeout: Duration,
}

impl FromOptions for GcsBucket {
    fn from_options(options: &ResolvedOptions, timeout: Duration) -> Self {
        Self {
            bucket: options.text("bucket").unwrap_or_default().to_owned(),
            prefix: options.text("prefix").map(str::to_owned),
            credentials: options.secret("credentials").map(|s| s.expose().to_owned()),
            credentials_file: options.text("credentials_file").map(str::to_owned),
            timeout,
        }
    }
}

impl GcsBucket {
    fn what(&self) -> String {
        format!("bucket \"{}\"", self.bucket)
    }
}

#[async_trait]
impl Backend for GcsBucket {
    fn location(&self) -> Result<Location, ConnectFailure> {
        let builder = match (&self.credentials, &self.credentials_file) {
            (Some(_), Some(_)) => {
                return Err(ConnectFailure::new(
                    ConnectFailureKind::Other,
                    "give either credentials or credentials_file, not both",
                ));
            }
            (Some(key), None) => {
                // Checked here: object_store's parse error would not say which option.
                if serde_json::from_str::<serde_json::Value>(key).is_err() {
                    return Err(ConnectFailure::new(
                        ConnectFailureKind::BadPassword,
                        "credentials is not a service-account JSON key",
                    ));
                }
                GoogleCloudStorageBuilder::new().with_service_account_key(key)
            }
            (None, Some(path)) => GoogleCloudStorageBuilder::new().with_service_account_path(path),
            (None, None) => GoogleCloudStorageBuilder::from_env(),
        };
        let (client, retry) = files::client_options(self.timeout);
        let store = builder
            .with_bucket_name(&self.bucket)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| {
                ConnectFailure::new(
                    ConnectFailureKind::BadPassword,
                    format!(
                        "cannot set up {} with these credentials: {}",
                        self.what(),
                        error_chain(&e)
                    ),
                )
            })?;
        Ok(Location {
            store: Arc::new(store),
            prefix: files::prefix_path(self.prefix.as_deref()),
            url: format!("gs://{}/", self.bucket),
        })
    }

    fn failure(&self, error: &datafusion::object_store::Error) -> ConnectFailure {
        files::classify(
            &self.what(),
            "storage.objects.list and storage.objects.get on it (roles/storage.objectViewer)",
            error,
        )
    }
}
