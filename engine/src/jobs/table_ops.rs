//! The table operations runs spent on a job's destination table today
//! (UTC), counted in the catalog as runs finish, against the daily limit
//! the destination's type declares
//! ([`DestinationDriver::table_operations_per_day`](crate::contract::DestinationDriver::table_operations_per_day)),
//! and the warning at 80 % of it.

use chrono::{DateTime, Utc};
use sluice_catalog::{Catalog, CatalogError, JobRecord};

/// The table operations a job's destination table spent today, and the
/// daily limit of its destination's service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOpsToday {
    pub spent: u64,
    pub limit: u32,
    /// The service's name (the connection type's display name).
    pub service: &'static str,
}

impl TableOpsToday {
    /// Whether 80 % of the day's limit is spent.
    pub fn near_limit(&self) -> bool {
        self.spent >= u64::from(self.limit) * 4 / 5
    }
}

/// Table operations spent on `job`'s destination table on `now`'s UTC day;
/// `None` when its destination's type has no daily limit (or the
/// connection is gone).
pub fn table_ops_today(
    catalog: &Catalog,
    job: &JobRecord,
    now: DateTime<Utc>,
) -> Result<Option<TableOpsToday>, CatalogError> {
    let Some(connection) = job.destination.connection.as_deref() else {
        return Ok(None);
    };
    let Some((limit, service)) = catalog.find_connection(connection)?.and_then(|c| daily_limit(&c.kind)) else {
        return Ok(None);
    };
    let spent = catalog.table_ops(connection, &job.destination.table, now.date_naive())?;
    Ok(Some(TableOpsToday { spent, limit, service }))
}

/// The daily table operations a connection type's destination allows, and
/// the type's display name.
fn daily_limit(kind: &str) -> Option<(u32, &'static str)> {
    let kind = crate::connectors::lookup(kind).ok()?;
    let limit = kind.driver.as_ref()?.destination.as_ref()?.table_operations_per_day?;
    Some((limit, kind.display_name))
}

/// The warning for `job`'s destination table once 80 % of its daily table
/// operations are spent.
pub fn table_ops_warning(job: &JobRecord, ops: TableOpsToday) -> Option<String> {
    ops.near_limit().then(|| {
        format!(
            "table {}.{} has used {} of {}'s {} daily table operations today \
             (UTC); once they run out its loads fail until midnight UTC: run job \"{}\" less often",
            job.destination.connection.as_deref().unwrap_or("warehouse"),
            job.destination.table,
            ops.spent,
            ops.service,
            ops.limit,
            job.name
        )
    })
}
