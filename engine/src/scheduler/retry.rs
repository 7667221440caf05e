//! When a failed scheduled run is tried again: exponential backoff with
//! jitter, for transient errors only.

use std::time::Duration;

use rand::Rng;

/// Backoff between retries of a failed scheduled run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            max: Duration::from_secs(30 * 60),
        }
    }
}

impl Backoff {
    /// The wait before retry `attempt` (1-based): `base * 2^(attempt-1)`,
    /// capped at `max`, then scaled by a random factor in [0.8, 1.2] so jobs
    /// that failed together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = crate::backoff::exponential_step(self.base, self.max, attempt);
        nominal.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let backoff = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
        };
        for (attempt, nominal) in [(1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0), (30, 60.0)] {
            for _ in 0..50 {
                let delay = backoff.delay(attempt).as_secs_f64();
                assert!(
                    (nominal * 0.8..=nominal * 1.2).contains(&delay),
                    "attempt {attempt}: {delay}"
                );
            }
        }
    }
}
