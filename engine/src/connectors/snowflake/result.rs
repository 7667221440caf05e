//! A statement's result: the rows Snowflake sends inline, then each chunk
//! fetched from its URL (with the `qrmk` or chunk headers) only when the
//! previous one is read, so one chunk at a time is in memory.

use std::collections::{HashMap, VecDeque};
use std::io::{Cursor, Read};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::convert::try_schema_from_flatbuffer_bytes;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions, write_message};
use futures::Stream;
use reqwest::Client;
use serde_json::Value;

use super::client::{RowType, transport_failure};
use super::decode;
use crate::contract::{SourceError, TextRows};

/// What starts each message of an IPC stream (since Arrow 0.15).
const CONTINUATION_MARKER: [u8; 4] = [0xff; 4];

/// Attempts at one chunk before the scan fails.
const CHUNK_ATTEMPTS: u32 = 3;

/// A chunk of a result still to fetch.
#[derive(Debug, Clone)]
pub(super) struct Chunk {
    pub(super) url: String,
    /// What the answer announced, to check what arrives.
    pub(super) rows: Option<u64>,
}

/// Rows as one answer or chunk carries them.
pub(super) enum Rowset {
    /// An Arrow IPC stream.
    Arrow(Vec<u8>),
    /// Rows of JSON values (text or NULL), in Snowflake's text encoding.
    Json(Vec<Vec<Value>>),
}

/// One statement's result.
pub(super) struct ResultSet {
    pub(super) rowtype: Vec<RowType>,
    /// Whether the rows (inline and in chunks) are JSON, not Arrow.
    pub(super) json: bool,
    /// The first rows.
    pub(super) inline: Option<Rowset>,
    pub(super) chunks: Vec<Chunk>,
    /// Headers every chunk request sends.
    pub(super) headers: HashMap<String, String>,
    pub(super) http: Client,
}

impl ResultSet {
    /// The Arrow batches of the result as Snowflake encodes them (JSON rows
    /// already decoded), inline rows first, then chunk by chunk.
    pub(super) fn batches(self) -> impl Stream<Item = Result<RecordBatch, SourceError>> + Send + 'static {
        let state = Reader {
            current: None,
            rowtype: self.rowtype,
            json: self.json,
            inline: self.inline,
            chunks: self.chunks.into(),
            headers: self.headers,
            http: self.http,
        };
        futures::stream::try_unfold(state, |mut state| async move {
            let batch = state.next_batch().await?;
            Ok(batch.map(|batch| (batch, state)))
        })
    }

    /// Every row as text (`None` for NULL): for metadata queries, whose
    /// results are small.
    pub(super) async fn text_rows(self) -> Result<TextRows, SourceError> {
        use futures::TryStreamExt;
        let columns: Vec<String> = self.rowtype.iter().map(|c| c.name.clone()).collect();
        let batches: Vec<RecordBatch> = self
            .batches()
            .and_then(|batch| async move { decode::natural(&batch) })
            .try_collect()
            .await?;
        let mut text = TextRows::from_batches(&batches).map_err(|e| SourceError::Query {
            code: None,
            message: format!("cannot read a Snowflake result as text: {e}"),
        })?;
        text.columns = columns;
        Ok(text)
    }
}

/// Where a result is being read.
struct Reader {
    current: Option<StreamReader<Cursor<Vec<u8>>>>,
    rowtype: Vec<RowType>,
    json: bool,
    inline: Option<Rowset>,
    chunks: VecDeque<Chunk>,
    headers: HashMap<String, String>,
    http: Client,
}

impl Reader {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, SourceError> {
        loop {
            if let Some(reader) = &mut self.current {
                match reader.next() {
                    Some(batch) => return batch.map(Some).map_err(arrow_error),
                    None => self.current = None,
                }
            }
            let rowset = match self.inline.take() {
                Some(rowset) => rowset,
                None => match self.chunks.pop_front() {
                    Some(chunk) => self.fetch(&chunk).await?,
                    None => return Ok(None),
                },
            };
            match rowset {
                Rowset::Arrow(bytes) if bytes.is_empty() => {}
                Rowset::Arrow(bytes) => self.current = Some(open_stream(bytes).map_err(arrow_error)?),
                Rowset::Json(rows) if rows.is_empty() => {}
                Rowset::Json(rows) => return decode::json_batch(&self.rowtype, &rows).map(Some),
            }
        }
    }

