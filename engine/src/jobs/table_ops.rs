//! The table operations runs spent on a job's destination table today
//! (UTC), counted in the catalog as runs finish, and the warning at 80 %
//! of BigQuery's daily limit.

use chrono::{DateTime, Utc};
use sluice_catalog::{Catalog, CatalogError, JobRecord};

use crate::connectors::bigquery::budget::DAILY_TABLE_OPERATIONS;

/// Table operations spent on one table in a UTC day at which Sluice warns:
/// 80 % of BigQuery's daily limit.
pub const WARN_TABLE_OPS: u64 = DAILY_TABLE_OPERATIONS as u64 * 4 / 5;

/// Table operations spent on `job`'s destination table on `now`'s UTC day;
/// `None` when the destination is not a BigQuery connection.
pub fn table_ops_today(catalog: &Catalog, job: &JobRecord, now: DateTime<Utc>) -> Result<Option<u64>, CatalogError> {
    let Some(connection) = job.destination.connection.as_deref() else {
        return Ok(None);
    };
    if catalog
        .find_connection(connection)?
        .is_none_or(|c| c.kind != "bigquery")
    {
        return Ok(None);
    }
    catalog
        .table_ops(connection, &job.destination.table, now.date_naive())
        .map(Some)
}

/// The warning for `job`'s destination table once `spent` reaches
/// [`WARN_TABLE_OPS`].
pub fn table_ops_warning(job: &JobRecord, spent: u64) -> Option<String> {
    (spent >= WARN_TABLE_OPS).then(|| {
        format!(
            "table {}.{} has used {spent} of BigQuery's {DAILY_TABLE_OPERATIONS} daily table operations today \
             (UTC); once they run out its loads fail until midnight UTC: run job \"{}\" less often",
            job.destination.connection.as_deref().unwrap_or("warehouse"),
            job.destination.table,
            job.name
        )
    })
}
