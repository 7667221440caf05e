//! A local fake of the BigQuery REST API: the calls Sluice makes, checked
//! the way the real API checks them, with rows kept as Arrow batches decoded
//! from the uploaded Parquet, and faults to inject.
//!
//! Calls: the OAuth token endpoint, datasets get/insert, tables
//! list/get/insert/patch (labels, description, columns, a view's query)/delete, jobs insert/get (load jobs through the
//! multipart upload endpoint, copy jobs), and jobs.query/getQueryResults
//! for `SELECT columns FROM dataset.table [WHERE column > @p] [LIMIT n]`
//! with named query parameters, and query jobs running the transactions
//! Sluice writes ([`script`]). Jobs finish at once,
//! or show RUNNING for `job_delay` after they were inserted.
//! Cloud Storage, for staging buckets, is in [`gcs`]; resumable uploads in
//! [`resumable`].

#![allow(dead_code)]

pub mod checksum;
pub mod gcs;
pub mod resumable;
pub mod script;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

pub const TOKEN: &str = "fake-access-token";
const TYPES: &[&str] = &[
    "STRING",
    "BYTES",
    "INTEGER",
    "INT64",
    "FLOAT",
    "FLOAT64",
    "NUMERIC",
    "BIGNUMERIC",
    "BOOLEAN",
    "BOOL",
    "TIMESTAMP",
    "DATE",
    "TIME",
    "DATETIME",
    "RECORD",
    "STRUCT",
    "GEOGRAPHY",
    "JSON",
    "INTERVAL",
];

/// A table: its resource as last written, and its rows.
#[derive(Debug, Clone)]
pub struct FakeTable {
    pub resource: Value,
    pub batches: Vec<RecordBatch>,
}

