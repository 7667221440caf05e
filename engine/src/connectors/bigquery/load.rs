//! One run's load into BigQuery: batches become [`Chunker`] files
//! (Parquet or Avro; on a cluster, executors write them into the staging
//! bucket and the load adopts them), shipped by [`Shipper`] in load jobs (deterministic ids
//! `<run prefix>_c<n>`) into the run's staging table (a large chunk is
//! uploaded or staged while it is written: [`StreamedChunk`]); the commit is one copy
//! job (`<run prefix>_commit`) from the staging table into the target,
//! appending or replacing atomically. The staging table is created with
//! the first load job: an append that read no rows commits without
//! touching any table (BigQuery counts table operations per table and
//! day). An incremental commit records itself in the target's labels
//! around its copy job (see [`record`](super::record)). A repair's load
//! commits instead with one multi-statement transaction, run as a query job
//! under the same commit job id: `DELETE` of the window's rows and `INSERT
//! ... SELECT` from the staging table, both or neither.
//! So does a CDC load ([`ChangeCommit`]): a first load's rows with the
//! change position written into the table's position table, or a change
//! batch's `MERGE` (see [`changes`](super::changes)); neither records
//! itself in the labels.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_query::JobConfigurationQuery;
use gcp_bigquery_client::model::job_configuration_table_copy::JobConfigurationTableCopy;
use gcp_bigquery_client::model::job_reference::JobReference;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_reference::TableReference;
use serde_json::json;
use tracing::{info, warn};

use super::api::{Api, ApiError, job_error};
use super::bucket::MIN_PART_BYTES;
use super::change_sql::{self, string_literal};
use super::chunk::{Chunk, Chunker};
use super::destination::RunNames;
use super::position::PositionTable;
use super::reasons::remote_error;
use super::record::{self, LoadRecord};
use super::resumable;
use super::ship::Shipper;
use super::source::DIALECT;
use super::streamed::{Delivered, StreamedChunk, Target};
use crate::contract::{
    Activity, CommitReport, DestinationError, Dialect, LoadTransaction, Position, SharedStore, SharedTarget,
    ShipProgress, WriteMode, WrittenFile,
};

/// How much earlier than the load's start BigQuery's clock may date one of
/// its jobs (clock skew).
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// What a CDC load's commit runs instead of a copy job: a transaction
/// that records the change position with the rows (see
/// [`position`](super::position)).
pub(super) enum ChangeCommit {
    /// A first load into a CDC table: its rows appended or in place of the
    /// table's, when the commit's watermark is a change position.
    Snapshot(PositionTable),
    /// A change batch: this script (which names the staging table when it
    /// reads it, and the batch's job-id prefix in its position row).
    Script(String),
}

/// What a repair's commit replaces.
pub(super) struct WindowReplace {
    /// The target's rows of the window, as a condition in BigQuery's SQL.
    pub condition: String,
    /// The one whole partition the window is (`20240301`), if it is one
    /// (see [`super::partition`]).
    pub partition: Option<String>,
}

pub(super) struct BigQueryLoad {
    api: Arc<Api>,
    table: String,
    /// The target's job-id token.
    token: String,
    names: RunNames,
    mode: WriteMode,
    /// For a repair: the target's rows the load replaces.
    window: Option<WindowReplace>,
    /// For a CDC table: how the commit records the change position.
    changes: Option<ChangeCommit>,
    /// The staging table, until it is created.
    staging: Option<Table>,
    /// The columns of the staging table (and the target).
    staging_columns: Vec<String>,
    /// The chunk being written (in a mutex only so that the load is `Sync`;
    /// never contended).
    chunker: Mutex<Chunker>,
    /// The upload of the chunk being written, once it is sent while written.
    streaming: Option<StreamedChunk>,
    shipper: Shipper,
    /// Submitted load jobs, waited for at commit.
    submitted: Vec<(String, Job)>,
    chunks: usize,
    rows: u64,
    /// Bytes uploaded and jobs done, for the commit report and progress.
    shipping: Arc<ShipProgress>,
    /// When the load began: none of its jobs is older.
    began: SystemTime,
}

