//! The RocksDB store under the catalog: column families, synced writes,
//! atomic batches and the layout version in `meta`.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, WriteBatch, WriteOptions};

use crate::SCHEMA_VERSION;
use crate::error::{CatalogError, Result};
use crate::job::JobRecord;
use crate::job_cache::JobCache;
use crate::record::{self, Record};
use crate::run::{RunRecord, run_index_key};
use crate::store_options;
use crate::table_jobs::TableJobs;
use crate::touched::Touched;
use crate::transaction::{Staged, Transaction};

/// Column families, one per kind of record, plus `run_index`: one empty
/// value per run under [`run_index_key`], so a job's runs are a prefix scan.
/// `table_ops`, `public_tables`, `cdc`, the `alert*` families, `roles`, `grants` and `audit` came later without a layout
/// change: opening an older catalog creates them empty. `table_jobs`
/// (layout 3) indexes jobs by destination table. `namespaces` lists the
/// databases besides the default one.
pub(crate) const FAMILIES: [&str; 21] = [
    "connections",
    "secrets",
    "jobs",
    "runs",
    "watermarks",
    "schedules",
    "meta",
    RUN_INDEX,
    "schema_changes",
    "verifications",
    "table_ops",
    "public_tables",
    "cdc",
    "alerts",
    "alert_incidents",
    "alert_deliveries",
    "roles",
    "grants",
    "audit",
    "table_jobs",
    "namespaces",
];

/// The families shared by every namespace (server-wide records: the
/// layout, the key check, the instance id, the run sequence, roles, grants,
/// the audit trail and the namespaces themselves). Every other family holds
/// each namespace's records under its [`namespace_prefix`].
const GLOBAL_FAMILIES: [&str; 5] = ["meta", "roles", "grants", "audit", "namespaces"];

/// The first byte of every key of a namespace other than the default one.
/// No UTF-8 text contains it, so every key of the default namespace (names,
/// or a name then more bytes) sorts before every prefixed key.
const NAMESPACE_MARK: u8 = 0xFF;

/// The key prefix of namespace `name`'s records: `0xFF name 0x00`; empty
/// for the default namespace, whose keys are stored as they always were.
pub(crate) fn namespace_prefix(name: Option<&str>) -> Vec<u8> {
    match name {
        None => Vec::new(),
        Some(name) => {
            let mut prefix = Vec::with_capacity(name.len() + 2);
            prefix.push(NAMESPACE_MARK);
            prefix.extend_from_slice(name.as_bytes());
            prefix.push(0);
            prefix
        }
    }
}

/// A stored key of a per-namespace family split into its
/// [`namespace_prefix`] and the key within the namespace.
pub(crate) fn split_namespace(stored: &[u8]) -> (&[u8], &[u8]) {
    if stored.first() != Some(&NAMESPACE_MARK) {
        return (&[], stored);
    }
    match stored.iter().position(|&b| b == 0) {
        Some(end) => stored.split_at(end + 1),
        None => (stored, &[]),
    }
}

pub(crate) const RUN_INDEX: &str = "run_index";

const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

/// The opened database, seen from one namespace: its records in the
/// per-namespace families, and the global families.
pub(crate) struct Store {
    db: Arc<DB>,
    /// This namespace's [`namespace_prefix`].
    prefix: Vec<u8>,
    /// The in-memory copy of every namespace's jobs, shared by every view
    /// of the database; each write tells it what it touched.
    cache: Arc<JobCache>,
    /// Milliseconds each synced write takes extra, as on a slow disk.
    #[cfg(test)]
    slow_disk_ms: Arc<std::sync::atomic::AtomicU64>,
}

/// RocksDB refuses files of a newer format as corruption; say what it is.
fn newer_format(path: &Path, error: rocksdb::Error) -> CatalogError {
    let detail = error.to_string();
    if is_newer_format(&detail) {
        CatalogError::NewerStorageFormat {
            path: path.display().to_string(),
            detail,
        }
    } else {
        CatalogError::Storage(error)
    }
}

/// Whether RocksDB's open error means files of a format it does not know.
fn is_newer_format(detail: &str) -> bool {
    detail.contains("unsupported format_version") || detail.contains("Unknown Footer version")
}

