//! Change rows as Arrow batches (docs/design/cdc.md 2.4): the job's
//! columns, all nullable, then `_sluice_op`, `_sluice_position`,
//! `_sluice_commit_ts` and `_sluice_unchanged`, the names of the columns
//! whose value the change did not carry (PostgreSQL's unchanged TOAST
//! values): such a column is NULL in the row *and* named there, so a
//! destination keeps the stored value instead of writing NULL.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use sluice_catalog::CdcMode;

use crate::contract::{CdcError, Position};

/// The change's kind, in `_sluice_op`.
pub const OP_COLUMN: &str = "_sluice_op";
/// The change's place in the log, in an order that sorts like the log.
pub const POSITION_COLUMN: &str = "_sluice_position";
/// When the change's transaction committed at the source.
pub const COMMIT_TS_COLUMN: &str = "_sluice_commit_ts";
/// The columns the change left as they were (NULL when none).
pub const UNCHANGED_COLUMN: &str = "_sluice_unchanged";
/// `MERGE` with `soft_delete`: when the row's key was deleted at the
/// source (the delete's commit time), NULL while it exists.
pub const DELETED_AT_COLUMN: &str = "_sluice_deleted_at";

/// What a change row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Insert,
    Update,
    Delete,
    /// Every row of the table goes; the row carries no values.
    Truncate,
}

impl ChangeOp {
    /// The op whose `_sluice_op` text is `text`.
    pub fn parse(text: &str) -> Option<Self> {
        [ChangeOp::Insert, ChangeOp::Update, ChangeOp::Delete, ChangeOp::Truncate]
            .into_iter()
            .find(|op| op.as_str() == text)
    }

    /// The text in `_sluice_op`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
            ChangeOp::Truncate => "truncate",
        }
    }
}

/// One column's value in a change, as the source's change log has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeValue {
    Null,
    /// The change did not carry the value: it is the one stored before.
    Unchanged,
    /// The value in the source's text form.
    Text(String),
}

/// Turns a column of text values into an Arrow array of `data_type`,
/// refusing values that do not fit (the source's text formats).
pub type TextDecoder = fn(&StringArray, &DataType) -> Result<ArrayRef, String>;

/// The schema of change batches for `columns` (the job's columns).
pub fn change_schema(columns: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = columns
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    fields.push(Field::new(POSITION_COLUMN, DataType::Utf8, false));
    fields.push(Field::new(COMMIT_TS_COLUMN, commit_ts_type(), false));
    fields.push(Field::new(
        UNCHANGED_COLUMN,
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        true,
    ));
    Arc::new(Schema::new(fields))
}

/// The schema of the destination table of a CDC job over `columns`: the
/// columns, all nullable, then (`HISTORY` only) `_sluice_op`, then
/// `_sluice_position` and `_sluice_commit_ts` of the row's change (`MERGE`:
/// of the last change of its key), then (`soft_delete` only)
/// `_sluice_deleted_at`.
pub fn change_table_schema(columns: &Schema, mode: CdcMode, soft_delete: bool) -> SchemaRef {
    let mut fields: Vec<Field> = columns
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    if mode == CdcMode::History {
        fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    }
    fields.push(Field::new(POSITION_COLUMN, DataType::Utf8, false));
    fields.push(Field::new(COMMIT_TS_COLUMN, commit_ts_type(), false));
    if soft_delete {
        fields.push(Field::new(DELETED_AT_COLUMN, commit_ts_type(), true));
    }
    Arc::new(Schema::new(fields))
}

fn commit_ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

/// The job's columns of the change rows a [`ChangeBatchBuilder`] collects:
/// how their values are held until a batch is built, and how they become
/// Arrow arrays of the columns' types.
pub trait ValueColumns: Send {
    /// One value as the source's change log has it, NULL included.
    type Value;

    /// Adds `value` to column number `column`.
    fn append(&mut self, column: usize, value: Self::Value) -> Result<(), CdcError>;

    /// The values added since the last call, one array per field of
    /// `columns` (the job's columns).
    fn finish(&mut self, columns: &Schema) -> Result<Vec<ArrayRef>, CdcError>;
}

/// Values in the source's text form, decoded with a [`TextDecoder`] when
/// a batch is built (PostgreSQL's pgoutput).
pub struct TextColumns {
    decode: TextDecoder,
    values: Vec<Vec<Option<String>>>,
}

