//! The catalog API used by the engine and the server.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::admin::AdminCredentials;
use crate::alert::{Incident, Subject, incident_key};
use crate::cdc::CdcState;
use crate::connection::{ConnectionRecord, StatusUpdate};
use crate::crypto::MasterKey;
use crate::error::{CatalogError, ObjectKind, Result};
use crate::job::{JobColumn, JobDestination, JobRecord};
use crate::public_table::PublicTable;
use crate::record::Record;
use crate::run::{RunRecord, RunStatus, RunTrigger, Watermark, run_key};
use crate::schedule_state::ScheduleState;
use crate::schema_change::SchemaChangeRecord;
use crate::secret::{SecretContent, SecretInfo, SecretRecord, SecretSource, SecretValue};
use crate::store::{Batch, Store};
use crate::table_jobs::{TableJobs, table_jobs_key};
use crate::table_ops::{TableOps, table_ops_key};
use crate::transaction::{Effect, Transaction};
use crate::verification::VerificationRecord;

/// A sealed known value proving that the master key matches this catalog.
#[derive(Serialize, Deserialize)]
struct KeyCheck {
    sealed: String,
}

impl Record for KeyCheck {
    const FAMILY: &'static str = "meta";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        "key_check".into()
    }
}

const KEY_CHECK_PLAIN: &[u8] = b"sluice master key check";

/// This catalog's random identity (see [`Catalog::instance_id`]).
#[derive(Serialize, Deserialize)]
struct Instance {
    id: String,
}

impl Record for Instance {
    const FAMILY: &'static str = "meta";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        "instance".into()
    }
}

/// Reads runs newest first, one job after another, through one iterator
/// over the run index: what listing the latest runs of every job uses.
pub struct RunCursor<'a> {
    catalog: &'a Catalog,
    ids: crate::store::RunIds<'a>,
}

impl RunCursor<'_> {
    /// `job`'s runs, newest first, read lazily.
    pub fn newest_first(&mut self, job: &str) -> impl Iterator<Item = Result<RunRecord>> + '_ {
        self.ids.seek(job);
        std::iter::from_fn(move || self.next_run())
    }

    fn next_run(&mut self) -> Option<Result<RunRecord>> {
        loop {
            let id = match self.ids.next_id()? {
                Ok(id) => id,
                Err(e) => return Some(Err(e)),
            };
            // Pruned between the index scan and this read: gone, skip it.
            match self.catalog.store.get::<RunRecord>(&run_key(id)) {
                Ok(None) => continue,
                found => return found.transpose(),
            }
        }
    }
}

/// What [`Catalog::drop_connection`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DropOutcome {
    /// False when the connection did not exist and `IF EXISTS` was given.
    pub dropped: bool,
    /// Jobs dropped with it (CASCADE).
    pub dropped_jobs: Vec<String>,
}

/// The catalog seen from one namespace (database): one RocksDB database
/// plus the master key, shared by every namespace.
///
/// Reads go straight to RocksDB, except listings of jobs with their facts
/// ([`Catalog::job_views`]), served from an in-memory copy that every write
/// keeps exact. Every change that first checks something
/// (a name is free, nothing depends on an object) holds one writer lock,
/// the same for every namespace, so two sessions creating the same name
/// cannot both succeed.
pub struct Catalog {
    pub(crate) store: Store,
    pub(crate) shared: Arc<Shared>,
    /// `None` for the default namespace.
    pub(crate) namespace: Option<String>,
    pub(crate) instance: String,
}

/// What every namespace's view of the catalog shares.
pub(crate) struct Shared {
    key: MasterKey,
    writer: Mutex<()>,
    /// The catalog's own instance id (the default namespace's).
    pub(crate) instance: String,
}

impl Catalog {
    /// Opens the catalog in `dir`, creating it when missing, and checks that
    /// `key` is the key its secrets were sealed with. The catalog returned
    /// is the default namespace's; [`Catalog::namespace`] gives the others.
    pub fn open(dir: &Path, key: MasterKey) -> Result<Self> {
        let store = Store::open(dir)?;
        let instance = instance_id(&store)?;
        let catalog = Self {
            store,
            shared: Arc::new(Shared {
                key,
                writer: Mutex::new(()),
                instance: instance.clone(),
            }),
            namespace: None,
            instance,
        };
        catalog.check_key()?;
        Ok(catalog)
    }

