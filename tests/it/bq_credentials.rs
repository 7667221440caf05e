//! The ways people sign in to Google, end to end through a real `sluice`:
//! gcloud's `authorized_user` file (found as Application Default
//! Credentials), workload identity federation (`external_account`, with a
//! file- and a URL-sourced subject token, through the STS exchange, and
//! with the service-account impersonation its file names), and the
//! `impersonate_service_account` option (IAM credentials
//! `generateAccessToken`). A local fake plays Google's sign-in endpoints
//! (`SLUICE_GOOGLE_AUTH_ENDPOINT` moves Google's sign-in hosts there; the
//! external_account files name it themselves); each flow ends in its own
//! token, and the fake BigQuery checks that the load used it. Secrets
//! (refresh token, client secret, subject token) appear in no error and no
//! log, even at debug level.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::bigquery;
use crate::common::*;

const CLIENT_SECRET: &str = "client-secret-d41d8c";
const REFRESH_TOKEN: &str = "refresh-token-9e107d";
const SUBJECT_FROM_FILE: &str = "subject-from-file-e4d909";
const SUBJECT_FROM_URL: &str = "subject-from-url-45c48c";
/// The user's token, from the refresh-token grant.
const USER_TOKEN: &str = "user-token";
/// The federated token, from the STS exchange.
const FEDERATED_TOKEN: &str = "federated-token";
const SERVICE_ACCOUNT: &str = "loader@test-project.iam.gserviceaccount.com";

/// The token the IAM credentials fake issues for a caller's token.
fn impersonated(caller: &str) -> String {
    format!("impersonated-by-{caller}")
}

/// Google's sign-in endpoints, faked: every request as `METHOD path`, its
/// bearer token and its body.
struct FakeSignIn {
    url: String,
    requests: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl FakeSignIn {
    fn start() -> FakeSignIn {
        let requests: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
        let seen = requests.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move { answer(&seen, method, uri, headers, body) }
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    axum::serve(listener, app).await.unwrap();
                });
        });
        FakeSignIn { url, requests }
    }

    /// The requests whose `METHOD path` contains `needle`: bearer and body.
    fn requests_to(&self, needle: &str) -> Vec<(String, String)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(line, _, _)| line.contains(needle))
            .map(|(_, bearer, body)| (bearer.clone(), body.clone()))
            .collect()
    }
}

fn form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// Percent-decoding of a form value.
fn decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn token(access_token: &str) -> Response {
    let body = json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 3600,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"});
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn refused(error: &str) -> Response {
    let body = json!({"error": error, "error_description": "refused by the fake"});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn answer(
    seen: &Mutex<Vec<(String, String, String)>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let body = String::from_utf8_lossy(&body).to_string();
    seen.lock()
        .unwrap()
        .push((format!("{method} {path}"), bearer.clone(), body.clone()));
    let fields = form(&body);
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    match (method.as_str(), path.as_str()) {
        // authorized_user: yup-oauth2 posts to accounts.google.com/o/oauth2/token.
        ("POST", "/o/oauth2/token") => {
            if field("grant_type") == "refresh_token"
                && field("refresh_token") == REFRESH_TOKEN
                && field("client_secret") == CLIENT_SECRET
            {
                token(USER_TOKEN)
            } else {
                refused("invalid_grant")
            }
        }
        // The URL-sourced subject token, asked for with the file's header.
        ("GET", "/subject") => {
            if headers.get("metadata").is_some_and(|v| v == "True") {
                (StatusCode::OK, axum::Json(json!({"access_token": SUBJECT_FROM_URL}))).into_response()
            } else {
                (StatusCode::BAD_REQUEST, "no Metadata header").into_response()
            }
        }
        // STS token exchange.
        ("POST", "/v1/token") => {
            let subject = field("subject_token");
            if field("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange"
                && field("audience").starts_with("//iam.googleapis.com/")
                && (subject == SUBJECT_FROM_FILE || subject == SUBJECT_FROM_URL)
            {
                token(FEDERATED_TOKEN)
            } else {
                refused("invalid_grant")
            }
        }
        // IAM credentials generateAccessToken.
        ("POST", p) if p.ends_with(":generateAccessToken") && p.contains(SERVICE_ACCOUNT) => {
            let expire = chrono::Utc::now() + chrono::Duration::hours(1);
            let body = json!({"accessToken": impersonated(&bearer), "expireTime": expire.to_rfc3339()});
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "unknown sign-in call").into_response(),
    }
}

fn write(dir: &Path, name: &str, value: serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.display().to_string()
}

fn authorized_user(refresh_token: &str) -> serde_json::Value {
    json!({"type": "authorized_user", "client_id": "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com",
        "client_secret": CLIENT_SECRET, "refresh_token": refresh_token, "quota_project_id": "test-project",
        "universe_domain": "googleapis.com", "account": ""})
}

/// An external_account document exchanging `source`'s subject token at the fake STS.
fn external_account(sign_in: &FakeSignIn, source: serde_json::Value, impersonate: bool) -> serde_json::Value {
    let mut document = json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/gke",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/v1/token", sign_in.url),
        "credential_source": source,
    });
    if impersonate {
        document["service_account_impersonation_url"] = format!(
            "{}/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken",
            sign_in.url
        )
        .into();
    }
    document
}

