//! The BigQuery REST calls Sluice makes, each retried where that is safe,
//! with errors reduced to BigQuery's own `reason` and `message`.

use std::fmt;
use std::time::Duration;

use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::data_format_options::DataFormatOptions;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::get_query_results_response::GetQueryResultsResponse;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::query_response::QueryResponse;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_list_tables::TableListTables;
use gcp_bigquery_client::table::ListOptions;
use gcp_bigquery_client::{Client, client_builder::ClientBuilder};
use tracing::info;

use super::Settings;
use super::bucket::StagingBucket;
use super::retry::retrying;
use crate::contract::{
    ConnectFailure, ConnectFailureKind, DestinationError, TextRows, error_chain, network_failure_kind,
};
use crate::google::auth::TokenSource;

/// A failed call: the HTTP status when there was an answer, and BigQuery's
/// error `reason` (`invalid`, `accessDenied`, `notFound`, ...) and message.
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    pub status: Option<u16>,
    pub reason: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl ApiError {
    /// An error Sluice found itself.
    pub(super) fn new(reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: None,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The error of a `gcp-bigquery-client` call or a token fetch; a
    /// network failure or timeout (of the token endpoint too) is retryable.
    pub(super) fn from_bq(error: BQError) -> Self {
        match error {
            BQError::ResponseError { error } => {
                let nested = error.error;
                let reason = nested
                    .errors
                    .iter()
                    .find_map(|e| e.get("reason").cloned())
                    .unwrap_or_else(|| nested.status.clone());
                Self {
                    status: u16::try_from(nested.code).ok(),
                    reason,
                    message: nested.message,
                }
            }
            BQError::RequestError(e) => Self::from_http(&e),
            other => match network_failure_kind(&other) {
                Some(failure) => Self::new(network_reason(failure), error_chain(&other)),
                None => Self::new("authError", error_chain(&other)),
            },
        }
    }

    /// A transport failure, or an answer that was not BigQuery's JSON.
    pub(super) fn from_http(e: &reqwest::Error) -> Self {
        let reason = if e.is_timeout() {
            "timeout"
        } else if e.is_decode() {
            "badResponse"
        } else {
            "transport"
        };
        Self {
            status: e.status().map(|s| s.as_u16()),
            reason: reason.into(),
            message: error_chain(e),
        }
    }

    /// The error for a failed sign-in: a network failure or timeout stays
    /// retryable, anything else is a credentials problem.
    pub(super) fn from_connect(failure: ConnectFailure) -> Self {
        let reason = match failure.kind {
            ConnectFailureKind::BadPassword | ConnectFailureKind::UnknownDatabase => "authError",
            kind => network_reason(kind),
        };
        Self::new(reason, failure.detail)
    }

    /// Whether repeating the same request may succeed.
    pub(super) fn retryable(&self) -> bool {
        matches!(self.status, Some(429 | 500 | 502 | 503 | 504))
            || super::reasons::TRANSIENT.contains(&self.reason.as_str())
    }

    pub(super) fn is_not_found(&self) -> bool {
        self.status == Some(404) || self.reason == "notFound"
    }

    pub(super) fn is_duplicate(&self) -> bool {
        self.status == Some(409) || self.reason == "duplicate"
    }

    /// The error for a destination operation, naming the job if any.
    pub(super) fn into_destination(self, job_id: Option<String>) -> DestinationError {
        super::reasons::remote_error(job_id, self.reason, self.message)
    }

    /// The error for a failed connection test.
    pub(super) fn into_connect_failure(self) -> ConnectFailure {
        let kind = match (self.status, self.reason.as_str()) {
            (Some(401), _) | (_, "authError") => ConnectFailureKind::BadPassword,
            (_, "timeout") => ConnectFailureKind::Timeout,
            _ => ConnectFailureKind::Other,
        };
        ConnectFailure::new(kind, self.to_string())
    }
}

/// Why the connection's dataset cannot be used.
#[derive(Debug)]
pub(super) enum DatasetError {
    /// A call failed.
    Api(ApiError),
    /// The dataset is in another location than the connection's (found by
    /// Sluice, not BigQuery); the message names both and the fix.
    WrongLocation(String),
}

impl From<ApiError> for DatasetError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl DatasetError {
    /// The error for a failed connection test.
    pub(super) fn into_connect_failure(self) -> ConnectFailure {
        match self {
            Self::Api(e) => e.into_connect_failure(),
            Self::WrongLocation(message) => ConnectFailure::new(ConnectFailureKind::OptionMismatch, message),
        }
    }

    /// The error for a destination operation.
    pub(super) fn into_destination(self) -> DestinationError {
        match self {
            Self::Api(e) => e.into_destination(None),
            Self::WrongLocation(reason) => DestinationError::OptionMismatch { reason },
        }
    }
}

/// The error reason of a network failure: `timeout` or `transport`.
pub(super) fn network_reason(kind: ConnectFailureKind) -> &'static str {
    match kind {
        ConnectFailureKind::Timeout => "timeout",
        _ => "transport",
    }
}

