//! MySQL/MariaDB spelling of identifiers and literals, for the session the
//! source sets up (`sql_mode` without `NO_BACKSLASH_ESCAPES`, time zone UTC).

use chrono::{DateTime, Datelike};
use datafusion::arrow::datatypes::DataType;
use datafusion::scalar::ScalarValue;

use crate::contract::{ColumnInfo, Dialect, SqlFamily, integer_literal, quote_with};
use crate::sources::decimal_text::{decimal_text, digit_count};

/// MySQL keeps decimal literals exact up to this many digits ...
const MAX_DECIMAL_DIGITS: usize = 65;
/// ... and this many decimal places.
const MAX_DECIMAL_SCALE: i8 = 30;

/// The dialect of MySQL and MariaDB.
pub(super) struct MysqlDialect;

impl Dialect for MysqlDialect {
    fn family(&self) -> SqlFamily {
        SqlFamily::MySql
    }

    fn quote_ident(&self, ident: &str) -> String {
        quote_with(ident, '`')
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
            S::Float32(Some(v)) => float(f64::from(*v)),
            S::Float64(Some(v)) => float(*v),
            S::Boolean(Some(v)) => Some(if *v { "TRUE" } else { "FALSE" }.to_owned()),
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => string(s),
            S::Date32(Some(days)) => {
                let date = DateTime::from_timestamp(i64::from(*days) * 86_400, 0)?.date_naive();
                in_range(date.year()).then(|| format!("DATE '{}'", date.format("%Y-%m-%d")))
            }
            S::TimestampSecond(Some(v), _) => timestamp(v.checked_mul(1_000_000)?),
            S::TimestampMillisecond(Some(v), _) => timestamp(v.checked_mul(1_000)?),
            S::TimestampMicrosecond(Some(v), _) => timestamp(*v),
            S::TimestampNanosecond(Some(v), _) => (v % 1_000 == 0).then(|| timestamp(v / 1_000))?,
            S::Decimal128(Some(v), _, scale) => decimal(&v.to_string(), *scale),
            S::Decimal256(Some(v), _, scale) => decimal(&v.to_string(), *scale),
            _ => None,
        }
    }

    /// `tinyint(1)` and `bit(1)` read as booleans, but `= TRUE` at the
    /// source means `= 1` while any non-zero value reads as true.
    fn compares_as_arrow(&self, column: &ColumnInfo) -> bool {
        let source = column.source_type.to_lowercase();
        column.mapping.arrow != DataType::Boolean || !(source.starts_with("tinyint") || source.starts_with("bit"))
    }
}

/// A DOUBLE literal: the exponent makes MySQL read it as a double, and the
/// shortest round-trip digits make it exact.
fn float(v: f64) -> Option<String> {
    v.is_finite().then(|| format!("{v:e}"))
}

