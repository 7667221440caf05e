//! The rows a CDC micro-batch stages for its commit (docs/cdc.md,
//! "BigQuery"): the batch's change rows read in log order and resolved in
//! memory, so that the commit's SQL stays one `MERGE` (or one `INSERT`).
//!
//! - `MERGE`: the net change of each key: `upsert` (its latest values) or
//!   `delete`; with `soft_delete` a key deleted after it changed in the
//!   batch is an `upsert` of its last values with `_sluice_deleted_at` set,
//!   and one deleted without is a `delete` that keeps the stored values.
//!   A `truncate` empties the table first (`truncated`) and drops what came
//!   before it.
//! - `HISTORY`: every change row, in order.
//!
//! A value a change did not carry (named in `_sluice_unchanged`) is the
//! key's latest earlier value in the batch, else (for an `insert` right
//! after the `delete` of a key change, the deleted key's) the row stored
//! before the batch. The batch cannot see stored rows: such columns are
//! listed in `_sluice_fill`, with the key of the stored row they come
//! from in `_sluice_fill_<key column>`, and the commit's SQL takes them
//! from the target (`MERGE`) or `<table>_current` (`HISTORY`), failing the
//! whole transaction when that row is not stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::scalar::ScalarValue;
use sluice_catalog::CdcMode;

use crate::cdc::{COMMIT_TS_COLUMN, ChangeOp, DELETED_AT_COLUMN, OP_COLUMN, POSITION_COLUMN, UNCHANGED_COLUMN};
use crate::contract::ChangeSpec;

/// The columns a staged row names for its values taken from a stored row.
pub(super) const FILL_COLUMN: &str = "_sluice_fill";
/// The prefix of the columns holding the key of that stored row.
pub(super) const FILL_KEY_PREFIX: &str = "_sluice_fill_";
/// `_sluice_op` of a staged `MERGE` row.
pub(super) const UPSERT: &str = "upsert";
pub(super) const DELETE: &str = "delete";

/// What a batch stages.
#[derive(Debug)]
pub(super) struct Staged {
    /// The staged rows (`None` when there are none).
    pub rows: Option<RecordBatch>,
    /// `MERGE`: a `truncate` empties the table before the rows apply.
    pub truncated: bool,
    /// Some row takes values from a stored row.
    pub fills: bool,
}

/// Which partitions of a micro-batch's rows ([`crate::cdc::spill`]) a
/// [`Stager::stage`] call stages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slice {
    /// Rows of several partitions: put back in log order first.
    pub several: bool,
    /// It includes the first partition, which stages what every partition
    /// holds (`HISTORY`'s `truncate` rows).
    pub first: bool,
}

impl Slice {
    /// Every row of the batch.
    #[cfg(test)]
    pub const WHOLE: Slice = Slice {
        several: false,
        first: true,
    };
}

/// A change row's values as the batch resolved them.
#[derive(Debug, Clone)]
struct Row {
    op: &'static str,
    values: Vec<ScalarValue>,
    position: String,
    commit_ts: ScalarValue,
    /// Columns (indexes into `values`) taken from the stored row of
    /// `fill_key`.
    fill: Vec<usize>,
    fill_key: Option<Vec<ScalarValue>>,
    /// `soft_delete`: when the key was deleted.
    deleted_at: Option<ScalarValue>,
}

/// Where a change finds the values it did not carry.
enum Earlier {
    /// A version written earlier in the batch.
    InBatch(Box<Row>),
    /// The row stored before the batch, of this key.
    Stored(Vec<ScalarValue>),
    /// None: the key is deleted, or the table was truncated.
    Gone,
}

/// Reads and resolves the change rows of one batch.
pub(super) struct Stager<'a> {
    spec: &'a ChangeSpec,
    /// The data columns (the change schema without Sluice's own).
    data: Vec<Arc<Field>>,
    /// The key columns, as indexes into `data`.
    key: Vec<usize>,
    table: &'a str,
}

