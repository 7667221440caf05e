//! Rows a change batch holds until its commit (docs/cdc.md, "Memory"): in
//! memory while they are small, and once they pass a budget, in
//! [`PARTITIONS`] Arrow IPC files on disk, each row in the partition of
//! its key's hash. A commit then applies one partition at a time: every
//! change of a key, and its stored row, is in the same partition, so a
//! transaction larger than memory is applied with memory for one
//! partition. Rows that concern every key (a `truncate`) go to every
//! partition. Partitions whose rows depend on each other (a key change
//! that keeps the old key's values) are applied together
//! ([`Groups`]).

use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::sync::LazyLock;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use tempfile::TempDir;

use crate::contract::DestinationError;

/// How many partitions rows are spilled into.
pub(super) const PARTITIONS: usize = 64;

/// Bytes of Arrow data a change batch holds in memory before it spills
/// (`SLUICE_CDC_SPILL_MB`, default 32).
static BUDGET: LazyLock<usize> = LazyLock::new(|| {
    std::env::var("SLUICE_CDC_SPILL_MB")
        .ok()
        .and_then(|mb| mb.parse::<usize>().ok())
        .unwrap_or(32)
        << 20
});

/// Rows routed by key, in memory or spilled.
pub(super) struct Held {
    place: Place,
    /// Rows pushed (a broadcast row counts once).
    rows: u64,
    /// Bytes of the batches held in memory.
    bytes: usize,
    budget: usize,
}

enum Place {
    /// One partition, in memory, with each row's key and whether it goes
    /// everywhere (to route them when they spill).
    Memory(Vec<Routed>),
    /// [`PARTITIONS`] files in a directory of their own.
    Disk { dir: TempDir, files: Vec<Spilled> },
}

/// A batch and where its rows go.
struct Routed {
    batch: RecordBatch,
    keys: Vec<Vec<u8>>,
    everywhere: Vec<bool>,
}

/// One partition's file.
struct Spilled {
    path: PathBuf,
    writer: Option<StreamWriter<BufWriter<File>>>,
}

impl Held {
    /// Nothing held; spills past the configured budget.
    pub(super) fn new() -> Self {
        Self::with_budget(*BUDGET)
    }

    /// Nothing held; spills past `budget` bytes.
    pub(super) fn with_budget(budget: usize) -> Self {
        Self {
            place: Place::Memory(Vec::new()),
            rows: 0,
            bytes: 0,
            budget,
        }
    }

    /// Holds the same number of partitions as `other` (rows that go with
    /// `other`'s, partition by partition), spilled if `other` is.
    pub(super) fn beside(other: &Held) -> Result<Self, DestinationError> {
        let mut held = Self::with_budget(other.budget);
        if other.partitions() > 1 {
            held.place = Place::Disk {
                dir: spill_dir()?,
                files: Vec::new(),
            };
            held.open_files()?;
        }
        Ok(held)
    }

    /// How many rows were pushed.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// How many partitions [`Held::take`] gives.
    pub(super) fn partitions(&self) -> usize {
        match &self.place {
            Place::Memory(_) => 1,
            Place::Disk { .. } => PARTITIONS,
        }
    }

    /// Holds `batch`: its row `i` goes with key `keys[i]`, or to every
    /// partition where `everywhere[i]`.
    pub(super) fn push(
        &mut self,
        batch: RecordBatch,
        keys: &[Vec<u8>],
        everywhere: &[bool],
    ) -> Result<(), DestinationError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        if let Place::Memory(batches) = &mut self.place {
            self.bytes += batch.get_array_memory_size();
            batches.push(Routed {
                batch,
                keys: keys.to_vec(),
                everywhere: everywhere.to_vec(),
            });
            if self.bytes > self.budget {
                self.spill()?;
            }
            return Ok(());
        }
        let Place::Disk { files, .. } = &mut self.place else {
            unreachable!("spilled above")
        };
        let homes: Vec<usize> = keys.iter().map(|key| partition_of(key)).collect();
        for (p, file) in files.iter_mut().enumerate() {
            let mask: BooleanArray = (0..batch.num_rows())
                .map(|row| Some(everywhere[row] || homes[row] == p))
                .collect();
            let part = filter_record_batch(&batch, &mask)?;
            if part.num_rows() > 0 {
                file.write(&part)?;
            }
        }
        Ok(())
    }

    /// Moves what memory holds into partition files.
    fn spill(&mut self) -> Result<(), DestinationError> {
        let Place::Memory(batches) = std::mem::replace(
            &mut self.place,
            Place::Disk {
                dir: spill_dir()?,
                files: Vec::new(),
            },
        ) else {
            return Ok(());
        };
        self.open_files()?;
        self.bytes = 0;
        let rows = self.rows;
        for routed in batches {
            self.push(routed.batch, &routed.keys, &routed.everywhere)?;
        }
        self.rows = rows;
        Ok(())
    }

    fn open_files(&mut self) -> Result<(), DestinationError> {
        let Place::Disk { dir, files } = &mut self.place else {
            return Ok(());
        };
        *files = (0..PARTITIONS)
            .map(|p| Spilled {
                path: dir.path().join(format!("{p}.arrow")),
                writer: None,
            })
            .collect();
        Ok(())
    }

    /// The batches of partition `p`, read back from disk when spilled.
    pub(super) fn take(&mut self, p: usize) -> Result<Vec<RecordBatch>, DestinationError> {
        match &mut self.place {
            Place::Memory(batches) => Ok(std::mem::take(batches).into_iter().map(|r| r.batch).collect()),
            Place::Disk { files, .. } => files[p].read(),
        }
    }
}

