//! T-SQL spelling of identifiers and literals, for SQL Server and Synapse.
//!
//! Times and timestamps are loaded cut to microseconds, while the server
//! compares its own finer values (`datetime2(7)`, `datetime` in 1/300 s):
//! a run's window is therefore written against the cut value
//! ([`Dialect::bound_condition`]), and the columns whose values are finer
//! than a microsecond compare in DataFusion ([`Dialect::compares_as_arrow`]).

use chrono::{DateTime, Datelike};
use datafusion::scalar::ScalarValue;

use crate::contract::{ColumnInfo, Dialect, SqlFamily, integer_literal};
use crate::sources::decimal_text::{decimal_text, digit_count};

/// SQL Server keeps decimal literals exact up to 38 digits.
const MAX_DECIMAL_DIGITS: usize = 38;

/// The dialect of SQL Server and Azure Synapse.
pub(super) struct SqlServerDialect;

impl Dialect for SqlServerDialect {
    fn family(&self) -> SqlFamily {
        SqlFamily::SqlServer
    }

    fn quote_ident(&self, ident: &str) -> String {
        format!("[{}]", ident.replace(']', "]]"))
    }

    fn literal(&self, value: &ScalarValue) -> Option<String> {
        use ScalarValue as S;
        match value {
            // A bigint, so that a rowversion (binary(8)) compares as a number.
            S::Int64(Some(v)) => Some(format!("CAST({v} AS bigint)")),
            S::UInt64(Some(v)) => i64::try_from(*v).ok().map(|v| format!("CAST({v} AS bigint)")),
            S::Int8(_) | S::Int16(_) | S::Int32(_) | S::UInt8(_) | S::UInt16(_) | S::UInt32(_) => {
                integer_literal(value)
            }
            // The exponent makes T-SQL read a float; the shortest round-trip
            // digits make it exact.
            S::Float32(Some(v)) => float(f64::from(*v)),
            S::Float64(Some(v)) => float(*v),
            S::Boolean(Some(v)) => Some(if *v { "1" } else { "0" }.to_owned()),
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => string(s),
            S::Date32(Some(days)) => {
                let date = DateTime::from_timestamp(i64::from(*days) * 86_400, 0)?.date_naive();
                (date.year() >= 1).then(|| format!("CAST('{}' AS date)", date.format("%Y-%m-%d")))
            }
            S::TimestampSecond(Some(v), zone) => timestamp(v.checked_mul(1_000_000)?, zone.is_some()),
            S::TimestampMillisecond(Some(v), zone) => timestamp(v.checked_mul(1_000)?, zone.is_some()),
            S::TimestampMicrosecond(Some(v), zone) => timestamp(*v, zone.is_some()),
            S::TimestampNanosecond(Some(v), zone) => (v % 1_000 == 0).then(|| timestamp(v / 1_000, zone.is_some()))?,
            S::Decimal128(Some(v), _, scale) => decimal(&v.to_string(), *scale),
            S::Decimal256(Some(v), _, scale) => decimal(&v.to_string(), *scale),
            _ => None,
        }
    }

    /// Columns whose values are finer than the microseconds they load as
    /// (or whose order is not their text's), compared by DataFusion.
    fn compares_as_arrow(&self, column: &ColumnInfo) -> bool {
        let source = column.source_type.to_ascii_lowercase();
        let base = source.split('(').next().unwrap_or_default();
        let fraction = source
            .split_once('(')
            .and_then(|(_, rest)| rest.trim_end_matches(')').parse::<u32>().ok());
        match base {
            "datetime" | "uniqueidentifier" | "sql_variant" => false,
            "time" | "datetime2" | "datetimeoffset" => fraction.is_some_and(|f| f <= 6),
            _ => true,
        }
    }

