//! The file metadata caches of the sessions that read the warehouse. A
//! DataFusion session keeps the Parquet footer of each file it read (50 MB
//! of them by default), keyed by path. The warehouse's files never change,
//! but they go: a garbage-collected file's footer would stay cached until
//! newer ones pushed it out. A `CDC MERGE` table, rewritten about once a
//! second, filled a reading session's cache by 1 to 2 MB a minute that
//! way. So the warehouse remembers each cache it was read through, and
//! drops from it the files it deletes.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::object_store::path::Path;

/// The caches of the sessions that read a warehouse (held weakly: a
/// session that ends takes its cache with it).
#[derive(Default)]
pub(super) struct ReadCaches {
    caches: Mutex<Vec<Weak<FileMetadataCache>>>,
}

impl ReadCaches {
    /// Remembers `cache`, which a session reads the warehouse through.
    pub(super) fn remember(&self, cache: Arc<FileMetadataCache>) {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        caches.retain(|c| c.strong_count() > 0);
        let cache = Arc::downgrade(&cache);
        if !caches.iter().any(|c| c.ptr_eq(&cache)) {
            caches.push(cache);
        }
    }

    /// Drops `deleted` files from every remembered cache.
    pub(super) fn forget(&self, deleted: &[Path]) {
        let caches: Vec<Arc<FileMetadataCache>> = (self.caches.lock().unwrap_or_else(PoisonError::into_inner))
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for cache in caches {
            for path in deleted {
                cache.remove(path);
            }
        }
    }
}

impl fmt::Debug for ReadCaches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ReadCaches").field("caches", &caches.len()).finish()
    }
}