impl Spilled {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), DestinationError> {
        if self.writer.is_none() {
            let file = File::create(&self.path).map_err(|e| spill_error(&self.path, e))?;
            self.writer = Some(StreamWriter::try_new(BufWriter::new(file), &batch.schema())?);
        }
        self.writer.as_mut().expect("opened above").write(batch)?;
        Ok(())
    }

    fn read(&mut self) -> Result<Vec<RecordBatch>, DestinationError> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(Vec::new());
        };
        writer.finish()?;
        drop(writer);
        let file = File::open(&self.path).map_err(|e| spill_error(&self.path, e))?;
        let batches = StreamReader::try_new(BufReader::new(file), None)?.collect::<Result<Vec<_>, _>>()?;
        std::fs::remove_file(&self.path).map_err(|e| spill_error(&self.path, e))?;
        Ok(batches)
    }
}

/// Partitions applied together: those a change links, as a union-find.
pub(super) struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    /// Every partition on its own.
    pub(super) fn new() -> Self {
        Self {
            parent: (0..PARTITIONS).collect(),
        }
    }

    fn root(&mut self, mut p: usize) -> usize {
        while self.parent[p] != p {
            self.parent[p] = self.parent[self.parent[p]];
            p = self.parent[p];
        }
        p
    }

    /// Applies the partitions of keys `a` and `b` together.
    pub(super) fn link(&mut self, a: &[u8], b: &[u8]) {
        let (a, b) = (self.root(partition_of(a)), self.root(partition_of(b)));
        self.parent[a.max(b)] = a.min(b);
    }

    /// The groups of `partitions` partitions, each in ascending order.
    pub(super) fn of(&mut self, partitions: usize) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); partitions];
        for p in 0..partitions {
            let root = if partitions == 1 { 0 } else { self.root(p) };
            groups[root].push(p);
        }
        groups.retain(|g| !g.is_empty());
        groups
    }
}

/// The partition of `key`.
pub(super) fn partition_of(key: &[u8]) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % PARTITIONS as u64) as usize
}

fn spill_dir() -> Result<TempDir, DestinationError> {
    tempfile::Builder::new()
        .prefix("sluice-changes-")
        .tempdir()
        .map_err(|e| spill_error(&std::env::temp_dir(), e))
}

fn spill_error(path: &std::path::Path, source: std::io::Error) -> DestinationError {
    DestinationError::Spill {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    /// Rows `v` keyed by `v % 10`; `-1` goes everywhere.
    fn push(held: &mut Held, rows: &[i64]) {
        let keys: Vec<Vec<u8>> = rows.iter().map(|v| (v % 10).to_le_bytes().to_vec()).collect();
        let everywhere: Vec<bool> = rows.iter().map(|&v| v == -1).collect();
        held.push(batch(rows), &keys, &everywhere).unwrap();
    }

    #[test]
    fn linked_partitions_form_one_group() {
        let key = |n: i64| n.to_le_bytes().to_vec();
        let (a, b) = (0..)
            .map(|n| (key(0), key(n)))
            .find(|(a, b)| partition_of(a) != partition_of(b))
            .unwrap();
        let mut groups = Groups::new();
        assert_eq!(groups.of(PARTITIONS).len(), PARTITIONS);
        groups.link(&a, &b);
        let linked = groups.of(PARTITIONS);
        assert_eq!(linked.len(), PARTITIONS - 1);
        let both = linked.iter().find(|g| g.len() == 2).unwrap();
        let mut expected = vec![partition_of(&a), partition_of(&b)];
        expected.sort();
        assert_eq!(*both, expected);
        assert_eq!(Groups::new().of(1), [[0]], "in memory: one group");
    }

    #[test]
    fn rows_past_the_budget_spill_by_key_in_order_and_broadcast_rows_go_everywhere() {
        let mut held = Held::with_budget(1 << 20);
        push(&mut held, &[1, 2, 11]);
        assert_eq!(held.partitions(), 1, "in memory under the budget");
        let mut spilled = Held::with_budget(0);
        push(&mut spilled, &[1, 2, 11, -1, 21, 3]);
        push(&mut spilled, &[12, 31]);
        assert_eq!((spilled.partitions(), spilled.rows()), (PARTITIONS, 8));
        let mut beside = Held::beside(&spilled).unwrap();
        push(&mut beside, &[41]);
        let mut seen = Vec::new();
        for p in 0..PARTITIONS {
            let rows = values(&spilled.take(p).unwrap());
            let key_of = |v: &i64| v % 10;
            // Every row of a key in one partition, in the order pushed.
            let ones: Vec<i64> = rows.iter().copied().filter(|v| key_of(v) == 1).collect();
            if !ones.is_empty() {
                assert_eq!(ones, [1, 11, 21, 31], "partition {p}");
                assert_eq!(
                    values(&beside.take(p).unwrap()),
                    [41],
                    "rows beside go to the same partition"
                );
            }
            assert!(rows.contains(&-1), "partition {p} has the broadcast row");
            seen.extend(rows.into_iter().filter(|&v| v != -1));
        }
        seen.sort();
        assert_eq!(seen, [1, 2, 3, 11, 12, 21, 31]);
        assert_eq!(values(&held.take(0).unwrap()), [1, 2, 11]);
    }
}
