use chrono::{DateTime, Utc};

use super::{ParsedSchedules, Schedule};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn schedule(text: &str) -> Schedule {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The next `n` firing times after `from`, as RFC 3339 UTC text.
fn fires(text: &str, from: &str, n: usize) -> Vec<String> {
    let schedule = schedule(text);
    let mut t = at(from);
    (0..n)
        .map(|_| {
            t = schedule.next_after(t).expect("fires again");
            t.to_rfc3339()
        })
        .collect()
}

#[test]
fn normalises_every_kind_and_parses_it_back() {
    for (written, canonical) in [
        ("manual", "MANUAL"),
        ("continuous", "CONTINUOUS"),
        ("every 15 minutes", "EVERY 15 MINUTES"),
        ("EVERY 1 hour", "EVERY 1 HOURS"),
        ("hourly", "HOURLY"),
        ("HOURLY AT MINUTE 5", "HOURLY AT MINUTE 5"),
        (
            "daily at '2:00' timezone 'Europe/Warsaw'",
            "DAILY AT '02:00' TIMEZONE 'Europe/Warsaw'",
        ),
        ("WEEKLY ON mon AT '03:30'", "WEEKLY ON MONDAY AT '03:30'"),
        ("MONTHLY ON LAST AT '23:00'", "MONTHLY ON LAST AT '23:00'"),
        ("MONTHLY ON 31 AT '06:15' TIMEZONE 'UTC'", "MONTHLY ON 31 AT '06:15'"),
        ("CRON '0  3 * * 1-5'", "CRON '0 3 * * 1-5'"),
        ("CRON '*/10 * * * * *'", "CRON '*/10 * * * * *'"),
    ] {
        let parsed = schedule(written);
        assert_eq!(parsed.to_string(), canonical, "{written}");
        assert_eq!(schedule(canonical).to_string(), canonical);
    }
    assert!(schedule("MANUAL").is_manual());
    assert_eq!(schedule("MANUAL").next_after(at("2026-01-01T00:00:00Z")), None);
    assert!(schedule("CONTINUOUS").is_continuous() && !schedule("CONTINUOUS").is_manual());
    assert_eq!(schedule("CONTINUOUS").next_after(at("2026-01-01T00:00:00Z")), None);
}

#[test]
fn rejects_bad_schedules_with_the_reason() {
    for (text, needle) in [
        ("", "expected MANUAL"),
        ("EVERY 0 MINUTES", "at least 1"),
        ("EVERY 5 DAYS", "MINUTES or HOURS"),
        ("HOURLY AT MINUTE 60", "0-59"),
        ("DAILY AT '25:00'", "time of day"),
        ("DAILY AT 2", "a time 'HH:MM'"),
        ("WEEKLY ON funday AT '01:00'", "day of the week"),
        ("MONTHLY ON 32 AT '01:00'", "1-31 or LAST"),
        ("CRON '* *'", "5 fields"),
        ("CRON '61 * * * *'", "invalid cron expression"),
        ("DAILY AT '01:00' TIMEZONE 'Mars/Olympus'", "unknown time zone"),
        ("MANUAL TIMEZONE 'Europe/Warsaw'", "no TIMEZONE"),
        ("CONTINUOUS TIMEZONE 'Europe/Warsaw'", "no TIMEZONE"),
        ("DAILY AT '01:00' please", "unexpected"),
        ("CRON '0 3 * * *", "unterminated"),
    ] {
        let err = text.parse::<Schedule>().expect_err(text);
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn every_is_a_fixed_interval_from_the_epoch() {
    assert_eq!(
        fires("EVERY 15 MINUTES", "2026-03-01T10:07:30Z", 3),
        [
            "2026-03-01T10:15:00+00:00",
            "2026-03-01T10:30:00+00:00",
            "2026-03-01T10:45:00+00:00"
        ]
    );
    // Exactly on a tick: the next one, never the same instant again.
    assert_eq!(
        fires("EVERY 2 HOURS", "2026-03-01T10:00:00Z", 1),
        ["2026-03-01T12:00:00+00:00"]
    );
}

#[test]
fn calendar_schedules_fire_at_their_wall_clock_times() {
    assert_eq!(
        fires("HOURLY AT MINUTE 5", "2026-03-01T10:05:00Z", 2),
        ["2026-03-01T11:05:00+00:00", "2026-03-01T12:05:00+00:00"]
    );
    // 2026-03-04 is a Wednesday.
    assert_eq!(
        fires("WEEKLY ON FRIDAY AT '03:30'", "2026-03-04T12:00:00Z", 2),
        ["2026-03-06T03:30:00+00:00", "2026-03-13T03:30:00+00:00"]
    );
    assert_eq!(
        fires("MONTHLY ON LAST AT '23:00'", "2026-01-31T23:00:00Z", 3),
        [
            "2026-02-28T23:00:00+00:00",
            "2026-03-31T23:00:00+00:00",
            "2026-04-30T23:00:00+00:00"
        ]
    );
    // Day 31 skips the months without one.
    assert_eq!(
        fires("MONTHLY ON 31 AT '00:00'", "2026-01-31T00:00:00Z", 2),
        ["2026-03-31T00:00:00+00:00", "2026-05-31T00:00:00+00:00"]
    );
    assert_eq!(
        fires("CRON '0 3 * * 1-5'", "2026-03-06T04:00:00Z", 1),
        ["2026-03-09T03:00:00+00:00"]
    );
    assert_eq!(
        fires("CRON '*/20 * * * * *'", "2026-03-06T04:00:05Z", 3),
        [
            "2026-03-06T04:00:20+00:00",
            "2026-03-06T04:00:40+00:00",
            "2026-03-06T04:01:00+00:00"
        ]
    );
}

#[test]
fn time_zones_move_the_instant() {
    // Warsaw is UTC+1 in winter and UTC+2 in summer.
    assert_eq!(
        fires("DAILY AT '02:00' TIMEZONE 'Europe/Warsaw'", "2026-01-10T12:00:00Z", 1),
        ["2026-01-11T01:00:00+00:00"]
    );
    assert_eq!(
        fires("DAILY AT '02:00' TIMEZONE 'Europe/Warsaw'", "2026-07-10T12:00:00Z", 1),
        ["2026-07-11T00:00:00+00:00"]
    );
    // Kathmandu is UTC+5:45: local minute 0 is UTC minute 15.
    assert_eq!(
        fires("HOURLY TIMEZONE 'Asia/Kathmandu'", "2026-07-10T12:00:00Z", 1),
        ["2026-07-10T12:15:00+00:00"]
    );
}

#[test]
fn a_daily_time_in_the_spring_forward_gap_runs_once_after_the_gap() {
    // Europe/Warsaw, 2026-03-29: 02:00 local jumps to 03:00 (01:00 UTC).
    assert_eq!(
        fires("DAILY AT '02:30' TIMEZONE 'Europe/Warsaw'", "2026-03-28T12:00:00Z", 3),
        [
            "2026-03-29T01:00:00+00:00", // 03:00 CEST, the first valid minute after the gap
            "2026-03-30T00:30:00+00:00", // 02:30 CEST
            "2026-03-31T00:30:00+00:00",
        ]
    );
}

#[test]
fn a_daily_time_in_the_repeated_hour_runs_once() {
    // Europe/Warsaw, 2026-10-25: 03:00 CEST falls back to 02:00 CET, so
    // 02:30 local happens at 00:30 UTC and again at 01:30 UTC.
    assert_eq!(
        fires("DAILY AT '02:30' TIMEZONE 'Europe/Warsaw'", "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
    );
}

#[test]
fn hourly_runs_in_both_passes_of_a_repeated_hour() {
    let times = fires(
        "HOURLY AT MINUTE 30 TIMEZONE 'Europe/Warsaw'",
        "2026-10-24T23:45:00Z",
        3,
    );
    assert_eq!(
        times,
        [
            "2026-10-25T00:30:00+00:00",
            "2026-10-25T01:30:00+00:00",
            "2026-10-25T02:30:00+00:00"
        ]
    );
}

#[test]
fn parsed_schedules_give_each_texts_schedule_or_none() {
    let mut schedules = ParsedSchedules::default();
    assert_eq!(schedules.get("EVERY 5 MINUTES"), Some(&schedule("EVERY 5 MINUTES")));
    assert_eq!(schedules.get("MANUAL"), Some(&Schedule::manual()));
    assert_eq!(schedules.get("EVERY 5 MINUTES"), Some(&schedule("every 5 minutes")));
    assert_eq!(schedules.get("EVERY SOMETIMES"), None);
}
