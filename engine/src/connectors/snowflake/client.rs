//! The REST protocol of Snowflake's connectors over `reqwest`: log in
//! (password or key-pair JWT), run one statement, poll a statement that is
//! still running, and classify what went wrong.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_catalog::SecretValue;
use url::Url;

use super::keypair;
use super::result::{Chunk, ResultSet, Rowset};
use crate::contract::{
    ConnectFailure, ConnectFailureKind, ResolvedOptions, SourceError, error_chain, network_failure_kind,
};

/// What Sluice calls itself at login.
const CLIENT_APP_ID: &str = "Sluice";

/// Login codes for credentials Snowflake refuses: wrong user or password,
/// an invalid or expired JWT, a public key that does not match.
const BAD_CREDENTIALS: &[&str] = &["390100", "390144", "394304", "390318", "390422"];
/// A session token that expired or that the server does not know.
const SESSION_GONE: &[&str] = &["390112", "390104", "390114"];
/// The statement still runs; its result is polled at `getResultUrl`.
const IN_PROGRESS: &[&str] = &["333333", "333334"];

/// How a connection signs in.
enum Credentials {
    Password(SecretValue),
    PrivateKey(SecretValue),
}

/// Where and as whom to log in: a connection's resolved options.
pub(super) struct Endpoint {
    base: Url,
    account: String,
    user: String,
    credentials: Credentials,
    warehouse: Option<String>,
    role: Option<String>,
    pub(super) database: String,
    schema: Option<String>,
    timeout: Duration,
}

impl Endpoint {
    /// The endpoint of a connection's options; `timeout` bounds the login.
    pub(super) fn new(options: &ResolvedOptions, timeout: Duration) -> Result<Self, ConnectFailure> {
        let text = |name: &str| options.text(name).map(str::to_owned);
        let account = text("account").unwrap_or_default();
        let base = match options.text("endpoint") {
            Some(endpoint) => endpoint.to_owned(),
            None => format!("https://{account}.snowflakecomputing.com"),
        };
        let base = Url::parse(&base).map_err(|e| {
            ConnectFailure::new(
                ConnectFailureKind::OptionMismatch,
                format!("the endpoint {base:?} is not a URL ({e}); give one such as https://host"),
            )
        })?;
        let credentials = match (options.secret("password"), options.secret("private_key")) {
            (_, Some(key)) => Credentials::PrivateKey(key.clone()),
            (Some(password), None) => Credentials::Password(password.clone()),
            (None, None) => {
                return Err(ConnectFailure::new(
                    ConnectFailureKind::OptionMismatch,
                    "Snowflake needs a password or a private_key option",
                ));
            }
        };
        Ok(Self {
            base,
            account,
            user: text("user").unwrap_or_default(),
            credentials,
            warehouse: text("warehouse"),
            role: text("role"),
            database: text("database").unwrap_or_default(),
            schema: text("schema"),
            timeout,
        })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url
    }

    /// Logs in and returns the session.
    pub(super) async fn login(&self) -> Result<Session, ConnectFailure> {
        // The same trusted roots as every TLS connection Sluice opens.
        let http = Client::builder()
            .use_preconfigured_tls(crate::tls::client_config(crate::tls::Verify::ChainAndHost, None)?)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| ConnectFailure::new(ConnectFailureKind::Other, error_chain(&e)))?;
        let mut url = self.url("/session/v1/login-request");
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("request_id", &uuid::Uuid::new_v4().to_string());
            query.append_pair("databaseName", &self.database);
            for (name, value) in [
                ("schemaName", &self.schema),
                ("warehouse", &self.warehouse),
                ("roleName", &self.role),
            ] {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
        }
        let mut data = json!({
            "CLIENT_APP_ID": CLIENT_APP_ID,
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": account_name(&self.account),
            "LOGIN_NAME": self.user,
            "CLIENT_ENVIRONMENT": {"APPLICATION": CLIENT_APP_ID, "OS": std::env::consts::OS},
            // Results as Arrow IPC, times in UTC.
            "SESSION_PARAMETERS": {"QUERY_RESULT_FORMAT": "ARROW", "TIMEZONE": "UTC"},
        });
        match &self.credentials {
            Credentials::Password(password) => data["PASSWORD"] = json!(password.expose()),
            Credentials::PrivateKey(key) => {
                let now = chrono::Utc::now().timestamp();
                let token = keypair::jwt(&self.account, &self.user, key.expose(), now)
                    .map_err(|e| ConnectFailure::new(ConnectFailureKind::BadPassword, e))?;
                data["AUTHENTICATOR"] = json!("SNOWFLAKE_JWT");
                data["TOKEN"] = json!(token);
            }
        }
        let response = http
            .post(url)
            .timeout(self.timeout)
            .header("Accept", "application/json")
            .json(&json!({ "data": data }))
            .send()
            .await
            .map_err(transport_failure)?;
        let envelope: Envelope<LoginData> = read_envelope(response).await.map_err(|e| match e {
            Answer::Transport(failure) => failure,
            Answer::Refused { code, message, .. } => login_failure(code.as_deref(), &message),
        })?;
        let token = envelope.data.and_then(|d| d.token).ok_or_else(|| {
            ConnectFailure::new(
                ConnectFailureKind::Other,
                "Snowflake accepted the login but sent no session token",
            )
        })?;
        Ok(Session {
            http,
            base: self.base.clone(),
            token,
        })
    }
}

