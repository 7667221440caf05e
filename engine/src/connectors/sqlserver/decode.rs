//! Decoding TDS values (tiberius `ColumnData`) straight into Arrow builders,
//! one decoder per selected column, for the Arrow type the mapping chose.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use tiberius::ColumnData;
use tiberius::time::{Date, DateTime2, Time};

use crate::contract::SourceError;

/// Days from 0001-01-01 (`date`, `datetime2`) to 1970-01-01.
const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1900-01-01 (`datetime`, `smalldatetime`) to 1970-01-01.
const DAYS_1900_TO_1970: i64 = 25_567;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Appends the values of one column to an Arrow array.
pub(super) struct ColumnDecoder {
    /// `column "x" of schema.table`, for errors.
    what: String,
    builder: Builder,
}

enum Builder {
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, i8),
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnDecoder {
    /// A decoder into `arrow`, or an error for a type no SQL Server column
    /// maps to.
    pub(super) fn new(what: String, arrow: &DataType) -> Result<Self, SourceError> {
        let builder = match arrow {
            DataType::Boolean => Builder::Boolean(BooleanBuilder::new()),
            DataType::Int16 => Builder::Int16(Int16Builder::new()),
            DataType::Int32 => Builder::Int32(Int32Builder::new()),
            DataType::Int64 => Builder::Int64(Int64Builder::new()),
            DataType::Float32 => Builder::Float32(Float32Builder::new()),
            DataType::Float64 => Builder::Float64(Float64Builder::new()),
            DataType::Decimal128(p, s) => Builder::Decimal(
                Decimal128Builder::new()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| decode_error(&what, e.to_string()))?,
                *s,
            ),
            DataType::Utf8 => Builder::Text(StringBuilder::new()),
            DataType::Binary => Builder::Binary(BinaryBuilder::new()),
            DataType::Date32 => Builder::Date(Date32Builder::new()),
            DataType::Time64(TimeUnit::Microsecond) => Builder::Time(Time64MicrosecondBuilder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, zone) => {
                Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone_opt(zone.clone()))
            }
            other => return Err(decode_error(&what, format!("cannot read values as {other}"))),
        };
        Ok(Self { what, builder })
    }

    /// Appends one value; a value of a kind the column cannot hold is an
    /// error naming the column.
    pub(super) fn append(&mut self, value: &ColumnData<'_>) -> Result<(), SourceError> {
        use ColumnData as C;
        let mismatch = || decode_error(&self.what, format!("the server sent a {} value", kind(value)));
        match (&mut self.builder, value) {
            (Builder::Boolean(b), C::Bit(v)) => b.append_option(*v),
            (Builder::Int16(b), C::U8(v)) => b.append_option(v.map(i16::from)),
            (Builder::Int16(b), C::I16(v)) => b.append_option(*v),
            (Builder::Int32(b), C::U8(v)) => b.append_option(v.map(i32::from)),
            (Builder::Int32(b), C::I16(v)) => b.append_option(v.map(i32::from)),
            (Builder::Int32(b), C::I32(v)) => b.append_option(*v),
            (Builder::Int64(b), C::U8(v)) => b.append_option(v.map(i64::from)),
            (Builder::Int64(b), C::I16(v)) => b.append_option(v.map(i64::from)),
            (Builder::Int64(b), C::I32(v)) => b.append_option(v.map(i64::from)),
            (Builder::Int64(b), C::I64(v)) => b.append_option(*v),
            (Builder::Float32(b), C::F32(v)) => b.append_option(*v),
            (Builder::Float64(b), C::F32(v)) => b.append_option(v.map(f64::from)),
            (Builder::Float64(b), C::F64(v)) => b.append_option(*v),
            (Builder::Decimal(b, scale), C::Numeric(v)) => {
                let scaled = match v {
                    Some(n) => Some(
                        rescale(n.value(), n.scale(), *scale)
                            .ok_or_else(|| decode_error(&self.what, format!("{n} does not fit the column's scale")))?,
                    ),
                    None => None,
                };
                b.append_option(scaled)
            }
            (Builder::Text(b), C::String(v)) => b.append_option(v.as_deref()),
            (Builder::Text(b), C::Xml(v)) => b.append_option(v.as_ref().map(|x| AsRef::<str>::as_ref(&**x))),
            (Builder::Text(b), C::Guid(v)) => b.append_option(v.map(|g| g.hyphenated().to_string())),
            (Builder::Binary(b), C::Binary(v)) => b.append_option(v.as_deref()),
            (Builder::Date(b), C::Date(v)) => {
                let days = v.map(|d| i32::try_from(date_days(d)).map_err(|_| mismatch()));
                b.append_option(days.transpose()?)
            }
            (Builder::Time(b), C::Time(v)) => b.append_option(v.map(time_micros)),
            (Builder::Timestamp(b), C::DateTime2(_) | C::DateTimeOffset(_) | C::DateTime(_) | C::SmallDateTime(_)) => {
                b.append_option(instant_micros(value))
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    /// The values appended since the last call, as one array.
    pub(super) fn finish(&mut self) -> ArrayRef {
        match &mut self.builder {
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Decimal(b, _) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

fn decode_error(what: &str, detail: String) -> SourceError {
    SourceError::Query {
        code: Some("22000".into()),
        message: format!("{what}: {detail}"),
    }
}

/// The kind of a TDS value, for errors (never the value itself).
fn kind(value: &ColumnData<'_>) -> &'static str {
    use ColumnData as C;
    match value {
        C::U8(_) => "tinyint",
        C::I16(_) => "smallint",
        C::I32(_) => "int",
        C::I64(_) => "bigint",
        C::F32(_) => "real",
        C::F64(_) => "float",
        C::Bit(_) => "bit",
        C::String(_) => "string",
        C::Guid(_) => "uniqueidentifier",
        C::Binary(_) => "binary",
        C::Numeric(_) => "decimal",
        C::Xml(_) => "xml",
        C::DateTime(_) => "datetime",
        C::SmallDateTime(_) => "smalldatetime",
        C::Time(_) => "time",
        C::Date(_) => "date",
        C::DateTime2(_) => "datetime2",
        C::DateTimeOffset(_) => "datetimeoffset",
    }
}

/// An unscaled decimal `value` with `from` decimal places, at `to` places;
/// `None` when digits would be lost or it overflows.
fn rescale(value: i128, from: u8, to: i8) -> Option<i128> {
    let to = u32::try_from(to).ok()?;
    let from = u32::from(from);
    if to >= from {
        value.checked_mul(10_i128.checked_pow(to - from)?)
    } else {
        let divisor = 10_i128.checked_pow(from - to)?;
        (value % divisor == 0).then(|| value / divisor)
    }
}

/// Microseconds since 1970-01-01 of a date-and-time value, or `None` for
/// NULL and other kinds. The `datetime2` part of a `datetimeoffset` is in
/// UTC; `datetime`'s 1/300 s ticks are cut (not rounded) to microseconds.
pub(super) fn instant_micros(value: &ColumnData<'_>) -> Option<i64> {
    use ColumnData as C;
    match value {
        C::DateTime2(v) => v.map(datetime2_micros),
        C::DateTimeOffset(v) => v.map(|v| datetime2_micros(v.datetime2())),
        C::DateTime(v) => v.map(|v| {
            (i64::from(v.days()) - DAYS_1900_TO_1970) * MICROS_PER_DAY + i64::from(v.seconds_fragments()) * 10_000 / 3
        }),
        C::SmallDateTime(v) => v.map(|v| {
            (i64::from(v.days()) - DAYS_1900_TO_1970) * MICROS_PER_DAY + i64::from(v.seconds_fragments()) * 60_000_000
        }),
        _ => None,
    }
}

/// Days since 1970-01-01 of a `date`.
fn date_days(date: Date) -> i64 {
    i64::from(date.days()) - DAYS_0001_TO_1970
}

/// Microseconds since midnight of a `time`, cut (not rounded) to
/// microseconds when it has 7 fractional digits.
fn time_micros(time: Time) -> i64 {
    let increments = i64::try_from(time.increments()).unwrap_or(i64::MAX);
    match u32::from(time.scale()) {
        scale @ 0..=6 => increments * 10_i64.pow(6 - scale),
        scale => increments / 10_i64.pow(scale - 6),
    }
}

/// Microseconds since 1970-01-01 of a `datetime2`.
fn datetime2_micros(value: DateTime2) -> i64 {
    date_days(value.date()) * MICROS_PER_DAY + time_micros(value.time())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{
        Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Time64MicrosecondType,
        TimestampMicrosecondType,
    };
    use tiberius::numeric::Numeric;
    use tiberius::time::{DateTime, DateTimeOffset, SmallDateTime};
    use tiberius::xml::XmlData;

    use super::super::types::{examples, map};
    use super::*;

    /// Decodes `values` for the documented example labelled `label`.
    fn decode(label: &str, values: &[ColumnData<'static>]) -> ArrayRef {
        let (_, column) = examples()
            .into_iter()
            .find(|(l, _)| *l == label)
            .unwrap_or_else(|| panic!("no example {label}"));
        let mut decoder = ColumnDecoder::new(label.into(), &map(&column).arrow).unwrap();
        for value in values {
            decoder.append(value).unwrap();
        }
        let array = decoder.finish();
        assert_eq!(array.data_type(), &map(&column).arrow, "{label}");
        assert_eq!(array.len(), values.len());
        assert!(array.is_null(values.len() - 1), "{label}: the last value is NULL");
        array
    }

    /// 2024-01-02 as days since 0001-01-01.
    const DAY: u32 = 738_886;
    /// 2024-01-02 00:00:00 UTC in microseconds.
    const DAY_MICROS: i64 = 1_704_153_600_000_000;

    #[test]
    fn integers_and_booleans() {
        let a = decode("bit", &[ColumnData::Bit(Some(true)), ColumnData::Bit(None)]);
        assert!(a.as_boolean().value(0));
        let a = decode("tinyint", &[ColumnData::U8(Some(255)), ColumnData::U8(None)]);
        assert_eq!(a.as_primitive::<Int16Type>().value(0), 255);
        let a = decode("smallint", &[ColumnData::I16(Some(-32768)), ColumnData::I16(None)]);
        assert_eq!(a.as_primitive::<Int16Type>().value(0), -32768);
        let a = decode("int", &[ColumnData::I32(Some(i32::MIN)), ColumnData::I32(None)]);
        assert_eq!(a.as_primitive::<Int32Type>().value(0), i32::MIN);
        let a = decode("bigint", &[ColumnData::I64(Some(i64::MAX)), ColumnData::I64(None)]);
        assert_eq!(a.as_primitive::<Int64Type>().value(0), i64::MAX);
        // rowversion travels as CAST(... AS bigint).
        let a = decode("rowversion", &[ColumnData::I64(Some(2001)), ColumnData::I64(None)]);
        assert_eq!(a.as_primitive::<Int64Type>().value(0), 2001);
    }

    #[test]
    fn decimals_and_money_are_exact() {
        let a = decode(
            "decimal(12,2)",
            &[
                ColumnData::Numeric(Some(Numeric::new_with_scale(-123_456_789_012, 2))),
                ColumnData::Numeric(Some(Numeric::new_with_scale(5, 0))),
                ColumnData::Numeric(None),
            ],
        );
        let d = a.as_primitive::<Decimal128Type>();
        assert_eq!((d.value(0), d.value(1)), (-123_456_789_012, 500));
        let max = 10_i128.pow(38) - 1;
        let a = decode(
            "numeric(38,10)",
            &[
                ColumnData::Numeric(Some(Numeric::new_with_scale(max, 10))),
                ColumnData::Numeric(None),
            ],
        );
        assert_eq!(a.as_primitive::<Decimal128Type>().value(0), max);
        // money travels as CAST(... AS decimal(19,4)).
        let a = decode(
            "money",
            &[
                ColumnData::Numeric(Some(Numeric::new_with_scale(9_223_372_036_854_775_807, 4))),
                ColumnData::Numeric(None),
            ],
        );
        assert_eq!(a.as_primitive::<Decimal128Type>().value(0), 9_223_372_036_854_775_807);
        assert!(rescale(12345, 4, 2).is_none(), "digits would be lost");
    }

    #[test]
    fn floats() {
        let a = decode("real", &[ColumnData::F32(Some(1.1)), ColumnData::F32(None)]);
        assert_eq!(a.as_primitive::<Float32Type>().value(0), 1.1_f32);
        let a = decode(
            "float",
            &[ColumnData::F64(Some(f64::MIN_POSITIVE)), ColumnData::F64(None)],
        );
        assert_eq!(a.as_primitive::<Float64Type>().value(0), f64::MIN_POSITIVE);
    }

    #[test]
    fn texts_binaries_guids_and_xml() {
        for label in [
            "char(10)",
            "varchar(max)",
            "nvarchar(100)",
            "ntext",
            "sql_variant",
            "hierarchyid",
        ] {
            let a = decode(
                label,
                &[ColumnData::String(Some("zażółć 😀".into())), ColumnData::String(None)],
            );
            assert_eq!(a.as_string::<i32>().value(0), "zażółć 😀", "{label}");
        }
        let guid = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
        let a = decode(
            "uniqueidentifier",
            &[ColumnData::Guid(Some(guid)), ColumnData::Guid(None)],
        );
        assert_eq!(a.as_string::<i32>().value(0), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
        let xml = XmlData::new("<a>1</a>");
        let a = decode(
            "xml",
            &[
                ColumnData::Xml(Some(std::borrow::Cow::Owned(xml))),
                ColumnData::Xml(None),
            ],
        );
        assert_eq!(a.as_string::<i32>().value(0), "<a>1</a>");
        for label in ["varbinary(max)", "binary(16)", "image", "geography", "geometry"] {
            let a = decode(
                label,
                &[
                    ColumnData::Binary(Some(vec![0, 1, 255].into())),
                    ColumnData::Binary(None),
                ],
            );
            assert_eq!(a.as_binary::<i32>().value(0), [0, 1, 255], "{label}");
        }
    }

    #[test]
    fn dates_and_times() {
        let a = decode(
            "date",
            &[ColumnData::Date(Some(Date::new(DAY))), ColumnData::Date(None)],
        );
        assert_eq!(a.as_primitive::<Date32Type>().value(0), 19_724);
        let a = decode("date", &[ColumnData::Date(Some(Date::new(0))), ColumnData::Date(None)]);
        assert_eq!(a.as_primitive::<Date32Type>().value(0), -719_162, "0001-01-01");
        let a = decode(
            "time(7)",
            &[
                ColumnData::Time(Some(Time::new(863_999_999_999, 7))),
                ColumnData::Time(None),
            ],
        );
        assert_eq!(a.as_primitive::<Time64MicrosecondType>().value(0), 86_399_999_999);
        let a = decode(
            "time(3)",
            &[ColumnData::Time(Some(Time::new(1_500, 3))), ColumnData::Time(None)],
        );
        assert_eq!(a.as_primitive::<Time64MicrosecondType>().value(0), 1_500_000);
    }

    #[test]
    fn timestamps_are_cut_to_microseconds() {
        let at = |increments, scale| DateTime2::new(Date::new(DAY), Time::new(increments, scale));
        let a = decode(
            "datetime2(7)",
            &[
                ColumnData::DateTime2(Some(at(1_234_567, 7))),
                ColumnData::DateTime2(None),
            ],
        );
        assert_eq!(
            a.as_primitive::<TimestampMicrosecondType>().value(0),
            DAY_MICROS + 123_456
        );
        let a = decode(
            "datetime2(3)",
            &[ColumnData::DateTime2(Some(at(1_234, 3))), ColumnData::DateTime2(None)],
        );
        assert_eq!(
            a.as_primitive::<TimestampMicrosecondType>().value(0),
            DAY_MICROS + 1_234_000
        );
        // 2024-01-02 in days since 1900-01-01; one tick is 1/300 s.
        let days_1900 = 45_291;
        let a = decode(
            "datetime",
            &[
                ColumnData::DateTime(Some(DateTime::new(days_1900, 1))),
                ColumnData::DateTime(None),
            ],
        );
        assert_eq!(
            a.as_primitive::<TimestampMicrosecondType>().value(0),
            DAY_MICROS + 3_333
        );
        let a = decode(
            "smalldatetime",
            &[
                ColumnData::SmallDateTime(Some(SmallDateTime::new(45_291, 61))),
                ColumnData::SmallDateTime(None),
            ],
        );
        assert_eq!(
            a.as_primitive::<TimestampMicrosecondType>().value(0),
            DAY_MICROS + 61 * 60_000_000
        );
        // The datetime2 of a datetimeoffset is UTC whatever the offset.
        let a = decode(
            "datetimeoffset(7)",
            &[
                ColumnData::DateTimeOffset(Some(DateTimeOffset::new(at(10, 7), 120))),
                ColumnData::DateTimeOffset(None),
            ],
        );
        let a = a.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(a.value(0), DAY_MICROS + 1);
        assert_eq!(a.timezone(), Some("UTC"));
    }

    #[test]
    fn a_value_of_another_kind_names_the_column_not_the_value() {
        let mut decoder = ColumnDecoder::new("column \"n\" of dbo.t".into(), &DataType::Int32).unwrap();
        let err = decoder
            .append(&ColumnData::String(Some("secret".into())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("column \"n\" of dbo.t") && err.contains("string"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
