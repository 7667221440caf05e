//! When a CDC table's files are folded together (docs/cdc.md, "Limits of
//! this version"), so that reads stay fast however many change batches
//! arrive:
//!
//! - a `MERGE` table's deltas (`merged.rs`), once they hold a tenth of the
//!   table's rows (at least [`MIN_COMPACTED_ROWS`]) or [`MAX_DELTAS`]
//!   files: the next batch rewrites the table with them folded in;
//! - a `HISTORY` table's small files (one per batch), once there are
//!   [`MAX_SMALL_FILES`] of them: the next batch writes their rows again,
//!   with its own, into files of the usual size. Large files stay.

use std::sync::Arc;

use super::manifest::{DataFile, Manifest};

/// At most this many delta files before a `MERGE` table is rewritten.
pub(super) const MAX_DELTAS: usize = 64;

/// Below this many rows in its deltas a table is not rewritten for their
/// share of it (a small table is cheap to read either way).
const MIN_COMPACTED_ROWS: u64 = 10_000;

/// At most this many small files before a `HISTORY` table's are folded.
pub(super) const MAX_SMALL_FILES: usize = 32;

/// A file under this size is small.
const SMALL_FILE_BYTES: u64 = 8 << 20;

/// Whether a change batch adding `rows` rows to `manifest`'s deltas should
/// rewrite the table instead.
pub(super) fn deltas_due(manifest: &Manifest, rows: u64) -> bool {
    let table: u64 = manifest.files.iter().map(|f| f.rows).sum();
    let deltas: u64 = manifest.deltas.iter().map(|f| f.rows).sum::<u64>() + rows;
    manifest.deltas.len() >= MAX_DELTAS || (deltas >= MIN_COMPACTED_ROWS && deltas * 10 >= table)
}

/// The small files of `manifest` to write again, once there are enough of
/// them; the files it keeps as they are.
pub(super) fn small_files(manifest: &Manifest) -> Option<(Manifest, Vec<DataFile>)> {
    let (small, kept): (Vec<DataFile>, Vec<DataFile>) = manifest
        .files
        .iter()
        .cloned()
        .partition(|f| f.bytes < SMALL_FILE_BYTES && f.constants.is_empty());
    (small.len() >= MAX_SMALL_FILES).then(|| {
        let folded = Manifest {
            schema: Arc::clone(&manifest.schema),
            files: small,
            deltas: Vec::new(),
            ..manifest.clone()
        };
        (folded, kept)
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::Schema;

    use super::*;

    fn files(sizes: &[(u64, u64)]) -> Vec<DataFile> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &(rows, bytes))| DataFile {
                name: format!("f{i}.parquet"),
                rows,
                bytes,
                constants: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn deltas_are_due_at_a_tenth_of_the_table_or_at_max_deltas() {
        let mut manifest = Manifest::empty(Arc::new(Schema::empty()));
        manifest.files = files(&[(1_000_000, 1)]);
        manifest.deltas = files(&[(50_000, 1)]);
        assert!(!deltas_due(&manifest, 49_999), "under a tenth");
        assert!(deltas_due(&manifest, 50_000), "a tenth");
        manifest.files = files(&[(1_000, 1)]);
        manifest.deltas = files(&[(500, 1)]);
        assert!(
            !deltas_due(&manifest, 500),
            "a small table's deltas wait for 10,000 rows"
        );
        manifest.deltas = files(&[(1, 1); MAX_DELTAS]);
        assert!(deltas_due(&manifest, 1), "too many files");
    }

    #[test]
    fn small_files_are_folded_once_there_are_enough_and_large_ones_stay() {
        let mut manifest = Manifest::empty(Arc::new(Schema::empty()));
        let mut sizes = vec![(10, 1_000); MAX_SMALL_FILES - 1];
        sizes.push((1_000_000, 100 << 20));
        manifest.files = files(&sizes);
        assert!(small_files(&manifest).is_none(), "one small file short");
        manifest.files.extend(files(&[(10, 1_000)]));
        let (folded, kept) = small_files(&manifest).unwrap();
        assert_eq!(folded.files.len(), MAX_SMALL_FILES);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].rows, 1_000_000);
    }
}