impl FakeTable {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What a matching request gets instead of (or before) its answer.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer with this status and BigQuery error reason, doing nothing.
    Status(u16, &'static str),
    /// Answer with this status, BigQuery error reason and message (a
    /// service quoting what it was sent), doing nothing.
    Message(u16, &'static str, String),
    /// Do the request, but answer only after this long (the client has
    /// given up by then: a lost answer).
    LateAnswer(Duration),
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Method,
    /// A piece of the path (and query) that the request must contain.
    pub path_contains: String,
    pub kind: FaultKind,
    /// How many matching requests it hits.
    pub times: usize,
}

#[derive(Debug, Default)]
pub struct State {
    pub datasets: BTreeMap<String, Value>,
    /// By (dataset, table).
    pub tables: BTreeMap<(String, String), FakeTable>,
    pub jobs: BTreeMap<String, Value>,
    pub faults: Vec<Fault>,
    /// `METHOD path?query` of every request, in order.
    pub requests: Vec<String>,
    /// A permission the service account lacks (e.g. `bigquery.datasets.create`).
    pub denied: Option<String>,
    /// How many tokens were handed out.
    pub tokens_issued: usize,
    /// The bearer tokens accepted besides [`TOKEN`] (tokens of other
    /// sign-in flows).
    pub accepted_tokens: Vec<String>,
    /// `METHOD path` and bearer token of every authorized request.
    pub bearers: Vec<(String, String)>,
    /// Results of queries by job id: the rows as `{"f": [...]}` values
    /// (TIMESTAMPs as integer microseconds), and the TIMESTAMP columns.
    pub query_results: BTreeMap<String, (Vec<Value>, Vec<usize>)>,
    /// How long a job shows RUNNING after it was inserted (none: DONE at once).
    pub job_delay: Option<Duration>,
    /// The body of every jobs.query request, in order.
    pub queries: Vec<Value>,
    /// When each delayed job shows DONE, by job id.
    pub done_at: BTreeMap<String, Instant>,
    /// The staging buckets' objects.
    pub gcs: gcs::Storage,
    /// Resumable upload sessions.
    pub uploads: resumable::Sessions,
    /// How many `tables.patch` calls changed a table's columns.
    pub schema_patches: usize,
    /// The SQL of every query job (jobs.insert), in order.
    pub scripts: Vec<String>,
    /// Loads check their files' columns but keep no rows (a benchmark:
    /// decoding them would take the machine's time from the run measured).
    pub columns_only: bool,
}

/// Rows per page of query results.
const PAGE_ROWS: usize = 100;

pub struct FakeBigQuery {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeBigQuery {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl FakeBigQuery {
    /// Starts the fake on a free loopback port, on its own thread and
    /// runtime, so that it answers while the test blocks (e.g. waiting for
    /// Sluice to start, which may call it).
    pub async fn start() -> FakeBigQuery {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let app = Router::new()
            .fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { handle(state, method, uri, headers, body).await }
            })
            // Uploads of a whole chunk (axum's default limit is 2 MB).
            .layer(axum::extract::DefaultBodyLimit::max(1 << 30));
        let (url, shutdown) = crate::common::http::serve_axum(app);
        FakeBigQuery {
            url,
            state,
            shutdown: Some(shutdown),
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn inject(&self, method: Method, path_contains: &str, kind: FaultKind, times: usize) {
        self.state().faults.push(Fault {
            method,
            path_contains: path_contains.into(),
            kind,
            times,
        });
    }

    pub fn table(&self, dataset: &str, table: &str) -> Option<FakeTable> {
        self.state().tables.get(&(dataset.into(), table.into())).cloned()
    }

    /// Creates `dataset` (in the EU) if missing and table `table` in it with
    /// `fields` (a `schema.fields` list) holding `batches`, as if loaded
    /// by someone else: a source table for Sluice to read.
    pub fn put_table(&self, dataset: &str, table: &str, fields: Value, batches: Vec<RecordBatch>) {
        let mut s = self.state();
        s.datasets.entry(dataset.to_owned()).or_insert_with(|| {
            json!({"datasetReference": {"projectId": "test-project", "datasetId": dataset},
                "id": format!("test-project:{dataset}"), "location": "EU"})
        });
        let resource = json!({"tableReference": {"projectId": "test-project", "datasetId": dataset, "tableId": table},
            "schema": {"fields": fields}, "type": "TABLE"});
        s.tables
            .insert((dataset.to_owned(), table.to_owned()), FakeTable { resource, batches });
    }

    /// Adds rows to a table made by [`FakeBigQuery::put_table`].
    pub fn append_rows(&self, dataset: &str, table: &str, batch: RecordBatch) {
        let mut s = self.state();
        let table = s
            .tables
            .get_mut(&(dataset.to_owned(), table.to_owned()))
            .expect("the table exists");
        table.batches.push(batch);
    }

    /// The rows of a `<table>_current` view, evaluated as its query says.
    pub fn view_rows(&self, dataset: &str, view: &str) -> Vec<script::Row> {
        let s = self.state();
        let table = s.tables.get(&(dataset.into(), view.into())).expect("the view exists");
        let query = table
            .resource
            .pointer("/view/query")
            .and_then(Value::as_str)
            .expect("a view");
        script::current_rows(&s.tables, query).unwrap()
    }

    /// The names of the tables in a dataset.
    pub fn table_names(&self, dataset: &str) -> Vec<String> {
        self.state()
            .tables
            .keys()
            .filter(|(d, _)| d == dataset)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Requests whose line contains `needle`.
    pub fn count_requests(&self, needle: &str) -> usize {
        self.state().requests.iter().filter(|r| r.contains(needle)).count()
    }

    /// Writes a service-account key file whose token URI is this fake, with
    /// a throwaway RSA key made by `openssl` now.
    pub fn write_key_file(&self, dir: &Path) -> std::path::PathBuf {
        let pem_path = dir.join("key.pem");
        let status = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem_path)
            .output()
            .expect("openssl is installed");
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        let pem = std::fs::read_to_string(&pem_path).unwrap();
        let key = json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": "sluice-test@test-project.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "auth_uri": format!("{}/auth", self.url),
            "token_uri": format!("{}/token", self.url),
            "auth_provider_x509_cert_url": format!("{}/certs", self.url),
            "client_x509_cert_url": format!("{}/cert", self.url),
        });
        let path = dir.join("sa.json");
        std::fs::write(&path, key.to_string()).unwrap();
        path
    }
}

fn error(status: u16, reason: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    let body = json!({"error": {"code": status, "message": message, "status": reason.to_uppercase(),
        "errors": [{"reason": reason, "message": message, "domain": "global"}]}});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

async fn handle(state: Arc<Mutex<State>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let line = format!("{method} {}", uri.path_and_query().map(|p| p.as_str()).unwrap_or(""));
    let late = {
        let mut s = state.lock().unwrap();
        s.requests.push(line.clone());
        let fault = s
            .faults
            .iter_mut()
            .find(|f| f.times > 0 && f.method == method && line.contains(&f.path_contains));
        match fault {
            Some(fault) => {
                fault.times -= 1;
                match fault.kind.clone() {
                    FaultKind::Status(status, reason) => {
                        return error(status, reason, format!("injected {status} {reason}"));
                    }
                    FaultKind::Message(status, reason, message) => return error(status, reason, message),
                    FaultKind::LateAnswer(delay) => Some(delay),
                }
            }
            None => None,
        }
    };
    let response = match checksum_query(&method, &uri, &body) {
        Some(sql) => answer_checksum_query(&state, &uri, &sql).await,
        None => {
            let mut s = state.lock().unwrap();
            route(&mut s, &method, &uri, &headers, &body)
        }
    };
    if let Some(delay) = late {
        tokio::time::sleep(delay).await;
    }
    response
}

/// The SQL of a `jobs.query` request that is one of VERIFY's checksum
/// queries, which [`checksum`] answers.
fn checksum_query(method: &Method, uri: &Uri, body: &Bytes) -> Option<String> {
    if method != Method::POST || !uri.path().ends_with("/queries") {
        return None;
    }
    let request: Value = serde_json::from_slice(body).ok()?;
    let sql = request.get("query")?.as_str()?;
    checksum::is_checksum_query(sql).then(|| sql.to_owned())
}

async fn answer_checksum_query(state: &Arc<Mutex<State>>, uri: &Uri, sql: &str) -> Response {
    match checksum::run(state, sql).await {
        Ok(rows) => {
            let project = uri.path().split('/').nth(4).unwrap_or_default().to_owned();
            let mut s = state.lock().unwrap();
            let id = format!("fake_query_{}", s.query_results.len() + 1);
            s.query_results.insert(id.clone(), (rows, Vec::new()));
            ok(result_page(&s, &project, &id, 0, PAGE_ROWS, true))
        }
        Err(message) => error(400, "invalidQuery", message),
    }
}

fn route(s: &mut State, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let path = uri.path();
    if path == "/token" {
        s.tokens_issued += 1;
        return ok(json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}));
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    if bearer != TOKEN && !s.accepted_tokens.contains(&bearer) {
        return error(
            401,
            "unauthorized",
            "Request is missing required authentication credential.",
        );
    }
    s.bearers.push((format!("{method} {path}"), bearer));
    if let Some(rest) = path.strip_prefix("/storage/") {
        return gcs::route(&mut s.gcs, method, rest, uri.query(), body);
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let json_body = || serde_json::from_slice::<Value>(body);
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["bigquery", "v2", "projects", _, "datasets"]) => {
            let datasets: Vec<Value> = s
                .datasets
                .values()
                .map(|d| {
                    json!({"kind": "bigquery#dataset", "id": d["id"], "datasetReference": d["datasetReference"],
                    "location": d["location"]})
                })
                .collect();
            ok(json!({"kind": "bigquery#datasetList", "etag": "fake", "datasets": datasets}))
        }
        ("GET", ["bigquery", "v2", "projects", p, "datasets", d]) => match s.datasets.get(*d) {
            Some(dataset) => ok(dataset.clone()),
            None => error(404, "notFound", format!("Not found: Dataset {p}:{d}")),
        },
        ("POST", ["bigquery", "v2", "projects", p, "datasets"]) => {
            if let Some(denied) = &s.denied {
                return error(
                    403,
                    "accessDenied",
                    format!("Access Denied: Project {p}: User does not have {denied} permission in project {p}."),
                );
            }
            let Ok(dataset) = json_body() else {
                return error(
                    400,
                    "parseError",
                    "This API does not support parsing form-encoded input.",
                );
            };
            let Some(id) = dataset.pointer("/datasetReference/datasetId").and_then(Value::as_str) else {
                return error(
                    400,
                    "invalid",
                    "Required parameter is missing: datasetReference.datasetId",
                );
            };
            if s.datasets.contains_key(id) {
                return error(409, "duplicate", format!("Already Exists: Dataset {p}:{id}"));
            }
            let mut dataset = dataset.clone();
            if dataset.get("location").is_none() {
                dataset["location"] = json!("US");
            }
            dataset["id"] = json!(format!("{p}:{id}"));
            s.datasets.insert(id.to_owned(), dataset.clone());
            ok(dataset)
        }
        ("GET", ["bigquery", "v2", "projects", p, "datasets", d, "tables"]) => {
            if !s.datasets.contains_key(*d) {
                return error(404, "notFound", format!("Not found: Dataset {p}:{d}"));
            }
            let tables: Vec<Value> = s
                .tables
                .iter()
                .filter(|((dataset, _), _)| dataset == d)
                .map(|(_, t)| {
                    json!({"kind": "bigquery#table", "tableReference": t.resource["tableReference"],
                        "type": "TABLE", "timePartitioning": t.resource.get("timePartitioning")})
                })
                .collect();
            ok(json!({"kind": "bigquery#tableList", "tables": tables, "totalItems": tables.len()}))
        }
        ("POST", ["bigquery", "v2", "projects", p, "queries"]) => {
            let Ok(request) = json_body() else {
                return error(400, "parseError", "Parse error");
            };
            if request.get("useLegacySql") != Some(&json!(false)) {
                return error(
                    400,
                    "invalidQuery",
                    "the fake only runs standard SQL (useLegacySql: false)",
                );
            }
            let sql = request.get("query").and_then(Value::as_str).unwrap_or_default();
            let int64 = request.pointer("/formatOptions/useInt64Timestamp") == Some(&json!(true));
            s.queries.push(request.clone());
            let parameters = match query_parameters(&request) {
                Ok(parameters) => parameters,
                Err(message) => return error(400, "invalid", message),
            };
            let page_rows = request
                .get("maxResults")
                .and_then(Value::as_u64)
                .map_or(PAGE_ROWS, |n| n as usize);
            match run_query(s, sql, &parameters) {
                Ok(result) => {
                    let id = format!("fake_query_{}", s.query_results.len() + 1);
                    s.query_results.insert(id.clone(), result);
                    ok(result_page(s, p, &id, 0, page_rows, int64))
                }
                Err(message) => error(400, "invalidQuery", message),
            }
        }
        ("GET", ["bigquery", "v2", "projects", p, "queries", id]) => {
            if !s.query_results.contains_key(*id) {
                return error(404, "notFound", format!("Not found: Job {p}:{id}"));
            }
            let query = uri.query().unwrap_or_default();
            let offset = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("pageToken="))
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let int64 = query.contains("formatOptions.useInt64Timestamp=true");
            let page_rows = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("maxResults="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(PAGE_ROWS);
            ok(result_page(s, p, id, offset, page_rows, int64))
        }
        ("POST", ["bigquery", "v2", "projects", p, "datasets", d, "tables"]) => {
            let Ok(table) = json_body() else {
                return error(400, "parseError", "Parse error");
            };
            if !s.datasets.contains_key(*d) {
                return error(404, "notFound", format!("Not found: Dataset {p}:{d}"));
            }
            let Some(id) = table.pointer("/tableReference/tableId").and_then(Value::as_str) else {
                return error(400, "invalid", "Required parameter is missing: tableReference.tableId");
            };
            if let Err(message) = check_table(&table) {
                return error(400, "invalid", message);
            }
            let key = (d.to_string(), id.to_owned());
            if s.tables.contains_key(&key) {
                return error(409, "duplicate", format!("Already Exists: Table {p}:{d}.{id}"));
            }
            let mut table = table.clone();
            if let Some(query) = table.pointer("/view/query").and_then(Value::as_str).map(str::to_owned) {
                // BigQuery derives a view's columns from its query.
                match script::view_fields(&s.tables, &query) {
                    Ok(fields) => table["schema"] = json!({ "fields": fields }),
                    Err(message) => return error(400, "invalidQuery", message),
                }
            }
            s.tables.insert(
                key,
                FakeTable {
                    resource: table.clone(),
                    batches: Vec::new(),
                },
            );
            ok(table)
        }
        (m, ["bigquery", "v2", "projects", p, "datasets", d, "tables", t]) => {
            let key = (d.to_string(), t.to_string());
            let not_found = || error(404, "notFound", format!("Not found: Table {p}:{d}.{t}"));
            match m {
                "GET" => match s.tables.get(&key) {
                    Some(table) => {
                        let mut resource = table.resource.clone();
                        resource["numRows"] = json!(table.num_rows().to_string());
                        let bytes: usize = table.batches.iter().map(RecordBatch::get_array_memory_size).sum();
                        resource["numBytes"] = json!(bytes.to_string());
                        resource["lastModifiedTime"] = json!("1709251200000");
                        ok(resource)
                    }
                    None => not_found(),
                },
                "DELETE" => match s.tables.remove(&key) {
                    Some(_) => StatusCode::NO_CONTENT.into_response(),
                    None => not_found(),
                },
                "PATCH" => {
                    let Ok(patch) = json_body() else {
                        return error(400, "parseError", "Parse error");
                    };
                    match s.tables.get_mut(&key) {
                        Some(table) => {
                            if let Some(labels) = patch.get("labels").and_then(Value::as_object) {
                                // Labels merge; a null value deletes one.
                                let mut merged = table.resource["labels"].as_object().cloned().unwrap_or_default();
                                for (key, value) in labels {
                                    if value.is_null() {
                                        merged.remove(key);
                                    } else {
                                        merged.insert(key.clone(), value.clone());
                                    }
                                }
                                let merged = Value::Object(merged);
                                if let Err(message) = check_labels(&merged) {
                                    return error(400, "invalid", message);
                                }
                                table.resource["labels"] = merged;
                            }
                            if let Some(description) = patch.get("description") {
                                table.resource["description"] = description.clone();
                            }
                            if let Some(view) = patch.get("view") {
                                if table.resource.get("view").is_none() {
                                    return error(400, "invalid", "only a view's query can be patched");
                                }
                                if view.get("useLegacySql") != Some(&json!(false))
                                    || view.get("query").and_then(Value::as_str).is_none()
                                {
                                    return error(400, "invalid", "a view needs a standard SQL query");
                                }
                                table.resource["view"] = view.clone();
                            }
                            if let Some(fields) = patch.pointer("/schema/fields") {
                                let current = table.resource.pointer("/schema/fields").cloned().unwrap_or(json!([]));
                                if let Err(message) = check_schema_patch(&current, fields) {
                                    return error(400, "invalid", message);
                                }
                                table.resource["schema"] = json!({ "fields": fields });
                                let answer = ok(table.resource.clone());
                                s.schema_patches += 1;
                                return answer;
                            }
                            ok(table.resource.clone())
                        }
                        None => not_found(),
                    }
                }
                _ => error(405, "badRequest", "method not allowed"),
            }
        }
        ("GET", ["bigquery", "v2", "projects", p, "jobs", id]) => match s.jobs.get(*id) {
            Some(job) => ok(as_seen(s, id, job)),
            None => error(404, "notFound", format!("Not found: Job {p}:{id}")),
        },
        ("POST", ["bigquery", "v2", "projects", p, "jobs"]) => {
            let Ok(job) = json_body() else {
                return error(400, "parseError", "Parse error");
            };
            insert_job(s, p, job, None)
        }
        ("POST" | "PUT", ["upload", "bigquery", "v2", "projects", p, "jobs"])
            if uri.query().unwrap_or_default().contains("uploadType=resumable") =>
        {
            resumable::route(s, method, p, uri, headers, body)
        }
        ("POST", ["upload", "bigquery", "v2", "projects", p, "jobs"]) => {
            if !uri.query().unwrap_or_default().contains("uploadType=multipart") {
                return error(400, "invalid", "uploadType must be multipart");
            }
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let Some(boundary) = content_type
                .strip_prefix("multipart/related; boundary=")
                .map(str::to_owned)
            else {
                return error(
                    400,
                    "badContent",
                    format!("Unsupported content with type: {content_type}"),
                );
            };
            let Some((metadata, media)) = split_multipart(body, &boundary) else {
                return error(400, "badContent", "malformed multipart body");
            };
            let Ok(job) = serde_json::from_slice::<Value>(&metadata) else {
                return error(400, "parseError", "Parse error in the metadata part");
            };
            insert_job(s, p, job, Some(media))
        }
        _ => error(404, "notFound", format!("fake BigQuery has no {method} {path}")),
    }
}

/// Checks a `tables.patch` of a table's columns as BigQuery does: every
/// column stays with its type, REQUIRED may become NULLABLE (never the
/// reverse), and new columns come last and are NULLABLE or REPEATED.
fn check_schema_patch(current: &Value, patched: &Value) -> Result<(), String> {
    let (Some(current), Some(patched)) = (current.as_array(), patched.as_array()) else {
        return Err("schema.fields must be a list".into());
    };
    let text = |field: &Value, key: &str, default: &'static str| -> String {
        field.get(key).and_then(Value::as_str).unwrap_or(default).to_owned()
    };
    let canonical = |ty: String| match ty.as_str() {
        "INT64" => "INTEGER".to_owned(),
        "FLOAT64" => "FLOAT".to_owned(),
        "BOOL" => "BOOLEAN".to_owned(),
        "STRUCT" => "RECORD".to_owned(),
        _ => ty,
    };
    for (i, field) in current.iter().enumerate() {
        let name = text(field, "name", "");
        let Some(new) = patched
            .get(i)
            .filter(|f| text(f, "name", "").eq_ignore_ascii_case(&name))
        else {
            return Err(format!(
                "Provided Schema does not match Table. Field {name} is missing in new schema"
            ));
        };
        let (old_type, new_type) = (canonical(text(field, "type", "")), canonical(text(new, "type", "")));
        if old_type != new_type {
            return Err(format!(
                "Provided Schema does not match Table. Field {name} has changed type from {old_type} to {new_type}"
            ));
        }
        let (old_mode, new_mode) = (text(field, "mode", "NULLABLE"), text(new, "mode", "NULLABLE"));
        if old_mode != new_mode && !(old_mode == "REQUIRED" && new_mode == "NULLABLE") {
            return Err(format!(
                "Provided Schema does not match Table. Field {name} has changed mode from {old_mode} to {new_mode}"
            ));
        }
    }
    for new in patched.iter().skip(current.len()) {
        if !TYPES.contains(&text(new, "type", "").as_str()) {
            return Err(format!("Invalid field type for field {}", text(new, "name", "")));
        }
        if text(new, "mode", "NULLABLE") == "REQUIRED" {
            return Err(format!(
                "Provided Schema does not match Table. Cannot add required field {} to an existing schema",
                text(new, "name", "")
            ));
        }
    }
    Ok(())
}

