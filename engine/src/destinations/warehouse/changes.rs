//! Captured changes applied to a warehouse table (docs/cdc.md): a
//! [`ChangeLoad`] collects one micro-batch of change rows and its commit
//! publishes the table's next manifest version, with the source position as
//! its watermark, so readers see the whole batch or none of it.
//!
//! - `MERGE` writes the latest version of every touched key as a delta
//!   file (merge-on-read, `merged.rs`; a delete as a `delete` row, or with
//!   `soft_delete` as the row kept with `_sluice_deleted_at` set to the
//!   delete's commit time, until the key is inserted again). A batch with a
//!   `truncate`, and one that finds the deltas large enough, rewrites the
//!   table instead (copy-on-write, which is compaction): one streaming pass
//!   copies the rows whose key no change touches into new files, then the
//!   latest version of every touched key follows. A `truncate` drops
//!   everything before it.
//! - `HISTORY` appends every change row (`_sluice_op`, `_sluice_position`,
//!   `_sluice_commit_ts`); `<table>_current` reads the latest state
//!   (`read.rs`).
//!
//! A value the change did not carry (PostgreSQL's unchanged TOAST values,
//! named in `_sluice_unchanged`) takes the key's stored value, never NULL:
//! the latest earlier change of the key in the batch, else the row stored
//! before it (for an `insert` right after the `delete` of a key change,
//! the deleted row's).
//!
//! The batch's change rows are held in memory until the commit; the rows
//! already stored are streamed (read only when the batch needs stored
//! values: a rewrite, an unchanged value, a soft delete).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, NullArray, RecordBatch, StringArray,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::scalar::ScalarValue;
use futures::TryStreamExt;
use sluice_catalog::CdcMode;

use super::LocalWarehouse;
use super::compaction::{deltas_due, small_files};
use super::encode::Encoder;
use super::load::publish_next;
use super::manifest::{ChangeLayout, DataFile, Manifest};
use super::merged::delta_schema;
use super::read::WarehouseTable;
use crate::cdc::spill::{ChangePushError, Held, HeldChanges};
use crate::cdc::{COMMIT_TS_COLUMN, ChangeOp, DELETED_AT_COLUMN, OP_COLUMN, POSITION_COLUMN, UNCHANGED_COLUMN};
use crate::contract::{ChangeSpec, CommitReport, DestinationError, LoadTransaction};
use crate::sources::datafusion_sql::session as datafusion_session;

/// Rows per batch of rows the commit builds.
const OUTPUT_ROWS: usize = 8192;

/// Where a table keeps what a change writes.
struct Columns {
    /// The data columns (every column but Sluice's own), as indexes into
    /// the table schema.
    data: Vec<usize>,
    /// The key columns, as indexes into `data`.
    key: Vec<usize>,
    op: Option<usize>,
    position: usize,
    commit_ts: usize,
    /// `_sluice_deleted_at`, with `soft_delete`.
    deleted_at: Option<usize>,
    /// Turns key values into comparable bytes.
    keys: RowConverter,
}

