//! Type suggestions for text columns, from sampled values.
//!
//! A text column whose values all look like integers, booleans, dates,
//! date-times or decimals may deserve a better BigQuery type. This only
//! suggests one: the mapping never changes without the user.

use chrono::{Datelike, NaiveDate, NaiveTime};

use super::{BigQueryType, Confidence};

/// A BigQuery type suggested for a text column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub bigquery: BigQueryType,
    /// Always [`Confidence::Medium`]: samples say nothing about other rows.
    pub confidence: Confidence,
    /// Why, e.g. "all 20 non-null samples are integers".
    pub reason: String,
}

/// Fewer non-null samples than this give no suggestion.
const MIN_SAMPLES: usize = 3;

/// Suggests a BigQuery type for a text column from sampled values (`None` =
/// SQL NULL), or `None` when there are fewer than 3 non-null samples or they
/// do not all share one of these shapes, tried in order:
///
/// 1. integers in INT64 range, written canonically (no sign `+`, no leading
///    zeros: `007` is a code, not a number) -> `INT64`;
/// 2. `true`/`false`/`t`/`f`/`yes`/`no`/`1`/`0`, any case -> `BOOL`
///    (only `0` and `1` is caught by rule 1);
/// 3. `YYYY-MM-DD` dates -> `DATE`;
/// 4. `YYYY-MM-DD HH:MM:SS[.ffffff]` (or `T` between) -> `DATETIME`; the same
///    with an offset (`Z`, `+HH`, `+HH:MM`), RFC 3339 included, ->
///    `TIMESTAMP` (a mix of both gives no suggestion);
/// 5. decimal numbers (`-12.50`) -> `NUMERIC(38, 9)` when they have at most
///    29 integer digits and 9 decimal places, else `BIGNUMERIC(76, 38)`
///    when they fit it.
///
/// Values are never trimmed: a surrounding space or an empty string stops
/// every suggestion.
pub fn suggest_from_samples(values: &[Option<&str>]) -> Option<Suggestion> {
    let values: Vec<&str> = values.iter().flatten().copied().collect();
    let count = values.len();
    if count < MIN_SAMPLES {
        return None;
    }
    let suggest = |bigquery, what: &str| {
        Some(Suggestion {
            bigquery,
            confidence: Confidence::Medium,
            reason: format!("all {count} non-null samples are {what}"),
        })
    };
    if values.iter().all(|v| is_integer(v)) {
        return suggest(BigQueryType::Int64, "integers");
    }
    if values.iter().all(|v| is_boolean(v)) {
        return suggest(BigQueryType::Bool, "booleans (true/false, t/f, yes/no, 1/0)");
    }
    if values.iter().all(|v| is_date(v)) {
        return suggest(BigQueryType::Date, "dates (YYYY-MM-DD)");
    }
    if let Some(offsets) = values
        .iter()
        .map(|v| datetime_has_offset(v))
        .collect::<Option<Vec<bool>>>()
    {
        return if offsets.iter().all(|&offset| offset) {
            suggest(BigQueryType::Timestamp, "timestamps with a UTC offset")
        } else if offsets.iter().all(|&offset| !offset) {
            suggest(BigQueryType::Datetime, "date-times without a time zone")
        } else {
            None
        };
    }
    let (mut integer_digits, mut scale) = (0, 0);
    for value in &values {
        let (i, s) = decimal_digits(value)?;
        integer_digits = integer_digits.max(i);
        scale = scale.max(s);
    }
    let bigquery = if integer_digits <= 29 && scale <= 9 {
        BigQueryType::Numeric {
            precision: 38,
            scale: 9,
        }
    } else if integer_digits <= 38 && scale <= 38 {
        BigQueryType::BigNumeric {
            precision: 76,
            scale: 38,
        }
    } else {
        return None;
    };
    suggest(
        bigquery,
        &format!("decimal numbers with at most {integer_digits} integer digits and {scale} decimal places"),
    )
}

fn is_integer(value: &str) -> bool {
    value.parse::<i64>().is_ok_and(|n| n.to_string() == value)
}

fn is_boolean(value: &str) -> bool {
    ["true", "false", "t", "f", "yes", "no", "1", "0"]
        .iter()
        .any(|b| value.eq_ignore_ascii_case(b))
}

/// A `YYYY-MM-DD` date within BigQuery's DATE range (from 0001-01-01).
fn is_date(value: &str) -> bool {
    value.len() == 10
        && NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .is_ok_and(|date| date.year() >= 1 && date.format("%Y-%m-%d").to_string() == value)
}

