//! The local Parquet warehouse: tables as Parquet files plus versioned
//! manifests, in any object store: a local directory, S3, Azure Blob Storage or
//! GCS (see [`LocalWarehouse::open`]).
//!
//! Layout under the warehouse prefix:
//!
//! ```text
//! <table>/data/run-<run id>-<random token>-<n>.parquet
//! <table>/_manifests/<version, 20 digits>.json
//! ```
//!
//! The manifest with the highest version is the table: its live files, its
//! schema, and the run id and watermark of the last load. A commit puts the
//! next version with `PutMode::Create`, so two writers never publish the
//! same version and readers see a load entirely or not at all. The last two
//! versions stay readable, so that queries planned just before a commit
//! still find their files. Data files no retained manifest lists are
//! leftovers of aborted or crashed loads: never read, and deleted when the
//! next load begins or commits.

mod changes;
mod compaction;
mod copy;
mod encode;
mod load;
mod location;
mod manifest;
mod merged;
mod namespaces;
mod parallel_file;
mod read;
mod read_caches;
mod share;
mod shared;
mod sync;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::{Path, PathPart};
use datafusion::object_store::{self, ObjectStore, ObjectStoreExt, PutMode};
use datafusion::prelude::{DataFrame, ident, lit};
use datafusion::scalar::ScalarValue;
use futures::{StreamExt, TryStreamExt};

pub use location::display_location;
pub use read::{CURRENT_VIEW_SUFFIX, WarehouseSchema};
pub use share::TableShare;
pub use shared::SharedWriter;

use super::compare::{evolution_refusals, schema_differences};
use crate::contract::{
    ChangeSpec, CommitState, Destination, DestinationError, Dialect, LoadTransaction, QueryBuilder, TableSetup,
    TableSpec, TextRows, WriteMode,
};
use crate::sources::datafusion_sql::{DataFusionDialect, session as datafusion_session};
use changes::ChangeLoad;
use load::WarehouseLoad;
use manifest::Manifest;
use read_caches::ReadCaches;
use sync::LocalDisk;

/// How many manifest versions (with their files) a table keeps readable.
const RETAINED_VERSIONS: usize = 2;
const DATA_DIR: &str = "data";
const MANIFEST_DIR: &str = "_manifests";

/// When a load starts a new Parquet file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// Approximate stored bytes per file (checked after each batch).
    pub max_bytes: usize,
    /// Rows per file, exactly.
    pub max_rows: usize,
}

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_bytes: 128 << 20,
            max_rows: 10_000_000,
        }
    }
}

/// Sluice's own warehouse of Parquet tables in an object store. Cheap to
/// clone; clones share the list of known tables.
#[derive(Debug, Clone)]
pub struct LocalWarehouse {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    limits: FileLimits,
    /// The local directory, when the store is one: commits sync to it.
    disk: Option<LocalDisk>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The URL DataFusion reaches `store` under, unique to this warehouse.
    url: String,
    /// The bucket location other processes open this warehouse at; `None`
    /// for a local directory, which they cannot share.
    location: Option<String>,
    /// Tables known to exist, for the synchronous `table_names`.
    tables: RwLock<BTreeSet<String>>,
    /// The footer caches of the sessions that read it.
    read_caches: ReadCaches,
}

