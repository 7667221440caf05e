//! BigQuery as a [`Destination`]: tables set up front (dataset, schema,
//! partitioning, clustering), loads through a per-run staging table and one
//! copy job whose deterministic id records the commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::scalar::ScalarValue;
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use tracing::info;

use super::api::{Api, ApiError, job_error};
use super::layout::TableLayout;
use super::load::{BigQueryLoad, ChangeCommit, WindowReplace};
use super::partition::whole_partition;
use super::position::{PositionTable, Recorded};
use super::source::DIALECT;
use super::{Session, Settings};
use super::{changes, keys, record, schema, ship};
use crate::cdc::{COMMIT_TS_COLUMN, POSITION_COLUMN};
use crate::contract::{
    ChangeSpec, CommitState, Destination, DestinationError, Dialect, LoadTransaction, QueryBuilder, ResolvedOptions,
    TableSetup, TableSpec, TextRows, WriteMode,
};

/// The table label holding the token that makes Sluice's job ids for the
/// table unique (a re-created table gets a new one).
const TOKEN_LABEL: &str = "sluice_token";
/// How long a staging table outlives a crash before BigQuery deletes it.
const STAGING_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// BigQuery clusters on at most this many columns.
const MAX_CLUSTER_COLUMNS: usize = 4;

/// Opens a BigQuery connection as a destination; signing in waits for the
/// first call.
pub(super) fn open(
    options: &ResolvedOptions,
    timeout: Duration,
    instance: &str,
) -> Result<Arc<dyn Destination>, DestinationError> {
    let session = Session::new(options, timeout);
    if let Err(message) = &session.settings {
        return Err(DestinationError::InvalidOption {
            option: "credentials",
            message: message.clone(),
        });
    }
    Ok(Arc::new(BigQueryDestination {
        session,
        instance: instance.to_owned(),
        ensured: changes::Ensured::default(),
    }))
}

struct BigQueryDestination {
    session: Session,
    /// The catalog's instance id, in every job and staging name: run ids
    /// start again in a new catalog, BigQuery job ids are kept for months.
    instance: String,
    /// The CDC position tables (and views) made, so that a run's batches
    /// make them once.
    ensured: changes::Ensured,
}

/// `table` as it can stand in the name of a job or of a table of
/// Sluice's own: ASCII letters and digits, `_` for anything else, at most
/// 64 characters.
pub(super) fn readable(table: &str) -> String {
    table
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect()
}

/// The names and job ids of one run's load of a table.
#[derive(Clone)]
pub(super) struct RunNames {
    /// The per-run table the chunks load into.
    pub staging: String,
    /// `sluice_<table>_<token>_<instance>_r<run>`: chunk jobs add `_c<n>`,
    /// the commit copy job adds `_commit`.
    pub job_prefix: String,
    /// The catalog's instance id and the run's id.
    pub instance: String,
    pub run_id: u64,
}

impl RunNames {
    /// The names of run `run_id` of catalog `instance` into the table
    /// labelled `token`: unique as long as BigQuery remembers job ids.
    pub(super) fn new(table: &str, token: &str, instance: &str, run_id: u64) -> Self {
        let readable = readable(table);
        Self {
            staging: format!("_sluice_staging_{token}_{instance}_r{run_id}"),
            job_prefix: format!("sluice_{readable}_{token}_{instance}_r{run_id}"),
            instance: instance.to_owned(),
            run_id,
        }
    }

    /// The names of the change batch of this run that commits `position`
    /// (a run of a continuous CDC job commits many): `_b<hash>` added.
    pub(super) fn batch(self, position: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, position.as_bytes());
        let hash: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            staging: format!("{}_b{hash}", self.staging),
            job_prefix: format!("{}_b{hash}", self.job_prefix),
            ..self
        }
    }

    pub(super) fn chunk_job(&self, chunk: usize) -> String {
        format!("{}_c{chunk}", self.job_prefix)
    }

    pub(super) fn commit_job(&self) -> String {
        format!("{}_commit", self.job_prefix)
    }
}

impl BigQueryDestination {
    async fn api(&self) -> Result<Arc<Api>, DestinationError> {
        self.session
            .api()
            .await
            .map_err(|failure| ApiError::from_connect(failure).into_destination(None))
    }

