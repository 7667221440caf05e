//! Repeating a remote call that failed in a way worth repeating: exponential
//! backoff, with or without jitter. Each service keeps its own policy (a
//! [`Backoff`] constant) and its own rule for which errors are retryable;
//! everything else fails at once.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tracing::warn;

/// How often and how patiently a call is repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// The pause after the first failed attempt; each next one doubles, up
    /// to `max_pause`.
    pub first_pause: Duration,
    pub max_pause: Duration,
    /// Whether each pause is a random duration between half and all of its
    /// step ("equal jitter"), so that callers failing together do not
    /// retry together.
    pub jitter: bool,
}

impl Backoff {
    /// Runs `call` until it succeeds, fails with an error `retryable` does
    /// not accept, or the attempts run out; the last result is returned.
    /// `call` must be safe to repeat. Each retry is logged with `what`.
    pub async fn run<T, E, F, Fut>(&self, what: &str, retryable: impl Fn(&E) -> bool, mut call: F) -> Result<T, E>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(error) if attempt < self.attempts && retryable(&error) => {
                    let pause = self.pause(attempt);
                    warn!(call = what, attempt, error = %error, pause_ms = pause.as_millis() as u64, "call failed; retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// The pause after failed attempt `attempt` (1-based).
    pub fn pause(&self, attempt: u32) -> Duration {
        let step = exponential_step(self.first_pause, self.max_pause, attempt);
        if !self.jitter {
            return step;
        }
        let half = step / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }
}

/// `first * 2^(attempt-1)` (attempt 1-based), capped at `max`.
pub fn exponential_step(first: Duration, max: Duration, attempt: u32) -> Duration {
    first.saturating_mul(1 << attempt.saturating_sub(1).min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const STEADY: Backoff = Backoff {
        attempts: 4,
        first_pause: Duration::from_millis(1),
        max_pause: Duration::from_millis(3),
        jitter: false,
    };

    #[test]
    fn pauses_double_up_to_the_cap() {
        let pauses: Vec<_> = (1..6).map(|a| STEADY.pause(a).as_millis()).collect();
        assert_eq!(pauses, [1, 2, 3, 3, 3]);
        assert_eq!(
            exponential_step(Duration::from_secs(1), Duration::MAX, 100),
            Duration::from_secs(1 << 20)
        );
    }

    #[test]
    fn jittered_pauses_lie_between_half_and_all_of_the_step() {
        let jittered = Backoff {
            attempts: 7,
            first_pause: Duration::from_millis(250),
            max_pause: Duration::from_secs(32),
            jitter: true,
        };
        for attempt in 1..20 {
            let step = exponential_step(jittered.first_pause, jittered.max_pause, attempt);
            let pause = jittered.pause(attempt);
            assert!(pause >= step / 2 && pause <= step, "{attempt}: {pause:?}");
        }
        assert!(jittered.pause(12) >= Duration::from_secs(16));
    }

    #[tokio::test]
    async fn retries_only_retryable_errors_and_only_so_often() {
        let calls = Cell::new(0);
        let always_failing = || async {
            calls.set(calls.get() + 1);
            Err::<(), _>(format!("failure {}", calls.get()))
        };
        let last = STEADY.run("test", |_| true, always_failing).await;
        assert_eq!((calls.get(), last), (4, Err("failure 4".to_owned())));

        calls.set(0);
        let refused = STEADY.run("test", |e: &String| e != "failure 2", always_failing).await;
        assert_eq!((calls.get(), refused), (2, Err("failure 2".to_owned())));

        calls.set(0);
        let recovers = || async {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Err("busy".to_owned())
            } else {
                Ok(calls.get())
            }
        };
        assert_eq!(STEADY.run("test", |_| true, recovers).await, Ok(3));
    }
}
