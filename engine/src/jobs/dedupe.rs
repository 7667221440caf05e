//! `DEDUPE ON (columns)`: which rows of a lookback run are new.
//!
//! A lookback run reads the trailing window again. Before any row is
//! written, the keys the destination holds in that window are remembered;
//! a row read is loaded only if its key is not among them (nor among the
//! rows loaded earlier in the same run). NULL counts as a value: two NULL
//! keys are the same key.

use std::collections::HashSet;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use futures::TryStreamExt;

use crate::contract::DestinationError;
use crate::error::EngineError;

/// The keys loaded so far in the window, and the filter for new rows.
pub(super) struct Deduper {
    /// Positions of the key columns in the job's batches.
    positions: Vec<usize>,
    /// Their types, which the destination's keys are cast to.
    types: Vec<DataType>,
    converter: RowConverter,
    seen: HashSet<Box<[u8]>>,
    /// Rows dropped because their key was loaded already.
    pub skipped: u64,
}

impl Deduper {
    /// A deduper on `columns` of batches with `schema`.
    pub fn new(schema: &Schema, columns: &[String]) -> Result<Self, EngineError> {
        let positions = columns
            .iter()
            .map(|name| {
                schema.index_of(name).map_err(|_| EngineError::InvalidJob {
                    message: format!("the DEDUPE ON column \"{name}\" is no longer loaded"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let types: Vec<DataType> = positions.iter().map(|&i| schema.field(i).data_type().clone()).collect();
        let fields = types.iter().cloned().map(SortField::new).collect();
        Ok(Self {
            positions,
            types,
            converter: RowConverter::new(fields).map_err(extract)?,
            seen: HashSet::new(),
            skipped: 0,
        })
    }

    /// Remembers the keys of a stream of key-column batches (the
    /// destination's, in the window).
    pub async fn remember(&mut self, mut keys: SendableRecordBatchStream) -> Result<(), EngineError> {
        while let Some(batch) = keys.try_next().await.map_err(read_error)? {
            let columns = batch
                .columns()
                .iter()
                .zip(&self.types)
                .map(|(array, wanted)| {
                    if array.data_type() == wanted {
                        Ok(array.clone())
                    } else {
                        cast(array, wanted).map_err(extract)
                    }
                })
                .collect::<Result<Vec<ArrayRef>, _>>()?;
            let rows = self.converter.convert_columns(&columns).map_err(extract)?;
            self.seen.extend(rows.iter().map(|row| Box::<[u8]>::from(row.as_ref())));
        }
        Ok(())
    }

    /// The rows of `batch` whose key is new; their keys count as loaded
    /// from now on.
    pub fn retain_new(&mut self, batch: RecordBatch) -> Result<RecordBatch, EngineError> {
        let columns: Vec<ArrayRef> = self.positions.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = self.converter.convert_columns(&columns).map_err(extract)?;
        let keep: BooleanArray = rows
            .iter()
            .map(|row| Some(self.seen.insert(Box::from(row.as_ref()))))
            .collect();
        let kept = keep.true_count();
        self.skipped += (batch.num_rows() - kept) as u64;
        if kept == batch.num_rows() {
            return Ok(batch);
        }
        filter_record_batch(&batch, &keep).map_err(extract)
    }
}

/// A failed read of the destination's keys: the destination's own error
/// when it is one (a remote refusal keeps its reason and SQLSTATE).
fn read_error(error: DataFusionError) -> EngineError {
    match error {
        DataFusionError::External(e) => match e.downcast::<DestinationError>() {
            Ok(e) => EngineError::Destination(*e),
            Err(e) => extract(e),
        },
        other => extract(other),
    }
}

fn extract(error: impl std::fmt::Display) -> EngineError {
    EngineError::Extract {
        message: format!("deduplicating on the DEDUPE ON columns failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::*;

    fn batch(ids: &[Option<i64>], kinds: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Utf8, false),
            Field::new("id", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(kinds.to_vec())),
                Arc::new(Int64Array::from(ids.to_vec())),
            ],
        )
        .unwrap()
    }

    fn ids(batch: &RecordBatch) -> Vec<Option<i64>> {
        batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .iter()
            .collect()
    }

    #[tokio::test]
    async fn drops_keys_loaded_before_or_earlier_in_the_run() {
        let loaded = batch(&[Some(1), Some(2)], &["a", "a"]);
        let mut deduper = Deduper::new(&loaded.schema(), &["id".into(), "kind".into()]).unwrap();
        // The destination returns its keys in DEDUPE ON order, as Utf8View here.
        let keys_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("kind", DataType::Utf8View, false),
        ]));
        let keys = RecordBatch::try_new(
            keys_schema.clone(),
            vec![
                loaded.column(1).clone(),
                cast(loaded.column(0), &DataType::Utf8View).unwrap(),
            ],
        )
        .unwrap();
        let stream = RecordBatchStreamAdapter::new(keys_schema, futures::stream::iter([Ok(keys)]));
        deduper.remember(Box::pin(stream)).await.unwrap();

        let read = batch(
            &[Some(1), Some(2), Some(2), Some(3), None, None, Some(3)],
            &["a", "b", "b", "a", "a", "a", "a"],
        );
        let kept = deduper.retain_new(read).unwrap();
        assert_eq!(ids(&kept), [Some(2), Some(3), None]);
        assert_eq!(
            kept.column(0).as_ref(),
            &StringArray::from(vec!["b", "a", "a"]) as &dyn datafusion::arrow::array::Array
        );
        assert_eq!(deduper.skipped, 4);
        // A later batch of the same run sees the keys loaded before it.
        let again = deduper.retain_new(batch(&[Some(3), Some(4)], &["a", "a"])).unwrap();
        assert_eq!(ids(&again), [Some(4)]);
    }
}
