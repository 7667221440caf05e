//! A destination whose errors never carry the connection's secret values:
//! what a service echoes (a request body, a key from the credentials) is
//! scrubbed before the error reaches a run record, a client or a log.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::object_store;
use datafusion::parquet::errors::ParquetError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::scalar::ScalarValue;
use futures::TryStreamExt;

use crate::contract::{
    ChangeSpec, CommitReport, CommitState, Destination, DestinationError, Dialect, LoadTransaction, PartWriter,
    QueryBuilder, RemoteDiagnosis, SharedTarget, ShipProgress, TableSetup, TableSpec, TextRows, WholeFile, WriteMode,
    WrittenFile,
};
use crate::scrub::Scrubber;

/// `inner` with every error scrubbed of the secrets `scrubber` knows.
pub struct ScrubbedDestination {
    inner: Arc<dyn Destination>,
    scrubber: Scrubber,
}

impl ScrubbedDestination {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Destination>, scrubber: Scrubber) -> Self {
        Self { inner, scrubber }
    }

    fn clean(&self, error: DestinationError) -> DestinationError {
        scrub_destination_error(&self.scrubber, error)
    }

    /// A part writer a destination driver opened (or its error), its
    /// errors scrubbed like a destination's.
    pub fn part_writer(
        opened: Result<Box<dyn PartWriter>, DestinationError>,
        scrubber: Scrubber,
    ) -> Result<Box<dyn PartWriter>, DestinationError> {
        match opened {
            Ok(inner) => Ok(Box::new(ScrubbedPart { inner, scrubber })),
            Err(e) => Err(scrub_destination_error(&scrubber, e)),
        }
    }
}

/// `error` with secret values removed from its texts. Errors of other
/// libraries that quote a secret keep their kind but become text.
pub fn scrub_destination_error(scrubber: &Scrubber, error: DestinationError) -> DestinationError {
    let text = error.to_string();
    if scrubber.scrub(&text) == text {
        return error;
    }
    let s = |text: &str| scrubber.scrub(text);
    match error {
        DestinationError::TableNotFound(table) => DestinationError::TableNotFound(s(&table)),
        DestinationError::InvalidTableName(table) => DestinationError::InvalidTableName(s(&table)),
        DestinationError::SchemaMismatch { table, differences } => DestinationError::SchemaMismatch {
            table: s(&table),
            differences: differences.iter().map(|d| s(d)).collect(),
        },
        DestinationError::UnsupportedColumnType { table, reason } => DestinationError::UnsupportedColumnType {
            table: s(&table),
            reason: s(&reason),
        },
        DestinationError::InvalidLayout { table, reason } => DestinationError::InvalidLayout {
            table: s(&table),
            reason: s(&reason),
        },
        DestinationError::OptionMismatch { reason } => DestinationError::OptionMismatch { reason: s(&reason) },
        DestinationError::InvalidOption { option, message } => DestinationError::InvalidOption {
            option,
            message: s(&message),
        },
        DestinationError::CopiedFile { file, reason } => DestinationError::CopiedFile {
            file: s(&file),
            reason: s(&reason),
        },
        DestinationError::Changes { table, reason } => DestinationError::Changes {
            table: s(&table),
            reason: s(&reason),
        },
        DestinationError::Conflict { table, detail } => DestinationError::Conflict {
            table: s(&table),
            detail: s(&detail),
        },
        DestinationError::CorruptManifest { path, reason } => DestinationError::CorruptManifest {
            path: s(&path),
            reason: s(&reason),
        },
        DestinationError::Spill { path, source } => DestinationError::Spill {
            path: s(&path),
            source: std::io::Error::new(source.kind(), s(&source.to_string())),
        },
        DestinationError::Remote {
            service,
            job_id,
            reason,
            message,
            diagnosis,
        } => DestinationError::Remote {
            service,
            job_id: job_id.map(|id| s(&id)),
            reason: s(&reason),
            message: s(&message),
            diagnosis: Box::new(RemoteDiagnosis {
                hint: diagnosis.hint.map(|hint| s(&hint)),
                ..*diagnosis
            }),
        },
        DestinationError::ObjectStore(e) => DestinationError::ObjectStore(object_store::Error::Generic {
            store: "object store",
            source: s(&e.to_string()).into(),
        }),
        DestinationError::Parquet(e) => DestinationError::Parquet(ParquetError::General(s(&e.to_string()))),
        DestinationError::Arrow(e) => DestinationError::Arrow(ArrowError::ExternalError(s(&e.to_string()).into())),
        DestinationError::InvalidLocation { location, reason } => DestinationError::InvalidLocation {
            location: s(&location),
            reason: s(&reason),
        },
        DestinationError::Query(e) => DestinationError::Query(scrub_datafusion_error(scrubber, e)),
        DestinationError::Unsupported { table, feature } => DestinationError::Unsupported {
            table: s(&table),
            feature,
        },
        DestinationError::EncoderStopped => DestinationError::EncoderStopped,
    }
}