impl ValueColumns for TextColumns {
    type Value = Option<String>;

    fn append(&mut self, column: usize, value: Option<String>) -> Result<(), CdcError> {
        self.values[column].push(value);
        Ok(())
    }

    fn finish(&mut self, columns: &Schema) -> Result<Vec<ArrayRef>, CdcError> {
        columns
            .fields()
            .iter()
            .zip(&mut self.values)
            .map(|(field, values)| {
                let text = StringArray::from(std::mem::take(values));
                (self.decode)(&text, field.data_type()).map_err(|message| CdcError::Decode {
                    column: field.name().clone(),
                    message,
                })
            })
            .collect()
    }
}

/// Collects change rows and cuts them into batches of the change schema.
pub struct ChangeBatchBuilder<V: ValueColumns = TextColumns> {
    columns: SchemaRef,
    schema: SchemaRef,
    values: V,
    batch_rows: usize,
    ops: Vec<&'static str>,
    positions: Vec<String>,
    commit_ts: Vec<i64>,
    unchanged: Vec<Option<Vec<String>>>,
}

impl ChangeBatchBuilder<TextColumns> {
    /// A builder for the job's `columns`, decoding text values with
    /// `decode`; [`is_full`](Self::is_full) after `batch_rows` rows.
    pub fn new(columns: SchemaRef, decode: TextDecoder, batch_rows: usize) -> Self {
        let values = TextColumns {
            decode,
            values: vec![Vec::new(); columns.fields().len()],
        };
        Self::with_values(columns, values, batch_rows)
    }

    /// Adds one change: `values` has one entry per job column, in order.
    pub fn push(&mut self, op: ChangeOp, position: String, commit_ts_micros: i64, values: Vec<ChangeValue>) {
        assert_eq!(values.len(), self.values.values.len(), "one value per job column");
        let mut unchanged = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            self.values.values[i].push(match value {
                ChangeValue::Null => None,
                ChangeValue::Unchanged => {
                    unchanged.push(self.columns.field(i).name().clone());
                    None
                }
                ChangeValue::Text(text) => Some(text),
            });
        }
        self.record(
            op,
            position,
            commit_ts_micros,
            (!unchanged.is_empty()).then_some(unchanged),
        );
    }
}

impl<V: ValueColumns> ChangeBatchBuilder<V> {
    /// A builder for the job's `columns` whose values `values` collects;
    /// [`is_full`](Self::is_full) after `batch_rows` rows.
    pub fn with_values(columns: SchemaRef, values: V, batch_rows: usize) -> Self {
        Self {
            schema: change_schema(&columns),
            columns,
            values,
            batch_rows: batch_rows.max(1),
            ops: Vec::new(),
            positions: Vec::new(),
            commit_ts: Vec::new(),
            unchanged: Vec::new(),
        }
    }

    /// Adds one change that carries every column's value: `values` has
    /// one entry per job column, in order.
    pub fn push_values(
        &mut self,
        op: ChangeOp,
        position: String,
        commit_ts_micros: i64,
        values: impl IntoIterator<Item = V::Value>,
    ) -> Result<(), CdcError> {
        let mut count = 0;
        for (i, value) in values.into_iter().enumerate() {
            self.values.append(i, value)?;
            count += 1;
        }
        assert_eq!(count, self.columns.fields().len(), "one value per job column");
        self.record(op, position, commit_ts_micros, None);
        Ok(())
    }

    fn record(&mut self, op: ChangeOp, position: String, commit_ts_micros: i64, unchanged: Option<Vec<String>>) {
        self.ops.push(op.as_str());
        self.positions.push(position);
        self.commit_ts.push(commit_ts_micros);
        self.unchanged.push(unchanged);
    }

    /// The schema of the batches built.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows collected and not yet built.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether a batch's worth of rows is waiting.
    pub fn is_full(&self) -> bool {
        self.len() >= self.batch_rows
    }

