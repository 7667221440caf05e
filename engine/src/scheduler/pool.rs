//! The pool of scheduled runs in flight, shared by the schedulers of every
//! namespace: `--max-concurrent-runs` bounds the server, not each namespace.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

/// A scheduled run's place in the pool: its namespace and job.
pub(super) type RunKey = (String, String);

/// Scheduled runs in flight over every namespace, and a signal to the
/// schedulers when one ends (a due job of another namespace may be waiting
/// for the slot).
pub struct RunPool {
    /// (namespace, job) -> the connections the run uses.
    in_flight: Mutex<HashMap<RunKey, Vec<String>>>,
    freed: watch::Sender<u64>,
}

impl Default for RunPool {
    fn default() -> Self {
        Self {
            in_flight: Mutex::default(),
            freed: watch::channel(0).0,
        }
    }
}

impl RunPool {
    pub(super) fn in_flight(&self) -> MutexGuard<'_, HashMap<RunKey, Vec<String>>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives back `key`'s slot and wakes the schedulers.
    pub(super) fn release(&self, key: &RunKey) {
        self.in_flight().remove(key);
        self.freed.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A receiver whose `changed()` resolves once a slot was given back
    /// since it last looked.
    pub(super) fn watch_freed(&self) -> watch::Receiver<u64> {
        self.freed.subscribe()
    }
}