/// The account name Snowflake expects at login: the identifier without a
/// region or cloud suffix (`xy12345.eu-west-1` -> `xy12345`).
fn account_name(account: &str) -> String {
    account.split('.').next().unwrap_or(account).to_ascii_uppercase()
}

/// A logged-in session.
pub(super) struct Session {
    http: Client,
    base: Url,
    token: String,
}

impl Session {
    fn authorization(&self) -> String {
        format!("Snowflake Token=\"{}\"", self.token)
    }

    /// Runs one statement and returns its result: the first rows inline and
    /// the chunks still to fetch.
    pub(super) async fn query(&self, sql: &str) -> Result<ResultSet, SourceError> {
        let mut url = self.base.clone();
        url.set_path("/queries/v1/query-request");
        url.query_pairs_mut()
            .append_pair("requestId", &uuid::Uuid::new_v4().to_string());
        let body = json!({
            "sqlText": sql,
            "asyncExec": false,
            "sequenceId": 1,
            "querySubmissionTime": chrono::Utc::now().timestamp_millis(),
        });
        let response = self
            .http
            .post(url)
            .header("Accept", "application/snowflake")
            .header("Authorization", self.authorization())
            .json(&body)
            .send()
            .await
            .map_err(|e| SourceError::Connect(transport_failure(e)))?;
        let mut answer = read_envelope::<QueryData>(response).await;
        // A statement that runs longer than the server waits is polled.
        let mut pause = Duration::from_millis(100);
        while let Ok(envelope) = &answer
            && envelope.code.as_deref().is_some_and(|c| IN_PROGRESS.contains(&c))
        {
            let result_url = envelope
                .data
                .as_ref()
                .and_then(|d| d.get_result_url.clone())
                .ok_or_else(|| SourceError::Query {
                    code: Some("XX000".into()),
                    message: "Snowflake says the statement still runs but names no result to poll".into(),
                })?;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            let url = self.base.join(&result_url).map_err(|e| SourceError::Query {
                code: Some("XX000".into()),
                message: format!("Snowflake named a result URL that is not one ({e})"),
            })?;
            let response = self
                .http
                .get(url)
                .header("Accept", "application/snowflake")
                .header("Authorization", self.authorization())
                .send()
                .await
                .map_err(|e| SourceError::Connect(transport_failure(e)))?;
            answer = read_envelope::<QueryData>(response).await;
        }
        let envelope = answer.map_err(|e| match e {
            Answer::Transport(failure) => SourceError::Connect(failure),
            Answer::Refused {
                code,
                sql_state,
                message,
            } => query_failure(code.as_deref(), sql_state.as_deref(), &message),
        })?;
        let data = envelope.data.ok_or_else(|| SourceError::Query {
            code: None,
            message: "Snowflake answered a query without data".into(),
        })?;
        data.into_result(self.http.clone())
    }

    /// Checks that the connection's database (and warehouse, when given)
    /// are usable by the session: a login names them without checking.
    pub(super) async fn check_context(&self, endpoint: &Endpoint) -> Result<(), ConnectFailure> {
        let unknown = |what: &str| {
            ConnectFailure::new(
                ConnectFailureKind::UnknownDatabase,
                format!("{what} does not exist or the user's role may not use it"),
            )
        };
        let probe = |e: SourceError| match e {
            SourceError::Connect(failure) => failure,
            other => ConnectFailure::new(ConnectFailureKind::Other, other.to_string()),
        };
        let values = self
            .query("SELECT CURRENT_DATABASE()")
            .await
            .map_err(probe)?
            .text_rows()
            .await
            .map_err(probe)?;
        if values.rows.first().and_then(|r| r.first().cloned().flatten()).is_none() {
            return Err(unknown(&format!("database \"{}\"", endpoint.database)));
        }
        if let Some(warehouse) = &endpoint.warehouse {
            let values = self
                .query("SELECT CURRENT_WAREHOUSE()")
                .await
                .map_err(probe)?
                .text_rows()
                .await
                .map_err(probe)?;
            if values.rows.first().and_then(|r| r.first().cloned().flatten()).is_none() {
                return Err(unknown(&format!("warehouse \"{warehouse}\"")));
            }
        }
        Ok(())
    }

