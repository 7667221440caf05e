//! `VERIFY ETL JOB`: the source and the destination compared over the
//! job's loaded window, bucket by bucket on the cursor, by row count and an
//! order-independent checksum of the key and cursor columns. Each side
//! computes its aggregate where the data is (one query at the source, one
//! in the destination); no rows pass through Sluice.

use std::collections::BTreeMap;

use chrono::Utc;
use datafusion::arrow::datatypes::DataType;
use datafusion::scalar::ScalarValue;
use sluice_catalog::{BucketDifference, JobRecord, LoadType, RunStatus, RunTrigger, VerificationRecord};

use super::define::JobColumns;
use super::plan::window_filter;
use super::{JobManager, window};
use crate::contract::Dialect;
use crate::error::EngineError;
use crate::sources::{BucketSums, BucketUnit, ChecksumQuery, WHOLE_TABLE, parse_sums};

/// The cursor window the user asked for: `[from, to)`, as cursor text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CursorWindow {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A job's cursor: its name, position among the loaded columns, and the
/// loaded window `(lower, upper]` in its type.
pub(super) struct Cursor {
    pub name: String,
    pub position: usize,
    pub lower: Option<ScalarValue>,
    pub upper: ScalarValue,
}

impl JobManager {
    /// The cursor of `job` and the window it has loaded so far (`None` for
    /// a SNAPSHOT); [`EngineError::NothingLoaded`] before its first
    /// successful run.
    pub(super) fn loaded(&self, job: &JobRecord, columns: &JobColumns) -> Result<Option<Cursor>, EngineError> {
        let nothing = || EngineError::NothingLoaded { job: job.name.clone() };
        let runs = self.catalog().runs(Some(&job.name))?;
        // A cleared watermark (RESET WATERMARK, a new load type) starts the
        // table again: the loads before it are no longer what it holds.
        let cleared = (runs.iter())
            .filter(|r| r.trigger == RunTrigger::Watermark && r.watermark_to.is_none())
            .map(|r| r.id)
            .max()
            .unwrap_or(0);
        let loads = || {
            runs.iter()
                .filter(|r| r.id > cleared && r.status == RunStatus::Succeeded && r.trigger != RunTrigger::Repair)
        };
        let LoadType::Incremental { cursor, .. } = &job.load else {
            return loads().next().map(|_| None).ok_or_else(nothing);
        };
        let position = columns.position(cursor).ok_or_else(|| EngineError::InvalidJob {
            message: format!("the cursor column \"{cursor}\" is no longer loaded"),
        })?;
        let cursor_type = source_type(columns, position);
        let mark = self.catalog().watermark(&job.name)?.ok_or_else(nothing)?;
        // The first kept load's lower bound (older runs may be pruned).
        let lower = match loads().next().and_then(|r| r.watermark_from.as_deref()) {
            Some(text) => Some(window::parse(text, cursor_type)?),
            None => None,
        };
        Ok(Some(Cursor {
            name: cursor.clone(),
            position,
            lower,
            upper: window::parse(&mark.value, cursor_type)?,
        }))
    }

