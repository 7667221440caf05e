//! The in-memory copy of every job's decoded record and facts (its latest
//! runs, watermark, scheduler and CDC states), so that listing every job
//! decodes only what changed since the last listing.
//!
//! One cache serves the whole database: the views of a namespace that
//! different sessions open share it. It stays exact by forgetting: each
//! write of the store, once on disk, names the jobs it touched
//! ([`Touched`]) and the cache drops what it holds of them, for the next
//! listing to read again. Listings inside a transaction do not use it, so
//! staged changes never reach it; a commit is a write like any other.
//!
//! Listings read RocksDB without holding the cache's lock, so a write can
//! land between a read and the moment its result is kept. Every entry
//! carries a stamp from one clock, renewed whenever a write touches it, and
//! what was read is kept only if the entry's stamp is still the one seen
//! before the read.
//!
//! Memory: one entry per job of each namespace listed since the catalog
//! was opened. Facts of more than [`MAX_KEPT_RUNS`] runs (a long failing
//! streak) are not kept: such a job's runs are read at each listing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::job::JobRecord;
use crate::job_view::JobFacts;
use crate::touched::Touched;

/// The most runs a job's kept facts hold.
pub(crate) const MAX_KEPT_RUNS: usize = 8;

/// The jobs of every namespace listed so far (see the module's doc).
#[derive(Default)]
pub(crate) struct JobCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The last stamp given out.
    clock: u64,
    /// By namespace prefix.
    namespaces: HashMap<Vec<u8>, Namespace>,
}

struct Namespace {
    /// Renewed by every change of the namespace's set of jobs.
    stamp: u64,
    /// Every job of the namespace by name, once a listing kept them.
    jobs: Option<BTreeMap<String, Entry>>,
}

/// One job: what is `None` was touched since it was read, or never kept.
#[derive(Default)]
struct Entry {
    stamp: u64,
    record: Option<Arc<JobRecord>>,
    facts: Option<Arc<JobFacts>>,
}

/// What the cache holds of one job, and the stamp to keep what a listing
/// reads of it with.
pub(crate) struct Held {
    pub name: String,
    pub stamp: u64,
    pub record: Option<Arc<JobRecord>>,
    pub facts: Option<Arc<JobFacts>>,
}

/// What the cache holds of a namespace's jobs.
pub(crate) enum Holding {
    /// Every job of the namespace (or those of the names asked for), by
    /// name; some may no longer exist, as written since they were read.
    Jobs(Vec<Held>),
    /// The jobs are not known: read them all and keep them with
    /// [`JobCache::keep_jobs`] and this stamp.
    Unknown { stamp: u64 },
}

/// What a listing read of one job: its record and facts, or `None` when
/// the job does not exist.
pub(crate) struct Read {
    pub name: String,
    pub stamp: u64,
    pub job: Option<(Arc<JobRecord>, Arc<JobFacts>)>,
}

impl Held {
    fn of(name: &str, entry: &Entry) -> Self {
        Self {
            name: name.to_owned(),
            stamp: entry.stamp,
            record: entry.record.clone(),
            facts: entry.facts.clone(),
        }
    }
}

