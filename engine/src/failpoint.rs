//! Crash points for testing exactly-once delivery.
//!
//! `SLUICE_FAILPOINTS=name[,name...]` makes the process abort (as a kill -9
//! would stop it) when it reaches a named point. Unset, a point costs one
//! environment lookup. Points: `after_destination_commit` (the destination
//! has committed a run's load, the catalog has not recorded it yet).

/// Aborts the process when `name` is listed in `SLUICE_FAILPOINTS`.
pub fn hit(name: &str) {
    if std::env::var("SLUICE_FAILPOINTS").is_ok_and(|points| points.split(',').any(|p| p.trim() == name)) {
        tracing::error!(failpoint = name, "failpoint hit: aborting the process");
        std::process::abort();
    }
}