impl BigQueryLoad {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        api: Arc<Api>,
        table: String,
        token: String,
        names: RunNames,
        mode: WriteMode,
        window: Option<WindowReplace>,
        changes: Option<ChangeCommit>,
        staging: Table,
    ) -> Self {
        let format = api.settings.chunk_format;
        Self {
            shipper: Shipper::new(api.clone(), &names),
            api,
            table,
            token,
            names,
            mode,
            window,
            changes,
            staging_columns: staging.schema.fields.iter().flatten().map(|f| f.name.clone()).collect(),
            staging: Some(staging),
            chunker: Mutex::new(Chunker::new(format)),
            streaming: None,
            submitted: Vec::new(),
            chunks: 0,
            rows: 0,
            shipping: Arc::new(ShipProgress::with_jobs()),
            began: SystemTime::now(),
        }
    }

    fn table_ref(&self, table: &str) -> TableReference {
        TableReference::new(&self.api.settings.project, &self.api.settings.dataset, table)
    }

    /// Ships a finished chunk: the end of its upload if it was sent while
    /// written, else staged in the bucket at once, or kept for its load
    /// job's upload.
    async fn ship(&mut self, chunk: Chunk) -> Result<(), DestinationError> {
        if let Some(upload) = self.streaming.take() {
            let name = upload.name().to_owned();
            let job_id = self.shipper.uploads().then(|| name.clone());
            let uploading = self.shipping.busy(Activity::Uploading);
            let delivered = (upload.finish(chunk.data).await).map_err(|e| e.into_destination(job_id))?;
            drop(uploading);
            self.chunks += 1;
            info!(table = %self.table, chunk = %name, rows = chunk.rows, "uploaded a chunk for BigQuery while writing it");
            return match delivered {
                Delivered::Job(job) => self.submitted(name, *job),
                Delivered::Staged(path) => {
                    self.shipper.staged(&path);
                    Ok(())
                }
            };
        }
        let bytes = chunk.data.len();
        let uploading = self.shipping.busy(Activity::Uploading);
        let sent = self
            .shipper
            .add(chunk.data, self.api.settings.chunk_format.extension())
            .await
            .map_err(|e| e.into_destination(None))?;
        drop(uploading);
        self.shipping.uploaded(sent);
        self.chunks += 1;
        info!(table = %self.table, bytes, "wrote a chunk for BigQuery");
        Ok(())
    }

    /// Sends the whole pieces of the chunk being written once it has
    /// grown large enough (see [`streamed`](super::streamed)): past the
    /// resumable upload threshold, into its load job's upload, or past a
    /// part's size, into its object in the staging bucket.
    async fn stream(&mut self) -> Result<(), DestinationError> {
        let extension = self.api.settings.chunk_format.extension();
        let piece = match self.shipper.uploads() {
            true => resumable::piece_bytes(),
            false => resumable::piece_bytes().max(MIN_PART_BYTES),
        };
        if self.streaming.is_none() {
            let waiting = (self.chunker.get_mut().unwrap_or_else(PoisonError::into_inner)).waiting();
            let target = match self.shipper.next_object(extension) {
                Some((bucket, path)) if waiting >= piece => Target::Object { bucket, path },
                None if waiting >= resumable::threshold().max(piece) => {
                    self.create_staging().await?;
                    let job_id = self.names.chunk_job(self.submitted.len());
                    Target::Job {
                        api: self.api.clone(),
                        job: self.chunk_job(&job_id),
                        job_id,
                    }
                }
                _ => return Ok(()),
            };
            self.streaming = Some(StreamedChunk::start(target, self.shipping.clone()));
        }
        let chunker = self.chunker.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(upload) = &mut self.streaming {
            while let Some(bytes) = chunker.take(piece) {
                let _uploading = self.shipping.busy(Activity::Uploading);
                let job_id = self.shipper.uploads().then(|| upload.name().to_owned());
                (upload.send(bytes).await).map_err(|e| e.into_destination(job_id))?;
            }
        }
        Ok(())
    }

    /// The resource of load job `job_id` of a chunk, without its file.
    fn chunk_job(&self, job_id: &str) -> serde_json::Value {
        let settings = &self.api.settings;
        let mut load = settings.chunk_format.load_settings();
        load["destinationTable"] = json!(self.table_ref(&self.names.staging));
        load["createDisposition"] = json!("CREATE_NEVER");
        load["writeDisposition"] = json!("WRITE_APPEND");
        json!({
            "jobReference": {"projectId": settings.project, "jobId": job_id, "location": settings.location},
            "configuration": {"labels": {"sluice_load": "chunk"}, "load": load}
        })
    }

    /// Submits the load jobs that are due (`last`: at the end of the run,
    /// every chunk not loaded yet).
    async fn submit_due(&mut self, last: bool) -> Result<(), DestinationError> {
        while self.shipper.due(last) {
            self.create_staging().await?;
            let job_id = self.names.chunk_job(self.submitted.len());
            let job = self.chunk_job(&job_id);
            let uploading = self.shipping.busy(Activity::Uploading);
            let (submitted, sent) = self
                .shipper
                .submit(job, &job_id)
                .await
                .map_err(|e| e.into_destination(Some(job_id.clone())))?;
            drop(uploading);
            self.shipping.uploaded(sent);
            self.submitted(job_id, submitted)?;
        }
        Ok(())
    }

    /// Takes load job `job_id`, just submitted, to wait for at commit.
    fn submitted(&mut self, job_id: String, job: Job) -> Result<(), DestinationError> {
        self.check_staging_job(&job, &job_id)?;
        self.shipping.job_submitted();
        info!(table = %self.table, job_id = %job_id, "submitted a BigQuery load job");
        self.submitted.push((job_id, job));
        Ok(())
    }

    /// Waits for every chunk job; the first failure is the error.
    async fn wait_chunks(&mut self) -> Result<(), DestinationError> {
        let _loading = self.shipping.busy(Activity::Loading);
        for (job_id, job) in std::mem::take(&mut self.submitted) {
            let done = self
                .api
                .wait_job(job, &job_id)
                .await
                .map_err(|e| e.into_destination(Some(job_id.clone())))?;
            if let Some(error) = job_error(&done) {
                return Err(error.into_destination(Some(job_id)));
            }
            self.shipping.job_done();
        }
        Ok(())
    }

    /// Checks that a job BigQuery answered with loads into (a chunk) or
    /// copies out of (the commit) this run's staging table, and is not
    /// older than this load. A job id that BigQuery knew already is
    /// answered with that earlier job (a catalog restored from a backup
    /// gives out run ids again); one of another load must never pass for
    /// this run's.
    fn check_staging_job(&self, job: &Job, job_id: &str) -> Result<(), DestinationError> {
        let created = job
            .statistics
            .as_ref()
            .and_then(|s| s.creation_time.as_deref())
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        if let Some(created) = created.filter(|&created| created + CLOCK_SKEW < self.began) {
            let at = chrono::DateTime::<chrono::Utc>::from(created);
            return Err(remote_error(
                Some(job_id.to_owned()),
                "duplicate".into(),
                format!(
                    "BigQuery already has a job with this run's id, created at {at} by an earlier load \
                     (was the catalog restored from a backup?); nothing of the run was loaded"
                ),
            ));
        }
        let config = job.configuration.as_ref();
        let staging = config
            .and_then(|c| c.copy.as_ref())
            .and_then(|copy| copy.source_table.as_ref())
            .or_else(|| {
                config
                    .and_then(|c| c.load.as_ref())
                    .and_then(|load| load.destination_table.as_ref())
            })
            // A repair's copy names a partition of it (`staging$20240301`).
            .map(|table| table.table_id.split('$').next().unwrap_or_default())
            .or_else(|| {
                // A repair's or CDC commit's transaction names the staging
                // table it reads, a CDC commit its batch in the position row.
                let script = &config?.query.as_ref()?.query;
                (script.contains(&DIALECT.quote_ident(&self.names.staging))
                    || script.contains(&string_literal(&self.names.job_prefix)))
                .then_some(self.names.staging.as_str())
            });
        if staging == Some(self.names.staging.as_str()) {
            return Ok(());
        }
        Err(remote_error(
            Some(job_id.to_owned()),
            "duplicate".into(),
            format!(
                "BigQuery already has a job with this run's id that does not load its staging table {} (it uses {}); \
                 nothing of the run was loaded",
                self.names.staging,
                staging.unwrap_or("no table")
            ),
        ))
    }

    /// Creates the run's staging table, once; a leftover of the same name
    /// (from a crashed attempt) is replaced.
    async fn create_staging(&mut self) -> Result<(), DestinationError> {
        let Some(staging) = &self.staging else {
            return Ok(());
        };
        let remote = |e: ApiError| e.into_destination(None);
        if !self.api.create_table(staging).await.map_err(remote)? {
            warn!(table = %self.names.staging, "replacing a leftover staging table");
            self.api.delete_table(&self.names.staging).await.map_err(remote)?;
            self.api.create_table(staging).await.map_err(remote)?;
        }
        self.staging = None;
        Ok(())
    }

    /// Deletes the run's staging table, if it was created, and staged chunks.
    async fn drop_staging(&self) {
        if self.staging.is_none()
            && let Err(e) = self.api.delete_table(&self.names.staging).await
        {
            warn!(table = %self.names.staging, error = %e, "could not delete a staging table (it expires by itself)");
        }
        self.shipper.clean_up().await;
    }
}