/// Checks labels as BigQuery does: at most 64; keys of 1 to 63 lowercase
/// letters, digits, `_` and `-`, starting with a letter; values of up to 63
/// of those.
fn check_labels(labels: &Value) -> Result<(), String> {
    let Some(labels) = labels.as_object() else {
        return Ok(());
    };
    if labels.len() > 64 {
        return Err(format!("Too many labels: {} (at most 64)", labels.len()));
    }
    let allowed = |text: &str| {
        text.len() <= 63
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    for (key, value) in labels {
        let value = value
            .as_str()
            .ok_or_else(|| format!("Label {key} has a value that is not a string"))?;
        if key.is_empty() || !key.starts_with(|c: char| c.is_ascii_lowercase()) || !allowed(key) {
            return Err(format!("Invalid label key: {key}"));
        }
        if !allowed(value) {
            return Err(format!("Invalid label value: {value} (label {key})"));
        }
    }
    Ok(())
}

/// Checks a table resource's schema and layout as tables.insert does.
fn check_table(table: &Value) -> Result<(), String> {
    if let Some(labels) = table.get("labels") {
        check_labels(labels)?;
    }
    if let Some(view) = table.get("view") {
        // A view's columns come from its query, which the fake evaluates
        // when it reads the view (see `script::current_rows`).
        if view.get("useLegacySql") != Some(&json!(false)) || view.get("query").and_then(Value::as_str).is_none() {
            return Err("a view needs a standard SQL query (useLegacySql: false)".into());
        }
        return Ok(());
    }
    let fields = table
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .ok_or("Schema has no fields")?;
    for field in fields {
        let name = field.get("name").and_then(Value::as_str).ok_or("a field has no name")?;
        let ty = field.get("type").and_then(Value::as_str).unwrap_or_default();
        if !TYPES.contains(&ty) {
            return Err(format!(
                "Invalid value for type: {ty} is not a valid value (field {name})"
            ));
        }
        let mode = field.get("mode").and_then(Value::as_str).unwrap_or("NULLABLE");
        if !["NULLABLE", "REQUIRED", "REPEATED"].contains(&mode) {
            return Err(format!("Invalid value for mode: {mode} is not a valid value"));
        }
    }
    let field_type = |name: &str| {
        fields
            .iter()
            .find(|f| f.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|f| f.get("type").and_then(Value::as_str))
    };
    if let Some(partitioning) = table.get("timePartitioning") {
        let ty = partitioning.get("type").and_then(Value::as_str).unwrap_or_default();
        if !["DAY", "HOUR", "MONTH", "YEAR"].contains(&ty) {
            return Err(format!("Invalid value for timePartitioning.type: {ty}"));
        }
        if let Some(field) = partitioning.get("field").and_then(Value::as_str) {
            match field_type(field) {
                Some("TIMESTAMP" | "DATE" | "DATETIME") => {}
                other => {
                    return Err(format!(
                        "The field specified for time partitioning can only be of type TIMESTAMP, DATE or DATETIME. The type found is: {other:?}."
                    ));
                }
            }
        }
    }
    if let Some(clustering) = table.pointer("/clustering/fields").and_then(Value::as_array) {
        if clustering.len() > 4 {
            return Err("Too many clustering fields: at most 4".into());
        }
        for field in clustering {
            let name = field.as_str().unwrap_or_default();
            if field_type(name).is_none() {
                return Err(format!(
                    "The field specified for clustering cannot be found in the schema. Invalid field: {name}."
                ));
            }
        }
    }
    Ok(())
}

/// The metadata and media parts of a `multipart/related` body.
fn split_multipart(body: &[u8], boundary: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let find = |haystack: &[u8], needle: &[u8], from: usize| {
        haystack[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes(), 0)? + delimiter.len();
    loop {
        if body[at..].starts_with(b"--") {
            break;
        }
        let headers_end = find(body, b"\r\n\r\n", at)? + 4;
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), headers_end)?;
        parts.push(body[headers_end..next].to_vec());
        at = next + 2 + delimiter.len();
    }
    match <[Vec<u8>; 2]>::try_from(parts) {
        Ok([metadata, media]) => Some((metadata, media)),
        Err(_) => None,
    }
}

