//! Arrow types -> BigQuery, for sources whose schema is already Arrow: files
//! read through DataFusion (Parquet footers, CSV and NDJSON inference).
//!
//! Values are read with the file's own type and converted to the mapping's
//! Arrow type: integers widen, timestamps become microseconds (keeping their
//! time zone), nested values that BigQuery cannot hold as a column become
//! JSON text.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};

use super::{BigQueryType, Confidence, FLOAT32_WARNING, TypeMapping, numeric_target};

/// The BigQuery-side caveat of every list.
const LIST_WARNING: &str =
    "BigQuery arrays cannot contain NULL: lists with NULL elements are refused; a NULL list loads as an empty array";

/// The caveat of nanosecond times and timestamps.
const NANOSECOND_WARNING: &str =
    "nanosecond precision: BigQuery keeps microseconds, so values with sub-microsecond digits are refused";

/// The caveat of intervals (PostgreSQL's reach far beyond BigQuery's).
pub(crate) const INTERVAL_WARNING: &str =
    "intervals beyond BigQuery's range (10000 years, 3660000 days or 87840000 hours) are refused";

/// Maps an Arrow type as a file's schema gives it.
pub fn map(data_type: &DataType) -> TypeMapping {
    use BigQueryType as Bq;
    use Confidence::{High, Low, Medium};
    use DataType as D;
    let new = TypeMapping::new;
    match data_type {
        D::Boolean => new(D::Boolean, Bq::Bool, High),
        D::Int8 | D::Int16 | D::Int32 | D::Int64 => new(data_type.clone(), Bq::Int64, High),
        D::UInt8 => new(D::Int16, Bq::Int64, High),
        D::UInt16 => new(D::Int32, Bq::Int64, High),
        D::UInt32 => new(D::Int64, Bq::Int64, High),
        D::UInt64 => new(
            D::Decimal128(20, 0),
            Bq::Numeric {
                precision: 20,
                scale: 0,
            },
            Medium,
        )
        .warn("UInt64 exceeds INT64 above 9223372036854775807: loaded as NUMERIC(20, 0)"),
        D::Float16 => new(D::Float64, Bq::Float64, High)
            .warn("half-precision value widened to FLOAT64: exact, but 1.1 shows as 1.099609375"),
        D::Float32 => new(D::Float32, Bq::Float64, High).warn(FLOAT32_WARNING),
        D::Float64 => new(D::Float64, Bq::Float64, High),
        D::Decimal32(precision, scale)
        | D::Decimal64(precision, scale)
        | D::Decimal128(precision, scale)
        | D::Decimal256(precision, scale) => decimal(*precision, *scale),
        D::Utf8 | D::LargeUtf8 | D::Utf8View => new(D::Utf8, Bq::String, High),
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => new(D::Binary, Bq::Bytes, High),
        D::Date32 => new(D::Date32, Bq::Date, High),
        D::Date64 => new(D::Date32, Bq::Date, High).warn("Date64 values with a time of day are refused"),
        D::Timestamp(unit, tz) => {
            let bigquery = if tz.is_some() { Bq::Timestamp } else { Bq::Datetime };
            let mapping = new(D::Timestamp(TimeUnit::Microsecond, tz.clone()), bigquery, High);
            nanoseconds(mapping, *unit)
        }
        D::Time32(_) => new(D::Time64(TimeUnit::Microsecond), Bq::Time, High),
        D::Time64(unit) => nanoseconds(new(D::Time64(TimeUnit::Microsecond), Bq::Time, High), *unit),
        D::List(element)
        | D::LargeList(element)
        | D::FixedSizeList(element, _)
        | D::ListView(element)
        | D::LargeListView(element) => list(data_type, element.data_type()),
        D::Interval(IntervalUnit::MonthDayNano) => new(data_type.clone(), Bq::Interval, Medium).warn(INTERVAL_WARNING),
        D::Struct(_) => json(Medium).warn("struct loaded as a JSON object"),
        D::Map(..) => json(Medium).warn("map loaded as a JSON object: keys become strings, duplicate keys are lost"),
        D::Dictionary(_, value) => map(value),
        D::Null => text(Low).warn("no value to infer a type from (every value is NULL): loaded as STRING"),
        other => text(Low).warn(format!(
            "{other} has no BigQuery equivalent: loaded as its text form; review"
        )),
    }
}

/// A decimal; a negative scale counts extra integer digits.
fn decimal(precision: u8, scale: i8) -> TypeMapping {
    let precision = u32::from(precision);
    let (precision, scale) = if scale < 0 {
        (precision + u32::from(scale.unsigned_abs()), 0)
    } else {
        (precision, scale.unsigned_abs().into())
    };
    numeric_target(Some(precision), Some(scale))
}

