//! A source whose errors never carry the connection's secret values: what
//! a driver echoes (a password in a connection string, a key in a URL) is
//! scrubbed before the error reaches a run record, a client or a log.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};

use crate::contract::{
    CommitHorizon, ConnectFailure, Dialect, FilesRead, PieceStream, QueryBuilder, ScanRequest, Source, SourceError,
    SplitScan, TableDescription, TableInfo, TableRef, TextRows,
};
use crate::scrub::Scrubber;

/// `inner` with every error scrubbed of the secrets `scrubber` knows.
pub struct Scrubbed {
    inner: Arc<dyn Source>,
    scrubber: Scrubber,
}

impl Scrubbed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Source>, scrubber: Scrubber) -> Self {
        Self { inner, scrubber }
    }

    fn clean(&self, error: SourceError) -> SourceError {
        scrub_error(&self.scrubber, error)
    }

    fn clean_stream(&self, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let scrubber = self.scrubber.clone();
        let schema = stream.schema();
        let stream = stream.map_err(move |e| scrub_read_error(&scrubber, e));
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}

/// A stream's `error` with the secret values of the source error it carries
/// removed.
fn scrub_read_error(scrubber: &Scrubber, error: DataFusionError) -> DataFusionError {
    match error {
        DataFusionError::External(inner) => match inner.downcast::<SourceError>() {
            Ok(error) => DataFusionError::External(Box::new(scrub_error(scrubber, *error))),
            Err(inner) => DataFusionError::External(inner),
        },
        other => other,
    }
}

/// `error` with secret values removed from its texts.
pub fn scrub_error(scrubber: &Scrubber, error: SourceError) -> SourceError {
    match error {
        SourceError::NotFound { kind, name, nearby } => SourceError::NotFound {
            kind,
            name: scrubber.scrub(&name),
            nearby,
        },
        SourceError::Connect(failure) => SourceError::Connect(ConnectFailure {
            detail: scrubber.scrub(&failure.detail),
            ..failure
        }),
        SourceError::Query { code, message } => SourceError::Query {
            code,
            message: scrubber.scrub(&message),
        },
    }
}

#[async_trait]
impl Source for Scrubbed {
    fn dialect(&self) -> &'static dyn Dialect {
        self.inner.dialect()
    }

    async fn schemas(&self) -> Result<Vec<String>, SourceError> {
        self.inner.schemas().await.map_err(|e| self.clean(e))
    }

    async fn tables(&self, schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
        self.inner.tables(schema).await.map_err(|e| self.clean(e))
    }

    async fn describe(&self, table: &TableRef) -> Result<TableDescription, SourceError> {
        self.inner.describe(table).await.map_err(|e| self.clean(e))
    }

    async fn scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        match self.inner.scan(description, request).await {
            Ok(stream) => Ok(self.clean_stream(stream)),
            Err(e) => Err(self.clean(e)),
        }
    }

    async fn scan_pieces(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        whole: &SchemaRef,
    ) -> Result<Option<PieceStream>, SourceError> {
        match self.inner.scan_pieces(description, request, whole).await {
            Ok(pieces) => {
                let scrubber = self.scrubber.clone();
                Ok(pieces.map(|pieces| pieces.map_err(move |e| scrub_read_error(&scrubber, e)).boxed()))
            }
            Err(e) => Err(self.clean(e)),
        }
    }

    async fn commit_horizon(&self) -> Result<Option<CommitHorizon>, SourceError> {
        self.inner.commit_horizon().await.map_err(|e| self.clean(e))
    }

    fn supports_offset(&self) -> bool {
        self.inner.supports_offset()
    }

    fn supports_parallel_scan(&self) -> bool {
        self.inner.supports_parallel_scan()
    }

    fn supports_split_scan(&self) -> bool {
        self.inner.supports_split_scan()
    }

    async fn split_scan(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: Option<usize>,
        parts: usize,
    ) -> Result<SplitScan, SourceError> {
        (self.inner.split_scan(description, request, split, parts).await).map_err(|e| self.clean(e))
    }

    async fn scan_part(
        &self,
        description: &TableDescription,
        part: &ScanRequest,
        snapshot: Option<&str>,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        match self.inner.scan_part(description, part, snapshot).await {
            Ok(stream) => Ok(self.clean_stream(stream)),
            Err(e) => Err(self.clean(e)),
        }
    }

    async fn scan_parallel(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: usize,
        parts: usize,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        match self.inner.scan_parallel(description, request, split, parts).await {
            Ok(stream) => Ok(self.clean_stream(stream)),
            Err(e) => Err(self.clean(e)),
        }
    }

    fn scans_in_segments(&self) -> bool {
        self.inner.scans_in_segments()
    }

    fn splits_itself(&self) -> bool {
        self.inner.splits_itself()
    }

    fn reads_nested(&self) -> bool {
        self.inner.reads_nested()
    }

    async fn scan_segments(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        parts: usize,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        match self.inner.scan_segments(description, request, parts).await {
            Ok(stream) => Ok(self.clean_stream(stream)),
            Err(e) => Err(self.clean(e)),
        }
    }

    fn segmented_scan_query(&self, description: &TableDescription, request: &ScanRequest, parts: usize) -> String {
        self.inner.segmented_scan_query(description, request, parts)
    }

    fn scan_query(&self, description: &TableDescription, request: &ScanRequest) -> String {
        self.inner.scan_query(description, request)
    }

    fn files_read(&self) -> Option<FilesRead> {
        self.inner.files_read()
    }

    async fn parallel_scan_queries(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
        split: usize,
        parts: usize,
    ) -> Result<Vec<String>, SourceError> {
        self.inner
            .parallel_scan_queries(description, request, split, parts)
            .await
            .map_err(|e| self.clean(e))
    }

    async fn estimate_rows(
        &self,
        description: &TableDescription,
        request: &ScanRequest,
    ) -> Result<Option<u64>, SourceError> {
        self.inner
            .estimate_rows(description, request)
            .await
            .map_err(|e| self.clean(e))
    }

    async fn query_text(&self, description: &TableDescription, sql: QueryBuilder<'_>) -> Result<TextRows, SourceError> {
        self.inner.query_text(description, sql).await.map_err(|e| self.clean(e))
    }
}

#[cfg(test)]
mod tests {
    use sluice_catalog::SecretValue;

    use super::*;
    use crate::contract::ConnectFailureKind;

    #[test]
    fn every_text_of_an_error_is_scrubbed() {
        let scrubber = Scrubber::new(vec![SecretValue::new("hunter2")]);
        let query = scrub_error(
            &scrubber,
            SourceError::Query {
                code: Some("28P01".into()),
                message: "password hunter2 rejected".into(),
            },
        );
        assert_eq!(query.to_string(), "password ******** rejected");
        let connect = scrub_error(
            &scrubber,
            SourceError::Connect(ConnectFailure::new(ConnectFailureKind::Other, "url user:hunter2@db")),
        );
        assert!(!connect.to_string().contains("hunter2"), "{connect}");
    }
}