fn job_done(mut job: Value, error: Option<(&str, String)>) -> Value {
    job["status"] = match error {
        None => json!({"state": "DONE"}),
        Some((reason, message)) => json!({"state": "DONE",
            "errorResult": {"reason": reason, "message": message},
            "errors": [{"reason": reason, "message": message}]}),
    };
    job
}

fn insert_job(s: &mut State, project: &str, mut job: Value, media: Option<Vec<u8>>) -> Response {
    let Some(id) = job
        .pointer("/jobReference/jobId")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return error(400, "invalid", "Required parameter is missing: jobReference.jobId");
    };
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || id.len() > 1024 {
        return error(400, "invalid", format!("Invalid job ID \"{id}\""));
    }
    if s.jobs.contains_key(&id) {
        let location = job
            .pointer("/jobReference/location")
            .and_then(Value::as_str)
            .unwrap_or("US");
        return error(
            409,
            "duplicate",
            format!("Already Exists: Job {project}:{location}.{id}"),
        );
    }
    let outcome = if let Some(load) = job.pointer("/configuration/load").cloned() {
        let files = match (media, load.get("sourceUris").and_then(Value::as_array)) {
            (Some(media), None) => Ok(vec![media]),
            (None, Some(uris)) => gcs::read_uris(&s.gcs, uris),
            (Some(_), Some(_)) => Err(("invalid", "an uploaded load job takes no sourceUris".to_owned())),
            (None, None) => Err((
                "invalid",
                "a load job without sourceUris needs the upload endpoint".to_owned(),
            )),
        };
        files.and_then(|files| run_load(s, &load, files))
    } else if let Some(copy) = job.pointer("/configuration/copy").cloned() {
        run_copy(s, &copy)
    } else if let Some(query) = job.pointer("/configuration/query").cloned() {
        script::run_script(s, &query)
    } else {
        return error(
            400,
            "invalid",
            "Job configuration must contain exactly one job-specific configuration object",
        );
    };
    if let Err((reason, message)) = &outcome
        && *reason == "badRequest"
    {
        return error(400, "invalid", message.clone());
    }
    job["id"] = json!(format!("{project}:{id}"));
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    job["statistics"] = json!({"creationTime": created.to_string()});
    let job = job_done(job, outcome.err());
    if let Some(delay) = s.job_delay {
        s.done_at.insert(id.clone(), Instant::now() + delay);
    }
    let seen = as_seen(s, &id, &job);
    s.jobs.insert(id, job);
    ok(seen)
}

