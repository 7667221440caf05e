//! What the views of many jobs (`sluice.jobs`, the freshness and lag
//! metrics) read about each job besides its definition, read in as few
//! catalog passes as the listing allows.

use std::collections::HashMap;

use sluice_catalog::{Catalog, CatalogError, CdcState, JobRecord, LoadType, RunRecord, ScheduleState, Watermark};

use super::health::deciding;

/// One job's state as its views need it.
pub struct JobFacts {
    /// The runs that decide its health, freshness and streak (its newest
    /// runs back to its newest success), oldest first.
    pub runs: Vec<RunRecord>,
    pub watermark: Option<Watermark>,
    /// For CDC jobs only.
    pub cdc: Option<CdcState>,
    pub schedule: Option<ScheduleState>,
}

/// Which jobs a listing covers, which decides how the catalog is read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Every job of the catalog: each family is scanned once.
    Every,
    /// Some of them (a lookup by name): one read per job.
    Some,
}

/// The facts of each of `jobs`, in their order.
pub fn job_facts(catalog: &Catalog, jobs: &[JobRecord], coverage: Coverage) -> Result<Vec<JobFacts>, CatalogError> {
    let mut watermarks = by_job(catalog, jobs, coverage, Catalog::watermarks, Catalog::watermark, |w| {
        &w.job
    })?;
    let mut schedules = by_job(
        catalog,
        jobs,
        coverage,
        Catalog::schedule_states,
        Catalog::schedule_state,
        |s| &s.job,
    )?;
    let cdc_jobs: Vec<&JobRecord> = jobs.iter().filter(|j| matches!(j.load, LoadType::Cdc { .. })).collect();
    let mut cdc_states = match cdc_jobs.is_empty() {
        true => HashMap::new(),
        false => by_job(
            catalog,
            &cdc_jobs,
            coverage,
            Catalog::cdc_states,
            Catalog::cdc_state,
            |s| &s.job,
        )?,
    };
    let mut runs = catalog.run_cursor();
    jobs.iter()
        .map(|job| {
            Ok(JobFacts {
                runs: deciding(runs.newest_first(&job.name))?,
                watermark: watermarks.remove(&job.name),
                cdc: match job.load {
                    LoadType::Cdc { .. } => cdc_states.remove(&job.name),
                    _ => None,
                },
                schedule: schedules.remove(&job.name),
            })
        })
        .collect()
}

/// The records of one per-job family for `jobs`, by job name.
fn by_job<J, T>(
    catalog: &Catalog,
    jobs: &[J],
    coverage: Coverage,
    scan: fn(&Catalog) -> Result<Vec<T>, CatalogError>,
    get: fn(&Catalog, &str) -> Result<Option<T>, CatalogError>,
    job_of: fn(&T) -> &String,
) -> Result<HashMap<String, T>, CatalogError>
where
    J: std::borrow::Borrow<JobRecord>,
{
    match coverage {
        Coverage::Every => Ok(scan(catalog)?
            .into_iter()
            .map(|record| (job_of(&record).clone(), record))
            .collect()),
        Coverage::Some => {
            let mut found = HashMap::new();
            for job in jobs {
                let name = &job.borrow().name;
                if let Some(record) = get(catalog, name)? {
                    found.insert(name.clone(), record);
                }
            }
            Ok(found)
        }
    }
}
