//! Secrets kept outside Sluice (`CREATE SECRET name FROM ENV | FILE | GCP
//! SECRET MANAGER | AWS SECRETS MANAGER '...'`): the catalog holds only the
//! reference; the value is fetched here when a connection is tested or
//! opened for a run, and kept in memory only, for at most the cache TTL, so
//! a rotated value is picked up without a restart.

mod aws;
mod gcp;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_catalog::{ExternalSecret, SecretValue};

use crate::allowed_paths::AllowedPaths;

/// How long a fetched value is reused unless the server sets another TTL.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// Why an external secret could not be read. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFetchProblem {
    /// The variable, file or secret (version) does not exist.
    #[error("it does not exist")]
    NotFound,
    /// The store refused Sluice's credentials or permission.
    #[error("permission denied: {0}")]
    Forbidden(String),
    /// The store could not be reached or answered nonsense.
    #[error("{0}")]
    Unavailable(String),
}

/// Fetches external secrets, with an in-memory cache.
#[derive(Debug, Clone)]
pub struct SecretStores {
    allowed_paths: AllowedPaths,
    ttl: Duration,
    timeout: Duration,
    /// A service-account key file for Google Secret Manager; `None` uses
    /// Application Default Credentials.
    gcp_credentials: Option<PathBuf>,
    cache: Arc<Mutex<HashMap<ExternalSecret, (Instant, SecretValue)>>>,
}

impl SecretStores {
    /// Stores that give a remote store `timeout`, read files anywhere and
    /// reuse a value for [`DEFAULT_CACHE_TTL`].
    pub fn new(timeout: Duration) -> Self {
        Self {
            allowed_paths: AllowedPaths::any(),
            ttl: DEFAULT_CACHE_TTL,
            timeout,
            gcp_credentials: None,
            cache: Arc::default(),
        }
    }

    /// Reads secret files only under `allowed`.
    pub fn with_allowed_paths(self, allowed: AllowedPaths) -> Self {
        Self {
            allowed_paths: allowed,
            ..self
        }
    }

    /// Signs in to Google Secret Manager with the service-account key (or
    /// other credentials JSON) in `file` instead of Application Default
    /// Credentials.
    pub fn with_gcp_credentials(self, file: Option<PathBuf>) -> Self {
        Self {
            gcp_credentials: file,
            ..self
        }
    }

    /// Reuses a fetched value for `ttl`; zero fetches at every use.
    pub fn with_ttl(self, ttl: Duration) -> Self {
        Self { ttl, ..self }
    }

    /// Refuses a reference the server may never read: a file outside the
    /// allowed paths.
    pub fn check(&self, external: &ExternalSecret) -> Result<(), crate::allowed_paths::PathNotAllowed> {
        match external {
            ExternalSecret::File(path) => self.allowed_paths.check("FROM FILE", path),
            _ => Ok(()),
        }
    }

    /// The current value of `external`: from the cache while fresh, else
    /// fetched (blocking the caller; remote stores at most `timeout`).
    pub fn fetch(&self, external: &ExternalSecret) -> Result<SecretValue, SecretFetchProblem> {
        if let Some((at, value)) = self.cache().get(external)
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = self.fetch_now(external)?;
        if !self.ttl.is_zero() {
            self.cache().insert(external.clone(), (Instant::now(), value.clone()));
        }
        Ok(value)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<ExternalSecret, (Instant, SecretValue)>> {
        // Entries are whole values: a panic elsewhere cannot leave one half-written.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fetch_now(&self, external: &ExternalSecret) -> Result<SecretValue, SecretFetchProblem> {
        match external {
            ExternalSecret::Env(variable) => match std::env::var(variable) {
                Ok(value) => Ok(SecretValue::new(value)),
                Err(std::env::VarError::NotPresent) => Err(SecretFetchProblem::NotFound),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(SecretFetchProblem::Unavailable("its value is not valid UTF-8".into()))
                }
            },
            ExternalSecret::File(path) => {
                self.check(external)
                    .map_err(|e| SecretFetchProblem::Forbidden(e.to_string()))?;
                read_file(path)
            }
            ExternalSecret::GcpSecretManager(name) => {
                on_own_thread(gcp::access(name, self.gcp_credentials.as_deref(), self.timeout))
            }
            ExternalSecret::AwsSecretsManager(id) => on_own_thread(aws::get_secret_value(id, self.timeout)),
        }
    }
}

/// Runs a remote store's `fetch` on a thread of its own with a runtime of
/// its own: options are resolved synchronously (sources and destinations
/// open without awaiting), from within async tasks that must not block
/// their runtime's executor on a nested `block_on`.
fn on_own_thread(
    fetch: impl Future<Output = Result<SecretValue, SecretFetchProblem>> + Send,
) -> Result<SecretValue, SecretFetchProblem> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| SecretFetchProblem::Unavailable(format!("cannot start the fetch: {e}")))?
                    .block_on(fetch)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A secret file's contents without trailing line ends (files written by
/// `echo` or editors end with one; no password does).
/// An HTTP client for a secret store: Sluice's trusted roots, the
/// connect timeout as the whole request's bound.
fn http_client(timeout: Duration) -> Result<reqwest::Client, SecretFetchProblem> {
    let tls = crate::tls::client_config(crate::tls::Verify::ChainAndHost, None)
        .map_err(|e| SecretFetchProblem::Unavailable(e.detail))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| SecretFetchProblem::Unavailable(crate::contract::error_chain(&e)))
}

fn read_file(path: &str) -> Result<SecretValue, SecretFetchProblem> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(SecretValue::new(text.trim_end_matches(['\n', '\r']))),
        Err(e) => Err(match e.kind() {
            std::io::ErrorKind::NotFound => SecretFetchProblem::NotFound,
            std::io::ErrorKind::PermissionDenied => {
                SecretFetchProblem::Forbidden("the server's OS user cannot read the file".into())
            }
            std::io::ErrorKind::InvalidData => SecretFetchProblem::Unavailable("the file is not valid UTF-8".into()),
            _ => SecretFetchProblem::Unavailable(format!("cannot read the file: {}", e.kind())),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_within_the_allowed_paths_and_cached_for_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "first\n").unwrap();
        let file = ExternalSecret::File(path.display().to_string());
        let stores = SecretStores::new(Duration::from_secs(1))
            .with_allowed_paths(AllowedPaths::new([dir.path().to_owned()]))
            .with_ttl(Duration::from_millis(300));
        assert_eq!(stores.fetch(&file).unwrap().expose(), "first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(stores.fetch(&file).unwrap().expose(), "first", "cached");
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(
            stores.fetch(&file).unwrap().expose(),
            "second",
            "refetched after the TTL"
        );
        let missing = ExternalSecret::File(dir.path().join("none").display().to_string());
        assert_eq!(stores.fetch(&missing), Err(SecretFetchProblem::NotFound));
        let outside = ExternalSecret::File("/etc/hostname".into());
        assert!(stores.check(&outside).is_err());
        assert!(matches!(stores.fetch(&outside), Err(SecretFetchProblem::Forbidden(_))));
    }

    #[test]
    fn a_missing_variable_is_not_found() {
        let stores = SecretStores::new(Duration::from_secs(1)).with_ttl(Duration::ZERO);
        let missing = ExternalSecret::Env("SLUICE_TEST_SURELY_UNSET_VARIABLE".into());
        assert_eq!(stores.fetch(&missing), Err(SecretFetchProblem::NotFound));
    }
}