/// The mapping, with the nanosecond caveat when `unit` is nanoseconds.
fn nanoseconds(mapping: TypeMapping, unit: TimeUnit) -> TypeMapping {
    if unit == TimeUnit::Nanosecond {
        TypeMapping {
            confidence: Confidence::Medium,
            ..mapping
        }
        .warn(NANOSECOND_WARNING)
    } else {
        mapping
    }
}

/// A list: a BigQuery array of its elements, or JSON when the elements are
/// themselves lists or objects.
fn list(data_type: &DataType, element: &DataType) -> TypeMapping {
    let inner = map(element);
    if inner.repeated || inner.bigquery == BigQueryType::Json {
        return json(Confidence::Medium).warn(format!(
            "{data_type} cannot be a BigQuery array of {}: loaded as a JSON array",
            inner.bigquery_ddl()
        ));
    }
    let mut warnings = inner.warnings;
    warnings.push(LIST_WARNING.to_owned());
    TypeMapping {
        arrow: DataType::List(Arc::new(Field::new_list_field(inner.arrow, true))),
        bigquery: inner.bigquery,
        repeated: true,
        confidence: inner.confidence.max(Confidence::Medium),
        warnings,
    }
}

/// A JSON column carrying the value as JSON text.
fn json(confidence: Confidence) -> TypeMapping {
    TypeMapping::new(DataType::Utf8, BigQueryType::Json, confidence)
}

