//! A CDC micro-batch into BigQuery (docs/cdc.md, "BigQuery"): the batch's
//! change rows are held in memory until the commit, resolved to the rows
//! it stages ([`staged`](super::staged)), loaded into a per-batch staging
//! table through the same chunks and load jobs as any load
//! ([`BigQueryLoad`]), and applied by one query job: a transaction of one
//! `MERGE` (or, `HISTORY`, one `INSERT`) and the position record
//! ([`PositionTable`]), so the rows and the position commit together.
//!
//! Exactly once: the commit job's id is deterministic (table token,
//! catalog instance, run, hash of the batch's position), so a retry after
//! a lost answer finds the job and reads its outcome; a batch delivered
//! again after a crash is at or below the recorded position, which the
//! drain skips.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::view_definition::ViewDefinition;
use sluice_catalog::CdcMode;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;
use tracing::info;

use super::api::{Api, ApiError};
use super::change_sql::{self, CURRENT_VIEW_SUFFIX, ChangeSql};
use super::destination::RunNames;
use super::load::{BigQueryLoad, ChangeCommit};
use super::position::PositionTable;
use super::schema;
use super::staged::{Slice, Stager};
use crate::cdc::OP_COLUMN;
use crate::cdc::spill::{ChangePushError, Held, HeldChanges};
use crate::contract::{ChangeSpec, CommitReport, DestinationError, LoadTransaction, Position, WriteMode};

/// The label of a `<table>_current` view Sluice made, with the table's token.
const VIEW_LABEL: &str = "sluice_view_of";
/// How long a batch's staging table outlives a crash.
const STAGING_LIFETIME: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

pub(super) struct BigQueryChanges {
    api: Arc<Api>,
    table: String,
    target: Table,
    token: String,
    /// The run's names; each batch adds its own part.
    names: RunNames,
    spec: ChangeSpec,
    /// The change schema of the batch's rows, once one arrived.
    schema: Option<SchemaRef>,
    /// The batch's change rows, by key (spilled to disk past a budget).
    held: HeldChanges,
    /// The position tables (and views, by the columns they show) the
    /// destination made already.
    ensured: Ensured,
}

/// The names of the position tables whose objects a destination made.
pub(super) type Ensured = Arc<Mutex<HashSet<String>>>;

impl BigQueryChanges {
    pub(super) fn new(
        api: Arc<Api>,
        table: &str,
        target: Table,
        token: String,
        names: RunNames,
        spec: &ChangeSpec,
        ensured: Ensured,
    ) -> Self {
        Self {
            api,
            table: table.to_owned(),
            target,
            token,
            names,
            spec: spec.clone(),
            schema: None,
            held: HeldChanges::new(false),
            ensured,
        }
    }

    fn invalid(&self, reason: String) -> DestinationError {
        DestinationError::Changes {
            table: self.table.clone(),
            reason,
        }
    }

    /// The target table's columns but `_sluice_op`: what `<table>_current`
    /// shows.
    fn current_columns(&self) -> Vec<String> {
        self.target
            .schema
            .fields
            .iter()
            .flatten()
            .map(|f| f.name.clone())
            .filter(|name| name != OP_COLUMN)
            .collect()
    }

