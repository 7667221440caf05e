//! Table scans through the BigQuery Storage Read API: one read session in
//! Arrow format with the scan's columns and filter, its streams read
//! concurrently (each polled for its next response only when the run takes
//! the last, with HTTP/2 flow control holding back the rest, so memory stays
//! bounded) and resumed at the row offset they reached when a stream fails.
//!
//! The connection option `read_api` chooses: `auto` (the default) reads
//! tables this way and falls back to `jobs.query` when the session cannot be
//! made (no `bigquery.readsessions.create` permission, a view, a filter the
//! API does not take, the endpoint unreachable), `on` always, `off` never.

use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::buffer::Buffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamDecoder;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    CreateReadSessionRequest, DataFormat, ReadRowsRequest, ReadRowsResponse, ReadSession,
    big_query_read_client::BigQueryReadClient, read_rows_response, read_session,
};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::contract::SourceError;
use crate::google::auth::TokenSource;

/// Where the Storage Read API is; `SLUICE_BIGQUERY_STORAGE_ENDPOINT`
/// replaces it (tests point it at a local server).
const DEFAULT_ENDPOINT: &str = "https://bigquerystorage.googleapis.com";

/// How often one stream is re-opened at its offset after failing.
const STREAM_RETRIES: u32 = 5;

/// The largest response accepted (the service sends up to about 128 MiB).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// When scans use the Read API (connection option `read_api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadApiMode {
    Auto,
    On,
    Off,
}

impl ReadApiMode {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!("read_api must be 'auto', 'on' or 'off', not '{other}'")),
        }
    }
}

/// The connection's Read API settings.
#[derive(Debug, Clone)]
pub(crate) struct ReadApi {
    pub mode: ReadApiMode,
    /// The gRPC endpoint; `None` when the REST endpoint was replaced
    /// (`SLUICE_BIGQUERY_ENDPOINT`) without replacing this one, so that a
    /// stand-in REST service is never paired with the real Read API.
    pub endpoint: Option<String>,
    /// Most streams one scan reads at once (`read_streams`).
    pub max_streams: i32,
}

impl ReadApi {
    pub(super) fn new(mode: ReadApiMode, max_streams: i32) -> Self {
        let endpoint = match std::env::var("SLUICE_BIGQUERY_STORAGE_ENDPOINT") {
            Ok(endpoint) => Some(endpoint.trim_end_matches('/').to_owned()),
            Err(_) if std::env::var_os("SLUICE_BIGQUERY_ENDPOINT").is_some() => None,
            Err(_) => Some(DEFAULT_ENDPOINT.to_owned()),
        };
        Self {
            mode,
            endpoint,
            max_streams,
        }
    }
}

/// What one scan reads: `projects/p/datasets/d/tables/t`, its columns in
/// output order, and the filter in BigQuery's SQL.
pub(super) struct ReadPlan<'a> {
    pub project: &'a str,
    pub table: String,
    pub columns: Vec<String>,
    pub row_restriction: Option<String>,
    /// The batches' schema (the source's mapping of the columns).
    pub schema: SchemaRef,
}

/// Why a scan did not go through the Read API.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The session could not be made for a reason `auto` falls back on.
    Unusable(String),
    /// Any other failure.
    Failed(SourceError),
}

/// Opens a read session for `plan` and streams its rows.
pub(super) async fn read(
    settings: &ReadApi,
    tokens: &TokenSource,
    timeout: Duration,
    plan: ReadPlan<'_>,
) -> Result<SendableRecordBatchStream, ReadError> {
    let Some(endpoint) = &settings.endpoint else {
        return Err(ReadError::Unusable(
            "the REST endpoint is replaced (SLUICE_BIGQUERY_ENDPOINT) and SLUICE_BIGQUERY_STORAGE_ENDPOINT is not set"
                .into(),
        ));
    };
    let client = connect(endpoint, timeout).await?;
    let session = create_session(client.clone(), tokens, &plan, settings.max_streams)
        .await
        .map_err(|status| match status.code() {
            Code::PermissionDenied
            | Code::Unimplemented
            | Code::Unavailable
            | Code::InvalidArgument
            | Code::FailedPrecondition => ReadError::Unusable(format!(
                "CreateReadSession on {} answered {:?}: {}",
                plan.table,
                status.code(),
                status.message()
            )),
            _ => ReadError::Failed(status_error(&status)),
        })?;
    let schema_bytes = match session.schema {
        Some(read_session::Schema::ArrowSchema(schema)) => schema.serialized_schema,
        _ => {
            return Err(ReadError::Failed(bad_response(
                "a read session without an Arrow schema",
            )));
        }
    };
    let target = plan.schema.clone();
    let streams = session.streams.into_iter().map(|stream| {
        let reader = StreamRead {
            client: client.clone(),
            tokens: tokens.clone(),
            name: stream.name,
            offset: 0,
            failures: 0,
            decoder: None,
            schema_bytes: schema_bytes.clone(),
            target: target.clone(),
            responses: None,
        };
        futures::stream::try_unfold(reader, StreamRead::next).boxed()
    });
    let merged = futures::stream::select_all(streams);
    Ok(Box::pin(RecordBatchStreamAdapter::new(plan.schema, merged)))
}