/// A job as jobs.get shows it now: RUNNING until its delay has passed.
fn as_seen(s: &State, id: &str, job: &Value) -> Value {
    let mut job = job.clone();
    if s.done_at.get(id).is_some_and(|at| Instant::now() < *at) {
        job["status"] = json!({"state": "RUNNING"});
    }
    job
}

fn disposition(config: &Value, key: &str, allowed: &[&str], default: &str) -> Result<String, (&'static str, String)> {
    let value = config.get(key).and_then(Value::as_str).unwrap_or(default);
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err((
            "badRequest",
            format!("Invalid value for {key}: {value} is not a valid value"),
        ))
    }
}

fn table_key(reference: Option<&Value>) -> Result<(String, String), (&'static str, String)> {
    let reference = reference.ok_or((
        "badRequest",
        "Required parameter is missing: destinationTable".to_owned(),
    ))?;
    let part = |k: &str| reference.get(k).and_then(Value::as_str).map(str::to_owned);
    match (part("projectId"), part("datasetId"), part("tableId")) {
        (Some(_), Some(d), Some(t)) => Ok((d, t)),
        _ => Err((
            "badRequest",
            "a table reference needs projectId, datasetId and tableId".into(),
        )),
    }
}

fn run_load(s: &mut State, load: &Value, files: Vec<Vec<u8>>) -> Result<(), (&'static str, String)> {
    let write = disposition(
        load,
        "writeDisposition",
        &["WRITE_APPEND", "WRITE_TRUNCATE", "WRITE_EMPTY"],
        "WRITE_APPEND",
    )?;
    disposition(
        load,
        "createDisposition",
        &["CREATE_NEVER", "CREATE_IF_NEEDED"],
        "CREATE_IF_NEEDED",
    )?;
    let avro = match load.get("sourceFormat").and_then(Value::as_str).unwrap_or("CSV") {
        "PARQUET" if load.pointer("/parquetOptions/enableListInference") == Some(&json!(true)) => false,
        "PARQUET" => {
            return Err((
                "invalid",
                "parquetOptions.enableListInference is needed for REPEATED columns".into(),
            ));
        }
        // Without it, BigQuery reads decimals as BYTES and timestamps as INTEGER.
        "AVRO" if load.get("useAvroLogicalTypes") == Some(&json!(true)) => true,
        "AVRO" => return Err(("invalid", "useAvroLogicalTypes is needed for logical types".into())),
        other => return Err(("invalid", format!("the fake only reads PARQUET and AVRO, not {other}"))),
    };
    let key = table_key(load.get("destinationTable"))?;
    let Some(table) = s.tables.get(&key) else {
        return Err(("notFound", format!("Not found: Table {}.{}", key.0, key.1)));
    };
    let mut batches: Vec<RecordBatch> = Vec::new();
    let columns_only = s.columns_only;
    for file in files {
        let decoded = match (avro, columns_only) {
            (true, _) => read_avro(file),
            (false, true) => read_parquet_columns(file),
            (false, false) => read_parquet(file),
        }
        .map_err(|e| ("invalid", format!("Error while reading data, error message: {e}")))?;
        for batch in decoded {
            check_columns(&table.resource, batch.schema().as_ref(), avro)?;
            batches.push(batch);
        }
    }
    let table = s.tables.get_mut(&key).expect("checked");
    if write == "WRITE_TRUNCATE" {
        table.batches.clear();
    }
    table.batches.extend(batches);
    Ok(())
}

fn read_parquet(file: Vec<u8>) -> Result<Vec<RecordBatch>, datafusion::arrow::error::ArrowError> {
    ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file))?
        .build()?
        .collect()
}

/// A Parquet file's columns, as an empty batch.
fn read_parquet_columns(file: Vec<u8>) -> Result<Vec<RecordBatch>, datafusion::arrow::error::ArrowError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file))?;
    Ok(vec![RecordBatch::new_empty(reader.schema().clone())])
}