    /// Compares job `name`'s source and destination over its loaded
    /// window (within `within` when given), in buckets of `by` on a time
    /// cursor; saves and returns the result.
    pub async fn verify_job(
        &self,
        name: &str,
        within: &CursorWindow,
        by: Option<BucketUnit>,
    ) -> Result<VerificationRecord, EngineError> {
        let job = self.catalog().job(name)?;
        let unsupported = |reason: String| EngineError::OperationNotSupported {
            operation: "VERIFY",
            job: name.to_owned(),
            reason,
        };
        let (source, columns) = self.source_columns(&job).await?;
        let cursor = self.loaded(&job, &columns)?;
        let destination = self.destination(job.destination.connection.as_deref())?;
        let destination_dialect = destination
            .query_dialect()
            .ok_or_else(|| unsupported("its destination cannot run queries over its rows".into()))?;

        // The key columns and the cursor, as positions among the loaded columns.
        let mut checked: Vec<usize> = columns
            .description
            .primary_key()
            .iter()
            .filter_map(|key| columns.position(key))
            .collect();
        if let Some(cursor) = &cursor
            && !checked.contains(&cursor.position)
        {
            checked.push(cursor.position);
        }
        let bucket = match (&cursor, by) {
            (Some(cursor), by) if is_time(source_type(&columns, cursor.position)) => {
                Some((cursor.position, by.unwrap_or(BucketUnit::Day)))
            }
            (_, None) => None,
            (Some(cursor), Some(_)) => {
                return Err(unsupported(format!(
                    "BY HOUR | DAY | MONTH needs a date or timestamp cursor; \"{}\" is {}",
                    cursor.name,
                    source_type(&columns, cursor.position)
                )));
            }
            (None, Some(_)) => {
                return Err(unsupported(
                    "a SNAPSHOT job is compared as one bucket; leave out BY".into(),
                ));
            }
        };
        if cursor.is_none() && (within.from.is_some() || within.to.is_some()) {
            return Err(unsupported(
                "a SNAPSHOT job has no cursor window; leave out BETWEEN".into(),
            ));
        }

        // Each side's query, in its own dialect and with its own types.
        let side = |dialect: &dyn Dialect, types: &dyn Fn(usize) -> DataType| {
            let name = |i: usize| columns.schema.field(i).name().clone();
            let filter = match &cursor {
                Some(cursor) => {
                    let bounds = bounds(cursor, within, &types(cursor.position))?;
                    window_filter(dialect, &cursor.name, bounds.iter().map(|(op, v)| (*op, v.as_ref())))?
                }
                None => None,
            };
            let query = ChecksumQuery {
                columns: checked.iter().map(|&i| (name(i), types(i))).collect(),
                bucket: bucket.map(|(i, unit)| (name(i), types(i), unit)),
                filter,
            };
            // Checked here, so that building it around the table's name cannot fail.
            query.sql(dialect, "t").map_err(unsupported)?;
            Ok::<_, EngineError>(query)
        };
        let source_dialect = source.dialect();
        let source_query = side(source_dialect, &|i| source_type(&columns, i).clone())?;
        let destination_query = side(destination_dialect, &|i| columns.schema.field(i).data_type().clone())?;
        let source_sql = |from: &str| source_query.sql(source_dialect, from).unwrap_or_default();
        let destination_sql = |from: &str| destination_query.sql(destination_dialect, from).unwrap_or_default();

        let source_rows = source
            .query_text(&columns.description, &source_sql)
            .await
            .map_err(|error| EngineError::Source {
                connection: job.source.connection.clone(),
                error,
            })?;
        let destination_rows = destination.query_text(&job.destination.table, &destination_sql).await?;
        let parse = |rows: &[Vec<Option<String>>]| parse_sums(rows).map_err(|message| EngineError::Extract { message });
        let (buckets, differences) = compare(&parse(&source_rows.rows)?, &parse(&destination_rows.rows)?);

        let verification = VerificationRecord {
            job: name.to_owned(),
            verified_at: Utc::now(),
            window_from: within.from.clone(),
            window_to: within.to.clone(),
            bucket_by: bucket.map_or(WHOLE_TABLE, |(_, unit)| unit.as_str()).to_owned(),
            buckets,
            differences,
        };
        self.catalog().record_verification(&verification)?;
        Ok(verification)
    }
}

/// The Arrow type the source gives loaded column `i`.
pub(super) fn source_type(columns: &JobColumns, i: usize) -> &DataType {
    &columns.description.columns[columns.indexes[i]].mapping.arrow
}

fn is_time(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Timestamp(..) | DataType::Date32)
}

/// The conditions on the cursor: inside the loaded window and `within`.
pub(super) fn bounds(
    cursor: &Cursor,
    within: &CursorWindow,
    cursor_type: &DataType,
) -> Result<Vec<(&'static str, Option<ScalarValue>)>, EngineError> {
    let cast = |v: &ScalarValue| window::parse(&window::text(v), cursor_type);
    let parse = |text: &Option<String>| text.as_deref().map(|t| window::parse(t, cursor_type)).transpose();
    Ok(vec![
        (">", cursor.lower.as_ref().map(cast).transpose()?),
        ("<=", Some(cast(&cursor.upper)?)),
        (">=", parse(&within.from)?),
        ("<", parse(&within.to)?),
    ])
}

/// The buckets either side holds, and those that differ, in bucket order.
fn compare(source: &[BucketSums], destination: &[BucketSums]) -> (u64, Vec<BucketDifference>) {
    let mut buckets: BTreeMap<&str, [(i64, i128); 2]> = BTreeMap::new();
    for (side, sums) in [source, destination].into_iter().enumerate() {
        for sum in sums {
            buckets.entry(&sum.bucket).or_default()[side] = (sum.rows, sum.checksum);
        }
    }
    let differences = buckets
        .iter()
        .filter(|(_, [s, d])| s != d)
        .map(|(bucket, [s, d])| BucketDifference {
            bucket: (*bucket).to_owned(),
            source_rows: s.0,
            destination_rows: d.0,
            source_checksum: s.1.to_string(),
            destination_checksum: d.1.to_string(),
        })
        .collect();
    (buckets.len() as u64, differences)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(bucket: &str, rows: i64, checksum: i128) -> BucketSums {
        BucketSums {
            bucket: bucket.into(),
            rows,
            checksum,
        }
    }

    #[test]
    fn only_buckets_that_differ_are_reported() {
        let (buckets, differences) = compare(
            &[sums("a", 2, 10), sums("b", 1, 5), sums("c", 1, 7)],
            &[sums("a", 2, 10), sums("b", 2, 10), sums("d", 1, 1)],
        );
        assert_eq!(buckets, 4);
        let named: Vec<_> = differences.iter().map(|d| d.bucket.as_str()).collect();
        assert_eq!(named, ["b", "c", "d"]);
        assert_eq!((differences[1].source_rows, differences[1].destination_rows), (1, 0));
    }
}