    /// Builds the rows collected so far into one batch (`None` when there
    /// are none) and starts over.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, CdcError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut arrays = self.values.finish(&self.columns)?;
        arrays.push(Arc::new(StringArray::from(std::mem::take(&mut self.ops))));
        arrays.push(Arc::new(StringArray::from(std::mem::take(&mut self.positions))));
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(std::mem::take(&mut self.commit_ts)).with_timezone("UTC"),
        ));
        let mut unchanged = ListBuilder::new(StringBuilder::new());
        for names in std::mem::take(&mut self.unchanged) {
            match names {
                Some(names) => {
                    for name in names {
                        unchanged.values().append_value(name);
                    }
                    unchanged.append(true);
                }
                None => unchanged.append(false),
            }
        }
        arrays.push(Arc::new(unchanged.finish()));
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map(Some)
            .map_err(|e| CdcError::Unsupported(format!("change batch: {e}")))
    }
}

/// A batch of a snapshot scan as change rows: every row an `insert` at
/// `position` (sequence 1, after the `truncate` a resync of a `HISTORY`
/// table writes before it, [`snapshot_truncate`]), committed at
/// `commit_ts_micros`.
pub fn snapshot_changes(batch: &RecordBatch, position: &Position, commit_ts_micros: i64) -> RecordBatch {
    let rows = batch.num_rows();
    changes_of(
        batch,
        ChangeOp::Insert,
        position.row_position(1),
        commit_ts_micros,
        rows,
    )
}

/// The `truncate` change row (sequence 0 at `position`) a resync appends
/// to a `HISTORY` table before the snapshot's inserts, so that its
/// `<table>_current` view starts again from the snapshot. `columns` is the
/// snapshot's scan schema.
pub fn snapshot_truncate(columns: &SchemaRef, position: &Position, commit_ts_micros: i64) -> RecordBatch {
    let empty = RecordBatch::new_empty(columns.clone());
    changes_of(
        &empty,
        ChangeOp::Truncate,
        position.row_position(0),
        commit_ts_micros,
        1,
    )
}

/// `rows` change rows of `op` at `position`: `batch`'s rows, or NULLs when
/// `batch` is empty.
fn changes_of(batch: &RecordBatch, op: ChangeOp, position: String, commit_ts_micros: i64, rows: usize) -> RecordBatch {
    let schema = change_schema(&batch.schema());
    let mut arrays: Vec<ArrayRef> = if batch.num_rows() == rows {
        batch.columns().to_vec()
    } else {
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), rows))
            .collect()
    };
    arrays.push(Arc::new(StringArray::from(vec![op.as_str(); rows])));
    arrays.push(Arc::new(StringArray::from(vec![position; rows])));
    arrays.push(Arc::new(
        TimestampMicrosecondArray::from(vec![commit_ts_micros; rows]).with_timezone("UTC"),
    ));
    arrays.push(datafusion::arrow::array::new_null_array(
        schema.field(schema.fields().len() - 1).data_type(),
        rows,
    ));
    RecordBatch::try_new(schema, arrays).expect("the change schema extends the batch's own")
}

#[cfg(test)]
pub(crate) mod tests {
    use datafusion::arrow::array::{Array, AsArray, Int64Array};
    use datafusion::arrow::compute::{CastOptions, cast_with_options};
    use datafusion::arrow::datatypes::Int64Type;
    use proptest::prelude::*;

    use super::*;

    /// Text to `data_type`, failing on a value that does not convert: the
    /// cast the change-batch tests build their batches with.
    pub(crate) fn cast(text: &StringArray, data_type: &DataType) -> Result<ArrayRef, String> {
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        cast_with_options(text, data_type, &options).map_err(|e| e.to_string())
    }