/// `Some(has offset)` for a date-time, `None` for anything else.
fn datetime_has_offset(value: &str) -> Option<bool> {
    let (date, rest) = (value.get(..10)?, value.get(10..)?);
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (time, mut rest) = (rest.get(..8)?, rest.get(8..)?);
    if !is_date(date) || !is_time(time) {
        return None;
    }
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=6).contains(&digits) {
            return None;
        }
        rest = &fraction[digits..];
    }
    match rest {
        "" => Some(false),
        "Z" | "z" => Some(true),
        offset => is_offset(offset).then_some(true),
    }
}

/// `HH:MM:SS`, up to 23:59:59.
fn is_time(value: &str) -> bool {
    let shape = value.len() == 8 && value.as_bytes()[2] == b':' && value.as_bytes()[5] == b':';
    shape && NaiveTime::parse_from_str(value, "%H:%M:%S").is_ok_and(|t| t.format("%H:%M:%S").to_string() == value)
}

/// `+HH`, `-HH` or `+HH:MM`, at most 14 hours.
fn is_offset(value: &str) -> bool {
    let Some(offset) = value.strip_prefix(['+', '-']) else {
        return false;
    };
    let (hours, minutes) = offset.split_once(':').unwrap_or((offset, "00"));
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    two_digits(hours)
        && two_digits(minutes)
        && hours.parse::<u32>().is_ok_and(|h| h <= 14)
        && minutes.parse::<u32>().is_ok_and(|m| m < 60)
}

