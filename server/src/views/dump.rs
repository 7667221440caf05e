//! `SHOW CREATE ALL [WITH STATE]`: one replayable script, one statement a
//! row, that recreates every secret, connection and job (and, with state,
//! each job's watermark). Secret values are never shown: each is a psql
//! variable (`:'name'`) that `psql -v name=... -f dump.sql` fills in, and
//! that fails clearly when it is not given.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use sluice_catalog::{Catalog, CatalogError, ConnectionRecord, OptionValue};

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

/// The statements that recreate the catalog's secrets, connections and
/// jobs; with `state`, each incremental job's watermark too.
pub fn create_all(catalog: &Catalog, state: bool) -> Result<RecordBatch, CatalogError> {
    let mut script = Vec::new();
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
}