/// An Avro Object Container File, timestamps with the `UTC` zone as
/// Parquet's read back.
fn read_avro(file: Vec<u8>) -> Result<Vec<RecordBatch>, datafusion::arrow::error::ArrowError> {
    arrow_avro::reader::ReaderBuilder::new()
        .with_tz(arrow_avro::codec::Tz::Utc)
        .build(std::io::Cursor::new(file))?
        .collect()
}

/// Whether Parquet or Avro columns (read as Arrow) load into the table's
/// columns as BigQuery reads them: the logical types decide.
fn check_columns(table: &Value, schema: &Schema, avro: bool) -> Result<(), (&'static str, String)> {
    let fields = table
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for column in schema.fields() {
        check_column(&fields, column, avro)?;
    }
    Ok(())
}

/// Whether `column` loads into its field of `fields`; a struct into a
/// RECORD field whose sub-fields take its children, recursively.
fn check_column(fields: &[Value], column: &Field, avro: bool) -> Result<(), (&'static str, String)> {
    let Some(field) = fields
        .iter()
        .find(|f| f.get("name").and_then(Value::as_str) == Some(column.name()))
    else {
        return Err((
            "invalid",
            format!(
                "Provided Schema does not match Table. Field {} is not in the table",
                column.name()
            ),
        ));
    };
    let ty = field.get("type").and_then(Value::as_str).unwrap_or_default();
    let mode = field.get("mode").and_then(Value::as_str).unwrap_or("NULLABLE");
    let data_type = match (mode, column.data_type()) {
        ("REPEATED", DataType::List(element)) if avro || element.name() == "element" => element.data_type(),
        ("REPEATED", other) => {
            return Err((
                "invalid",
                format!(
                    "Field {} is REPEATED but the file has {other} (a LIST of `element`s is needed)",
                    column.name()
                ),
            ));
        }
        (_, other) => other,
    };
    if let (Some("RECORD" | "STRUCT"), DataType::Struct(children)) = (Some(ty), data_type) {
        let sub_fields = field
            .get("fields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        return children
            .iter()
            .try_for_each(|child| check_column(&sub_fields, child, avro));
    }
    if !loads_as(ty, data_type) {
        return Err((
            "invalid",
            format!(
                "Provided Schema does not match Table. Field {} has changed type from {ty} to {data_type}",
                column.name()
            ),
        ));
    }
    Ok(())
}

fn loads_as(ty: &str, data_type: &DataType) -> bool {
    match ty {
        "STRING" | "JSON" => matches!(data_type, DataType::Utf8 | DataType::LargeUtf8),
        "BYTES" => matches!(data_type, DataType::Binary | DataType::LargeBinary),
        "INTEGER" | "INT64" => matches!(
            data_type,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
        ),
        "FLOAT" | "FLOAT64" => matches!(data_type, DataType::Float32 | DataType::Float64),
        "BOOLEAN" | "BOOL" => matches!(data_type, DataType::Boolean),
        "NUMERIC" => matches!(data_type, DataType::Decimal128(p, s) if *s <= 9 && (*p as i8 - *s) <= 29),
        "BIGNUMERIC" => matches!(data_type, DataType::Decimal128(..) | DataType::Decimal256(..)),
        "TIMESTAMP" => matches!(data_type, DataType::Timestamp(_, Some(_))),
        "DATETIME" => matches!(data_type, DataType::Timestamp(_, None)),
        "DATE" => matches!(data_type, DataType::Date32),
        "TIME" => matches!(data_type, DataType::Time64(_) | DataType::Time32(_)),
        // BigQuery parses INTERVAL text; GEOGRAPHY from WKT text or WKB bytes.
        "INTERVAL" => matches!(data_type, DataType::Utf8 | DataType::LargeUtf8),
        "GEOGRAPHY" => matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
        ),
        _ => false,
    }
}

fn run_copy(s: &mut State, copy: &Value) -> Result<(), (&'static str, String)> {
    let write = disposition(
        copy,
        "writeDisposition",
        &["WRITE_APPEND", "WRITE_TRUNCATE", "WRITE_EMPTY"],
        "WRITE_EMPTY",
    )?;
    disposition(
        copy,
        "createDisposition",
        &["CREATE_NEVER", "CREATE_IF_NEEDED"],
        "CREATE_IF_NEEDED",
    )?;
    // `table$20240301`: one partition of a time-partitioned table.
    let decorated = |key: (String, String)| match key.1.split_once('$') {
        Some((table, partition)) => ((key.0, table.to_owned()), Some(partition.to_owned())),
        None => (key, None),
    };
    let (source, source_partition) = decorated(table_key(copy.get("sourceTable"))?);
    let (destination, partition) = decorated(table_key(copy.get("destinationTable"))?);
    if source_partition != partition {
        return Err((
            "invalid",
            "the fake copies a partition only into the same partition".into(),
        ));
    }
    let Some(source_table) = s.tables.get(&source) else {
        return Err(("notFound", format!("Not found: Table {}.{}", source.0, source.1)));
    };
    let rows = match &partition {
        Some(id) => split_partition(source_table, id)?.0,
        None => source_table.batches.clone(),
    };
    let Some(target) = s.tables.get_mut(&destination) else {
        return Err((
            "notFound",
            format!("Not found: Table {}.{}", destination.0, destination.1),
        ));
    };
    match (write.as_str(), &partition) {
        ("WRITE_TRUNCATE", Some(id)) => {
            let mut kept = split_partition(target, id)?.1;
            kept.extend(rows);
            target.batches = kept;
        }
        ("WRITE_TRUNCATE", None) => target.batches = rows,
        ("WRITE_EMPTY", _) if target.num_rows() > 0 => {
            return Err((
                "duplicate",
                format!("Already Exists: Table {}.{}", destination.0, destination.1),
            ));
        }
        _ => target.batches.extend(rows),
    }
    Ok(())
}

/// A table's rows split in two: those in a partition and the others.
type Split = (Vec<RecordBatch>, Vec<RecordBatch>);

