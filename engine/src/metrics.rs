//! Counters and histograms of runs and of the scheduler, in a Prometheus
//! registry the server exposes.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use sluice_catalog::RunRecord;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    namespace: String,
    job: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    namespace: String,
    job: String,
}

type HistogramFamily = Family<JobLabels, Histogram, fn() -> Histogram>;

/// Run durations from 0.1 s to about 9 hours.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 19))
}

/// What the engine measures while it runs jobs.
#[derive(Debug)]
pub struct EngineMetrics {
    runs: Family<RunLabels, Counter>,
    rows: Family<JobLabels, Counter>,
    bytes: Family<JobLabels, Counter>,
    duration: HistogramFamily,
    lateness: Histogram,
    pass: Histogram,
    pass_jobs: Histogram,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            rows: Family::default(),
            bytes: Family::default(),
            duration: HistogramFamily::new_with_constructor(duration_histogram),
            // From 10 ms to about 3 minutes.
            lateness: Histogram::new(exponential_buckets(0.01, 2.0, 15)),
            // From 0.1 ms to about 3 seconds.
            pass: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            // From 1 to about 16,000 jobs.
            pass_jobs: Histogram::new(exponential_buckets(1.0, 2.0, 15)),
        }
    }
}

impl EngineMetrics {
    /// Adds every metric to `registry` (names get the registry's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("runs", "Finished runs by job and final status", self.runs.clone());
        registry.register("rows_loaded", "Rows committed to destinations", self.rows.clone());
        registry.register_with_unit(
            "loaded",
            "Bytes committed to destinations",
            Unit::Bytes,
            self.bytes.clone(),
        );
        registry.register_with_unit(
            "run_duration",
            "Duration of finished runs",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register_with_unit(
            "scheduler_lateness",
            "Delay between a scheduled run's due time and its start",
            Unit::Seconds,
            self.lateness.clone(),
        );
        registry.register_with_unit(
            "scheduler_pass",
            "Duration of one scheduler pass over every job",
            Unit::Seconds,
            self.pass.clone(),
        );
        registry.register(
            "scheduler_pass_jobs",
            "Jobs one scheduler pass looked at (all of them after a change of jobs, else those due)",
            self.pass_jobs.clone(),
        );
    }

    /// Counts a finished (or skipped) run of namespace `namespace`.
    pub fn run_finished(&self, namespace: &str, run: &RunRecord) {
        self.runs
            .get_or_create(&RunLabels {
                namespace: namespace.to_owned(),
                job: run.job.clone(),
                status: run.status.as_str().into(),
            })
            .inc();
        let job = JobLabels {
            namespace: namespace.to_owned(),
            job: run.job.clone(),
        };
        if run.status == sluice_catalog::RunStatus::Succeeded {
            self.rows.get_or_create(&job).inc_by(run.rows);
            self.bytes.get_or_create(&job).inc_by(run.bytes);
        }
        if let Some(finished) = run.finished_at
            && run.status != sluice_catalog::RunStatus::Skipped
        {
            let seconds = (finished - run.started_at).num_milliseconds().max(0) as f64 / 1000.0;
            self.duration.get_or_create(&job).observe(seconds);
        }
    }

    /// Counts rows and bytes a continuous CDC stream committed (its run's
    /// end counts none: it may run for weeks).
    pub fn stream_committed(&self, namespace: &str, job: &str, rows: u64, bytes: u64) {
        let job = JobLabels {
            namespace: namespace.to_owned(),
            job: job.to_owned(),
        };
        self.rows.get_or_create(&job).inc_by(rows);
        self.bytes.get_or_create(&job).inc_by(bytes);
    }

    /// Records how late a scheduled run started.
    pub fn scheduler_lateness(&self, late: Duration) {
        self.lateness.observe(late.as_secs_f64());
    }

    /// Records how long one scheduler pass took and how many jobs it
    /// looked at.
    pub fn scheduler_pass(&self, took: Duration, jobs: usize) {
        self.pass.observe(took.as_secs_f64());
        self.pass_jobs.observe(jobs as f64);
    }
}
