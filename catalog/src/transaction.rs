//! Transactions: a session's catalog changes staged until COMMIT.
//!
//! A [`Transaction`] is bound to the task running a statement
//! ([`Transaction::scope`]). Inside that scope every catalog read sees the
//! transaction's staged changes over the stored records, and every change
//! the catalog would write is staged instead. [`Catalog::commit`] then
//! writes all of them in one synced RocksDB batch, after checking that no
//! other session changed what the transaction read (optimistic concurrency:
//! a conflict is reported, nothing is written, and the client may retry).
//! Dropping a transaction discards it.
//!
//! Code outside the scope (the scheduler, runs, other sessions) never sees
//! staged changes.
//!
//! [`Catalog::commit`]: crate::Catalog::commit

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

/// Work outside the catalog to do when a transaction ends: dropping a
/// destination table after COMMIT, or one made for a job the transaction
/// created after ROLLBACK.
pub type Effect = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The families whose set of names a scan checks at COMMIT: a transaction
/// that listed the connections (say, to find one with the same identity)
/// conflicts with another that added or removed one meanwhile. Runs and the
/// other bookkeeping families change all the time and are not checked.
const NAMED_FAMILIES: [&str; 3] = ["connections", "secrets", "jobs"];

type Key = (&'static str, Vec<u8>);

/// One session's open transaction. Clones share the same staged changes.
#[derive(Clone, Default)]
pub struct Transaction {
    staged: Arc<Mutex<Staged>>,
}

#[derive(Default)]
pub(crate) struct Staged {
    /// Staged puts (`Some`) and deletes (`None`).
    pub writes: BTreeMap<Key, Option<Vec<u8>>>,
    /// Stored values the transaction read, as they were when first read.
    pub read: BTreeMap<Key, Option<Vec<u8>>>,
    /// Names in a family the transaction listed, as they were when first listed.
    pub listed: BTreeMap<&'static str, BTreeSet<Vec<u8>>>,
    after_commit: Vec<Effect>,
    on_rollback: Vec<Effect>,
    /// Open savepoints, oldest first.
    savepoints: Vec<Savepoint>,
}

/// What a savepoint restores: the staged writes when it was set, and how
/// many effects were registered then.
struct Savepoint {
    name: String,
    writes: BTreeMap<Key, Option<Vec<u8>>>,
    after_commit: usize,
    on_rollback: usize,
}

tokio::task_local! {
    static CURRENT: Transaction;
}

impl Transaction {
    /// A new, empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `work` with this transaction as the task's current one.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        CURRENT.scope(self.clone(), work).await
    }

    /// The transaction the current task runs in, if any.
    pub(crate) fn current() -> Option<Transaction> {
        CURRENT.try_with(Transaction::clone).ok()
    }

    /// Whether the current task runs inside a transaction.
    pub fn active() -> bool {
        CURRENT.try_with(|_| ()).is_ok()
    }

    /// Runs `effect` after the current task's transaction commits. Outside
    /// a transaction it is dropped unrun: callers check [`active`](Self::active).
    pub fn after_commit(effect: Effect) {
        if let Some(txn) = Self::current() {
            txn.lock().after_commit.push(effect);
        }
    }

    /// Runs `effect` if the current task's transaction is rolled back;
    /// nothing happens outside a transaction. Rollback effects run newest
    /// first, undoing in the reverse order of the statements.
    pub fn on_rollback(effect: Effect) {
        if let Some(txn) = Self::current() {
            txn.lock().on_rollback.push(effect);
        }
    }

    /// Ends the transaction without writing: its rollback effects, to run.
    pub fn rollback(self) -> Vec<Effect> {
        let mut effects = std::mem::take(&mut self.lock().on_rollback);
        effects.reverse();
        effects
    }

    /// Sets a savepoint (`SAVEPOINT name`); a newer one of the same name
    /// hides the older until it is released.
    pub fn savepoint(&self, name: &str) {
        let mut staged = self.lock();
        let savepoint = Savepoint {
            name: name.to_owned(),
            writes: staged.writes.clone(),
            after_commit: staged.after_commit.len(),
            on_rollback: staged.on_rollback.len(),
        };
        staged.savepoints.push(savepoint);
    }

    /// Forgets the newest savepoint named `name` and every later one
    /// (`RELEASE SAVEPOINT`), keeping the changes; false when there is none.
    pub fn release(&self, name: &str) -> bool {
        let mut staged = self.lock();
        let Some(index) = staged.savepoints.iter().rposition(|s| s.name == name) else {
            return false;
        };
        staged.savepoints.truncate(index);
        true
    }

    /// Undoes what was staged since the newest savepoint named `name`
    /// (`ROLLBACK TO SAVEPOINT`), which stays set; later savepoints go.
    /// Returns the rollback effects registered since, newest first, to run, or `None`
    /// when there is no such savepoint. Records read since are still
    /// checked at COMMIT.
    pub fn rollback_to(&self, name: &str) -> Option<Vec<Effect>> {
        let mut staged = self.lock();
        let index = staged.savepoints.iter().rposition(|s| s.name == name)?;
        staged.savepoints.truncate(index + 1);
        let savepoint = &staged.savepoints[index];
        let (writes, after_commit, on_rollback) =
            (savepoint.writes.clone(), savepoint.after_commit, savepoint.on_rollback);
        staged.writes = writes;
        staged.after_commit.truncate(after_commit);
        let mut effects = staged.on_rollback.split_off(on_rollback);
        effects.reverse();
        Some(effects)
    }

    /// Whether the transaction staged no change.
    pub fn is_empty(&self) -> bool {
        self.lock().writes.is_empty()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Staged> {
        // Staged changes are plain maps; a panic cannot leave them torn.
        self.staged.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A read through the transaction: the staged value if the transaction
    /// wrote the key, else the stored one (`stored`), remembered for the
    /// check at COMMIT.
    pub(crate) fn read<E>(
        &self,
        family: &'static str,
        key: &[u8],
        stored: impl FnOnce() -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, E> {
        let mut staged = self.lock();
        let key = (family, key.to_vec());
        if let Some(value) = staged.writes.get(&key) {
            return Ok(value.clone());
        }
        if let Some(value) = staged.read.get(&key) {
            return Ok(value.clone());
        }
        let value = stored()?;
        staged.read.insert(key, value.clone());
        Ok(value)
    }

    /// A family's stored entries with the staged changes applied; the
    /// names are remembered for the check at COMMIT.
    pub(crate) fn list(&self, family: &'static str, stored: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut staged = self.lock();
        if NAMED_FAMILIES.contains(&family) {
            staged
                .listed
                .entry(family)
                .or_insert_with(|| stored.iter().map(|(key, _)| key.clone()).collect());
        }
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for ((_, key), value) in staged
            .writes
            .range((family, Vec::new())..)
            .take_while(|((f, _), _)| *f == family)
        {
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        merged.into_iter().collect()
    }

    /// Stages a put (`Some`) or delete (`None`).
    pub(crate) fn stage(&self, family: &'static str, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.lock().writes.insert((family, key), value);
    }

    /// Takes the staged changes for writing, and the effects to run after.
    pub(crate) fn take(&self) -> (Staged, Vec<Effect>) {
        let mut staged = std::mem::take(&mut *self.lock());
        let effects = std::mem::take(&mut staged.after_commit);
        (staged, effects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, CatalogError, MasterKey, SecretValue};

    fn catalog(dir: &tempfile::TempDir) -> Catalog {
        Catalog::open(dir.path(), MasterKey::from_hex(&"ab".repeat(32)).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn staged_changes_are_seen_inside_the_scope_only_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(&dir);
        let txn = Transaction::new();
        txn.scope(async {
            assert!(catalog.create_secret("s", &SecretValue::new("v"), false).unwrap());
            assert_eq!(catalog.secrets().unwrap().len(), 1);
            assert_eq!(catalog.secret_value("s").unwrap(), SecretValue::new("v"));
        })
        .await;
        assert!(catalog.secrets().unwrap().is_empty());
        assert!(!txn.is_empty());
        catalog.commit(&txn).unwrap();
        assert_eq!(catalog.secret_value("s").unwrap(), SecretValue::new("v"));
    }

    #[tokio::test]
    async fn a_rolled_back_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(&dir);
        let txn = Transaction::new();
        txn.scope(async { catalog.create_secret("s", &SecretValue::new("v"), false).unwrap() })
            .await;
        assert!(txn.rollback().is_empty());
        assert!(catalog.secrets().unwrap().is_empty());
    }

    #[tokio::test]
    async fn rolling_back_to_a_savepoint_undoes_only_what_came_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(&dir);
        let txn = Transaction::new();
        txn.scope(async {
            catalog.create_secret("kept", &SecretValue::new("v"), false).unwrap();
            txn.savepoint("a");
            catalog.create_secret("undone", &SecretValue::new("v"), false).unwrap();
            txn.savepoint("b");
            assert!(txn.rollback_to("a").is_some());
            assert!(!txn.release("b"), "a later savepoint goes with the rollback");
            assert_eq!(catalog.secrets().unwrap().len(), 1);
            catalog.create_secret("again", &SecretValue::new("v"), false).unwrap();
            assert!(txn.release("a"));
            assert!(txn.rollback_to("a").is_none());
        })
        .await;
        catalog.commit(&txn).unwrap();
        let names: Vec<String> = catalog.secrets().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["again", "kept"]);
    }

    #[tokio::test]
    async fn rollback_effects_run_newest_first() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let effect = |n: u32| -> Effect {
            let order = Arc::clone(&order);
            Box::pin(async move { order.lock().unwrap().push(n) })
        };
        let txn = Transaction::new();
        txn.scope(async {
            Transaction::on_rollback(effect(1));
            txn.savepoint("a");
            Transaction::on_rollback(effect(2));
            Transaction::on_rollback(effect(3));
        })
        .await;
        for effect in txn.rollback_to("a").unwrap() {
            effect.await;
        }
        txn.scope(async { Transaction::on_rollback(effect(4)) }).await;
        for effect in txn.rollback() {
            effect.await;
        }
        assert_eq!(*order.lock().unwrap(), [3, 2, 4, 1]);
    }

    #[tokio::test]
    async fn a_name_another_session_took_conflicts_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(&dir);
        let (first, second) = (Transaction::new(), Transaction::new());
        for txn in [&first, &second] {
            txn.scope(async { catalog.create_secret("s", &SecretValue::new("v"), false).unwrap() })
                .await;
        }
        catalog.commit(&first).unwrap();
        let Err(error) = catalog.commit(&second) else {
            panic!("the second commit succeeded");
        };
        assert!(
            matches!(error, CatalogError::Conflict { family: "secrets", .. }),
            "{error}"
        );
        assert_eq!(catalog.secrets().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_listed_family_that_gained_a_name_conflicts_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(&dir);
        let txn = Transaction::new();
        txn.scope(async {
            assert!(catalog.secrets().unwrap().is_empty());
            catalog.create_secret("mine", &SecretValue::new("v"), false).unwrap();
        })
        .await;
        catalog.create_secret("theirs", &SecretValue::new("v"), false).unwrap();
        assert!(matches!(catalog.commit(&txn), Err(CatalogError::Conflict { .. })));
    }
}
