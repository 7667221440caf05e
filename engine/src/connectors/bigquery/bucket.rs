//! The connection's `staging_bucket`: chunks are written to Cloud Storage
//! through `object_store`, signed in with the connection's own Google
//! credentials, and load jobs read them by `gs://` URI. Each run stages
//! under its own deterministic folder, deleted once the run is settled.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
use object_store::path::Path;
use object_store::{ClientOptions, CredentialProvider, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tracing::info;
use url::Url;

use super::api::{ApiError, network_reason};
use crate::contract::error_chain;
use crate::google::auth::TokenSource;

/// Replaces `https://storage.googleapis.com` (tests point it at a fake).
const ENDPOINT_VARIABLE: &str = "SLUICE_GCS_ENDPOINT";
/// How long one object write may take on top of the connection timeout
/// (a chunk is up to `SLUICE_BIGQUERY_CHUNK_BYTES`, 128 MiB by default).
const PUT_ALLOWANCE: Duration = Duration::from_secs(600);

/// Cloud Storage's smallest part of a multipart upload but the last.
pub(super) const MIN_PART_BYTES: usize = 5 << 20;

/// A checked `gs://bucket[/prefix]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BucketUrl {
    bucket: String,
    prefix: Path,
}

impl BucketUrl {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        // Not echoed: a mistyped URL may hold a secret.
        let wrong = |why: &str| format!("staging_bucket {why}; write it as gs://bucket/prefix");
        let url = Url::parse(text).map_err(|_| wrong("is not a URL"))?;
        if url.scheme() != "gs" {
            return Err(wrong("is not a gs:// URL"));
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
            return Err(wrong(
                "has more than a bucket and a prefix (the connection's credentials are used)",
            ));
        }
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| wrong("names no bucket"))?;
        let prefix =
            Path::parse(url.path().trim_matches('/')).map_err(|e| wrong(&format!("has a bad prefix ({e})")))?;
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix,
        })
    }
}

impl fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix.as_ref() {
            "" => write!(f, "gs://{}", self.bucket),
            prefix => write!(f, "gs://{}/{prefix}", self.bucket),
        }
    }
}

/// Hands `object_store` the connection's tokens, with the storage scope.
struct StorageTokens(TokenSource);

impl fmt::Debug for StorageTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageTokens")
    }
}

#[async_trait]
impl CredentialProvider for StorageTokens {
    type Credential = GcpCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
        let bearer = self.0.storage_token().await.map_err(|e| object_store::Error::Generic {
            store: "GCS",
            source: Box::new(e),
        })?;
        Ok(Arc::new(GcpCredential { bearer }))
    }
}

/// The staging bucket of a signed-in connection.
pub(super) struct StagingBucket {
    url: BucketUrl,
    store: Arc<dyn ObjectStore>,
}

impl StagingBucket {
    pub(super) fn open(url: &BucketUrl, tokens: TokenSource, timeout: Duration) -> Result<Self, String> {
        let options = crate::tls::with_system_roots(ClientOptions::new())
            .with_allow_http(true)
            .with_connect_timeout(timeout)
            .with_timeout(timeout + PUT_ALLOWANCE);
        let mut builder = GoogleCloudStorageBuilder::new()
            .with_bucket_name(&url.bucket)
            .with_credentials(Arc::new(StorageTokens(tokens)))
            .with_client_options(options);
        if let Ok(endpoint) = std::env::var(ENDPOINT_VARIABLE) {
            builder = builder.with_base_url(endpoint.trim_end_matches('/'));
        }
        let store = builder
            .build()
            .map_err(|e| format!("cannot set up staging_bucket {url}: {}", error_chain(&e)))?;
        Ok(Self {
            url: url.clone(),
            store: Arc::new(store),
        })
    }

    /// The folder a run stages its chunks in.
    pub(super) fn run_folder(&self, run: &str) -> Path {
        self.url.prefix.clone().join(run)
    }

    /// The `gs://` URI of an object, as a load job names it.
    pub(super) fn uri(&self, path: &Path) -> String {
        format!("gs://{}/{path}", self.url.bucket)
    }

    /// Writes (or overwrites) an object.
    pub(super) async fn put(&self, path: &Path, data: Vec<u8>) -> Result<(), ApiError> {
        self.store
            .put(path, PutPayload::from(data))
            .await
            .map(drop)
            .map_err(|e| self.error(e, path, "storage.objects.create"))
    }

    /// Starts writing an object in parts (a multipart upload), each part
    /// but the last at least [`MIN_PART_BYTES`].
    pub(super) async fn put_in_parts(&self, path: &Path) -> Result<Box<dyn MultipartUpload>, ApiError> {
        (self.store.put_multipart(path).await).map_err(|e| self.error(e, path, "storage.objects.create"))
    }

