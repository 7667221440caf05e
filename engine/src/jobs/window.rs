//! The incremental window `(low, high]` of a run and the cursor values
//! that bound it.
//!
//! `low` is the committed watermark, or on the first run the job's start
//! (now minus the backfill, a given value, or nothing for ALL). `high` is the
//! largest cursor value among the rows the run read: the read is one query,
//! so `high` comes from the same snapshot as the data.

use chrono::{DateTime, Duration, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::max;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use datafusion::scalar::ScalarValue;
use sluice_catalog::{IncrementalStart, LookbackWindow};

use crate::error::EngineError;

/// The exclusive lower bound of a job's first run, in the cursor's type.
pub(super) fn first_low(
    start: &IncrementalStart,
    cursor: &DataType,
    now: DateTime<Utc>,
) -> Result<Option<ScalarValue>, EngineError> {
    match start {
        IncrementalStart::All => Ok(None),
        IncrementalStart::Since(text) => parse(text, cursor).map(Some),
        IncrementalStart::BackfillDays(days) => {
            let from = Duration::try_days(i64::from(*days))
                .and_then(|back| now.checked_sub_signed(back))
                .ok_or_else(|| EngineError::DatetimeOverflow {
                    message: format!(
                        "BACKFILL {days} DAYS reaches before the earliest date; use a shorter backfill or ALL"
                    ),
                })?;
            Ok(Some(match cursor {
                DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                    ScalarValue::TimestampMicrosecond(Some(from.timestamp_micros()), tz.clone())
                }
                DataType::Date32 => {
                    let days = (from.date_naive() - chrono::NaiveDate::default()).num_days();
                    ScalarValue::Date32(Some(days as i32))
                }
                other => {
                    return Err(EngineError::InvalidJob {
                        message: format!("BACKFILL n DAYS needs a timestamp or date cursor, not {other}"),
                    });
                }
            }))
        }
    }
}

/// Checks that a lookback window fits the cursor: a duration for timestamps,
/// whole days for dates, a number of values for integers.
pub(super) fn check_lookback(window: &LookbackWindow, cursor: &str, cursor_type: &DataType) -> Result<(), EngineError> {
    let fits = match (window, cursor_type) {
        (LookbackWindow::Seconds(_), DataType::Timestamp(..)) => true,
        (LookbackWindow::Seconds(seconds), DataType::Date32) => seconds % SECONDS_PER_DAY == 0,
        (LookbackWindow::Values(_), DataType::Int16 | DataType::Int32 | DataType::Int64) => true,
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        let hint = match cursor_type {
            DataType::Date32 => "a whole number of DAYS",
            DataType::Timestamp(..) => "a duration such as LOOKBACK 2 HOURS",
            _ => "a number of cursor values without a unit, such as LOOKBACK 1000",
        };
        Err(EngineError::InvalidJob {
            message: format!("the lookback window of cursor \"{cursor}\" ({cursor_type}) must be {hint}"),
        })
    }
}

/// `low` moved back by the lookback window: where a lookback run starts
/// reading. Saturates at the type's smallest value.
pub(super) fn minus(low: &ScalarValue, window: &LookbackWindow) -> Result<ScalarValue, EngineError> {
    use ScalarValue as S;
    let moved = match (low, *window) {
        (S::TimestampMicrosecond(Some(v), tz), LookbackWindow::Seconds(seconds)) => S::TimestampMicrosecond(
            Some(v.saturating_sub(i64::try_from(seconds).unwrap_or(i64::MAX).saturating_mul(1_000_000))),
            tz.clone(),
        ),
        (S::Date32(Some(d)), LookbackWindow::Seconds(seconds)) => {
            let days = i32::try_from(seconds.div_ceil(SECONDS_PER_DAY)).unwrap_or(i32::MAX);
            S::Date32(Some(d.saturating_sub(days)))
        }
        (S::Int16(Some(v)), LookbackWindow::Values(n)) => {
            S::Int16(Some(v.saturating_sub(i16::try_from(n).unwrap_or(i16::MAX))))
        }
        (S::Int32(Some(v)), LookbackWindow::Values(n)) => {
            S::Int32(Some(v.saturating_sub(i32::try_from(n).unwrap_or(i32::MAX))))
        }
        (S::Int64(Some(v)), LookbackWindow::Values(n)) => {
            S::Int64(Some(v.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX))))
        }
        (other, window) => {
            return Err(EngineError::InvalidJob {
                message: format!("a lookback of {window:?} does not apply to the cursor value {other}"),
            });
        }
    };
    Ok(moved)
}

const SECONDS_PER_DAY: u64 = 86_400;

/// Reads a stored watermark (or a SINCE value) in the cursor's type; the
/// files a file job's watermark names are not part of the value.
pub(super) fn parse(text: &str, cursor: &DataType) -> Result<ScalarValue, EngineError> {
    let text = super::file_mark::cursor_text(text);
    ScalarValue::try_from_string(text.to_owned(), cursor)
        .ok()
        .filter(|v| !v.is_null())
        .ok_or_else(|| EngineError::InvalidJob {
            message: format!("'{text}' is not a valid {cursor} cursor value"),
        })
}

/// The text a watermark is stored as; [`parse`] reads it back exactly.
pub(super) fn text(value: &ScalarValue) -> String {
    match value.cast_to(&DataType::Utf8) {
        Ok(ScalarValue::Utf8(Some(text))) => text,
        _ => value.to_string(),
    }
}