impl Columns {
    fn of(table: &str, schema: &SchemaRef, layout: &ChangeLayout) -> Result<Self, DestinationError> {
        let invalid = |reason: String| DestinationError::Changes {
            table: table.to_owned(),
            reason,
        };
        let find = |name: &str| {
            schema
                .index_of(name)
                .map_err(|_| invalid(format!("the table has no column \"{name}\"")))
        };
        let own = [OP_COLUMN, POSITION_COLUMN, COMMIT_TS_COLUMN, DELETED_AT_COLUMN];
        let data: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| !own.contains(&schema.field(i).name().as_str()))
            .collect();
        let key = layout
            .key
            .iter()
            .map(|name| {
                let at = find(name)?;
                data.iter()
                    .position(|&i| i == at)
                    .ok_or_else(|| invalid(format!("\"{name}\" cannot be a key column")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if layout.mode == CdcMode::Merge && key.is_empty() {
            return Err(invalid("MERGE needs the columns of a primary key".into()));
        }
        if layout.soft_delete && layout.mode != CdcMode::Merge {
            return Err(invalid("soft_delete applies to MERGE only".into()));
        }
        let keys = RowConverter::new(
            key.iter()
                .map(|&k| SortField::new(schema.field(data[k]).data_type().clone()))
                .collect(),
        )?;
        Ok(Self {
            op: match layout.mode {
                CdcMode::History => Some(find(OP_COLUMN)?),
                CdcMode::Merge => None,
            },
            position: find(POSITION_COLUMN)?,
            commit_ts: find(COMMIT_TS_COLUMN)?,
            deleted_at: layout.soft_delete.then(|| find(DELETED_AT_COLUMN)).transpose()?,
            data,
            key,
            keys,
        })
    }

    /// The key bytes of each of the `rows` rows of `key_columns`.
    fn keys(&self, key_columns: Vec<ArrayRef>, rows: usize) -> Result<Vec<Vec<u8>>, DestinationError> {
        if self.key.is_empty() {
            return Ok(vec![Vec::new(); rows]);
        }
        let rows = self.keys.convert_columns(&key_columns)?;
        Ok(rows.iter().map(|row| row.as_ref().to_vec()).collect())
    }
}

/// A key's values as last written: its data columns and its change's
/// position and commit time; `deleted` for a soft-deleted row (its
/// `_sluice_deleted_at` is the delete's commit time).
#[derive(Debug, Clone)]
struct Stored {
    values: Vec<ScalarValue>,
    position: String,
    commit_ts: ScalarValue,
    deleted: bool,
}

/// One change row, read from a change batch.
#[derive(Debug)]
struct Change {
    op: ChangeOp,
    key: Vec<u8>,
    row: Stored,
    /// The data columns the change did not carry, as indexes into `values`.
    unchanged: Vec<usize>,
}

/// The latest version of each key, as the changes of a batch go by.
#[derive(Default)]
struct Versions {
    /// What the table held before the batch, for the keys it touches
    /// (`None`: deleted).
    stored: HashMap<Vec<u8>, Option<Stored>>,
    /// What the batch made of them, in key order.
    latest: BTreeMap<Vec<u8>, Option<Stored>>,
    /// A delete keeps the row, marked `deleted` (`MERGE` with `soft_delete`).
    soft_delete: bool,
}

impl Versions {
    /// The key's live version (a soft-deleted row is not one).
    fn current(&self, key: &[u8]) -> Option<&Stored> {
        match self.latest.get(key) {
            Some(latest) => latest.as_ref(),
            None => self.stored.get(key).and_then(Option::as_ref),
        }
        .filter(|stored| !stored.deleted)
    }

    /// Applies `changes` in order, filling the values they did not carry;
    /// returns them filled. `names` are the data columns' names.
    fn apply(&mut self, changes: Vec<Change>, names: &[String]) -> Result<Vec<Change>, String> {
        let mut removed: Option<Stored> = None;
        let mut applied = Vec::with_capacity(changes.len());
        for mut change in changes {
            let just_removed = removed.take();
            match change.op {
                ChangeOp::Truncate => {
                    self.stored.clear();
                    self.latest.clear();
                }
                ChangeOp::Delete => {
                    removed = self.current(&change.key).cloned();
                    let marked = self.soft_delete.then(|| Stored {
                        deleted: true,
                        values: removed.as_ref().map_or(change.row.values.clone(), |r| r.values.clone()),
                        ..change.row.clone()
                    });
                    self.latest.insert(change.key.clone(), marked);
                }
                ChangeOp::Insert | ChangeOp::Update => {
                    if !change.unchanged.is_empty() {
                        let from = self.current(&change.key).or(just_removed.as_ref()).ok_or_else(|| {
                            format!(
                                "the {} at {} leaves column \"{}\" unchanged, but no earlier version of its row is \
                                 stored",
                                change.op.as_str(),
                                change.row.position,
                                names[change.unchanged[0]]
                            )
                        })?;
                        for &i in &change.unchanged {
                            change.row.values[i] = from.values[i].clone();
                        }
                    }
                    self.latest.insert(change.key.clone(), Some(change.row.clone()));
                }
            }
            applied.push(change);
        }
        Ok(applied)
    }
}

/// One micro-batch of changes to a warehouse table.
pub(super) struct ChangeLoad {
    warehouse: LocalWarehouse,
    table: String,
    run_id: u64,
    layout: ChangeLayout,
    /// The version this batch started from; it publishes the next one.
    base: Manifest,
    columns: Columns,
    /// The batch's change rows, by key (spilled to disk past a budget).
    held: HeldChanges,
}

impl ChangeLoad {
    pub fn new(
        warehouse: LocalWarehouse,
        table: &str,
        run_id: u64,
        spec: &ChangeSpec,
        base: Manifest,
    ) -> Result<Self, DestinationError> {
        let layout = ChangeLayout {
            mode: spec.mode,
            key: spec.key.clone(),
            soft_delete: spec.soft_delete,
        };
        if let Some(existing) = &base.changes
            && *existing != layout
        {
            return Err(DestinationError::Changes {
                table: table.to_owned(),
                reason: format!(
                    "the table holds {:?} changes keyed by ({}), not {:?} changes keyed by ({})",
                    existing.mode,
                    existing.key.join(", "),
                    layout.mode,
                    layout.key.join(", ")
                ),
            });
        }
        let columns = Columns::of(table, &base.schema, &layout)?;
        Ok(Self {
            warehouse,
            table: table.to_owned(),
            run_id,
            layout,
            base,
            columns,
            held: HeldChanges::new(true),
        })
    }

    fn invalid(&self, reason: String) -> DestinationError {
        DestinationError::Changes {
            table: self.table.clone(),
            reason,
        }
    }

    fn data_names(&self) -> Vec<String> {
        let schema = &self.base.schema;
        self.columns
            .data
            .iter()
            .map(|&i| schema.field(i).name().clone())
            .collect()
    }

    /// The columns of change batch `batch`, checked against the table:
    /// its data columns, then ops, positions, unchanged columns and
    /// commit times, and each row's key.
    #[allow(clippy::type_complexity)]
    fn change_columns<'b>(
        &self,
        batch: &'b RecordBatch,
    ) -> Result<
        (
            Vec<&'b ArrayRef>,
            StringArray,
            StringArray,
            ListArray,
            &'b ArrayRef,
            Vec<Vec<u8>>,
        ),
        DestinationError,
    > {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| self.invalid(format!("a change batch without column \"{name}\"")))
        };
        let data = self
            .data_names()
            .iter()
            .map(|n| column(n.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let ops = column(OP_COLUMN)?.as_string_opt::<i32>().cloned();
        let positions = column(POSITION_COLUMN)?.as_string_opt::<i32>().cloned();
        let unchanged = column(UNCHANGED_COLUMN)?.as_list_opt::<i32>().cloned();
        let (Some(ops), Some(positions), Some(unchanged)) = (ops, positions, unchanged) else {
            return Err(self.invalid("a change batch whose _sluice_* columns have other types".into()));
        };
        let commit_ts = column(COMMIT_TS_COLUMN)?;
        let keys = self.columns.keys(
            self.columns.key.iter().map(|&k| Arc::clone(data[k])).collect(),
            batch.num_rows(),
        )?;
        Ok((data, ops, positions, unchanged, commit_ts, keys))
    }

    /// The change rows of `batch`, in the change schema.
    fn read_changes(&self, batch: &RecordBatch) -> Result<Vec<Change>, DestinationError> {
        let names = self.data_names();
        let (data, ops, positions, unchanged, commit_ts, keys) = self.change_columns(batch)?;
        let mut changes = Vec::with_capacity(batch.num_rows());
        for (row, key) in keys.into_iter().enumerate() {
            let op = ChangeOp::parse(ops.value(row))
                .ok_or_else(|| self.invalid(format!("unknown change \"{}\"", ops.value(row))))?;
            let mut not_carried = Vec::new();
            if unchanged.is_valid(row) {
                for name in unchanged.value(row).as_string::<i32>().iter().flatten() {
                    let at = names
                        .iter()
                        .position(|n| n == name)
                        .ok_or_else(|| self.invalid(format!("unchanged column \"{name}\" is not in the table")))?;
                    not_carried.push(at);
                }
            }
            changes.push(Change {
                op,
                key,
                row: Stored {
                    values: data
                        .iter()
                        .map(|c| ScalarValue::try_from_array(c, row))
                        .collect::<Result<_, _>>()?,
                    position: positions.value(row).to_owned(),
                    commit_ts: ScalarValue::try_from_array(commit_ts, row)?,
                    deleted: false,
                },
                unchanged: not_carried,
            });
        }
        Ok(changes)
    }

    /// Streams the rows of the version this batch started from.
    async fn stored_rows(
        &self,
    ) -> Result<impl futures::Stream<Item = Result<RecordBatch, DestinationError>>, DestinationError> {
        let provider = WarehouseTable::new(self.warehouse.clone(), &self.table, self.base.clone());
        let stream = datafusion_session(None)
            .read_table(Arc::new(provider))?
            .execute_stream()
            .await?;
        Ok(stream.map_err(DestinationError::from))
    }

    /// The stored row `row` of `batch`.
    fn stored(&self, batch: &RecordBatch, row: usize) -> Result<Stored, DestinationError> {
        let position = batch.column(self.columns.position).as_string_opt::<i32>();
        Ok(Stored {
            values: self
                .columns
                .data
                .iter()
                .map(|&i| ScalarValue::try_from_array(batch.column(i), row))
                .collect::<Result<_, _>>()?,
            position: position.map(|p| p.value(row).to_owned()).unwrap_or_default(),
            commit_ts: ScalarValue::try_from_array(batch.column(self.columns.commit_ts), row)?,
            deleted: self.columns.deleted_at.is_some_and(|at| batch.column(at).is_valid(row)),
        })
    }

    /// Holds the stored rows of the touched keys (and, `HISTORY`, the
    /// stored `truncate` rows) beside the change rows, partition by
    /// partition; with `copy_to` (a rewrite), copies the untouched rows
    /// there.
    async fn hold_stored(&self, mut copy_to: Option<&mut Encoder>) -> Result<Held, DestinationError> {
        let mut stored = Held::beside(&self.held.rows)?;
        let mut rows = self.stored_rows().await?;
        while let Some(batch) = rows.try_next().await? {
            let keys = self.key_columns_of(&batch)?;
            let everywhere: Vec<bool> = match self.columns.op {
                Some(op) => {
                    let ops = batch.column(op).as_string::<i32>();
                    (0..batch.num_rows())
                        .map(|row| ops.value(row) == ChangeOp::Truncate.as_str())
                        .collect()
                }
                None => vec![false; batch.num_rows()],
            };
            let wanted: Vec<bool> = (keys.iter().zip(&everywhere))
                .map(|(key, &everywhere)| everywhere || self.held.touched.as_ref().is_some_and(|t| t.contains(key)))
                .collect();
            if let Some(encoder) = copy_to.as_deref_mut() {
                let untouched = filter_record_batch(
                    &batch,
                    &BooleanArray::from(wanted.iter().map(|w| !w).collect::<Vec<_>>()),
                )?;
                if untouched.num_rows() > 0 {
                    encoder.write(untouched).await?;
                }
            }
            if wanted.iter().any(|&w| w) {
                let kept = filter_record_batch(&batch, &BooleanArray::from(wanted.clone()))?;
                let (keys, everywhere): (Vec<Vec<u8>>, Vec<bool>) = (keys.into_iter().zip(everywhere))
                    .zip(&wanted)
                    .filter(|(_, w)| **w)
                    .map(|(pair, _)| pair)
                    .unzip();
                stored.push(kept, &keys, &everywhere)?;
            }
        }
        Ok(stored)
    }

    /// `MERGE`: the stored row of each key in `batches`.
    fn stored_by_key(&self, batches: &[RecordBatch]) -> Result<HashMap<Vec<u8>, Option<Stored>>, DestinationError> {
        let mut stored = HashMap::new();
        for batch in batches {
            for (row, key) in self.key_columns_of(batch)?.into_iter().enumerate() {
                stored.insert(key, Some(self.stored(batch, row)?));
            }
        }
        Ok(stored)
    }

    /// `HISTORY`: the latest stored version of each key of `batches` (the
    /// history rows of some keys, and every `truncate`): `None` when it was
    /// deleted, or truncated away.
    fn latest_history(&self, batches: &[RecordBatch]) -> Result<HashMap<Vec<u8>, Option<Stored>>, DestinationError> {
        let op_column = self.columns.op.expect("history tables have an op column");
        let mut latest: HashMap<Vec<u8>, (Stored, bool)> = HashMap::new();
        let mut truncated_at = String::new();
        for batch in batches {
            let ops = batch.column(op_column).as_string::<i32>().clone();
            let positions = batch.column(self.columns.position).as_string::<i32>().clone();
            let keys = self.key_columns_of(batch)?;
            for (row, key) in keys.into_iter().enumerate() {
                let position = positions.value(row);
                let op = ops.value(row);
                if op == ChangeOp::Truncate.as_str() {
                    if position > truncated_at.as_str() {
                        truncated_at = position.to_owned();
                    }
                    continue;
                }
                if latest.get(&key).is_some_and(|(s, _)| s.position.as_str() >= position) {
                    continue;
                }
                let deleted = op == ChangeOp::Delete.as_str();
                latest.insert(key, (self.stored(batch, row)?, deleted));
            }
        }
        Ok(latest
            .into_iter()
            .map(|(key, (stored, deleted))| {
                let live = !deleted && stored.position > truncated_at;
                (key, live.then_some(stored))
            })
            .collect())
    }

    fn key_columns_of(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, DestinationError> {
        let columns = &self.columns;
        let key_columns = columns
            .key
            .iter()
            .map(|&k| batch.column(columns.data[k]).clone())
            .collect();
        columns.keys(key_columns, batch.num_rows())
    }

    /// Encodes `rows` (with their ops, for `HISTORY` and deltas) in the
    /// table's schema, or (`Writes::Deltas`) a delta file's.
    async fn write_rows(
        &self,
        rows: &[(ChangeOp, &Stored)],
        into: Writes,
        encoder: &mut Encoder,
    ) -> Result<(), DestinationError> {
        let (schema, op) = match into {
            Writes::Table => (self.base.schema.clone(), self.columns.op),
            Writes::Deltas => {
                let schema = delta_schema(&self.base.schema);
                let op = schema.fields().len() - 1;
                (schema, Some(op))
            }
        };
        for chunk in rows.chunks(OUTPUT_ROWS) {
            let batch = self.encode_rows(chunk, &schema, op)?;
            encoder.write(batch).await?;
        }
        Ok(())
    }

    fn encode_rows(
        &self,
        chunk: &[(ChangeOp, &Stored)],
        schema: &SchemaRef,
        op: Option<usize>,
    ) -> Result<RecordBatch, DestinationError> {
        let mut arrays: Vec<ArrayRef> = (0..schema.fields().len())
            .map(|_| Arc::new(NullArray::new(0)) as ArrayRef)
            .collect();
        for (n, &i) in self.columns.data.iter().enumerate() {
            arrays[i] = ScalarValue::iter_to_array(chunk.iter().map(|(_, row)| row.values[n].clone()))?;
        }
        if let Some(op) = op {
            arrays[op] = ScalarValue::iter_to_array(chunk.iter().map(|(op, _)| ScalarValue::from(op.as_str())))?;
        }
        arrays[self.columns.position] =
            ScalarValue::iter_to_array(chunk.iter().map(|(_, row)| ScalarValue::from(row.position.as_str())))?;
        arrays[self.columns.commit_ts] =
            ScalarValue::iter_to_array(chunk.iter().map(|(_, row)| row.commit_ts.clone()))?;
        if let Some(deleted_at) = self.columns.deleted_at {
            let field = schema.field(deleted_at);
            arrays[deleted_at] = ScalarValue::iter_to_array(
                chunk
                    .iter()
                    .map(|(_, row)| match row.deleted {
                        true => Ok(row.commit_ts.clone()),
                        false => ScalarValue::try_from(field.data_type()),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )?;
        }
        let arrays = arrays
            .into_iter()
            .zip(schema.fields())
            .map(|(array, field)| {
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    datafusion::arrow::compute::cast(&array, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(schema.clone(), arrays)?)
    }

    /// Where this batch goes: `MERGE` batches into a delta file, unless a
    /// `truncate` or the deltas' size calls for a rewrite.
    fn destination(&self) -> Writes {
        let rewrite = self.held.seen.truncate || deltas_due(&self.base, self.held.rows.rows());
        match self.layout.mode {
            CdcMode::Merge if !rewrite => Writes::Deltas,
            _ => Writes::Table,
        }
    }

    /// Applies the batch into `encoder` (`into` says which files it
    /// writes), one partition of the held rows at a time; the files of the
    /// base version the next version keeps.
    async fn apply(&mut self, into: Writes, encoder: &mut Encoder) -> Result<Vec<DataFile>, DestinationError> {
        let mode = self.layout.mode;
        let seen = self.held.seen;
        let needs_stored = match (mode, into) {
            // Nothing stored survives a truncate.
            (CdcMode::Merge, Writes::Table) => !seen.truncate,
            (CdcMode::Merge, Writes::Deltas) => seen.unchanged || (self.layout.soft_delete && seen.delete),
            (CdcMode::History, _) => seen.unchanged,
        };
        if mode == CdcMode::History && seen.unchanged && self.columns.key.is_empty() {
            return Err(self.invalid(
                "a change leaves a value unchanged, but the table has no key to find the stored one \
                 (use REPLICA IDENTITY FULL at the source)"
                    .into(),
            ));
        }
        let copy_to = (mode == CdcMode::Merge && into == Writes::Table).then_some(&mut *encoder);
        let mut stored = match needs_stored {
            true => self.hold_stored(copy_to).await?,
            false => Held::beside(&self.held.rows)?,
        };
        for group in self.held.groups.of(self.held.rows.partitions()) {
            let mut changes = Vec::new();
            let mut stored_rows = Vec::new();
            for &p in &group {
                for batch in self.held.rows.take(p)? {
                    changes.extend(self.read_changes(&batch)?);
                }
                stored_rows.extend(stored.take(p)?);
            }
            if group.len() > 1 {
                // Back in log order; a truncate each partition had, once.
                changes.sort_by(|a, b| a.row.position.cmp(&b.row.position));
                // (Stored truncates repeat too: only the latest counts.)
                changes.dedup_by(|a, b| {
                    a.op == ChangeOp::Truncate && b.op == ChangeOp::Truncate && a.row.position == b.row.position
                });
            }
            self.apply_partition(changes, &stored_rows, into, group[0] == 0, encoder)
                .await?;
        }
        Ok(match (mode, into) {
            (CdcMode::Merge, Writes::Table) => Vec::new(),
            (CdcMode::History, _) => self.fold_small_files(encoder).await?,
            (CdcMode::Merge, Writes::Deltas) => self.base.files.clone(),
        })
    }

    /// `HISTORY`: writes the rows of the table's small files again into
    /// `encoder` once there are enough of them; the files kept as they are.
    async fn fold_small_files(&self, encoder: &mut Encoder) -> Result<Vec<DataFile>, DestinationError> {
        let Some((folded, kept)) = small_files(&self.base) else {
            return Ok(self.base.files.clone());
        };
        let provider = WarehouseTable::new(self.warehouse.clone(), &self.table, folded);
        let mut rows = datafusion_session(None)
            .read_table(Arc::new(provider))?
            .execute_stream()
            .await?;
        while let Some(batch) = rows.try_next().await? {
            encoder.write(batch).await?;
        }
        Ok(kept)
    }

    /// Applies the `changes` of one partition (every change of their keys,
    /// in order, and every `truncate`) over the `stored` rows of their keys;
    /// `first` writes what concerns every partition (`HISTORY`'s
    /// `truncate` rows).
    async fn apply_partition(
        &self,
        changes: Vec<Change>,
        stored: &[RecordBatch],
        into: Writes,
        first: bool,
        encoder: &mut Encoder,
    ) -> Result<(), DestinationError> {
        let names = self.data_names();
        let mut versions = Versions {
            soft_delete: self.layout.soft_delete,
            ..Versions::default()
        };
        match (self.layout.mode, into) {
            (CdcMode::Merge, Writes::Deltas) => {
                versions.stored = self.stored_by_key(stored)?;
                let applied = versions.apply(changes, &names).map_err(|reason| self.invalid(reason))?;
                // A deleted key's delta row is its delete (its key and position).
                let deletes: HashMap<&[u8], &Stored> = applied
                    .iter()
                    .filter(|c| c.op == ChangeOp::Delete)
                    .map(|c| (c.key.as_slice(), &c.row))
                    .collect();
                let rows = versions
                    .latest
                    .iter()
                    .map(|(key, latest)| match latest {
                        Some(row) => Ok((ChangeOp::Update, row)),
                        None => deletes
                            .get(key.as_slice())
                            .map(|row| (ChangeOp::Delete, *row))
                            .ok_or_else(|| self.invalid("a key deleted without a delete".into())),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.write_rows(&rows, Writes::Deltas, encoder).await
            }
            (CdcMode::Merge, Writes::Table) => {
                // Only what follows the last truncate counts.
                let start = changes
                    .iter()
                    .rposition(|c| c.op == ChangeOp::Truncate)
                    .map_or(0, |at| at + 1);
                let changes: Vec<Change> = changes.into_iter().skip(start).collect();
                versions.stored = self.stored_by_key(stored)?;
                versions.apply(changes, &names).map_err(|reason| self.invalid(reason))?;
                let latest: Vec<(ChangeOp, &Stored)> = versions
                    .latest
                    .values()
                    .flatten()
                    .map(|row| (ChangeOp::Update, row))
                    .collect();
                self.write_rows(&latest, Writes::Table, encoder).await
            }
            (CdcMode::History, _) => {
                versions.soft_delete = false;
                versions.stored = self.latest_history(stored)?;
                let applied = versions.apply(changes, &names).map_err(|reason| self.invalid(reason))?;
                let rows: Vec<(ChangeOp, &Stored)> = applied
                    .iter()
                    .filter(|c| first || c.op != ChangeOp::Truncate)
                    .map(|c| (c.op, &c.row))
                    .collect();
                self.write_rows(&rows, Writes::Table, encoder).await
            }
        }
    }
}

/// Which files a change batch writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// The table's own (a rewrite of a `MERGE` table, `HISTORY` rows).
    Table,
    /// A `MERGE` table's deltas.
    Deltas,
}

#[async_trait]
impl LoadTransaction for ChangeLoad {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        // Checked now, so a batch the table cannot take fails here.
        let keys = self.change_columns(&batch)?.5;
        self.held.push(batch, &keys).map_err(|e| match e {
            ChangePushError::Held(e) => e,
            other => self.invalid(other.to_string()),
        })
    }

    async fn commit(mut self: Box<Self>, watermark: Option<String>) -> Result<CommitReport, DestinationError> {
        let mut next = self.base.clone();
        next.changes = Some(self.layout.clone());
        if self.held.rows.rows() == 0 {
            // Nothing changed: the same files, the new position.
            return publish_next(&self.warehouse, &self.table, self.run_id, next, Vec::new(), watermark).await;
        }
        let into = self.destination();
        let schema = match into {
            Writes::Table => self.base.schema.clone(),
            Writes::Deltas => delta_schema(&self.base.schema),
        };
        let prefix = format!("run-{}-{:016x}", self.run_id, rand::random::<u64>());
        let mut encoder = Encoder::start(self.warehouse.clone(), &self.table, prefix, schema);
        let kept = match self.apply(into, &mut encoder).await {
            Ok(kept) => kept,
            Err(e) => {
                if let Err(discard) = encoder.discard().await {
                    tracing::warn!(table = %self.table, error = %discard, "could not delete the files of a failed change batch");
                }
                return Err(e);
            }
        };
        let finished = encoder.finish().await?;
        tracing::debug!(
            table = %self.table,
            rows = self.held.rows.rows(),
            rewrite = into == Writes::Table,
            deltas = self.base.deltas.len(),
            files = finished.len(),
            "change batch written"
        );
        next.files = kept;
        match into {
            Writes::Deltas => next.deltas.extend(finished.iter().cloned()),
            Writes::Table => {
                // A rewrite folds the deltas in.
                next.deltas.clear();
                next.files.extend(finished.iter().cloned());
            }
        }
        publish_next(&self.warehouse, &self.table, self.run_id, next, finished, watermark).await
    }

    async fn abort(self: Box<Self>) -> Result<(), DestinationError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::prelude::SessionContext;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::cdc::batch::tests::cast;
    use crate::cdc::workload::{ChangeLog, Row, columns, random_change, text};
    use crate::cdc::{ChangeBatchBuilder, ChangeValue, change_table_schema};
    use crate::contract::{Destination, Position, TableSpec};
    use crate::destinations::WarehouseSchema;

    fn spec(mode: CdcMode) -> ChangeSpec {
        ChangeSpec {
            mode,
            key: vec!["id".into()],
            soft_delete: false,
        }
    }

    async fn warehouse(dir: &tempfile::TempDir, mode: CdcMode) -> LocalWarehouse {
        warehouse_of(dir, &spec(mode)).await
    }

    async fn warehouse_of(dir: &tempfile::TempDir, spec: &ChangeSpec) -> LocalWarehouse {
        let warehouse = LocalWarehouse::open_dir(dir.path()).unwrap();
        let table = TableSpec {
            name: "t".into(),
            schema: change_table_schema(&columns(), spec.mode, spec.soft_delete),
            job: "j".into(),
            cursor: None,
            primary_key: vec!["id".into()],
            layout: Default::default(),
        };
        warehouse.ensure_table(&table).await.unwrap();
        warehouse
    }

    /// Collects change rows of one source transaction after another.
    struct Changes {
        builder: ChangeBatchBuilder,
        lsn: u64,
        seq: u32,
    }

    impl ChangeLog for Changes {
        fn push(&mut self, op: ChangeOp, id: Option<i64>, name: ChangeValue, big: ChangeValue) {
            let id = id.map_or(ChangeValue::Null, |id| ChangeValue::Text(id.to_string()));
            let position = Position::postgres_snapshot(self.lsn).row_position(self.seq);
            self.seq += 1;
            self.builder.push(op, position, self.lsn as i64, vec![id, name, big]);
        }
    }

    impl Changes {
        fn new() -> Self {
            Self {
                builder: ChangeBatchBuilder::new(columns(), cast, 7),
                lsn: 0x100,
                seq: 0,
            }
        }

        /// Ends the transaction: its position, as a destination commits it.
        fn commit(&mut self) -> String {
            let at = Position::Postgres {
                commit_lsn: self.lsn,
                end_lsn: self.lsn + 8,
            };
            self.lsn += 16;
            self.seq = 0;
            at.to_json()
        }

        fn batches(&mut self) -> Vec<RecordBatch> {
            let mut batches = Vec::new();
            while let Some(batch) = self.builder.finish().unwrap() {
                batches.push(batch);
            }
            batches
        }
    }

    async fn apply(warehouse: &LocalWarehouse, mode: CdcMode, batches: Vec<RecordBatch>, position: &str) {
        apply_spec(warehouse, &spec(mode), batches, position).await;
    }

    async fn apply_spec(warehouse: &LocalWarehouse, spec: &ChangeSpec, batches: Vec<RecordBatch>, position: &str) {
        apply_held(warehouse, spec, batches, position, None).await;
    }

    /// [`apply_spec`] holding at most `budget` bytes in memory (`Some(0)`:
    /// every batch spills to disk).
    async fn apply_held(
        warehouse: &LocalWarehouse,
        spec: &ChangeSpec,
        batches: Vec<RecordBatch>,
        position: &str,
        budget: Option<usize>,
    ) {
        let base = warehouse.latest_manifest("t").await.unwrap().unwrap();
        let mut load = ChangeLoad::new(warehouse.clone(), "t", 1, spec, base).unwrap();
        if let Some(budget) = budget {
            load.held.rows = Held::with_budget(budget);
        }
        let mut load: Box<dyn LoadTransaction> = Box::new(load);
        for batch in batches {
            load.write(batch).await.unwrap();
        }
        load.commit(Some(position.to_owned())).await.unwrap();
    }

    /// The rows of `table` by id.
    async fn rows(warehouse: &LocalWarehouse, table: &str) -> BTreeMap<i64, Row> {
        query_rows(warehouse, &format!("SELECT id, name, big FROM warehouse.\"{table}\""))
            .await
            .into_iter()
            .map(|(id, (row, _))| (id, row))
            .collect()
    }

    /// The rows of a soft-deleting table by id, with whether they are
    /// marked deleted.
    async fn marked_rows(warehouse: &LocalWarehouse) -> BTreeMap<i64, (Row, bool)> {
        query_rows(
            warehouse,
            "SELECT id, name, big, CASE WHEN _sluice_deleted_at IS NULL THEN 'live' ELSE 'deleted' END \
             FROM warehouse.t",
        )
        .await
        .into_iter()
        .map(|(id, (row, flag))| (id, (row, flag.as_deref() == Some("deleted"))))
        .collect()
    }

    /// The rows of `sql` (`id`, two text columns, an optional third) by id.
    async fn query_rows(warehouse: &LocalWarehouse, sql: &str) -> BTreeMap<i64, (Row, Option<String>)> {
        let ctx = SessionContext::new();
        let schema = WarehouseSchema::new(warehouse.clone()).await.unwrap();
        ctx.catalog("datafusion")
            .unwrap()
            .register_schema("warehouse", Arc::new(schema))
            .unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut rows = BTreeMap::new();
        for batch in batches {
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let text = |c: usize, row: usize| {
                let column = batch.column(c).as_string::<i32>();
                column.is_valid(row).then(|| column.value(row).to_owned())
            };
            for row in 0..batch.num_rows() {
                let flag = (batch.num_columns() > 3).then(|| text(3, row)).flatten();
                let duplicate = rows.insert(ids.value(row), ((text(1, row), text(2, row)), flag));
                assert!(duplicate.is_none(), "key {} twice", ids.value(row));
            }
        }
        rows
    }

    fn row(name: &str, big: &str) -> Row {
        (Some(name.into()), Some(big.into()))
    }

    #[tokio::test]
    async fn merge_upserts_deletes_keeps_unchanged_values_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = warehouse(&dir, CdcMode::Merge).await;
        let mut changes = Changes::new();
        changes.push(ChangeOp::Insert, Some(1), text("a"), text("big one"));
        changes.push(ChangeOp::Insert, Some(2), text("b"), text("big two"));
        changes.push(ChangeOp::Insert, Some(3), text("c"), ChangeValue::Null);
        let first = changes.commit();
        apply(&warehouse, CdcMode::Merge, changes.batches(), &first).await;
        assert_eq!(
            rows(&warehouse, "t").await,
            BTreeMap::from([
                (1, row("a", "big one")),
                (2, row("b", "big two")),
                (3, (Some("c".into()), None))
            ])
        );
        assert_eq!(
            warehouse
                .committed_state("t")
                .await
                .unwrap()
                .unwrap()
                .watermark
                .as_deref(),
            Some(first.as_str()),
            "the version records the position it committed"
        );

        // An update leaving the TOASTed column unchanged, a key change whose
        // new row leaves it unchanged too, a delete.
        changes.push(ChangeOp::Update, Some(1), text("a2"), ChangeValue::Unchanged);
        changes.push(ChangeOp::Delete, Some(2), ChangeValue::Null, ChangeValue::Null);
        changes.push(ChangeOp::Insert, Some(20), text("b2"), ChangeValue::Unchanged);
        changes.commit();
        changes.push(ChangeOp::Delete, Some(3), ChangeValue::Null, ChangeValue::Null);
        let second = changes.commit();
        apply(&warehouse, CdcMode::Merge, changes.batches(), &second).await;
        assert_eq!(
            rows(&warehouse, "t").await,
            BTreeMap::from([(1, row("a2", "big one")), (20, row("b2", "big two"))])
        );

        changes.push(ChangeOp::Insert, Some(4), text("d"), text("x"));
        changes.push(ChangeOp::Truncate, None, ChangeValue::Null, ChangeValue::Null);
        changes.push(ChangeOp::Insert, Some(5), text("e"), text("y"));
        let third = changes.commit();
        apply(&warehouse, CdcMode::Merge, changes.batches(), &third).await;
        assert_eq!(rows(&warehouse, "t").await, BTreeMap::from([(5, row("e", "y"))]));
        assert_eq!(
            warehouse.committed_state("t").await.unwrap().unwrap().watermark,
            Some(third)
        );
    }

    #[tokio::test]
    async fn history_appends_every_change_and_current_is_the_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = warehouse(&dir, CdcMode::History).await;
        let mut changes = Changes::new();
        changes.push(ChangeOp::Insert, Some(1), text("a"), text("big"));
        changes.push(ChangeOp::Insert, Some(2), text("b"), text("big two"));
        let first = changes.commit();
        apply(&warehouse, CdcMode::History, changes.batches(), &first).await;
        changes.push(ChangeOp::Update, Some(1), text("a2"), ChangeValue::Unchanged);
        changes.push(ChangeOp::Delete, Some(2), ChangeValue::Null, ChangeValue::Null);
        let second = changes.commit();
        apply(&warehouse, CdcMode::History, changes.batches(), &second).await;

        let ctx = SessionContext::new();
        let schema = WarehouseSchema::new(warehouse.clone()).await.unwrap();
        ctx.catalog("datafusion")
            .unwrap()
            .register_schema("warehouse", Arc::new(schema))
            .unwrap();
        let history = ctx
            .sql("SELECT id, name, big, _sluice_op FROM warehouse.t ORDER BY _sluice_position")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let history = datafusion::arrow::util::pretty::pretty_format_batches(&history)
            .unwrap()
            .to_string();
        assert_eq!(
            history,
            "+----+------+---------+------------+\n\
             | id | name | big     | _sluice_op |\n\
             +----+------+---------+------------+\n\
             | 1  | a    | big     | insert     |\n\
             | 2  | b    | big two | insert     |\n\
             | 1  | a2   | big     | update     |\n\
             | 2  |      |         | delete     |\n\
             +----+------+---------+------------+",
            "the unchanged value is the stored one, never NULL"
        );
        assert_eq!(
            rows(&warehouse, "t_current").await,
            BTreeMap::from([(1, row("a2", "big"))])
        );

        changes.push(ChangeOp::Truncate, None, ChangeValue::Null, ChangeValue::Null);
        changes.push(ChangeOp::Insert, Some(3), text("c"), text("z"));
        let third = changes.commit();
        apply(&warehouse, CdcMode::History, changes.batches(), &third).await;
        assert_eq!(
            rows(&warehouse, "t_current").await,
            BTreeMap::from([(3, row("c", "z"))])
        );
    }

    #[tokio::test]
    async fn an_unchanged_value_without_a_stored_row_fails_and_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = warehouse(&dir, CdcMode::Merge).await;
        let mut changes = Changes::new();
        changes.push(ChangeOp::Update, Some(9), text("a"), ChangeValue::Unchanged);
        let at = changes.commit();
        let mut load = warehouse.begin_changes("t", 1, &spec(CdcMode::Merge)).await.unwrap();
        for batch in changes.batches() {
            load.write(batch).await.unwrap();
        }
        let error = load.commit(Some(at)).await.unwrap_err();
        assert!(
            matches!(&error, DestinationError::Changes { reason, .. } if reason.contains("\"big\"")),
            "{error}"
        );
        assert_eq!(warehouse.committed_state("t").await.unwrap(), None);
    }

    #[tokio::test]
    async fn history_without_a_key_appends_changes_and_refuses_unchanged_values() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = warehouse(&dir, CdcMode::History).await;
        let mut changes = Changes::new();
        changes.push(ChangeOp::Update, Some(1), text("a"), ChangeValue::Unchanged);
        let at = changes.commit();
        let keyless = ChangeSpec {
            key: Vec::new(),
            ..spec(CdcMode::History)
        };
        let mut load = warehouse.begin_changes("t", 1, &keyless).await.unwrap();
        for batch in changes.batches() {
            load.write(batch).await.unwrap();
        }
        let error = load.commit(Some(at)).await.unwrap_err();
        assert!(
            matches!(&error, DestinationError::Changes { reason, .. } if reason.contains("REPLICA IDENTITY FULL")),
            "{error}"
        );
        assert_eq!(warehouse.committed_state("t").await.unwrap(), None);

        // Without unchanged values every change is appended.
        changes.push(ChangeOp::Insert, Some(1), text("a"), text("big"));
        let at = changes.commit();
        let mut load = warehouse.begin_changes("t", 2, &keyless).await.unwrap();
        for batch in changes.batches() {
            load.write(batch).await.unwrap();
        }
        load.commit(Some(at)).await.unwrap();
        assert_eq!(rows(&warehouse, "t").await, BTreeMap::from([(1, row("a", "big"))]));
    }

    #[tokio::test]
    async fn a_table_keeps_its_change_layout() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = warehouse(&dir, CdcMode::Merge).await;
        apply(&warehouse, CdcMode::Merge, Vec::new(), "{}").await;
        let other = ChangeSpec {
            key: vec!["name".into()],
            ..spec(CdcMode::Merge)
        };
        let error = warehouse.begin_changes("t", 2, &other).await.err().unwrap();
        assert!(matches!(error, DestinationError::Changes { .. }), "{error}");
    }

    /// Random transactions (inserts, updates leaving `big` unchanged,
    /// deletes, key changes, truncates) applied to a model and to the
    /// warehouse, in batches of several transactions: equal after every
    /// commit, in both modes.
    #[tokio::test]
    async fn random_changes_match_a_model() {
        for (mode, budget) in [
            (CdcMode::Merge, None),
            (CdcMode::History, None),
            (CdcMode::Merge, Some(0)),
            (CdcMode::History, Some(0)),
        ] {
            for seed in 0..4 {
                let dir = tempfile::tempdir().unwrap();
                let warehouse = warehouse(&dir, mode).await;
                let mut rng = StdRng::seed_from_u64(seed);
                let mut model: BTreeMap<i64, Row> = BTreeMap::new();
                let mut deleted = BTreeMap::new();
                let mut changes = Changes::new();
                let mut stored_changes = 0;
                for batch in 0..12 {
                    let mut position = String::new();
                    for _ in 0..rng.gen_range(1..4) {
                        for _ in 0..rng.gen_range(1..6) {
                            stored_changes += random_change(&mut rng, &mut model, &mut deleted, &mut changes);
                        }
                        position = changes.commit();
                    }
                    apply_held(&warehouse, &spec(mode), changes.batches(), &position, budget).await;
                    let table = match mode {
                        CdcMode::Merge => "t",
                        CdcMode::History => "t_current",
                    };
                    assert_eq!(
                        rows(&warehouse, table).await,
                        model,
                        "{mode:?}, spill budget {budget:?}, seed {seed}, batch {batch}"
                    );
                }
                if mode == CdcMode::History {
                    let versions = warehouse.latest_manifest("t").await.unwrap().unwrap();
                    let stored: u64 = versions.files.iter().map(|f| f.rows).sum();
                    assert_eq!(stored, stored_changes, "every change is a history row");
                }
            }
        }
    }

    /// `MERGE` batches write deltas, read merged with the table's files,
    /// until the batch that finds [`MAX_DELTAS`] of them rewrites the table
    /// (compaction) and the next ones start new deltas.
    #[tokio::test]
    async fn merge_batches_write_deltas_until_a_rewrite_folds_them_in() {
        use super::super::compaction::MAX_DELTAS;
        let dir = tempfile::tempdir().unwrap();
        let warehouse = warehouse(&dir, CdcMode::Merge).await;
        let mut changes = Changes::new();
        for id in 0..4 {
            changes.push(ChangeOp::Insert, Some(id), text("v0"), text("big"));
        }
        let position = changes.commit();
        apply(&warehouse, CdcMode::Merge, changes.batches(), &position).await;
        let manifest = || async { warehouse.latest_manifest("t").await.unwrap().unwrap() };
        assert_eq!((manifest().await.files.len(), manifest().await.deltas.len()), (0, 1));
        for n in 1..=MAX_DELTAS + 2 {
            // An update leaving `big` unchanged (filled from the stored
            // row), a delete and an insert of the key.
            let id = (n % 4) as i64;
            changes.push(
                ChangeOp::Update,
                Some(id),
                text(&format!("v{n}")),
                ChangeValue::Unchanged,
            );
            changes.push(
                ChangeOp::Delete,
                Some((id + 1) % 4),
                ChangeValue::Null,
                ChangeValue::Null,
            );
            changes.push(
                ChangeOp::Insert,
                Some((id + 1) % 4),
                text(&format!("w{n}")),
                text("big"),
            );
            let position = changes.commit();
            apply(&warehouse, CdcMode::Merge, changes.batches(), &position).await;
            let now = manifest().await;
            // Batch n finds n deltas.
            match n.cmp(&MAX_DELTAS) {
                std::cmp::Ordering::Less => assert_eq!((now.files.len(), now.deltas.len()), (0, n + 1), "batch {n}"),
                std::cmp::Ordering::Equal => {
                    assert!(!now.files.is_empty() && now.deltas.is_empty(), "batch {n} rewrites")
                }
                std::cmp::Ordering::Greater => {
                    assert_eq!(now.deltas.len(), n - MAX_DELTAS, "batch {n} starts new deltas")
                }
            }
            let rows = rows(&warehouse, "t").await;
            assert_eq!(rows.len(), 4, "batch {n}: {rows:?}");
            assert_eq!(rows[&id], row(&format!("v{n}"), "big"), "batch {n}");
            assert_eq!(rows[&((id + 1) % 4)], row(&format!("w{n}"), "big"), "batch {n}");
        }
    }

    /// A `HISTORY` table gains a file per batch until it has
    /// [`MAX_SMALL_FILES`] small ones; the next batch writes them again with
    /// its own rows, every row kept.
    #[tokio::test]
    async fn history_folds_its_small_files_and_keeps_every_row() {
        use super::super::compaction::MAX_SMALL_FILES;
        let dir = tempfile::tempdir().unwrap();
        let warehouse = warehouse(&dir, CdcMode::History).await;
        let mut changes = Changes::new();
        let mut most_files = 0;
        for n in 0..MAX_SMALL_FILES as i64 + 5 {
            changes.push(ChangeOp::Insert, Some(n), text(&format!("v{n}")), text("big"));
            if n > 0 {
                changes.push(
                    ChangeOp::Update,
                    Some(n - 1),
                    text(&format!("u{n}")),
                    ChangeValue::Unchanged,
                );
            }
            let position = changes.commit();
            apply(&warehouse, CdcMode::History, changes.batches(), &position).await;
            let manifest = warehouse.latest_manifest("t").await.unwrap().unwrap();
            most_files = most_files.max(manifest.files.len());
            assert!(
                manifest.files.len() <= MAX_SMALL_FILES,
                "batch {n}: {} files",
                manifest.files.len()
            );
            let stored: u64 = manifest.files.iter().map(|f| f.rows).sum();
            assert_eq!(stored, 2 * n as u64 + 1, "batch {n}: every change is a row");
            let current = rows(&warehouse, "t_current").await;
            assert_eq!(current.len(), n as usize + 1);
            assert_eq!(current[&n], row(&format!("v{n}"), "big"));
            if n > 0 {
                assert_eq!(current[&(n - 1)], row(&format!("u{n}"), "big"), "batch {n}");
            }
        }
        assert_eq!(
            most_files, MAX_SMALL_FILES,
            "the files were folded once they were enough"
        );
    }

    /// `MERGE` with `soft_delete`, random transactions as above: the table
    /// holds the model's rows, and the deleted keys (not inserted again
    /// since, nor truncated) with their last values, marked deleted.
    #[tokio::test]
    async fn random_changes_with_soft_delete_match_a_model() {
        let spec = ChangeSpec {
            soft_delete: true,
            ..spec(CdcMode::Merge)
        };
        for (seed, budget) in [(0, None), (1, None), (2, Some(0)), (3, Some(0))] {
            let dir = tempfile::tempdir().unwrap();
            let warehouse = warehouse_of(&dir, &spec).await;
            let mut rng = StdRng::seed_from_u64(seed);
            let mut model: BTreeMap<i64, Row> = BTreeMap::new();
            let mut deleted: BTreeMap<i64, Row> = BTreeMap::new();
            let mut changes = Changes::new();
            for batch in 0..12 {
                let mut position = String::new();
                for _ in 0..rng.gen_range(1..4) {
                    for _ in 0..rng.gen_range(1..6) {
                        random_change(&mut rng, &mut model, &mut deleted, &mut changes);
                    }
                    position = changes.commit();
                }
                apply_held(&warehouse, &spec, changes.batches(), &position, budget).await;
                let mut expected: BTreeMap<i64, (Row, bool)> =
                    deleted.iter().map(|(&id, row)| (id, (row.clone(), true))).collect();
                expected.extend(model.iter().map(|(&id, row)| (id, (row.clone(), false))));
                assert_eq!(marked_rows(&warehouse).await, expected, "seed {seed}, batch {batch}");
            }
            assert!(!deleted.is_empty(), "seed {seed} deleted something");
        }
    }
}