/// A string literal for the default `sql_mode`, where backslash escapes.
fn string(s: &str) -> Option<String> {
    (!s.contains('\0')).then(|| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")))
}

/// The years MySQL's DATE, DATETIME and TIMESTAMP literals support.
fn in_range(year: i32) -> bool {
    (1000..=9999).contains(&year)
}

/// A timestamp literal from microseconds since the epoch, written in UTC:
/// the wall time of a DATETIME (timezone-naive in Arrow), or the instant of
/// a TIMESTAMP as the UTC session sees it.
fn timestamp(micros: i64) -> Option<String> {
    let t = DateTime::from_timestamp_micros(micros)?.naive_utc();
    in_range(t.year()).then(|| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f")))
}

/// An exact decimal literal from an unscaled integer's text.
fn decimal(unscaled: &str, scale: i8) -> Option<String> {
    ((0..=MAX_DECIMAL_SCALE).contains(&scale) && digit_count(unscaled) <= MAX_DECIMAL_DIGITS)
        .then(|| decimal_text(unscaled, scale as usize))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::i256;

    use super::*;

    fn literal(value: ScalarValue) -> Option<String> {
        MysqlDialect.literal(&value)
    }

    #[test]
    fn booleans_read_from_integers_are_not_compared_at_the_source() {
        let column = |source_type: &str, arrow: DataType| ColumnInfo {
            name: "flag".into(),
            ordinal: 1,
            source_type: source_type.into(),
            nullable: true,
            default: None,
            primary_key_position: None,
            indexed: false,
            mapping: crate::type_mapping::TypeMapping::new(
                arrow,
                crate::type_mapping::BigQueryType::Bool,
                crate::type_mapping::Confidence::High,
            ),
        };
        assert!(!MysqlDialect.compares_as_arrow(&column("tinyint(1)", DataType::Boolean)));
        assert!(!MysqlDialect.compares_as_arrow(&column("bit(1)", DataType::Boolean)));
        assert!(MysqlDialect.compares_as_arrow(&column("tinyint(4)", DataType::Int8)));
    }

    #[test]
    fn identifiers_double_backticks() {
        assert_eq!(MysqlDialect.quote_ident("select"), "`select`");
        assert_eq!(MysqlDialect.quote_ident("a`b"), "`a``b`");
        assert_eq!(
            MysqlDialect.quote_ident("Order \"Items\"; DROP TABLE x;--"),
            "`Order \"Items\"; DROP TABLE x;--`"
        );
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(literal(ScalarValue::Int64(Some(-5))), Some("-5".into()));
        assert_eq!(
            literal(ScalarValue::UInt64(Some(u64::MAX))),
            Some("18446744073709551615".into())
        );
        assert_eq!(literal(ScalarValue::Float64(Some(0.1))), Some("1e-1".into()));
        assert_eq!(
            literal(ScalarValue::Float32(Some(0.1))),
            Some("1.0000000149011612e-1".into())
        );
        assert_eq!(literal(ScalarValue::Float64(Some(f64::NAN))), None);
        assert_eq!(literal(ScalarValue::Float64(Some(f64::INFINITY))), None);
        assert_eq!(literal(ScalarValue::Boolean(Some(true))), Some("TRUE".into()));
        assert_eq!(literal(ScalarValue::Int32(None)), None);
    }

    #[test]
    fn strings_escape_quotes_and_backslashes() {
        assert_eq!(
            literal(ScalarValue::Utf8(Some(r"it's a \ test".into()))),
            Some(r"'it''s a \\ test'".into())
        );
        assert_eq!(literal(ScalarValue::Utf8(Some("😀".into()))), Some("'😀'".into()));
        assert_eq!(literal(ScalarValue::Utf8(Some("a\0b".into()))), None);
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(
            literal(ScalarValue::Date32(Some(19_723))),
            Some("DATE '2024-01-01'".into())
        );
        assert_eq!(literal(ScalarValue::Date32(Some(-800_000))), None);
        assert_eq!(
            literal(ScalarValue::TimestampMicrosecond(Some(1_704_067_200_000_001), None)),
            Some("TIMESTAMP '2024-01-01 00:00:00.000001'".into())
        );
        assert_eq!(
            literal(ScalarValue::TimestampSecond(Some(1_704_067_200), Some("UTC".into()))),
            Some("TIMESTAMP '2024-01-01 00:00:00.000000'".into())
        );
        assert_eq!(
            literal(ScalarValue::TimestampNanosecond(Some(1_704_067_200_000_000_001), None)),
            None
        );
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(
            literal(ScalarValue::Decimal128(Some(-12345), 12, 2)),
            Some("-123.45".into())
        );
        assert_eq!(literal(ScalarValue::Decimal128(Some(5), 12, 3)), Some("0.005".into()));
        assert_eq!(literal(ScalarValue::Decimal128(Some(7), 20, 0)), Some("7".into()));
        let max = i256::from_string(&"9".repeat(65)).unwrap();
        assert_eq!(
            literal(ScalarValue::Decimal256(Some(max), 65, 30)),
            Some(format!("{}.{}", "9".repeat(35), "9".repeat(30)))
        );
        let too_long = i256::from_string(&"9".repeat(66)).unwrap();
        assert_eq!(literal(ScalarValue::Decimal256(Some(too_long), 76, 30)), None);
        assert_eq!(literal(ScalarValue::Decimal128(Some(1), 38, 31)), None);
    }
}