/// A STRING column carrying the value's text form.
fn text(confidence: Confidence) -> TypeMapping {
    TypeMapping::new(DataType::Utf8, BigQueryType::String, confidence)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Fields, IntervalUnit};

    use super::*;

    fn summary(data_type: DataType) -> (DataType, String, Confidence, usize) {
        let m = map(&data_type);
        (m.arrow.clone(), m.bigquery_ddl(), m.confidence, m.warnings.len())
    }

    fn list_of(element: DataType) -> DataType {
        DataType::List(Arc::new(Field::new_list_field(element, true)))
    }

    #[test]
    fn integers_widen_to_int64_and_uint64_to_numeric() {
        use Confidence::{High, Medium};
        use DataType as D;
        for (from, arrow) in [
            (D::Int8, D::Int8),
            (D::Int16, D::Int16),
            (D::Int32, D::Int32),
            (D::Int64, D::Int64),
            (D::UInt8, D::Int16),
            (D::UInt16, D::Int32),
            (D::UInt32, D::Int64),
        ] {
            assert_eq!(summary(from), (arrow, "INT64".into(), High, 0));
        }
        assert_eq!(
            summary(D::UInt64),
            (D::Decimal128(20, 0), "NUMERIC(20, 0)".into(), Medium, 1)
        );
    }

    #[test]
    fn floats_decimals_strings_binary_dates() {
        use Confidence::{High, Medium};
        use DataType as D;
        assert_eq!(summary(D::Float64), (D::Float64, "FLOAT64".into(), High, 0));
        assert_eq!(summary(D::Float32), (D::Float32, "FLOAT64".into(), High, 1));
        assert_eq!(summary(D::Float16), (D::Float64, "FLOAT64".into(), High, 1));
        assert_eq!(
            summary(D::Decimal128(12, 2)),
            (D::Decimal128(12, 2), "NUMERIC(12, 2)".into(), High, 0)
        );
        assert_eq!(
            summary(D::Decimal32(5, 2)),
            (D::Decimal128(5, 2), "NUMERIC(5, 2)".into(), High, 0)
        );
        assert_eq!(
            summary(D::Decimal256(60, 30)),
            (D::Decimal256(60, 30), "BIGNUMERIC(60, 30)".into(), High, 0)
        );
        assert_eq!(
            summary(D::Decimal128(5, -3)),
            (D::Decimal128(8, 0), "NUMERIC(8, 0)".into(), High, 0)
        );
        assert_eq!(summary(D::Decimal256(76, 39)), (D::Utf8, "STRING".into(), Medium, 1));
        for text in [D::Utf8, D::LargeUtf8, D::Utf8View] {
            assert_eq!(summary(text), (D::Utf8, "STRING".into(), High, 0));
        }
        for binary in [D::Binary, D::LargeBinary, D::BinaryView, D::FixedSizeBinary(16)] {
            assert_eq!(summary(binary), (D::Binary, "BYTES".into(), High, 0));
        }
        assert_eq!(summary(D::Boolean), (D::Boolean, "BOOL".into(), High, 0));
        assert_eq!(summary(D::Date32), (D::Date32, "DATE".into(), High, 0));
        assert_eq!(summary(D::Date64), (D::Date32, "DATE".into(), High, 1));
        assert_eq!(
            summary(D::Dictionary(Box::new(D::Int32), Box::new(D::Utf8))),
            (D::Utf8, "STRING".into(), High, 0)
        );
    }

    #[test]
    fn timestamps_become_microseconds_and_keep_their_zone() {
        use Confidence::{High, Medium};
        use DataType as D;
        let utc: Option<Arc<str>> = Some("UTC".into());
        let paris: Option<Arc<str>> = Some("Europe/Paris".into());
        for unit in [TimeUnit::Second, TimeUnit::Millisecond, TimeUnit::Microsecond] {
            assert_eq!(
                summary(D::Timestamp(unit, utc.clone())),
                (
                    D::Timestamp(TimeUnit::Microsecond, utc.clone()),
                    "TIMESTAMP".into(),
                    High,
                    0
                )
            );
            assert_eq!(
                summary(D::Timestamp(unit, None)),
                (D::Timestamp(TimeUnit::Microsecond, None), "DATETIME".into(), High, 0)
            );
        }
        let m = map(&D::Timestamp(TimeUnit::Nanosecond, paris.clone()));
        assert_eq!(
            (m.arrow, m.bigquery, m.confidence),
            (
                D::Timestamp(TimeUnit::Microsecond, paris),
                BigQueryType::Timestamp,
                Medium
            )
        );
        assert_eq!(m.warnings, [NANOSECOND_WARNING]);
        assert_eq!(
            summary(D::Time32(TimeUnit::Second)),
            (D::Time64(TimeUnit::Microsecond), "TIME".into(), High, 0)
        );
        assert_eq!(
            summary(D::Time64(TimeUnit::Nanosecond)),
            (D::Time64(TimeUnit::Microsecond), "TIME".into(), Medium, 1)
        );
    }

    #[test]
    fn lists_are_repeated_and_nested_values_json() {
        use Confidence::Medium;
        use DataType as D;
        let m = map(&list_of(D::Int32));
        assert_eq!(
            (m.arrow.clone(), m.repeated, m.bigquery_ddl(), m.confidence),
            (list_of(D::Int32), true, "ARRAY<INT64>".into(), Medium)
        );
        assert_eq!(m.warnings, [LIST_WARNING]);
        let large = D::LargeList(Arc::new(Field::new("x", D::UInt32, false)));
        assert_eq!(map(&large).arrow, list_of(D::Int64));
        let fixed = D::FixedSizeList(Arc::new(Field::new("x", D::Float32, true)), 3);
        let m = map(&fixed);
        assert_eq!(
            (m.arrow.clone(), m.bigquery_ddl()),
            (list_of(D::Float32), "ARRAY<FLOAT64>".into())
        );
        assert_eq!(m.warnings, [FLOAT32_WARNING, LIST_WARNING]);

        let point = D::Struct(Fields::from(vec![Field::new("x", D::Int64, true)]));
        assert_eq!(summary(point.clone()), (D::Utf8, "JSON".into(), Medium, 1));
        let m = map(&list_of(point));
        assert_eq!(
            (m.arrow.clone(), m.repeated, m.bigquery_ddl()),
            (D::Utf8, false, "JSON".into())
        );
        assert!(
            m.warnings[0].contains("cannot be a BigQuery array of JSON"),
            "{:?}",
            m.warnings
        );
        assert_eq!(summary(list_of(list_of(D::Int64))).1, "JSON");
        let entries = Field::new(
            "entries",
            D::Struct(Fields::from(vec![
                Field::new("key", D::Utf8, false),
                Field::new("value", D::Int64, true),
            ])),
            false,
        );
        assert_eq!(
            summary(D::Map(Arc::new(entries), false)),
            (D::Utf8, "JSON".into(), Medium, 1)
        );
    }

    #[test]
    fn anything_else_is_low_confidence_text() {
        use Confidence::Low;
        use DataType as D;
        for other in [
            D::Null,
            D::Duration(TimeUnit::Second),
            D::Interval(IntervalUnit::DayTime),
        ] {
            assert_eq!(summary(other), (D::Utf8, "STRING".into(), Low, 1));
        }
        assert!(map(&D::Duration(TimeUnit::Second)).warnings[0].starts_with("Duration(s) has no BigQuery"));
    }
}