async fn connect(endpoint: &str, timeout: Duration) -> Result<BigQueryReadClient<Channel>, ReadError> {
    let unusable = |e: tonic::transport::Error| ReadError::Unusable(format!("cannot reach {endpoint}: {e}"));
    let mut channel = Endpoint::from_shared(endpoint.to_owned())
        .map_err(unusable)?
        .connect_timeout(timeout);
    if endpoint.starts_with("https://") {
        // tonic's TLS takes rustls' process-wide provider.
        crate::tls::install_default_provider();
        channel = channel
            .tls_config(ClientTlsConfig::new().with_native_roots())
            .map_err(unusable)?;
    }
    let channel = channel.connect().await.map_err(unusable)?;
    Ok(BigQueryReadClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// A request signed with the connection's token and routed by `params`
/// (`x-goog-request-params`, which the service needs to find the table).
async fn signed<T>(tokens: &TokenSource, params: String, message: T) -> Result<tonic::Request<T>, Status> {
    let token = tokens
        .token()
        .await
        .map_err(|e| Status::unauthenticated(format!("Google sign-in failed: {e}")))?;
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    let value = |text: String| {
        text.parse()
            .map_err(|_| Status::internal("unprintable request metadata"))
    };
    metadata.insert("authorization", value(format!("Bearer {token}"))?);
    metadata.insert("x-goog-request-params", value(params)?);
    Ok(request)
}

async fn create_session(
    mut client: BigQueryReadClient<Channel>,
    tokens: &TokenSource,
    plan: &ReadPlan<'_>,
    max_streams: i32,
) -> Result<ReadSession, Status> {
    let request = CreateReadSessionRequest {
        parent: format!("projects/{}", plan.project),
        read_session: Some(ReadSession {
            table: plan.table.clone(),
            data_format: DataFormat::Arrow as i32,
            read_options: Some(read_session::TableReadOptions {
                selected_fields: plan.columns.clone(),
                row_restriction: plan.row_restriction.clone().unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        max_stream_count: max_streams,
        ..Default::default()
    };
    let request = signed(tokens, format!("read_session.table={}", plan.table), request).await?;
    Ok(client.create_read_session(request).await?.into_inner())
}

/// One stream of a session, read from `offset` on.
struct StreamRead {
    client: BigQueryReadClient<Channel>,
    tokens: TokenSource,
    name: String,
    /// Rows of this stream already passed on.
    offset: i64,
    /// Failures in a row without progress.
    failures: u32,
    /// Decodes the stream's messages, once fed the session's schema.
    decoder: Option<StreamDecoder>,
    schema_bytes: Vec<u8>,
    target: SchemaRef,
    responses: Option<tonic::Streaming<ReadRowsResponse>>,
}

impl StreamRead {
    async fn next(mut self) -> Result<Option<(RecordBatch, Self)>, DataFusionError> {
        loop {
            let answer = match &mut self.responses {
                Some(responses) => responses.message().await,
                None => match self.open().await {
                    Ok(responses) => {
                        self.responses = Some(responses);
                        continue;
                    }
                    Err(status) => Err(status),
                },
            };
            match answer {
                Ok(Some(response)) => {
                    let Some(batch) = self.decode(response)? else { continue };
                    self.offset += batch.num_rows() as i64;
                    self.failures = 0;
                    if batch.num_rows() > 0 {
                        return Ok(Some((batch, self)));
                    }
                }
                Ok(None) => return Ok(None),
                Err(status) if retryable(&status) && self.failures < STREAM_RETRIES => {
                    self.failures += 1;
                    tracing::warn!(stream = %self.name, offset = self.offset, error = %status,
                        "a BigQuery read stream failed; resuming at its offset");
                    self.responses = None;
                    tokio::time::sleep(Duration::from_millis(100 << self.failures)).await;
                }
                Err(status) => return Err(DataFusionError::External(Box::new(status_error(&status)))),
            }
        }
    }

    async fn open(&mut self) -> Result<tonic::Streaming<ReadRowsResponse>, Status> {
        let request = ReadRowsRequest {
            read_stream: self.name.clone(),
            offset: self.offset,
        };
        let request = signed(&self.tokens, format!("read_stream={}", self.name), request).await?;
        Ok(self.client.read_rows(request).await?.into_inner())
    }

    /// The response's rows as a batch of the target schema.
    fn decode(&mut self, response: ReadRowsResponse) -> Result<Option<RecordBatch>, DataFusionError> {
        let Some(read_rows_response::Rows::ArrowRecordBatch(rows)) = response.rows else {
            return Ok(None);
        };
        let decoder = match &mut self.decoder {
            Some(decoder) => decoder,
            None => {
                let mut decoder = StreamDecoder::new();
                let mut schema = Buffer::from(schema_message(std::mem::take(&mut self.schema_bytes)));
                decoder.decode(&mut schema)?;
                self.decoder.insert(decoder)
            }
        };
        let mut buffer = Buffer::from(rows.serialized_record_batch);
        let mut decoded = None;
        while !buffer.is_empty() {
            if let Some(batch) = decoder.decode(&mut buffer)? {
                decoded = Some(batch);
            }
        }
        decoded.map(|batch| conform(&self.target, &batch)).transpose()
    }
}

/// The schema's IPC message alone: some servers (bqemulator) send it as a
/// whole IPC stream, with the end-of-stream marker after it, which would end
/// the decoder before the first batch. A schema message has no body.
fn schema_message(mut bytes: Vec<u8>) -> Vec<u8> {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let length = match word(0) {
        Some(0xFFFF_FFFF) => word(4).map(|length| 8 + length),
        Some(length) => Some(4 + length),
        None => None,
    };
    if let Some(length) = length.filter(|&l| l < bytes.len()) {
        bytes.truncate(length);
    }
    bytes
}

/// `batch` with the target's field names and types (the Read API's
/// `timestamp[us, UTC]`, say, where the mapping says `+00:00`).
fn conform(target: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch, DataFusionError> {
    if batch.num_columns() != target.fields().len() {
        return Err(DataFusionError::External(Box::new(bad_response(&format!(
            "a batch of {} columns where {} were selected",
            batch.num_columns(),
            target.fields().len()
        )))));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}

/// Errors worth re-opening a stream for.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Internal | Code::Aborted | Code::Unknown | Code::DeadlineExceeded
    )
}

fn status_error(status: &Status) -> SourceError {
    SourceError::Query {
        code: None,
        message: format!("BigQuery Storage Read API: {:?}: {}", status.code(), status.message()),
    }
}

fn bad_response(what: &str) -> SourceError {
    SourceError::Query {
        code: None,
        message: format!("BigQuery Storage Read API sent {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_message_is_read_without_a_following_end_of_stream() {
        let message = [0xFF, 0xFF, 0xFF, 0xFF, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let end_of_stream = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];
        assert_eq!(schema_message([&message[..], &end_of_stream].concat()), message);
        assert_eq!(schema_message(message.to_vec()), message, "a lone message stays");
        let legacy = [8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(schema_message([&legacy[..], &[0, 0, 0, 0]].concat()), legacy);
    }

    /// TLS is set up with Sluice's rustls provider (no panic for want of
    /// one); an endpoint that does not answer is a reason to fall back.
    #[tokio::test]
    async fn an_unreachable_endpoint_is_unusable_not_a_failure() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        for scheme in ["https", "http"] {
            let endpoint = format!("{scheme}://127.0.0.1:{port}");
            match connect(&endpoint, Duration::from_secs(2)).await {
                Err(ReadError::Unusable(reason)) => assert!(reason.contains(&endpoint), "{reason}"),
                Err(ReadError::Failed(e)) => panic!("{endpoint}: {e}"),
                Ok(_) => panic!("{endpoint} answered"),
            }
        }
    }

    #[test]
    fn modes_are_named() {
        assert_eq!(ReadApiMode::parse("AUTO"), Ok(ReadApiMode::Auto));
        assert_eq!(ReadApiMode::parse("off"), Ok(ReadApiMode::Off));
        assert!(
            ReadApiMode::parse("maybe")
                .unwrap_err()
                .contains("'auto', 'on' or 'off'")
        );
    }
}