#[async_trait]
impl LoadTransaction for BigQueryLoad {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        let rows = batch.num_rows() as u64;
        let full = (self.chunker.get_mut().unwrap_or_else(PoisonError::into_inner)).add(batch)?;
        self.rows += rows;
        match full {
            Some(chunk) => {
                self.ship(chunk).await?;
                self.submit_due(false).await
            }
            None => self.stream().await,
        }
    }

    async fn commit(mut self: Box<Self>, watermark: Option<String>) -> Result<CommitReport, DestinationError> {
        let committed = self.publish(watermark).await;
        self.drop_staging().await;
        committed
    }

    async fn abort(self: Box<Self>) -> Result<(), DestinationError> {
        self.drop_staging().await;
        Ok(())
    }

    fn shipping(&self) -> Option<Arc<ShipProgress>> {
        Some(self.shipping.clone())
    }

    /// Executors stage chunks of a plain load in the run's folder of the
    /// staging bucket, when the connection has one.
    fn shared_target(&self, columns: &SchemaRef) -> Option<SharedTarget> {
        let plain = self.window.is_none() && self.changes.is_none();
        (plain && self.api.bucket.is_some()).then(|| SharedTarget {
            store: SharedStore::Connection,
            prefix: self.names.job_prefix.clone(),
            schema: columns.clone(),
        })
    }

    /// Checks that the chunks executors staged are in the run's folder with
    /// the sizes they reported, and loads them with the run's own chunks.
    async fn adopt(&mut self, files: Vec<WrittenFile>) -> Result<(), DestinationError> {
        let extension = self.api.settings.chunk_format.extension();
        self.shipper.adopt(&files, extension).await?;
        self.rows += files.iter().map(|f| f.rows).sum::<u64>();
        self.chunks += files.len();
        self.shipping.uploaded(files.iter().map(|f| f.bytes).sum());
        self.submit_due(false).await
    }
}