impl JobCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            // A panic mid-change may have left an entry half-forgotten:
            // start again from nothing.
            let mut inner = poisoned.into_inner();
            inner.namespaces.clear();
            self.inner.clear_poison();
            inner
        })
    }

    /// What is held of the jobs of the namespace of `prefix`, or of those
    /// of them in `names`.
    pub fn holding(&self, prefix: &[u8], names: Option<&BTreeSet<&str>>) -> Holding {
        let mut inner = self.lock();
        let Inner { clock, namespaces } = &mut *inner;
        let namespace = namespaces.entry(prefix.to_vec()).or_insert_with(|| Namespace {
            stamp: tick(clock),
            jobs: None,
        });
        let Some(jobs) = &namespace.jobs else {
            return Holding::Unknown { stamp: namespace.stamp };
        };
        Holding::Jobs(match names {
            None => jobs.iter().map(|(name, entry)| Held::of(name, entry)).collect(),
            Some(names) => names
                .iter()
                .filter_map(|name| jobs.get_key_value(*name))
                .map(|(name, entry)| Held::of(name, entry))
                .collect(),
        })
    }

    /// Keeps `jobs`, every job of the namespace of `prefix` as read after
    /// [`holding`](Self::holding) gave `stamp`, and returns what is now
    /// held of them; `None` (nothing kept) when a write changed the
    /// namespace's jobs since.
    pub fn keep_jobs(&self, prefix: &[u8], stamp: u64, jobs: &[Arc<JobRecord>]) -> Option<Vec<Held>> {
        let mut inner = self.lock();
        let Inner { clock, namespaces } = &mut *inner;
        let namespace = namespaces.get_mut(prefix).filter(|n| n.stamp == stamp)?;
        let held = namespace.jobs.get_or_insert_with(|| {
            jobs.iter()
                .map(|job| {
                    let entry = Entry {
                        stamp: tick(clock),
                        record: Some(job.clone()),
                        facts: None,
                    };
                    (job.name.clone(), entry)
                })
                .collect()
        });
        Some(held.iter().map(|(name, entry)| Held::of(name, entry)).collect())
    }

    /// Keeps what a listing read of jobs of the namespace of `prefix`,
    /// each only if no write touched it since it was [`Held`].
    pub fn keep(&self, prefix: &[u8], read: Vec<Read>) {
        let mut inner = self.lock();
        let Some(jobs) = inner.namespaces.get_mut(prefix).and_then(|n| n.jobs.as_mut()) else {
            return;
        };
        for read in read {
            let Some(entry) = jobs.get_mut(&read.name).filter(|e| e.stamp == read.stamp) else {
                continue;
            };
            match read.job {
                None => {
                    jobs.remove(&read.name);
                }
                Some((record, facts)) => {
                    entry.record = Some(record);
                    entry.facts = (facts.runs.len() <= MAX_KEPT_RUNS).then_some(facts);
                }
            }
        }
    }

    /// Forgets what a write touched; called once it is on disk.
    pub fn forget(&self, touched: &Touched) {
        let mut inner = self.lock();
        let Inner { clock, namespaces } = &mut *inner;
        for prefix in touched.namespaces() {
            namespaces.remove(prefix);
        }
        for (prefix, name) in &touched.records {
            let Some(namespace) = namespaces.get_mut(prefix) else {
                continue;
            };
            namespace.stamp = tick(clock);
            if let Some(jobs) = &mut namespace.jobs {
                // A new job, or one that may be gone: read it next time.
                *jobs.entry(name.clone()).or_default() = Entry {
                    stamp: tick(clock),
                    ..Entry::default()
                };
            }
        }
        for (prefix, name) in &touched.facts {
            let entry = namespaces
                .get_mut(prefix)
                .and_then(|n| n.jobs.as_mut())
                .and_then(|jobs| jobs.get_mut(name));
            if let Some(entry) = entry {
                entry.stamp = tick(clock);
                entry.facts = None;
            }
        }
    }
}

