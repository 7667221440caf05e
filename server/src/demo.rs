//! The demo: on an empty catalog, the bundled sample files become the `demo`
//! connection and three jobs, so a newcomer can run and query them at once.

use std::collections::BTreeMap;
use std::path::Path;

use sluice_catalog::{IncrementalStart, JobDestination, JobSource, OptionValue};
use sluice_engine::jobs::{CreateJob, JobManager, LoadRequest};
use sluice_engine::scheduler::Schedule;
use sluice_engine::{ConnectionManager, CreateConnection, EngineError};
use tracing::{info, warn};

/// The demo connection's name.
const CONNECTION: &str = "demo";

/// (job, source table, load)
fn jobs() -> [(&'static str, &'static str, LoadRequest); 3] {
    [
        (
            "demo_orders",
            "orders",
            LoadRequest::Incremental {
                cursor: "updated_at".into(),
                start: Some(IncrementalStart::All),
                lookback: None,
            },
        ),
        ("demo_customers", "customers", LoadRequest::Snapshot),
        ("demo_products", "products", LoadRequest::Snapshot),
    ]
}

/// Sets up the demo when the catalog holds no connection and no job and
/// `dir` exists. A failure is logged, never fatal.
pub async fn set_up_if_empty(connections: &ConnectionManager, jobs: &JobManager, dir: &Path) {
    let catalog = connections.catalog();
    let empty = matches!((catalog.connections(), catalog.jobs()), (Ok(c), Ok(j)) if c.is_empty() && j.is_empty());
    if !empty {
        return;
    }
    let Ok(path) = dir.canonicalize() else {
        info!(dir = %dir.display(), "no demo data found; skipping the demo set-up");
        return;
    };
    match set_up(connections, jobs, &path).await {
        Ok(()) => {
            println!(
                "Demo ready: connection \"{CONNECTION}\" reads {}; try RUN ETL JOB demo_orders; \
                 then SELECT count(*) FROM warehouse.demo_orders;",
                path.display()
            );
            info!(dir = %path.display(), "demo set up");
        }
        Err(e) => warn!(error = %e, "could not set up the demo"),
    }
}

async fn set_up(connections: &ConnectionManager, jobs: &JobManager, path: &Path) -> Result<(), EngineError> {
    connections
        .create(CreateConnection {
            name: CONNECTION.into(),
            type_name: "local".into(),
            options: BTreeMap::from([("path".to_owned(), OptionValue::Text(path.display().to_string()))]),
            if_not_exists: true,
            validate: true,
        })
        .await?;
    for (name, table, load) in self::jobs() {
        jobs.create_job(CreateJob {
            name: name.into(),
            if_not_exists: true,
            source: JobSource {
                connection: CONNECTION.into(),
                schema: "files".into(),
                table: table.into(),
                columns: None,
            },
            destination: Some(JobDestination {
                connection: None,
                table: name.into(),
            }),
            load,
            column_overrides: vec![],
            schedule: Schedule::manual(),
            settings: vec![],
        })
        .await?;
    }
    Ok(())
}
