//! Alerts: `CREATE ALERT` checked and saved, and the notifier that turns run
//! outcomes and connection tests into webhook messages.
//!
//! Runs and tests only *report* to the [`AlertNotifier`] (a channel send,
//! never blocking). Its one worker task decides, in order, what each report
//! means: a first failure opens an incident (the catalog's
//! `alert_incidents`) and notifies `JOB FAILURE` / `CONNECTION FAILED`
//! alerts; further failures of a failing job or connection notify nothing;
//! the first success closes the incident and notifies `JOB RECOVERED` /
//! `CONNECTION RECOVERED` alerts. Each message is delivered by its own
//! task ([`webhook`]), with retries, every attempt recorded in
//! `alert_deliveries`; at start-up the deliveries a stop left pending are
//! started again.

mod webhook;

use std::sync::{Arc, Mutex};

use chrono::Utc;
use sluice_catalog::{
    AlertEvent, AlertRecord, Catalog, DeliveryRecord, DeliveryStatus, Incident, RunRecord, RunStatus, RunTrigger,
    SecretHeader, Subject,
};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::error::EngineError;
use webhook::Webhook;

pub use webhook::{check_url, shown_url};

/// A `CREATE ALERT` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAlert {
    pub name: String,
    pub event: AlertEvent,
    pub target: Option<String>,
    pub webhook_url: String,
    pub secret_header: Option<SecretHeader>,
    pub if_not_exists: bool,
}

/// Checks and saves an alert: the URL must be `https` (or `http` to this
/// machine), the header a valid HTTP header name, the target and the
/// secret must exist. Returns false when it existed and `IF NOT EXISTS`
/// was given.
pub fn create_alert(catalog: &Catalog, request: CreateAlert) -> Result<bool, EngineError> {
    check_url(&request.webhook_url)?;
    if let Some(header) = &request.secret_header {
        webhook::check_header_name(&header.header)?;
    }
    let record = AlertRecord {
        name: request.name,
        event: request.event,
        target: request.target,
        webhook_url: request.webhook_url,
        secret_header: request.secret_header,
        created_at: Utc::now(),
    };
    Ok(catalog.create_alert(&record, request.if_not_exists)?)
}

/// Deliveries kept in `alert_deliveries` unless told otherwise
/// (`--keep-alert-deliveries`); the oldest go as new ones come.
pub const DEFAULT_KEEP_DELIVERIES: usize = 10_000;

/// How patiently one message is delivered: five attempts over about 15
/// seconds, each attempt bounded by [`webhook::ATTEMPT_TIMEOUT`].
const DELIVERY_BACKOFF: Backoff = Backoff {
    attempts: 5,
    first_pause: std::time::Duration::from_secs(1),
    max_pause: std::time::Duration::from_secs(8),
    jitter: true,
};

/// Something alerts may be about.
#[derive(Debug)]
enum Report {
    RunFailed { job: String, run_id: u64, error: String },
    RunSucceeded { job: String, run_id: u64 },
    ConnectionFailed { connection: String, error: String },
    ConnectionOk { connection: String },
}

/// Takes reports of run outcomes and connection tests and sends the
/// messages alerts ask for, in the background.
pub struct AlertNotifier {
    reports: mpsc::UnboundedSender<Report>,
}

impl AlertNotifier {
    /// Starts the notifier's worker on the current tokio runtime, keeping
    /// the newest `keep_deliveries` deliveries; it first resumes the
    /// deliveries left pending when the server last stopped.
    pub fn start(catalog: Arc<Catalog>, keep_deliveries: usize) -> Arc<Self> {
        let (reports, receiver) = mpsc::unbounded_channel();
        let worker = Worker {
            catalog,
            keep_deliveries,
            webhook: Arc::new(Webhook::new(DELIVERY_BACKOFF)),
            last_id: Mutex::new(0),
        };
        tokio::spawn(worker.run(receiver));
        Arc::new(Self { reports })
    }

    /// A run ended. A failed scheduled run is reported by the scheduler
    /// once no retry follows ([`Self::run_failed`]), not here.
    pub fn run_ended(&self, run: &RunRecord) {
        match run.status {
            RunStatus::Succeeded => self.send(Report::RunSucceeded {
                job: run.job.clone(),
                run_id: run.id,
            }),
            RunStatus::Failed if !matches!(run.trigger, RunTrigger::Schedule | RunTrigger::Retry) => {
                self.run_failed(&run.job, run.id, run.error.as_deref().unwrap_or("unknown error"));
            }
            _ => {}
        }
    }

    /// A run of `job` failed and no retry follows.
    pub fn run_failed(&self, job: &str, run_id: u64, error: &str) {
        self.send(Report::RunFailed {
            job: job.into(),
            run_id,
            error: error.into(),
        });
    }

    /// A connection was tested: `error` is why it failed, `None` when it passed.
    pub fn connection_tested(&self, connection: &str, error: Option<&str>) {
        self.send(match error {
            Some(error) => Report::ConnectionFailed {
                connection: connection.into(),
                error: error.into(),
            },
            None => Report::ConnectionOk {
                connection: connection.into(),
            },
        });
    }