    /// [`Self::table_and_token`] of a table that must exist.
    async fn existing_table(&self, api: &Api, name: &str) -> Result<(Table, String), DestinationError> {
        self.table_and_token(api, name)
            .await?
            .ok_or_else(|| DestinationError::TableNotFound(name.into()))
    }

    /// The table and its job-id token, labelling an adopted table that has none.
    async fn table_and_token(&self, api: &Api, name: &str) -> Result<Option<(Table, String)>, DestinationError> {
        let remote = |e: ApiError| e.into_destination(None);
        let Some(table) = api.get_table(name).await.map_err(remote)? else {
            return Ok(None);
        };
        if let Some(token) = table.labels.as_ref().and_then(|l| l.get(TOKEN_LABEL)) {
            let token = token.clone();
            return Ok(Some((table, token)));
        }
        let token = new_token();
        let mut labels = table.labels.clone().unwrap_or_default();
        labels.insert(TOKEN_LABEL.into(), token.clone());
        let patch = Table {
            labels: Some(labels),
            table_reference: table.table_reference.clone(),
            ..Table::default()
        };
        api.patch_table(name, patch).await.map_err(remote)?;
        Ok(Some((table, token)))
    }

    /// The table a job's spec asks for.
    fn new_table(
        settings: &Settings,
        spec: &TableSpec,
        schema: gcp_bigquery_client::model::table_schema::TableSchema,
    ) -> Result<Table, DestinationError> {
        let invalid = |reason: String| DestinationError::InvalidLayout {
            table: spec.name.clone(),
            reason,
        };
        let mut table = Table::new(&settings.project, &settings.dataset, &spec.name, schema)
            .description(&format!("Loaded by Sluice ETL job {}", spec.job))
            .label(TOKEN_LABEL, &new_token());
        let field_type = |name: &str| spec.schema.field_with_name(name).ok().map(|f| f.data_type().clone());
        let partition_field = spec.cursor.as_deref().filter(|cursor| {
            matches!(
                field_type(cursor),
                Some(
                    datafusion::arrow::datatypes::DataType::Timestamp(..)
                        | datafusion::arrow::datatypes::DataType::Date32
                )
            )
        });
        let layout = &TableLayout::from_options(&spec.layout).map_err(invalid)?;
        match partition_field {
            Some(field) => {
                let mut partitioning = TimePartitioning::per_day().field(field);
                if let Some(days) = layout.partition_expiration_days {
                    partitioning = partitioning.expiration_ms(Duration::from_secs(u64::from(days) * 86_400));
                }
                table = table.time_partitioning(partitioning);
                if layout.require_partition_filter {
                    table = table.require_partition_filter(true);
                }
            }
            None if layout.partition_expiration_days.is_some() || layout.require_partition_filter => {
                return Err(invalid(
                    "partition_expiration_days and require_partition_filter need an incremental job whose cursor is a \
                     timestamp or date column (only those tables are partitioned)"
                        .into(),
                ));
            }
            None => {}
        }
        let cluster: Vec<String> = if !layout.cluster_by.is_empty() {
            layout.cluster_by.clone()
        } else if !spec.primary_key.is_empty() && spec.cursor.is_some() {
            spec.primary_key.iter().take(MAX_CLUSTER_COLUMNS).cloned().collect()
        } else {
            spec.cursor.iter().cloned().collect()
        };
        if cluster.len() > MAX_CLUSTER_COLUMNS {
            return Err(invalid(format!(
                "cluster_by names {} columns; BigQuery clusters on at most {MAX_CLUSTER_COLUMNS}",
                cluster.len()
            )));
        }
        if let Some(unknown) = cluster.iter().find(|c| field_type(c).is_none()) {
            return Err(invalid(format!(
                "cluster_by column \"{unknown}\" is not one of the loaded columns"
            )));
        }
        if !cluster.is_empty() {
            table = table.clustering(Clustering { fields: Some(cluster) });
        }
        Ok(table)
    }
}