impl BigQueryLoad {
    /// Loads the last chunk, waits for every chunk job, then copies the
    /// staging table into the target in one job, recording an incremental
    /// load in the target's labels before and after. An append of no rows
    /// has nothing to publish: the target already holds every row up to
    /// the watermark, which did not move.
    async fn publish(&mut self, watermark: Option<String>) -> Result<CommitReport, DestinationError> {
        if self.rows == 0 && self.mode == WriteMode::Append && self.changes.is_none() {
            info!(table = %self.table, "no rows to load; BigQuery left untouched");
            return Ok(CommitReport {
                rows: 0,
                bytes: 0,
                files: 0,
            });
        }
        let last = (self.chunker.get_mut().unwrap_or_else(PoisonError::into_inner)).finish()?;
        if let Some(chunk) = last {
            self.ship(chunk).await?;
        }
        self.submit_due(true).await?;
        self.wait_chunks().await?;
        let script = self.change_script(watermark.as_deref()).await?;
        // A change batch of no rows reads no staging table.
        if self.rows > 0 || !matches!(self.changes, Some(ChangeCommit::Script(_))) {
            self.create_staging().await?;
        }
        // A CDC commit records its position itself.
        let load = watermark
            .clone()
            .filter(|_| script.is_none())
            .map(|watermark| LoadRecord::new(&self.names.instance, self.names.run_id, Some(watermark)));
        if let Some(load) = &load {
            record::mark_pending(&self.api, &self.table, &self.token, load).await?;
        }
        let job_id = self.names.commit_job();
        let settings = &self.api.settings;
        let configuration = match &self.window {
            _ if script.is_some() => JobConfiguration {
                query: Some(JobConfigurationQuery {
                    query: script.clone().unwrap_or_default(),
                    use_legacy_sql: Some(false),
                    ..Default::default()
                }),
                labels: Some([("sluice_load".to_owned(), "changes".to_owned())].into()),
                ..Default::default()
            },
            // A copy of an empty partition would leave the target's as it
            // is: a repair that read no rows deletes them in a transaction.
            Some(WindowReplace {
                partition: Some(partition),
                ..
            }) if self.rows > 0 => JobConfiguration {
                labels: Some([("sluice_load".to_owned(), "repair".to_owned())].into()),
                ..self.copy_configuration(Some(partition))
            },
            Some(window) => JobConfiguration {
                query: Some(JobConfigurationQuery {
                    query: self.window_transaction(&window.condition),
                    use_legacy_sql: Some(false),
                    ..Default::default()
                }),
                labels: Some([("sluice_load".to_owned(), "repair".to_owned())].into()),
                ..Default::default()
            },
            None => self.copy_configuration(None),
        };
        let job = Job {
            job_reference: Some(JobReference {
                job_id: Some(job_id.clone()),
                location: Some(settings.location.clone()),
                project_id: Some(settings.project.clone()),
            }),
            configuration: Some(configuration),
            ..Default::default()
        };
        let remote = |e: ApiError| e.into_destination(Some(job_id.clone()));
        let _loading = self.shipping.busy(Activity::Loading);
        let submitted = self.api.insert_job(&job, &job_id).await.map_err(remote)?;
        self.shipping.table_op();
        self.check_staging_job(&submitted, &job_id)?;
        self.shipping.job_submitted();
        let done = self.api.wait_job(submitted, &job_id).await.map_err(remote)?;
        if let Some(error) = job_error(&done) {
            return Err(remote(error));
        }
        self.shipping.job_done();
        if let Some(load) = &load
            && let Err(e) = record::mark_committed(&self.api, &self.table, load).await
        {
            warn!(table = %self.table, error = %e, "could not record the committed load in the table's labels (the pending record and the commit job still say it)");
        }
        info!(table = %self.table, job_id = %job_id, rows = self.rows, watermark = ?watermark, "committed a load to BigQuery");
        Ok(CommitReport {
            rows: self.rows,
            bytes: self.shipping.snapshot().bytes_uploaded,
            files: self.chunks,
        })
    }