impl<'a> Stager<'a> {
    /// A stager for change batches of `schema` (the change schema).
    pub(super) fn new(table: &'a str, schema: &Schema, spec: &'a ChangeSpec) -> Result<Self, String> {
        let own = [OP_COLUMN, POSITION_COLUMN, COMMIT_TS_COLUMN, UNCHANGED_COLUMN];
        let data: Vec<Arc<Field>> = schema
            .fields()
            .iter()
            .filter(|f| !own.contains(&f.name().as_str()))
            .cloned()
            .collect();
        let key = spec
            .key
            .iter()
            .map(|name| {
                data.iter()
                    .position(|f| f.name() == name)
                    .ok_or_else(|| format!("the key column \"{name}\" is not one of the captured columns"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if spec.mode == CdcMode::Merge && key.is_empty() {
            return Err("MERGE needs the columns of a primary key".into());
        }
        Ok(Self { spec, data, key, table })
    }

    /// The schema of the staged rows: the data columns, `_sluice_op`,
    /// `_sluice_position`, `_sluice_commit_ts`, (`soft_delete`)
    /// `_sluice_deleted_at`, `_sluice_fill` and one `_sluice_fill_<key>`
    /// per key column.
    pub(super) fn schema(&self) -> SchemaRef {
        let timestamp = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
        let mut fields: Vec<Field> = self
            .data
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
        fields.push(Field::new(POSITION_COLUMN, DataType::Utf8, false));
        fields.push(Field::new(COMMIT_TS_COLUMN, timestamp.clone(), false));
        if self.spec.soft_delete {
            fields.push(Field::new(DELETED_AT_COLUMN, timestamp, true));
        }
        fields.push(Field::new(
            FILL_COLUMN,
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        ));
        for &k in &self.key {
            let field = self.data[k].as_ref();
            fields.push(
                field
                    .clone()
                    .with_name(format!("{FILL_KEY_PREFIX}{}", field.name()))
                    .with_nullable(true),
            );
        }
        Arc::new(Schema::new(fields))
    }

    /// The data columns' names.
    pub(super) fn data_names(&self) -> Vec<String> {
        self.data.iter().map(|f| f.name().clone()).collect()
    }

    /// The key columns' names.
    pub(super) fn key_names(&self) -> Vec<String> {
        self.key.iter().map(|&k| self.data[k].name().clone()).collect()
    }

    /// The key bytes of each row of change batch `batch`.
    pub(super) fn batch_keys(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
        let columns = self
            .key
            .iter()
            .map(|&k| {
                let name = self.data[k].name();
                batch
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| format!("a change batch without column \"{name}\""))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.keys(columns, batch.num_rows())
    }

    /// Stages the change rows of `batches` (the change schema, log order
    /// within each partition of `slice`).
    pub(super) fn stage(&self, batches: &[RecordBatch], slice: Slice) -> Result<Staged, String> {
        let mut changes = Vec::new();
        for batch in batches {
            self.read(batch, &mut changes)?;
        }
        if slice.several {
            // Back in log order; a truncate each partition had, once.
            changes.sort_by(|a, b| a.1.position.cmp(&b.1.position));
            changes.dedup_by(|a, b| {
                a.1.op == b.1.op && a.1.op == ChangeOp::Truncate.as_str() && a.1.position == b.1.position
            });
        }
        if self.key.is_empty() && changes.iter().any(|(_, _, unchanged)| !unchanged.is_empty()) {
            return Err(
                "a change leaves a value unchanged, but the table has no key to find the stored one \
                        (use REPLICA IDENTITY FULL at the source)"
                    .into(),
            );
        }
        let mut latest: BTreeMap<Vec<u8>, Row> = BTreeMap::new();
        let mut history = Vec::new();
        let mut truncated = false;
        let mut removed = Earlier::Gone;
        for (key, mut row, unchanged) in changes {
            let just_removed = std::mem::replace(&mut removed, Earlier::Gone);
            let current = |latest: &BTreeMap<Vec<u8>, Row>, truncated: bool| match latest.get(&key) {
                Some(row) if row.op == UPSERT && row.deleted_at.is_none() => Earlier::InBatch(Box::new(row.clone())),
                Some(_) => Earlier::Gone,
                None if truncated => Earlier::Gone,
                None => Earlier::Stored(self.key.iter().map(|&k| row.values[k].clone()).collect()),
            };
            match ChangeOp::parse(row.op) {
                Some(ChangeOp::Truncate) => {
                    latest.clear();
                    truncated = true;
                    if self.spec.mode == CdcMode::History && slice.first {
                        history.push(row);
                    }
                    continue;
                }
                Some(ChangeOp::Delete) => {
                    removed = current(&latest, truncated);
                    if self.spec.mode == CdcMode::History {
                        history.push(row);
                        continue;
                    }
                    let staged = if !self.spec.soft_delete {
                        Row { op: DELETE, ..row }
                    } else {
                        let deleted_at = Some(row.commit_ts.clone());
                        match &removed {
                            // Its last values, marked.
                            Earlier::InBatch(last) => Row {
                                op: UPSERT,
                                values: last.values.clone(),
                                fill: last.fill.clone(),
                                fill_key: last.fill_key.clone(),
                                deleted_at,
                                ..row
                            },
                            // The stored values, marked.
                            Earlier::Stored(_) => Row {
                                op: DELETE,
                                deleted_at,
                                ..row
                            },
                            // Nothing to keep but the key.
                            Earlier::Gone => Row {
                                op: UPSERT,
                                deleted_at,
                                ..row
                            },
                        }
                    };
                    latest.insert(key, staged);
                }
                _ => {
                    if !unchanged.is_empty() {
                        // The key's live version; an insert's key is not
                        // stored live at a consistent source, so its
                        // earlier version, if any, is the row a key change
                        // just deleted.
                        let from = match (current(&latest, truncated), row.op) {
                            (found @ Earlier::InBatch(_), _) => found,
                            (Earlier::Stored(_), "insert") if !matches!(just_removed, Earlier::Gone) => just_removed,
                            (Earlier::Gone, _) => just_removed,
                            (found, _) => found,
                        };
                        match from {
                            Earlier::InBatch(earlier) => {
                                for &i in &unchanged {
                                    if earlier.fill.contains(&i) {
                                        row.fill.push(i);
                                    } else {
                                        row.values[i] = earlier.values[i].clone();
                                    }
                                }
                                if !row.fill.is_empty() {
                                    row.fill_key = earlier.fill_key.clone();
                                }
                            }
                            Earlier::Stored(stored_key) => {
                                row.fill = unchanged;
                                row.fill_key = Some(stored_key);
                            }
                            Earlier::Gone => {
                                return Err(format!(
                                    "the {} at {} leaves column \"{}\" unchanged, but no earlier version of its row \
                                     is stored",
                                    row.op,
                                    row.position,
                                    self.data[unchanged[0]].name()
                                ));
                            }
                        }
                    }
                    if self.spec.mode == CdcMode::History {
                        history.push(row.clone());
                    }
                    latest.insert(key, Row { op: UPSERT, ..row });
                }
            }
        }
        let rows: Vec<Row> = match self.spec.mode {
            CdcMode::History => history,
            CdcMode::Merge => latest.into_values().collect(),
        };
        let fills = rows.iter().any(|r| !r.fill.is_empty());
        Ok(Staged {
            rows: (!rows.is_empty()).then(|| self.build(&rows)).transpose()?,
            truncated: truncated && self.spec.mode == CdcMode::Merge,
            fills,
        })
    }

    /// Appends the change rows of `batch` as (key bytes, row, unchanged
    /// columns).
    fn read(&self, batch: &RecordBatch, changes: &mut Vec<(Vec<u8>, Row, Vec<usize>)>) -> Result<(), String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("a change batch without column \"{name}\""))
        };
        let data = self
            .data
            .iter()
            .map(|f| column(f.name()))
            .collect::<Result<Vec<_>, _>>()?;
        let ops = column(OP_COLUMN)?.as_string_opt::<i32>().cloned();
        let positions = column(POSITION_COLUMN)?.as_string_opt::<i32>().cloned();
        let unchanged = column(UNCHANGED_COLUMN)?.as_list_opt::<i32>().cloned();
        let (Some(ops), Some(positions), Some(unchanged)) = (ops, positions, unchanged) else {
            return Err("a change batch whose _sluice_* columns have other types".into());
        };
        let commit_ts = column(COMMIT_TS_COLUMN)?;
        let keys = self.keys(
            self.key.iter().map(|&k| Arc::clone(data[k])).collect(),
            batch.num_rows(),
        )?;
        let scalar = |array: &ArrayRef, row: usize| ScalarValue::try_from_array(array, row).map_err(|e| e.to_string());
        for (row, key) in keys.into_iter().enumerate() {
            let op = ChangeOp::parse(ops.value(row)).ok_or_else(|| format!("unknown change \"{}\"", ops.value(row)))?;
            let mut not_carried = Vec::new();
            if unchanged.is_valid(row) {
                for name in unchanged.value(row).as_string::<i32>().iter().flatten() {
                    let at = self
                        .data
                        .iter()
                        .position(|f| f.name() == name)
                        .ok_or_else(|| format!("unchanged column \"{name}\" is not in the table"))?;
                    not_carried.push(at);
                }
            }
            let row = Row {
                op: op.as_str(),
                values: data.iter().map(|c| scalar(c, row)).collect::<Result<_, _>>()?,
                position: positions.value(row).to_owned(),
                commit_ts: scalar(commit_ts, row)?,
                fill: Vec::new(),
                fill_key: None,
                deleted_at: None,
            };
            changes.push((key, row, not_carried));
        }
        Ok(())
    }

    /// The key bytes of each of `rows` rows.
    fn keys(&self, key_columns: Vec<ArrayRef>, rows: usize) -> Result<Vec<Vec<u8>>, String> {
        if self.key.is_empty() {
            return Ok(vec![Vec::new(); rows]);
        }
        let converter = RowConverter::new(
            key_columns
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
        )
        .map_err(|e| e.to_string())?;
        let converted = converter.convert_columns(&key_columns).map_err(|e| e.to_string())?;
        Ok(converted.iter().map(|row| row.as_ref().to_vec()).collect())
    }

    /// The staged rows as one batch of [`Stager::schema`].
    fn build(&self, rows: &[Row]) -> Result<RecordBatch, String> {
        let failed = |e: datafusion::error::DataFusionError| format!("{} staged rows: {e}", self.table);
        let column = |data_type: &DataType, values: Vec<ScalarValue>| -> Result<ArrayRef, String> {
            if values.is_empty() {
                return Ok(datafusion::arrow::array::new_empty_array(data_type));
            }
            let array = ScalarValue::iter_to_array(values).map_err(failed)?;
            if array.data_type() == data_type {
                Ok(array)
            } else {
                datafusion::arrow::compute::cast(&array, data_type).map_err(|e| e.to_string())
            }
        };
        let schema = self.schema();
        let mut arrays = Vec::with_capacity(schema.fields().len());
        for (i, field) in self.data.iter().enumerate() {
            // A filled column's value comes from the stored row.
            let values = rows
                .iter()
                .map(|r| {
                    if r.fill.contains(&i) {
                        ScalarValue::try_from(field.data_type()).map_err(failed)
                    } else {
                        Ok(r.values[i].clone())
                    }
                })
                .collect::<Result<_, _>>()?;
            arrays.push(column(field.data_type(), values)?);
        }
        arrays.push(Arc::new(datafusion::arrow::array::StringArray::from_iter_values(
            rows.iter().map(|r| r.op),
        )));
        arrays.push(Arc::new(datafusion::arrow::array::StringArray::from_iter_values(
            rows.iter().map(|r| r.position.as_str()),
        )));
        let timestamp = schema
            .field_with_name(COMMIT_TS_COLUMN)
            .expect("staged")
            .data_type()
            .clone();
        arrays.push(column(&timestamp, rows.iter().map(|r| r.commit_ts.clone()).collect())?);
        if self.spec.soft_delete {
            let null = ScalarValue::try_from(&timestamp).map_err(failed)?;
            let values = rows
                .iter()
                .map(|r| r.deleted_at.clone().unwrap_or_else(|| null.clone()))
                .collect();
            arrays.push(column(&timestamp, values)?);
        }
        let mut fill = ListBuilder::new(StringBuilder::new());
        for row in rows {
            for &i in &row.fill {
                fill.values().append_value(self.data[i].name());
            }
            fill.append(true);
        }
        arrays.push(Arc::new(fill.finish()));
        for (k, &at) in self.key.iter().enumerate() {
            let data_type = self.data[at].data_type();
            let null = ScalarValue::try_from(data_type).map_err(failed)?;
            let values = rows
                .iter()
                .map(|r| r.fill_key.as_ref().map_or_else(|| null.clone(), |key| key[k].clone()))
                .collect();
            arrays.push(column(data_type, values)?);
        }
        RecordBatch::try_new(schema, arrays).map_err(|e| format!("{} staged rows: {e}", self.table))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::cdc::batch::tests::cast;
    use crate::cdc::workload::{ChangeLog, Row, columns, random_change, text};
    use crate::cdc::{ChangeBatchBuilder, ChangeValue, change_schema};

    type Values = Row;

    fn spec(mode: CdcMode, soft_delete: bool) -> ChangeSpec {
        ChangeSpec {
            mode,
            key: vec!["id".into()],
            soft_delete,
        }
    }

    /// Change rows in positions that sort like the log.
    struct Changes {
        builder: ChangeBatchBuilder,
        seq: u32,
    }

    impl ChangeLog for Changes {
        fn push(&mut self, op: ChangeOp, id: Option<i64>, name: ChangeValue, big: ChangeValue) {
            self.seq += 1;
            let id = id.map_or(ChangeValue::Null, |id| ChangeValue::Text(id.to_string()));
            self.builder
                .push(op, format!("{:08}", self.seq), i64::from(self.seq), vec![id, name, big]);
        }
    }

    impl Changes {
        fn new() -> Self {
            Self {
                builder: ChangeBatchBuilder::new(columns(), cast, 4),
                seq: 0,
            }
        }

        fn batches(&mut self) -> Vec<RecordBatch> {
            self.builder.finish().unwrap().into_iter().collect()
        }
    }

    /// The staged rows as (op, id, values, filled columns, fill key, deleted).
    type StagedRow = (String, i64, Values, Vec<String>, Option<i64>, bool);

    fn staged_rows(staged: &Staged) -> Vec<StagedRow> {
        let Some(batch) = &staged.rows else {
            return Vec::new();
        };
        let string = |name: &str, row: usize| {
            let column = batch.column_by_name(name).unwrap().as_string::<i32>();
            column.is_valid(row).then(|| column.value(row).to_owned())
        };
        let int = |name: &str, row: usize| {
            let column = batch.column_by_name(name).unwrap().as_primitive::<Int64Type>();
            column.is_valid(row).then(|| column.value(row))
        };
        (0..batch.num_rows())
            .map(|row| {
                let fill = batch.column_by_name(FILL_COLUMN).unwrap().as_list::<i32>().value(row);
                let fill = fill.as_string::<i32>().iter().flatten().map(str::to_owned).collect();
                let deleted = batch.column_by_name(DELETED_AT_COLUMN).is_some_and(|c| c.is_valid(row));
                (
                    string(OP_COLUMN, row).unwrap(),
                    // A truncate has no key.
                    int("id", row).unwrap_or(-1),
                    (string("name", row), string("big", row)),
                    fill,
                    int("_sluice_fill_id", row),
                    deleted,
                )
            })
            .collect()
    }

    fn stage(spec: &ChangeSpec, batches: &[RecordBatch]) -> Result<Staged, String> {
        Stager::new("t", &change_schema(&columns()), spec)?.stage(batches, Slice::WHOLE)
    }

    #[test]
    fn merge_stages_the_net_change_per_key_and_names_values_to_fill() {
        let mut changes = Changes::new();
        changes.push(ChangeOp::Update, Some(1), text("a2"), ChangeValue::Unchanged);
        changes.push(ChangeOp::Delete, Some(2), ChangeValue::Null, ChangeValue::Null);
        changes.push(ChangeOp::Insert, Some(20), text("b2"), ChangeValue::Unchanged);
        changes.push(ChangeOp::Insert, Some(3), text("c"), text("x"));
        changes.push(ChangeOp::Update, Some(3), text("c2"), ChangeValue::Unchanged);
        changes.push(ChangeOp::Delete, Some(4), ChangeValue::Null, ChangeValue::Null);
        let staged = stage(&spec(CdcMode::Merge, false), &changes.batches()).unwrap();
        assert!(!staged.truncated && staged.fills);
        let v = |name: &str, big: Option<&str>| (Some(name.to_owned()), big.map(str::to_owned));
        assert_eq!(
            staged_rows(&staged),
            [
                ("upsert".into(), 1, v("a2", None), vec!["big".into()], Some(1), false),
                ("delete".into(), 2, (None, None), vec![], None, false),
                ("upsert".into(), 3, v("c2", Some("x")), vec![], None, false),
                ("delete".into(), 4, (None, None), vec![], None, false),
                // The key change's value comes from the deleted key's stored row.
                ("upsert".into(), 20, v("b2", None), vec!["big".into()], Some(2), false),
            ]
        );
    }

    #[test]
    fn a_truncate_drops_what_came_before_and_leaves_nothing_to_fill_from() {
        let mut changes = Changes::new();
        changes.push(ChangeOp::Insert, Some(1), text("a"), text("x"));
        changes.push(ChangeOp::Truncate, None, ChangeValue::Null, ChangeValue::Null);
        changes.push(ChangeOp::Insert, Some(2), text("b"), text("y"));
        let staged = stage(&spec(CdcMode::Merge, false), &changes.batches()).unwrap();
        assert!(staged.truncated);
        assert_eq!(staged_rows(&staged).len(), 1);
        changes.push(ChangeOp::Truncate, None, ChangeValue::Null, ChangeValue::Null);
        changes.push(ChangeOp::Update, Some(2), text("b"), ChangeValue::Unchanged);
        let error = stage(&spec(CdcMode::Merge, false), &changes.batches()).unwrap_err();
        assert!(
            error.contains("\"big\"") && error.contains("no earlier version"),
            "{error}"
        );
    }

    #[test]
    fn history_stages_every_change_and_a_keyless_one_refuses_unchanged_values() {
        let mut changes = Changes::new();
        changes.push(ChangeOp::Insert, Some(1), text("a"), text("x"));
        changes.push(ChangeOp::Update, Some(1), text("a2"), ChangeValue::Unchanged);
        changes.push(ChangeOp::Delete, Some(1), ChangeValue::Null, ChangeValue::Null);
        let batches = changes.batches();
        let staged = stage(&spec(CdcMode::History, false), &batches).unwrap();
        let ops: Vec<String> = staged_rows(&staged).into_iter().map(|r| r.0).collect();
        assert_eq!(ops, ["insert", "update", "delete"]);
        assert_eq!(staged_rows(&staged)[1].2.1.as_deref(), Some("x"), "filled in the batch");
        let keyless = ChangeSpec {
            key: Vec::new(),
            ..spec(CdcMode::History, false)
        };
        let error = stage(&keyless, &batches).unwrap_err();
        assert!(error.contains("REPLICA IDENTITY FULL"), "{error}");
        assert!(
            Stager::new(
                "t",
                &change_schema(&columns()),
                &ChangeSpec {
                    key: Vec::new(),
                    ..spec(CdcMode::Merge, false)
                }
            )
            .is_err(),
            "MERGE needs a key"
        );
    }

    /// A stored row: its values and whether it is soft-deleted.
    type Stored = BTreeMap<i64, (Values, bool)>;

    /// What the commit's SQL does with `staged` (docs in `change_sql`):
    /// `MERGE` against the table as it was before the statement.
    fn apply_merge(table: &mut Stored, staged: &Staged, soft_delete: bool) -> Result<(), String> {
        if staged.truncated {
            table.clear();
        }
        let before = table.clone();
        for (op, id, mut values, fill, fill_key, deleted) in staged_rows(staged) {
            if !fill.is_empty() {
                let from = fill_key
                    .and_then(|k| before.get(&k))
                    .filter(|(_, deleted)| !*deleted)
                    .ok_or("not stored")?;
                for column in &fill {
                    match column.as_str() {
                        "name" => values.0 = from.0.0.clone(),
                        _ => values.1 = from.0.1.clone(),
                    }
                }
            }
            match (before.contains_key(&id), op.as_str()) {
                (true, "delete") if soft_delete => table.get_mut(&id).unwrap().1 = true,
                (true, "delete") => {
                    table.remove(&id);
                }
                (true, _) => {
                    table.insert(id, (values, deleted));
                }
                (false, "delete") if !soft_delete => {}
                (false, _) => {
                    table.insert(id, (values, deleted));
                }
            }
        }
        Ok(())
    }

    /// `HISTORY`: every staged row appended, values filled from the
    /// current state before the batch.
    fn apply_history(history: &mut Vec<(String, i64, Values)>, staged: &Staged) -> Result<(), String> {
        let before = current(history);
        for (op, id, mut values, fill, fill_key, _) in staged_rows(staged) {
            if !fill.is_empty() {
                let from = fill_key.and_then(|k| before.get(&k)).ok_or("not stored")?;
                for column in &fill {
                    match column.as_str() {
                        "name" => values.0 = from.0.clone(),
                        _ => values.1 = from.1.clone(),
                    }
                }
            }
            history.push((op, id, values));
        }
        Ok(())
    }

    fn current(history: &[(String, i64, Values)]) -> BTreeMap<i64, Values> {
        let mut current = BTreeMap::new();
        for (op, id, values) in history {
            match op.as_str() {
                "truncate" => current.clear(),
                "delete" => {
                    current.remove(id);
                }
                _ => {
                    current.insert(*id, values.clone());
                }
            }
        }
        current
    }

    /// Random batches staged and applied as the commit's SQL applies them
    /// equal a model of the source after every batch: `MERGE` with and
    /// without `soft_delete` (which keeps the deleted keys, marked, with
    /// their last values), and `HISTORY`'s current state.
    #[test]
    fn random_batches_applied_as_the_sql_does_match_a_model() {
        for (mode, soft_delete) in [
            (CdcMode::Merge, false),
            (CdcMode::Merge, true),
            (CdcMode::History, false),
        ] {
            let spec = spec(mode, soft_delete);
            for seed in 0..6 {
                let mut rng = StdRng::seed_from_u64(seed);
                let (mut model, mut deleted) = (BTreeMap::new(), BTreeMap::new());
                let (mut table, mut history) = (Stored::new(), Vec::new());
                let mut changes = Changes::new();
                for batch in 0..15 {
                    for _ in 0..rng.gen_range(1..12) {
                        random_change(&mut rng, &mut model, &mut deleted, &mut changes);
                    }
                    let staged = stage(&spec, &changes.batches()).unwrap();
                    let context = format!("{mode:?} soft_delete={soft_delete} seed {seed} batch {batch}");
                    match mode {
                        CdcMode::Merge => {
                            apply_merge(&mut table, &staged, soft_delete).unwrap();
                            let live: BTreeMap<i64, Values> = table
                                .iter()
                                .filter(|(_, r)| !r.1)
                                .map(|(k, r)| (*k, r.0.clone()))
                                .collect();
                            assert_eq!(live, model, "{context}");
                            if soft_delete {
                                let marked: BTreeMap<i64, Values> = table
                                    .iter()
                                    .filter(|(_, r)| r.1)
                                    .map(|(k, r)| (*k, r.0.clone()))
                                    .collect();
                                assert_eq!(marked, deleted, "{context}: the deleted keys, marked");
                            }
                        }
                        CdcMode::History => {
                            apply_history(&mut history, &staged).unwrap();
                            assert_eq!(current(&history), model, "{context}");
                        }
                    }
                }
            }
        }
    }
}