impl Store {
    /// Opens (or creates) the database and checks its layout version.
    pub fn open(path: &Path) -> Result<Self> {
        let cache = store_options::block_cache();
        let families = FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, store_options::family(&cache)));
        let db =
            DB::open_cf_descriptors(&store_options::database(), path, families).map_err(|e| newer_format(path, e))?;
        let store = Self {
            db: Arc::new(db),
            prefix: Vec::new(),
            cache: Arc::default(),
            #[cfg(test)]
            slow_disk_ms: Default::default(),
        };
        store.check_schema_version()?;
        Ok(store)
    }

    /// The same database seen from namespace `name` (`None`: the default).
    pub fn in_namespace(&self, name: Option<&str>) -> Self {
        Self {
            db: self.db.clone(),
            prefix: namespace_prefix(name),
            cache: self.cache.clone(),
            #[cfg(test)]
            slow_disk_ms: self.slow_disk_ms.clone(),
        }
    }

    /// This namespace's [`namespace_prefix`].
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The in-memory copy of the jobs (see [`JobCache`]).
    pub fn cache(&self) -> &JobCache {
        &self.cache
    }

    /// The stored key of `key` in `family`: prefixed in a per-namespace family.
    fn full_key(&self, family: &str, key: &[u8]) -> Vec<u8> {
        if GLOBAL_FAMILIES.contains(&family) {
            return key.to_vec();
        }
        [self.prefix.as_slice(), key].concat()
    }

    /// A stored key of `family` without this namespace's prefix, or `None`
    /// when it belongs to another namespace.
    fn own_key<'k>(&self, family: &str, stored: &'k [u8]) -> Option<&'k [u8]> {
        if GLOBAL_FAMILIES.contains(&family) {
            return Some(stored);
        }
        if self.prefix.is_empty() {
            return (stored.first() != Some(&NAMESPACE_MARK)).then_some(stored);
        }
        stored.strip_prefix(self.prefix.as_slice())
    }

    /// Deletes every record of namespace `name` in the per-namespace
    /// families and applies `also` (its namespace record), in one synced
    /// write.
    pub fn clear_namespace(&self, name: &str, also: Batch<'_>) -> Result<()> {
        let start = namespace_prefix(Some(name));
        let mut end = start.clone();
        *end.last_mut().expect("a prefix ends in a NUL") = 1;
        let mut batch = WriteBatch::default();
        for family in FAMILIES.iter().filter(|f| !GLOBAL_FAMILIES.contains(f)) {
            batch.delete_range_cf(self.family(family), &start, &end);
        }
        let mut touched = also.touched();
        touched.clear(start);
        also.into_write_batch(&mut batch);
        self.write(batch, &touched)
    }

    fn check_schema_version(&self) -> Result<()> {
        let meta = self.family("meta");
        match self.db.get_cf(meta, SCHEMA_VERSION_KEY)? {
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, SCHEMA_VERSION_KEY, SCHEMA_VERSION.to_string());
                self.write(batch, &Touched::default())
            }
            Some(bytes) => {
                let found: u32 = String::from_utf8_lossy(&bytes)
                    .parse()
                    .map_err(|_| CatalogError::Corrupt {
                        family: "meta",
                        key: "schema_version".into(),
                        reason: "not a number".into(),
                    })?;
                if found > SCHEMA_VERSION {
                    return Err(CatalogError::Corrupt {
                        family: "meta",
                        key: "schema_version".into(),
                        reason: format!(
                            "the data directory was written by a newer Sluice (layout {found}, this build knows up to {SCHEMA_VERSION})"
                        ),
                    });
                }
                if found < SCHEMA_VERSION {
                    self.upgrade(found)?;
                }
                Ok(())
            }
        }
    }

    /// Brings a catalog of layout `found` to [`SCHEMA_VERSION`] and records
    /// the new layout, all in one atomic write. Layout 2 indexes every run
    /// by job; layout 3 indexes every job by destination table.
    fn upgrade(&self, found: u32) -> Result<()> {
        let mut batch = self.batch();
        if found < 2 {
            for run in self.scan::<RunRecord>()? {
                batch.index_run(&run.job, run.id);
            }
        }
        if found < 3 {
            let mut tables: std::collections::BTreeMap<String, TableJobs> = std::collections::BTreeMap::new();
            for job in self.scan::<JobRecord>()? {
                let entry = TableJobs {
                    destination: job.destination.clone(),
                    jobs: Vec::new(),
                };
                let key = entry.key();
                let entry = tables.remove(&key).unwrap_or(entry).with(&job.name);
                tables.insert(key, entry);
            }
            for entry in tables.values() {
                batch.put(entry);
            }
        }
        batch.changes.push((
            "meta",
            SCHEMA_VERSION_KEY.to_vec(),
            Some(SCHEMA_VERSION.to_string().into_bytes()),
        ));
        batch.commit()
    }

    fn family(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("every column family is created at open")
    }

    /// Reads one record (through the task's transaction, if any).
    pub fn get<R: Record>(&self, key: &str) -> Result<Option<R>> {
        let full = self.full_key(R::FAMILY, key.as_bytes());
        let stored = || -> Result<Option<Vec<u8>>> { Ok(self.db.get_cf(self.family(R::FAMILY), &full)?) };
        let value = match Transaction::current() {
            Some(txn) => txn.read(R::FAMILY, &full, stored)?,
            None => stored()?,
        };
        value.map(|bytes| record::decode(key.as_bytes(), &bytes)).transpose()
    }

    /// Reads every record of a family, in key order (through the task's
    /// transaction, if any).
    pub fn scan<R: Record>(&self) -> Result<Vec<R>> {
        let entries = self.entries(R::FAMILY)?;
        let entries = match Transaction::current() {
            Some(txn) => txn.list(R::FAMILY, entries),
            None => entries,
        };
        entries
            .iter()
            .filter_map(|(key, value)| self.own_key(R::FAMILY, key).map(|key| (key, value)))
            .map(|(key, value)| record::decode(key, value))
            .collect()
    }

    /// Every stored entry of a family in this namespace, with its stored
    /// (prefixed) key, in key order.
    fn entries(&self, family: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = self.full_key(family, b"");
        let mut entries = Vec::new();
        let items = self.db.iterator_cf(
            self.family(family),
            IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        for item in items {
            let (key, value) = item?;
            if self.own_key(family, &key).is_none() {
                break;
            }
            entries.push((key.into_vec(), value.into_vec()));
        }
        Ok(entries)
    }

    /// The ids of `job`'s runs in the run index, in run order: a prefix
    /// scan that reads no other job's entries. Stored entries only: runs
    /// are never started inside a transaction.
    pub fn run_ids_of(&self, job: &str) -> Result<Vec<u64>> {
        let prefix = self.full_key(RUN_INDEX, &run_index_key(job, 0));
        let prefix = &prefix[..prefix.len() - 8];
        let mut ids = Vec::new();
        let entries = self.db.iterator_cf(
            self.family(RUN_INDEX),
            IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for entry in entries {
            let (key, _) = entry?;
            let Some(id) = key.strip_prefix(prefix) else {
                break;
            };
            // Longer: a job whose name continues past a NUL.
            if let Ok(id) = <[u8; 8]>::try_from(id) {
                ids.push(u64::from_be_bytes(id));
            }
        }
        Ok(ids)
    }

    /// A reverse cursor over the run index (see [`RunIds`]).
    pub fn run_ids(&self) -> RunIds<'_> {
        RunIds {
            store: self,
            raw: self.db.raw_iterator_cf(self.family(RUN_INDEX)),
            prefix: Vec::new(),
            started: false,
        }
    }

    /// Starts an atomic change.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            changes: Vec::new(),
        }
    }

    /// Writes a transaction's staged changes in one batch, unless a record
    /// it read, or the names of a family it listed, changed since: then
    /// nothing is written. The caller holds the writer lock.
    pub fn apply(&self, staged: Staged) -> Result<()> {
        for ((family, key), seen) in &staged.read {
            if self.db.get_cf(self.family(family), key)?.as_deref() != seen.as_deref() {
                return Err(conflict(family, key));
            }
        }
        for (family, seen) in &staged.listed {
            let now: std::collections::BTreeSet<Vec<u8>> =
                self.entries(family)?.into_iter().map(|(key, _)| key).collect();
            if let Some(key) = now.symmetric_difference(seen).next() {
                return Err(conflict(family, key));
            }
        }
        let mut touched = Touched::default();
        let mut batch = WriteBatch::default();
        for ((family, key), value) in staged.writes {
            touched.change(family, &key, value.as_deref());
            match value {
                Some(value) => batch.put_cf(self.family(family), key, value),
                None => batch.delete_cf(self.family(family), key),
            }
        }
        self.write(batch, &touched)
    }

    /// Applies `batch` and waits until it is on disk, off the async
    /// runtime's worker (a slow disk must not stall logins and queries);
    /// then the in-memory copy of the jobs forgets what the batch
    /// `touched`, whether the write succeeded or not.
    fn write(&self, batch: WriteBatch, touched: &Touched) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        let written = crate::blocking(|| {
            #[cfg(test)]
            std::thread::sleep(std::time::Duration::from_millis(
                self.slow_disk_ms.load(std::sync::atomic::Ordering::Relaxed),
            ));
            self.db.write_opt(batch, &opts)
        });
        self.cache.forget(touched);
        Ok(written?)
    }
}

