//! Webhook messages: the Slack-compatible JSON payload and its delivery
//! with retries, each attempt recorded with the delivery.

use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use sluice_catalog::{AlertEvent, AlertRecord, Catalog, DeliveryRecord, DeliveryStatus, Subject};
use tracing::{info, warn};
use url::{Host, Url};

use crate::backoff::Backoff;
use crate::error::EngineError;

/// The longest one attempt may take, connecting included.
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Characters of a failed response's body kept in the delivery's error.
const BODY_EXCERPT: usize = 200;

/// Checks a webhook URL: `https`, or `http` to this machine (a local relay).
pub fn check_url(url: &str) -> Result<(), EngineError> {
    let invalid = |why: String| EngineError::InvalidAlert {
        message: format!("invalid webhook URL for the alert: {why}"),
    };
    let parsed = Url::parse(url).map_err(|e| invalid(format!("{e}; write it as 'https://host/path'")))?;
    let local = match parsed.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err(invalid("it names no host".into())),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if local => Ok(()),
        "http" => Err(invalid(
            "plain http is allowed only to this machine (localhost); use https".into(),
        )),
        other => Err(invalid(format!("scheme \"{other}\" is not http or https"))),
    }
}

/// A webhook URL as it may be shown: scheme, host and port only, since
/// the path and query of a webhook (Slack's, say) are often its credential.
pub fn shown_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) => {
            let port = parsed.port().map_or_else(String::new, |p| format!(":{p}"));
            let host = parsed.host_str().unwrap_or_default();
            let hidden = parsed.path() != "/" || parsed.query().is_some();
            format!("{}://{host}{port}/{}", parsed.scheme(), if hidden { "…" } else { "" })
        }
        Err(_) => "…".into(),
    }
}

/// Checks the name of the secret header.
pub(super) fn check_header_name(name: &str) -> Result<(), EngineError> {
    HeaderName::from_bytes(name.as_bytes())
        .map(drop)
        .map_err(|_| EngineError::InvalidAlert {
            message: format!("secret_header \"{name}\" is not a valid HTTP header name"),
        })
}

/// The JSON body of a delivery's message: Slack's `text`, plus the same
/// facts as fields.
pub(super) fn payload(delivery: &DeliveryRecord) -> Value {
    let subject = &delivery.subject;
    let error = delivery.error.as_deref().unwrap_or("unknown error");
    let (text, sql) = match (delivery.event, delivery.run_id) {
        (AlertEvent::ConnectionFailed | AlertEvent::ConnectionRecovered, _) => (
            match delivery.event {
                AlertEvent::ConnectionRecovered => format!("Sluice: connection \"{subject}\" recovered"),
                _ => format!("Sluice: connection \"{subject}\" failed its test: {error}"),
            },
            format!("SELECT * FROM sluice.connections WHERE name = {}", sql_literal(subject)),
        ),
        (event, run_id) => {
            let run = run_id.map_or_else(String::new, |id| format!(" (run {id})"));
            let text = match event {
                AlertEvent::JobRecovered => format!("Sluice: ETL job \"{subject}\" recovered{run}"),
                _ => format!("Sluice: ETL job \"{subject}\" failed{run}: {error}"),
            };
            let sql = match run_id {
                Some(id) => format!("SELECT * FROM sluice.runs WHERE run_id = {id}"),
                None => format!("SELECT * FROM sluice.runs WHERE job = {}", sql_literal(subject)),
            };
            (text, sql)
        }
    };
    let (job, connection) = match delivery.event.subject() {
        Subject::Connection => (None, Some(subject)),
        Subject::Job => (Some(subject), None),
    };
    json!({
        "text": text,
        "event": delivery.event.as_str(),
        "alert": delivery.alert,
        "job": job,
        "connection": connection,
        "run_id": delivery.run_id,
        "error": delivery.error,
        "incident": delivery.incident,
        "sql": sql,
    })
}

fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Why one attempt failed; never holds the URL or a secret.
#[derive(Debug)]
struct AttemptError {
    message: String,
    retryable: bool,
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Sends messages to webhooks.
pub(super) struct Webhook {
    client: reqwest::Client,
    backoff: Backoff,
}

impl Webhook {
    pub fn new(backoff: Backoff) -> Self {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the webhook client's settings are valid");
        Self { client, backoff }
    }

