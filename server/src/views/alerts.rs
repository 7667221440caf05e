//! `sluice.alerts` / `SHOW ALERTS` and `sluice.alert_deliveries`.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_catalog::{Catalog, CatalogError};
use sluice_engine::alerts::shown_url;

use super::{batch, strings, text, timestamps, timestamptz};

/// `sluice.alerts` and `SHOW ALERTS`: the secret header's name and the
/// secret's name, never its value; the webhook's host only.
pub static ALERTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("name"),
        text("event"),
        text("target"),
        text("webhook"),
        text("secret_header"),
        text("secret"),
        timestamptz("created_at"),
    ]))
});

pub fn alerts(catalog: &Catalog) -> Result<RecordBatch, CatalogError> {
    let alerts = catalog.alerts()?;
    let webhooks: Vec<String> = alerts.iter().map(|a| shown_url(&a.webhook_url)).collect();
    let headers: Vec<_> = alerts.iter().map(|a| a.secret_header.as_ref()).collect();
    Ok(batch(
        &ALERTS,
        vec![
            strings(alerts.iter().map(|a| Some(a.name.as_str()))),
            strings(alerts.iter().map(|a| Some(a.event.as_sql()))),
            strings(alerts.iter().map(|a| a.target.as_deref())),
            strings(webhooks.iter().map(|w| Some(w.as_str()))),
            strings(headers.iter().map(|h| h.map(|h| h.header.as_str()))),
            strings(headers.iter().map(|h| h.map(|h| h.secret.as_str()))),
            timestamps(alerts.iter().map(|a| Some(a.created_at))),
        ],
    ))
}

/// `sluice.alert_deliveries`: every message and how its attempts went.
pub static ALERT_DELIVERIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        text("alert"),
        text("event"),
        text("subject"),
        Field::new("run_id", DataType::Int64, true),
        text("incident"),
        text("status"),
        Field::new("attempts", DataType::Int64, false),
        text("last_error"),
        timestamptz("created_at"),
        timestamptz("last_attempt_at"),
        timestamptz("finished_at"),
    ]))
});

pub fn alert_deliveries(catalog: &Catalog) -> Result<RecordBatch, CatalogError> {
    let all = catalog.deliveries()?;
    Ok(batch(
        &ALERT_DELIVERIES,
        vec![
            Arc::new(all.iter().map(|d| Some(d.id as i64)).collect::<Int64Array>()),
            strings(all.iter().map(|d| Some(d.alert.as_str()))),
            strings(all.iter().map(|d| Some(d.event.as_sql()))),
            strings(all.iter().map(|d| Some(d.subject.as_str()))),
            Arc::new(all.iter().map(|d| d.run_id.map(|id| id as i64)).collect::<Int64Array>()),
            strings(all.iter().map(|d| Some(d.incident.as_str()))),
            strings(all.iter().map(|d| Some(d.status.as_str()))),
            Arc::new(all.iter().map(|d| Some(i64::from(d.attempts))).collect::<Int64Array>()),
            strings(all.iter().map(|d| d.last_error.as_deref())),
            timestamps(all.iter().map(|d| Some(d.created_at))),
            timestamps(all.iter().map(|d| d.last_attempt_at)),
            timestamps(all.iter().map(|d| d.finished_at)),
        ],
    ))
}
