//! DataFusion's own SQL, for the private sessions that read files (the file
//! source) and the warehouse (VERIFY): the session is set up here so that
//! the literals mean what they say.

use chrono::{DateTime, Datelike, NaiveDateTime};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;

use super::decimal_text::decimal_text;
use crate::contract::{Dialect, SqlFamily, integer_literal, quote_with};

/// DataFusion SQL, in a [`session`].
pub(crate) struct DataFusionDialect;

/// A session to read files in: one partition, so that rows keep their
/// file order, and UTC as the zone of `TIMESTAMP WITH TIME ZONE` literals.
pub(crate) fn session(batch_rows: Option<usize>) -> SessionContext {
    SessionContext::new_with_config(session_config(batch_rows))
}

/// The configuration of a [`session`].
pub(crate) fn session_config(batch_rows: Option<usize>) -> SessionConfig {
    let mut config = SessionConfig::new().with_target_partitions(1);
    if let Some(rows) = batch_rows {
        config = config.with_batch_size(rows.max(1));
    }
    config.options_mut().execution.time_zone = Some("+00:00".to_owned());
    config
}

impl Dialect for DataFusionDialect {
    fn family(&self) -> SqlFamily {
        SqlFamily::DataFusion
    }

    fn quote_ident(&self, ident: &str) -> String {
        quote_with(ident, '"')
    }

    fn literal(&self, value: &ScalarValue) -> Option<String> {
        use ScalarValue as S;
        match value {
            S::Int8(_) | S::Int16(_) | S::Int32(_) | S::Int64(_) | S::UInt8(_) | S::UInt16(_) | S::UInt32(_) => {
                integer_literal(value)
            }
            S::UInt64(Some(v)) => i64::try_from(*v).ok().map(|v| v.to_string()),
            S::Float32(Some(v)) => float(f64::from(*v)),
            S::Float64(Some(v)) => float(*v),
            S::Boolean(Some(v)) => Some(if *v { "TRUE" } else { "FALSE" }.to_owned()),
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => string(s),
            S::Date32(Some(days)) => {
                let date = DateTime::from_timestamp(i64::from(*days) * 86_400, 0)?.date_naive();
                in_range(date.year()).then(|| format!("DATE '{}'", date.format("%Y-%m-%d")))
            }
            S::TimestampSecond(Some(v), tz) => timestamp(v.checked_mul(1_000_000)?, tz.is_some()),
            S::TimestampMillisecond(Some(v), tz) => timestamp(v.checked_mul(1_000)?, tz.is_some()),
            S::TimestampMicrosecond(Some(v), tz) => timestamp(*v, tz.is_some()),
            S::TimestampNanosecond(Some(v), tz) => (v % 1_000 == 0).then(|| timestamp(v / 1_000, tz.is_some()))?,
            S::Decimal128(Some(v), precision, scale) => decimal(&v.to_string(), *precision, *scale),
            S::Decimal256(Some(v), precision, scale) => decimal(&v.to_string(), *precision, *scale),
            _ => None,
        }
    }
}

/// A Float64 literal: the shortest digits that read back exactly.
fn float(v: f64) -> Option<String> {
    v.is_finite().then(|| format!("{v:e}"))
}

/// A standard SQL string: quotes doubled, backslashes literal.
fn string(s: &str) -> Option<String> {
    (!s.contains('\0')).then(|| format!("'{}'", s.replace('\'', "''")))
}

/// The years written as four digits.
fn in_range(year: i32) -> bool {
    (0..=9999).contains(&year)
}

/// A microsecond timestamp literal, from microseconds since the epoch: the
/// UTC instant for a zoned timestamp, else the wall time.
fn timestamp(micros: i64, zoned: bool) -> Option<String> {
    let t: NaiveDateTime = DateTime::from_timestamp_micros(micros)?.naive_utc();
    if !in_range(t.year()) {
        return None;
    }
    let text = t.format("%Y-%m-%dT%H:%M:%S%.6f");
    Some(if zoned {
        format!("CAST('{text}Z' AS TIMESTAMP(6) WITH TIME ZONE)")
    } else {
        format!("CAST('{text}' AS TIMESTAMP(6))")
    })
}

/// An exact decimal literal of the value's own precision and scale, from
/// the unscaled integer's text.
fn decimal(unscaled: &str, precision: u8, scale: i8) -> Option<String> {
    if scale < 0 || scale.unsigned_abs() > precision {
        return None;
    }
    let scale = usize::from(scale.unsigned_abs());
    let text = decimal_text(unscaled, scale);
    Some(format!("CAST('{text}' AS DECIMAL({precision}, {scale}))"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::i256;

    use super::*;

    fn literal(value: ScalarValue) -> Option<String> {
        DataFusionDialect.literal(&value)
    }

    #[test]
    fn identifiers_double_quotes() {
        assert_eq!(DataFusionDialect.quote_ident("select"), "\"select\"");
        assert_eq!(DataFusionDialect.quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(DataFusionDialect.quote_ident("Straße 😀"), "\"Straße 😀\"");
    }

    #[test]
    fn literals_are_exact_or_absent() {
        assert_eq!(literal(ScalarValue::Int64(Some(-5))), Some("-5".into()));
        assert_eq!(literal(ScalarValue::UInt64(Some(u64::MAX))), None);
        assert_eq!(literal(ScalarValue::Float64(Some(0.1))), Some("1e-1".into()));
        assert_eq!(literal(ScalarValue::Float64(Some(f64::NAN))), None);
        assert_eq!(
            literal(ScalarValue::Utf8(Some(r"it's \n".into()))),
            Some(r"'it''s \n'".into())
        );
        assert_eq!(literal(ScalarValue::Utf8(Some("a\0b".into()))), None);
        assert_eq!(literal(ScalarValue::Int32(None)), None);
        assert_eq!(literal(ScalarValue::Date32(Some(-800_000))), None);
        assert_eq!(
            literal(ScalarValue::TimestampNanosecond(Some(1_704_067_200_000_000_001), None)),
            None
        );
        assert_eq!(literal(ScalarValue::Decimal128(Some(1), 5, -2)), None);
    }

    /// Every literal reads back, in the session, as the value it was made from.
    #[tokio::test]
    async fn literals_read_back_as_their_values() {
        let utc: Option<Arc<str>> = Some("+00:00".into());
        let cases = [
            ScalarValue::Int8(Some(-128)),
            ScalarValue::Int64(Some(i64::MIN + 1)),
            ScalarValue::UInt32(Some(u32::MAX)),
            ScalarValue::Float64(Some(-1.5e300)),
            ScalarValue::Boolean(Some(false)),
            ScalarValue::Utf8(Some("it's a \\ \"test\" 😀".into())),
            ScalarValue::Date32(Some(19_723)),
            ScalarValue::TimestampMicrosecond(Some(1_704_067_200_000_001), None),
            ScalarValue::TimestampMicrosecond(Some(-1), utc.clone()),
            ScalarValue::TimestampSecond(Some(253_402_300_799), utc.clone()),
            ScalarValue::Decimal128(Some(-12_345), 12, 2),
            ScalarValue::Decimal128(Some(5), 12, 3),
            ScalarValue::Decimal256(Some(i256::from_string(&"9".repeat(60)).unwrap()), 60, 20),
        ];
        let ctx = session(None);
        for value in cases {
            let sql = format!("SELECT {}", literal(value.clone()).unwrap());
            let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
            let back = ScalarValue::try_from_array(batches[0].column(0), 0).unwrap();
            assert_eq!(back.cast_to(&value.data_type()).unwrap(), value, "{sql}");
        }
    }
}