    /// A random id made when this catalog was created (or first opened by a
    /// version that has it). A new or reset catalog gets a new one, so names
    /// made from it and run ids (BigQuery job ids) never repeat those of an
    /// earlier catalog, though run ids start again at 1. Each namespace
    /// other than the default has its own, derived from the catalog's and
    /// its name, so such names do not collide between namespaces either.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    fn check_key(&self) -> Result<()> {
        match self.store.get::<KeyCheck>("key_check")? {
            Some(check) => {
                let sealed = hex::decode(&check.sealed).map_err(|e| corrupt_secret("key_check", e))?;
                self.shared.key.open("key_check", &sealed).map(drop)
            }
            None => {
                let sealed = hex::encode(self.shared.key.seal("key_check", KEY_CHECK_PLAIN));
                let mut batch = self.store.batch();
                batch.put(&KeyCheck { sealed });
                batch.commit()
            }
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave RocksDB half-written
        // (every change is one batch), so a poisoned lock is safe to reuse.
        self.shared
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ----- transactions -----

    /// Runs `work` in the task's transaction, or in one of its own that
    /// commits when `work` succeeds and is rolled back (its rollback
    /// effects run) when it fails: several changes that must land together.
    pub async fn in_one_transaction<T, E: From<CatalogError>>(
        &self,
        work: impl std::future::Future<Output = std::result::Result<T, E>>,
    ) -> std::result::Result<T, E> {
        if Transaction::active() {
            return work.await;
        }
        let txn = Transaction::new();
        match txn.scope(work).await {
            Ok(value) => {
                for effect in self.commit(&txn)? {
                    effect.await;
                }
                Ok(value)
            }
            Err(e) => {
                for effect in txn.rollback() {
                    effect.await;
                }
                Err(e)
            }
        }
    }

    /// Writes a transaction's staged changes in one synced batch and returns
    /// the effects to run now that it committed. Fails with `Conflict`
    /// (nothing written) when another session changed a record the
    /// transaction read, or added or removed a name in a family it listed.
    pub fn commit(&self, txn: &Transaction) -> Result<Vec<Effect>> {
        let _guard = self.lock();
        let (staged, effects) = txn.take();
        self.store.apply(staged)?;
        Ok(effects)
    }

    // ----- admin -----

    /// The stored admin credentials, if any were set.
    pub fn admin_credentials(&self) -> Result<Option<AdminCredentials>> {
        self.store.get("admin")
    }

    /// Stores (or replaces) the admin credentials.
    pub fn set_admin_credentials(&self, credentials: &AdminCredentials) -> Result<()> {
        let _guard = self.lock();
        let mut batch = self.store.batch();
        batch.put(credentials);
        batch.commit()
    }

    // ----- secrets -----

    /// Creates a named secret. Returns false when it existed and
    /// `if_not_exists` was given.
    pub fn create_secret(&self, name: &str, value: &SecretValue, if_not_exists: bool) -> Result<bool> {
        self.create_secret_with(name, &SecretContent::Value(value.clone()), if_not_exists)
    }

    /// Creates a named secret holding a value or naming an external one.
    /// Returns false when it existed and `if_not_exists` was given.
    pub fn create_secret_with(&self, name: &str, content: &SecretContent, if_not_exists: bool) -> Result<bool> {
        let _guard = self.lock();
        if self.store.get::<SecretRecord>(name)?.is_some() {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(already_exists(ObjectKind::Secret, name))
            };
        }
        let mut batch = self.store.batch();
        batch.put(&self.secret_record(name, content, None));
        batch.commit()?;
        Ok(true)
    }

    /// Creates a named secret or gives an existing one a new value
    /// (`CREATE OR REPLACE SECRET`); false when it already held `value`.
    /// Connections that use it read the new value from their next use.
    pub fn replace_secret(&self, name: &str, value: &SecretValue) -> Result<bool> {
        self.replace_secret_with(name, &SecretContent::Value(value.clone()))
    }

    /// [`Catalog::replace_secret`] with a value or an external reference;
    /// false when the secret already held `content`.
    pub fn replace_secret_with(&self, name: &str, content: &SecretContent) -> Result<bool> {
        let _guard = self.lock();
        let existing = self.store.get::<SecretRecord>(name)?;
        if let Some(secret) = &existing {
            if secret.owner.is_some() {
                return Err(already_exists(ObjectKind::Secret, name));
            }
            if self.secret(name)? == *content {
                return Ok(false);
            }
        }
        let mut record = self.secret_record(name, content, None);
        if let Some(secret) = existing {
            record.created_at = secret.created_at;
        }
        let mut batch = self.store.batch();
        batch.put(&record);
        batch.commit()?;
        Ok(true)
    }

    /// Changes the value of a named secret (not a connection's inline one);
    /// false when the value is the same.
    pub fn alter_secret(&self, name: &str, value: &SecretValue) -> Result<bool> {
        match self.store.get::<SecretRecord>(name)? {
            Some(secret) if secret.owner.is_none() => self.replace_secret(name, value),
            _ => Err(not_found(ObjectKind::Secret, name)),
        }
    }

