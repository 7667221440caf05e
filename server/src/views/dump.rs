//! `SHOW CREATE ALL [WITH STATE]`: one replayable script, one statement a
//! row, that recreates every role and grant, secret, connection, job (and,
//! with state, each job's watermark) and alert. Secret values and webhook
//! URLs are never shown: each is a psql variable (`:'name'`) that
//! `psql -v name=... -f dump.sql` fills in, and that fails clearly when it
//! is not given. Role passwords are not dumped at all: only their SCRAM
//! verifiers are stored, and those are not shown either.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use sluice_catalog::{AlertRecord, Catalog, CatalogError, ConnectionRecord, OptionValue, RoleRecord};

use super::{batch, create_job_sql, quote_ident, strings, text};

/// `SHOW CREATE ALL`: the script, a statement a row.
pub static SCRIPT: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::new(vec![text("statement")])));

/// The psql variable that stands for a secret: its name with every
/// character psql does not take in a variable name made `_`.
fn variable(secret: &str) -> String {
    secret
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// `CREATE CONNECTION` (`SHOW CREATE CONNECTION`) with an inline secret as
/// a psql variable, so that the statement replays with `psql -v`.
pub fn connection_sql(record: &ConnectionRecord) -> String {
    let options: Vec<String> = record
        .options
        .iter()
        .map(|(key, value)| match value {
            OptionValue::Secret { name, owned: true } => format!("{key} :'{}'", variable(name)),
            other => format!("{key} {other}"),
        })
        .collect();
    format!(
        "CREATE CONNECTION {} TYPE {} OPTIONS ({});",
        quote_ident(&record.name),
        record.kind,
        options.join(", ")
    )
}

/// `CREATE ROLE` without a password: the catalog keeps only its verifier,
/// which is not shown.
fn role_sql(role: &RoleRecord) -> String {
    let login = if role.login { "LOGIN" } else { "NOLOGIN" };
    format!("CREATE ROLE {} {login};", quote_ident(&role.name))
}

/// The psql variable that stands for an alert's webhook URL.
fn webhook_variable(alert: &str) -> String {
    variable(&format!("{alert}_webhook"))
}

/// `CREATE ALERT` with its webhook URL as a psql variable (a webhook's path
/// is often its credential) and its secret header naming its secret.
fn alert_sql(alert: &AlertRecord) -> String {
    let target = alert
        .target
        .as_ref()
        .map_or_else(String::new, |t| format!(" FOR {}", quote_ident(t)));
    let header = alert.secret_header.as_ref().map_or_else(String::new, |h| {
        format!(
            " WITH (secret_header = '{}', secret = {})",
            h.header.replace('\'', "''"),
            quote_ident(&h.secret)
        )
    });
    format!(
        "CREATE ALERT {} ON {}{target} NOTIFY WEBHOOK :'{}'{header};",
        quote_ident(&alert.name),
        alert.event.as_sql(),
        webhook_variable(&alert.name)
    )
}

/// The statements that recreate the database's grants, secrets,
/// connections, jobs and alerts, and (in the default database, as roles
/// are server-wide) the roles; with `state`, each incremental job's
/// watermark too.
pub fn create_all(catalog: &Catalog, state: bool) -> Result<RecordBatch, CatalogError> {
    let mut script = Vec::new();
    if catalog.namespace_name() == sluice_catalog::DEFAULT_NAMESPACE {
        for role in catalog.roles()? {
            script.push(role_sql(&role));
        }
    }
    let database = catalog.namespace_name();
    for grant in catalog.grants()?.into_iter().filter(|g| g.database == database) {
        script.push(format!(
            "GRANT {} ON DATABASE {} TO {};",
            grant.privilege.as_sql(),
            quote_ident(&grant.database),
            quote_ident(&grant.role)
        ));
    }
    for secret in catalog.secrets()? {
        script.push(match &secret.external {
            Some(external) => format!("CREATE SECRET {} {};", quote_ident(&secret.name), external.to_sql()),
            None => format!(
                "CREATE SECRET {} AS :'{}';",
                quote_ident(&secret.name),
                variable(&secret.name)
            ),
        });
    }
    for connection in catalog.connections()? {
        script.push(connection_sql(&connection));
    }
    for job in catalog.jobs()? {
        script.push(create_job_sql(&job));
        if job.paused {
            script.push(format!("ALTER ETL JOB {} PAUSE;", quote_ident(&job.name)));
        }
        if state && let Some(watermark) = catalog.watermark(&job.name)? {
            script.push(format!(
                "ALTER ETL JOB {} SET WATERMARK '{}';",
                quote_ident(&job.name),
                watermark.value.replace('\'', "''")
            ));
        }
    }
    for alert in catalog.alerts()? {
        script.push(alert_sql(&alert));
    }
    Ok(batch(&SCRIPT, vec![strings(script.iter().map(|s| Some(s.as_str())))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_become_psql_variables() {
        assert_eq!(variable("shop/password"), "shop_password");
        assert_eq!(variable("pg_pass"), "pg_pass");
    }

    #[test]
    fn an_alert_replays_as_it_was_created() {
        let alert = AlertRecord {
            name: "Team Pager".into(),
            event: sluice_catalog::AlertEvent::JobFailure,
            target: Some("orders".into()),
            webhook_url: "https://hooks.example.com/services/T0/B0/x".into(),
            secret_header: Some(sluice_catalog::SecretHeader {
                header: "X-Token".into(),
                secret: "hook_token".into(),
            }),
            created_at: chrono::Utc::now(),
        };
        let sql = alert_sql(&alert);
        assert!(!sql.contains("/services/"), "{sql}");
        let replayed = sql.replace(":'Team_Pager_webhook'", &format!("'{}'", alert.webhook_url));
        let crate::statements::SluiceStatement::CreateAlert(parsed) =
            crate::statements::parse_sluice(&replayed).unwrap()
        else {
            panic!("{replayed} is not CREATE ALERT");
        };
        assert_eq!(
            (
                parsed.name,
                parsed.event,
                parsed.target,
                parsed.webhook_url,
                parsed.secret_header
            ),
            (
                alert.name,
                alert.event,
                alert.target,
                alert.webhook_url,
                alert.secret_header
            )
        );
    }
}
