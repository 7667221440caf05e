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

use std::collections::HashSet;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::sync::LazyLock;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use tempfile::TempDir;

use super::batch::{ChangeOp, OP_COLUMN, UNCHANGED_COLUMN};
use crate::contract::DestinationError;

/// How many partitions rows are spilled into.
pub(crate) const PARTITIONS: usize = 64;

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
pub(crate) struct Held {
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
    pub(crate) fn new() -> Self {
        Self::with_budget(*BUDGET)
    }

    /// Nothing held; spills past `budget` bytes.
    pub(crate) fn with_budget(budget: usize) -> Self {
        Self {
            place: Place::Memory(Vec::new()),
            rows: 0,
            bytes: 0,
            budget,
        }
    }

    /// Holds the same number of partitions as `other` (rows that go with
    /// `other`'s, partition by partition), spilled if `other` is.
    pub(crate) fn beside(other: &Held) -> Result<Self, DestinationError> {
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
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// How many partitions [`Held::take`] gives.
    pub(crate) fn partitions(&self) -> usize {
        match &self.place {
            Place::Memory(_) => 1,
            Place::Disk { .. } => PARTITIONS,
        }
    }

    /// Holds `batch`: its row `i` goes with key `keys[i]`, or to every
    /// partition where `everywhere[i]`.
    pub(crate) fn push(
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
    pub(crate) fn take(&mut self, p: usize) -> Result<Vec<RecordBatch>, DestinationError> {
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

/// The change rows of a micro-batch until its commit, by key, with what
/// the commit must know of them as a whole.
pub(crate) struct HeldChanges {
    pub(crate) rows: Held,
    /// Partitions of the rows that depend on each other.
    pub(crate) groups: Groups,
    pub(crate) seen: Seen,
    /// The keys the rows change, when the destination asks for them (to
    /// find their stored rows).
    pub(crate) touched: Option<HashSet<Vec<u8>>>,
    /// The key of the last row held, when it was a delete (a key change's
    /// insert that keeps values takes them from that key's row).
    deleted: Option<Vec<u8>>,
}

/// What a micro-batch's change rows include.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Seen {
    pub(crate) truncate: bool,
    pub(crate) delete: bool,
    /// A value a change did not carry.
    pub(crate) unchanged: bool,
}

impl HeldChanges {
    /// Nothing held; `touched` keeps the keys changed.
    pub(crate) fn new(touched: bool) -> Self {
        Self {
            rows: Held::new(),
            groups: Groups::new(),
            seen: Seen::default(),
            touched: touched.then(HashSet::new),
            deleted: None,
        }
    }

    /// Holds `batch`, change rows (the change schema) whose keys are
    /// `keys`; an unknown change is the error.
    pub(crate) fn push(&mut self, batch: RecordBatch, keys: &[Vec<u8>]) -> Result<(), ChangePushError> {
        let ops = batch
            .column_by_name(OP_COLUMN)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or(ChangePushError::Columns)?
            .clone();
        let unchanged = batch
            .column_by_name(UNCHANGED_COLUMN)
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or(ChangePushError::Columns)?
            .clone();
        let mut everywhere = Vec::with_capacity(keys.len());
        for (row, key) in keys.iter().enumerate() {
            let op = ChangeOp::parse(ops.value(row)).ok_or_else(|| ChangePushError::Op(ops.value(row).to_owned()))?;
            let truncate = op == ChangeOp::Truncate;
            let keeps = unchanged.is_valid(row) && !unchanged.value(row).is_empty();
            self.seen.truncate |= truncate;
            self.seen.delete |= op == ChangeOp::Delete;
            self.seen.unchanged |= keeps;
            if let Some(touched) = self.touched.as_mut().filter(|t| !truncate && !t.contains(key)) {
                touched.insert(key.clone());
            }
            if let Some(deleted) = self.deleted.take().filter(|_| keeps) {
                self.groups.link(&deleted, key);
            }
            if op == ChangeOp::Delete {
                self.deleted = Some(key.clone());
            }
            everywhere.push(truncate);
        }
        self.rows.push(batch, keys, &everywhere).map_err(ChangePushError::Held)
    }
}

/// Why change rows could not be held.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChangePushError {
    #[error("a change batch without _sluice_op and _sluice_unchanged of their types")]
    Columns,
    #[error("unknown change \"{0}\"")]
    Op(String),
    #[error(transparent)]
    Held(DestinationError),
}

/// Partitions applied together: those a change links, as a union-find.
pub(crate) struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    /// Every partition on its own.
    pub(crate) fn new() -> Self {
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
    pub(crate) fn link(&mut self, a: &[u8], b: &[u8]) {
        let (a, b) = (self.root(partition_of(a)), self.root(partition_of(b)));
        self.parent[a.max(b)] = a.min(b);
    }

    /// The groups of `partitions` partitions, each in ascending order.
    pub(crate) fn of(&mut self, partitions: usize) -> Vec<Vec<usize>> {
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
pub(crate) fn partition_of(key: &[u8]) -> usize {
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