    /// Drops a named secret, refusing while connections use it.
    pub fn drop_secret(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _guard = self.lock();
        match self.store.get::<SecretRecord>(name)? {
            Some(secret) if secret.owner.is_none() => {}
            _ if if_exists => return Ok(false),
            _ => return Err(not_found(ObjectKind::Secret, name)),
        }
        let users = self.connections_using_secret(name)?;
        if !users.is_empty() {
            return Err(CatalogError::InUse {
                kind: ObjectKind::Secret,
                name: name.into(),
                dependent_kind: ObjectKind::Connection,
                dependents: users,
            });
        }
        let alerts = self.alerts_using_secret(name)?;
        if !alerts.is_empty() {
            return Err(CatalogError::InUse {
                kind: ObjectKind::Secret,
                name: name.into(),
                dependent_kind: ObjectKind::Alert,
                dependents: alerts,
            });
        }
        let mut batch = self.store.batch();
        batch.delete::<SecretRecord>(name);
        batch.commit()?;
        Ok(true)
    }

    /// Named secrets (inline secrets owned by connections are not listed).
    pub fn secrets(&self) -> Result<Vec<SecretInfo>> {
        let connections = self.connections()?;
        Ok(self
            .store
            .scan::<SecretRecord>()?
            .into_iter()
            .filter(|s| s.owner.is_none())
            .map(|s| SecretInfo {
                used_by: connections
                    .iter()
                    .filter(|c| c.secret_names().any(|n| n == s.name))
                    .map(|c| c.name.clone())
                    .collect(),
                external: match s.source {
                    SecretSource::Stored(_) => None,
                    SecretSource::External(external) => Some(external),
                },
                name: s.name,
                created_at: s.created_at,
            })
            .collect())
    }

    /// A secret's value, decrypted, or its external reference.
    pub fn secret(&self, name: &str) -> Result<SecretContent> {
        let secret = self
            .store
            .get::<SecretRecord>(name)?
            .ok_or_else(|| not_found(ObjectKind::Secret, name))?;
        let sealed = match secret.source {
            SecretSource::External(external) => return Ok(SecretContent::External(external)),
            SecretSource::Stored(sealed) => sealed,
        };
        let sealed = hex::decode(&sealed).map_err(|e| corrupt_secret(name, e))?;
        let plain = self.shared.key.open(&self.sealed_under(name), &sealed)?;
        String::from_utf8(plain)
            .map(|plain| SecretContent::Value(SecretValue::new(plain)))
            .map_err(|e| corrupt_secret(name, e))
    }

    /// Decrypts a stored secret for handing to a driver; an external one
    /// is `ExternalSecret` (the engine fetches those).
    pub fn secret_value(&self, name: &str) -> Result<SecretValue> {
        match self.secret(name)? {
            SecretContent::Value(value) => Ok(value),
            SecretContent::External(external) => Err(CatalogError::ExternalSecret {
                name: name.into(),
                external,
            }),
        }
    }

    /// The name a secret's value is sealed under (the associated data of its
    /// encryption): its name, qualified by the namespace outside the
    /// default one, so a sealed value moved to another name or namespace
    /// does not open.
    fn sealed_under(&self, name: &str) -> String {
        match &self.namespace {
            None => name.to_owned(),
            Some(namespace) => format!("{namespace}\0{name}"),
        }
    }

    /// The name under which an inline secret of a connection option is kept.
    pub fn inline_secret_name(connection: &str, option: &str) -> String {
        format!("{connection}/{option}")
    }

    fn seal_secret(&self, name: &str, value: &SecretValue, owner: Option<&str>) -> SecretRecord {
        self.secret_record(name, &SecretContent::Value(value.clone()), owner)
    }

    fn secret_record(&self, name: &str, content: &SecretContent, owner: Option<&str>) -> SecretRecord {
        SecretRecord {
            name: name.into(),
            source: match content {
                SecretContent::Value(value) => SecretSource::Stored(hex::encode(
                    self.shared
                        .key
                        .seal(&self.sealed_under(name), value.expose().as_bytes()),
                )),
                SecretContent::External(external) => SecretSource::External(external.clone()),
            },
            created_at: Utc::now(),
            owner: owner.map(str::to_owned),
        }
    }

    /// The connections whose options name `secret`.
    pub fn connections_using_secret(&self, secret: &str) -> Result<Vec<String>> {
        Ok(self
            .connections()?
            .into_iter()
            .filter(|c| c.secret_names().any(|n| n == secret))
            .map(|c| c.name)
            .collect())
    }

    // ----- connections -----

    /// One connection, or `NotFound`.
    pub fn connection(&self, name: &str) -> Result<ConnectionRecord> {
        self.find_connection(name)?
            .ok_or_else(|| not_found(ObjectKind::Connection, name))
    }

    /// One connection, if it exists.
    pub fn find_connection(&self, name: &str) -> Result<Option<ConnectionRecord>> {
        self.store.get(name)
    }

    /// All connections, by name.
    pub fn connections(&self) -> Result<Vec<ConnectionRecord>> {
        self.store.scan()
    }

