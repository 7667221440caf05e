//! Whether a job is healthy, from its recent runs and its connections.

use sluice_catalog::{JobRecord, RunRecord, RunStatus};

/// Failed runs in a row after which a job is `failing`.
pub const FAILING_AFTER: u32 = 3;

/// A job's health, as `sluice.jobs` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// The last runs failed; `consecutive` of them in a row.
    Failing {
        consecutive: u32,
    },
    /// A connection the job uses failed its last test.
    ConnectionFailed {
        connection: String,
    },
}

impl Health {
    /// The lower-case name shown in SQL.
    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Failing { .. } => "failing",
            Health::ConnectionFailed { .. } => "connection_failed",
        }
    }

    /// Judges a job from its runs (oldest first; skipped ticks ignored) and
    /// the names of connections whose last test failed.
    pub fn of(job: &JobRecord, runs: &[RunRecord], failed_connections: &[String]) -> Self {
        let consecutive = consecutive_failures(runs);
        if consecutive >= FAILING_AFTER {
            return Health::Failing { consecutive };
        }
        match job.connections().find(|c| failed_connections.iter().any(|f| f == c)) {
            Some(connection) => Health::ConnectionFailed {
                connection: connection.into(),
            },
            None => Health::Healthy,
        }
    }
}

/// Failed runs at the end of `runs` (oldest first), skipped ticks ignored.
pub fn consecutive_failures(runs: &[RunRecord]) -> u32 {
    runs.iter()
        .rev()
        .filter(|r| r.status != RunStatus::Skipped)
        .take_while(|r| r.status == RunStatus::Failed)
        .count() as u32
}
