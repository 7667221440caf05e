//! Interval values as text: BigQuery's canonical `Y-M D H:M:S.F` (how an
//! `INTERVAL` column is loaded) and PostgreSQL's own output (how a `STRING`
//! override of an interval is loaded).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, IntervalMonthDayNanoArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit};
use datafusion::arrow::error::ArrowError;

/// BigQuery INTERVAL limits: 10000 years, 3660000 days, 87840000 hours.
const MAX_MONTHS: i64 = 10_000 * 12;
const MAX_DAYS: i64 = 3_660_000;
const MAX_NANOS: i128 = 87_840_000 * 3_600 * 1_000_000_000;
const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Which text form [`to_text`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalText {
    /// BigQuery's canonical `Y-M D H:M:S.F`, e.g. `1-2 3 4:5:6.789`; values
    /// beyond BigQuery's range or with sub-microsecond digits are refused.
    BigQuery,
    /// PostgreSQL's output (IntervalStyle `postgres`), e.g.
    /// `1 year 2 mons 3 days 04:05:06.789`.
    Postgres,
}

/// `array` (of `Interval(MonthDayNano)`) as text in `style`; an error
/// names `column` and the value.
pub fn to_text(array: &dyn Array, style: IntervalText, column: &str) -> Result<ArrayRef, ArrowError> {
    let intervals = array
        .as_any()
        .downcast_ref::<IntervalMonthDayNanoArray>()
        .ok_or_else(|| ArrowError::CastError(format!("column \"{column}\" is not Interval(MonthDayNano)")))?;
    let texts = intervals
        .iter()
        .map(|value| {
            value
                .map(|v| match style {
                    IntervalText::BigQuery => bigquery(v).map_err(|reason| {
                        ArrowError::InvalidArgumentError(format!(
                            "column \"{column}\": interval '{}' {reason}",
                            postgres(v)
                        ))
                    }),
                    IntervalText::Postgres => Ok(postgres(v)),
                })
                .transpose()
        })
        .collect::<Result<StringArray, _>>()?;
    Ok(Arc::new(texts))
}

/// `array` cast to `to`, with an interval cast to text written in
/// PostgreSQL's form (Arrow's own cast writes `14 mons 3 days 4 hours ...`).
pub fn cast_value(array: &ArrayRef, to: &DataType, column: &str) -> Result<ArrayRef, ArrowError> {
    match (array.data_type(), to) {
        (DataType::Interval(IntervalUnit::MonthDayNano), DataType::Utf8) => {
            to_text(array.as_ref(), IntervalText::Postgres, column)
        }
        _ => cast(array, to),
    }
}

/// Seconds with a fraction of up to nine digits, trailing zeros dropped.
fn seconds(nanos: i128, pad: bool) -> String {
    let whole = nanos / NANOS_PER_SECOND;
    let fraction = nanos % NANOS_PER_SECOND;
    let mut text = if pad { format!("{whole:02}") } else { whole.to_string() };
    if fraction != 0 {
        let digits = format!("{fraction:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text
}

fn bigquery(v: IntervalMonthDayNano) -> Result<String, &'static str> {
    let (months, days, nanos) = (i64::from(v.months), i64::from(v.days), i128::from(v.nanoseconds));
    if months.abs() > MAX_MONTHS || days.abs() > MAX_DAYS || nanos.abs() > MAX_NANOS {
        return Err("is beyond BigQuery's INTERVAL range (10000 years, 3660000 days or 87840000 hours)");
    }
    if nanos % 1_000 != 0 {
        return Err("has sub-microsecond digits, which BigQuery INTERVAL cannot hold");
    }
    let sign = |negative: bool| if negative { "-" } else { "" };
    let abs = nanos.abs();
    Ok(format!(
        "{}{}-{} {days} {}{}:{}:{}",
        sign(months < 0),
        months.abs() / 12,
        months.abs() % 12,
        sign(nanos < 0),
        abs / (3_600 * NANOS_PER_SECOND),
        abs / (60 * NANOS_PER_SECOND) % 60,
        seconds(abs % (60 * NANOS_PER_SECOND), false),
    ))
}

/// PostgreSQL's `EncodeInterval` in IntervalStyle `postgres`: nonzero
/// parts, a `+` before a positive part that follows a negative one.
fn postgres(v: IntervalMonthDayNano) -> String {
    let mut out = String::new();
    let mut negative_before = false;
    let parts = [
        (i64::from(v.months / 12), "year"),
        (i64::from(v.months % 12), "mon"),
        (i64::from(v.days), "day"),
    ];
    for (value, unit) in parts.into_iter().filter(|(value, _)| *value != 0) {
        let plus = if negative_before && value > 0 { "+" } else { "" };
        let plural = if value == 1 { "" } else { "s" };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("{plus}{value} {unit}{plural}"));
        negative_before = value < 0;
    }
    let nanos = i128::from(v.nanoseconds);
    if nanos != 0 || out.is_empty() {
        let sign = if nanos < 0 {
            "-"
        } else if negative_before {
            "+"
        } else {
            ""
        };
        let abs = nanos.abs();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!(
            "{sign}{:02}:{:02}:{}",
            abs / (3_600 * NANOS_PER_SECOND),
            abs / (60 * NANOS_PER_SECOND) % 60,
            seconds(abs % (60 * NANOS_PER_SECOND), true),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(months: i32, days: i32, micros: i64) -> IntervalMonthDayNano {
        IntervalMonthDayNano::new(months, days, micros * 1_000)
    }

    const HMS: i64 = ((4 * 60 + 5) * 60 + 6) * 1_000_000 + 789_000;

    #[test]
    fn postgres_text_matches_postgres_output() {
        // Expected values are psql's output of the same intervals.
        assert_eq!(postgres(iv(14, 3, HMS)), "1 year 2 mons 3 days 04:05:06.789");
        assert_eq!(postgres(iv(0, 0, 0)), "00:00:00");
        assert_eq!(postgres(iv(1, 1, 0)), "1 mon 1 day");
        assert_eq!(postgres(iv(-12, 0, 0)), "-1 years");
        assert_eq!(postgres(iv(0, -1, 3_600_000_000)), "-1 days +01:00:00");
        assert_eq!(postgres(iv(0, 1, -3_600_000_000)), "1 day -01:00:00");
        assert_eq!(postgres(iv(0, 0, 100 * 3_600_000_000)), "100:00:00");
    }

    #[test]
    fn bigquery_text_is_canonical() {
        assert_eq!(bigquery(iv(14, 3, HMS)).unwrap(), "1-2 3 4:5:6.789");
        assert_eq!(bigquery(iv(0, 0, 0)).unwrap(), "0-0 0 0:0:0");
        assert_eq!(bigquery(iv(-14, -3, -HMS)).unwrap(), "-1-2 -3 -4:5:6.789");
        assert!(bigquery(iv(10_001 * 12, 0, 0)).unwrap_err().contains("range"));
        assert!(
            bigquery(IntervalMonthDayNano::new(0, 0, 1))
                .unwrap_err()
                .contains("sub-microsecond")
        );
    }

    #[test]
    fn to_text_names_the_column_of_a_refused_value() {
        let array = IntervalMonthDayNanoArray::from(vec![Some(iv(0, 3_660_001, 0)), None]);
        let err = to_text(&array, IntervalText::BigQuery, "iv").unwrap_err().to_string();
        assert!(err.contains("column \"iv\"") && err.contains("3660001 days"), "{err}");
        let ok: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(vec![Some(iv(14, 3, HMS)), None]));
        let text = cast_value(&ok, &DataType::Utf8, "iv").unwrap();
        let text = text.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(text.value(0), "1 year 2 mons 3 days 04:05:06.789");
        assert!(text.is_null(1));
    }
}