    /// Saves a new connection and its inline secrets in one atomic write.
    ///
    /// Fails with `AlreadyExists` when the name is taken and with
    /// `DuplicateCredentials` when another connection has the same identity.
    pub fn create_connection(&self, record: &ConnectionRecord, inline_secrets: &[(String, SecretValue)]) -> Result<()> {
        let _guard = self.lock();
        if self.find_connection(&record.name)?.is_some() {
            return Err(already_exists(ObjectKind::Connection, &record.name));
        }
        self.check_identity(record)?;
        self.check_secrets_exist(record, inline_secrets)?;
        let mut batch = self.store.batch();
        for (name, value) in inline_secrets {
            batch.put(&self.seal_secret(name, value, Some(&record.name)));
        }
        batch.put(record);
        batch.commit()
    }

    /// Replaces an existing connection (ALTER), swapping its inline secrets
    /// and deleting the ones it no longer uses, in one atomic write.
    pub fn replace_connection(
        &self,
        record: &ConnectionRecord,
        inline_secrets: &[(String, SecretValue)],
    ) -> Result<()> {
        let _guard = self.lock();
        let old = self.connection(&record.name)?;
        self.check_identity(record)?;
        self.check_secrets_exist(record, inline_secrets)?;
        let mut batch = self.store.batch();
        for stale in old.owned_secret_names() {
            if !record.owned_secret_names().any(|n| n == stale) {
                batch.delete::<SecretRecord>(stale);
            }
        }
        for (name, value) in inline_secrets {
            batch.put(&self.seal_secret(name, value, Some(&record.name)));
        }
        batch.put(record);
        batch.commit()
    }

    fn check_identity(&self, record: &ConnectionRecord) -> Result<()> {
        let Some(identity) = &record.identity else {
            return Ok(());
        };
        match self
            .connections()?
            .into_iter()
            .find(|c| c.name != record.name && c.identity.as_ref() == Some(identity))
        {
            Some(existing) => Err(CatalogError::DuplicateCredentials {
                name: record.name.clone(),
                existing: existing.name,
                identity: identity.clone(),
            }),
            None => Ok(()),
        }
    }

    fn check_secrets_exist(&self, record: &ConnectionRecord, inline: &[(String, SecretValue)]) -> Result<()> {
        for name in record.secret_names() {
            let given_inline = inline.iter().any(|(n, _)| n == name);
            if !given_inline && self.store.get::<SecretRecord>(name)?.is_none() {
                return Err(not_found(ObjectKind::Secret, name));
            }
        }
        Ok(())
    }

    /// Records the outcome of a live test. Returns false when the connection
    /// was dropped meanwhile.
    pub fn update_status(&self, name: &str, update: &StatusUpdate) -> Result<bool> {
        let _guard = self.lock();
        let Some(mut record) = self.find_connection(name)? else {
            return Ok(false);
        };
        record.apply(update);
        let mut batch = self.store.batch();
        batch.put(&record);
        batch.commit()?;
        Ok(true)
    }

    /// Drops a connection with its inline secrets. Refuses while jobs use it
    /// unless `cascade`, which drops those jobs in the same atomic write.
    pub fn drop_connection(&self, name: &str, if_exists: bool, cascade: bool) -> Result<DropOutcome> {
        let _guard = self.lock();
        let Some(record) = self.find_connection(name)? else {
            return if if_exists {
                Ok(DropOutcome::default())
            } else {
                Err(not_found(ObjectKind::Connection, name))
            };
        };
        let jobs: Vec<JobRecord> = self
            .jobs()?
            .into_iter()
            .filter(|j| j.connections().any(|c| c == name))
            .collect();
        let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        if !jobs.is_empty() && !cascade {
            return Err(CatalogError::InUse {
                kind: ObjectKind::Connection,
                name: name.into(),
                dependent_kind: ObjectKind::Job,
                dependents: names,
            });
        }
        let mut batch = self.store.batch();
        // Jobs of a catalog from before one job per table may share one:
        // each table's index entry is rewritten once, without all of them.
        let mut tables: BTreeMap<String, (&JobDestination, Vec<&str>)> = BTreeMap::new();
        for job in &jobs {
            batch.delete::<JobRecord>(&job.name);
            batch.delete::<Watermark>(&job.name);
            batch.delete::<Incident>(&incident_key(Subject::Job, &job.name));
            tables
                .entry(table_jobs_key(&job.destination))
                .or_insert((&job.destination, Vec::new()))
                .1
                .push(&job.name);
        }
        for (destination, dropped) in tables.values() {
            self.unindex_table(&mut batch, destination, dropped)?;
        }
        batch.delete::<Incident>(&incident_key(Subject::Connection, name));
        for secret in record.owned_secret_names() {
            batch.delete::<SecretRecord>(secret);
        }
        batch.delete::<ConnectionRecord>(name);
        batch.commit()?;
        Ok(DropOutcome {
            dropped: true,
            dropped_jobs: names,
        })
    }

    // ----- jobs -----