fn new_token() -> String {
    use rand::Rng;
    format!("{:012x}", rand::thread_rng().r#gen::<u64>() & 0xffff_ffff_ffff)
}

#[async_trait]
impl Destination for BigQueryDestination {
    fn load_steps(&self, table: &str, mode: WriteMode) -> Vec<String> {
        let target = match &self.session.settings {
            Ok(settings) => format!("{}.{}.{table}", settings.project, settings.dataset),
            Err(_) => table.to_owned(),
        };
        let staging = match self.session.settings.as_ref().map(|s| s.staging_bucket.is_some()) {
            Ok(true) => "upload chunks to the staging bucket, then",
            _ => "upload chunks with",
        };
        let disposition = match mode {
            WriteMode::Append => "WRITE_APPEND",
            WriteMode::Replace => "WRITE_TRUNCATE",
        };
        vec![
            format!("stage: create a per-run staging table _sluice_staging_... beside {target}"),
            format!("load jobs: {staging} BigQuery load jobs into the staging table (WRITE_APPEND)"),
            format!(
                "commit: one copy job with a deterministic id from the staging table into {target} ({disposition}); \
                 the table's labels record the run and watermark; the staging table is dropped"
            ),
        ]
    }

    fn query_dialect(&self) -> Option<&'static dyn Dialect> {
        Some(&DIALECT)
    }

    async fn query_text(&self, table: &str, sql: QueryBuilder<'_>) -> Result<TextRows, DestinationError> {
        let api = self.api().await?;
        let from = format!(
            "{}.{}",
            DIALECT.quote_ident(&api.settings.dataset),
            DIALECT.quote_ident(table)
        );
        api.query_text(&sql(&from)).await.map_err(|e| e.into_destination(None))
    }

    fn check_schedule(&self, table: &str, schedule: &crate::schedule::Schedule) -> Result<(), String> {
        super::budget::check_schedule(schedule, table, chrono::Utc::now())
    }

    async fn ensure_table(&self, spec: &TableSpec) -> Result<TableSetup, DestinationError> {
        let api = self.api().await?;
        let wanted = schema::table_schema(&spec.schema).map_err(|reason| DestinationError::UnsupportedColumnType {
            table: spec.name.clone(),
            reason,
        })?;
        api.ensure_dataset().await.map_err(|e| e.into_destination())?;
        let table = Self::new_table(&api.settings, spec, wanted.clone())?;
        let created = api.create_table(&table).await.map_err(|e| e.into_destination(None))?;
        if created {
            info!(table = %spec.name, dataset = %api.settings.dataset, "created BigQuery table");
            return Ok(TableSetup::Created);
        }
        let (existing, _) = self
            .table_and_token(&api, &spec.name)
            .await?
            .ok_or_else(|| DestinationError::TableNotFound(spec.name.clone()))?;
        let differences = schema::differences(&existing.schema, &wanted);
        if differences.is_empty() {
            Ok(TableSetup::Adopted)
        } else {
            Err(DestinationError::SchemaMismatch {
                table: format!("{}.{}", api.settings.dataset, spec.name),
                differences,
            })
        }
    }

    /// With a CDC table, its position table and (`HISTORY`) its
    /// `<table>_current` view.
    async fn drop_table(&self, table: &str) -> Result<(), DestinationError> {
        let api = self.api().await?;
        let remote = |e: ApiError| e.into_destination(None);
        let found = api.get_table(table).await.map_err(remote)?;
        if !api.delete_table(table).await.map_err(remote)? {
            return Err(DestinationError::TableNotFound(table.into()));
        }
        if let Some(token) = found.as_ref().filter(|t| is_change_table(t)).and_then(token_of) {
            api.delete_table(&PositionTable::of(table, &token).name)
                .await
                .map_err(remote)?;
            changes::drop_current_view(&api, table, &token).await?;
        }
        Ok(())
    }

    /// A run committed when its commit copy job finished without error.
    /// The run's staging table is deleted first, so that a copy job that
    /// had not reached BigQuery yet can no longer succeed after this answer
    /// (and so are the chunks it staged in the bucket).
    async fn committed_run(&self, table: &str, run_id: u64) -> Result<Option<CommitState>, DestinationError> {
        let api = self.api().await?;
        let Some((target, token)) = self.table_and_token(&api, table).await? else {
            return Ok(None);
        };
        let names = RunNames::new(table, &token, &self.instance, run_id);
        api.delete_table(&names.staging)
            .await
            .map_err(|e| e.into_destination(None))?;
        ship::clean_up_run(&api, &names).await;
        if let Some(recorded) = self.recorded_position(&api, &target, table, &token).await?
            && recorded.run_id == run_id
        {
            return Ok(Some(recorded.commit_state()));
        }
        let commit = names.commit_job();
        let Some(job) = api
            .get_job(&commit)
            .await
            .map_err(|e| e.into_destination(Some(commit.clone())))?
        else {
            return Ok(None);
        };
        let job = api
            .wait_job(job, &commit)
            .await
            .map_err(|e| e.into_destination(Some(commit.clone())))?;
        Ok(job_error(&job).is_none().then_some(CommitState {
            run_id,
            watermark: None,
            committed_at: None,
        }))
    }

    /// From the table's labels (see [`record`]), or for a CDC table from
    /// its position table ([`PositionTable`]); loads of other catalogs are
    /// not adopted.
    async fn last_commit(&self, table: &str) -> Result<Option<CommitState>, DestinationError> {
        let api = self.api().await?;
        let Some(target) = api.get_table(table).await.map_err(|e| e.into_destination(None))? else {
            return Ok(None);
        };
        let Some(token) = token_of(&target) else {
            return Ok(None);
        };
        if let Some(recorded) = self.recorded_position(&api, &target, table, &token).await? {
            return Ok(Some(recorded.commit_state()));
        }
        Ok(record::last_load(&api, table, &token, &target)
            .await?
            .filter(|load| load.instance == self.instance)
            .map(|load| CommitState {
                run_id: load.run_id,
                watermark: load.watermark,
                committed_at: Some(load.at),
            }))
    }

    /// Through one parameterised query (billed by BigQuery as any query).
    async fn loaded_keys(
        &self,
        table: &str,
        key_columns: &[String],
        cursor: &str,
        after: Option<&ScalarValue>,
    ) -> Result<SendableRecordBatchStream, DestinationError> {
        keys::loaded_keys(self.api().await?, table, key_columns, cursor, after).await
    }

    async fn column_names(&self, table: &str) -> Result<Vec<String>, DestinationError> {
        let existing = self
            .api()
            .await?
            .get_table(table)
            .await
            .map_err(|e| e.into_destination(None))?
            .ok_or_else(|| DestinationError::TableNotFound(table.to_owned()))?;
        Ok(existing
            .schema
            .fields
            .iter()
            .flatten()
            .map(|f| f.name.clone())
            .collect())
    }

    /// One `tables.patch` with the whole new schema, when the table needs one.
    async fn evolve_table(&self, table: &str, schema: &SchemaRef) -> Result<(), DestinationError> {
        let api = self.api().await?;
        let wanted = schema::table_schema(schema).map_err(|reason| DestinationError::UnsupportedColumnType {
            table: table.to_owned(),
            reason,
        })?;
        let existing = api
            .get_table(table)
            .await
            .map_err(|e| e.into_destination(None))?
            .ok_or_else(|| DestinationError::TableNotFound(table.to_owned()))?;
        let patched = match schema::evolved(&existing.schema, &wanted) {
            Ok(None) => return Ok(()),
            Ok(Some(patched)) => patched,
            Err(differences) => {
                return Err(DestinationError::SchemaMismatch {
                    table: format!("{}.{table}", api.settings.dataset),
                    differences,
                });
            }
        };
        let patch = Table {
            schema: patched,
            table_reference: existing.table_reference.clone(),
            ..Table::default()
        };
        api.patch_table(table, patch)
            .await
            .map_err(|e| e.into_destination(None))?;
        info!(table, dataset = %api.settings.dataset, "changed the BigQuery table's columns");
        Ok(())
    }

    /// The rows go to a staging table; the commit copies it over the
    /// target's partition when the window is one whole partition of the
    /// cursor (`WRITE_TRUNCATE` on `table$20240301`), and otherwise deletes
    /// the window's rows and inserts the staging table's in one
    /// multi-statement transaction.
    async fn begin_window_replace(
        &self,
        table: &str,
        run_id: u64,
        cursor: &str,
        from: &ScalarValue,
        to: &ScalarValue,
    ) -> Result<Option<Box<dyn LoadTransaction>>, DestinationError> {
        let (from_value, to_value) = (from, to);
        let (Some(from), Some(to)) = (DIALECT.literal(from), DIALECT.literal(to)) else {
            return Ok(None);
        };
        let quoted = DIALECT.quote_ident(cursor);
        let window = Window {
            condition: format!("{quoted} >= {from} AND {quoted} < {to}"),
            cursor,
            from: from_value,
            to: to_value,
        };
        let load = self.open_load(table, run_id, WriteMode::Replace, Some(window)).await?;
        Ok(Some(load))
    }

    /// Executors stage chunks in the connection's `staging_bucket`.
    fn shares_files(&self) -> bool {
        (self.session.settings.as_ref()).is_ok_and(|s| s.staging_bucket.is_some())
    }

    async fn begin(
        &self,
        table: &str,
        run_id: u64,
        mode: WriteMode,
    ) -> Result<Box<dyn LoadTransaction>, DestinationError> {
        self.open_load(table, run_id, mode, None).await
    }

    fn supports_changes(&self) -> bool {
        true
    }

    /// Each batch stages its resolved changes and commits them with one
    /// query job: a transaction of one `MERGE` (or, `HISTORY`, one
    /// `INSERT`) and the position record (see [`changes`]).
    async fn begin_changes(
        &self,
        table: &str,
        run_id: u64,
        spec: &ChangeSpec,
    ) -> Result<Box<dyn LoadTransaction>, DestinationError> {
        let api = self.api().await?;
        let (target, token) = self.existing_table(&api, table).await?;
        let names = RunNames::new(table, &token, &self.instance, run_id);
        Ok(Box::new(changes::BigQueryChanges::new(
            api,
            table,
            target,
            token,
            names,
            spec,
            self.ensured.clone(),
        )))
    }
}

