//! ETL job definitions, as far as the catalog needs to know them.

use serde::{Deserialize, Serialize};

use crate::record::Record;

/// A saved ETL job. The catalog tracks which connections a job uses so that
/// a connection cannot be dropped from under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    /// Connections the job reads from or writes to.
    pub connections: Vec<String>,
}

impl Record for JobRecord {
    const FAMILY: &'static str = "jobs";
    const VERSION: u32 = 1;

    fn key(&self) -> &str {
        &self.name
    }
}
