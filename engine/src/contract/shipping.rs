//! How far a load has got in its destination: bytes uploaded (or written)
//! and, for destinations that run load jobs, jobs done out of those
//! submitted; updated by the load as it goes and read by the runner for
//! `sluice.runs` and progress NOTICEs.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// What a load is waiting for right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Sending a chunk of data.
    Uploading,
    /// Waiting for submitted load jobs to finish.
    Loading,
}

/// A load's shipping counters, shared between the load and the runner.
#[derive(Debug, Default)]
pub struct ShipProgress {
    /// Whether the destination runs load jobs (else only bytes count).
    counts_jobs: bool,
    bytes_uploaded: AtomicU64,
    jobs_total: AtomicU64,
    jobs_done: AtomicU64,
    /// Jobs submitted that write the destination table.
    table_ops: AtomicU64,
    /// 0 idle, 1 uploading, 2 loading.
    activity: AtomicU8,
}

/// A copy of [`ShipProgress`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shipped {
    pub bytes_uploaded: u64,
    /// `None` for destinations without load jobs.
    pub jobs: Option<LoadJobs>,
    /// Table operations spent on the destination table (with `jobs`).
    pub table_ops: u64,
    pub activity: Option<Activity>,
}

/// Load jobs of a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadJobs {
    pub done: u64,
    /// Jobs submitted so far (final once the load waits for them).
    pub total: u64,
}

/// Marks an activity until dropped.
pub struct Busy<'a>(&'a ShipProgress);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.activity.store(0, Ordering::Relaxed);
    }
}

impl ShipProgress {
    /// Counters of a destination that runs load jobs.
    pub fn with_jobs() -> Self {
        Self {
            counts_jobs: true,
            ..Self::default()
        }
    }

    /// Counts `bytes` more as uploaded.
    pub fn uploaded(&self, bytes: u64) {
        self.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a job as submitted.
    pub fn job_submitted(&self) {
        self.jobs_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a submitted job as finished.
    pub fn job_done(&self) {
        self.jobs_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a submitted job that writes the destination table: one of
    /// the table's daily operations, whether the job succeeds or not.
    pub fn table_op(&self) {
        self.table_ops.fetch_add(1, Ordering::Relaxed);
    }

    /// Shows `activity` until the returned guard is dropped.
    pub fn busy(&self, activity: Activity) -> Busy<'_> {
        let code = match activity {
            Activity::Uploading => 1,
            Activity::Loading => 2,
        };
        self.activity.store(code, Ordering::Relaxed);
        Busy(self)
    }

    pub fn snapshot(&self) -> Shipped {
        Shipped {
            bytes_uploaded: self.bytes_uploaded.load(Ordering::Relaxed),
            jobs: self.counts_jobs.then(|| LoadJobs {
                done: self.jobs_done.load(Ordering::Relaxed),
                total: self.jobs_total.load(Ordering::Relaxed),
            }),
            table_ops: self.table_ops.load(Ordering::Relaxed),
            activity: match self.activity.load(Ordering::Relaxed) {
                1 => Some(Activity::Uploading),
                2 => Some(Activity::Loading),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_shows_the_activity_while_busy() {
        let progress = ShipProgress::with_jobs();
        progress.uploaded(100);
        progress.job_submitted();
        {
            let _busy = progress.busy(Activity::Loading);
            progress.job_submitted();
            progress.job_done();
            progress.uploaded(20);
            let now = progress.snapshot();
            assert_eq!(
                (now.bytes_uploaded, now.jobs, now.activity),
                (120, Some(LoadJobs { done: 1, total: 2 }), Some(Activity::Loading))
            );
        }
        assert_eq!(progress.snapshot().activity, None, "idle once the guard is dropped");
        let bytes_only = ShipProgress::default();
        bytes_only.uploaded(5);
        assert_eq!(
            (bytes_only.snapshot().bytes_uploaded, bytes_only.snapshot().jobs),
            (5, None)
        );
    }
}
