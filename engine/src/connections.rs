//! Connection management: validate, test live, then save; re-test on demand
//! and in the background.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use sluice_catalog::{
    Catalog, ConnectionRecord, ConnectionStatus, DropOutcome, ExternalSecret, OptionValue, SecretValue, StatusUpdate,
};
use tracing::{Instrument, info, info_span, warn};

use crate::alerts::AlertNotifier;
use crate::allowed_paths::AllowedPaths;
use crate::connectors;
use crate::contract::{
    ChangeSource, ConnectFailure, ConnectionType, Destination, Driver, ResolvedOptions, Source, SourceFactory,
    TableOption,
};
use crate::destinations::ScrubbedDestination;
use crate::error::{ConnectionFailure, EngineError};
use crate::options::{self, PreparedOptions};
use crate::secret_stores::SecretStores;
use crate::sources::Scrubbed;

/// A `CREATE CONNECTION` request.
#[derive(Debug)]
pub struct CreateConnection {
    pub name: String,
    pub type_name: String,
    pub options: BTreeMap<String, OptionValue>,
    pub if_not_exists: bool,
    /// Test the connection live before saving it.
    pub validate: bool,
}

/// An `ALTER CONNECTION` request.
#[derive(Debug)]
pub struct AlterConnection {
    pub name: String,
    pub set: BTreeMap<String, OptionValue>,
    pub reset: Vec<String>,
    pub validate: bool,
}

/// What `CREATE CONNECTION` did.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created {
        status: ConnectionStatus,
    },
    /// `IF NOT EXISTS` and the name was taken: nothing changed.
    AlreadyExists,
    /// `OR REPLACE` with the options the connection has: nothing changed.
    Unchanged,
    /// `OR REPLACE` changed the options (tested like `ALTER CONNECTION`).
    Replaced {
        status: ConnectionStatus,
    },
}

/// The result of testing one saved connection.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub name: String,
    pub status: ConnectionStatus,
    /// Why the test failed, secrets scrubbed.
    pub error: Option<String>,
    pub elapsed: Duration,
}

impl TestOutcome {
    fn new(name: &str, result: &Result<(), EngineError>, elapsed: Duration) -> Self {
        let (status, error) = match result {
            Ok(()) => (ConnectionStatus::Ok, None),
            Err(EngineError::Connect { failure, .. }) => (ConnectionStatus::Failed, Some(failure.to_string())),
            Err(other) => (ConnectionStatus::Error, Some(other.to_string())),
        };
        Self {
            name: name.into(),
            status,
            error,
            elapsed,
        }
    }
}

/// The connection options a statement may change for one read of a source
/// (the document stores' mapping): `DESCRIBE ... WITH (sample = 500)`.
pub const SOURCE_SETTINGS: &[&str] = &["sample", "keep_document", "on_type_mismatch"];

/// Creates, alters, tests and drops connections.
pub struct ConnectionManager {
    catalog: Arc<Catalog>,
    connect_timeout: Duration,
    allowed_paths: AllowedPaths,
    alerts: Option<Arc<AlertNotifier>>,
    secret_stores: SecretStores,
}

impl ConnectionManager {
    /// A manager over `catalog`; live tests give up after `connect_timeout`
    /// unless a connection sets its own `connect_timeout` option.
    pub fn new(catalog: Arc<Catalog>, connect_timeout: Duration) -> Self {
        Self {
            catalog,
            connect_timeout,
            allowed_paths: AllowedPaths::any(),
            alerts: None,
            secret_stores: SecretStores::new(connect_timeout),
        }
    }

    /// Reports connection tests, and through the job manager run outcomes,
    /// to `alerts`.
    pub fn with_alerts(self, alerts: Arc<AlertNotifier>) -> Self {
        Self {
            alerts: Some(alerts),
            ..self
        }
    }

    /// The notifier that alerts are sent through, when there is one.
    pub fn alerts(&self) -> Option<&Arc<AlertNotifier>> {
        self.alerts.as_ref()
    }

    /// Refuses connections whose path options, and secrets read from
    /// files, name files outside `allowed`.
    pub fn with_allowed_paths(self, allowed: AllowedPaths) -> Self {
        Self {
            secret_stores: self.secret_stores.with_allowed_paths(allowed.clone()),
            allowed_paths: allowed,
            ..self
        }
    }