    /// Names of the jobs that use a connection.
    pub fn jobs_using(&self, connection: &str) -> Result<Vec<String>> {
        Ok(self
            .jobs()?
            .into_iter()
            .filter(|j| j.connections().any(|c| c == connection))
            .map(|j| j.name)
            .collect())
    }

    /// All jobs, by name.
    pub fn jobs(&self) -> Result<Vec<JobRecord>> {
        self.store.scan()
    }

    /// One job, if it exists.
    pub fn find_job(&self, name: &str) -> Result<Option<JobRecord>> {
        self.store.get(name)
    }

    /// One job, or `NotFound`.
    pub fn job(&self, name: &str) -> Result<JobRecord> {
        self.find_job(name)?.ok_or_else(|| not_found(ObjectKind::Job, name))
    }

    /// The job that loads `destination`'s table, if any (a table has one
    /// job: two would delete each other's files and watermarks). One read
    /// of the `table_jobs` index, whatever the number of jobs.
    pub fn table_owner(&self, destination: &JobDestination) -> Result<Option<String>> {
        Ok(self
            .table_jobs(destination)?
            .and_then(|entry| entry.jobs.into_iter().next()))
    }

    fn table_jobs(&self, destination: &JobDestination) -> Result<Option<TableJobs>> {
        self.store.get(&table_jobs_key(destination))
    }

    /// Adds `job` to the index of `destination`'s jobs in `batch`.
    fn index_table(&self, batch: &mut Batch<'_>, destination: &JobDestination, job: &str) -> Result<()> {
        let entry = self.table_jobs(destination)?.unwrap_or_else(|| TableJobs {
            destination: destination.clone(),
            jobs: Vec::new(),
        });
        batch.put(&entry.with(job));
        Ok(())
    }

    /// Removes `jobs` from the index of `destination`'s jobs in `batch`.
    fn unindex_table(&self, batch: &mut Batch<'_>, destination: &JobDestination, jobs: &[&str]) -> Result<()> {
        if let Some(entry) = self.table_jobs(destination)? {
            let entry = jobs.iter().fold(entry, |entry, job| entry.without(job));
            if entry.jobs.is_empty() {
                batch.delete::<TableJobs>(&table_jobs_key(destination));
            } else {
                batch.put(&entry);
            }
        }
        Ok(())
    }

    /// Saves a new job and marks its connections used, in one atomic write.
    /// Refuses a name that is taken and a table another job loads.
    pub fn create_job(&self, job: &JobRecord) -> Result<()> {
        let _guard = self.lock();
        if self.find_job(&job.name)?.is_some() {
            return Err(already_exists(ObjectKind::Job, &job.name));
        }
        if let Some(owner) = self.table_owner(&job.destination)? {
            return Err(CatalogError::TableTaken {
                table: job.destination.table.clone(),
                job: owner,
            });
        }
        let mut batch = self.store.batch();
        for name in job.connections() {
            let mut connection = self.connection(name)?;
            connection.last_used_at = Some(Utc::now());
            batch.put(&connection);
        }
        batch.put(job);
        self.index_table(&mut batch, &job.destination, &job.name)?;
        batch.commit()
    }

    /// Replaces a job's definition (ALTER).
    pub fn replace_job(&self, job: &JobRecord) -> Result<()> {
        let _guard = self.lock();
        let old = self.job(&job.name)?;
        let mut batch = self.store.batch();
        batch.put(job);
        if old.destination != job.destination {
            self.unindex_table(&mut batch, &old.destination, &[&job.name])?;
            self.index_table(&mut batch, &job.destination, &job.name)?;
        }
        batch.commit()
    }

    /// Records the source schema changes a run applied to its job's
    /// destination, with the job's `columns` as they are now, in one
    /// atomic write (the rest of the job stays as saved: an `ALTER` during
    /// the run is kept).
    pub fn record_schema_changes(
        &self,
        job: &str,
        columns: &[JobColumn],
        changes: &[SchemaChangeRecord],
    ) -> Result<()> {
        let _guard = self.lock();
        let mut record = self.job(job)?;
        record.columns = columns.to_vec();
        let mut batch = self.store.batch();
        batch.put(&record);
        for change in changes {
            batch.put(change);
        }
        batch.commit()
    }

    /// Every schema change runs applied, oldest first; they stay when
    /// their job is dropped, like its runs.
    pub fn schema_changes(&self) -> Result<Vec<SchemaChangeRecord>> {
        self.store.scan()
    }

    /// Drops a job, its watermark, CDC state and open alert incident; its
    /// run history stays, with runs still queued marked cancelled.
    pub fn drop_job(&self, name: &str, if_exists: bool) -> Result<Option<JobRecord>> {
        let _guard = self.lock();
        let Some(job) = self.find_job(name)? else {
            return if if_exists {
                Ok(None)
            } else {
                Err(not_found(ObjectKind::Job, name))
            };
        };
        let mut batch = self.store.batch();
        batch.delete::<JobRecord>(name);
        self.unindex_table(&mut batch, &job.destination, &[name])?;
        batch.delete::<Watermark>(name);
        batch.delete::<ScheduleState>(name);
        batch.delete::<CdcState>(name);
        batch.delete::<Incident>(&incident_key(Subject::Job, name));
        for mut run in self.runs(Some(name))? {
            if run.status == RunStatus::Queued {
                run.status = RunStatus::Cancelled;
                run.finished_at = Some(Utc::now());
                run.error = Some("the job was dropped before the run started".into());
                batch.put(&run);
            }
        }
        batch.commit()?;
        Ok(Some(job))
    }

