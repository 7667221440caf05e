//! BigQuery's daily table operations as a budget a schedule must fit:
//! 1,500 operations per table per day, and a run that loads rows spends
//! [`OPERATIONS_PER_RUN`] on the target (the copy job that commits it; the
//! chunk load jobs write the run's own staging table, the label updates of
//! an incremental run are metadata updates, rate-limited separately).

use chrono::{DateTime, Duration, Utc};

use crate::schedule::Schedule;

/// BigQuery's table operations per table per day.
pub const DAILY_TABLE_OPERATIONS: u32 = 1_500;
/// Table operations a run that loads rows spends on its target table.
pub const OPERATIONS_PER_RUN: u32 = 1;

/// The most runs `schedule` starts in one UTC day, looking at the days of
/// the coming eight weeks from `from` (weekday, month-end and DST
/// differences); counting stops above `cap`.
fn worst_case_runs_per_day(schedule: &Schedule, from: DateTime<Utc>, cap: u32) -> u32 {
    let first_day = from.date_naive().and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    (0..56)
        .map(|day| {
            let start = first_day + Duration::days(day);
            let end = start + Duration::days(1);
            let mut runs = 0;
            let mut at = start - Duration::seconds(1);
            while runs <= cap {
                match schedule.next_after(at) {
                    Some(next) if next < end => {
                        runs += 1;
                        at = next;
                    }
                    _ => break,
                }
            }
            runs
        })
        .max()
        .unwrap_or(0)
}

/// Checks that `schedule`'s worst day of runs fits the table's daily
/// budget; the error names the table, the numbers and the largest safe
/// frequency.
pub fn check_schedule(schedule: &Schedule, table: &str, now: DateTime<Utc>) -> Result<(), String> {
    let safe_runs = DAILY_TABLE_OPERATIONS / OPERATIONS_PER_RUN;
    let runs = worst_case_runs_per_day(schedule, now, safe_runs);
    if runs <= safe_runs {
        return Ok(());
    }
    let interval = 86_400_u32.div_ceil(safe_runs);
    Err(format!(
        "SCHEDULE {schedule} starts more than {safe_runs} runs on some UTC day; each run that loads rows spends \
         {OPERATIONS_PER_RUN} of BigQuery's {DAILY_TABLE_OPERATIONS} daily table operations on table {table}, so \
         the table's quota would run out: schedule runs at least {interval} seconds apart (EVERY 1 MINUTE or less \
         often)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(schedule: &str) -> Result<(), String> {
        let schedule: Schedule = schedule.parse().unwrap();
        check_schedule(&schedule, "raw.t", "2026-03-28T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn schedules_within_the_budget_pass() {
        for ok in [
            "MANUAL",
            "EVERY 1 MINUTE",
            "EVERY 5 MINUTES",
            "DAILY AT '02:00'",
            "CRON '*/1 * * * *'",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn a_schedule_beyond_the_budget_is_refused_with_the_safe_frequency() {
        let err = check("CRON '*/30 * * * * *'").unwrap_err();
        assert!(err.contains("more than 1500 runs") && err.contains("raw.t"), "{err}");
        assert!(err.contains("58 seconds apart"), "{err}");
        assert!(check("CRON '0,30 * 1-23 * * *'").is_err());
        assert!(check("CRON '0 * * * * *'").is_ok());
    }
}