    /// Delivers `delivery`'s message to the alert's webhook, retrying what
    /// is worth retrying, and records every attempt and the outcome in it.
    pub async fn deliver(&self, catalog: &Catalog, alert: &AlertRecord, delivery: DeliveryRecord) {
        let body = payload(&delivery);
        let delivery = Mutex::new(delivery);
        let result = self
            .backoff
            .run(
                "alert webhook",
                |e: &AttemptError| e.retryable,
                || self.attempt(catalog, alert, &body, &delivery),
            )
            .await;
        let mut delivery = delivery.into_inner().unwrap_or_else(|p| p.into_inner());
        delivery.finished_at = Some(Utc::now());
        match result {
            Ok(()) => {
                delivery.status = DeliveryStatus::Delivered;
                info!(alert = %alert.name, incident = %delivery.incident, attempts = delivery.attempts, "alert delivered");
            }
            Err(e) => {
                delivery.status = DeliveryStatus::Failed;
                warn!(alert = %alert.name, incident = %delivery.incident, attempts = delivery.attempts, error = %e, "alert not delivered");
            }
        }
        save(catalog, &delivery);
    }

    /// One POST; the delivery records it.
    async fn attempt(
        &self,
        catalog: &Catalog,
        alert: &AlertRecord,
        body: &Value,
        delivery: &Mutex<DeliveryRecord>,
    ) -> Result<(), AttemptError> {
        let result = self.post(catalog, alert, body).await;
        let mut record = delivery.lock().unwrap_or_else(|p| p.into_inner());
        record.attempts += 1;
        record.last_attempt_at = Some(Utc::now());
        record.last_error = result.as_ref().err().map(ToString::to_string);
        save(catalog, &record);
        result
    }

    async fn post(&self, catalog: &Catalog, alert: &AlertRecord, body: &Value) -> Result<(), AttemptError> {
        let mut request = self.client.post(&alert.webhook_url).json(body);
        if let Some(header) = &alert.secret_header {
            let value = catalog.secret_value(&header.secret).map_err(|e| AttemptError {
                message: format!(
                    "the value of secret_header \"{}\" could not be read: {e}",
                    header.header
                ),
                retryable: false,
            })?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| AttemptError {
                message: format!(
                    "the value of secret_header \"{}\" is not a valid HTTP header value",
                    header.header
                ),
                retryable: false,
            })?;
            value.set_sensitive(true);
            request = request.header(header.header.as_str(), value);
        }
        let response = request.send().await.map_err(|e| AttemptError {
            message: format!("could not reach the webhook: {}", e.without_url()),
            retryable: true,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let excerpt: String = text.chars().take(BODY_EXCERPT).collect();
        Err(AttemptError {
            message: format!("the webhook answered {status}: {excerpt}")
                .trim_end()
                .to_owned(),
            retryable: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
        })
    }
}

fn save(catalog: &Catalog, delivery: &DeliveryRecord) {
    if let Err(e) = catalog.update_delivery(delivery) {
        warn!(alert = %delivery.alert, error = %e, "could not record an alert delivery");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_https_or_local_http() {
        for good in [
            "https://hooks.slack.com/services/T0/B0/x",
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://[::1]:80/",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("http://hooks.example.com/x", "only to this machine"),
            ("ftp://example.com/x", "scheme \"ftp\""),
            ("not a url", "https://host/path"),
        ] {
            let message = check_url(bad).unwrap_err().to_string();
            assert!(message.contains(why), "{bad}: {message}");
        }
    }

    #[test]
    fn shown_urls_keep_only_the_host() {
        assert_eq!(
            shown_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(shown_url("http://127.0.0.1:9000/"), "http://127.0.0.1:9000/");
        assert_eq!(shown_url("https://h/?token=x"), "https://h/…");
    }

    #[test]
    fn the_payload_has_slack_text_and_the_run_to_look_at() {
        let delivery = DeliveryRecord {
            id: 1,
            alert: "pager".into(),
            event: AlertEvent::JobFailure,
            subject: "orders".into(),
            run_id: Some(42),
            incident: "job/orders/run/42".into(),
            error: Some("table \"orders\" does not exist".into()),
            attempts: 0,
            status: DeliveryStatus::Pending,
            last_error: None,
            created_at: Utc::now(),
            last_attempt_at: None,
            finished_at: None,
        };
        let payload = payload(&delivery);
        assert_eq!(
            payload["text"],
            "Sluice: ETL job \"orders\" failed (run 42): table \"orders\" does not exist"
        );
        assert_eq!(payload["job"], "orders");
        assert_eq!(payload["run_id"], 42);
        assert_eq!(payload["sql"], "SELECT * FROM sluice.runs WHERE run_id = 42");
        assert_eq!(payload["connection"], Value::Null);
    }
}