/// The job-id token of a table, from its labels.
fn token_of(table: &Table) -> Option<String> {
    table.labels.as_ref().and_then(|l| l.get(TOKEN_LABEL)).cloned()
}

/// Whether `table` is a CDC job's (it has the change columns).
pub(super) fn is_change_table(table: &Table) -> bool {
    let fields = table.schema.fields.as_deref().unwrap_or_default();
    [POSITION_COLUMN, COMMIT_TS_COLUMN]
        .iter()
        .all(|name| fields.iter().any(|f| f.name == *name))
}

impl BigQueryDestination {
    /// What the position table of CDC table `target` records, when it is
    /// one and a run of this catalog wrote it.
    async fn recorded_position(
        &self,
        api: &Api,
        target: &Table,
        table: &str,
        token: &str,
    ) -> Result<Option<Recorded>, DestinationError> {
        if !is_change_table(target) {
            return Ok(None);
        }
        Ok(PositionTable::of(table, token)
            .read(api)
            .await?
            .filter(|recorded| recorded.instance == self.instance))
    }
}

/// The cursor window a repair replaces.
struct Window<'a> {
    /// `cursor >= from AND cursor < to` in BigQuery's SQL.
    condition: String,
    cursor: &'a str,
    from: &'a ScalarValue,
    to: &'a ScalarValue,
}