    /// One chunk's rows, unzipped, retried on transient failures.
    async fn fetch(&self, chunk: &Chunk) -> Result<Rowset, SourceError> {
        let mut attempt = 1;
        loop {
            match self.fetch_once(chunk).await {
                Ok(bytes) => return Ok(bytes),
                Err(SourceError::Connect(failure)) if attempt < CHUNK_ATTEMPTS && failure.kind.is_transient() => {
                    tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn fetch_once(&self, chunk: &Chunk) -> Result<Rowset, SourceError> {
        let mut request = self.http.get(&chunk.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| SourceError::Connect(transport_failure(e)))?;
        let status = response.status();
        if !status.is_success() {
            let failure = crate::contract::ConnectFailure::new(
                if status.is_server_error() {
                    crate::contract::ConnectFailureKind::Other
                } else {
                    crate::contract::ConnectFailureKind::AccessDenied
                },
                format!(
                    "a result chunk of {} rows answered HTTP {status}",
                    rows_text(chunk.rows)
                ),
            );
            return Err(SourceError::Connect(failure));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| SourceError::Connect(transport_failure(e)))?;
        let bytes = unzip(body.to_vec())?;
        if !self.json {
            return Ok(Rowset::Arrow(bytes));
        }
        // A JSON chunk is the rows without the enclosing brackets.
        let mut list = Vec::with_capacity(bytes.len() + 2);
        list.push(b'[');
        list.extend_from_slice(&bytes);
        list.push(b']');
        serde_json::from_slice(&list)
            .map(Rowset::Json)
            .map_err(|e| SourceError::Query {
                code: Some("XX001".into()),
                message: format!("a Snowflake result chunk is not JSON rows: {e}"),
            })
    }
}

/// A reader of one IPC stream whose schema is relaxed first: every field
/// inside a struct becomes nullable. Snowflake's connectors read timestamp
/// structs whose children hold nulls under a valid parent (fakesnow sends
/// them so), which Arrow's validation would otherwise refuse; the batches'
/// own bytes are read unchanged and validated as usual.
fn open_stream(bytes: Vec<u8>) -> Result<StreamReader<Cursor<Vec<u8>>>, ArrowError> {
    let truncated = || ArrowError::ParseError("the result ends inside its schema".into());
    let (length_at, start) = if bytes.starts_with(&CONTINUATION_MARKER) {
        (4, 8)
    } else {
        (0, 4)
    };
    let length = bytes.get(length_at..start).ok_or_else(truncated)?;
    let length =
        usize::try_from(i32::from_le_bytes(length.try_into().map_err(|_| truncated())?)).map_err(|_| truncated())?;
    let end = start
        .checked_add(length)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(truncated)?;
    let schema = try_schema_from_flatbuffer_bytes(&bytes[start..end])?;
    let relaxed = Schema::new_with_metadata(
        schema.fields().iter().map(|f| relax(f, false)).collect::<Vec<_>>(),
        schema.metadata().clone(),
    );
    let options = IpcWriteOptions::default();
    let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        &relaxed,
        &mut DictionaryTracker::new(false),
        &options,
    );
    let mut stream = Vec::with_capacity(bytes.len() - end + 256);
    write_message(&mut stream, encoded, &options)?;
    stream.extend_from_slice(&bytes[end..]);
    StreamReader::try_new(Cursor::new(stream), None)
}

/// `field` with every field below a struct nullable (`nested`: whether
/// `field` itself is one).
fn relax(field: &Field, nested: bool) -> Field {
    let field = if nested {
        field.clone().with_nullable(true)
    } else {
        field.clone()
    };
    match field.data_type() {
        DataType::Struct(children) => {
            let children: Fields = children.iter().map(|c| relax(c, true)).collect();
            field.with_data_type(DataType::Struct(children))
        }
        _ => field,
    }
}

fn rows_text(rows: Option<u64>) -> String {
    rows.map_or_else(|| "unknown".into(), |r| r.to_string())
}

/// The bytes of a chunk, gunzipped when they are gzip (Snowflake stores
/// chunks compressed without always saying so in `Content-Encoding`).
fn unzip(bytes: Vec<u8>) -> Result<Vec<u8>, SourceError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| SourceError::Query {
            code: Some("XX001".into()),
            message: format!("a Snowflake result chunk is not valid gzip: {e}"),
        })?;
    Ok(out)
}

fn arrow_error(error: ArrowError) -> SourceError {
    SourceError::Query {
        code: Some("XX001".into()),
        message: format!("cannot read Snowflake's Arrow result: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use base64::Engine;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::arrow::ipc::writer::StreamWriter;
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::client::QueryData;

    const KEY: &str = "c29tZSBrZXk=";

    /// An Arrow IPC stream of one batch of `ids`, as Snowflake encodes a
    /// NUMBER(38,0) column.
    fn ipc(ids: &[i64]) -> Vec<u8> {
        let field = Field::new("ID", DataType::Int64, true).with_metadata(
            [
                ("logicalType".to_string(), "FIXED".to_string()),
                ("scale".to_string(), "0".to_string()),
            ]
            .into(),
        );
        let schema = Arc::new(Schema::new(vec![field]));
        let batch = datafusion::arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(ids.to_vec()))],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut writer = StreamWriter::try_new(&mut out, &schema).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// Serves the chunks: `/chunk/0` gzipped and only with the `qrmk`
    /// header, `/chunk/1` plain after failing once with 503. Counts the
    /// requests answered with data.
    async fn chunk_server(served: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let failed_once = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (served, failed_once) = (served.clone(), failed_once.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = socket.read(&mut buffer).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buffer[..n]);
                    }
                    let request = String::from_utf8_lossy(&request).to_lowercase();
                    let keyed = request.contains(&format!(
                        "x-amz-server-side-encryption-customer-key: {}",
                        KEY.to_lowercase()
                    )) && request.contains("x-amz-server-side-encryption-customer-algorithm: aes256");
                    let (status, body) = if request.starts_with("get /chunk/0 ") && keyed {
                        served.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", gzip(&ipc(&[3, 4])))
                    } else if request.starts_with("get /chunk/1 ") && failed_once.fetch_add(1, Ordering::SeqCst) == 0 {
                        ("503 Service Unavailable", Vec::new())
                    } else if request.starts_with("get /json/0 ") && keyed {
                        served.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", gzip(b"[\"3\"],\n[null]"))
                    } else if request.starts_with("get /chunk/1 ") && keyed {
                        served.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", ipc(&[5, 6]))
                    } else {
                        ("403 Forbidden", Vec::new())
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    socket.write_all(head.as_bytes()).await.unwrap();
                    socket.write_all(&body).await.unwrap();
                    let _ = socket.shutdown().await;
                });
            }
        });
        format!("http://{address}")
    }

    /// A query answer in the shape Snowflake sends for a large result: the
    /// first rows inline, the rest in chunks with a `qrmk` key.
    fn answer(base: &str) -> QueryData {
        let encoded = base64::engine::general_purpose::STANDARD.encode(ipc(&[1, 2]));
        serde_json::from_value(serde_json::json!({
            "parameters": [{"name": "TIMEZONE", "value": "UTC"}],
            "rowtype": [{"name": "ID", "type": "fixed", "precision": 38, "scale": 0, "nullable": true}],
            "rowsetBase64": encoded,
            "total": 6,
            "returned": 2,
            "queryId": "01b2c3d4-0000-1111-0000-000000000001",
            "queryResultFormat": "arrow",
            "qrmk": KEY,
            "chunks": [
                {"url": format!("{base}/chunk/0"), "rowCount": 2, "uncompressedSize": 400, "compressedSize": 200},
                {"url": format!("{base}/chunk/1"), "rowCount": 2, "uncompressedSize": 400, "compressedSize": 400}
            ]
        }))
        .unwrap()
    }

    fn ids(batch: &datafusion::arrow::array::RecordBatch) -> Vec<i64> {
        batch.column(0).as_primitive::<Int64Type>().values().to_vec()
    }

    #[tokio::test]
    async fn chunks_are_fetched_in_order_one_at_a_time_with_the_key() {
        let served = Arc::new(AtomicUsize::new(0));
        let base = chunk_server(served.clone()).await;
        let result = answer(&base).into_result(reqwest::Client::new()).unwrap();
        let mut batches = Box::pin(result.batches());
        assert_eq!(ids(&batches.next().await.unwrap().unwrap()), [1, 2]);
        assert_eq!(
            served.load(Ordering::SeqCst),
            0,
            "no chunk is fetched before the inline rows are read"
        );
        assert_eq!(ids(&batches.next().await.unwrap().unwrap()), [3, 4]);
        assert_eq!(
            served.load(Ordering::SeqCst),
            1,
            "the second chunk waits for the first to be read"
        );
        assert_eq!(ids(&batches.next().await.unwrap().unwrap()), [5, 6], "a 503 is retried");
        assert!(batches.next().await.is_none());
        assert_eq!(served.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn json_results_are_read_inline_and_from_chunks() {
        let served = Arc::new(AtomicUsize::new(0));
        let base = chunk_server(served).await;
        let data: QueryData = serde_json::from_value(serde_json::json!({
            "rowtype": [{"name": "ID", "type": "fixed", "precision": 38, "scale": 0, "nullable": true}],
            "rowset": [["1"], ["2"]],
            "queryResultFormat": "json",
            "qrmk": KEY,
            "chunks": [{"url": format!("{base}/json/0"), "rowCount": 2}]
        }))
        .unwrap();
        let text = data
            .into_result(reqwest::Client::new())
            .unwrap()
            .text_rows()
            .await
            .unwrap();
        assert_eq!(text.columns, ["ID"]);
        assert_eq!(
            text.rows,
            [Some("1"), Some("2"), Some("3"), None].map(|v| vec![v.map(str::to_owned)])
        );
    }

    #[tokio::test]
    async fn a_refused_chunk_fails_the_result() {
        let served = Arc::new(AtomicUsize::new(0));
        let base = chunk_server(served).await;
        let mut data = answer(&base);
        // Without the key, the store refuses the chunk.
        data.qrmk = None;
        let result = data.into_result(reqwest::Client::new()).unwrap();
        let outcome: Vec<_> = result.batches().collect().await;
        assert!(outcome[0].is_ok());
        let error = outcome[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("403"), "{error}");
    }
}
