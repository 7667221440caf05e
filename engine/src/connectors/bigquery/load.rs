//! One run's load into BigQuery: batches become Parquet chunks, each chunk
//! a load job (deterministic id `<run prefix>_c<n>`) into the run's staging
//! table; the commit is one copy job (`<run prefix>_commit`) from the
//! staging table into the target, appending or replacing atomically.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_table_copy::JobConfigurationTableCopy;
use gcp_bigquery_client::model::job_reference::JobReference;
use gcp_bigquery_client::model::table_reference::TableReference;
use serde_json::json;
use tracing::{info, warn};

use super::api::{Api, ApiError, job_error};
use super::destination::RunNames;
use crate::destinations::{Activity, CommitReport, DestinationError, LoadTransaction, ShipProgress, WriteMode};

/// Parquet bytes per load job unless `SLUICE_BIGQUERY_CHUNK_BYTES` says
/// otherwise: large enough that a run is a few jobs (BigQuery allows 1,500
/// table operations a day per table), small enough to hold in memory.
const DEFAULT_CHUNK_BYTES: usize = 128 << 20;

fn chunk_bytes() -> usize {
    std::env::var("SLUICE_BIGQUERY_CHUNK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_CHUNK_BYTES)
}

pub(super) struct BigQueryLoad {
    api: Arc<Api>,
    table: String,
    names: RunNames,
    mode: WriteMode,
    chunk_bytes: usize,
    /// The chunk being written, with the schema its batches are cast to
    /// (in a mutex only so that the load is `Sync`; never contended).
    writer: Mutex<Option<(ArrowWriter<Vec<u8>>, SchemaRef)>>,
    /// Submitted chunk jobs, waited for at commit.
    submitted: Vec<(String, Job)>,
    rows: u64,
    /// Bytes uploaded and jobs done, for the commit report and progress.
    shipping: Arc<ShipProgress>,
}

impl BigQueryLoad {
    pub(super) fn new(api: Arc<Api>, table: String, names: RunNames, mode: WriteMode) -> Self {
        Self {
            api,
            table,
            names,
            mode,
            chunk_bytes: chunk_bytes(),
            writer: Mutex::new(None),
            submitted: Vec::new(),
            rows: 0,
            shipping: Arc::new(ShipProgress::with_jobs()),
        }
    }

    fn table_ref(&self, table: &str) -> TableReference {
        TableReference::new(&self.api.settings.project, &self.api.settings.dataset, table)
    }

    /// Ends the current chunk and submits its load job.
    async fn flush(&mut self) -> Result<(), DestinationError> {
        let Some((writer, _)) = self.writer.get_mut().unwrap_or_else(PoisonError::into_inner).take() else {
            return Ok(());
        };
        let data = writer.into_inner()?;
        let chunk = self.submitted.len();
        let job_id = self.names.chunk_job(chunk);
        let settings = &self.api.settings;
        let job = json!({
            "jobReference": {"projectId": settings.project, "jobId": job_id, "location": settings.location},
            "configuration": {
                "labels": {"sluice_load": "chunk"},
                "load": {
                    "destinationTable": self.table_ref(&self.names.staging),
                    "sourceFormat": "PARQUET",
                    "parquetOptions": {"enableListInference": true},
                    "decimalTargetTypes": ["NUMERIC", "BIGNUMERIC"],
                    "createDisposition": "CREATE_NEVER",
                    "writeDisposition": "WRITE_APPEND",
                }
            }
        });
        let uploading = self.shipping.busy(Activity::Uploading);
        let submitted = self
            .api
            .upload_load_job(&job, &job_id, &data)
            .await
            .map_err(|e| e.into_destination(Some(job_id.clone())))?;
        drop(uploading);
        self.shipping.uploaded(data.len() as u64);
        self.shipping.job_submitted();
        info!(table = %self.table, job_id = %job_id, bytes = data.len(), "uploaded a chunk to BigQuery");
        self.submitted.push((job_id, submitted));
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

    async fn drop_staging(&self) {
        if let Err(e) = self.api.delete_table(&self.names.staging).await {
            warn!(table = %self.names.staging, error = %e, "could not delete a staging table (it expires by itself)");
        }
    }
}

#[async_trait]
impl LoadTransaction for BigQueryLoad {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = batch.num_rows() as u64;
        let full = {
            let slot = self.writer.get_mut().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                let schema = parquet_schema(&batch.schema());
                let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
                let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))?;
                *slot = Some((writer, schema));
            }
            let (writer, schema) = slot.as_mut().expect("set above");
            writer.write(&conform(batch, schema)?)?;
            writer.bytes_written() + writer.in_progress_size() >= self.chunk_bytes
        };
        self.rows += rows;
        if full {
            self.flush().await?;
        }
        Ok(())
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
}

impl BigQueryLoad {
    /// Loads the last chunk, waits for every chunk job, then copies the
    /// staging table into the target in one job.
    async fn publish(&mut self, watermark: Option<String>) -> Result<CommitReport, DestinationError> {
        self.flush().await?;
        let chunks = self.submitted.len();
        self.wait_chunks().await?;
        let job_id = self.names.commit_job();
        let settings = &self.api.settings;
        let job = Job {
            job_reference: Some(JobReference {
                job_id: Some(job_id.clone()),
                location: Some(settings.location.clone()),
                project_id: Some(settings.project.clone()),
            }),
            configuration: Some(JobConfiguration {
                copy: Some(JobConfigurationTableCopy {
                    source_table: Some(self.table_ref(&self.names.staging)),
                    destination_table: Some(self.table_ref(&self.table)),
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
            }),
            ..Default::default()
        };
        let remote = |e: ApiError| e.into_destination(Some(job_id.clone()));
        let _loading = self.shipping.busy(Activity::Loading);
        let submitted = self.api.insert_job(&job, &job_id).await.map_err(remote)?;
        self.shipping.job_submitted();
        let done = self.api.wait_job(submitted, &job_id).await.map_err(remote)?;
        if let Some(error) = job_error(&done) {
            return Err(remote(error));
        }
        self.shipping.job_done();
        info!(table = %self.table, job_id = %job_id, rows = self.rows, watermark = ?watermark, "committed a load to BigQuery");
        Ok(CommitReport {
            rows: self.rows,
            bytes: self.shipping.snapshot().bytes_uploaded,
            files: chunks,
        })
    }
}

/// The schema chunks are written with: list elements named `element`, as
/// the Parquet LIST spec has them, so that BigQuery's list inference reads
/// them as REPEATED columns.
fn parquet_schema(schema: &Schema) -> SchemaRef {
    fn field(f: &FieldRef) -> Field {
        let data_type = match f.data_type() {
            DataType::List(element) => DataType::List(Arc::new(field(element).with_name("element"))),
            DataType::LargeList(element) => DataType::LargeList(Arc::new(field(element).with_name("element"))),
            other => other.clone(),
        };
        f.as_ref().clone().with_data_type(data_type)
    }
    Arc::new(Schema::new(schema.fields().iter().map(field).collect::<Vec<_>>()))
}

/// `batch` with `schema`'s field names (only list element names differ).
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, DestinationError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(array, field)| {
            if array.data_type() == field.data_type() {
                Ok(array.clone())
            } else {
                cast(array, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
