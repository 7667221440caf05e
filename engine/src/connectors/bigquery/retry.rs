//! BigQuery's backoff: calls that failed in a way worth repeating (429, 5xx,
//! `backendError`, `rateLimitExceeded`, lost connections:
//! [`ApiError::retryable`]) are repeated with exponential backoff and
//! jitter. Everything else fails at once.

use std::future::Future;
use std::time::Duration;

use super::api::ApiError;
use crate::backoff::Backoff;

const BACKOFF: Backoff = Backoff {
    attempts: 7,
    first_pause: Duration::from_millis(250),
    max_pause: Duration::from_secs(32),
    jitter: true,
};

/// Runs `call` until it succeeds, fails for good, or the attempts run out.
/// `call` must be safe to repeat (BigQuery job inserts are, by their ids).
pub(super) async fn retrying<T, F, Fut>(what: &str, call: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    BACKOFF
        .run(&format!("BigQuery {what}"), ApiError::retryable, call)
        .await
}