impl LocalWarehouse {
    /// A warehouse in local directory `dir`, created if missing.
    pub fn open_dir(dir: &std::path::Path) -> Result<Self, DestinationError> {
        std::fs::create_dir_all(dir).map_err(|source| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        })?;
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true));
        let root = std::fs::canonicalize(dir).map_err(|source| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        })?;
        Ok(Self {
            disk: Some(LocalDisk::new(store.clone(), root)),
            ..Self::new(store, Path::ROOT)
        })
    }

    /// A warehouse under `prefix` of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let url = format!("sluice-warehouse://w{}", NEXT.fetch_add(1, Ordering::Relaxed));
        Self {
            store,
            prefix,
            limits: FileLimits::default(),
            disk: None,
            shared: Arc::new(Shared {
                url,
                location: None,
                tables: RwLock::default(),
                read_caches: ReadCaches::default(),
            }),
        }
    }

    /// The same warehouse, which other processes open at `location`.
    fn shared_at(self, location: String) -> Self {
        let shared = Arc::new(Shared {
            url: self.shared.url.clone(),
            location: Some(location),
            tables: RwLock::default(),
            read_caches: ReadCaches::default(),
        });
        Self { shared, ..self }
    }

    /// The same warehouse, rolling loads to new files at `limits`.
    pub fn with_file_limits(self, limits: FileLimits) -> Self {
        Self { limits, ..self }
    }

    fn table_dir(&self, table: &str) -> Path {
        // Checked names are taken verbatim (no percent-encoding of non-ASCII),
        // so that listings and DataFusion's URLs give the same path back.
        let part = PathPart::parse(table).unwrap_or_else(|_| PathPart::from(table));
        self.prefix.clone().join(part)
    }

    fn data_dir(&self, table: &str) -> Path {
        self.table_dir(table).join(DATA_DIR)
    }

    fn data_path(&self, table: &str, file: &str) -> Path {
        self.data_dir(table).join(file)
    }

    fn manifest_dir(&self, table: &str) -> Path {
        self.table_dir(table).join(MANIFEST_DIR)
    }

    fn manifest_path(&self, table: &str, version: u64) -> Path {
        self.manifest_dir(table).join(manifest::file_name(version))
    }

    /// The manifest versions of `table`, oldest first.
    async fn versions(&self, table: &str) -> Result<Vec<u64>, DestinationError> {
        let mut versions: Vec<u64> = self
            .store
            .list(Some(&self.manifest_dir(table)))
            .try_filter_map(|meta| async move { Ok(meta.location.filename().and_then(manifest::version_of)) })
            .try_collect()
            .await?;
        versions.sort_unstable();
        Ok(versions)
    }

    async fn read_manifest(&self, table: &str, version: u64) -> Result<Manifest, DestinationError> {
        let path = self.manifest_path(table, version);
        let bytes = self.store.get(&path).await?.bytes().await?;
        let corrupt = |reason: String| DestinationError::CorruptManifest {
            path: path.to_string(),
            reason,
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if manifest.version != version {
            return Err(corrupt(format!("it says version {}", manifest.version)));
        }
        Ok(manifest)
    }

    /// The current version of `table`, `None` if it does not exist.
    async fn latest_manifest(&self, table: &str) -> Result<Option<Manifest>, DestinationError> {
        let mut attempts = 0;
        loop {
            let Some(&version) = self.versions(table).await?.last() else {
                return Ok(None);
            };
            match self.read_manifest(table, version).await {
                // Commits (or a drop) removed it after the listing: look again.
                Err(DestinationError::ObjectStore(object_store::Error::NotFound { .. })) if attempts < 3 => {
                    attempts += 1
                }
                result => return result.map(Some),
            }
        }
    }

    /// Publishes `manifest` unless its version exists already; in a local
    /// directory, it is on disk when this returns.
    async fn publish(&self, table: &str, manifest: &Manifest) -> Result<(), object_store::Error> {
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
        let path = self.manifest_path(table, manifest.version);
        self.store.put_opts(&path, json.into(), PutMode::Create.into()).await?;
        self.sync(&[path]).await
    }

    /// In a local directory, syncs `files` and their directories to disk
    /// (other stores make a finished put durable themselves).
    async fn sync(&self, files: &[Path]) -> Result<(), object_store::Error> {
        match &self.disk {
            Some(disk) => disk.sync(files).await,
            None => Ok(()),
        }
    }

    /// Deletes `paths`; already deleted ones are fine. Sessions that read
    /// them forget their footers.
    async fn delete_all(&self, paths: Vec<Path>) -> Result<(), DestinationError> {
        let mut deleted = self
            .store
            .delete_stream(futures::stream::iter(paths.clone().into_iter().map(Ok)).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.shared.read_caches.forget(&paths);
        Ok(())
    }

    /// Drops manifests older than the retained versions, then data files that
    /// no remaining manifest lists and that runs up to `run_id` wrote (later
    /// runs may still be loading).
    async fn collect_garbage(&self, table: &str, run_id: u64) -> Result<(), DestinationError> {
        let versions = self.versions(table).await?;
        let (old, kept) = versions.split_at(versions.len().saturating_sub(RETAINED_VERSIONS));
        self.delete_all(old.iter().map(|&v| self.manifest_path(table, v)).collect())
            .await?;
        let mut live = HashSet::new();
        for &version in kept {
            let manifest = self.read_manifest(table, version).await?;
            live.extend(manifest.files.into_iter().chain(manifest.deltas).map(|f| f.name));
        }
        let garbage: Vec<Path> = self
            .store
            .list(Some(&self.data_dir(table)))
            .try_filter_map(|meta| {
                let name = meta.location.filename().unwrap_or_default();
                let dead = !live.contains(name) && load::run_of(name).is_some_and(|run| run <= run_id);
                async move { Ok(dead.then_some(meta.location)) }
            })
            .try_collect()
            .await?;
        self.delete_all(garbage).await
    }

    /// Every table with a manifest, read from storage.
    async fn list_tables(&self) -> Result<BTreeSet<String>, DestinationError> {
        let prefix = (!self.prefix.is_root()).then_some(&self.prefix);
        let listing = self.store.list_with_delimiter(prefix).await?;
        let mut tables = BTreeSet::new();
        for dir in &listing.common_prefixes {
            if let Some(name) = dir.filename()
                && check_table_name(name).is_ok()
                && !self.versions(name).await?.is_empty()
            {
                tables.insert(name.to_owned());
            }
        }
        Ok(tables)
    }

    /// Records whether `table` exists, as just seen.
    fn note_table(&self, table: &str, exists: bool) {
        let mut tables = self.shared.tables.write().unwrap_or_else(PoisonError::into_inner);
        if exists {
            tables.insert(table.to_owned());
        } else {
            tables.remove(table);
        }
    }
}

impl LocalWarehouse {
    /// The rows of the table's current version.
    async fn read(&self, table: &str) -> Result<DataFrame, DestinationError> {
        check_table_name(table)?;
        let manifest = self
            .latest_manifest(table)
            .await?
            .ok_or_else(|| DestinationError::TableNotFound(table.to_owned()))?;
        let provider = read::WarehouseTable::new(self.clone(), table, manifest);
        Ok(datafusion_session(None).read_table(Arc::new(provider))?)
    }

    /// What the last committed load of the table recorded; `None` if it was
    /// never loaded (or does not exist).
    pub async fn committed_state(&self, table: &str) -> Result<Option<CommitState>, DestinationError> {
        check_table_name(table)?;
        Ok(self.latest_manifest(table).await?.and_then(|manifest| {
            Some(CommitState {
                run_id: manifest.run_id?,
                watermark: manifest.watermark,
                committed_at: Some(manifest.committed_at),
            })
        }))
    }
}

/// Rejects names that would not map one-to-one onto an object path and a URL.
fn check_table_name(name: &str) -> Result<(), DestinationError> {
    const RESERVED: &str = "/\\{}[]<>^%`\"~#|*?";
    let valid =
        !name.is_empty() && !name.starts_with('.') && !name.chars().any(|c| c.is_control() || RESERVED.contains(c));
    if valid {
        Ok(())
    } else {
        Err(DestinationError::InvalidTableName(name.to_owned()))
    }
}

#[async_trait]
impl Destination for LocalWarehouse {
    async fn ensure_table(&self, spec: &TableSpec) -> Result<TableSetup, DestinationError> {
        let (table, schema) = (spec.name.as_str(), spec.schema.clone());
        check_table_name(table)?;
        let existing = match self.latest_manifest(table).await? {
            Some(existing) => existing,
            None => match self.publish(table, &Manifest::empty(schema.clone())).await {
                Ok(()) => {
                    self.note_table(table, true);
                    return Ok(TableSetup::Created);
                }
                // Created concurrently: compare with that one.
                Err(object_store::Error::AlreadyExists { .. }) => self
                    .latest_manifest(table)
                    .await?
                    .ok_or_else(|| DestinationError::TableNotFound(table.to_owned()))?,
                Err(e) => return Err(e.into()),
            },
        };
        self.note_table(table, true);
        let differences = schema_differences(&existing.schema, &schema, true);
        if differences.is_empty() {
            Ok(TableSetup::Adopted)
        } else {
            Err(DestinationError::SchemaMismatch {
                table: table.to_owned(),
                differences,
            })
        }
    }

    async fn drop_table(&self, table: &str) -> Result<(), DestinationError> {
        check_table_name(table)?;
        let versions = self.versions(table).await?;
        if versions.is_empty() {
            self.note_table(table, false);
            return Err(DestinationError::TableNotFound(table.to_owned()));
        }
        // Oldest manifest first: until the last one goes, readers see the
        // current version, never an older one.
        for version in versions {
            match self.store.delete(&self.manifest_path(table, version)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.note_table(table, false);
        let files: Vec<Path> = self
            .store
            .list(Some(&self.table_dir(table)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        self.delete_all(files).await
    }

    async fn committed_run(&self, table: &str, run_id: u64) -> Result<Option<CommitState>, DestinationError> {
        Ok(self
            .committed_state(table)
            .await?
            .filter(|state| state.run_id == run_id))
    }

    async fn last_commit(&self, table: &str) -> Result<Option<CommitState>, DestinationError> {
        self.committed_state(table).await
    }

    async fn loaded_keys(
        &self,
        table: &str,
        key_columns: &[String],
        cursor: &str,
        after: Option<&ScalarValue>,
    ) -> Result<SendableRecordBatchStream, DestinationError> {
        let mut rows = self.read(table).await?;
        if let Some(after) = after {
            rows = rows.filter(ident(cursor).gt(lit(after.clone())))?;
        }
        Ok(rows
            .select(key_columns.iter().map(ident).collect::<Vec<_>>())?
            .execute_stream()
            .await?)
    }

    /// A new manifest version with the same files and last load, and the
    /// new schema; files written before read the new columns as NULL and
    /// widened ones cast.
    async fn evolve_table(&self, table: &str, schema: &SchemaRef) -> Result<(), DestinationError> {
        check_table_name(table)?;
        let current = self
            .latest_manifest(table)
            .await?
            .ok_or_else(|| DestinationError::TableNotFound(table.to_owned()))?;
        if current.schema.fields() == schema.fields() {
            return Ok(());
        }
        let refusals = evolution_refusals(&current.schema, schema);
        if !refusals.is_empty() {
            return Err(DestinationError::SchemaMismatch {
                table: table.to_owned(),
                differences: refusals,
            });
        }
        let next = Manifest {
            version: current.version + 1,
            schema: schema.clone(),
            ..current
        };
        match self.publish(table, &next).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(DestinationError::Conflict {
                table: table.to_owned(),
                detail: format!("version {} was published while the schema changed", next.version),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn column_names(&self, table: &str) -> Result<Vec<String>, DestinationError> {
        check_table_name(table)?;
        let current = self
            .latest_manifest(table)
            .await?
            .ok_or_else(|| DestinationError::TableNotFound(table.to_owned()))?;
        Ok(current.schema.fields().iter().map(|f| f.name().clone()).collect())
    }

    fn load_steps(&self, table: &str, mode: WriteMode) -> Vec<String> {
        let files = format!(
            "stage: write Parquet files under {table}/{DATA_DIR}/ (a new file every {} MB or {} rows)",
            self.limits.max_bytes >> 20,
            self.limits.max_rows
        );
        let commit = match mode {
            WriteMode::Append => "the current files plus the new ones",
            WriteMode::Replace => "only the new files (the table is replaced)",
        };
        vec![
            files,
            format!(
                "commit: publish the next manifest version under {table}/{MANIFEST_DIR}/ listing {commit}, with the \
                 run id and watermark (create-only put: a concurrent load fails instead of overwriting)"
            ),
        ]
    }

    fn query_dialect(&self) -> Option<&'static dyn Dialect> {
        Some(&DataFusionDialect)
    }

    async fn query_text(&self, table: &str, sql: QueryBuilder<'_>) -> Result<TextRows, DestinationError> {
        let rows = self.read(table).await?;
        let ctx = datafusion_session(None);
        ctx.register_table("loaded", rows.into_view())?;
        let batches = ctx.sql(&sql("loaded")).await?.collect().await?;
        Ok(TextRows::from_batches(&batches)?)
    }

    async fn rows_outside(
        &self,
        table: &str,
        cursor: &str,
        from: &ScalarValue,
        to: &ScalarValue,
    ) -> Result<SendableRecordBatchStream, DestinationError> {
        let inside = ident(cursor)
            .gt_eq(lit(from.clone()))
            .and(ident(cursor).lt(lit(to.clone())));
        Ok(self
            .read(table)
            .await?
            .filter(ident(cursor).is_null().or(!inside))?
            .execute_stream()
            .await?)
    }

    fn shares_files(&self) -> bool {
        self.shared.location.is_some()
    }

    async fn begin(
        &self,
        table: &str,
        run_id: u64,
        mode: WriteMode,
    ) -> Result<Box<dyn LoadTransaction>, DestinationError> {
        check_table_name(table)?;
        let base = self
            .latest_manifest(table)
            .await?
            .ok_or_else(|| DestinationError::TableNotFound(table.to_owned()))?;
        self.collect_garbage(table, run_id).await?;
        Ok(Box::new(WarehouseLoad::new(self.clone(), table, run_id, mode, base)))
    }

    fn supports_changes(&self) -> bool {
        true
    }

    async fn begin_changes(
        &self,
        table: &str,
        run_id: u64,
        spec: &ChangeSpec,
    ) -> Result<Box<dyn LoadTransaction>, DestinationError> {
        check_table_name(table)?;
        let base = self
            .latest_manifest(table)
            .await?
            .ok_or_else(|| DestinationError::TableNotFound(table.to_owned()))?;
        self.collect_garbage(table, run_id).await?;
        Ok(Box::new(ChangeLoad::new(self.clone(), table, run_id, spec, base)?))
    }
}