/// The largest non-null value of a cursor column.
pub(super) fn column_max(array: &ArrayRef) -> Option<ScalarValue> {
    if array.null_count() == array.len() {
        return None;
    }
    Some(match array.data_type() {
        DataType::Int16 => ScalarValue::Int16(max(array.as_primitive::<Int16Type>())),
        DataType::Int32 => ScalarValue::Int32(max(array.as_primitive::<Int32Type>())),
        DataType::Int64 => ScalarValue::Int64(max(array.as_primitive::<Int64Type>())),
        DataType::Date32 => ScalarValue::Date32(max(array.as_primitive::<Date32Type>())),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            ScalarValue::TimestampMicrosecond(max(array.as_primitive::<TimestampMicrosecondType>()), tz.clone())
        }
        _ => return None,
    })
}

/// The larger of two optional cursor values.
pub(super) fn greater(a: Option<ScalarValue>, b: Option<ScalarValue>) -> Option<ScalarValue> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b > a { b } else { a }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn watermarks_round_trip_through_text() {
        let tz = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let value = ScalarValue::TimestampMicrosecond(Some(1_704_067_200_000_001), Some("UTC".into()));
        assert_eq!(parse(&text(&value), &tz).unwrap(), value);
        let naive = DataType::Timestamp(TimeUnit::Microsecond, None);
        let value = ScalarValue::TimestampMicrosecond(Some(-1), None);
        assert_eq!(parse(&text(&value), &naive).unwrap(), value);
        assert_eq!(
            parse(&text(&ScalarValue::Int64(Some(42))), &DataType::Int64).unwrap(),
            ScalarValue::Int64(Some(42))
        );
        assert_eq!(
            parse("2024-03-01", &DataType::Date32).unwrap(),
            ScalarValue::Date32(Some(19783))
        );
        assert!(parse("yesterday", &DataType::Date32).is_err());
    }

    #[test]
    fn a_backfill_beyond_the_range_of_dates_is_an_error_not_a_panic() {
        let start = IncrementalStart::BackfillDays(u32::MAX);
        let cursor = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert!(matches!(
            first_low(&start, &cursor, Utc::now()),
            Err(EngineError::DatetimeOverflow { .. })
        ));
    }

    #[test]
    fn first_low_follows_the_start_rule() {
        let now = DateTime::parse_from_rfc3339("2024-04-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let tz = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let low = first_low(&IncrementalStart::BackfillDays(10), &tz, now)
            .unwrap()
            .unwrap();
        assert_eq!(text(&low), "2024-03-31T12:00:00Z");
        assert_eq!(first_low(&IncrementalStart::All, &tz, now).unwrap(), None);
        let date = first_low(&IncrementalStart::BackfillDays(9), &DataType::Date32, now)
            .unwrap()
            .unwrap();
        assert_eq!(text(&date), "2024-04-01");
        assert!(first_low(&IncrementalStart::BackfillDays(1), &DataType::Int64, now).is_err());
    }

    #[test]
    fn lookback_moves_the_low_bound_back_in_the_cursor_type() {
        let tz = Some("UTC".into());
        let low = ScalarValue::TimestampMicrosecond(Some(10_000_000_000), tz.clone());
        assert_eq!(
            minus(&low, &LookbackWindow::Seconds(3600)).unwrap(),
            ScalarValue::TimestampMicrosecond(Some(10_000_000_000 - 3_600_000_000), tz)
        );
        assert_eq!(
            minus(&ScalarValue::Date32(Some(100)), &LookbackWindow::Seconds(2 * 86_400)).unwrap(),
            ScalarValue::Date32(Some(98))
        );
        assert_eq!(
            minus(&ScalarValue::Int32(Some(i32::MIN + 1)), &LookbackWindow::Values(5)).unwrap(),
            ScalarValue::Int32(Some(i32::MIN))
        );
        assert_eq!(
            minus(&ScalarValue::Int64(Some(50)), &LookbackWindow::Values(20)).unwrap(),
            ScalarValue::Int64(Some(30))
        );
        assert!(minus(&ScalarValue::Int64(Some(50)), &LookbackWindow::Seconds(20)).is_err());
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert!(check_lookback(&LookbackWindow::Seconds(60), "c", &ts).is_ok());
        assert!(check_lookback(&LookbackWindow::Values(60), "c", &ts).is_err());
        assert!(check_lookback(&LookbackWindow::Seconds(3600), "c", &DataType::Date32).is_err());
        assert!(check_lookback(&LookbackWindow::Seconds(86_400), "c", &DataType::Date32).is_ok());
        assert!(check_lookback(&LookbackWindow::Values(1), "c", &DataType::Int64).is_ok());
    }

    #[test]
    fn column_max_ignores_nulls() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(3), None, Some(9), Some(1)]));
        assert_eq!(column_max(&a), Some(ScalarValue::Int64(Some(9))));
        let empty: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![None::<i64>]));
        assert_eq!(column_max(&empty), None);
        assert_eq!(
            greater(Some(ScalarValue::Int64(Some(2))), Some(ScalarValue::Int64(Some(5)))),
            Some(ScalarValue::Int64(Some(5)))
        );
    }
}