    /// Ends the session; a failed goodbye changes nothing.
    pub(super) async fn close(self) {
        let mut url = self.base.clone();
        url.set_path("/session");
        url.query_pairs_mut().append_pair("delete", "true");
        let _ = self
            .http
            .post(url)
            .header("Accept", "application/json")
            .header("Authorization", self.authorization())
            .send()
            .await;
    }
}

/// Every answer's wrapper.
#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
    code: Option<String>,
    message: Option<String>,
    #[serde(default)]
    success: bool,
}

#[derive(Deserialize)]
struct LoginData {
    token: Option<String>,
}

/// The data of a query answer (the fields Sluice reads).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct QueryData {
    #[serde(default)]
    pub(super) rowtype: Vec<RowType>,
    rowset_base64: Option<String>,
    rowset: Option<Vec<Vec<Value>>>,
    query_result_format: Option<String>,
    #[serde(default)]
    chunks: Vec<ChunkInfo>,
    pub(super) qrmk: Option<String>,
    chunk_headers: Option<HashMap<String, String>>,
    get_result_url: Option<String>,
}

/// One column of a result, as the answer describes it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RowType {
    pub(super) name: String,
    /// Snowflake's type: `fixed`, `real`, `text`, `timestamp_ntz`...
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) scale: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChunkInfo {
    url: String,
    row_count: Option<u64>,
}

impl QueryData {
    /// The result this answer describes: Arrow, or JSON rows (Snowflake
    /// answers DDL and DML in JSON, and queries too where a client does not
    /// get Arrow), inline and in chunks.
    pub(super) fn into_result(self, http: Client) -> Result<ResultSet, SourceError> {
        let inline = match self.rowset_base64.as_deref() {
            None | Some("") => None,
            Some(encoded) => {
                Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .map_err(|e| SourceError::Query {
                            code: None,
                            message: format!("Snowflake sent a result that is not base64: {e}"),
                        })?,
                )
            }
        };
        let json = self
            .query_result_format
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("json"));
        let inline = match (json, inline) {
            (true, _) => self.rowset.filter(|rows| !rows.is_empty()).map(Rowset::Json),
            (false, bytes) => bytes.map(Rowset::Arrow),
        };
        let mut headers = self.chunk_headers.unwrap_or_default();
        if headers.is_empty()
            && let Some(key) = self.qrmk
        {
            headers.insert(
                "x-amz-server-side-encryption-customer-algorithm".into(),
                "AES256".into(),
            );
            headers.insert("x-amz-server-side-encryption-customer-key".into(), key);
        }
        Ok(ResultSet {
            rowtype: self.rowtype,
            json,
            inline,
            chunks: self
                .chunks
                .into_iter()
                .map(|c| Chunk {
                    url: c.url,
                    rows: c.row_count,
                })
                .collect(),
            headers,
            http,
        })
    }
}

/// Why an answer is not a success.
enum Answer {
    Transport(ConnectFailure),
    Refused {
        code: Option<String>,
        sql_state: Option<String>,
        message: String,
    },
}

/// Reads an answer's JSON wrapper; a refusal (`success: false`, or an HTTP
/// error status) keeps its code and message.
async fn read_envelope<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<Envelope<T>, Answer> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| Answer::Transport(transport_failure(e)))?;
    if let Ok(refusal) = serde_json::from_slice::<Envelope<Refusal>>(&body)
        && !refusal.success
        && !refusal.code.as_deref().is_some_and(|c| IN_PROGRESS.contains(&c))
    {
        return Err(Answer::Refused {
            code: refusal.code,
            sql_state: refusal.data.and_then(|d| d.sql_state),
            message: refusal.message.unwrap_or_else(|| format!("HTTP {status}")),
        });
    }
    let envelope: Envelope<T> = match serde_json::from_slice(&body) {
        Ok(envelope) => envelope,
        Err(_) if !status.is_success() => {
            let kind = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConnectFailureKind::AccessDenied,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                    ConnectFailureKind::Timeout
                }
                _ => ConnectFailureKind::Other,
            };
            return Err(Answer::Transport(ConnectFailure::new(
                kind,
                format!("Snowflake answered HTTP {status}"),
            )));
        }
        Err(e) => {
            return Err(Answer::Transport(ConnectFailure::new(
                ConnectFailureKind::Other,
                format!("the answer is not Snowflake's JSON (is the endpoint a Snowflake account?): {e}"),
            )));
        }
    };
    Ok(envelope)
}

