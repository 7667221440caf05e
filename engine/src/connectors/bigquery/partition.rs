//! Whether a repair window is exactly one whole partition of the target:
//! then its commit is one copy job of that partition (`staging$20240301`
//! to `target$20240301`, `WRITE_TRUNCATE`), atomic like any job and free,
//! instead of a DML transaction that is billed for the bytes it scans.
//! A window over several partitions stays one transaction: a copy job has
//! one destination partition, and several copy jobs would not be atomic.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::scalar::ScalarValue;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;

/// The partition id (`2024030102`, `20240301`, `202403`, `2024`) when the
/// target is partitioned by `cursor` and `[from, to)` is exactly that one
/// partition; `None` otherwise.
pub(super) fn whole_partition(
    partitioning: Option<&TimePartitioning>,
    cursor: &str,
    from: &ScalarValue,
    to: &ScalarValue,
) -> Option<String> {
    let partitioning = partitioning?;
    if !partitioning.field.as_deref()?.eq_ignore_ascii_case(cursor) {
        return None;
    }
    let (from, to) = (civil_time(from)?, civil_time(to)?);
    let (start, next, id) = match partitioning.r#type.as_str() {
        "HOUR" => {
            let start = from.date().and_hms_opt(from.hour(), 0, 0)?;
            (start, start + chrono::Duration::hours(1), "%Y%m%d%H")
        }
        "DAY" => {
            let start = from.date().and_hms_opt(0, 0, 0)?;
            (start, start + chrono::Duration::days(1), "%Y%m%d")
        }
        "MONTH" => {
            let start = NaiveDate::from_ymd_opt(from.year(), from.month(), 1)?.and_hms_opt(0, 0, 0)?;
            let next = start
                .date()
                .checked_add_months(chrono::Months::new(1))?
                .and_hms_opt(0, 0, 0)?;
            (start, next, "%Y%m")
        }
        "YEAR" => {
            let start = NaiveDate::from_ymd_opt(from.year(), 1, 1)?.and_hms_opt(0, 0, 0)?;
            let next = NaiveDate::from_ymd_opt(from.year() + 1, 1, 1)?.and_hms_opt(0, 0, 0)?;
            (start, next, "%Y")
        }
        _ => return None,
    };
    (start == from && next == to).then(|| from.format(id).to_string())
}

/// A `DATE`, `DATETIME` or `TIMESTAMP` bound as the time BigQuery
/// partitions by (a `TIMESTAMP` in UTC).
fn civil_time(value: &ScalarValue) -> Option<NaiveDateTime> {
    use ScalarValue as S;
    let micros = match value {
        S::Date32(Some(days)) => i64::from(*days).checked_mul(86_400_000_000)?,
        S::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000)?,
        S::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000)?,
        S::TimestampMicrosecond(Some(v), _) => *v,
        S::TimestampNanosecond(Some(v), _) => v.div_euclid(1_000),
        _ => return None,
    };
    Some(chrono::DateTime::from_timestamp_micros(micros)?.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(kind: &str, field: &str) -> TimePartitioning {
        TimePartitioning {
            field: Some(field.into()),
            ..TimePartitioning::new(kind.into())
        }
    }

    fn ts(text: &str) -> ScalarValue {
        let time = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
        ScalarValue::TimestampMicrosecond(Some(time.and_utc().timestamp_micros()), Some("UTC".into()))
    }

    #[test]
    fn one_whole_partition_is_named_by_its_decorator() {
        let day = by("DAY", "updated_at");
        let whole = |from, to| whole_partition(Some(&day), "updated_at", &ts(from), &ts(to));
        assert_eq!(
            whole("2024-03-01 00:00", "2024-03-02 00:00").as_deref(),
            Some("20240301")
        );
        assert_eq!(whole("2024-03-01 00:00", "2024-03-03 00:00"), None, "two partitions");
        assert_eq!(whole("2024-03-01 02:00", "2024-03-02 00:00"), None, "part of one");
        let hour = by("HOUR", "updated_at");
        assert_eq!(
            whole_partition(
                Some(&hour),
                "UPDATED_AT",
                &ts("2024-03-01 02:00"),
                &ts("2024-03-01 03:00")
            )
            .as_deref(),
            Some("2024030102")
        );
        let month = by("MONTH", "d");
        let days = |a, b| (ScalarValue::Date32(Some(a)), ScalarValue::Date32(Some(b)));
        let (from, to) = days(19_783, 19_814); // 2024-03-01, 2024-04-01
        assert_eq!(
            whole_partition(Some(&month), "d", &from, &to).as_deref(),
            Some("202403")
        );
        assert_eq!(
            whole_partition(Some(&by("DAY", "other")), "d", &from, &to),
            None,
            "another column"
        );
        assert_eq!(whole_partition(None, "d", &from, &to), None, "not partitioned");
        let (from, to) = days(19_783, 19_784);
        assert_eq!(
            whole_partition(Some(&by("DAY", "d")), "d", &from, &to).as_deref(),
            Some("20240301")
        );
    }
}