    // ----- runs and watermarks -----

    /// Allocates a run id and saves the run as running, atomically.
    pub fn start_run(&self, job: &str, trigger: RunTrigger) -> Result<RunRecord> {
        self.new_run(job, trigger, |_| {})
    }

    /// Records a scheduled tick that was not run, and why.
    pub fn skip_run(&self, job: &str, trigger: RunTrigger, reason: &str) -> Result<RunRecord> {
        self.new_run(job, trigger, |run| {
            run.status = RunStatus::Skipped;
            run.finished_at = Some(run.started_at);
            run.error = Some(reason.into());
        })
    }

    /// Records a due run that waits for a free slot; it keeps its id when
    /// it starts ([`start_queued_run`](Self::start_queued_run)).
    pub fn queue_run(&self, job: &str, trigger: RunTrigger) -> Result<RunRecord> {
        self.new_run(job, trigger, |run| run.status = RunStatus::Queued)
    }

    /// Starts queued run `id` now; `None` if it is no longer queued (it was
    /// cancelled or settled meanwhile).
    pub fn start_queued_run(&self, id: u64) -> Result<Option<RunRecord>> {
        self.settle_queued_run(id, |run| {
            run.status = RunStatus::Running;
            run.started_at = Utc::now();
        })
    }

    /// Ends queued run `id` without running it, as `status` (cancelled or
    /// skipped) with `reason`; `None` if it is no longer queued.
    pub fn end_queued_run(&self, id: u64, status: RunStatus, reason: &str) -> Result<Option<RunRecord>> {
        self.settle_queued_run(id, |run| {
            run.status = status;
            run.finished_at = Some(Utc::now());
            run.error = Some(reason.into());
        })
    }

    /// Changes run `id` with `change` if it is still queued, atomically.
    fn settle_queued_run(&self, id: u64, change: impl FnOnce(&mut RunRecord)) -> Result<Option<RunRecord>> {
        let _guard = self.lock();
        let mut run = self.run(id)?;
        if run.status != RunStatus::Queued {
            return Ok(None);
        }
        change(&mut run);
        self.update_run(&run)?;
        Ok(Some(run))
    }

    /// Saves a new run under the next id, shaped by `shape`.
    fn new_run(&self, job: &str, trigger: RunTrigger, shape: impl FnOnce(&mut RunRecord)) -> Result<RunRecord> {
        let _guard = self.lock();
        self.job(job)?;
        let sequence = self
            .store
            .get::<RunSequence>("run_sequence")?
            .unwrap_or(RunSequence { next: 1 });
        let mut run = RunRecord::start(sequence.next, job, trigger);
        shape(&mut run);
        let mut batch = self.store.batch();
        batch.put(&RunSequence {
            next: sequence.next + 1,
        });
        batch.put(&run).index_run(job, run.id);
        batch.commit()?;
        Ok(run)
    }

    /// Saves a run's progress or plan.
    pub fn update_run(&self, run: &RunRecord) -> Result<()> {
        let mut batch = self.store.batch();
        batch.put(run);
        batch.commit()
    }

    /// Saves a finished run together with the watermark it reached, in one
    /// atomic write.
    /// Table operations the run spent (`table_ops`) are added to its
    /// destination table's count for the UTC day it finished, in the same
    /// write.
    pub fn finish_run(&self, run: &RunRecord, watermark: Option<&Watermark>) -> Result<()> {
        let _guard = run.table_ops.is_some_and(|ops| ops > 0).then(|| self.lock());
        let mut batch = self.store.batch();
        batch.put(run);
        if let Some(watermark) = watermark {
            batch.put(watermark);
        }
        let spent = match (run.table_ops, self.find_job(&run.job)?) {
            (Some(ops), Some(job)) if ops > 0 => job
                .destination
                .connection
                .map(|connection| (connection, job.destination.table, ops)),
            _ => None,
        };
        if let Some((connection, table, ops)) = spent {
            let day = run.finished_at.unwrap_or_else(Utc::now).date_naive();
            let before = self.table_ops(&connection, &table, day)?;
            batch.put(&TableOps {
                connection,
                table,
                day,
                ops: before + ops,
            });
        }
        batch.commit()
    }

    /// Table operations spent on `connection`'s `table` on the UTC `day`.
    pub fn table_ops(&self, connection: &str, table: &str, day: NaiveDate) -> Result<u64> {
        let found: Option<TableOps> = self.store.get(&table_ops_key(connection, table))?;
        Ok(found.map_or(0, |count| count.on(day)))
    }