/// A time-partitioned table's rows in partition `id` (`20240301` for a DAY
/// partition, `2024030102` for an HOUR one) and the others.
fn split_partition(table: &FakeTable, id: &str) -> Result<Split, (&'static str, String)> {
    use datafusion::arrow::array::{AsArray, BooleanArray};
    use datafusion::arrow::datatypes::{Date32Type, TimestampMicrosecondType};
    let field = table
        .resource
        .pointer("/timePartitioning/field")
        .and_then(Value::as_str);
    let format = match table.resource.pointer("/timePartitioning/type").and_then(Value::as_str) {
        Some("DAY") => "%Y%m%d",
        Some("HOUR") => "%Y%m%d%H",
        Some("MONTH") => "%Y%m",
        Some("YEAR") => "%Y",
        _ => {
            return Err((
                "invalid",
                format!("partition decorator ${id} on a table without time partitioning"),
            ));
        }
    };
    let field = field.ok_or(("invalid", "the fake splits column-partitioned tables only".to_owned()))?;
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for batch in &table.batches {
        let column = batch
            .column_by_name(field)
            .ok_or(("invalid", format!("no partitioning column {field}")))?;
        let micros: Vec<Option<i64>> = match column.data_type() {
            DataType::Date32 => column
                .as_primitive::<Date32Type>()
                .iter()
                .map(|d| d.map(|d| i64::from(d) * 86_400_000_000))
                .collect(),
            _ => column.as_primitive::<TimestampMicrosecondType>().iter().collect(),
        };
        let keep: BooleanArray = micros
            .iter()
            .map(|m| {
                Some(
                    m.and_then(chrono::DateTime::from_timestamp_micros)
                        .map(|t| t.format(format).to_string())
                        == Some(id.to_owned()),
                )
            })
            .collect();
        let other = datafusion::arrow::compute::not(&keep).unwrap();
        inside.push(datafusion::arrow::compute::filter_record_batch(batch, &keep).unwrap());
        outside.push(datafusion::arrow::compute::filter_record_batch(batch, &other).unwrap());
    }
    Ok((inside, outside))
}

/// One page of a query's results, from row `offset`; TIMESTAMPs as
/// integer microseconds or, by default, seconds in E notation.
fn result_page(s: &State, project: &str, id: &str, offset: usize, page_rows: usize, int64_timestamps: bool) -> Value {
    let (rows, timestamps) = &s.query_results[id];
    let mut page: Vec<Value> = rows.iter().skip(offset).take(page_rows).cloned().collect();
    if !int64_timestamps {
        for row in &mut page {
            for &i in timestamps {
                let cell = &mut row["f"][i]["v"];
                if let Some(micros) = cell.as_str().and_then(|m| m.parse::<i64>().ok()) {
                    *cell = json!(e_notation_seconds(micros));
                }
            }
        }
    }
    let mut answer = json!({"kind": "bigquery#queryResponse", "jobComplete": true,
        "jobReference": {"projectId": project, "jobId": id, "location": "EU"},
        "totalRows": rows.len().to_string(), "rows": page});
    if offset + page_rows < rows.len() {
        answer["pageToken"] = json!((offset + page_rows).to_string());
    }
    answer
}

/// Seconds as BigQuery writes them by default: `1.709251260123456E9`.
fn e_notation_seconds(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let text = format!("{:07}", micros.unsigned_abs());
    let (whole, fraction) = text.split_at(text.len() - 6);
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_end_matches('0');
    let exponent = whole.trim_start_matches('0').len().max(1) - 1;
    let digits = digits.trim_start_matches('0');
    let (first, rest) = digits.split_at(1.min(digits.len()));
    format!("{sign}{first}.{}E{exponent}", if rest.is_empty() { "0" } else { rest })
}

/// A named query parameter: its type and value as text.
#[derive(Debug, Clone)]
pub struct QueryParameter {
    pub r#type: String,
    pub value: String,
}

const PARAMETER_TYPES: &[&str] = &[
    "STRING",
    "BYTES",
    "INT64",
    "FLOAT64",
    "NUMERIC",
    "BIGNUMERIC",
    "BOOL",
    "TIMESTAMP",
    "DATE",
    "TIME",
    "DATETIME",
];

/// The named parameters of a jobs.query request, checked as BigQuery does.
fn query_parameters(request: &Value) -> Result<BTreeMap<String, QueryParameter>, String> {
    let Some(list) = request.get("queryParameters").and_then(Value::as_array) else {
        return Ok(BTreeMap::new());
    };
    if request.get("parameterMode").and_then(Value::as_str) != Some("NAMED") {
        return Err("parameterMode must be NAMED for named query parameters".into());
    }
    let mut parameters = BTreeMap::new();
    for parameter in list {
        let name = parameter
            .get("name")
            .and_then(Value::as_str)
            .ok_or("Query parameters must have names when parameterMode is NAMED")?;
        let ty = parameter
            .pointer("/parameterType/type")
            .and_then(Value::as_str)
            .ok_or(format!("Query parameter '{name}' has no parameterType.type"))?;
        if !PARAMETER_TYPES.contains(&ty) {
            return Err(format!("Invalid value for parameterType.type: {ty}"));
        }
        let value = parameter
            .pointer("/parameterValue/value")
            .and_then(Value::as_str)
            .ok_or(format!("Query parameter '{name}' has no parameterValue.value"))?;
        parameters.insert(
            name.to_owned(),
            QueryParameter {
                r#type: ty.to_owned(),
                value: value.to_owned(),
            },
        );
    }
    Ok(parameters)
}

/// `` `column` op value AND ... ``, each value a named parameter
/// (`@name`) or a literal (`TIMESTAMP '...'`, `DATETIME '...'`,
/// `DATE '...'`, an integer, `TRUE`/`FALSE`, `'text'`), typed as BigQuery
/// types them: the rows of a batch it keeps.
pub fn where_clause(
    condition: &str,
    fields: &[Value],
    parameters: &BTreeMap<String, QueryParameter>,
    batch: &RecordBatch,
) -> Result<datafusion::arrow::array::BooleanArray, String> {
    let mut kept: Option<datafusion::arrow::array::BooleanArray> = None;
    for part in condition.split(" AND ") {
        let one = comparison(part, fields, parameters, batch)?;
        kept = Some(match kept {
            None => one,
            Some(kept) => datafusion::arrow::compute::and(&kept, &one).map_err(|e| e.to_string())?,
        });
    }
    kept.ok_or_else(|| "empty WHERE".to_owned())
}

/// A value of a comparison: its BigQuery type and text.
fn operand(text: &str, parameters: &BTreeMap<String, QueryParameter>) -> Result<QueryParameter, String> {
    let text = text.trim();
    if let Some(name) = text.strip_prefix('@') {
        return parameters
            .get(name)
            .cloned()
            .ok_or(format!("Query parameter '{name}' not found"));
    }
    let typed = |ty: &str, value: &str| QueryParameter {
        r#type: ty.to_owned(),
        value: value.to_owned(),
    };
    for ty in ["TIMESTAMP", "DATETIME", "DATE"] {
        if let Some(rest) = text.strip_prefix(ty).and_then(|r| r.strip_prefix(' ')) {
            let value = rest
                .strip_prefix('\'')
                .and_then(|r| r.strip_suffix('\''))
                .ok_or(format!("Syntax error: malformed {ty} literal {rest}"))?;
            return Ok(typed(ty, value));
        }
    }
    if text == "TRUE" || text == "FALSE" {
        return Ok(typed("BOOL", &text.to_lowercase()));
    }
    if let Some(inner) = text.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Ok(typed("STRING", &inner.replace("\\'", "'").replace("\\\\", "\\")));
    }
    if text.parse::<i64>().is_ok() {
        return Ok(typed("INT64", text));
    }
    Err(format!("Syntax error: Unexpected value {text}"))
}

