//! Listings of jobs with their facts: what `sluice.jobs`, `SHOW ETL JOBS`
//! and the freshness and lag metrics show of each job, served from the
//! in-memory copy of the jobs ([`crate::job_cache`]) so that a listing
//! decodes only the jobs written since the last one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::cdc::CdcState;
use crate::error::Result;
use crate::job::{JobRecord, LoadType};
use crate::job_cache::{Holding, Read};
use crate::run::{RunRecord, Watermark, since_last_success};
use crate::schedule_state::ScheduleState;
use crate::transaction::Transaction;

/// One job's state besides its definition, as listings of jobs show it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFacts {
    /// The runs that decide its health, freshness and streak (its newest
    /// runs back to its newest success, see [`since_last_success`]),
    /// oldest first.
    pub runs: Vec<RunRecord>,
    pub watermark: Option<Watermark>,
    /// For CDC jobs only.
    pub cdc: Option<CdcState>,
    pub schedule: Option<ScheduleState>,
}

/// A job and its facts, shared with the catalog's in-memory copy: a
/// listing copies pointers, not records.
#[derive(Debug, Clone)]
pub struct JobView {
    pub job: Arc<JobRecord>,
    pub facts: Arc<JobFacts>,
}

/// The watermarks, scheduler and CDC states of every job, read with one
/// scan of each family: cheaper than a read per job when most are needed.
struct Scanned {
    watermarks: HashMap<String, Watermark>,
    schedules: HashMap<String, ScheduleState>,
    cdc: HashMap<String, CdcState>,
}

impl Catalog {
    /// Every job with its facts, by name. Outside a transaction they come
    /// from the catalog's in-memory copy, which reads again only what was
    /// written since the last listing.
    pub fn job_views(&self) -> Result<Vec<JobView>> {
        self.views(None)
    }

    /// The jobs named in `names` that exist, by name, with their facts;
    /// only those jobs are read (before the first listing of every job,
    /// straight from the store).
    pub fn job_views_named(&self, names: &[String]) -> Result<Vec<JobView>> {
        let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        self.views(Some(&names))
    }

    fn views(&self, names: Option<&BTreeSet<&str>>) -> Result<Vec<JobView>> {
        // A transaction's listing sees its staged changes and records what
        // it read for the check at COMMIT: straight from the store.
        if Transaction::active() {
            return self.read_views(names);
        }
        let (cache, prefix) = (self.store.cache(), self.store.prefix());
        let held = match cache.holding(prefix, names) {
            Holding::Jobs(held) => held,
            Holding::Unknown { .. } if names.is_some() => return self.read_views(names),
            Holding::Unknown { stamp } => {
                let jobs = self.read_jobs(None)?;
                match cache.keep_jobs(prefix, stamp, &jobs) {
                    Some(held) => held,
                    None => return self.views_of(jobs, true),
                }
            }
        };
        let mut records = Vec::with_capacity(held.len());
        for held in &held {
            records.push(match &held.record {
                Some(record) => Some(record.clone()),
                None => self.find_job(&held.name)?.map(Arc::new),
            });
        }
        let mut facts: Vec<Option<Arc<JobFacts>>> = held.iter().map(|h| h.facts.clone()).collect();
        let lacking: Vec<(usize, Arc<JobRecord>)> = records
            .iter()
            .enumerate()
            .filter(|(i, _)| facts[*i].is_none())
            .filter_map(|(i, record)| Some((i, record.clone()?)))
            .collect();
        let jobs: Vec<Arc<JobRecord>> = lacking.iter().map(|(_, job)| job.clone()).collect();
        let bulk = names.is_none() && jobs.len() * 4 > held.len();
        for ((i, _), read) in lacking.iter().zip(self.read_facts(&jobs, bulk)?) {
            facts[*i] = Some(read);
        }
        let mut views = Vec::with_capacity(held.len());
        let mut read = Vec::new();
        for ((held, record), facts) in held.into_iter().zip(records).zip(facts) {
            let job = record.zip(facts);
            if let Some((job, facts)) = &job {
                views.push(JobView {
                    job: job.clone(),
                    facts: facts.clone(),
                });
            }
            if held.record.is_none() || held.facts.is_none() {
                read.push(Read {
                    name: held.name,
                    stamp: held.stamp,
                    job,
                });
            }
        }
        cache.keep(prefix, read);
        Ok(views)
    }

    /// [`Catalog::views`] read straight from the store.
    fn read_views(&self, names: Option<&BTreeSet<&str>>) -> Result<Vec<JobView>> {
        let jobs = self.read_jobs(names)?;
        self.views_of(jobs, names.is_none())
    }

    /// Every job, or those of `names` that exist, by name.
    fn read_jobs(&self, names: Option<&BTreeSet<&str>>) -> Result<Vec<Arc<JobRecord>>> {
        let Some(names) = names else {
            return Ok(self.jobs()?.into_iter().map(Arc::new).collect());
        };
        let mut jobs = Vec::with_capacity(names.len());
        for name in names {
            jobs.extend(self.find_job(name)?.map(Arc::new));
        }
        Ok(jobs)
    }

    /// `jobs` with their facts, read from the store (`bulk`: see
    /// [`Catalog::read_facts`]).
    fn views_of(&self, jobs: Vec<Arc<JobRecord>>, bulk: bool) -> Result<Vec<JobView>> {
        let facts = self.read_facts(&jobs, bulk)?;
        Ok(jobs
            .into_iter()
            .zip(facts)
            .map(|(job, facts)| JobView { job, facts })
            .collect())
    }

    /// The facts of each of `jobs`, in their order: the runs through one
    /// cursor over the run index, the other records with a scan of each
    /// family when `bulk`, else a read per job.
    fn read_facts(&self, jobs: &[Arc<JobRecord>], bulk: bool) -> Result<Vec<Arc<JobFacts>>> {
        let is_cdc = |job: &JobRecord| matches!(job.load, LoadType::Cdc { .. });
        let mut scanned = match bulk && !jobs.is_empty() {
            true => Some(Scanned {
                watermarks: by_job(self.watermarks()?, |w| &w.job),
                schedules: by_job(self.schedule_states()?, |s| &s.job),
                cdc: match jobs.iter().any(|job| is_cdc(job)) {
                    true => by_job(self.cdc_states()?, |s| &s.job),
                    false => HashMap::new(),
                },
            }),
            false => None,
        };
        let mut runs = self.run_cursor();
        jobs.iter()
            .map(|job| {
                let name = &job.name;
                let (watermark, schedule, cdc) = match &mut scanned {
                    Some(scanned) => (
                        scanned.watermarks.remove(name),
                        scanned.schedules.remove(name),
                        scanned.cdc.remove(name),
                    ),
                    None => (
                        self.watermark(name)?,
                        self.schedule_state(name)?,
                        match is_cdc(job) {
                            true => self.cdc_state(name)?,
                            false => None,
                        },
                    ),
                };
                Ok(Arc::new(JobFacts {
                    runs: since_last_success(runs.newest_first(name))?,
                    watermark,
                    cdc: cdc.filter(|_| is_cdc(job)),
                    schedule,
                }))
            })
            .collect()
    }
}

/// `records` by the name of their job.
fn by_job<T>(records: Vec<T>, job_of: fn(&T) -> &String) -> HashMap<String, T> {
    records
        .into_iter()
        .map(|record| (job_of(&record).clone(), record))
        .collect()
}