/// The next stamp.
fn tick(clock: &mut u64) -> u64 {
    *clock += 1;
    *clock
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{RunRecord, RunTrigger};

    fn record(name: &str) -> Arc<JobRecord> {
        let job = serde_json::json!({
            "name": name,
            "source": {"connection": "c", "schema": "public", "table": "t", "columns": null},
            "destination": {"connection": null, "table": name},
            "load": {"type": "snapshot"},
            "column_overrides": [], "schedule": "MANUAL", "batch_rows": 8192, "paused": false,
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"
        });
        Arc::new(serde_json::from_value(job).unwrap())
    }

    fn facts(runs: usize) -> Arc<JobFacts> {
        Arc::new(JobFacts {
            runs: (0..runs as u64)
                .map(|id| RunRecord::start(id, "j", RunTrigger::Manual))
                .collect(),
            watermark: None,
            cdc: None,
            schedule: None,
        })
    }

    fn held(cache: &JobCache) -> Vec<Held> {
        match cache.holding(b"", None) {
            Holding::Jobs(held) => held,
            Holding::Unknown { .. } => panic!("the jobs are not held"),
        }
    }

    /// What a listing read of each of `held`, with facts of `runs` runs.
    fn read(held: Vec<Held>, runs: usize) -> Vec<Read> {
        held.into_iter()
            .map(|h| Read {
                job: Some((h.record.unwrap(), facts(runs))),
                name: h.name,
                stamp: h.stamp,
            })
            .collect()
    }

    fn touched(family: &str, key: &[u8]) -> Touched {
        let mut touched = Touched::default();
        touched.change(family, key, None);
        touched
    }

    #[test]
    fn facts_read_before_a_write_of_their_job_are_not_kept() {
        let cache = JobCache::default();
        let Holding::Unknown { stamp } = cache.holding(b"", None) else {
            panic!("a new cache holds nothing");
        };
        let listed = cache.keep_jobs(b"", stamp, &[record("a"), record("b")]).unwrap();
        // The listing reads both jobs' facts; meanwhile `a`'s watermark is written.
        cache.forget(&touched("watermarks", b"a"));
        cache.keep(b"", read(listed, 1));
        let facts: Vec<bool> = held(&cache).iter().map(|h| h.facts.is_some()).collect();
        assert_eq!(facts, [false, true]);
    }

    #[test]
    fn a_full_read_that_raced_a_change_of_jobs_is_not_kept() {
        let cache = JobCache::default();
        let Holding::Unknown { stamp } = cache.holding(b"", None) else {
            panic!("a new cache holds nothing");
        };
        cache.forget(&touched("jobs", b"new"));
        assert!(cache.keep_jobs(b"", stamp, &[record("a")]).is_none());
        assert!(matches!(cache.holding(b"", None), Holding::Unknown { .. }));
    }

    #[test]
    fn a_written_job_is_read_again_and_a_dropped_one_goes() {
        let cache = JobCache::default();
        let Holding::Unknown { stamp } = cache.holding(b"", None) else {
            panic!("a new cache holds nothing");
        };
        let listed = cache.keep_jobs(b"", stamp, &[record("a")]).unwrap();
        cache.keep(b"", read(listed, 1));
        cache.forget(&touched("jobs", b"a"));
        cache.forget(&touched("jobs", b"b"));
        let now = held(&cache);
        let names: Vec<(&str, bool)> = now.iter().map(|h| (h.name.as_str(), h.record.is_some())).collect();
        assert_eq!(names, [("a", false), ("b", false)], "both are read again");
        let gone = now
            .into_iter()
            .map(|h| Read {
                job: (h.name == "a").then(|| (record("a"), facts(1))),
                name: h.name,
                stamp: h.stamp,
            })
            .collect();
        cache.keep(b"", gone);
        let names: Vec<String> = held(&cache).into_iter().map(|h| h.name).collect();
        assert_eq!(names, ["a"]);
    }

    #[test]
    fn facts_of_a_long_streak_are_read_each_time_and_the_record_kept() {
        let cache = JobCache::default();
        let Holding::Unknown { stamp } = cache.holding(b"", None) else {
            panic!("a new cache holds nothing");
        };
        let listed = cache.keep_jobs(b"", stamp, &[record("a")]).unwrap();
        cache.keep(b"", read(listed, MAX_KEPT_RUNS + 1));
        let now = held(&cache);
        assert!(now[0].record.is_some() && now[0].facts.is_none());
    }

    #[test]
    fn namespaces_are_held_apart_and_a_deleted_one_is_forgotten() {
        let cache = JobCache::default();
        let other = crate::store::namespace_prefix(Some("other"));
        for prefix in [&b""[..], &other] {
            let Holding::Unknown { stamp } = cache.holding(prefix, None) else {
                panic!("a new cache holds nothing");
            };
            cache.keep_jobs(prefix, stamp, &[record("a")]).unwrap();
        }
        cache.forget(&touched("jobs", &[other.as_slice(), b"a"].concat()));
        assert!(
            held(&cache)[0].record.is_some(),
            "the default namespace's `a` is another job"
        );
        let mut cleared = Touched::default();
        cleared.clear(other.clone());
        cache.forget(&cleared);
        assert!(matches!(cache.holding(&other, None), Holding::Unknown { .. }));
        assert_eq!(held(&cache).len(), 1);
    }
}