/// `` `column` op value ``: the rows of a batch it keeps.
fn comparison(
    condition: &str,
    fields: &[Value],
    parameters: &BTreeMap<String, QueryParameter>,
    batch: &RecordBatch,
) -> Result<datafusion::arrow::array::BooleanArray, String> {
    use datafusion::arrow::array::{Scalar, StringArray};
    use datafusion::arrow::compute::kernels::cmp;
    let condition = condition.trim().trim_start_matches('(').trim_end_matches(')');
    let (column, op, value) = [" >= ", " <= ", " > ", " < ", " = "]
        .iter()
        .find_map(|op| {
            condition
                .split_once(op)
                .map(|(column, value)| (column, op.trim(), value))
        })
        .ok_or(format!("the fake evaluates `column` op value only, not {condition}"))?;
    let column = column.trim().trim_matches('`');
    let value = operand(value, parameters)?;
    let field_type = fields
        .iter()
        .find(|f| f["name"] == json!(column))
        .and_then(|f| f["type"].as_str())
        .ok_or(format!("Unrecognized name: {column}"))?;
    let normalized = match field_type {
        "INTEGER" => "INT64",
        "FLOAT" => "FLOAT64",
        "BOOLEAN" => "BOOL",
        other => other,
    };
    if normalized != value.r#type {
        return Err(format!(
            "No matching signature for operator {op} for argument types: {normalized}, {}",
            value.r#type
        ));
    }
    let values = batch
        .column_by_name(column)
        .ok_or(format!("Unrecognized name: {column}"))?;
    let bound = cast(&StringArray::from(vec![value.value.as_str()]), values.data_type())
        .map_err(|e| format!("Invalid {} value {}: {e}", value.r#type, value.value))?;
    if bound.is_null(0) {
        return Err(format!("Invalid {} value {}", value.r#type, value.value));
    }
    let bound = Scalar::new(bound);
    match op {
        ">=" => cmp::gt_eq(values, &bound),
        "<=" => cmp::lt_eq(values, &bound),
        ">" => cmp::gt(values, &bound),
        "<" => cmp::lt(values, &bound),
        _ => cmp::eq(values, &bound),
    }
    .map_err(|e| e.to_string())
}

/// Runs `SELECT item, ... FROM `dataset`.`table` [WHERE `column` > @p]
/// [LIMIT n]`, where an item is `` `column` ``, `` TO_JSON_STRING(`column`)
/// AS `column` `` or `1 AS _`; values are formatted as the REST API does
/// with `useInt64Timestamp`.
fn run_query(
    s: &State,
    sql: &str,
    parameters: &BTreeMap<String, QueryParameter>,
) -> Result<(Vec<Value>, Vec<usize>), String> {
    let rest = sql.strip_prefix("SELECT ").ok_or("the fake runs SELECT only")?;
    let (list, rest) = rest.split_once(" FROM ").ok_or("no FROM")?;
    let (table, limit) = match rest.split_once(" LIMIT ") {
        Some((table, limit)) => (table, Some(limit.trim().parse::<usize>().map_err(|e| e.to_string())?)),
        None => (rest, None),
    };
    let (table, condition) = match table.split_once(" WHERE ") {
        Some((table, condition)) => (table, Some(condition)),
        None => (table, None),
    };
    let unquote = |t: &str| t.trim().trim_matches('`').to_owned();
    let (dataset, table) = table.split_once("`.`").ok_or("expected `dataset`.`table`")?;
    let key = (unquote(dataset), unquote(table));
    let stored = s
        .tables
        .get(&key)
        .ok_or(format!("Not found: Table {}.{}", key.0, key.1))?;
    let items: Vec<(String, bool)> = list
        .split(", ")
        .map(|item| match item.strip_prefix("TO_JSON_STRING(") {
            Some(rest) => (unquote(rest.split(')').next().unwrap_or_default()), true),
            None => (unquote(item), false),
        })
        .collect();
    let fields = stored
        .resource
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut rows = Vec::new();
    for batch in &stored.batches {
        let kept = condition
            .map(|c| where_clause(c, &fields, parameters, batch))
            .transpose()?;
        for row in 0..batch.num_rows() {
            if kept.as_ref().is_some_and(|k| !(k.is_valid(row) && k.value(row))) {
                continue;
            }
            let cells: Vec<Value> = items
                .iter()
                .map(|(name, json)| {
                    if name == "1 AS _" {
                        return Ok(json!({"v": "1"}));
                    }
                    let column = batch.column_by_name(name).ok_or(format!("Unrecognized name: {name}"))?;
                    Ok(json!({"v": rest_value(column.as_ref(), row, *json)}))
                })
                .collect::<Result<_, String>>()?;
            rows.push(json!({"f": cells}));
        }
    }
    if let Some(limit) = limit {
        rows.truncate(limit);
    }
    let timestamps = items
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| {
            fields
                .iter()
                .any(|f| f["name"] == json!(name) && f["type"] == json!("TIMESTAMP") && f["mode"] != json!("REPEATED"))
        })
        .map(|(i, _)| i)
        .collect();
    Ok((rows, timestamps))
}

fn rest_value(column: &dyn datafusion::arrow::array::Array, row: usize, json: bool) -> Value {
    use base64::Engine;
    use datafusion::arrow::array::{AsArray, BinaryArray};
    use datafusion::arrow::datatypes::TimestampMicrosecondType;
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    if column.is_null(row) {
        return Value::Null;
    }
    let text = |array: &dyn datafusion::arrow::array::Array, i: usize| {
        ArrayFormatter::try_new(array, &FormatOptions::default())
            .unwrap()
            .value(i)
            .to_string()
    };
    match column.data_type() {
        DataType::List(_) if json => {
            let list = column.as_list::<i32>().value(row);
            let quote = matches!(list.data_type(), DataType::Utf8);
            let items: Vec<String> = (0..list.len())
                .map(|i| {
                    let t = text(list.as_ref(), i);
                    if quote { Value::String(t).to_string() } else { t }
                })
                .collect();
            json!(format!("[{}]", items.join(",")))
        }
        DataType::Timestamp(_, Some(_)) => {
            json!(column.as_primitive::<TimestampMicrosecondType>().value(row).to_string())
        }
        DataType::Binary => {
            let bytes = column.as_any().downcast_ref::<BinaryArray>().unwrap().value(row);
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        _ => json!(text(column, row)),
    }
}