/// `error` with secret values removed; a wrapped [`DestinationError`] keeps
/// its kind (its SQLSTATE), other errors that quote a secret become text.
fn scrub_datafusion_error(scrubber: &Scrubber, error: DataFusionError) -> DataFusionError {
    match error {
        DataFusionError::External(inner) => match inner.downcast::<DestinationError>() {
            Ok(error) => DataFusionError::External(Box::new(scrub_destination_error(scrubber, *error))),
            Err(inner) => scrub_datafusion_error_text(scrubber, DataFusionError::External(inner)),
        },
        other => scrub_datafusion_error_text(scrubber, other),
    }
}

fn scrub_datafusion_error_text(scrubber: &Scrubber, error: DataFusionError) -> DataFusionError {
    let text = error.to_string();
    let clean = scrubber.scrub(&text);
    if clean == text {
        error
    } else {
        DataFusionError::External(clean.into())
    }
}

#[async_trait]
impl Destination for ScrubbedDestination {
    async fn ensure_table(&self, spec: &TableSpec) -> Result<TableSetup, DestinationError> {
        self.inner.ensure_table(spec).await.map_err(|e| self.clean(e))
    }

    async fn drop_table(&self, table: &str) -> Result<(), DestinationError> {
        self.inner.drop_table(table).await.map_err(|e| self.clean(e))
    }

    fn check_schedule(&self, table: &str, schedule: &crate::schedule::Schedule) -> Result<(), String> {
        self.inner.check_schedule(table, schedule)
    }

    async fn committed_run(&self, table: &str, run_id: u64) -> Result<Option<CommitState>, DestinationError> {
        self.inner.committed_run(table, run_id).await.map_err(|e| self.clean(e))
    }

    async fn last_commit(&self, table: &str) -> Result<Option<CommitState>, DestinationError> {
        self.inner.last_commit(table).await.map_err(|e| self.clean(e))
    }

    async fn loaded_keys(
        &self,
        table: &str,
        key_columns: &[String],
        cursor: &str,
        after: Option<&ScalarValue>,
    ) -> Result<SendableRecordBatchStream, DestinationError> {
        let stream = self
            .inner
            .loaded_keys(table, key_columns, cursor, after)
            .await
            .map_err(|e| self.clean(e))?;
        let scrubber = self.scrubber.clone();
        let schema = stream.schema();
        let stream = stream.map_err(move |e| scrub_datafusion_error(&scrubber, e));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    async fn evolve_table(&self, table: &str, schema: &SchemaRef) -> Result<(), DestinationError> {
        self.inner.evolve_table(table, schema).await.map_err(|e| self.clean(e))
    }

    async fn column_names(&self, table: &str) -> Result<Vec<String>, DestinationError> {
        self.inner.column_names(table).await.map_err(|e| self.clean(e))
    }

    fn load_steps(&self, table: &str, mode: WriteMode) -> Vec<String> {
        self.inner.load_steps(table, mode)
    }

    fn query_dialect(&self) -> Option<&'static dyn Dialect> {
        self.inner.query_dialect()
    }

    async fn query_text(&self, table: &str, sql: QueryBuilder<'_>) -> Result<TextRows, DestinationError> {
        self.inner.query_text(table, sql).await.map_err(|e| self.clean(e))
    }

    async fn rows_outside(
        &self,
        table: &str,
        cursor: &str,
        from: &ScalarValue,
        to: &ScalarValue,
    ) -> Result<SendableRecordBatchStream, DestinationError> {
        let stream = self
            .inner
            .rows_outside(table, cursor, from, to)
            .await
            .map_err(|e| self.clean(e))?;
        let scrubber = self.scrubber.clone();
        let schema = stream.schema();
        let stream = stream.map_err(move |e| scrub_datafusion_error(&scrubber, e));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    async fn begin_window_replace(
        &self,
        table: &str,
        run_id: u64,
        cursor: &str,
        from: &ScalarValue,
        to: &ScalarValue,
    ) -> Result<Option<Box<dyn LoadTransaction>>, DestinationError> {
        let inner = self
            .inner
            .begin_window_replace(table, run_id, cursor, from, to)
            .await
            .map_err(|e| self.clean(e))?;
        Ok(inner.map(|inner| {
            Box::new(ScrubbedLoad {
                inner,
                scrubber: self.scrubber.clone(),
            }) as Box<dyn LoadTransaction>
        }))
    }

    fn shares_files(&self) -> bool {
        self.inner.shares_files()
    }

    async fn begin(
        &self,
        table: &str,
        run_id: u64,
        mode: WriteMode,
    ) -> Result<Box<dyn LoadTransaction>, DestinationError> {
        let inner = self.inner.begin(table, run_id, mode).await.map_err(|e| self.clean(e))?;
        Ok(Box::new(ScrubbedLoad {
            inner,
            scrubber: self.scrubber.clone(),
        }))
    }

    fn supports_changes(&self) -> bool {
        self.inner.supports_changes()
    }

    async fn begin_changes(
        &self,
        table: &str,
        run_id: u64,
        spec: &ChangeSpec,
    ) -> Result<Box<dyn LoadTransaction>, DestinationError> {
        let inner = self
            .inner
            .begin_changes(table, run_id, spec)
            .await
            .map_err(|e| self.clean(e))?;
        Ok(Box::new(ScrubbedLoad {
            inner,
            scrubber: self.scrubber.clone(),
        }))
    }
}

/// A part writer whose errors are scrubbed like its destination's.
struct ScrubbedPart {
    inner: Box<dyn PartWriter>,
    scrubber: Scrubber,
}

#[async_trait]
impl PartWriter for ScrubbedPart {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        let scrubber = &self.scrubber;
        (self.inner.write(batch).await).map_err(|e| scrub_destination_error(scrubber, e))
    }

