//! A fake BigQuery Storage Read API (gRPC `BigQueryRead`, served by
//! tonic) over the tables of a [`FakeBigQuery`]: `CreateReadSession` checks
//! and records each request (parent, table, Arrow format, selected fields,
//! row restriction, stream count) and splits the selected rows into
//! streams; `ReadRows` serves a stream from the requested offset as Arrow
//! IPC record batches, and can fail a stream part-way once, to test that
//! the reader resumes at the right offset.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, write_message,
};
use futures::StreamExt;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    ArrowRecordBatch, ArrowSchema, CreateReadSessionRequest, DataFormat, ReadRowsRequest, ReadRowsResponse,
    ReadSession, ReadStream, read_rows_response, read_session,
};
use serde_json::Value;
use tonic::codegen::{BoxFuture, BoxStream, Service, http};
use tonic::{Code, Request, Response, Status};

use crate::fake_bigquery::{FakeBigQuery, State as RestState, where_clause};

const SERVICE: &str = "google.cloud.bigquery.storage.v1.BigQueryRead";

/// What the fake was asked and how it behaves.
#[derive(Default)]
pub struct ReadState {
    /// Every `CreateReadSession` request, in order.
    pub sessions: Vec<CreateReadSessionRequest>,
    /// Every `ReadRows` request, in order.
    pub reads: Vec<ReadRowsRequest>,
    /// The `x-goog-request-params` of every request, in order.
    pub routing: Vec<String>,
    /// The most streams a session gets (fewer when the client asks for fewer).
    pub streams: usize,
    /// Rows per `ReadRows` response.
    pub rows_per_response: usize,
    /// Once: stream number `.0` fails with UNAVAILABLE after `.1` responses.
    pub fail_stream_after: Option<(usize, usize)>,
    /// `CreateReadSession` answers this code (e.g. PERMISSION_DENIED).
    pub refuse: Option<Code>,
    /// The rows of each stream, by stream name.
    stream_rows: HashMap<String, RecordBatch>,
}

pub struct FakeBigQueryRead {
    /// `http://127.0.0.1:port`, for `SLUICE_BIGQUERY_STORAGE_ENDPOINT`.
    pub url: String,
    pub state: Arc<Mutex<ReadState>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeBigQueryRead {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl FakeBigQueryRead {
    /// Serves `rest`'s tables on a free loopback port, on a thread and
    /// runtime of its own, with at most `streams` streams per session of
    /// `rows_per_response` rows per response.
    pub fn start(rest: &FakeBigQuery, streams: usize, rows_per_response: usize) -> FakeBigQueryRead {
        let state = Arc::new(Mutex::new(ReadState {
            streams,
            rows_per_response,
            ..ReadState::default()
        }));
        let service = ReadService {
            state: state.clone(),
            rest: rest.state.clone(),
        };
        let (url, shutdown) = super::http::serve_on_own_thread(|listener, stop| async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(service, incoming, async {
                    let _ = stop.await;
                })
                .await
                .unwrap();
        });
        FakeBigQueryRead {
            url,
            state,
            shutdown: Some(shutdown),
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, ReadState> {
        self.state.lock().unwrap()
    }
}

#[derive(Clone)]
struct ReadService {
    state: Arc<Mutex<ReadState>>,
    rest: Arc<Mutex<RestState>>,
}

impl<B> Service<http::Request<B>> for ReadService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let this = self.clone();
        match request.uri().path().strip_prefix(&format!("/{SERVICE}/")) {
            Some("CreateReadSession") => Box::pin(async move {
                Ok(tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                    .unary(Unary(this), request)
                    .await)
            }),
            Some("ReadRows") => Box::pin(async move {
                Ok(tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                    .server_streaming(Streaming(this), request)
                    .await)
            }),
            _ => Box::pin(async {
                Ok(Status::unimplemented("the fake serves CreateReadSession and ReadRows").into_http())
            }),
        }
    }
}

/// The routing header, which the real service needs; recorded.
fn routing<T>(state: &mut ReadState, request: &Request<T>) -> Result<String, Status> {
    let bearer = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !bearer.starts_with("Bearer ") {
        return Err(Status::unauthenticated("no bearer token"));
    }
    let params = request
        .metadata()
        .get("x-goog-request-params")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    state.routing.push(params.clone());
    Ok(params)
}

struct Unary(ReadService);

impl tonic::server::UnaryService<CreateReadSessionRequest> for Unary {
    type Response = ReadSession;
    type Future = BoxFuture<Response<ReadSession>, Status>;