    /// Reuses values fetched from external secret stores for `ttl`.
    pub fn with_secret_cache_ttl(self, ttl: Duration) -> Self {
        Self {
            secret_stores: self.secret_stores.with_ttl(ttl),
            ..self
        }
    }

    /// Signs in to Google Secret Manager with the credentials JSON in
    /// `file` instead of Application Default Credentials.
    pub fn with_gcp_secret_manager_credentials(self, file: Option<std::path::PathBuf>) -> Self {
        Self {
            secret_stores: self.secret_stores.with_gcp_credentials(file),
            ..self
        }
    }

    /// Refuses an external secret the server may not read (a file outside
    /// the allowed paths), before `CREATE SECRET ... FROM` saves it.
    pub fn check_external_secret(&self, external: &ExternalSecret) -> Result<(), EngineError> {
        Ok(self.secret_stores.check(external)?)
    }

    /// The catalog this manager writes to.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Validates, tests (unless `validate` is false) and saves a connection.
    /// Nothing is saved when any step fails.
    pub async fn create(&self, request: CreateConnection) -> Result<CreateOutcome, EngineError> {
        check_not_reserved(&request.name)?;
        if self.catalog.find_connection(&request.name)?.is_some() {
            return if request.if_not_exists {
                Ok(CreateOutcome::AlreadyExists)
            } else {
                Err(sluice_catalog::CatalogError::AlreadyExists {
                    kind: sluice_catalog::ObjectKind::Connection,
                    name: request.name,
                }
                .into())
            };
        }
        let (kind, driver) = available_type(&request.type_name)?;
        let prepared = options::prepare(kind.name, kind.options, &request.name, request.options)?;
        self.check_secret_references(&request.name, &prepared)?;
        let status = self
            .check_live(&request.name, (kind, driver), &prepared, request.validate)
            .await?;
        let now = Utc::now();
        let record = ConnectionRecord {
            identity: kind.identity(&prepared.options),
            name: request.name,
            kind: kind.name.into(),
            options: prepared.options,
            created_at: now,
            updated_at: now,
            status,
            last_tested_at: request.validate.then_some(now),
            last_error: None,
            last_used_at: None,
        };
        match self.catalog.create_connection(&record, &prepared.inline_secrets) {
            Err(sluice_catalog::CatalogError::AlreadyExists { .. }) if request.if_not_exists => {
                Ok(CreateOutcome::AlreadyExists)
            }
            Err(e) => Err(e.into()),
            Ok(()) => {
                info!(connection = %record.name, kind = %record.kind, status = status.as_str(), "connection created");
                Ok(CreateOutcome::Created { status })
            }
        }
    }

    /// `CREATE OR REPLACE CONNECTION`: creates the connection, or changes
    /// an existing one to the request's options.
    pub async fn create_or_replace(&self, request: CreateConnection) -> Result<CreateOutcome, EngineError> {
        check_not_reserved(&request.name)?;
        match self.catalog.find_connection(&request.name)? {
            Some(old) => self.replace(old, request).await,
            None => self.create(request).await,
        }
    }

    /// `CREATE OR REPLACE` of an existing connection: nothing when the
    /// options are the same, else an `ALTER` to exactly the given options.
    /// The type cannot change.
    async fn replace(&self, old: ConnectionRecord, request: CreateConnection) -> Result<CreateOutcome, EngineError> {
        let (kind, _) = available_type(&request.type_name)?;
        if kind.name != old.kind {
            return Err(EngineError::CannotReplace {
                kind: "connection",
                name: old.name,
                what: format!("the type ({} to {})", old.kind, kind.name),
                why: "a connection keeps its type",
            });
        }
        let prepared = options::prepare(kind.name, kind.options, &old.name, request.options.clone())?;
        if prepared.options == old.options && self.same_inline_secrets(&prepared)? {
            return Ok(CreateOutcome::Unchanged);
        }
        let reset = old
            .options
            .keys()
            .filter(|name| !request.options.contains_key(*name))
            .cloned()
            .collect();
        let status = self
            .alter(AlterConnection {
                name: old.name,
                set: request.options,
                reset,
                validate: request.validate,
            })
            .await?;
        Ok(CreateOutcome::Replaced { status })
    }

