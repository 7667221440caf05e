//! `WITH (verify = 'daily')`: the scheduler runs `VERIFY ETL JOB` over a
//! job's loaded window after its runs, at most once a day; the results go
//! to `sluice.verifications` like those of a VERIFY typed by hand.

use chrono::{DateTime, Duration, Utc};

/// When a daily-verified job is next due for verification: once a load
/// succeeded after the last verification (or attempt), and a day after
/// that verification. `None` while nothing was loaded since.
pub(super) fn due(last_load: Option<DateTime<Utc>>, last_verified: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let loaded = last_load?;
    match last_verified {
        None => Some(loaded),
        Some(verified) if verified >= loaded => None,
        Some(verified) => Some((verified + Duration::days(1)).max(loaded)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_follows_a_load_at_most_once_a_day() {
        let t = |hours: i64| DateTime::UNIX_EPOCH + Duration::hours(hours);
        assert_eq!(due(None, None), None, "nothing loaded yet");
        assert_eq!(due(Some(t(1)), None), Some(t(1)), "the first load");
        assert_eq!(due(Some(t(1)), Some(t(2))), None, "verified since the last load");
        assert_eq!(
            due(Some(t(3)), Some(t(2))),
            Some(t(26)),
            "a day after the last verification"
        );
        assert_eq!(due(Some(t(30)), Some(t(2))), Some(t(30)), "after a load a day later");
    }
}