/// A signed-in BigQuery client for one connection.
pub(super) struct Api {
    pub settings: Settings,
    client: Client,
    pub http: reqwest::Client,
    pub tokens: TokenSource,
    /// The connection's `staging_bucket`, when it has one.
    pub bucket: Option<std::sync::Arc<StagingBucket>>,
}

impl Api {
    /// Signs in (fetching a first token, which checks the credentials).
    pub(super) async fn connect(settings: Settings) -> Result<Self, ConnectFailure> {
        let tokens = TokenSource::new(&settings.credentials, settings.impersonate.as_deref(), settings.timeout)
            .await
            .map_err(|e| ConnectFailure::new(ConnectFailureKind::BadPassword, e))?;
        if let Err(e) = tokens.token().await {
            let kind = network_failure_kind(&e).unwrap_or(ConnectFailureKind::BadPassword);
            return Err(ConnectFailure::new(
                kind,
                format!("Google sign-in failed: {}", error_chain(&e)),
            ));
        }
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(crate::tls::client_config(crate::tls::Verify::ChainAndHost, None)?)
            .connect_timeout(settings.timeout)
            .timeout(settings.timeout)
            .build()
            .map_err(|e| ConnectFailure::new(ConnectFailureKind::Other, error_chain(&e)))?;
        let client = ClientBuilder::new()
            .with_v2_base_url(format!("{}/bigquery/v2", settings.endpoint))
            .with_client(http.clone())
            .build_from_authenticator(std::sync::Arc::new(tokens.clone()))
            .await
            .map_err(|e| ConnectFailure::new(ConnectFailureKind::Other, error_chain(&e)))?;
        let bucket = settings
            .staging_bucket
            .as_ref()
            .map(|url| StagingBucket::open(url, tokens.clone(), settings.timeout).map(std::sync::Arc::new))
            .transpose()
            .map_err(|e| ConnectFailure::new(ConnectFailureKind::Other, e))?;
        Ok(Self {
            settings,
            client,
            http,
            tokens,
            bucket,
        })
    }

    fn project(&self) -> &str {
        &self.settings.project
    }

    fn dataset(&self) -> &str {
        &self.settings.dataset
    }

    /// Makes sure the dataset exists in the connection's location.
    pub(super) async fn ensure_dataset(&self) -> Result<(), DatasetError> {
        let found = retrying("datasets.get", || async {
            match self.client.dataset().get(self.project(), self.dataset()).await {
                Ok(dataset) => Ok(Some(dataset)),
                Err(e) => match ApiError::from_bq(e) {
                    e if e.is_not_found() => Ok(None),
                    e => Err(e),
                },
            }
        })
        .await?;
        let dataset = match found {
            Some(dataset) => dataset,
            None => {
                let wanted = Dataset::new(self.project(), self.dataset()).location(&self.settings.location);
                let created = retrying("datasets.insert", || async {
                    match self.client.dataset().create(wanted.clone()).await {
                        Ok(dataset) => Ok(dataset),
                        Err(e) => match ApiError::from_bq(e) {
                            // Made concurrently (or by an earlier attempt).
                            e if e.is_duplicate() => self
                                .client
                                .dataset()
                                .get(self.project(), self.dataset())
                                .await
                                .map_err(ApiError::from_bq),
                            e => Err(e),
                        },
                    }
                })
                .await?;
                info!(project = self.project(), dataset = self.dataset(), location = %self.settings.location, "created BigQuery dataset");
                created
            }
        };
        let location = dataset.location.unwrap_or_default();
        if !location.eq_ignore_ascii_case(&self.settings.location) {
            return Err(DatasetError::WrongLocation(format!(
                "BigQuery dataset {}:{} is in location {location}, but the connection's location option is {}: \
                 set location '{location}' (ALTER CONNECTION ... SET (location '{location}')), or name a dataset \
                 in {} with the dataset option",
                self.project(),
                self.dataset(),
                self.settings.location,
                self.settings.location
            )));
        }
        Ok(())
    }

    /// The table of the connection's dataset, `None` when it does not exist.
    pub(super) async fn get_table(&self, table: &str) -> Result<Option<Table>, ApiError> {
        self.get_table_in(self.dataset(), table).await
    }