    fn call(&mut self, request: Request<CreateReadSessionRequest>) -> Self::Future {
        let answer = create_session(&self.0, request);
        Box::pin(async move { answer.map(Response::new) })
    }
}

fn create_session(service: &ReadService, request: Request<CreateReadSessionRequest>) -> Result<ReadSession, Status> {
    let mut state = service.state.lock().unwrap();
    let params = routing(&mut state, &request)?;
    let request = request.into_inner();
    state.sessions.push(request.clone());
    if let Some(code) = state.refuse {
        return Err(Status::new(
            code,
            "request failed: the user does not have 'bigquery.readsessions.create' permission",
        ));
    }
    let asked = request.read_session.unwrap_or_default();
    let [_, project, _, dataset, _, table] = asked.table.split('/').collect::<Vec<_>>()[..] else {
        return Err(Status::invalid_argument(format!("bad table path {}", asked.table)));
    };
    if request.parent != format!("projects/{project}") || params != format!("read_session.table={}", asked.table) {
        return Err(Status::invalid_argument(format!(
            "parent {} and routing {params} do not match {}",
            request.parent, asked.table
        )));
    }
    if asked.data_format != DataFormat::Arrow as i32 {
        return Err(Status::invalid_argument("the fake serves Arrow only"));
    }
    let options = asked.read_options.unwrap_or_default();
    let rest = service.rest.lock().unwrap();
    let stored = rest
        .tables
        .get(&(dataset.to_owned(), table.to_owned()))
        .ok_or_else(|| Status::not_found(format!("Not found: Table {project}:{dataset}.{table}")))?;
    let fields: Vec<Value> = stored
        .resource
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let schema = stored
        .batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| Status::failed_precondition("the fake needs a table with rows"))?;
    let mut rows = concat_batches(&schema, &stored.batches).map_err(internal)?;
    if !options.row_restriction.is_empty() {
        let kept = where_clause(&options.row_restriction, &fields, &BTreeMap::new(), &rows)
            .map_err(Status::invalid_argument)?;
        rows = filter_record_batch(&rows, &kept).map_err(internal)?;
    }
    if !options.selected_fields.is_empty() {
        let indexes = options
            .selected_fields
            .iter()
            .map(|name| {
                schema
                    .index_of(name)
                    .map_err(|_| Status::invalid_argument(format!("no field {name}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows = rows.project(&indexes).map_err(internal)?;
    }
    let wanted = usize::try_from(request.max_stream_count).unwrap_or(0);
    let count = if wanted == 0 {
        state.streams
    } else {
        wanted.min(state.streams)
    }
    .max(1);
    let session = format!("projects/{project}/locations/eu/sessions/s{}", state.sessions.len());
    let per_stream = rows.num_rows().div_ceil(count);
    let mut streams = Vec::new();
    for i in 0..count {
        let start = (i * per_stream).min(rows.num_rows());
        let length = per_stream.min(rows.num_rows() - start);
        let name = format!("{session}/streams/{i}");
        state.stream_rows.insert(name.clone(), rows.slice(start, length));
        streams.push(ReadStream { name });
    }
    Ok(ReadSession {
        name: session,
        data_format: DataFormat::Arrow as i32,
        table: asked.table,
        streams,
        schema: Some(read_session::Schema::ArrowSchema(ArrowSchema {
            serialized_schema: ipc_schema(&rows.schema()),
        })),
        ..ReadSession::default()
    })
}

struct Streaming(ReadService);

impl tonic::server::ServerStreamingService<ReadRowsRequest> for Streaming {
    type Response = ReadRowsResponse;
    type ResponseStream = BoxStream<ReadRowsResponse>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<ReadRowsRequest>) -> Self::Future {
        let answer = read_rows(&self.0, request);
        Box::pin(async move { answer.map(|responses| Response::new(futures::stream::iter(responses).boxed())) })
    }
}

fn read_rows(
    service: &ReadService,
    request: Request<ReadRowsRequest>,
) -> Result<Vec<Result<ReadRowsResponse, Status>>, Status> {
    let mut state = service.state.lock().unwrap();
    let params = routing(&mut state, &request)?;
    let request = request.into_inner();
    state.reads.push(request.clone());
    if params != format!("read_stream={}", request.read_stream) {
        return Err(Status::invalid_argument(format!("routing {params}")));
    }
    let rows = state
        .stream_rows
        .get(&request.read_stream)
        .cloned()
        .ok_or_else(|| Status::not_found(format!("no stream {}", request.read_stream)))?;
    let offset = usize::try_from(request.offset).map_err(|_| Status::out_of_range("negative offset"))?;
    if offset > rows.num_rows() {
        return Err(Status::out_of_range(format!("offset {offset} beyond the stream's end")));
    }
    let step = state.rows_per_response.max(1);
    let mut responses: Vec<Result<ReadRowsResponse, Status>> = (offset..rows.num_rows())
        .step_by(step)
        .map(|start| {
            let batch = rows.slice(start, step.min(rows.num_rows() - start));
            Ok(ReadRowsResponse {
                row_count: batch.num_rows() as i64,
                rows: Some(read_rows_response::Rows::ArrowRecordBatch(ArrowRecordBatch {
                    serialized_record_batch: ipc_batch(&batch),
                    ..ArrowRecordBatch::default()
                })),
                ..ReadRowsResponse::default()
            })
        })
        .collect();
    let number = request
        .read_stream
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<usize>().ok());
    if let Some((stream, after)) = state.fail_stream_after
        && Some(stream) == number
        && after < responses.len()
    {
        state.fail_stream_after = None;
        responses.truncate(after);
        responses.push(Err(Status::unavailable("the fake's stream broke")));
    }
    Ok(responses)
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// A schema as one IPC message, as the service sends it.
fn ipc_schema(schema: &Schema) -> Vec<u8> {
    let options = IpcWriteOptions::default();
    let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut DictionaryTracker::new(false),
        &options,
    );
    let mut bytes = Vec::new();
    write_message(&mut bytes, encoded, &options).unwrap();
    bytes
}

/// A batch as one IPC message, without its schema.
fn ipc_batch(batch: &RecordBatch) -> Vec<u8> {
    let options = IpcWriteOptions::default();
    let (_, encoded) = IpcDataGenerator::default()
        .encode(
            batch,
            &mut DictionaryTracker::new(false),
            &options,
            &mut IpcWriteContext::default(),
        )
        .unwrap();
    let mut bytes = Vec::new();
    write_message(&mut bytes, encoded, &options).unwrap();
    bytes
}
