//! Exponential backoff with jitter for BigQuery calls that failed in a way
//! worth repeating (429, 5xx, `backendError`, `rateLimitExceeded`, lost
//! connections). Everything else fails at once.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tracing::warn;

use super::api::ApiError;

/// Attempts per call, the first included.
const ATTEMPTS: u32 = 7;
/// The first pause; each next one doubles, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(32);

/// Runs `call` until it succeeds, fails for good, or the attempts run out.
/// `call` must be safe to repeat (BigQuery job inserts are, by their ids).
pub(super) async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(error) if error.retryable() && attempt < ATTEMPTS => {
                let pause = pause(attempt);
                warn!(call = what, attempt, error = %error, pause_ms = pause.as_millis() as u64, "BigQuery call failed; retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The pause after failed attempt `attempt` (1-based): a random duration
/// between half and all of the exponential step ("equal jitter").
fn pause(attempt: u32) -> Duration {
    let step = FIRST_PAUSE.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_PAUSE);
    let half = step / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stay_bounded() {
        for attempt in 1..20 {
            let step = FIRST_PAUSE.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_PAUSE);
            let p = pause(attempt);
            assert!(p >= step / 2 && p <= step, "{attempt}: {p:?}");
        }
        assert!(pause(12) >= MAX_PAUSE / 2);
    }
}
