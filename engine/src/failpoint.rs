//! Failure points for testing exactly-once delivery and recovery.
//!
//! `SLUICE_FAILPOINTS=name[:action][,name[:action]...]` makes the process
//! fail when it reaches a named point. The action is `abort` (the default:
//! the process stops as a kill -9 would stop it), `panic` (the task panics)
//! or `error` (the step fails with [`FailpointHit`]). Unset, a point costs
//! one environment lookup. This module names no other: connectors use it
//! too. Points:
//!
//! - `run_start`: a run has been saved as running and claimed its job.
//! - `after_destination_commit`: the destination has committed a run's load,
//!   the catalog has not recorded it yet.
//! - `after_repair_commit`: the destination has committed a repair's load,
//!   the catalog has not recorded it yet.
//! - `catalog_finish_run`: the catalog write that records a finished run
//!   (as when the disk is full).
//! - `between_files`: a file source scan has read one file and is about to
//!   open the next (its rows are in the destination's open load).
//! - `between_pages`: a document store scan (Redis, DynamoDB) has read one page of
//!   documents and is about to return the next.
//! - `cdc_after_batch_commit` / `cdc_before_batch_commit`: a CDC drain's
//!   micro-batch, around its destination commit (before the confirm).
//! - `cdc_resync_released`: a resync dropped the job's old slot and
//!   publication; nothing new exists yet.
//! - `cdc_snapshot_before_commit`: a CDC first load or resync has written
//!   the snapshot's rows; the destination has not committed them.
//! - `cdc_snapshot_committed`: the destination committed the snapshot; the
//!   catalog still says `snapshotting`.
//! - `drop_database_jobs_dropped`: `DROP DATABASE ... CASCADE` dropped the
//!   database's jobs; its records are not deleted yet.
//! - `drop_database_records_deleted`: `DROP DATABASE` deleted the
//!   database's records; its warehouse files are not deleted yet.

/// A failure point whose action is `error` was reached.
#[derive(Debug, thiserror::Error)]
#[error("failpoint {name} failed the step")]
pub struct FailpointHit {
    pub name: String,
}

/// Fails as `SLUICE_FAILPOINTS` says when `name` is listed there.
pub fn hit(name: &str) -> Result<(), FailpointHit> {
    let Ok(points) = std::env::var("SLUICE_FAILPOINTS") else {
        return Ok(());
    };
    let action = points.split(',').find_map(|point| {
        let (point, action) = point.split_once(':').unwrap_or((point, "abort"));
        (point.trim() == name).then(|| action.trim().to_owned())
    });
    match action.as_deref() {
        None => Ok(()),
        Some("panic") => panic!("failpoint {name} hit"),
        Some("error") => {
            tracing::error!(failpoint = name, "failpoint hit: failing the step");
            Err(FailpointHit { name: name.to_owned() })
        }
        Some(_) => {
            tracing::error!(failpoint = name, "failpoint hit: aborting the process");
            std::process::abort();
        }
    }
}
