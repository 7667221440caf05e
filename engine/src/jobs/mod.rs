//! ETL jobs: definition and validation, and runs that move rows from a
//! source into a destination exactly once.

mod dedupe;
mod define;
mod runner;
mod split;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use sluice_catalog::Catalog;

pub use define::{CreateJob, CreateJobOutcome, JobChange, JobColumns};
pub use runner::{Progress, RunSummary};

use crate::connections::ConnectionManager;
use crate::destinations::Destination;

/// A run in progress and the signal that cancels it.
#[derive(Clone)]
struct ActiveRun {
    run_id: u64,
    cancel: Arc<Notify>,
}

/// Defines, runs and drops ETL jobs.
pub struct JobManager {
    connections: Arc<ConnectionManager>,
    /// The built-in local warehouse, the default destination.
    warehouse: Arc<dyn Destination>,
    /// Jobs with a run in progress, and that run.
    running: Mutex<HashMap<String, ActiveRun>>,
}

impl JobManager {
    /// A manager over the connections' catalog, writing to `warehouse` by default.
    pub fn new(connections: Arc<ConnectionManager>, warehouse: Arc<dyn Destination>) -> Self {
        Self {
            connections,
            warehouse,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn catalog(&self) -> &Arc<Catalog> {
        self.connections.catalog()
    }

    /// The destination a job writes to.
    fn destination(&self, connection: Option<&str>) -> Result<Arc<dyn Destination>, crate::EngineError> {
        match connection {
            None => Ok(self.warehouse.clone()),
            Some(name) => {
                let record = self.catalog().connection(name)?;
                Err(crate::EngineError::NotADestination {
                    connection: name.into(),
                    kind: record.kind,
                })
            }
        }
    }
}