/// `(integer digits, decimal places)` of `-?digits[.digits]`, without
/// leading zeros (`0.5` has no integer digits).
fn decimal_digits(value: &str) -> Option<(usize, usize)> {
    let unsigned = value.strip_prefix('-').unwrap_or(value);
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(integer) || (unsigned.contains('.') && !digits(fraction)) {
        return None;
    }
    match integer {
        "0" => Some((0, fraction.len())),
        _ if integer.starts_with('0') => None,
        _ => Some((integer.len(), fraction.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suggest(values: &[&str]) -> Option<(BigQueryType, String)> {
        let values: Vec<Option<&str>> = values.iter().map(|v| Some(*v)).collect();
        suggest_from_samples(&values).map(|s| {
            assert_eq!(s.confidence, Confidence::Medium);
            (s.bigquery, s.reason)
        })
    }

    fn suggested_type(values: &[&str]) -> Option<BigQueryType> {
        suggest(values).map(|(bigquery, _)| bigquery)
    }

    #[test]
    fn integers() {
        assert_eq!(
            suggest(&["1", "-20", "9223372036854775807"]),
            Some((BigQueryType::Int64, "all 3 non-null samples are integers".to_owned()))
        );
        // Only 0 and 1: integers, not booleans.
        assert_eq!(suggested_type(&["0", "1", "1", "0"]), Some(BigQueryType::Int64));
        // Leading zeros are codes; a + sign would not round-trip either.
        assert_eq!(suggested_type(&["007", "12", "13"]), None);
        assert_eq!(suggested_type(&["+7", "12", "13"]), None);
        // Beyond INT64: a decimal suggestion.
        assert_eq!(
            suggest(&["1", "2", "9223372036854775808"]),
            Some((
                BigQueryType::Numeric {
                    precision: 38,
                    scale: 9
                },
                "all 3 non-null samples are decimal numbers with at most 19 integer digits and 0 decimal places"
                    .to_owned()
            ))
        );
    }

    #[test]
    fn nulls_are_skipped_and_three_values_are_needed() {
        assert_eq!(
            suggest_from_samples(&[Some("1"), None, Some("2"), None, Some("3")]).map(|s| (s.bigquery, s.reason)),
            Some((BigQueryType::Int64, "all 3 non-null samples are integers".to_owned()))
        );
        assert_eq!(suggest_from_samples(&[Some("1"), None, Some("2"), None]), None);
        assert_eq!(suggest_from_samples(&[]), None);
    }

    #[test]
    fn booleans() {
        assert_eq!(
            suggest(&["true", "False", "TRUE"]),
            Some((
                BigQueryType::Bool,
                "all 3 non-null samples are booleans (true/false, t/f, yes/no, 1/0)".to_owned()
            ))
        );
        assert_eq!(suggested_type(&["t", "f", "1", "0"]), Some(BigQueryType::Bool));
        assert_eq!(suggested_type(&["yes", "no", "Yes"]), Some(BigQueryType::Bool));
        assert_eq!(suggested_type(&["yes", "no", "maybe"]), None);
        assert_eq!(suggested_type(&["true", "false", "2"]), None);
    }

    #[test]
    fn dates() {
        assert_eq!(
            suggest(&["2024-01-05", "1999-12-31", "0001-01-01"]),
            Some((
                BigQueryType::Date,
                "all 3 non-null samples are dates (YYYY-MM-DD)".to_owned()
            ))
        );
        assert_eq!(suggested_type(&["2024-02-30", "2024-01-01", "2024-01-02"]), None);
        assert_eq!(suggested_type(&["2024-1-5", "2024-01-01", "2024-01-02"]), None);
        assert_eq!(suggested_type(&["0000-01-01", "2024-01-01", "2024-01-02"]), None);
        assert_eq!(suggested_type(&["05/01/2024", "2024-01-01", "2024-01-02"]), None);
    }

    #[test]
    fn datetimes_and_timestamps() {
        assert_eq!(
            suggest(&[
                "2024-01-05 10:00:00",
                "2024-01-05T23:59:59.123456",
                "2024-01-05 00:00:00.5"
            ]),
            Some((
                BigQueryType::Datetime,
                "all 3 non-null samples are date-times without a time zone".to_owned()
            ))
        );
        assert_eq!(
            suggest(&[
                "2024-01-05T10:00:00Z",
                "2024-01-05 10:00:00+02",
                "2024-01-05T10:00:00.25-05:30"
            ]),
            Some((
                BigQueryType::Timestamp,
                "all 3 non-null samples are timestamps with a UTC offset".to_owned()
            ))
        );
        // A mix of both, or an invalid part: nothing.
        assert_eq!(
            suggested_type(&["2024-01-05 10:00:00", "2024-01-05 10:00:00Z", "2024-01-05 10:00:00"]),
            None
        );
        assert_eq!(
            suggested_type(&["2024-01-05 24:00:00", "2024-01-05 10:00:00", "2024-01-05 10:00:00"]),
            None
        );
        assert_eq!(
            suggested_type(&["2024-01-05 10:00", "2024-01-05 10:00:00", "2024-01-05 10:00:00"]),
            None
        );
        // Nanoseconds would be truncated.
        assert_eq!(
            suggested_type(&[
                "2024-01-05 10:00:00.1234567",
                "2024-01-05 10:00:00",
                "2024-01-05 10:00:00"
            ]),
            None
        );
        assert_eq!(
            suggested_type(&["2024-01-05 10:00:00.", "2024-01-05 10:00:00", "2024-01-05 10:00:00"]),
            None
        );
        assert_eq!(
            suggested_type(&["2024-01-05 10:00:00+15", "2024-01-05 10:00:00Z", "2024-01-05 10:00:00Z"]),
            None
        );
        assert_eq!(
            suggested_type(&[
                "2024-01-05 10:00:00+0200",
                "2024-01-05 10:00:00Z",
                "2024-01-05 10:00:00Z"
            ]),
            None
        );
        // Dates and date-times mixed: nothing.
        assert_eq!(
            suggested_type(&["2024-01-05", "2024-01-05 10:00:00", "2024-01-05 10:00:00"]),
            None
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(
            suggest(&["12.50", "-0.125", "7"]),
            Some((
                BigQueryType::Numeric {
                    precision: 38,
                    scale: 9
                },
                "all 3 non-null samples are decimal numbers with at most 2 integer digits and 3 decimal places"
                    .to_owned()
            ))
        );
        assert_eq!(
            suggested_type(&["1.0123456789", "2", "3"]),
            Some(BigQueryType::BigNumeric {
                precision: 76,
                scale: 38
            })
        );
        let too_precise = format!("0.{}", "1".repeat(39));
        assert_eq!(suggested_type(&[&too_precise, "2", "3"]), None);
        for bad in [".5", "5.", "1e5", "01.5", "1.2.3", "--1", "NaN"] {
            assert_eq!(suggested_type(&[bad, "1.5", "2.5"]), None, "{bad}");
        }
    }

    #[test]
    fn text_stays_text() {
        assert_eq!(suggested_type(&["apple", "banana", "cherry"]), None);
        assert_eq!(suggested_type(&[" 1", "2", "3"]), None);
        assert_eq!(suggested_type(&["", "2", "3"]), None);
    }
}
