//! A local fake of Google Secret Manager's `projects.secrets.versions.access`
//! (`GET /v1/{name}:access`): it checks the bearer token, answers 403 for
//! denied names, 404 for unknown ones, and records each request path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

/// What the fake holds and saw.
#[derive(Debug, Default)]
pub struct SecretManagerState {
    /// Values by version name (`projects/p/secrets/s/versions/v`).
    pub versions: BTreeMap<String, String>,
    /// Names whose access is refused (403).
    pub denied: BTreeSet<String>,
    /// The path of every request, in order.
    pub requests: Vec<String>,
}

/// The fake, on a loopback port of its own thread and runtime.
pub struct FakeSecretManager {
    pub url: String,
    state: Arc<Mutex<SecretManagerState>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeSecretManager {
    /// Starts the fake; requests must carry `Bearer <token>`.
    pub fn start(token: &str) -> FakeSecretManager {
        let state = Arc::new(Mutex::new(SecretManagerState::default()));
        let shared = state.clone();
        let token = token.to_owned();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let state = shared.clone();
            let token = token.clone();
            async move { access(&state, &token, &uri, &headers) }
        });
        let (url, shutdown) = crate::common::http::serve_axum(app);
        FakeSecretManager {
            url,
            state,
            shutdown: Some(shutdown),
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, SecretManagerState> {
        self.state.lock().unwrap()
    }

    /// Sets (or rotates) the value of version `name`.
    pub fn put(&self, name: &str, value: &str) {
        self.state().versions.insert(name.to_owned(), value.to_owned());
    }
}

impl Drop for FakeSecretManager {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn access(state: &Mutex<SecretManagerState>, token: &str, uri: &Uri, headers: &HeaderMap) -> Response {
    let mut s = state.lock().unwrap();
    s.requests.push(uri.path().to_owned());
    let error = |status: StatusCode, message: &str| {
        let body = json!({"error": {"code": status.as_u16(), "message": message}});
        (status, axum::Json(body)).into_response()
    };
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {token}")) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials.",
        );
    }
    let Some(name) = uri.path().strip_prefix("/v1/").and_then(|p| p.strip_suffix(":access")) else {
        return error(StatusCode::NOT_FOUND, "no such method");
    };
    if s.denied.contains(name) {
        return error(
            StatusCode::FORBIDDEN,
            &format!("Permission 'secretmanager.versions.access' denied for resource '{name}'"),
        );
    }
    match s.versions.get(name) {
        Some(value) => {
            let data = base64::engine::general_purpose::STANDARD.encode(value);
            (
                StatusCode::OK,
                axum::Json(json!({"name": name, "payload": {"data": data}})),
            )
                .into_response()
        }
        None => error(StatusCode::NOT_FOUND, &format!("Secret Version [{name}] not found.")),
    }
}
