//! Parquet footers read once per file version. A file's footer (its
//! schema, row count and row-group offsets) is what DESCRIBE, the row
//! count of `SHOW TABLES`, the whole-file check of a load and the reading
//! of its rows all start from; a bucket serves each read of it as a ranged
//! GET. The footers of each store are kept in DataFusion's file metadata
//! cache, one cache per store URL, shared by every session that reads the
//! store, so a file's footer is read once while it keeps its size and
//! last-modified time: `CREATE ETL JOB` reads it, and the runs after find
//! it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::object_store::{ObjectMeta, ObjectStore};
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};

/// Bytes of footers kept per store (least recently used go first).
const FOOTER_BYTES: usize = 8 << 20;

/// Bytes read from a file's end in one request, in the hope that they hold
/// its whole footer (DataFusion's default for schema inference).
const FOOTER_HINT: usize = 512 << 10;

/// The footer cache of each store, by URL.
static CACHES: LazyLock<Mutex<HashMap<String, Arc<FileMetadataCache>>>> = LazyLock::new(Mutex::default);

/// The footers kept for the store `url` names.
pub(super) fn cache(url: &str) -> Arc<FileMetadataCache> {
    let mut caches = CACHES.lock().unwrap_or_else(|p| p.into_inner());
    let cache = caches.entry(url.to_owned()).or_insert_with(|| {
        Arc::new(DefaultCache::new(FOOTER_BYTES).with_name("SluiceParquetFooters")) as Arc<FileMetadataCache>
    });
    Arc::clone(cache)
}

/// The runtime of a session reading the store `url` names: its scans and
/// schema inference use and fill the store's footers.
pub(super) fn runtime(url: &str) -> Result<Arc<RuntimeEnv>, DataFusionError> {
    let caches = CacheManagerConfig::default()
        .with_file_metadata_cache(Some(cache(url)))
        .with_metadata_cache_limit(FOOTER_BYTES);
    RuntimeEnvBuilder::new().with_cache_manager(caches).build_arc()
}

/// The footer of the Parquet file `meta` names in the store `url` names,
/// read unless kept.
pub(super) async fn footer(
    store: &dyn ObjectStore,
    url: &str,
    meta: &ObjectMeta,
) -> Result<Arc<ParquetMetaData>, DataFusionError> {
    DFParquetMetadata::new(store, meta)
        .with_metadata_size_hint(Some(FOOTER_HINT))
        .with_file_metadata_cache(Some(cache(url)))
        .with_page_index_policy(Some(PageIndexPolicy::Skip))
        .fetch_metadata()
        .await
}
