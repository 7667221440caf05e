//! When a run loads source files as they are ([`ScanPiece::File`]): only
//! when every row of a file goes to the destination unchanged, so that
//! copying the file loads exactly what decoding it would.
//!
//! [`ScanPiece::File`]: crate::contract::ScanPiece::File

use datafusion::arrow::datatypes::SchemaRef;
use sluice_catalog::{JobRecord, LoadType};

use super::define::JobColumns;
use super::schema_changes::Evolution;
use crate::contract::{LoadTransaction, ScanRequest};

/// The destination columns a whole file must have for this run to copy it,
/// or `None` when the run reads rows only: the destination does not take
/// files; the job is not a snapshot (an incremental run filters by its
/// cursor and reads the cursor's values); the run filters, limits or
/// splits its read (`parallelism`); a type override converts a column; or
/// the destination's columns are not the loaded ones in their order.
pub(super) fn schema(
    job: &JobRecord,
    columns: &JobColumns,
    request: &ScanRequest,
    evolution: &Evolution,
    transaction: &dyn LoadTransaction,
) -> Option<SchemaRef> {
    let plain_read = request.filter.is_none()
        && request.limit.is_none()
        && request.columns == columns.indexes
        && job.load == LoadType::Snapshot
        && job.parallelism.is_none_or(|n| n <= 1);
    let read = columns.description.arrow_schema().project(&columns.indexes).ok()?;
    let unconverted = read.fields() == columns.schema.fields();
    (transaction.copies_files() && plain_read && unconverted && evolution.loads_in_place(&columns.schema))
        .then(|| evolution.target.clone())
}