    /// `column op value` where `column` is read cut to microseconds: the
    /// cut value exceeds `v` exactly when the column reaches the next
    /// microsecond, and stays at or below `v` exactly when it is below it.
    fn bound_condition(&self, column: &str, op: &str, value: &ScalarValue) -> Option<String> {
        let next_micro = |v: &ScalarValue| match v {
            ScalarValue::TimestampMicrosecond(Some(micros), zone) => Some(ScalarValue::TimestampMicrosecond(
                Some(micros.checked_add(1)?),
                zone.clone(),
            )),
            _ => None,
        };
        let (op, value) = match (op, next_micro(value)) {
            (">", Some(next)) => (">=", next),
            ("<=", Some(next)) => ("<", next),
            _ => (op, value.clone()),
        };
        Some(format!("{column} {op} {}", self.bound_literal(&value)?))
    }
}

/// A float literal.
fn float(v: f64) -> Option<String> {
    v.is_finite().then(|| format!("{v:e}"))
}

/// A Unicode string literal. Strings with `[` are left to DataFusion: in a
/// pushed-down LIKE pattern T-SQL reads brackets as a character class.
fn string(s: &str) -> Option<String> {
    (!s.contains('\0') && !s.contains('[')).then(|| format!("N'{}'", s.replace('\'', "''")))
}

/// A timestamp literal from microseconds since the epoch, as `datetime2(7)`
/// (wall time) or, for a zoned value, as `datetimeoffset(7)` in UTC; both
/// types hold any coarser column's values exactly.
fn timestamp(micros: i64, zoned: bool) -> Option<String> {
    let t = DateTime::from_timestamp_micros(micros)?.naive_utc();
    if !(1..=9999).contains(&t.year()) {
        return None;
    }
    let text = t.format("%Y-%m-%d %H:%M:%S%.6f");
    Some(if zoned {
        format!("CAST('{text} +00:00' AS datetimeoffset(7))")
    } else {
        format!("CAST('{text}' AS datetime2(7))")
    })
}

