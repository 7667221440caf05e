//! The RocksDB store under the catalog: column families, synced writes,
//! atomic batches and the layout version in `meta`.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::SCHEMA_VERSION;
use crate::error::{CatalogError, Result};
use crate::record::{self, Record};

/// Column families, one per kind of record.
pub(crate) const FAMILIES: [&str; 7] = [
    "connections",
    "secrets",
    "jobs",
    "runs",
    "watermarks",
    "schedules",
    "meta",
];

const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

/// The opened database.
pub(crate) struct Store {
    db: DB,
}

impl Store {
    /// Opens (or creates) the database and checks its layout version.
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(3);
        let families = FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, families)?;
        let store = Self { db };
        store.check_schema_version()?;
        Ok(store)
    }

    fn check_schema_version(&self) -> Result<()> {
        let meta = self.family("meta");
        match self.db.get_cf(meta, SCHEMA_VERSION_KEY)? {
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, SCHEMA_VERSION_KEY, SCHEMA_VERSION.to_string());
                self.write(batch)
            }
            Some(bytes) => {
                let found: u32 = String::from_utf8_lossy(&bytes)
                    .parse()
                    .map_err(|_| CatalogError::Corrupt {
                        family: "meta",
                        key: "schema_version".into(),
                        reason: "not a number".into(),
                    })?;
                // Layout 1 is the only one so far; later layouts migrate here.
                if found > SCHEMA_VERSION {
                    return Err(CatalogError::Corrupt {
                        family: "meta",
                        key: "schema_version".into(),
                        reason: format!(
                            "the data directory was written by a newer Sluice (layout {found}, this build knows up to {SCHEMA_VERSION})"
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    fn family(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("every column family is created at open")
    }

    /// Reads one record.
    pub fn get<R: Record>(&self, key: &str) -> Result<Option<R>> {
        self.db
            .get_cf(self.family(R::FAMILY), key.as_bytes())?
            .map(|bytes| record::decode(key.as_bytes(), &bytes))
            .transpose()
    }

    /// Reads every record of a family, in key order.
    pub fn scan<R: Record>(&self) -> Result<Vec<R>> {
        self.db
            .iterator_cf(self.family(R::FAMILY), IteratorMode::Start)
            .map(|item| {
                let (key, value) = item?;
                record::decode(&key, &value)
            })
            .collect()
    }

    /// Starts an atomic change.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            batch: WriteBatch::default(),
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }
}

/// A set of puts and deletes applied all-or-nothing, synced to disk.
pub(crate) struct Batch<'a> {
    store: &'a Store,
    batch: WriteBatch,
}

impl Batch<'_> {
    pub fn put<R: Record>(&mut self, record: &R) -> &mut Self {
        self.batch.put_cf(
            self.store.family(R::FAMILY),
            record.key().as_bytes(),
            record::encode(record),
        );
        self
    }

    pub fn delete<R: Record>(&mut self, key: &str) -> &mut Self {
        self.batch.delete_cf(self.store.family(R::FAMILY), key.as_bytes());
        self
    }

    pub fn commit(self) -> Result<()> {
        self.store.write(self.batch)
    }
}