    /// Whether the inline secrets hold the values already saved.
    fn same_inline_secrets(&self, prepared: &PreparedOptions) -> Result<bool, EngineError> {
        for (name, value) in &prepared.inline_secrets {
            match self.catalog.secret_value(name) {
                Ok(saved) if saved == *value => {}
                Ok(_) | Err(sluice_catalog::CatalogError::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Changes options of a saved connection; the new options are tested
    /// before they replace the old ones.
    pub async fn alter(&self, request: AlterConnection) -> Result<ConnectionStatus, EngineError> {
        let old = self.catalog.connection(&request.name)?;
        let (kind, driver) = available_type(&old.kind)?;
        let mut merged = old.options.clone();
        for name in &request.reset {
            merged.remove(options::canonical_name(kind.name, kind.options, name)?);
        }
        let set = options::canonicalize(kind.name, kind.options, request.set)?;
        let repeated: Vec<String> = set.keys().cloned().collect();
        merged.extend(set);
        let prepared = options::prepare(kind.name, kind.options, &old.name, merged)?;
        self.check_secret_references(&old.name, &prepared)?;
        check_secrets_follow_endpoint(&old, &prepared, &repeated)?;
        let status = self
            .check_live(&old.name, (kind, driver), &prepared, request.validate)
            .await?;
        let now = Utc::now();
        let record = ConnectionRecord {
            identity: kind.identity(&prepared.options),
            options: prepared.options,
            updated_at: now,
            status,
            last_tested_at: if request.validate {
                Some(now)
            } else {
                old.last_tested_at
            },
            last_error: None,
            ..old
        };
        self.catalog.replace_connection(&record, &prepared.inline_secrets)?;
        info!(connection = %record.name, status = status.as_str(), "connection altered");
        Ok(status)
    }

    /// Drops a connection (and with `cascade`, the jobs that use it).
    pub fn drop_connection(&self, name: &str, if_exists: bool, cascade: bool) -> Result<DropOutcome, EngineError> {
        let outcome = self.catalog.drop_connection(name, if_exists, cascade)?;
        if outcome.dropped {
            info!(connection = name, dropped_jobs = ?outcome.dropped_jobs, "connection dropped");
        }
        Ok(outcome)
    }

    /// Tests a saved connection now and records the result; a failed test
    /// is returned as the error that explains it.
    pub async fn test(&self, name: &str) -> Result<TestOutcome, EngineError> {
        let record = self.catalog.connection(name)?;
        let started = Instant::now();
        let result = self.check_record(&record).await;
        let outcome = TestOutcome::new(name, &result, started.elapsed());
        self.record_outcome(&outcome)?;
        result.map(|()| outcome)
    }

    /// `ALTER SECRET name AS 'value'`: saves the new value, which the next
    /// test and run of every connection that uses the secret reads (runs in
    /// flight keep the old one), then tests those connections at once and
    /// records each result (`sluice.connections`). Returns each outcome
    /// with what failed, for the caller to report.
    pub async fn alter_secret(
        &self,
        name: &str,
        value: &SecretValue,
    ) -> Result<Vec<(TestOutcome, Option<ConnectionFailure>)>, EngineError> {
        let users = self.catalog.connections_using_secret(name)?;
        self.catalog.alter_secret(name, value)?;
        info!(secret = name, connections = users.len(), "secret changed");
        let mut checks = Vec::new();
        for connection in users {
            let record = self.catalog.connection(&connection)?;
            let started = Instant::now();
            let result = self.check_record(&record).await;
            let outcome = TestOutcome::new(&connection, &result, started.elapsed());
            self.record_outcome(&outcome)?;
            let failure = result.err().map(|error| ConnectionFailure {
                connection,
                error: Box::new(error),
            });
            checks.push((outcome, failure));
        }
        Ok(checks)
    }

    /// Tests every saved connection concurrently and records the results.
    pub async fn test_all(&self) -> Result<Vec<TestOutcome>, EngineError> {
        let records = self.catalog.connections()?;
        let outcomes = join_all(records.iter().map(|record| async move {
            let started = Instant::now();
            let result = self.check_record(record).await;
            TestOutcome::new(&record.name, &result, started.elapsed())
        }))
        .await;
        for outcome in &outcomes {
            self.record_outcome(outcome)?;
        }
        Ok(outcomes)
    }

    fn record_outcome(&self, outcome: &TestOutcome) -> Result<(), EngineError> {
        let update = StatusUpdate {
            status: outcome.status,
            tested_at: Utc::now(),
            error: outcome.error.clone(),
        };
        self.record_status(&outcome.name, &update)?;
        Ok(())
    }

    /// Records a connection's new status (a test, or a run or exploration
    /// that met a connection failure or worked again) and reports it to
    /// the alerts.
    pub(crate) fn record_status(
        &self,
        connection: &str,
        update: &StatusUpdate,
    ) -> Result<bool, sluice_catalog::CatalogError> {
        let updated = self.catalog.update_status(connection, update)?;
        if let Some(alerts) = self.alerts.as_ref().filter(|_| updated) {
            let failed = matches!(update.status, ConnectionStatus::Failed | ConnectionStatus::Error);
            let error = update.error.as_deref().unwrap_or("the test failed");
            alerts.connection_tested(connection, failed.then_some(error));
        }
        Ok(updated)
    }

    /// Re-tests every connection every `interval`, forever. Failures are
    /// recorded in the catalog and logged; they never stop the loop.
    pub async fn retest_forever(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match self.test_all().instrument(info_span!("retest_connections")).await {
                Ok(outcomes) => {
                    let failed = outcomes.iter().filter(|o| o.status != ConnectionStatus::Ok).count();
                    info!(tested = outcomes.len(), failed, "background connection re-test done");
                }
                Err(e) => warn!(error = %e, "background connection re-test could not run"),
            }
        }
    }

    /// Whether a saved connection can be read as a source, from its record
    /// and type alone: nothing is decrypted, nothing opened. A path outside
    /// the allowed directories makes it no source, as [`Self::source`] does.
    pub fn is_source(&self, name: &str) -> bool {
        let Ok(record) = self.catalog.connection(name) else {
            return false;
        };
        available_type(&record.kind).is_ok_and(|(_, driver)| driver.source.is_some())
            && self.allowed_paths.check_options(&record.options).is_ok()
    }

    /// Opens a saved connection as a source of tables.
    pub fn source(&self, name: &str) -> Result<Arc<dyn Source>, EngineError> {
        self.source_with(name, &BTreeMap::new())
    }

    /// Opens a saved connection as a source with some of its
    /// [`SOURCE_SETTINGS`] changed for this read (`DESCRIBE ... WITH (...)`):
    /// a setting the connection's type does not have, or an invalid value,
    /// is an `InvalidOption` naming it.
    pub fn source_with(
        &self,
        name: &str,
        settings: &BTreeMap<String, OptionValue>,
    ) -> Result<Arc<dyn Source>, EngineError> {
        let (factory, resolved) = self.source_options(name, settings)?;
        Ok(Arc::new(Scrubbed::new(
            factory(&resolved, self.timeout_for(&resolved)),
            resolved.scrubber(),
        )))
    }

    /// The type name and resolved options (with `settings`) of source
    /// connection `name`, for opening it in another process.
    pub fn source_options_of(
        &self,
        name: &str,
        settings: &BTreeMap<String, OptionValue>,
    ) -> Result<(String, ResolvedOptions), EngineError> {
        let kind = self.catalog.connection(name)?.kind;
        let (_, resolved) = self.source_options(name, settings)?;
        Ok((kind, resolved))
    }

    /// The type name and resolved options of destination connection
    /// `name`, for opening it in another process.
    pub fn destination_options_of(&self, name: &str) -> Result<(String, ResolvedOptions), EngineError> {
        let record = self.catalog.connection(name)?;
        let resolved = self.resolve_saved(&record)?;
        Ok((record.kind, resolved))
    }

    /// The source factory and resolved options of connection `name` with
    /// the job's `settings` applied.
    fn source_options(
        &self,
        name: &str,
        settings: &BTreeMap<String, OptionValue>,
    ) -> Result<(SourceFactory, ResolvedOptions), EngineError> {
        let mut record = self.catalog.connection(name)?;
        let (kind, driver) = available_type(&record.kind)?;
        for (setting, value) in settings {
            let setting = setting.to_ascii_lowercase();
            if !SOURCE_SETTINGS.contains(&setting.as_str()) {
                return Err(EngineError::InvalidOption {
                    message: format!(
                        "unknown setting \"{setting}\"; valid settings: {}",
                        SOURCE_SETTINGS.join(", ")
                    ),
                    option: setting,
                });
            }
            let spec = kind
                .options
                .iter()
                .find(|s| s.name == setting)
                .ok_or_else(|| EngineError::InvalidOption {
                    message: format!(
                        "setting \"{setting}\" applies to document sources only; connection {name} is of type {}",
                        kind.name
                    ),
                    option: setting.clone(),
                })?;
            let value = crate::options::validated(kind.name, spec, value.clone())?;
            record.options.insert(setting, value);
        }
        let factory = driver.source.ok_or_else(|| EngineError::NotASource {
            connection: record.name.clone(),
            kind: kind.name.into(),
        })?;
        Ok((factory, self.resolve_saved(&record)?))
    }

    /// Opens a saved connection as a source of change data capture.
    pub fn change_source(&self, name: &str) -> Result<Arc<dyn ChangeSource>, EngineError> {
        let record = self.catalog.connection(name)?;
        let (kind, driver) = available_type(&record.kind)?;
        let factory = driver.cdc.ok_or_else(|| EngineError::NotAChangeSource {
            connection: record.name.clone(),
            kind: kind.name.into(),
        })?;
        let resolved = self.resolve_saved(&record)?;
        Ok(factory(&resolved, self.timeout_for(&resolved)))
    }

    /// The options of the tables connection `name` creates as a destination
    /// (none for a type that is no destination).
    pub fn table_options(&self, name: &str) -> Result<&'static [TableOption], EngineError> {
        let record = self.catalog.connection(name)?;
        let (_, driver) = available_type(&record.kind)?;
        Ok(driver.destination.as_ref().map_or(&[], |d| d.table_options))
    }

    /// Opens a saved connection as a destination of ETL jobs.
    pub fn destination(&self, name: &str) -> Result<Arc<dyn Destination>, EngineError> {
        let record = self.catalog.connection(name)?;
        let (kind, driver) = available_type(&record.kind)?;
        let factory = driver
            .destination
            .as_ref()
            .ok_or_else(|| EngineError::NotADestination {
                connection: record.name.clone(),
                kind: kind.name.into(),
            })?;
        let resolved = self.resolve_saved(&record)?;
        let destination = (factory.open)(&resolved, self.timeout_for(&resolved), self.catalog.instance_id())?;
        Ok(Arc::new(ScrubbedDestination::new(destination, resolved.scrubber())))
    }

    fn timeout_for(&self, resolved: &ResolvedOptions) -> Duration {
        resolved
            .integer("connect_timeout")
            .map(|s| Duration::from_secs(s.unsigned_abs()))
            .unwrap_or(self.connect_timeout)
    }

    /// Refuses `SECRET name` references to inline secrets: those belong to
    /// the connection they were given in (and die with it).
    fn check_secret_references(&self, connection: &str, prepared: &PreparedOptions) -> Result<(), EngineError> {
        let referenced: Vec<&str> = prepared
            .options
            .values()
            .filter_map(|value| match value {
                OptionValue::Secret { name, owned: false } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if referenced.is_empty() {
            return Ok(());
        }
        let named = self.catalog.secrets()?;
        for secret in referenced {
            let is_named = named.iter().any(|s| s.name == secret);
            if !is_named && self.catalog.secret_value(secret).is_ok() {
                return Err(EngineError::ForeignSecret {
                    connection: connection.into(),
                    secret: secret.into(),
                });
            }
        }
        Ok(())
    }

    async fn check_record(&self, record: &ConnectionRecord) -> Result<(), EngineError> {
        let (kind, driver) = available_type(&record.kind)?;
        let resolved = self.resolve_saved(record)?;
        self.run_test(&record.name, driver, &resolved)
            .instrument(info_span!("test_connection", connection = %record.name, kind = kind.name))
            .await
    }

    /// A saved connection's options, refused when a path option names a
    /// file outside the allowed directories.
    fn resolve_saved(&self, record: &ConnectionRecord) -> Result<ResolvedOptions, EngineError> {
        self.allowed_paths.check_options(&record.options)?;
        options::resolve(&record.options, &[], &self.catalog, &self.secret_stores)
    }

    async fn check_live(
        &self,
        name: &str,
        (kind, driver): (&ConnectionType, &Driver),
        prepared: &PreparedOptions,
        validate: bool,
    ) -> Result<ConnectionStatus, EngineError> {
        self.allowed_paths.check_options(&prepared.options)?;
        if !validate {
            return Ok(ConnectionStatus::Unknown);
        }
        let resolved = options::resolve(
            &prepared.options,
            &prepared.inline_secrets,
            &self.catalog,
            &self.secret_stores,
        )?;
        self.run_test(name, driver, &resolved)
            .instrument(info_span!("test_connection", connection = name, kind = kind.name))
            .await?;
        Ok(ConnectionStatus::Ok)
    }

    async fn run_test(&self, name: &str, driver: &Driver, resolved: &ResolvedOptions) -> Result<(), EngineError> {
        driver
            .connector
            .test(resolved, self.timeout_for(resolved))
            .await
            .map_err(|failure| {
                let failure = ConnectFailure {
                    detail: resolved.scrubber().scrub(&failure.detail),
                    ..failure
                };
                warn!(connection = name, kind = ?failure.kind, detail = %failure.detail, "connection test failed");
                EngineError::Connect {
                    connection: name.into(),
                    failure,
                }
            })
    }
}

/// Names SQL already uses, and what each one is: a connection of that name
/// would be shadowed by it (or make `INTO name.table` ambiguous).
const RESERVED_NAMES: &[(&str, &str)] = &[
    (
        "sluice",
        "the database and its system tables (sluice.jobs, sluice.runs, ...)",
    ),
    ("warehouse", "the built-in local warehouse (warehouse.<table>)"),
    ("pg_catalog", "the built-in PostgreSQL system catalog schema"),
    ("information_schema", "the built-in information_schema"),
    ("public", "the default schema"),
];

/// Refuses a connection name that collides with a built-in name.
fn check_not_reserved(name: &str) -> Result<(), EngineError> {
    match RESERVED_NAMES
        .iter()
        .find(|(reserved, _)| name.eq_ignore_ascii_case(reserved))
    {
        Some((_, builtin)) => Err(EngineError::ReservedName {
            name: name.to_owned(),
            builtin,
        }),
        None => Ok(()),
    }
}

/// The type of that name and its driver; planned types are refused.
fn available_type(name: &str) -> Result<(&'static ConnectionType, &'static Driver), EngineError> {
    let kind = connectors::lookup(name)?;
    match &kind.driver {
        Some(driver) => Ok((kind, driver)),
        None => Err(EngineError::UnsupportedConnectionType {
            name: kind.name.into(),
            status: "planned",
        }),
    }
}

/// Options that say where a connection's secrets are sent.
const ENDPOINT_OPTIONS: &[&str] = &["host", "port", "user"];

/// Refuses an ALTER that moves a connection to another host, port or user
/// while keeping its stored secrets: they would be sent to the new endpoint
/// without the user having given them for it. `repeated` are the options
/// the ALTER sets.
fn check_secrets_follow_endpoint(
    old: &ConnectionRecord,
    new: &PreparedOptions,
    repeated: &[String],
) -> Result<(), EngineError> {
    let changed: Vec<String> = ENDPOINT_OPTIONS
        .iter()
        .filter(|name| old.options.get(**name) != new.options.get(**name))
        .map(|name| (*name).to_owned())
        .collect();
    let kept: Vec<String> = new
        .options
        .iter()
        .filter(|(name, value)| matches!(value, OptionValue::Secret { .. }) && !repeated.contains(name))
        .map(|(name, _)| name.clone())
        .collect();
    if changed.is_empty() || kept.is_empty() {
        return Ok(());
    }
    Err(EngineError::SecretNotRepeated {
        connection: old.name.clone(),
        changed,
        secrets: kept,
    })
}

#[cfg(test)]
mod tests {
    use sluice_catalog::MasterKey;

    use super::*;

    /// A connection is a source by its type alone; a path outside the
    /// allowed directories (checked without resolving secrets) is not one.
    #[tokio::test]
    async fn is_source_reads_the_record_and_the_type() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap();
        let key = MasterKey::from_hex(&"22".repeat(32)).unwrap();
        let catalog = Arc::new(Catalog::open(&dir.path().join("catalog"), key).unwrap());
        let connections = ConnectionManager::new(catalog.clone(), Duration::from_secs(10));
        connections
            .create(CreateConnection {
                name: "files".into(),
                type_name: "local".into(),
                options: BTreeMap::from([("path".to_owned(), OptionValue::Text(files.display().to_string()))]),
                if_not_exists: false,
                validate: false,
            })
            .await
            .unwrap();
        assert!(connections.is_source("files"));
        assert!(!connections.is_source("nothing"));
        let elsewhere = ConnectionManager::new(catalog, Duration::from_secs(10))
            .with_allowed_paths(AllowedPaths::new([dir.path().join("other")]));
        assert!(!elsewhere.is_source("files"));
    }
}
