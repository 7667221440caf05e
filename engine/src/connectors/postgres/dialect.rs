//! How PostgreSQL spells identifiers and literals. Literals assume
//! `standard_conforming_strings = on`, which every scan session sets.

use chrono::{DateTime, Datelike, NaiveDate};
use datafusion::scalar::ScalarValue;

use crate::contract::{Dialect, SqlFamily, integer_literal, quote_with};

/// The PostgreSQL dialect.
pub(crate) struct PgDialect;

/// The one instance, for [`Source::dialect`](crate::contract::Source::dialect).
pub(crate) static DIALECT: PgDialect = PgDialect;

impl Dialect for PgDialect {
    fn family(&self) -> SqlFamily {
        SqlFamily::Postgres
    }

    fn quote_ident(&self, ident: &str) -> String {
        quote_with(ident, '"')
    }

    fn literal(&self, value: &ScalarValue) -> Option<String> {
        use ScalarValue as S;
        match value {
            S::Int8(_)
            | S::Int16(_)
            | S::Int32(_)
            | S::Int64(_)
            | S::UInt8(_)
            | S::UInt16(_)
            | S::UInt32(_)
            | S::UInt64(_) => integer_literal(value),
            // `{:?}` is the shortest text that reads back as the same value.
            S::Float32(Some(v)) if v.is_finite() => Some(format!("'{v:?}'::real")),
            S::Float64(Some(v)) if v.is_finite() => Some(format!("'{v:?}'::double precision")),
            S::Boolean(Some(b)) => Some(if *b { "TRUE" } else { "FALSE" }.to_owned()),
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => string(s),
            S::Date32(Some(days)) => date(*days),
            S::TimestampSecond(Some(v), tz) => timestamp(v.checked_mul(1_000_000)?, tz.is_some()),
            S::TimestampMillisecond(Some(v), tz) => timestamp(v.checked_mul(1_000)?, tz.is_some()),
            S::TimestampMicrosecond(Some(v), tz) => timestamp(*v, tz.is_some()),
            S::TimestampNanosecond(Some(v), tz) if v % 1_000 == 0 => timestamp(v / 1_000, tz.is_some()),
            S::Decimal128(Some(v), _, scale) => Some(decimal(&v.to_string(), *scale)),
            S::Decimal256(Some(v), _, scale) => Some(decimal(&v.to_string(), *scale)),
            _ => None,
        }
    }
}

/// A string constant; `None` for text with a NUL character, which
/// PostgreSQL text cannot hold.
fn string(s: &str) -> Option<String> {
    (!s.contains('\0')).then(|| format!("'{}'", s.replace('\'', "''")))
}

/// Days since 1970-01-01 as a date constant, for years 1 to 9999.
fn date(days: i32) -> Option<String> {
    let date = NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)?;
    (1..=9999)
        .contains(&date.year())
        .then(|| format!("'{}'::date", date.format("%Y-%m-%d")))
}

/// Microseconds since 1970-01-01 as a `timestamp` constant, or as a UTC
/// `timestamptz` constant when the value has a time zone; years 1 to 9999.
fn timestamp(micros: i64, with_time_zone: bool) -> Option<String> {
    let time = DateTime::from_timestamp_micros(micros)?.naive_utc();
    if !(1..=9999).contains(&time.year()) {
        return None;
    }
    let text = time.format("%Y-%m-%d %H:%M:%S%.6f");
    Some(if with_time_zone {
        format!("'{text}+00'::timestamptz")
    } else {
        format!("'{text}'::timestamp")
    })
}

