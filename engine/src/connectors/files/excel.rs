//! Excel workbooks (`.xlsx`, `.xls`), read by `calamine`. Each sheet of a
//! workbook directly under the prefix is a table, `<stem>_<sheet>`. A
//! workbook has no parts to read apart, so each is read whole. The first
//! row of a sheet names its columns (an empty cell: `column_<n>`); each
//! column's type comes from its cells: whole numbers `Int64`, numbers
//! `Float64`, booleans `Boolean`, dates and times `Timestamp`, anything
//! else (or a mix) `Utf8`, the cells' text.

use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use calamine::{Data, Reader, Sheets, open_workbook_auto_from_rs};
use datafusion::arrow::array::TimestampMicrosecondArray;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::DataFusionError;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStore, ObjectStoreExt};

/// The workbook at `path`, read whole.
async fn workbook(store: &dyn ObjectStore, path: &Path) -> Result<Sheets<Cursor<Bytes>>, DataFusionError> {
    let bytes = store.get(path).await?.bytes().await?;
    open_workbook_auto_from_rs(Cursor::new(bytes))
        .map_err(|e| DataFusionError::Execution(format!("{path} is not a readable Excel workbook: {e}")))
}

/// The names of the sheets of the workbook at `path`, in its order.
pub(super) async fn sheets(store: &dyn ObjectStore, path: &Path) -> Result<Vec<String>, DataFusionError> {
    Ok(workbook(store, path).await?.sheet_names())
}

/// The rows of one sheet, in batches of `batch_rows`, with its schema.
pub(super) async fn read(
    store: &dyn ObjectStore,
    path: &Path,
    sheet: &str,
    batch_rows: usize,
) -> Result<(Schema, Vec<RecordBatch>), DataFusionError> {
    let range = workbook(store, path)
        .await?
        .worksheet_range(sheet)
        .map_err(|e| DataFusionError::Execution(format!("sheet \"{sheet}\" of {path} cannot be read: {e}")))?;
    let rows: Vec<&[Data]> = range.rows().collect();
    let schema = Arc::new(schema_of(&rows));
    let Some(body) = rows.get(1..).filter(|b| !b.is_empty()) else {
        return Ok((schema.as_ref().clone(), Vec::new()));
    };
    let batch = batch_of(&schema, body)?;
    let step = batch_rows.max(1);
    let batches = (0..batch.num_rows())
        .step_by(step)
        .map(|offset| batch.slice(offset, step.min(batch.num_rows() - offset)))
        .collect();
    Ok((schema.as_ref().clone(), batches))
}

/// The columns the header row names, typed by the cells below it.
fn schema_of(rows: &[&[Data]]) -> Schema {
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let header = rows.first().copied().unwrap_or(&[]);
    let mut names: Vec<String> = Vec::with_capacity(width);
    for i in 0..width {
        let name = match header.get(i) {
            Some(Data::Empty) | None => format!("column_{}", i + 1),
            Some(cell) => cell.to_string(),
        };
        let name = if names.contains(&name) {
            format!("{name}_{}", i + 1)
        } else {
            name
        };
        names.push(name);
    }
    let fields: Vec<Field> = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| Field::new(name, column_type(rows.iter().skip(1).map(|r| r.get(i))), true))
        .collect();
    Schema::new(fields)
}

/// The type all of a column's cells fit.
fn column_type<'a>(cells: impl Iterator<Item = Option<&'a Data>>) -> DataType {
    let mut seen: Option<DataType> = None;
    for cell in cells.flatten() {
        let this = match cell {
            Data::Empty => continue,
            Data::Int(_) => DataType::Int64,
            Data::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => DataType::Int64,
            Data::Float(_) => DataType::Float64,
            Data::Bool(_) => DataType::Boolean,
            Data::DateTime(d) if d.is_datetime() => DataType::Timestamp(TimeUnit::Microsecond, None),
            _ => DataType::Utf8,
        };
        seen = Some(match (seen, this) {
            (None, t) => t,
            (Some(a), b) if a == b => a,
            (Some(DataType::Int64 | DataType::Float64), DataType::Int64 | DataType::Float64) => DataType::Float64,
            _ => DataType::Utf8,
        });
    }
    seen.unwrap_or(DataType::Utf8)
}

/// The `rows` as one batch of `schema`.
fn batch_of(schema: &SchemaRef, rows: &[&[Data]]) -> Result<RecordBatch, DataFusionError> {
    let columns: Vec<ArrayRef> = (schema.fields().iter().enumerate())
        .map(|(i, field)| -> ArrayRef {
            let cells = rows.iter().map(|r| r.get(i).unwrap_or(&Data::Empty));
            match field.data_type() {
                DataType::Int64 => Arc::new(
                    cells
                        .map(|c| match c {
                            Data::Int(v) => Some(*v),
                            Data::Float(f) => Some(*f as i64),
                            _ => None,
                        })
                        .collect::<Int64Array>(),
                ),
                DataType::Float64 => Arc::new(
                    cells
                        .map(|c| match c {
                            Data::Int(v) => Some(*v as f64),
                            Data::Float(f) => Some(*f),
                            _ => None,
                        })
                        .collect::<Float64Array>(),
                ),
                DataType::Boolean => Arc::new(
                    cells
                        .map(|c| match c {
                            Data::Bool(b) => Some(*b),
                            _ => None,
                        })
                        .collect::<BooleanArray>(),
                ),
                DataType::Timestamp(..) => Arc::new(
                    cells
                        .map(|c| match c {
                            Data::DateTime(d) => d.as_datetime().map(|t| t.and_utc().timestamp_micros()),
                            _ => None,
                        })
                        .collect::<TimestampMicrosecondArray>(),
                ),
                _ => Arc::new(
                    cells
                        .map(|c| match c {
                            Data::Empty => None,
                            other => Some(other.to_string()),
                        })
                        .collect::<StringArray>(),
                ),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_named_by_the_header_and_typed_by_their_cells() {
        let header = [
            Data::String("id".into()),
            Data::Empty,
            Data::String("id".into()),
            Data::String("ok".into()),
        ];
        let one = [
            Data::Float(1.0),
            Data::Float(1.5),
            Data::String("a".into()),
            Data::Bool(true),
        ];
        let two = [Data::Int(2), Data::Int(2), Data::Int(3), Data::Empty];
        let rows: Vec<&[Data]> = vec![&header, &one, &two];
        let schema = Arc::new(schema_of(&rows));
        let names: Vec<(&str, &DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(
            names,
            [
                ("id", &DataType::Int64),
                ("column_2", &DataType::Float64),
                ("id_3", &DataType::Utf8),
                ("ok", &DataType::Boolean)
            ]
        );
        let batch = batch_of(&schema, &rows[1..]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let texts = batch.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((texts.value(0), texts.value(1)), ("a", "3"));
        assert!(batch.column(3).is_null(1));
    }
}
