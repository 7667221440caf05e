//! Alerts: webhooks told when a job or a connection fails or recovers,
//! the open incidents that keep them to one message per incident,
//! and a record of every delivery.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::connection::ConnectionRecord;
use crate::error::{CatalogError, ObjectKind, Result};
use crate::job::JobRecord;
use crate::record::Record;
use crate::secret::SecretRecord;

/// What an alert watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A run failed and no retry follows.
    JobFailure,
    /// The first successful run after a failure.
    JobRecovered,
    /// A connection's test failed.
    ConnectionFailed,
    /// The first passed test of a connection after a failure.
    ConnectionRecovered,
}

impl AlertEvent {
    /// The event as SQL writes it (`JOB FAILURE`).
    pub fn as_sql(self) -> &'static str {
        match self {
            AlertEvent::JobFailure => "JOB FAILURE",
            AlertEvent::JobRecovered => "JOB RECOVERED",
            AlertEvent::ConnectionFailed => "CONNECTION FAILED",
            AlertEvent::ConnectionRecovered => "CONNECTION RECOVERED",
        }
    }

    /// The lower-case name shown in system tables and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::JobFailure => "job_failure",
            AlertEvent::JobRecovered => "job_recovered",
            AlertEvent::ConnectionFailed => "connection_failed",
            AlertEvent::ConnectionRecovered => "connection_recovered",
        }
    }

    /// What the event is about: a job or a connection.
    pub fn subject(self) -> Subject {
        match self {
            AlertEvent::JobFailure | AlertEvent::JobRecovered => Subject::Job,
            AlertEvent::ConnectionFailed | AlertEvent::ConnectionRecovered => Subject::Connection,
        }
    }
}

impl fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_sql())
    }
}

/// The kind of object an incident is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Job,
    Connection,
}

/// A header whose value is a named secret, sent with every delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHeader {
    /// The HTTP header's name.
    pub header: String,
    /// The secret (`CREATE SECRET`) holding its value.
    pub secret: String,
}

/// `CREATE ALERT name ON event [FOR target] NOTIFY WEBHOOK 'url' [WITH (...)]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub name: String,
    pub event: AlertEvent,
    /// The one job or connection watched; `None` watches all of them.
    pub target: Option<String>,
    pub webhook_url: String,
    pub secret_header: Option<SecretHeader>,
    pub created_at: DateTime<Utc>,
}

impl AlertRecord {
    /// Whether this alert wants `event` about `subject_name`.
    pub fn matches(&self, event: AlertEvent, subject_name: &str) -> bool {
        self.event == event && self.target.as_deref().is_none_or(|t| t == subject_name)
    }
}

impl Record for AlertRecord {
    const FAMILY: &'static str = "alerts";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.name.clone()
    }
}

/// A job or connection that is failing: opened by the first failure (which
/// is notified), closed by the next success (which notifies recovery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub subject: Subject,
    pub name: String,
    /// Names the incident in every delivery about it.
    pub key: String,
    pub opened_at: DateTime<Utc>,
    /// The failed run that opened it (jobs only).
    pub run_id: Option<u64>,
}

impl Record for Incident {
    const FAMILY: &'static str = "alert_incidents";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        incident_key(self.subject, &self.name)
    }
}

/// The key of a job's or connection's incident.
pub(crate) fn incident_key(subject: Subject, name: &str) -> String {
    match subject {
        Subject::Job => format!("job\0{name}"),
        Subject::Connection => format!("connection\0{name}"),
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Being attempted.
    Pending,
    Delivered,
    /// Every attempt failed (or one failed in a way not worth repeating).
    Failed,
}

impl DeliveryStatus {
    /// The lower-case name shown in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One message of one alert to its webhook, with every attempt counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: u64,
    pub alert: String,
    pub event: AlertEvent,
    /// The job or connection the message is about.
    pub subject: String,
    pub run_id: Option<u64>,
    /// The incident's key (see [`Incident`]).
    pub incident: String,
    /// The failure the message tells of (a failed run's or test's error),
    /// kept so that a delivery still pending at a restart is sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub attempts: u32,
    pub status: DeliveryStatus,
    /// Why the last attempt failed; never holds a secret.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Record for DeliveryRecord {
    const FAMILY: &'static str = "alert_deliveries";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        format!("{:020}", self.id)
    }
}