/// The data of a refused statement.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Refusal {
    sql_state: Option<String>,
}

/// A transport error (no answer) as a connection failure.
pub(super) fn transport_failure(error: reqwest::Error) -> ConnectFailure {
    let kind = if error.is_timeout() {
        ConnectFailureKind::Timeout
    } else {
        network_failure_kind(&error).unwrap_or(ConnectFailureKind::Other)
    };
    ConnectFailure::new(kind, error_chain(&error))
}

/// A refused login, classified by Snowflake's code and message.
fn login_failure(code: Option<&str>, message: &str) -> ConnectFailure {
    use ConnectFailureKind as K;
    let lower = message.to_ascii_lowercase();
    let kind = match code {
        Some(code) if BAD_CREDENTIALS.contains(&code) => K::BadPassword,
        _ if lower.contains("incorrect username or password") || lower.contains("jwt token is invalid") => {
            K::BadPassword
        }
        _ if lower.contains("does not exist") && (lower.contains("database") || lower.contains("warehouse")) => {
            K::UnknownDatabase
        }
        _ if lower.contains("role") && lower.contains("not") => K::AccessDenied,
        _ => K::Other,
    };
    let detail = match code {
        Some(code) => format!("Snowflake error {code}: {message}"),
        None => message.to_owned(),
    };
    ConnectFailure::new(kind, detail)
}

/// A refused statement as a source error with a PostgreSQL SQLSTATE.
pub(super) fn query_failure(code: Option<&str>, sql_state: Option<&str>, message: &str) -> SourceError {
    if code.is_some_and(|c| SESSION_GONE.contains(&c)) {
        return SourceError::Connect(ConnectFailure::new(
            ConnectFailureKind::Other,
            format!("the Snowflake session ended: {message}"),
        ));
    }
    let lower = message.to_ascii_lowercase();
    let state = match sql_state {
        Some("42S02") => "42P01",
        Some("42S22") => "42703",
        Some("42000") if lower.contains("syntax error") => "42601",
        Some("42000") if lower.contains("does not exist") => "42P01",
        Some(state) if state.len() == 5 => state,
        _ => "XX000",
    };
    SourceError::Query {
        code: Some(state.to_owned()),
        message: match code {
            Some(code) if !message.starts_with(code) => format!("Snowflake error {code}: {message}"),
            _ => message.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_logins_are_classified() {
        let kind = |code: Option<&str>, message: &str| login_failure(code, message).kind;
        assert_eq!(
            kind(Some("390100"), "Incorrect username or password was specified."),
            ConnectFailureKind::BadPassword
        );
        assert_eq!(
            kind(Some("390144"), "JWT token is invalid."),
            ConnectFailureKind::BadPassword
        );
        assert_eq!(
            kind(
                Some("390201"),
                "The requested database does not exist or not authorized."
            ),
            ConnectFailureKind::UnknownDatabase
        );
        assert_eq!(
            kind(
                Some("390201"),
                "The requested warehouse does not exist or not authorized."
            ),
            ConnectFailureKind::UnknownDatabase
        );
        assert_eq!(
            kind(
                Some("390189"),
                "Role 'X' specified in the connect string is not granted to this user."
            ),
            ConnectFailureKind::AccessDenied
        );
        assert_eq!(ConnectFailureKind::BadPassword.sqlstate(), "28P01");
        assert_eq!(ConnectFailureKind::UnknownDatabase.sqlstate(), "3D000");
    }

    #[test]
    fn refused_statements_carry_postgres_sqlstates() {
        let state = |code, sql_state, message| match query_failure(Some(code), sql_state, message) {
            SourceError::Query { code, .. } => code.unwrap(),
            other => panic!("{other}"),
        };
        assert_eq!(
            state("002003", Some("42S02"), "Object 'T' does not exist or not authorized."),
            "42P01"
        );
        assert_eq!(state("000904", Some("42000"), "invalid identifier 'X'"), "42000");
        assert_eq!(
            state("001003", Some("42000"), "SQL compilation error: syntax error line 1"),
            "42601"
        );
        assert_eq!(
            state("100035", Some("22007"), "Timestamp '' is not recognized"),
            "22007"
        );
        assert!(matches!(
            query_failure(Some("390112"), None, "Your session has expired."),
            SourceError::Connect(_)
        ));
    }

    #[test]
    fn the_account_name_drops_region_and_cloud() {
        assert_eq!(account_name("xy12345.eu-west-1.aws"), "XY12345");
        assert_eq!(account_name("myorg-myaccount"), "MYORG-MYACCOUNT");
    }
}