    /// Sends the next part of a multipart upload of `path`.
    pub(super) async fn put_part(
        &self,
        upload: &mut dyn MultipartUpload,
        path: &Path,
        part: Vec<u8>,
    ) -> Result<(), ApiError> {
        (upload.put_part(PutPayload::from(part)).await).map_err(|e| self.error(e, path, "storage.objects.create"))
    }

    /// Ends a multipart upload of `path`: the object is there.
    pub(super) async fn complete(&self, upload: &mut dyn MultipartUpload, path: &Path) -> Result<(), ApiError> {
        (upload.complete().await)
            .map(drop)
            .map_err(|e| self.error(e, path, "storage.objects.create"))
    }

    /// The objects right in `folder` (by name within it) and their sizes.
    pub(super) async fn sizes(&self, folder: &Path) -> Result<HashMap<String, u64>, ApiError> {
        let listed: Vec<_> = (self.store.list(Some(folder)).try_collect().await)
            .map_err(|e| self.error(e, folder, "storage.objects.list"))?;
        let within = format!("{folder}/");
        Ok((listed.into_iter())
            .filter_map(|meta| {
                let name = meta.location.as_ref().strip_prefix(&within)?;
                (!name.contains('/')).then(|| (name.to_owned(), meta.size))
            })
            .collect())
    }

    /// Deletes an object.
    pub(super) async fn delete(&self, path: &Path) -> Result<(), ApiError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(e, path, "storage.objects.delete")),
        }
    }

    /// Deletes every object in `folder`; how many there were.
    pub(super) async fn delete_folder(&self, folder: &Path) -> Result<usize, ApiError> {
        let found: Vec<Path> = self
            .store
            .list(Some(folder))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| self.error(e, folder, "storage.objects.list"))?;
        let deleted = self
            .store
            .delete_stream(futures::stream::iter(found.into_iter().map(Ok)).boxed())
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.error(e, folder, "storage.objects.delete"))?
            .len();
        if deleted > 0 {
            info!(folder = %self.uri(folder), objects = deleted, "deleted staged chunks");
        }
        Ok(deleted)
    }

    /// Checks that the credentials can write and delete objects under the
    /// prefix, with a small probe object.
    pub(super) async fn probe(&self) -> Result<(), ApiError> {
        use rand::Rng;
        let name = format!("_sluice_probe_{:016x}", rand::thread_rng().r#gen::<u64>());
        let path = self.url.prefix.clone().join(name.as_str());
        self.put(&path, b"sluice connection test".to_vec()).await?;
        self.store
            .delete(&path)
            .await
            .map_err(|e| self.error(e, &path, "storage.objects.delete"))
    }

    /// An `object_store` failure in BigQuery's terms, naming the permission
    /// a refusal means.
    fn error(&self, error: object_store::Error, path: &Path, permission: &str) -> ApiError {
        let uri = self.uri(path);
        let (status, reason, message) = match &error {
            object_store::Error::PermissionDenied { .. } => (
                Some(403),
                "accessDenied",
                format!(
                    "Access Denied: the credentials lack permission {permission} on {uri} (staging_bucket {}); \
                     grant them roles/storage.objectUser on bucket {}",
                    self.url, self.url.bucket
                ),
            ),
            object_store::Error::Unauthenticated { .. } => (
                Some(401),
                "authError",
                format!(
                    "Cloud Storage refused the credentials for {uri}: {}",
                    error_chain(&error)
                ),
            ),
            object_store::Error::NotFound { .. } => (
                Some(404),
                "notFound",
                format!("Not found: {uri} (does bucket {} exist?)", self.url.bucket),
            ),
            _ => (
                None,
                // A stalled token endpoint or network stays retryable.
                match crate::contract::network_failure_kind(&error) {
                    Some(kind) => network_reason(kind),
                    None => "storageError",
                },
                format!("Cloud Storage failed on {uri}: {}", error_chain(&error)),
            ),
        };
        ApiError {
            status,
            reason: reason.into(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_are_checked() {
        let url = BucketUrl::parse("gs://my-bucket/some/prefix/").unwrap();
        assert_eq!(url.to_string(), "gs://my-bucket/some/prefix");
        assert_eq!(BucketUrl::parse("gs://b").unwrap().to_string(), "gs://b");
        for (text, needle) in [
            ("s3://b/p", "not a gs://"),
            ("bucket/p", "not a URL"),
            ("gs://k:secret@b/p", "more than"),
            ("gs://b/p?x=1", "more than"),
        ] {
            let error = BucketUrl::parse(text).unwrap_err();
            assert!(
                error.contains(needle) && error.contains("gs://bucket/prefix"),
                "{text}: {error}"
            );
            assert!(!error.contains("secret"), "{error}");
        }
    }
}
