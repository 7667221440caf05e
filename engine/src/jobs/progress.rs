//! Live progress of running runs, for `sluice.runs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::contract::{Activity, FilesRead, ShipProgress, Shipped};

/// What a run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    /// Reading the source's description and fixing the window.
    Planning,
    /// Streaming rows from the source into the destination.
    Extracting,
    /// Publishing the load in the destination.
    Committing,
    /// Sending a chunk of data to the destination (whenever it does).
    Uploading,
    /// Waiting for the destination's load jobs (at commit).
    Loading,
}

impl RunPhase {
    /// The lower-case name shown in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Planning => "planning",
            RunPhase::Extracting => "extracting",
            RunPhase::Committing => "committing",
            RunPhase::Uploading => "uploading",
            RunPhase::Loading => "loading",
        }
    }
}

/// Progress counters a run updates as it goes.
#[derive(Debug)]
pub(super) struct LiveProgress {
    started: Instant,
    rows: AtomicU64,
    /// Arrow (in-memory) bytes of the rows read from the source.
    bytes_read: AtomicU64,
    phase: Mutex<RunPhase>,
    /// Rows the run expects in all, when the source gave an estimate.
    expected_rows: Mutex<Option<u64>>,
    /// What the load has shipped, when its destination reports it.
    shipping: Mutex<Option<Arc<ShipProgress>>>,
    /// Files read of those to read, when the source reads files.
    files: Mutex<Option<FilesRead>>,
}

impl LiveProgress {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            rows: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            phase: Mutex::new(RunPhase::Planning),
            expected_rows: Mutex::new(None),
            shipping: Mutex::new(None),
            files: Mutex::new(None),
        }
    }

    /// How many files the source has read, of those it reads.
    pub(super) fn set_files(&self, files: Option<FilesRead>) {
        *self.files.lock().unwrap_or_else(|p| p.into_inner()) = files;
    }

    pub(super) fn set_rows(&self, rows: u64) {
        self.rows.store(rows, Ordering::Relaxed);
    }

    /// Counts `bytes` more read from the source.
    pub(super) fn add_bytes_read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn set_phase(&self, phase: RunPhase) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    pub(super) fn expect_rows(&self, rows: Option<u64>) {
        *self.expected_rows.lock().unwrap_or_else(|p| p.into_inner()) = rows;
    }

    /// Follows the shipping counters of the run's load.
    pub(super) fn track(&self, shipping: Option<Arc<ShipProgress>>) {
        *self.shipping.lock().unwrap_or_else(|p| p.into_inner()) = shipping;
    }

    /// What the load has shipped so far, if its destination reports it.
    pub(super) fn shipped(&self) -> Option<Shipped> {
        let shipping = self.shipping.lock().unwrap_or_else(|p| p.into_inner());
        shipping.as_ref().map(|s| s.snapshot())
    }

    /// A consistent copy for display.
    pub(super) fn snapshot(&self, run_id: u64) -> LiveRun {
        let elapsed = self.started.elapsed();
        let rows = self.rows.load(Ordering::Relaxed);
        let rows_per_second = rows as f64 / elapsed.as_secs_f64().max(0.001);
        let expected = *self.expected_rows.lock().unwrap_or_else(|p| p.into_inner());
        let eta = expected
            .filter(|_| rows > 0)
            .map(|expected| Duration::from_secs_f64(expected.saturating_sub(rows) as f64 / rows_per_second));
        let shipped = self.shipped();
        // What the destination waits for is more telling than the step.
        let phase = match shipped.and_then(|s| s.activity) {
            Some(Activity::Uploading) => RunPhase::Uploading,
            Some(Activity::Loading) => RunPhase::Loading,
            None => *self.phase.lock().unwrap_or_else(|p| p.into_inner()),
        };
        LiveRun {
            run_id,
            rows,
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            elapsed,
            rows_per_second,
            phase,
            eta,
            shipped,
            files: *self.files.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }
}

/// How far a running run has got, right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveRun {
    pub run_id: u64,
    pub rows: u64,
    /// Arrow (in-memory) bytes of the rows read from the source so far.
    pub bytes_read: u64,
    pub elapsed: Duration,
    pub rows_per_second: f64,
    pub phase: RunPhase,
    /// Time left, when the source estimated the row count (snapshots).
    pub eta: Option<Duration>,
    /// Bytes uploaded and load jobs done, from destinations that report them.
    pub shipped: Option<Shipped>,
    /// Files read of those to read, from sources that read files.
    pub files: Option<FilesRead>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_comes_from_the_estimate_and_the_rate_so_far() {
        let progress = LiveProgress::new();
        assert_eq!(progress.snapshot(7).eta, None, "no estimate, no ETA");
        progress.expect_rows(Some(1_000));
        assert_eq!(progress.snapshot(7).eta, None, "no rows yet, no rate");
        std::thread::sleep(Duration::from_millis(50));
        progress.set_rows(250);
        progress.set_phase(RunPhase::Extracting);
        let live = progress.snapshot(7);
        assert_eq!((live.run_id, live.rows, live.phase), (7, 250, RunPhase::Extracting));
        // 750 rows left at the rate so far: three times the elapsed time.
        let eta = live.eta.expect("an ETA").as_secs_f64();
        let expected = 3.0 * live.elapsed.as_secs_f64();
        assert!((eta - expected).abs() < expected * 0.2, "{eta} vs {expected}");
        // Past the estimate the ETA is zero, never negative.
        progress.set_rows(1_500);
        assert_eq!(progress.snapshot(7).eta, Some(Duration::ZERO));
    }

    #[test]
    fn the_destinations_activity_shows_as_the_phase() {
        let progress = LiveProgress::new();
        progress.set_phase(RunPhase::Committing);
        assert_eq!(progress.snapshot(1).shipped, None, "the destination reports nothing");
        let shipping = Arc::new(ShipProgress::default());
        progress.track(Some(shipping.clone()));
        shipping.uploaded(10);
        assert_eq!(progress.snapshot(1).phase, RunPhase::Committing);
        let busy = shipping.busy(Activity::Loading);
        let live = progress.snapshot(1);
        assert_eq!(live.phase, RunPhase::Loading);
        assert_eq!(live.shipped.map(|s| s.bytes_uploaded), Some(10));
        drop(busy);
        assert_eq!(progress.snapshot(1).phase, RunPhase::Committing);
    }
}
