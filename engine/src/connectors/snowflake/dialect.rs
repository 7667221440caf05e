//! Snowflake's spelling of identifiers and literals. Quoted identifiers
//! are case-sensitive (the catalog spells unquoted names in upper case);
//! string literals read backslash escapes.

use chrono::{DateTime, Datelike};
use datafusion::scalar::ScalarValue;

use crate::contract::{ColumnInfo, Dialect, SqlFamily, integer_literal, quote_with};
use crate::sources::decimal_text::{decimal_text, digit_count};
use crate::type_mapping::BigQueryType;

/// NUMBER holds at most this many digits.
const MAX_DIGITS: usize = 38;

/// The dialect of Snowflake.
pub(super) struct SnowflakeDialect;

impl Dialect for SnowflakeDialect {
    fn family(&self) -> SqlFamily {
        SqlFamily::Snowflake
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
            // The exponent makes it a FLOAT; the shortest round-trip digits
            // make it exact.
            S::Float32(Some(v)) => float(f64::from(*v)),
            S::Float64(Some(v)) => float(*v),
            S::Boolean(Some(v)) => Some(if *v { "TRUE" } else { "FALSE" }.to_owned()),
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => string(s),
            S::Date32(Some(days)) => {
                let date = DateTime::from_timestamp(i64::from(*days) * 86_400, 0)?.date_naive();
                in_range(date.year()).then(|| format!("'{}'::DATE", date.format("%Y-%m-%d")))
            }
            S::TimestampSecond(Some(v), tz) => timestamp(v.checked_mul(1_000_000)?, tz.is_some()),
            S::TimestampMillisecond(Some(v), tz) => timestamp(v.checked_mul(1_000)?, tz.is_some()),
            S::TimestampMicrosecond(Some(v), tz) => timestamp(*v, tz.is_some()),
            S::TimestampNanosecond(Some(v), tz) if v % 1_000 == 0 => timestamp(v / 1_000, tz.is_some()),
            S::Decimal128(Some(v), _, scale) => decimal(&v.to_string(), *scale),
            S::Decimal256(Some(v), _, scale) => decimal(&v.to_string(), *scale),
            _ => None,
        }
    }

    /// Columns read in another form than Snowflake stores them (VARIANT,
    /// OBJECT, ARRAY and VECTOR as JSON text, spatial values as WKB) are
    /// compared in DataFusion: at the source, `= '{"a":1}'` would compare a
    /// VARIANT with a string.
    fn compares_as_arrow(&self, column: &ColumnInfo) -> bool {
        let source = column.source_type.to_ascii_uppercase();
        !matches!(column.mapping.bigquery, BigQueryType::Json | BigQueryType::Geography)
            && !source.starts_with("GEOMETRY")
            && !source.starts_with("VECTOR")
    }
}

fn float(v: f64) -> Option<String> {
    v.is_finite().then(|| format!("{v:e}"))
}

/// A string literal: quotes doubled, backslashes escaped.
fn string(s: &str) -> Option<String> {
    (!s.contains('\0')).then(|| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")))
}

/// The years Snowflake's dates and timestamps read from text.
fn in_range(year: i32) -> bool {
    (1..=9999).contains(&year)
}

/// A timestamp literal from microseconds since 1970: the wall time of a
/// TIMESTAMP_NTZ (timezone-naive in Arrow), or the UTC instant compared
/// with TIMESTAMP_LTZ/TZ columns.
fn timestamp(micros: i64, zoned: bool) -> Option<String> {
    let t = DateTime::from_timestamp_micros(micros)?;
    if !in_range(t.year()) {
        return None;
    }
    Some(if zoned {
        format!("'{}'::TIMESTAMP_TZ", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    } else {
        format!("'{}'::TIMESTAMP_NTZ", t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f"))
    })
}

/// An exact NUMBER literal from an unscaled integer's text.
fn decimal(unscaled: &str, scale: i8) -> Option<String> {
    ((0..=37).contains(&scale) && digit_count(unscaled) <= MAX_DIGITS).then(|| decimal_text(unscaled, scale as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(value: ScalarValue) -> Option<String> {
        SnowflakeDialect.literal(&value)
    }

    #[test]
    fn identifiers_are_double_quoted_and_keep_case() {
        assert_eq!(SnowflakeDialect.quote_ident("Order"), "\"Order\"");
        assert_eq!(SnowflakeDialect.quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn converted_columns_are_compared_in_datafusion() {
        let column = |source_type: &str| {
            let data_type = super::super::types::SnowflakeColumnType {
                data_type: source_type.into(),
                precision: None,
                scale: None,
                length: None,
            };
            ColumnInfo {
                name: "c".into(),
                ordinal: 1,
                source_type: source_type.into(),
                nullable: true,
                default: None,
                primary_key_position: None,
                indexed: false,
                mapping: super::super::types::map(&data_type),
            }
        };
        for converted in ["VARIANT", "OBJECT", "ARRAY", "GEOGRAPHY", "GEOMETRY", "VECTOR"] {
            assert!(!SnowflakeDialect.compares_as_arrow(&column(converted)), "{converted}");
        }
        for plain in ["TEXT", "DATE", "TIMESTAMP_NTZ", "FLOAT"] {
            assert!(SnowflakeDialect.compares_as_arrow(&column(plain)), "{plain}");
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(literal(ScalarValue::Int64(Some(-5))), Some("-5".into()));
        assert_eq!(literal(ScalarValue::Float64(Some(1.5))), Some("1.5e0".into()));
        assert_eq!(literal(ScalarValue::Float64(Some(f64::NAN))), None);
        assert_eq!(literal(ScalarValue::Boolean(Some(false))), Some("FALSE".into()));
        assert_eq!(literal(ScalarValue::Int32(None)), None);
        assert_eq!(
            literal(ScalarValue::Utf8(Some(r"it's a \ test".into()))),
            Some(r"'it''s a \\ test'".into())
        );
        assert_eq!(literal(ScalarValue::Utf8(Some("a\0b".into()))), None);
        assert_eq!(
            literal(ScalarValue::Decimal128(Some(-12345), 12, 2)),
            Some("-123.45".into())
        );
        assert_eq!(literal(ScalarValue::Decimal128(Some(5), 12, 3)), Some("0.005".into()));
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(
            literal(ScalarValue::Date32(Some(19_723))),
            Some("'2024-01-01'::DATE".into())
        );
        assert_eq!(
            literal(ScalarValue::TimestampMicrosecond(Some(1_704_067_200_000_001), None)),
            Some("'2024-01-01 00:00:00.000001'::TIMESTAMP_NTZ".into())
        );
        assert_eq!(
            literal(ScalarValue::TimestampMicrosecond(
                Some(1_704_067_200_000_001),
                Some("UTC".into())
            )),
            Some("'2024-01-01T00:00:00.000001Z'::TIMESTAMP_TZ".into())
        );
        assert_eq!(
            literal(ScalarValue::TimestampNanosecond(Some(1_704_067_200_000_000_001), None)),
            None
        );
    }
}
