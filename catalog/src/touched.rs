//! Which jobs a write to the store touches: what the in-memory copy of the
//! jobs ([`crate::job_cache`]) must forget once the write is on disk.
//!
//! Every record a job listing shows belongs to one job and says which:
//! the job record, its watermark, scheduler and CDC states are keyed by
//! the job's name, a run index entry starts with it and a run record names
//! it. A deleted run record names no job; it is tied to one through its
//! index entry deleted in the same write. A change the cache cannot tie to
//! a job touches the whole namespace, as does deleting the namespace.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::cdc::CdcState;
use crate::job::JobRecord;
use crate::record::Record;
use crate::run::{RunRecord, Watermark};
use crate::schedule_state::ScheduleState;
use crate::store::{RUN_INDEX, split_namespace};

/// A namespace's key prefix and a job's name in it.
pub(crate) type JobKey = (Vec<u8>, String);

/// The jobs one write touches, by namespace prefix.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Touched {
    /// Jobs whose record was written or deleted: their record and facts.
    pub records: BTreeSet<JobKey>,
    /// Jobs whose runs, watermark, scheduler or CDC state changed.
    pub facts: BTreeSet<JobKey>,
    /// Namespaces whose every record was deleted, or where a change could
    /// not be read (a key not UTF-8, a value not a stored run).
    namespaces: BTreeSet<Vec<u8>>,
    /// Run records deleted, by namespace prefix and run id.
    runs_deleted: BTreeSet<(Vec<u8>, u64)>,
    /// Runs whose index entry was written or deleted.
    runs_indexed: BTreeSet<(Vec<u8>, u64)>,
}

/// The one field of a stored run record that says whose it is.
#[derive(Deserialize)]
struct StoredRun {
    data: RunOwner,
}

#[derive(Deserialize)]
struct RunOwner {
    job: String,
}

impl Touched {
    /// Notes a put (`Some(value)`) or delete (`None`) of `stored_key` in
    /// `family`.
    pub fn change(&mut self, family: &str, stored_key: &[u8], value: Option<&[u8]>) {
        let (prefix, key) = split_namespace(stored_key);
        let job = |name: &[u8]| Some((prefix.to_vec(), String::from_utf8(name.to_vec()).ok()?));
        let touched = match family {
            JobRecord::FAMILY => {
                let touched = job(key);
                if let Some(job) = touched {
                    self.records.insert(job);
                    return;
                }
                None
            }
            Watermark::FAMILY | ScheduleState::FAMILY | CdcState::FAMILY => job(key),
            // The job's name, a NUL and the run id in 8 bytes.
            RUN_INDEX => key.len().checked_sub(9).filter(|&end| key[end] == 0).and_then(|end| {
                let id = u64::from_be_bytes(key[end + 1..].try_into().ok()?);
                self.runs_indexed.insert((prefix.to_vec(), id));
                job(&key[..end])
            }),
            RunRecord::FAMILY => match value {
                Some(value) => serde_json::from_slice::<StoredRun>(value)
                    .ok()
                    .map(|run| (prefix.to_vec(), run.data.job)),
                None => {
                    let id = std::str::from_utf8(key).ok().and_then(|id| id.parse().ok());
                    if let Some(id) = id {
                        self.runs_deleted.insert((prefix.to_vec(), id));
                        return;
                    }
                    None
                }
            },
            _ => return,
        };
        match touched {
            Some(job) => {
                self.facts.insert(job);
            }
            None => {
                self.namespaces.insert(prefix.to_vec());
            }
        }
    }

    /// The namespaces this write may have touched anywhere: deleted, or
    /// where a change could not be read, or a run record was deleted
    /// without its index entry (which names its job).
    pub fn namespaces(&self) -> BTreeSet<&[u8]> {
        let untied = self.runs_deleted.difference(&self.runs_indexed);
        self.namespaces
            .iter()
            .chain(untied.map(|(prefix, _)| prefix))
            .map(Vec::as_slice)
            .collect()
    }

    /// Notes that every record of the namespace of `prefix` was deleted.
    pub fn clear(&mut self, prefix: Vec<u8>) {
        self.namespaces.insert(prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode;
    use crate::run::{RunTrigger, run_index_key};
    use crate::store::namespace_prefix;

    fn key(namespace: Option<&str>, key: &[u8]) -> Vec<u8> {
        [namespace_prefix(namespace).as_slice(), key].concat()
    }

    #[test]
    fn each_kind_of_record_is_tied_to_its_job_in_its_namespace() {
        let mut touched = Touched::default();
        touched.change("jobs", &key(Some("a"), b"orders"), Some(b"{}"));
        touched.change("watermarks", &key(None, b"w"), None);
        touched.change("schedules", &key(None, b"s"), Some(b"{}"));
        touched.change("cdc", &key(Some("a"), b"c"), None);
        touched.change(RUN_INDEX, &key(None, &run_index_key("indexed", 7)), Some(b""));
        let run = RunRecord::start(8, "ran", RunTrigger::Manual);
        touched.change("runs", &key(Some("a"), b"00000000000000000008"), Some(&encode(&run)));
        touched.change("connections", &key(None, b"pg"), None);
        let a = namespace_prefix(Some("a"));
        let job = |prefix: &[u8], name: &str| (prefix.to_vec(), name.to_owned());
        assert_eq!(touched.records, [job(&a, "orders")].into());
        assert_eq!(
            touched.facts,
            [
                job(&[], "w"),
                job(&[], "s"),
                job(&a, "c"),
                job(&[], "indexed"),
                job(&a, "ran")
            ]
            .into()
        );
        assert!(touched.namespaces().is_empty());
    }

    #[test]
    fn a_deleted_run_is_tied_to_its_job_by_its_index_entry_or_else_to_its_namespace() {
        let b = namespace_prefix(Some("b"));
        let run = key(Some("b"), &crate::run::run_key(8).into_bytes());
        let mut pruned = Touched::default();
        pruned.change("runs", &run, None);
        pruned.change(RUN_INDEX, &key(Some("b"), &run_index_key("j", 8)), None);
        assert_eq!(pruned.facts, [(b.clone(), "j".to_owned())].into());
        assert!(pruned.namespaces().is_empty());
        let mut untied = Touched::default();
        untied.change("runs", &run, None);
        untied.change(RUN_INDEX, &key(Some("b"), &run_index_key("j", 9)), None);
        assert_eq!(untied.namespaces(), [b.as_slice()].into());
        let mut unreadable = Touched::default();
        unreadable.change("runs", &key(None, b"1"), Some(b"not json"));
        assert_eq!(unreadable.namespaces(), [&[][..]].into());
    }
}