    /// Every destination table's last counted day of table operations.
    pub fn all_table_ops(&self) -> Result<Vec<TableOps>> {
        self.store.scan()
    }

    // ----- public tables -----

    /// A table of the `public` schema with its rows, if it exists.
    pub fn public_table(&self, name: &str) -> Result<Option<PublicTable>> {
        self.store.get(name)
    }

    /// Every table of the `public` schema, in name order.
    pub fn public_tables(&self) -> Result<Vec<PublicTable>> {
        self.store.scan()
    }

    /// Creates or replaces a table of the `public` schema (its definition
    /// and all its rows).
    pub fn save_public_table(&self, table: &PublicTable) -> Result<()> {
        let _guard = self.lock();
        let mut batch = self.store.batch();
        batch.put(table);
        batch.commit()
    }

    /// Drops a table of the `public` schema.
    pub fn drop_public_table(&self, name: &str) -> Result<()> {
        let _guard = self.lock();
        let mut batch = self.store.batch();
        batch.delete::<PublicTable>(name);
        batch.commit()
    }

    /// One run, or `NotFound`.
    pub fn run(&self, id: u64) -> Result<RunRecord> {
        self.store
            .get(&run_key(id))?
            .ok_or_else(|| not_found(ObjectKind::Run, &id.to_string()))
    }

    /// Runs, oldest first; only `job`'s when given (read through the run
    /// index: no other job's runs are read).
    pub fn runs(&self, job: Option<&str>) -> Result<Vec<RunRecord>> {
        let Some(job) = job else {
            return self.store.scan::<RunRecord>();
        };
        let mut runs = Vec::new();
        for id in self.store.run_ids_of(job)? {
            // Pruned between the index scan and this read: gone, skip it.
            if let Some(run) = self.store.get::<RunRecord>(&run_key(id))? {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    /// `job`'s runs, newest first, read one by one through the run index:
    /// a caller that needs only the latest runs reads only those.
    pub fn runs_newest_first<'a>(&'a self, job: &str) -> impl Iterator<Item = Result<RunRecord>> + 'a {
        let mut cursor = self.run_cursor();
        cursor.ids.seek(job);
        std::iter::from_fn(move || cursor.next_run())
    }

    /// A cursor reading the latest runs of one job after another (see
    /// [`RunCursor`]).
    pub fn run_cursor(&self) -> RunCursor<'_> {
        RunCursor {
            catalog: self,
            ids: self.store.run_ids(),
        }
    }

    /// Deletes the oldest finished runs of `job` beyond the newest `keep`;
    /// returns how many were deleted. Running runs are never deleted.
    pub fn prune_runs(&self, job: &str, keep: usize) -> Result<usize> {
        let finished: Vec<u64> = self
            .runs(Some(job))?
            .into_iter()
            .filter(|r| r.status.is_final())
            .map(|r| r.id)
            .collect();
        let excess = finished.len().saturating_sub(keep);
        if excess == 0 {
            return Ok(0);
        }
        let mut batch = self.store.batch();
        for id in &finished[..excess] {
            batch.delete::<RunRecord>(&run_key(*id)).unindex_run(job, *id);
        }
        batch.commit()?;
        Ok(excess)
    }

    /// Saves the result of a VERIFY.
    pub fn record_verification(&self, verification: &VerificationRecord) -> Result<()> {
        let mut batch = self.store.batch();
        batch.put(verification);
        batch.commit()
    }

    /// Every saved VERIFY result, by job, oldest first.
    pub fn verifications(&self) -> Result<Vec<VerificationRecord>> {
        self.store.scan()
    }

    /// The scheduler's state of a job, if it has one.
    pub fn schedule_state(&self, job: &str) -> Result<Option<ScheduleState>> {
        self.store.get(job)
    }

    /// The scheduler's state of every job that has one, by job name.
    pub fn schedule_states(&self) -> Result<Vec<ScheduleState>> {
        self.store.scan()
    }

    /// Saves the scheduler's state of a job; `false` (and nothing saved)
    /// when the job no longer exists.
    pub fn set_schedule_state(&self, state: &ScheduleState) -> Result<bool> {
        self.put_while_job_exists(&state.job, state)
    }

    /// The change-data-capture state of a job, if it has one.
    pub fn cdc_state(&self, job: &str) -> Result<Option<CdcState>> {
        self.store.get(job)
    }

    /// The CDC state of every job that has one, by job name.
    pub fn cdc_states(&self) -> Result<Vec<CdcState>> {
        self.store.scan()
    }

    /// Saves the CDC state of a job; `false` (and nothing saved) when the
    /// job no longer exists, so a dropped job's state cannot come back.
    pub fn set_cdc_state(&self, state: &CdcState) -> Result<bool> {
        self.put_while_job_exists(&state.job, state)
    }