/// An exact decimal literal from an unscaled integer's text.
fn decimal(unscaled: &str, scale: i8) -> Option<String> {
    ((0..=38).contains(&scale) && digit_count(unscaled) <= MAX_DECIMAL_DIGITS)
        .then(|| decimal_text(unscaled, scale as usize))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType;

    use super::*;
    use crate::type_mapping::{BigQueryType, Confidence, TypeMapping};

    fn literal(value: ScalarValue) -> Option<String> {
        SqlServerDialect.literal(&value)
    }

    #[test]
    fn identifiers_are_bracketed() {
        assert_eq!(SqlServerDialect.quote_ident("select"), "[select]");
        assert_eq!(SqlServerDialect.quote_ident("a]b[c"), "[a]]b[c]");
        assert_eq!(
            SqlServerDialect.quote_ident("Order \"Items\"; DROP TABLE x;--"),
            "[Order \"Items\"; DROP TABLE x;--]"
        );
    }

    #[test]
    fn numbers_booleans_and_strings() {
        assert_eq!(literal(ScalarValue::Int32(Some(-5))), Some("-5".into()));
        assert_eq!(
            literal(ScalarValue::Int64(Some(i64::MAX))),
            Some("CAST(9223372036854775807 AS bigint)".into())
        );
        assert_eq!(literal(ScalarValue::UInt64(Some(u64::MAX))), None);
        assert_eq!(literal(ScalarValue::Float64(Some(0.1))), Some("1e-1".into()));
        assert_eq!(literal(ScalarValue::Float64(Some(f64::NAN))), None);
        assert_eq!(literal(ScalarValue::Boolean(Some(false))), Some("0".into()));
        assert_eq!(
            literal(ScalarValue::Utf8(Some("it's ż".into()))),
            Some("N'it''s ż'".into())
        );
        assert_eq!(literal(ScalarValue::Utf8(Some("a[b]%".into()))), None);
        assert_eq!(literal(ScalarValue::Utf8(Some("a\0b".into()))), None);
        assert_eq!(literal(ScalarValue::Int32(None)), None);
    }

    #[test]
    fn dates_timestamps_and_decimals() {
        assert_eq!(
            literal(ScalarValue::Date32(Some(19_723))),
            Some("CAST('2024-01-01' AS date)".into())
        );
        assert_eq!(
            literal(ScalarValue::TimestampMicrosecond(Some(1_704_067_200_000_001), None)),
            Some("CAST('2024-01-01 00:00:00.000001' AS datetime2(7))".into())
        );
        assert_eq!(
            literal(ScalarValue::TimestampMicrosecond(Some(0), Some("UTC".into()))),
            Some("CAST('1970-01-01 00:00:00.000000 +00:00' AS datetimeoffset(7))".into())
        );
        assert_eq!(literal(ScalarValue::TimestampNanosecond(Some(1), None)), None);
        assert_eq!(
            literal(ScalarValue::Decimal128(Some(-12345), 12, 2)),
            Some("-123.45".into())
        );
        assert_eq!(literal(ScalarValue::Decimal128(Some(5), 12, 3)), Some("0.005".into()));
    }

    #[test]
    fn window_bounds_compare_the_value_cut_to_microseconds() {
        let at = |micros| ScalarValue::TimestampMicrosecond(Some(micros), None);
        let d = SqlServerDialect;
        // The loaded value is above 0.000001 from 0.000002 on ...
        assert_eq!(
            d.bound_condition("[t]", ">", &at(1)).unwrap(),
            "[t] >= CAST('1970-01-01 00:00:00.000002' AS datetime2(7))"
        );
        // ... and at most 0.000001 up to 0.0000019.
        assert_eq!(
            d.bound_condition("[t]", "<=", &at(1)).unwrap(),
            "[t] < CAST('1970-01-01 00:00:00.000002' AS datetime2(7))"
        );
        assert_eq!(
            d.bound_condition("[t]", ">=", &at(1)).unwrap(),
            "[t] >= CAST('1970-01-01 00:00:00.000001' AS datetime2(7))"
        );
        assert_eq!(
            d.bound_condition("[v]", ">", &ScalarValue::Int64(Some(7))).unwrap(),
            "[v] > CAST(7 AS bigint)"
        );
    }

    #[test]
    fn verify_checksums_are_written_in_t_sql() {
        use datafusion::arrow::datatypes::TimeUnit;

        use crate::sources::{BucketUnit, ChecksumQuery};
        let query = ChecksumQuery {
            columns: vec![
                ("id".into(), DataType::Int64),
                ("name".into(), DataType::Utf8),
                ("at".into(), DataType::Timestamp(TimeUnit::Microsecond, None)),
            ],
            bucket: Some((
                "at".into(),
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                BucketUnit::Day,
            )),
            filter: None,
        };
        let sql = query.sql(&SqlServerDialect, "[dbo].[t]").unwrap();
        for part in [
            "CAST([id] AS nvarchar(40))",
            "DATEDIFF_BIG(MICROSECOND, '1970-01-01', [at])",
            "HASHBYTES('MD5', CAST((CONCAT(",
            "COLLATE Latin1_General_100_BIN2_UTF8 AS varchar(max))",
            "CHARINDEX(SUBSTRING(h, 1, 1), '0123456789abcdef')",
            "FORMAT(SWITCHOFFSET([at], '+00:00'), 'yyyy-MM-dd', 'en-US') AS b",
            "FROM [dbo].[t]",
        ] {
            assert!(sql.contains(part), "{part}: {sql}");
        }
        assert!(!sql.contains("SUBSTR("), "{sql}");
    }

    #[test]
    fn values_finer_than_microseconds_compare_in_datafusion() {
        let column = |source_type: &str| ColumnInfo {
            name: "t".into(),
            ordinal: 1,
            source_type: source_type.into(),
            nullable: true,
            default: None,
            primary_key_position: None,
            indexed: false,
            mapping: TypeMapping::new(DataType::Int32, BigQueryType::Int64, Confidence::High),
        };
        for coarse in [
            "datetime2(6)",
            "datetime2(0)",
            "smalldatetime",
            "date",
            "int",
            "datetimeoffset(3)",
        ] {
            assert!(SqlServerDialect.compares_as_arrow(&column(coarse)), "{coarse}");
        }
        for fine in [
            "datetime2(7)",
            "datetime",
            "time(7)",
            "datetimeoffset(7)",
            "uniqueidentifier",
        ] {
            assert!(!SqlServerDialect.compares_as_arrow(&column(fine)), "{fine}");
        }
    }
}