impl BigQueryDestination {
    /// A load of run `run_id` into `table` through a staging table; with a
    /// `window` (a condition on the target's rows), the commit replaces
    /// those rows instead of appending or replacing all of them.
    async fn open_load(
        &self,
        table: &str,
        run_id: u64,
        mode: WriteMode,
        window: Option<Window<'_>>,
    ) -> Result<Box<dyn LoadTransaction>, DestinationError> {
        let api = self.api().await?;
        let (target, token) = self.existing_table(&api, table).await?;
        let window = window.map(|window| WindowReplace {
            partition: whole_partition(target.time_partitioning.as_ref(), window.cursor, window.from, window.to),
            condition: window.condition,
        });
        let names = RunNames::new(table, &token, &self.instance, run_id);
        // The staging table has the target's layout, so that the copy job
        // moves rows between tables of one shape. It is created with the
        // first load job: a run that reads no rows touches no table.
        let staging = Table {
            schema: target.schema.clone(),
            time_partitioning: target.time_partitioning.clone().map(|p| TimePartitioning {
                expiration_ms: None,
                require_partition_filter: None,
                ..p
            }),
            range_partitioning: target.range_partitioning.clone(),
            clustering: target.clustering.clone(),
            labels: Some(HashMap::from([("sluice_staging".to_owned(), token.clone())])),
            ..Table::new(
                &api.settings.project,
                &api.settings.dataset,
                &names.staging,
                target.schema.clone(),
            )
        }
        .expiration_time(SystemTime::now() + STAGING_LIFETIME);
        let changes = is_change_table(&target).then(|| ChangeCommit::Snapshot(PositionTable::of(table, &token)));
        Ok(Box::new(BigQueryLoad::new(
            api,
            table.into(),
            token,
            names,
            mode,
            window,
            changes,
            staging,
        )))
    }
}