    /// Changes the job's saved CDC state with `change`, in one step no
    /// other catalog write interleaves with (what a run saved meanwhile is
    /// kept); `false` (and nothing saved) when the job or its state is gone.
    pub fn update_cdc_state(&self, job: &str, change: impl FnOnce(&mut CdcState)) -> Result<bool> {
        let _guard = self.lock();
        if self.find_job(job)?.is_none() {
            return Ok(false);
        }
        let Some(mut state) = self.cdc_state(job)? else {
            return Ok(false);
        };
        change(&mut state);
        let mut batch = self.store.batch();
        batch.put(&state);
        batch.commit()?;
        Ok(true)
    }

    /// Saves a record that belongs to `job`; `false` (and nothing saved)
    /// when the job no longer exists. Under the writer lock, so a job
    /// dropped meanwhile cannot get the record back.
    fn put_while_job_exists<R: Record>(&self, job: &str, record: &R) -> Result<bool> {
        let _guard = self.lock();
        if self.find_job(job)?.is_none() {
            return Ok(false);
        }
        let mut batch = self.store.batch();
        batch.put(record);
        batch.commit()?;
        Ok(true)
    }

    /// The committed watermark of a job.
    pub fn watermark(&self, job: &str) -> Result<Option<Watermark>> {
        self.store.get(job)
    }

    /// The committed watermark of every job that has one, by job name.
    pub fn watermarks(&self) -> Result<Vec<Watermark>> {
        self.store.scan()
    }

    /// Saves a watermark on its own (start-up reconciliation with what the
    /// destination committed), and makes sure run ids continue after the
    /// run that set it: a catalog restored from a backup would otherwise
    /// give out run ids the destination has seen.
    pub fn set_watermark(&self, watermark: &Watermark) -> Result<()> {
        let _guard = self.lock();
        let mut batch = self.store.batch();
        let next = self
            .store
            .get::<RunSequence>("run_sequence")?
            .map_or(1, |sequence| sequence.next);
        if next <= watermark.run_id {
            batch.put(&RunSequence {
                next: watermark.run_id + 1,
            });
        }
        batch.put(watermark);
        batch.commit()
    }

    /// Moves a job's watermark by hand (`ALTER ETL JOB ... SET | RESET
    /// WATERMARK`, a change of load type): saves `job` as given, the
    /// watermark `to` (`None` deletes it) and a run that records the move
    /// (trigger `watermark`, status `skipped` as nothing was loaded,
    /// `watermark_from` the old value, `watermark_to` the new one, `error`
    /// the `note`), in one write. Returns the run.
    pub fn move_watermark(&self, job: &JobRecord, to: Option<&str>, note: &str) -> Result<RunRecord> {
        let _guard = self.lock();
        self.job(&job.name)?;
        let sequence = self
            .store
            .get::<RunSequence>("run_sequence")?
            .unwrap_or(RunSequence { next: 1 });
        let mut run = RunRecord::start(sequence.next, &job.name, RunTrigger::Watermark);
        run.status = RunStatus::Skipped;
        run.finished_at = Some(run.started_at);
        run.watermark_from = self.watermark(&job.name)?.map(|w| w.value);
        run.watermark_to = to.map(str::to_owned);
        run.error = Some(note.to_owned());
        let mut batch = self.store.batch();
        batch.put(&RunSequence {
            next: sequence.next + 1,
        });
        batch.put(&run).index_run(&job.name, run.id);
        batch.put(job);
        match to {
            Some(value) => batch.put(&Watermark {
                job: job.name.clone(),
                value: value.to_owned(),
                run_id: run.id,
                updated_at: run.started_at,
            }),
            None => batch.delete::<Watermark>(&job.name),
        };
        batch.commit()?;
        Ok(run)
    }
}

/// The catalog's instance id, made and saved the first time.
fn instance_id(store: &Store) -> Result<String> {
    if let Some(instance) = store.get::<Instance>("instance")? {
        return Ok(instance.id);
    }
    let instance = Instance {
        id: format!("{:016x}", rand::random::<u64>()),
    };
    let mut batch = store.batch();
    batch.put(&instance);
    batch.commit()?;
    Ok(instance.id)
}

/// The next run id, kept in `meta`.
#[derive(Serialize, Deserialize)]
struct RunSequence {
    next: u64,
}

impl Record for RunSequence {
    const FAMILY: &'static str = "meta";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        "run_sequence".into()
    }
}

fn not_found(kind: ObjectKind, name: &str) -> CatalogError {
    CatalogError::NotFound {
        kind,
        name: name.into(),
    }
}

fn already_exists(kind: ObjectKind, name: &str) -> CatalogError {
    CatalogError::AlreadyExists {
        kind,
        name: name.into(),
    }
}

fn corrupt_secret(name: &str, e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Corrupt {
        family: "secrets",
        key: name.into(),
        reason: e.to_string(),
    }
}