/// Run ids from the run index, newest first, one job at a time: one
/// RocksDB iterator [`RunIds::seek`]s to each job's newest run in turn, so
/// reading the latest runs of many jobs creates one iterator, not one per
/// job. Stored entries only: runs are never started inside a transaction.
pub(crate) struct RunIds<'a> {
    store: &'a Store,
    raw: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
    /// The index key prefix of the job sought.
    prefix: Vec<u8>,
    started: bool,
}

impl RunIds<'_> {
    /// Positions the cursor at `job`'s newest run.
    pub fn seek(&mut self, job: &str) {
        let end = self.store.full_key(RUN_INDEX, &run_index_key(job, u64::MAX));
        self.prefix = end[..end.len() - 8].to_vec();
        self.raw.seek_for_prev(&end);
        self.started = false;
    }

    /// The next older run id of the job sought, `None` past its oldest.
    pub fn next_id(&mut self) -> Option<Result<u64>> {
        loop {
            if self.started {
                self.raw.prev();
            }
            self.started = true;
            if !self.raw.valid() {
                return self.raw.status().err().map(|e| Err(e.into()));
            }
            let id = self.raw.key()?.strip_prefix(self.prefix.as_slice())?;
            // Longer: a job whose name continues past a NUL.
            if let Ok(id) = <[u8; 8]>::try_from(id) {
                return Some(Ok(u64::from_be_bytes(id)));
            }
        }
    }
}

