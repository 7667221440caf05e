//! Slows down repeated failed logins from one address: each recent failure
//! doubles the wait before that address's next SCRAM exchange, up to a bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The wait after the first failure; it doubles with each further one.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Failures older than this (since the address's last failure) are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Addresses tracked at most; beyond it, forgotten entries are pruned first.
const MAX_ADDRESSES: usize = 10_000;

/// Recent failed logins per client address.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginThrottle {
    /// How long `address` waits before its next exchange.
    pub fn delay(&self, address: IpAddr) -> Duration {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(&address) {
            Some(&(count, last)) if last.elapsed() < FORGET_AFTER => {
                let doublings = count.saturating_sub(1).min(16);
                (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failed login from `address`.
    pub fn failed(&self, address: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&address) {
            failures.retain(|_, (_, last)| last.elapsed() < FORGET_AFTER);
            if failures.len() >= MAX_ADDRESSES {
                // Under a flood from many addresses, keep the newest entries.
                if let Some(oldest) = failures.iter().min_by_key(|(_, (_, last))| *last).map(|(a, _)| *a) {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(address).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FORGET_AFTER {
            entry.0 = 0;
        }
        *entry = (entry.0.saturating_add(1), Instant::now());
    }

    /// Forgets `address`'s failures after a successful login.
    pub fn succeeded(&self, address: IpAddr) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_per_failure_up_to_the_bound_and_resets_on_success() {
        let throttle = LoginThrottle::default();
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(throttle.delay(address), Duration::ZERO);
        let mut delays = Vec::new();
        for _ in 0..10 {
            throttle.failed(address);
            delays.push(throttle.delay(address).as_millis());
        }
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]);
        assert_eq!(throttle.delay("192.0.2.2".parse().unwrap()), Duration::ZERO);
        throttle.succeeded(address);
        assert_eq!(throttle.delay(address), Duration::ZERO);
    }
}