/// Creates connection `name` on dataset `name` with `options`, runs a
/// snapshot job into it, and returns the bearer tokens the fake BigQuery
/// saw on that dataset.
async fn load_through(env: &bigquery::Env, name: &str, options: &str) -> Vec<String> {
    env.client
        .batch_execute(&format!(
            "CREATE CONNECTION {name} TYPE bigquery OPTIONS (project 'test-project', dataset '{name}', \
             location 'EU', connect_timeout 5{options});
             CREATE ETL JOB {name}_job FROM shop.public.orders INTO {name}.orders SNAPSHOT;"
        ))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let run = rows(&env.client, &format!("RUN ETL JOB {name}_job")).await;
    assert_eq!(run[0][1].as_deref(), Some("succeeded"), "{name}: {run:?}");
    assert_eq!(
        env.fake.table(name, "orders").map(|t| t.num_rows()),
        Some(500),
        "{name}"
    );
    let mut bearers: Vec<String> = env
        .fake
        .state()
        .bearers
        .iter()
        .filter(|(line, _)| line.contains(&format!("/{name}")))
        .map(|(_, bearer)| bearer.clone())
        .collect();
    bearers.sort();
    bearers.dedup();
    bearers
}

#[tokio::test(flavor = "multi_thread")]
async fn every_credential_type_signs_in_and_loads_with_its_own_token() {
    let sign_in = FakeSignIn::start();
    let files = tempfile::tempdir().unwrap();
    // gcloud's configuration directory with what `gcloud auth
    // application-default login` writes there.
    let gcloud = files.path().join("gcloud");
    std::fs::create_dir(&gcloud).unwrap();
    write(
        &gcloud,
        "application_default_credentials.json",
        authorized_user(REFRESH_TOKEN),
    );
    let env = bigquery::setup(&[
        ("SLUICE_GOOGLE_AUTH_ENDPOINT", sign_in.url.as_str()),
        ("CLOUDSDK_CONFIG", gcloud.to_str().unwrap()),
        ("SLUICE_LOG", "debug"),
    ])
    .await;
    {
        let mut state = env.fake.state();
        state.accepted_tokens = vec![
            USER_TOKEN.into(),
            FEDERATED_TOKEN.into(),
            impersonated(FEDERATED_TOKEN),
            impersonated(USER_TOKEN),
            impersonated(crate::fake_bigquery::TOKEN),
        ];
    }

    // authorized_user, found as Application Default Credentials.
    assert_eq!(load_through(&env, "adc_user", "").await, [USER_TOKEN]);
    let refreshes = sign_in.requests_to("/o/oauth2/token");
    assert!(
        !refreshes.is_empty()
            && refreshes
                .iter()
                .all(|(_, body)| body.contains("grant_type=refresh_token"))
    );

    // external_account, subject token from a file.
    let subject = files.path().join("subject.jwt");
    std::fs::write(&subject, SUBJECT_FROM_FILE).unwrap();
    let file_sourced = write(
        files.path(),
        "federated_file.json",
        external_account(&sign_in, json!({"file": subject.display().to_string()}), false),
    );
    assert_eq!(
        load_through(&env, "wif_file", &format!(", credentials_file '{file_sourced}'")).await,
        [FEDERATED_TOKEN]
    );

    // external_account, subject token from a URL (JSON answer, with the
    // file's headers), impersonating the service account the file names.
    let url_sourced = write(
        files.path(),
        "federated_url.json",
        external_account(
            &sign_in,
            json!({"url": format!("{}/subject", sign_in.url), "headers": {"Metadata": "True"},
                   "format": {"type": "json", "subject_token_field_name": "access_token"}}),
            true,
        ),
    );
    assert_eq!(
        load_through(&env, "wif_url", &format!(", credentials_file '{url_sourced}'")).await,
        [impersonated(FEDERATED_TOKEN)]
    );
    let exchanges = sign_in.requests_to("/v1/token");
    assert!(
        exchanges.iter().any(|(_, body)| body.contains(SUBJECT_FROM_URL)),
        "{exchanges:?}"
    );

    // impersonate_service_account over a service-account key (whose token
    // comes from the fake BigQuery's token endpoint) and over gcloud's
    // user credentials.
    let key = env.fake.write_key_file(files.path());
    assert_eq!(
        load_through(
            &env,
            "imp_key",
            &format!(
                ", credentials_file '{}', impersonate_service_account '{SERVICE_ACCOUNT}'",
                key.display()
            )
        )
        .await,
        [impersonated(crate::fake_bigquery::TOKEN)]
    );
    assert_eq!(
        load_through(
            &env,
            "imp_user",
            &format!(", impersonate_service_account '{SERVICE_ACCOUNT}'")
        )
        .await,
        [impersonated(USER_TOKEN)]
    );
    let generated = sign_in.requests_to(":generateAccessToken");
    assert!(
        generated
            .iter()
            .all(|(_, body)| body.contains("https://www.googleapis.com/auth/bigquery")),
        "{generated:?}"
    );

    // A refresh token Google refuses: a sign-in error that names neither it
    // nor the client secret.
    let revoked = write(files.path(), "revoked.json", authorized_user("revoked-refresh-token"));
    let err = expect_err(
        &env.client,
        &format!(
            "CREATE CONNECTION revoked TYPE bigquery OPTIONS (project 'test-project', dataset 'revoked', \
             credentials_file '{revoked}')"
        ),
        "28P01",
    )
    .await;
    assert!(err.contains("invalid_grant") || err.contains("InvalidGrant"), "{err}");
    // A malformed document as an inline secret is named without its values.
    let err = expect_err(
        &env.client,
        &format!(
            "CREATE CONNECTION broken TYPE bigquery OPTIONS (project 'test-project', dataset 'broken', \
             credentials '{}')",
            json!({"type": "authorized_user", "client_secret": CLIENT_SECRET, "client_id": "c"})
        ),
        "28P01",
    )
    .await;
    assert!(err.contains("refresh_token"), "{err}");

    for secret in [
        CLIENT_SECRET,
        REFRESH_TOKEN,
        "revoked-refresh-token",
        SUBJECT_FROM_FILE,
        SUBJECT_FROM_URL,
    ] {
        assert!(!err.contains(secret), "{err}");
        let log = env.sluice.log_contents();
        assert!(!log.contains(secret), "the debug log shows {secret}");
    }
    let connections = rows(&env.client, "SELECT * FROM sluice.connections").await;
    assert!(!format!("{connections:?}").contains(CLIENT_SECRET), "{connections:?}");
}