fn conflict(family: &'static str, key: &[u8]) -> CatalogError {
    CatalogError::Conflict {
        family,
        key: String::from_utf8_lossy(key).into_owned(),
    }
}

/// One put (`Some(value)`) or delete (`None`) of a key in a column family.
type Change = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// A set of puts and deletes applied all-or-nothing, synced to disk; inside
/// a transaction they are staged until it commits.
pub(crate) struct Batch<'a> {
    store: &'a Store,
    /// Puts and deletes, in order.
    changes: Vec<Change>,
}

impl Batch<'_> {
    pub fn put<R: Record>(&mut self, record: &R) -> &mut Self {
        let key = self.store.full_key(R::FAMILY, record.key().as_bytes());
        self.changes.push((R::FAMILY, key, Some(record::encode(record))));
        self
    }

    pub fn delete<R: Record>(&mut self, key: &str) -> &mut Self {
        let key = self.store.full_key(R::FAMILY, key.as_bytes());
        self.changes.push((R::FAMILY, key, None));
        self
    }

    /// Adds run `id` of `job` to the run index.
    pub fn index_run(&mut self, job: &str, id: u64) -> &mut Self {
        let key = self.store.full_key(RUN_INDEX, &run_index_key(job, id));
        self.changes.push((RUN_INDEX, key, Some(Vec::new())));
        self
    }

    /// Removes run `id` of `job` from the run index.
    pub fn unindex_run(&mut self, job: &str, id: u64) -> &mut Self {
        let key = self.store.full_key(RUN_INDEX, &run_index_key(job, id));
        self.changes.push((RUN_INDEX, key, None));
        self
    }

    pub fn commit(self) -> Result<()> {
        if let Some(txn) = Transaction::current() {
            for (family, key, value) in self.changes {
                txn.stage(family, key, value);
            }
            return Ok(());
        }
        self.commit_now()
    }

    /// Writes the changes at once, even inside a transaction: what must be
    /// kept whether the transaction commits or not (the audit trail).
    pub fn commit_now(self) -> Result<()> {
        let mut batch = WriteBatch::default();
        let store = self.store;
        let touched = self.touched();
        self.into_write_batch(&mut batch);
        store.write(batch, &touched)
    }

    /// The jobs these changes touch.
    fn touched(&self) -> Touched {
        let mut touched = Touched::default();
        for (family, key, value) in &self.changes {
            touched.change(family, key, value.as_deref());
        }
        touched
    }

    /// Adds the changes to a RocksDB batch.
    fn into_write_batch(self, batch: &mut WriteBatch) {
        for (family, key, value) in self.changes {
            match value {
                Some(value) => batch.put_cf(self.store.family(family), key, value),
                None => batch.delete_cf(self.store.family(family), key),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_a_newer_rocksdb_are_told_apart_from_other_open_errors() {
        // What RocksDB 7.8 said opening a catalog that RocksDB 11.8 had flushed.
        assert!(is_newer_format(
            "Corruption: Corrupt or unsupported format_version: 7 in file /d/catalog/MANIFEST-000005"
        ));
        assert!(!is_newer_format(
            "IO error: While lock file: /d/catalog/LOCK: Resource temporarily unavailable"
        ));
        assert!(!is_newer_format("Corruption: block checksum mismatch"));
    }

    /// Bytes in every family's memtables.
    fn memtable_bytes(store: &Store) -> u64 {
        FAMILIES
            .iter()
            .map(|name| {
                (store.db)
                    .property_int_value_cf(store.family(name), "rocksdb.cur-size-all-mem-tables")
                    .unwrap()
                    .unwrap()
            })
            .sum()
    }

    #[test]
    fn memtables_stay_bounded_however_much_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let value = vec![b'x'; 1024];
        let mut peak = 0;
        // 48 MiB of run records in 1 MiB batches: RocksDB's defaults would
        // hold all of it in memory (64 MiB memtables).
        for batch_no in 0..48u64 {
            let mut batch = WriteBatch::default();
            for i in 0..1024u64 {
                batch.put_cf(store.family("runs"), (batch_no * 1024 + i).to_be_bytes(), &value);
            }
            store.write(batch, &Touched::default()).unwrap();
            peak = peak.max(memtable_bytes(&store));
        }
        let bound = (store_options::TOTAL_WRITE_BUFFER_BYTES as u64) * 5 / 4;
        assert!(peak <= bound, "memtables reached {peak} bytes (bound {bound})");
        let last = store
            .db
            .get_cf(store.family("runs"), (48 * 1024 - 1u64).to_be_bytes())
            .unwrap();
        assert_eq!(last.as_deref(), Some(value.as_slice()), "flushed data stays readable");
    }

    #[test]
    fn a_slow_synced_write_does_not_stall_the_other_tasks_of_its_worker() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        store.slow_disk_ms.store(2000, std::sync::atomic::Ordering::Relaxed);
        let order = runtime.block_on(async {
            let (done, mut finished) = tokio::sync::mpsc::unbounded_channel();
            let writer = {
                let (store, done) = (store.clone(), done.clone());
                tokio::spawn(async move {
                    let mut batch = WriteBatch::default();
                    batch.put_cf(store.family("meta"), b"k", b"v");
                    store.write(batch, &Touched::default()).unwrap();
                    done.send("write").unwrap();
                })
            };
            // The writer is now blocked in its write on the only worker.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let other = tokio::spawn(async move { done.send("other task").unwrap() });
            writer.await.unwrap();
            other.await.unwrap();
            [finished.recv().await.unwrap(), finished.recv().await.unwrap()]
        });
        assert_eq!(order, ["other task", "write"], "the other task waited for the disk");
    }
}