    /// The transaction of a CDC commit, if this is one: a change batch's
    /// script, or a first load's rows with the position `watermark` (the
    /// position table made first). `None` for any other load.
    async fn change_script(&self, watermark: Option<&str>) -> Result<Option<String>, DestinationError> {
        match &self.changes {
            None => Ok(None),
            Some(ChangeCommit::Script(script)) => Ok(Some(script.clone())),
            Some(ChangeCommit::Snapshot(positions)) => {
                let Some((position, parsed)) =
                    watermark.and_then(|w| Position::from_json(w).ok().map(|parsed| (w, parsed)))
                else {
                    return Ok(None);
                };
                positions.ensure(&self.api, &self.table).await?;
                let dataset = &self.api.settings.dataset;
                // No guard: a snapshot starts over (a resync may follow a
                // source whose log starts again lower).
                let bound = parsed.committed_bound();
                let mut statements = change_sql::snapshot(
                    dataset,
                    &self.table,
                    &self.names.staging,
                    &self.staging_columns,
                    self.mode == WriteMode::Replace,
                );
                statements.extend(positions.record(dataset, &self.names, position, &bound));
                Ok(Some(change_sql::transaction(&statements)))
            }
        }
    }

    /// The copy of the staging table into the target, or of one
    /// `partition` of it into the same partition of the target.
    fn copy_configuration(&self, partition: Option<&str>) -> JobConfiguration {
        let decorated = |table: &str| match partition {
            Some(partition) => format!("{table}${partition}"),
            None => table.to_owned(),
        };
        JobConfiguration {
            copy: Some(JobConfigurationTableCopy {
                source_table: Some(self.table_ref(&decorated(&self.names.staging))),
                destination_table: Some(self.table_ref(&decorated(&self.table))),
                create_disposition: Some("CREATE_NEVER".into()),
                write_disposition: Some(
                    match self.mode {
                        WriteMode::Append => "WRITE_APPEND",
                        WriteMode::Replace => "WRITE_TRUNCATE",
                    }
                    .into(),
                ),
                ..Default::default()
            }),
            labels: Some([("sluice_load".to_owned(), "commit".to_owned())].into()),
            ..Default::default()
        }
    }

    /// The commit of a repair: the target's rows of `window` deleted and
    /// the staging table's rows inserted, in one transaction.
    fn window_transaction(&self, window: &str) -> String {
        let dataset = DIALECT.quote_ident(&self.api.settings.dataset);
        let target = format!("{dataset}.{}", DIALECT.quote_ident(&self.table));
        let staging = format!("{dataset}.{}", DIALECT.quote_ident(&self.names.staging));
        let columns: Vec<String> = self.staging_columns.iter().map(|c| DIALECT.quote_ident(c)).collect();
        let columns = columns.join(", ");
        format!(
            "BEGIN TRANSACTION;\nDELETE FROM {target} WHERE {window};\nINSERT INTO {target} ({columns}) \
             SELECT {columns} FROM {staging};\nCOMMIT TRANSACTION;"
        )
    }
}