/// The exact decimal text of an unscaled integer (as text) at `scale`.
fn decimal(unscaled: &str, scale: i8) -> String {
    let (sign, digits) = match unscaled.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", unscaled),
    };
    let scale = i32::from(scale);
    if scale <= 0 {
        let zeros = if digits == "0" {
            0
        } else {
            scale.unsigned_abs() as usize
        };
        return format!("{sign}{digits}{}", "0".repeat(zeros));
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (integer, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{integer}.{fraction}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::i256;

    use super::*;

    fn lit(value: ScalarValue) -> Option<String> {
        DIALECT.literal(&value)
    }

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(DIALECT.quote_ident("select"), "\"select\"");
        assert_eq!(
            DIALECT.quote_ident("Order \"Items\"; DROP TABLE x;--"),
            "\"Order \"\"Items\"\"; DROP TABLE x;--\""
        );
        assert_eq!(DIALECT.quote_ident("Größe 🚀"), "\"Größe 🚀\"");
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(lit(ScalarValue::Int64(Some(-5))).as_deref(), Some("-5"));
        assert_eq!(lit(ScalarValue::Int8(Some(i8::MIN))).as_deref(), Some("-128"));
        assert_eq!(
            lit(ScalarValue::UInt64(Some(u64::MAX))).as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(
            lit(ScalarValue::Float64(Some(1.1))).as_deref(),
            Some("'1.1'::double precision")
        );
        assert_eq!(
            lit(ScalarValue::Float64(Some(-0.0))).as_deref(),
            Some("'-0.0'::double precision")
        );
        assert_eq!(
            lit(ScalarValue::Float64(Some(1e300))).as_deref(),
            Some("'1e300'::double precision")
        );
        assert_eq!(lit(ScalarValue::Float32(Some(1.1))).as_deref(), Some("'1.1'::real"));
        assert_eq!(lit(ScalarValue::Float64(Some(f64::NAN))), None);
        assert_eq!(lit(ScalarValue::Float64(Some(f64::INFINITY))), None);
        assert_eq!(lit(ScalarValue::Boolean(Some(true))).as_deref(), Some("TRUE"));
        assert_eq!(lit(ScalarValue::Boolean(Some(false))).as_deref(), Some("FALSE"));
        assert_eq!(lit(ScalarValue::Int64(None)), None);
    }

    #[test]
    fn decimals_are_exact() {
        let d = |v: i128, s: i8| lit(ScalarValue::Decimal128(Some(v), 38, s)).unwrap();
        assert_eq!(d(12345, 2), "123.45");
        assert_eq!(d(-5, 2), "-0.05");
        assert_eq!(d(0, 3), "0.000");
        assert_eq!(d(7, 0), "7");
        assert_eq!(d(12, -3), "12000");
        assert_eq!(d(0, -3), "0");
        assert_eq!(
            d(-99_999_999_999_999_999_999_999_999_999_999_999_999, 10),
            "-9999999999999999999999999999.9999999999"
        );
        let big = i256::from_string("-12345678901234567890123456789012345678901234567890").unwrap();
        assert_eq!(
            lit(ScalarValue::Decimal256(Some(big), 76, 20)).as_deref(),
            Some("-123456789012345678901234567890.12345678901234567890")
        );
    }

    #[test]
    fn strings_escape_quotes_and_refuse_nul() {
        assert_eq!(
            lit(ScalarValue::Utf8(Some("it's \\n".into()))).as_deref(),
            Some("'it''s \\n'")
        );
        assert_eq!(lit(ScalarValue::Utf8View(Some("🚀".into()))).as_deref(), Some("'🚀'"));
        assert_eq!(lit(ScalarValue::Utf8(Some("a\0b".into()))), None);
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(lit(ScalarValue::Date32(Some(0))).as_deref(), Some("'1970-01-01'::date"));
        assert_eq!(
            lit(ScalarValue::Date32(Some(-719_162))).as_deref(),
            Some("'0001-01-01'::date")
        );
        assert_eq!(lit(ScalarValue::Date32(Some(-719_163))), None, "year 0 is 1 BC");
        assert_eq!(lit(ScalarValue::Date32(Some(i32::MAX))), None);
        let micros = 1_704_164_645_123_456; // 2024-01-02 03:04:05.123456 UTC
        assert_eq!(
            lit(ScalarValue::TimestampMicrosecond(Some(micros), Some(Arc::from("UTC")))).as_deref(),
            Some("'2024-01-02 03:04:05.123456+00'::timestamptz")
        );
        assert_eq!(
            lit(ScalarValue::TimestampMicrosecond(Some(micros), None)).as_deref(),
            Some("'2024-01-02 03:04:05.123456'::timestamp")
        );
        assert_eq!(
            lit(ScalarValue::TimestampSecond(Some(-1), Some(Arc::from("+02:00")))).as_deref(),
            Some("'1969-12-31 23:59:59.000000+00'::timestamptz")
        );
        assert_eq!(
            lit(ScalarValue::TimestampMillisecond(Some(1), None)).as_deref(),
            Some("'1970-01-01 00:00:00.001000'::timestamp")
        );
        assert_eq!(
            lit(ScalarValue::TimestampNanosecond(Some(micros * 1000), None)).as_deref(),
            Some("'2024-01-02 03:04:05.123456'::timestamp")
        );
        assert_eq!(
            lit(ScalarValue::TimestampNanosecond(Some(1), None)),
            None,
            "PostgreSQL has no nanoseconds"
        );
        assert_eq!(lit(ScalarValue::TimestampSecond(Some(i64::MAX), None)), None);
    }

    #[test]
    fn other_values_stay_in_datafusion() {
        assert_eq!(lit(ScalarValue::Binary(Some(vec![1]))), None);
        assert_eq!(lit(ScalarValue::Null), None);
    }
}
