//! Where a warehouse lives: a local directory, or a bucket (and prefix) of
//! S3, Azure Blob Storage or Google Cloud Storage. Cloud credentials and
//! settings come from the environment variables `object_store` reads
//! (`AWS_*`, `AZURE_*`, `GOOGLE_*`); they never appear in a location's text.
//! Buckets are reached over TLS trusting what every other TLS path trusts
//! (`crate::tls`): object_store builds its `reqwest` client with
//! `rustls-tls-native-roots`, which reads the system store with
//! `rustls-native-certs` (`SSL_CERT_FILE`/`SSL_CERT_DIR` when set), and the
//! workspace's `reqwest` feature `rustls-tls` adds the bundled web PKI roots
//! to the same client (`tests/it/warehouse_trust.rs`).

use std::sync::Arc;

use datafusion::object_store::{ObjectStore, ObjectStoreScheme};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use url::Url;

use super::LocalWarehouse;
use crate::contract::DestinationError;

impl LocalWarehouse {
    /// The warehouse at `location`: a URL `s3://bucket[/prefix]`,
    /// `az://container[/prefix]` (or `abfs[s]://`, `azure://`, the
    /// `https://` forms of Azure and S3), `gs://bucket[/prefix]`,
    /// `file:///dir`, or a plain local directory path.
    pub fn open(location: &str) -> Result<Self, DestinationError> {
        let Ok(url) = Url::parse(location) else {
            return Self::open_dir(std::path::Path::new(location));
        };
        // A Windows-style `C:\dir` parses as a URL with scheme `c`.
        if url.scheme().len() == 1 {
            return Self::open_dir(std::path::Path::new(location));
        }
        let invalid = |reason: String| DestinationError::InvalidLocation {
            location: redacted(&url),
            reason,
        };
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "put credentials and options in the environment (AWS_*, AZURE_*, GOOGLE_* variables), not in the URL"
                    .into(),
            ));
        }
        const KNOWN: &str = "use s3://, az://, abfss://, gs://, file:// or a local directory";
        let (scheme, prefix) = ObjectStoreScheme::parse(&url).map_err(|_| invalid(KNOWN.into()))?;
        let text = url.to_string();
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::Local => {
                let dir = url.to_file_path().map_err(|()| invalid("not a local path".into()))?;
                return Self::open_dir(&dir);
            }
            ObjectStoreScheme::AmazonS3 => Arc::new(AmazonS3Builder::from_env().with_url(&text).build()?),
            ObjectStoreScheme::MicrosoftAzure => Arc::new(MicrosoftAzureBuilder::from_env().with_url(&text).build()?),
            ObjectStoreScheme::GoogleCloudStorage => {
                Arc::new(GoogleCloudStorageBuilder::from_env().with_url(&text).build()?)
            }
            _ => return Err(invalid(KNOWN.into())),
        };
        Ok(Self::new(store, prefix).shared_at(text.trim_end_matches('/').to_owned()))
    }
}

/// The location without anything that could be a secret.
fn redacted(url: &Url) -> String {
    format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or(""), url.path())
}

/// A warehouse location as it may be shown and logged.
pub fn display_location(location: &str) -> String {
    match Url::parse(location) {
        Ok(url) if url.scheme().len() > 1 => redacted(&url),
        _ => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_open_or_explain_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        LocalWarehouse::open(dir.path().join("plain").to_str().unwrap()).unwrap();
        LocalWarehouse::open(&format!("file://{}", dir.path().join("url").display())).unwrap();
        assert!(dir.path().join("plain").is_dir() && dir.path().join("url").is_dir());
        let s3 = LocalWarehouse::open("s3://bucket/some/prefix").unwrap();
        assert_eq!(s3.prefix.as_ref(), "some/prefix");
        for (location, needle) in [
            ("s3://bucket/p?aws_secret_access_key=hunter2", "environment"),
            ("s3://key:hunter2@bucket/p", "environment"),
            ("ftp://host/p", "use s3://"),
        ] {
            let error = LocalWarehouse::open(location).unwrap_err().to_string();
            assert!(error.contains(needle), "{location}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        assert_eq!(display_location("s3://k:hunter2@b/p?x=1"), "s3://b/p");
    }
}