    /// A table of any dataset of the project, `None` when it (or its
    /// dataset) does not exist.
    pub(super) async fn get_table_in(&self, dataset: &str, table: &str) -> Result<Option<Table>, ApiError> {
        retrying("tables.get", || async {
            match self.client.table().get(self.project(), dataset, table, None).await {
                Ok(table) => Ok(Some(table)),
                Err(e) => match ApiError::from_bq(e) {
                    e if e.is_not_found() => Ok(None),
                    e => Err(e),
                },
            }
        })
        .await
    }

    /// Creates a table; `false` when one of that name exists already.
    pub(super) async fn create_table(&self, table: &Table) -> Result<bool, ApiError> {
        retrying("tables.insert", || async {
            match self.client.table().create(table.clone()).await {
                Ok(_) => Ok(true),
                Err(e) => match ApiError::from_bq(e) {
                    e if e.is_duplicate() => Ok(false),
                    e => Err(e),
                },
            }
        })
        .await
    }

    /// Changes a table's labels or columns.
    pub(super) async fn patch_table(&self, table: &str, patch: Table) -> Result<(), ApiError> {
        retrying("tables.patch", || async {
            self.client
                .table()
                .patch(self.project(), self.dataset(), table, patch.clone())
                .await
                .map(drop)
                .map_err(ApiError::from_bq)
        })
        .await
    }

    /// Deletes a table; `false` when it did not exist.
    pub(super) async fn delete_table(&self, table: &str) -> Result<bool, ApiError> {
        retrying("tables.delete", || async {
            match self.client.table().delete(self.project(), self.dataset(), table).await {
                Ok(()) => Ok(true),
                Err(e) => match ApiError::from_bq(e) {
                    e if e.is_not_found() => Ok(false),
                    e => Err(e),
                },
            }
        })
        .await
    }

