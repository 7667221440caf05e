//! The jobs that load each destination table, so that checking a new job's
//! table reads one record instead of every job.

use serde::{Deserialize, Serialize};

use crate::job::JobDestination;
use crate::record::Record;

/// The jobs that load one destination table (family `table_jobs`, one
/// record per table). A table has one job; a catalog from before that
/// rule may list several, and the table stays while any is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableJobs {
    pub destination: JobDestination,
    /// Job names, sorted.
    pub jobs: Vec<String>,
}

impl Record for TableJobs {
    const FAMILY: &'static str = "table_jobs";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        table_jobs_key(&self.destination)
    }
}

/// The key of a destination table: its connection (empty for the local
/// warehouse, which no connection name can be), a NUL, and its name.
pub(crate) fn table_jobs_key(destination: &JobDestination) -> String {
    format!(
        "{}\0{}",
        destination.connection.as_deref().unwrap_or(""),
        destination.table
    )
}

impl TableJobs {
    /// `self` with `job` added, kept sorted and without repeats.
    pub fn with(mut self, job: &str) -> Self {
        if let Err(at) = self.jobs.binary_search_by(|j| j.as_str().cmp(job)) {
            self.jobs.insert(at, job.to_owned());
        }
        self
    }

    /// `self` with `job` removed.
    pub fn without(mut self, job: &str) -> Self {
        self.jobs.retain(|j| j != job);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(connection: Option<&str>, table: &str) -> JobDestination {
        JobDestination {
            connection: connection.map(str::to_owned),
            table: table.into(),
        }
    }

    #[test]
    fn warehouse_and_connection_tables_have_distinct_keys() {
        assert_ne!(
            table_jobs_key(&table(None, "orders")),
            table_jobs_key(&table(Some("bq"), "orders"))
        );
    }

    #[test]
    fn jobs_stay_sorted_and_unique() {
        let jobs = TableJobs {
            destination: table(None, "t"),
            jobs: Vec::new(),
        };
        let jobs = jobs.with("b").with("a").with("b");
        assert_eq!(jobs.jobs, ["a", "b"]);
        assert_eq!(jobs.without("a").jobs, ["b"]);
    }
}
