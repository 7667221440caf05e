//! RocksDB settings for the catalog. It is a small store (definitions, run
//! records, watermarks) written in small synced batches, so RocksDB's
//! defaults, sized for large databases (64 MiB memtables per column family,
//! WAL files preallocated to match, a block cache per family), would make
//! its memory and disk grow with the number of families and writes rather
//! than with what it keeps. These bound both.

use rocksdb::{BlockBasedOptions, Cache, Options};

/// One column family's memtable before it is flushed to a table file.
const WRITE_BUFFER_BYTES: usize = 4 << 20;

/// All column families' memtables together: past this the largest is
/// flushed, so memory stays flat however many runs are written.
pub(crate) const TOTAL_WRITE_BUFFER_BYTES: usize = 16 << 20;

/// Write-ahead log kept before the families it holds back are flushed.
const MAX_TOTAL_WAL_BYTES: u64 = 32 << 20;

/// The one block cache every family shares.
const BLOCK_CACHE_BYTES: usize = 8 << 20;

/// Options of the database.
pub(crate) fn database() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_keep_log_file_num(3);
    opts.set_db_write_buffer_size(TOTAL_WRITE_BUFFER_BYTES);
    opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    opts
}

/// Options of every column family, sharing `cache`.
pub(crate) fn family(cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    let mut opts = Options::default();
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    opts.set_block_based_table_factory(&table);
    opts
}

/// The shared block cache.
pub(crate) fn block_cache() -> Cache {
    Cache::new_lru_cache(BLOCK_CACHE_BYTES).expect("an LRU cache of a fixed size")
}