    fn send(&self, report: Report) {
        if self.reports.send(report).is_err() {
            warn!("the alert notifier has stopped; a run outcome or connection test goes unreported");
        }
    }
}

/// Decides what each report means and starts the deliveries.
struct Worker {
    catalog: Arc<Catalog>,
    keep_deliveries: usize,
    webhook: Arc<Webhook>,
    /// The last delivery id given out (ids are microseconds since the
    /// epoch, made unique).
    last_id: Mutex<u64>,
}

impl Worker {
    async fn run(self, mut receiver: mpsc::UnboundedReceiver<Report>) {
        if let Err(e) = self.resume() {
            warn!(error = %e, "could not resume the alert deliveries left pending");
        }
        while let Some(report) = receiver.recv().await {
            if let Err(e) = self.handle(report) {
                warn!(error = %e, "could not decide on alerts");
            }
        }
    }

    fn handle(&self, report: Report) -> Result<(), EngineError> {
        let catalog = &self.catalog;
        match report {
            Report::RunFailed { job, run_id, error } => {
                if catalog.incident(Subject::Job, &job)?.is_some() {
                    return Ok(());
                }
                let incident = Incident {
                    subject: Subject::Job,
                    key: format!("job/{job}/run/{run_id}"),
                    name: job,
                    opened_at: Utc::now(),
                    run_id: Some(run_id),
                };
                catalog.open_incident(&incident)?;
                self.notify(AlertEvent::JobFailure, &incident, Some(run_id), Some(error))
            }
            Report::RunSucceeded { job, run_id } => match catalog.close_incident(Subject::Job, &job)? {
                Some(incident) => self.notify(AlertEvent::JobRecovered, &incident, Some(run_id), None),
                None => Ok(()),
            },
            Report::ConnectionFailed { connection, error } => {
                if catalog.incident(Subject::Connection, &connection)?.is_some() {
                    return Ok(());
                }
                let opened_at = Utc::now();
                let incident = Incident {
                    subject: Subject::Connection,
                    key: format!("connection/{connection}/{}", opened_at.format("%Y%m%dT%H%M%S%.6fZ")),
                    name: connection,
                    opened_at,
                    run_id: None,
                };
                catalog.open_incident(&incident)?;
                self.notify(AlertEvent::ConnectionFailed, &incident, None, Some(error))
            }
            Report::ConnectionOk { connection } => match catalog.close_incident(Subject::Connection, &connection)? {
                Some(incident) => self.notify(AlertEvent::ConnectionRecovered, &incident, None, None),
                None => Ok(()),
            },
        }
    }

    /// Starts one delivery per alert that wants `event` about the incident.
    fn notify(
        &self,
        event: AlertEvent,
        incident: &Incident,
        run_id: Option<u64>,
        error: Option<String>,
    ) -> Result<(), EngineError> {
        for alert in self.catalog.alerts()? {
            if !alert.matches(event, &incident.name) {
                continue;
            }
            let delivery = DeliveryRecord {
                id: self.next_id(),
                alert: alert.name.clone(),
                event,
                subject: incident.name.clone(),
                run_id,
                incident: incident.key.clone(),
                error: error.clone(),
                attempts: 0,
                status: DeliveryStatus::Pending,
                last_error: None,
                created_at: Utc::now(),
                last_attempt_at: None,
                finished_at: None,
            };
            self.catalog.add_delivery(&delivery, self.keep_deliveries)?;
            self.start_delivery(alert, delivery);
        }
        Ok(())
    }

    /// Starts again the deliveries that were queued or retrying when the
    /// server stopped, each with a full round of attempts; one whose alert
    /// is gone is recorded as failed.
    fn resume(&self) -> Result<(), EngineError> {
        let alerts = self.catalog.alerts()?;
        for mut delivery in self.catalog.pending_deliveries()? {
            match alerts.iter().find(|a| a.name == delivery.alert) {
                Some(alert) => {
                    info!(alert = %alert.name, incident = %delivery.incident, "resuming an alert delivery left pending");
                    self.start_delivery(alert.clone(), delivery);
                }
                None => {
                    delivery.status = DeliveryStatus::Failed;
                    delivery.last_error = Some("the alert was dropped before its message was delivered".into());
                    delivery.finished_at = Some(Utc::now());
                    self.catalog.update_delivery(&delivery)?;
                }
            }
        }
        Ok(())
    }

    /// Delivers in a task of its own.
    fn start_delivery(&self, alert: AlertRecord, delivery: DeliveryRecord) {
        let webhook = self.webhook.clone();
        let catalog = self.catalog.clone();
        tokio::spawn(async move { webhook.deliver(&catalog, &alert, delivery).await });
    }

    fn next_id(&self) -> u64 {
        let now = u64::try_from(Utc::now().timestamp_micros()).unwrap_or(0);
        let mut last = self.last_id.lock().unwrap_or_else(|p| p.into_inner());
        *last = now.max(*last + 1);
        *last
    }
}