    fn columns() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("big", DataType::Utf8, true),
        ]))
    }

    fn unchanged(batch: &RecordBatch, row: usize) -> Option<Vec<String>> {
        let list = batch.column(5).as_list::<i32>();
        list.is_valid(row).then(|| {
            let names = list.value(row);
            names.as_string::<i32>().iter().map(|n| n.unwrap().to_owned()).collect()
        })
    }

    #[test]
    fn unchanged_values_are_named_never_just_null() {
        let mut builder = ChangeBatchBuilder::new(columns(), cast, 10);
        let at = Position::postgres_snapshot(0x10);
        builder.push(
            ChangeOp::Insert,
            at.row_position(0),
            5,
            vec![ChangeValue::Text("1".into()), ChangeValue::Null],
        );
        builder.push(
            ChangeOp::Update,
            at.row_position(1),
            5,
            vec![ChangeValue::Text("1".into()), ChangeValue::Unchanged],
        );
        builder.push(
            ChangeOp::Truncate,
            at.row_position(2),
            5,
            vec![ChangeValue::Null, ChangeValue::Null],
        );
        let batch = builder.finish().unwrap().unwrap();
        assert!(builder.finish().unwrap().is_none(), "finish starts over");
        assert_eq!(batch.schema(), builder.schema());
        assert!(batch.schema().field(0).is_nullable(), "a delete carries only the key");
        let ops: Vec<_> = batch.column(2).as_string::<i32>().iter().flatten().collect();
        assert_eq!(ops, ["insert", "update", "truncate"]);
        assert!(batch.column(1).is_null(0) && batch.column(1).is_null(1));
        assert_eq!(unchanged(&batch, 0), None, "a NULL is a NULL");
        assert_eq!(
            unchanged(&batch, 1),
            Some(vec!["big".to_owned()]),
            "an unchanged value is marked"
        );
        assert_eq!(batch.column(3).as_string::<i32>().value(1), "0000000000000010-00000001");
        assert_eq!(batch.column(4).data_type(), &commit_ts_type());
    }

    #[test]
    fn a_value_that_does_not_fit_names_its_column() {
        let mut builder = ChangeBatchBuilder::new(columns(), cast, 10);
        builder.push(
            ChangeOp::Insert,
            "p".into(),
            0,
            vec![ChangeValue::Text("x".into()), ChangeValue::Null],
        );
        let err = builder.finish().unwrap_err();
        assert!(
            matches!(&err, CdcError::Decode { column, .. } if column == "id"),
            "{err}"
        );
        assert_eq!(err.sqlstate(), Some("22P02"));
    }

    #[test]
    fn snapshot_rows_are_inserts_at_the_snapshot_position() {
        let batch = RecordBatch::try_new(
            columns(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .unwrap();
        let changes = snapshot_changes(&batch, &Position::postgres_snapshot(0xAB), 7);
        assert_eq!(changes.schema(), change_schema(&columns()));
        assert_eq!(changes.num_rows(), 2);
        assert_eq!(
            changes.column(3).as_string::<i32>().value(1),
            "00000000000000AB-00000001"
        );
        assert_eq!(changes.column(2).as_string::<i32>().value(0), "insert");
        assert!(changes.column(5).is_null(0));
        let truncate = snapshot_truncate(&columns(), &Position::postgres_snapshot(0xAB), 7);
        assert_eq!(truncate.schema(), change_schema(&columns()));
        assert_eq!(truncate.num_rows(), 1);
        assert_eq!(truncate.column(2).as_string::<i32>().value(0), "truncate");
        assert!(truncate.column(0).is_null(0));
        assert!(
            truncate.column(3).as_string::<i32>().value(0) < changes.column(3).as_string::<i32>().value(0),
            "the truncate sorts before the snapshot's inserts"
        );
    }

    proptest! {
        #[test]
        fn rows_come_out_as_they_went_in(
            rows in prop::collection::vec((any::<i64>(), prop::option::of(prop::option::of("[a-z]{0,8}"))), 0..40),
            batch_rows in 1usize..16,
        ) {
            // `None` = unchanged, `Some(None)` = NULL.
            let mut builder = ChangeBatchBuilder::new(columns(), cast, batch_rows);
            let mut batches = Vec::new();
            for (seq, (id, big)) in rows.iter().enumerate() {
                let big = match big {
                    None => ChangeValue::Unchanged,
                    Some(None) => ChangeValue::Null,
                    Some(Some(text)) => ChangeValue::Text(text.clone()),
                };
                builder.push(ChangeOp::Update, format!("{seq:08}"), 0, vec![ChangeValue::Text(id.to_string()), big]);
                if builder.is_full() {
                    batches.push(builder.finish().unwrap().unwrap());
                }
            }
            batches.extend(builder.finish().unwrap());
            let mut out = Vec::new();
            for batch in &batches {
                prop_assert!(batch.num_rows() <= batch_rows);
                for row in 0..batch.num_rows() {
                    let id = batch.column(0).as_primitive::<Int64Type>().value(row);
                    let big = batch.column(1).as_string::<i32>();
                    let big = match unchanged(batch, row) {
                        Some(names) => { prop_assert_eq!(names, vec!["big".to_owned()]); prop_assert!(big.is_null(row)); None }
                        None => Some(big.is_valid(row).then(|| big.value(row).to_owned())),
                    };
                    out.push((id, big));
                }
            }
            prop_assert_eq!(out, rows);
        }
    }
}