    async fn finish(self: Box<Self>) -> Result<Vec<WrittenFile>, DestinationError> {
        let Self { inner, scrubber } = *self;
        inner.finish().await.map_err(|e| scrub_destination_error(&scrubber, e))
    }

    async fn discard(self: Box<Self>) -> Result<(), DestinationError> {
        let Self { inner, scrubber } = *self;
        inner.discard().await.map_err(|e| scrub_destination_error(&scrubber, e))
    }
}

/// A load whose errors are scrubbed like its destination's.
struct ScrubbedLoad {
    inner: Box<dyn LoadTransaction>,
    scrubber: Scrubber,
}

#[async_trait]
impl LoadTransaction for ScrubbedLoad {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), DestinationError> {
        let scrubber = &self.scrubber;
        self.inner
            .write(batch)
            .await
            .map_err(|e| scrub_destination_error(scrubber, e))
    }

    async fn commit(self: Box<Self>, watermark: Option<String>) -> Result<CommitReport, DestinationError> {
        let Self { inner, scrubber } = *self;
        inner
            .commit(watermark)
            .await
            .map_err(|e| scrub_destination_error(&scrubber, e))
    }

    async fn abort(self: Box<Self>) -> Result<(), DestinationError> {
        let Self { inner, scrubber } = *self;
        inner.abort().await.map_err(|e| scrub_destination_error(&scrubber, e))
    }

    fn copies_files(&self) -> bool {
        self.inner.copies_files()
    }

    async fn copy_file(&mut self, file: WholeFile) -> Result<(), DestinationError> {
        let scrubber = &self.scrubber;
        self.inner
            .copy_file(file)
            .await
            .map_err(|e| scrub_destination_error(scrubber, e))
    }

    fn shipping(&self) -> Option<Arc<ShipProgress>> {
        self.inner.shipping()
    }

    fn shared_target(&self, columns: &SchemaRef) -> Option<SharedTarget> {
        self.inner.shared_target(columns)
    }

    async fn adopt(&mut self, files: Vec<WrittenFile>) -> Result<(), DestinationError> {
        let scrubber = &self.scrubber;
        self.inner
            .adopt(files)
            .await
            .map_err(|e| scrub_destination_error(scrubber, e))
    }
}

#[cfg(test)]
mod tests {
    use sluice_catalog::SecretValue;

    use super::*;

    #[test]
    fn every_text_of_a_destination_error_is_scrubbed() {
        let scrubber = Scrubber::new(vec![SecretValue::new("hunter2")]);
        let remote = scrub_destination_error(
            &scrubber,
            DestinationError::Remote {
                service: "BigQuery",
                job_id: Some("job_1".into()),
                reason: "invalid".into(),
                message: "request body {\"key\": \"hunter2\"} refused".into(),
                diagnosis: Box::new(RemoteDiagnosis {
                    transient: false,
                    sqlstate: "58030",
                    hint: Some("bq show -j hunter2".into()),
                }),
            },
        );
        assert!(
            matches!(&remote, DestinationError::Remote { diagnosis, .. } if diagnosis.hint.as_deref() == Some("bq show -j ********")),
            "{remote:?}"
        );
        assert_eq!(
            remote.to_string(),
            "BigQuery job job_1 failed: invalid: request body {\"key\": \"********\"} refused"
        );
        let store = scrub_destination_error(
            &scrubber,
            DestinationError::ObjectStore(object_store::Error::Generic {
                store: "S3",
                source: "signature for secret hunter2 does not match".into(),
            }),
        );
        assert!(matches!(store, DestinationError::ObjectStore(_)), "{store:?}");
        assert!(!store.to_string().contains("hunter2"), "{store}");
        assert!(store.to_string().contains("********"), "{store}");
        let wrapped = scrub_destination_error(
            &scrubber,
            DestinationError::Query(DataFusionError::External(Box::new(DestinationError::Conflict {
                table: "t".into(),
                detail: "hunter2".into(),
            }))),
        );
        assert!(!wrapped.to_string().contains("hunter2"), "{wrapped}");
        let clean = scrub_destination_error(&scrubber, DestinationError::TableNotFound("orders".into()));
        assert_eq!(clean.to_string(), "destination table \"orders\" does not exist");
    }
}