impl Catalog {
    /// Saves a new alert. Its target and secret must exist. Returns false
    /// when the name was taken and `if_not_exists` was given.
    pub fn create_alert(&self, alert: &AlertRecord, if_not_exists: bool) -> Result<bool> {
        let _guard = self.lock();
        if self.store.get::<AlertRecord>(&alert.name)?.is_some() {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(CatalogError::AlreadyExists {
                    kind: ObjectKind::Alert,
                    name: alert.name.clone(),
                })
            };
        }
        if let Some(target) = &alert.target {
            let kind = match alert.event.subject() {
                Subject::Job if self.store.get::<JobRecord>(target)?.is_none() => Some(ObjectKind::Job),
                Subject::Connection if self.store.get::<ConnectionRecord>(target)?.is_none() => {
                    Some(ObjectKind::Connection)
                }
                _ => None,
            };
            if let Some(kind) = kind {
                return Err(CatalogError::NotFound {
                    kind,
                    name: target.clone(),
                });
            }
        }
        if let Some(header) = &alert.secret_header {
            match self.store.get::<SecretRecord>(&header.secret)? {
                Some(secret) if secret.owner.is_none() => {}
                _ => {
                    return Err(CatalogError::NotFound {
                        kind: ObjectKind::Secret,
                        name: header.secret.clone(),
                    });
                }
            }
        }
        let mut batch = self.store.batch();
        batch.put(alert);
        batch.commit()?;
        Ok(true)
    }

    /// Drops an alert; its deliveries stay. False when it did not exist
    /// and `if_exists` was given.
    pub fn drop_alert(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _guard = self.lock();
        if self.store.get::<AlertRecord>(name)?.is_none() {
            return if if_exists {
                Ok(false)
            } else {
                Err(CatalogError::NotFound {
                    kind: ObjectKind::Alert,
                    name: name.into(),
                })
            };
        }
        let mut batch = self.store.batch();
        batch.delete::<AlertRecord>(name);
        batch.commit()?;
        Ok(true)
    }

    /// Every alert, by name.
    pub fn alerts(&self) -> Result<Vec<AlertRecord>> {
        self.store.scan()
    }

    /// The alerts whose secret header uses `secret`.
    pub fn alerts_using_secret(&self, secret: &str) -> Result<Vec<String>> {
        Ok(self
            .alerts()?
            .into_iter()
            .filter(|a| a.secret_header.as_ref().is_some_and(|h| h.secret == secret))
            .map(|a| a.name)
            .collect())
    }

    /// The open incident of a job or connection, if it is failing.
    pub fn incident(&self, subject: Subject, name: &str) -> Result<Option<Incident>> {
        self.store.get(&incident_key(subject, name))
    }

    /// Records an incident as open.
    pub fn open_incident(&self, incident: &Incident) -> Result<()> {
        let mut batch = self.store.batch();
        batch.put(incident);
        batch.commit()
    }

    /// Closes the open incident of a job or connection; returns it, or
    /// `None` when there was none.
    pub fn close_incident(&self, subject: Subject, name: &str) -> Result<Option<Incident>> {
        let Some(incident) = self.incident(subject, name)? else {
            return Ok(None);
        };
        let mut batch = self.store.batch();
        batch.delete::<Incident>(&incident_key(subject, name));
        batch.commit()?;
        Ok(Some(incident))
    }

    /// Saves a new delivery and deletes the oldest ones beyond the newest
    /// `keep` (at least 1: the new one).
    pub fn add_delivery(&self, delivery: &DeliveryRecord, keep: usize) -> Result<()> {
        let _guard = self.lock();
        let mut batch = self.store.batch();
        batch.put(delivery);
        let stored = self.store.scan::<DeliveryRecord>()?;
        let older = stored.iter().filter(|d| d.id != delivery.id);
        for old in older.take(stored.len().saturating_sub(keep.max(1) - 1)) {
            batch.delete::<DeliveryRecord>(&old.key());
        }
        batch.commit()
    }

    /// Saves an attempt or the outcome of a delivery; one deleted as too
    /// old meanwhile stays deleted.
    pub fn update_delivery(&self, delivery: &DeliveryRecord) -> Result<()> {
        let _guard = self.lock();
        if self.store.get::<DeliveryRecord>(&delivery.key())?.is_none() {
            return Ok(());
        }
        let mut batch = self.store.batch();
        batch.put(delivery);
        batch.commit()
    }

    /// Every kept delivery, oldest first.
    pub fn deliveries(&self) -> Result<Vec<DeliveryRecord>> {
        self.store.scan()
    }

    /// The deliveries still pending: being attempted, or (read at start-up)
    /// cut short by a stop.
    pub fn pending_deliveries(&self) -> Result<Vec<DeliveryRecord>> {
        Ok(self
            .deliveries()?
            .into_iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
            .collect())
    }
}