    /// `HISTORY` with a key: makes the `<table>_current` view, or brings
    /// the one Sluice made up to the table's columns (a column the job
    /// added since).
    async fn ensure_current_view(&self, key: &[String]) -> Result<(), DestinationError> {
        if self.spec.mode != CdcMode::History || key.is_empty() {
            return Ok(());
        }
        let settings = &self.api.settings;
        let columns = self.current_columns();
        let name = format!("{}{CURRENT_VIEW_SUFFIX}", self.table);
        let query = change_sql::current_view(&settings.project, &settings.dataset, &self.table, &columns, key);
        let view = Table {
            view: Some(ViewDefinition {
                query,
                use_legacy_sql: Some(false),
                user_defined_function_resources: None,
            }),
            labels: Some(HashMap::from([(VIEW_LABEL.to_owned(), self.token.clone())])),
            description: Some(format!(
                "The latest state of CDC HISTORY table {}, kept by Sluice",
                self.table
            )),
            // BigQuery derives a view's columns from its query.
            ..Table::new(&settings.project, &settings.dataset, &name, TableSchema::default())
        };
        let remote = |e: ApiError| e.into_destination(None);
        if !self.api.create_table(&view).await.map_err(remote)? {
            // Made by an earlier batch, unless someone else's.
            let existing = self.api.get_table(&name).await.map_err(remote)?;
            let Some(existing) =
                existing.filter(|t| t.labels.as_ref().and_then(|l| l.get(VIEW_LABEL)) == Some(&self.token))
            else {
                return Err(self.invalid(format!(
                    "a table or view \"{name}\" exists that Sluice did not make as this table's current state: \
                     rename or drop it"
                )));
            };
            if existing.view.as_ref().map(|v| &v.query) != view.view.as_ref().map(|v| &v.query) {
                let patch = Table {
                    view: view.view.clone(),
                    table_reference: existing.table_reference.clone(),
                    ..Table::default()
                };
                self.api.patch_table(&name, patch).await.map_err(remote)?;
            }
        }
        Ok(())
    }

    /// Makes the position table and (`HISTORY`) the current view unless
    /// this destination made them already (a run's batches share it).
    async fn ensure_objects(&self, positions: &PositionTable) -> Result<(), DestinationError> {
        // The view follows the table's columns: made again when they change.
        let made = format!("{}({})", positions.name, self.current_columns().join(","));
        if self
            .ensured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&made)
        {
            return Ok(());
        }
        positions.ensure(&self.api, &self.table).await?;
        self.ensure_current_view(&self.spec.key).await?;
        self.ensured.lock().unwrap_or_else(PoisonError::into_inner).insert(made);
        Ok(())
    }
}

/// Drops the `<table>_current` view of the table labelled `token`, if
/// Sluice made it for that table.
pub(super) async fn drop_current_view(api: &Api, table: &str, token: &str) -> Result<(), DestinationError> {
    let remote = |e: ApiError| e.into_destination(None);
    let name = format!("{table}{CURRENT_VIEW_SUFFIX}");
    let Some(view) = api.get_table(&name).await.map_err(remote)? else {
        return Ok(());
    };
    if view.labels.as_ref().and_then(|l| l.get(VIEW_LABEL)) == Some(&token.to_owned()) {
        api.delete_table(&name).await.map_err(remote)?;
    }
    Ok(())
}