    /// The ids of the project's datasets, page by page (`datasets.list`,
    /// read as JSON: the client's model needs fields a list leaves out).
    pub(super) async fn list_datasets(&self) -> Result<Vec<String>, ApiError> {
        let url = format!(
            "{}/bigquery/v2/projects/{}/datasets",
            self.settings.endpoint, self.settings.project
        );
        let mut datasets = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let page: serde_json::Value = retrying("datasets.list", || async {
                let mut request = self.http.get(&url);
                if let Some(token) = &page_token {
                    request = request.query(&[("pageToken", token)]);
                }
                let (status, _, text) = self.send(request).await?;
                if !status.is_success() {
                    return Err(super::upload::error_of(status.as_u16(), &text));
                }
                serde_json::from_str(&text)
                    .map_err(|e| ApiError::new("badResponse", format!("unexpected answer to datasets.list: {e}")))
            })
            .await?;
            let ids = page["datasets"].as_array().into_iter().flatten();
            datasets.extend(ids.filter_map(|d| d.pointer("/datasetReference/datasetId")?.as_str().map(str::to_owned)));
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_owned()),
                _ => return Ok(datasets),
            }
        }
    }

    /// The tables of a dataset of the project.
    pub(super) async fn list_tables_in(&self, dataset: &str) -> Result<Vec<TableListTables>, ApiError> {
        let mut tables = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let page = retrying("tables.list", || async {
                let options = match &page_token {
                    Some(token) => ListOptions::default().page_token(token.clone()),
                    None => ListOptions::default(),
                };
                self.client
                    .table()
                    .list(self.project(), dataset, options)
                    .await
                    .map_err(ApiError::from_bq)
            })
            .await?;
            tables.extend(page.tables.unwrap_or_default());
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => return Ok(tables),
            }
        }
    }

    /// Starts a standard-SQL query with named `parameters` (`@name` in the
    /// SQL) and returns its first page (which may say the query is not
    /// complete yet). Queries are billed by BigQuery.
    /// `max_rows` bounds the rows of each page (BigQuery also bounds a
    /// page's bytes).
    pub(super) async fn query(
        &self,
        sql: &str,
        parameters: Vec<QueryParameter>,
        max_rows: Option<i32>,
    ) -> Result<QueryResponse, ApiError> {
        let mut request = QueryRequest::new(sql);
        request.max_results = max_rows;
        if !parameters.is_empty() {
            request.parameter_mode = Some("NAMED".into());
            request.query_parameters = Some(parameters);
        }
        request.use_legacy_sql = false;
        request.location = Some(self.settings.location.clone());
        request.format_options = Some(DataFormatOptions {
            use_int64_timestamp: Some(true),
        });
        request.timeout_ms = Some(10_000);
        // Not retried: a repeated query would be billed again.
        self.client
            .job()
            .query(self.project(), request)
            .await
            .map_err(ApiError::from_bq)
    }

    /// Runs a small query (an aggregate: its rows are kept in memory) and
    /// returns every row, each value as text.
    pub(super) async fn query_text(&self, sql: &str) -> Result<TextRows, ApiError> {
        let first = self.query(sql, Vec::new(), None).await?;
        let job_id = first
            .job_reference
            .and_then(|r| r.job_id)
            .ok_or_else(|| ApiError::new("badResponse", "BigQuery answered a query without a job id"))?;
        let mut text = TextRows {
            columns: first
                .schema
                .and_then(|s| s.fields)
                .map(|fields| fields.into_iter().map(|f| f.name).collect())
                .unwrap_or_default(),
            rows: Vec::new(),
        };
        let (mut complete, mut rows, mut token) = (first.job_complete == Some(true), first.rows, first.page_token);
        loop {
            if complete {
                text.rows.extend(rows.take().unwrap_or_default().into_iter().map(|row| {
                    row.columns
                        .unwrap_or_default()
                        .into_iter()
                        .map(|cell| match cell.value {
                            None | Some(serde_json::Value::Null) => None,
                            Some(serde_json::Value::String(s)) => Some(s),
                            Some(other) => Some(other.to_string()),
                        })
                        .collect()
                }));
                if token.as_deref().is_none_or(str::is_empty) {
                    return Ok(text);
                }
            }
            let page = self.query_results(&job_id, token.clone(), None).await?;
            complete = page.job_complete == Some(true);
            rows = page.rows;
            if complete {
                token = page.page_token;
            }
        }
    }

    /// A page of a query's results.
    pub(super) async fn query_results(
        &self,
        job_id: &str,
        page_token: Option<String>,
        max_rows: Option<i32>,
    ) -> Result<GetQueryResultsResponse, ApiError> {
        retrying("jobs.getQueryResults", || async {
            // No format options here: the client cannot encode them in the
            // URL, so later pages carry TIMESTAMPs as seconds in E notation.
            let parameters = GetQueryResultsParameters {
                location: Some(self.settings.location.clone()),
                page_token: page_token.clone(),
                max_results: max_rows,
                timeout_ms: Some(10_000),
                ..Default::default()
            };
            self.client
                .job()
                .get_query_results(self.project(), job_id, parameters)
                .await
                .map_err(ApiError::from_bq)
        })
        .await
    }

    /// Submits a job with a fixed id; if a job of that id exists already (an
    /// earlier attempt that did reach BigQuery), that job is returned.
    pub(super) async fn insert_job(&self, job: &Job, job_id: &str) -> Result<Job, ApiError> {
        retrying("jobs.insert", || async {
            match self.client.job().insert(self.project(), job.clone()).await {
                Ok(job) => Ok(job),
                Err(e) => match ApiError::from_bq(e) {
                    e if e.is_duplicate() => self.get_job(job_id).await?.ok_or(e),
                    e => Err(e),
                },
            }
        })
        .await
    }

    /// A job by id, `None` when BigQuery has no such job.
    pub(super) async fn get_job(&self, job_id: &str) -> Result<Option<Job>, ApiError> {
        retrying("jobs.get", || async {
            match self
                .client
                .job()
                .get_job(self.project(), job_id, Some(&self.settings.location))
                .await
            {
                Ok(job) => Ok(Some(job)),
                Err(e) => match ApiError::from_bq(e) {
                    e if e.is_not_found() => Ok(None),
                    e => Err(e),
                },
            }
        })
        .await
    }

    /// Polls a submitted job until it is DONE (see [`job_error`] for how it ended).
    pub(super) async fn wait_job(&self, mut job: Job, job_id: &str) -> Result<Job, ApiError> {
        let mut pause = Duration::from_millis(200);
        loop {
            if job.status.as_ref().and_then(|s| s.state.as_deref()) == Some("DONE") {
                return Ok(job);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
            job = self
                .get_job(job_id)
                .await?
                .ok_or_else(|| ApiError::new("notFound", format!("job {job_id} disappeared")))?;
        }
    }
}

/// Why a finished job failed, in BigQuery's words; `None` if it succeeded.
pub(super) fn job_error(job: &Job) -> Option<ApiError> {
    let error = job.status.as_ref()?.error_result.as_ref()?;
    Some(ApiError::new(
        error.reason.as_deref().unwrap_or("jobFailed"),
        error.message.clone().unwrap_or_default(),
    ))
}
