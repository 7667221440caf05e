//! Source schema changes in CDC runs (docs/cdc.md, "Schema changes"):
//! before a CDC run reads the change log, and again whenever its stream
//! meets a newer definition of the table
//! ([`ChangeEvent::SchemaChanged`](crate::contract::ChangeEvent)), the run
//! describes the table and follows what the job's `on_schema_change`
//! allows, as a timestamp-incremental run does (`schema_changes.rs`): an
//! added column is appended to the destination, a dropped one stays there
//! and is NULL in later changes, a widened type is widened.
//!
//! A CDC table keeps Sluice's own columns (`_sluice_position`, ...) after
//! the columns it was made with, and a destination only appends columns: so
//! a column added later comes after them, and the table's order is read
//! from the destination.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use sluice_catalog::{CdcMode, JobRecord};

use super::JobManager;
use super::cdc::capture;
use super::schema_changes;
use crate::cdc::{change_schema, change_table_schema};
use crate::contract::{Capture, ChangeSpec, Destination, DestinationError};
use crate::error::EngineError;

/// What a CDC run reads and writes, after following the source's schema.
pub(super) struct Followed {
    /// The job, with the columns it records now.
    pub job: JobRecord,
    /// What the stream captures: the source's columns the job loads.
    pub capture: Capture,
    pub spec: ChangeSpec,
    /// The destination table's columns, in its order.
    pub table: SchemaRef,
    /// The change rows the destination takes: its data columns (those the
    /// source dropped included), then the change's own.
    pub changes: SchemaRef,
    /// The schema changes the run followed so far.
    pub followed: u32,
}

impl JobManager {
    /// Describes `job`'s source table and follows what changed since the
    /// job last recorded its columns (its `on_schema_change`), before run
    /// `run_id` writes anything; `followed` changes were followed by the
    /// run before.
    pub(super) async fn follow_cdc_schema(
        &self,
        job: &JobRecord,
        mode: CdcMode,
        (run_id, followed): (u64, u32),
        destination: &dyn Destination,
    ) -> Result<Followed, EngineError> {
        let (_, columns) = self.source_columns(job).await?;
        let evolution = schema_changes::compare(job, &columns)?;
        let soft_delete = job.cdc.soft_delete;
        let names = destination.column_names(&job.destination.table).await?;
        let table = in_table_order(
            &job.destination.table,
            &names,
            &change_table_schema(&evolution.target, mode, soft_delete),
        )?;
        schema_changes::apply(self.catalog(), job, (run_id, followed), destination, &evolution, &table).await?;
        let followed = followed + evolution.changes.len() as u32;
        let job = JobRecord {
            columns: evolution.columns.clone(),
            ..job.clone()
        };
        Ok(Followed {
            capture: capture(&job, &columns, mode),
            spec: ChangeSpec {
                mode,
                key: columns.primary_key(),
                soft_delete,
            },
            changes: change_schema(&evolution.target),
            followed,
            table,
            job,
        })
    }
}

/// The fields of `wanted` in the order of the table's `names`, the ones it
/// does not have yet appended.
fn in_table_order(table: &str, names: &[String], wanted: &SchemaRef) -> Result<SchemaRef, EngineError> {
    let mut fields = Vec::with_capacity(wanted.fields().len());
    for name in names {
        let field = wanted.field_with_name(name).map_err(|_| {
            EngineError::from(DestinationError::SchemaMismatch {
                table: table.to_owned(),
                differences: vec![format!(
                    "column \"{name}\" of the table is not one of the job's columns or Sluice's own"
                )],
            })
        })?;
        fields.push(field.clone());
    }
    let added = wanted.fields().iter().filter(|f| !names.contains(f.name()));
    fields.extend(added.map(|f| f.as_ref().clone()));
    Ok(Arc::new(Schema::new(fields)))
}

/// `rows` with the columns of `schema`, by name: a nullable column `rows`
/// lacks (a column the source dropped; `_sluice_deleted_at` of snapshot
/// rows) is NULL.
pub(super) fn by_name(rows: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, EngineError> {
    if rows.schema_ref() == schema {
        return Ok(rows.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match rows.column_by_name(field.name()) {
            Some(column) => Ok(column.clone()),
            None if field.is_nullable() => Ok(new_null_array(field.data_type(), rows.num_rows())),
            None => Err(EngineError::InvalidJob {
                message: format!("the change rows have no column \"{}\"", field.name()),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns).map_err(DestinationError::from)?)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    fn schema(fields: &[(&str, bool)]) -> SchemaRef {
        Arc::new(Schema::new(
            fields
                .iter()
                .map(|&(name, nullable)| Field::new(name, DataType::Int64, nullable))
                .collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn added_columns_come_after_the_tables_own() {
        let wanted = schema(&[("id", true), ("tag", true), ("_sluice_position", false)]);
        let names = ["id".to_owned(), "_sluice_position".to_owned()];
        let ordered = in_table_order("t", &names, &wanted).unwrap();
        let order: Vec<&str> = ordered.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(order, ["id", "_sluice_position", "tag"]);
        let unknown = in_table_order("t", &["gone".to_owned()], &wanted).unwrap_err();
        assert!(unknown.to_string().contains("column \"gone\""), "{unknown}");
    }

    #[test]
    fn missing_nullable_columns_are_null_and_missing_required_ones_refused() {
        let rows =
            RecordBatch::try_new(schema(&[("id", false)]), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let wider = by_name(&rows, &schema(&[("tag", true), ("id", false)])).unwrap();
        assert_eq!(wider.column(0).null_count(), 2);
        assert_eq!(wider.column(1).as_ref(), rows.column(0).as_ref());
        assert!(by_name(&rows, &schema(&[("op", false)])).is_err());
    }
}