#[async_trait]
impl LoadTransaction for BigQueryChanges {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let schema = self.schema.get_or_insert_with(|| batch.schema()).clone();
        let keys = Stager::new(&self.table, &schema, &self.spec)
            .and_then(|stager| stager.batch_keys(&batch))
            .map_err(|reason| self.invalid(reason))?;
        self.held.push(batch, &keys).map_err(|e| match e {
            ChangePushError::Held(e) => e,
            other => self.invalid(other.to_string()),
        })
    }

    async fn commit(mut self: Box<Self>, watermark: Option<String>) -> Result<CommitReport, DestinationError> {
        let position = watermark.ok_or_else(|| self.invalid("a change batch commits with its position".into()))?;
        // A batch of other tables' transactions only records its position.
        let stager = self
            .schema
            .as_ref()
            .map(|schema| Stager::new(&self.table, schema, &self.spec))
            .transpose()
            .map_err(|reason| self.invalid(reason))?;
        let staged = match &stager {
            Some(stager) => Some(stage(&mut self.held, stager).map_err(|e| self.invalid(e))?),
            None => None,
        };
        let (data, key) = stager
            .as_ref()
            .map(|stager| (stager.data_names(), stager.key_names()))
            .unwrap_or_default();
        let positions = PositionTable::of(&self.table, &self.token);
        self.ensure_objects(&positions).await?;

        let (api, table, token, spec) = (self.api.clone(), self.table.clone(), self.token.clone(), &self.spec);
        let names = self.names.clone().batch(&position);
        let dataset = api.settings.dataset.clone();
        let sql = ChangeSql {
            dataset: &dataset,
            table: &table,
            staging: &names.staging,
            data: &data,
            key: &key,
            soft_delete: spec.soft_delete,
        };
        let bound = Position::from_json(&position)
            .map_err(|reason| DestinationError::Changes {
                table: table.clone(),
                reason,
            })?
            .committed_bound();
        let mut statements = vec![positions.guard(&dataset, &bound)];
        if staged.as_ref().is_some_and(|s| s.truncated) {
            statements.push(sql.truncate());
        }
        let rows = staged.filter(|s| s.count > 0);
        if let Some(Spooled { fills, .. }) = &rows {
            statements.push(match spec.mode {
                CdcMode::Merge => sql.merge(*fills),
                CdcMode::History => sql.append_history(*fills),
            });
        }
        statements.extend(positions.record(&dataset, &names, &position, &bound));
        let script = change_sql::transaction(&statements);
        let staging_schema = match &stager {
            Some(stager) => {
                schema::table_schema(&stager.schema()).map_err(|reason| DestinationError::UnsupportedColumnType {
                    table: table.clone(),
                    reason,
                })?
            }
            None => TableSchema::default(),
        };
        let staging = Table {
            labels: Some(HashMap::from([("sluice_staging".to_owned(), token.clone())])),
            ..Table::new(&api.settings.project, &dataset, &names.staging, staging_schema)
        }
        .expiration_time(SystemTime::now() + STAGING_LIFETIME);
        let staged_rows = rows.as_ref().map_or(0, |rows| rows.count);
        let job = names.commit_job();
        let mut load = Box::new(BigQueryLoad::new(
            api,
            table.clone(),
            token,
            names,
            WriteMode::Append,
            None,
            Some(ChangeCommit::Script(script)),
            staging,
        ));
        if let Some(mut rows) = rows {
            for p in 0..rows.rows.partitions() {
                for batch in rows.rows.take(p)? {
                    load.write(batch).await?;
                }
            }
        }
        let report = load.commit(None).await?;
        info!(table = %table, job_id = %job, staged = staged_rows, position = %position, "applied a change batch in BigQuery");
        Ok(report)
    }

    async fn abort(self: Box<Self>) -> Result<(), DestinationError> {
        Ok(())
    }
}

/// A micro-batch's staged rows, in memory or spilled.
struct Spooled {
    rows: Held,
    count: usize,
    /// `MERGE`: a `truncate` empties the table before the rows apply.
    truncated: bool,
    /// Some row takes values from a stored row.
    fills: bool,
}

/// Stages the `held` change rows one partition group at a time (every
/// change of a key in one group), so that memory holds one group's.
fn stage(held: &mut HeldChanges, stager: &Stager) -> Result<Spooled, String> {
    let mut spooled = Spooled {
        rows: Held::new(),
        count: 0,
        truncated: false,
        fills: false,
    };
    for group in held.groups.of(held.rows.partitions()) {
        let mut batches = Vec::new();
        for &p in &group {
            batches.extend(held.rows.take(p).map_err(|e| e.to_string())?);
        }
        let slice = Slice {
            several: group.len() > 1,
            first: group[0] == 0,
        };
        let staged = stager.stage(&batches, slice)?;
        spooled.truncated |= staged.truncated;
        spooled.fills |= staged.fills;
        if let Some(rows) = staged.rows {
            let n = rows.num_rows();
            spooled.count += n;
            // One partition: staged rows need no routing.
            spooled
                .rows
                .push(rows, &vec![Vec::new(); n], &vec![false; n])
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(spooled)
}
