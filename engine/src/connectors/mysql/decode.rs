//! MySQL values (binary protocol) into Arrow builders, following
//! [`type_mapping::mysql`](crate::type_mapping::mysql): exact or refused,
//! never rounded, clamped or replaced by NULL.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder, Float32Builder,
    Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit, i256};
use mysql_async::Value;

use crate::contract::{SourceError, excerpt};

/// A value as an error message shows it: at most an excerpt.
fn shown(value: &Value) -> String {
    excerpt(&format!("{value:?}"))
}

/// SQLSTATE of a value that is not a valid date or time.
const INVALID_DATETIME: &str = "22007";
/// SQLSTATE of a value out of the target type's range.
const OUT_OF_RANGE: &str = "22003";
/// SQLSTATE of text that is not valid UTF-8.
const NOT_UTF8: &str = "22021";
/// SQLSTATE of a value of an unexpected kind.
const DATA_EXCEPTION: &str = "22000";

/// The days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Decodes one result column into an Arrow array.
pub(super) struct ColumnDecoder {
    /// How errors name the column, e.g. `column "d" of shop.t`.
    label: String,
    builder: Builder,
}

enum Builder {
    Boolean(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal128(Decimal128Builder, u8, i8),
    Decimal256(Decimal256Builder, u8, i8),
    Date32(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
}

impl ColumnDecoder {
    /// A decoder into `arrow`, one of the types the MySQL mapping produces.
    pub(super) fn new(label: String, arrow: &DataType) -> Result<Self, SourceError> {
        let decimal_error = |e: datafusion::arrow::error::ArrowError| SourceError::Query {
            code: None,
            message: format!("{label}: {e}"),
        };
        let builder = match arrow {
            DataType::Boolean => Builder::Boolean(BooleanBuilder::new()),
            DataType::Int8 => Builder::Int8(Int8Builder::new()),
            DataType::Int16 => Builder::Int16(Int16Builder::new()),
            DataType::Int32 => Builder::Int32(Int32Builder::new()),
            DataType::Int64 => Builder::Int64(Int64Builder::new()),
            DataType::Float32 => Builder::Float32(Float32Builder::new()),
            DataType::Float64 => Builder::Float64(Float64Builder::new()),
            DataType::Decimal128(p, s) => Builder::Decimal128(
                Decimal128Builder::new()
                    .with_precision_and_scale(*p, *s)
                    .map_err(decimal_error)?,
                *p,
                *s,
            ),
            DataType::Decimal256(p, s) => Builder::Decimal256(
                Decimal256Builder::new()
                    .with_precision_and_scale(*p, *s)
                    .map_err(decimal_error)?,
                *p,
                *s,
            ),
            DataType::Date32 => Builder::Date32(Date32Builder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone()))
            }
            DataType::Utf8 => Builder::Utf8(StringBuilder::new()),
            DataType::Binary => Builder::Binary(BinaryBuilder::new()),
            other => {
                return Err(SourceError::Query {
                    code: None,
                    message: format!("{label}: MySQL values cannot be read as Arrow {other}"),
                });
            }
        };
        Ok(Self { label, builder })
    }

    /// Appends one value, or explains why it cannot be represented.
    pub(super) fn append(&mut self, value: &Value) -> Result<(), SourceError> {
        if *value == Value::NULL {
            self.append_null();
            return Ok(());
        }
        let label = &self.label;
        let error = |code: &str, what: String| SourceError::Query {
            code: Some(code.to_owned()),
            message: format!("{label}: {what}"),
        };
        let unexpected = || error(DATA_EXCEPTION, format!("unexpected value {}", shown(value)));
        let out_of_range = |target: &str| error(OUT_OF_RANGE, format!("{} does not fit {target}", shown(value)));
        match &mut self.builder {
            Builder::Boolean(b) => b.append_value(integer(value).ok_or_else(unexpected)? != 0),
            Builder::Int8(b) => b.append_value(fit(value).ok_or_else(|| out_of_range("Int8"))?),
            Builder::Int16(b) => b.append_value(fit(value).ok_or_else(|| out_of_range("Int16"))?),
            Builder::Int32(b) => b.append_value(fit(value).ok_or_else(|| out_of_range("Int32"))?),
            Builder::Int64(b) => b.append_value(fit(value).ok_or_else(|| out_of_range("Int64"))?),
            Builder::Float32(b) => match value {
                Value::Float(f) => b.append_value(*f),
                _ => return Err(unexpected()),
            },
            Builder::Float64(b) => match value {
                Value::Double(f) => b.append_value(*f),
                Value::Float(f) => b.append_value(f64::from(*f)),
                _ => return Err(unexpected()),
            },
            Builder::Decimal128(b, precision, scale) => match value {
                Value::Bytes(text) if let Some(unscaled) = unscaled_i128(text, *precision, *scale) => {
                    b.append_value(unscaled)
                }
                // Anything else, and every error, the exact (slower) way.
                _ => {
                    let digits = unscaled(value, *precision, *scale).map_err(|why| error(OUT_OF_RANGE, why))?;
                    b.append_value(i128::from_str(&digits).map_err(|_| out_of_range("Decimal128"))?);
                }
            },
            Builder::Decimal256(b, precision, scale) => {
                let digits = unscaled(value, *precision, *scale).map_err(|why| error(OUT_OF_RANGE, why))?;
                b.append_value(i256::from_string(&digits).ok_or_else(|| out_of_range("Decimal256"))?);
            }
            Builder::Date32(b) => {
                let date = datetime(value).map_err(|why| error(INVALID_DATETIME, why))?.date();
                b.append_value(date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE);
            }
            Builder::Timestamp(b) => {
                let time = datetime(value).map_err(|why| error(INVALID_DATETIME, why))?;
                b.append_value(time.and_utc().timestamp_micros());
            }
            Builder::Utf8(b) => match value {
                Value::Bytes(bytes) => b.append_value(
                    std::str::from_utf8(bytes).map_err(|e| error(NOT_UTF8, format!("not valid UTF-8 ({e})")))?,
                ),
                Value::Int(i) => b.append_value(i.to_string()),
                Value::UInt(u) => b.append_value(u.to_string()),
                _ => return Err(unexpected()),
            },
            Builder::Binary(b) => match value {
                Value::Bytes(bytes) => b.append_value(bytes),
                _ => return Err(unexpected()),
            },
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match &mut self.builder {
            Builder::Boolean(b) => b.append_null(),
            Builder::Int8(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Decimal128(b, ..) => b.append_null(),
            Builder::Decimal256(b, ..) => b.append_null(),
            Builder::Date32(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
        }
    }

    /// The values appended since the last call, as an array.
    pub(super) fn finish(&mut self) -> ArrayRef {
        match &mut self.builder {
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Int8(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Decimal128(b, ..) => Arc::new(b.finish()),
            Builder::Decimal256(b, ..) => Arc::new(b.finish()),
            Builder::Date32(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
        }
    }
}

/// An integer value (`col + 0` of a BIT is one too).
fn integer(value: &Value) -> Option<i128> {
    match value {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        _ => None,
    }
}

/// An integer value in a narrower integer type, when it fits.
fn fit<T: TryFrom<i128>>(value: &Value) -> Option<T> {
    T::try_from(integer(value)?).ok()
}

/// The unscaled digits (with sign) of a decimal value at `scale`, checked
/// against `precision`. Decimal text is parsed exactly; fraction digits
/// beyond `scale` are refused unless they are zeros.
fn unscaled(value: &Value, precision: u8, scale: i8) -> Result<String, String> {
    let text = match value {
        Value::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => integer(other)
            .ok_or_else(|| format!("{} is not a decimal", shown(other)))?
            .to_string(),
    };
    let not_decimal = || format!("'{text}' is not a decimal number");
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let (integer_part, fraction) = body.split_once('.').unwrap_or((body, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (integer_part.is_empty() && fraction.is_empty()) || !all_digits(integer_part) || !all_digits(fraction) {
        return Err(not_decimal());
    }
    let scale = usize::try_from(scale).map_err(|_| format!("negative scale {scale}"))?;
    let (kept, dropped) = fraction.split_at(fraction.len().min(scale));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!("'{text}' has more than {scale} decimal places"));
    }
    let integer_part = integer_part.trim_start_matches('0');
    if integer_part.len() + scale > usize::from(precision) {
        return Err(format!("'{text}' does not fit decimal({precision}, {scale})"));
    }
    let digits = format!("{integer_part}{kept:0<scale$}");
    let digits = digits.trim_start_matches('0');
    Ok(match (negative, digits.is_empty()) {
        (_, true) => "0".to_owned(),
        (true, false) => format!("-{digits}"),
        (false, false) => digits.to_owned(),
    })
}

/// [`unscaled`] of decimal text straight into an `i128`, with no string
/// built (a `decimal` column is read as text): `None` for whatever
/// `unscaled` would refuse or say more about, which the caller then reads
/// that way.
fn unscaled_i128(text: &[u8], precision: u8, scale: i8) -> Option<i128> {
    let scale = usize::try_from(scale).ok()?;
    let (negative, body) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, text),
    };
    let (integer_part, fraction) = match body.iter().position(|&b| b == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &[][..]),
    };
    if integer_part.is_empty() && fraction.is_empty() {
        return None;
    }
    let (kept, dropped) = fraction.split_at(fraction.len().min(scale));
    if dropped.iter().any(|&b| b != b'0') {
        return None;
    }
    let significant = integer_part.iter().skip_while(|&&b| b == b'0').count();
    if significant + scale > usize::from(precision) {
        return None;
    }
    let padding = std::iter::repeat_n(&b'0', scale - kept.len());
    let mut value: i128 = 0;
    for &digit in integer_part.iter().chain(kept).chain(padding) {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i128::from(digit - b'0'))?;
    }
    Some(if negative { -value } else { value })
}

/// A DATE, DATETIME or TIMESTAMP value; zero and invalid dates are refused.
fn datetime(value: &Value) -> Result<NaiveDateTime, String> {
    let Value::Date(year, month, day, hour, minute, second, micros) = *value else {
        return Err(format!("unexpected value {}", shown(value)));
    };
    let text = format!("{year:04}-{month:02}-{day:02}");
    if year == 0 && month == 0 && day == 0 {
        return Err(format!(
            "'{text}' is a zero date, which is not a date: fix the row or exclude it with a filter"
        ));
    }
    NaiveDate::from_ymd_opt(i32::from(year), u32::from(month), u32::from(day))
        .and_then(|date| date.and_hms_micro_opt(u32::from(hour), u32::from(minute), u32::from(second), micros))
        .ok_or_else(|| format!("'{text}' is not a valid date (zero month or day, or an invalid day)"))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Date32Type, Decimal256Type, TimestampMicrosecondType};

    use super::*;

    fn decoder(arrow: DataType) -> ColumnDecoder {
        ColumnDecoder::new("column \"c\" of s.t".into(), &arrow).unwrap()
    }

    fn parts(err: SourceError) -> (Option<String>, String) {
        match err {
            SourceError::Query { code, message } => (code, message),
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        /// The fast path reads what the exact one does, and leaves to it
        /// whatever it refuses.
        #[test]
        fn decimal_text_reads_the_same_both_ways(
            text in "[-+]?[0-9]{0,40}(\\.[0-9]{0,12})?|[-+0-9.a ]{0,8}",
            precision in 1u8..=38,
            scale in 0i8..=12,
        ) {
            let exact = unscaled(&Value::Bytes(text.clone().into_bytes()), precision, scale)
                .ok()
                .and_then(|digits| i128::from_str(&digits).ok());
            match unscaled_i128(text.as_bytes(), precision, scale) {
                Some(fast) => proptest::prop_assert_eq!(Some(fast), exact),
                None => proptest::prop_assert_eq!(exact, None),
            }
        }
    }

    #[test]
    fn decimals_are_parsed_exactly() {
        assert_eq!(unscaled(&Value::Bytes(b"-123.45".to_vec()), 12, 2), Ok("-12345".into()));
        assert_eq!(unscaled(&Value::Bytes(b"0.5".to_vec()), 12, 3), Ok("500".into()));
        assert_eq!(unscaled(&Value::Bytes(b"-0.00".to_vec()), 12, 2), Ok("0".into()));
        assert_eq!(unscaled(&Value::Bytes(b"0".to_vec()), 12, 0), Ok("0".into()));
        assert_eq!(unscaled(&Value::Bytes(b"7.000".to_vec()), 5, 0), Ok("7".into()));
        assert_eq!(
            unscaled(&Value::UInt(u64::MAX), 20, 0),
            Ok("18446744073709551615".into())
        );
        assert_eq!(unscaled(&Value::Int(-3), 5, 2), Ok("-300".into()));
        assert!(unscaled(&Value::Bytes(b"1.25".to_vec()), 5, 1).is_err(), "would round");
        assert!(unscaled(&Value::Bytes(b"123".to_vec()), 3, 1).is_err(), "precision");
        assert!(unscaled(&Value::Bytes(b"1e5".to_vec()), 10, 0).is_err());
        assert!(unscaled(&Value::Bytes(b"-".to_vec()), 10, 0).is_err());

        let mut d = decoder(DataType::Decimal256(65, 30));
        let max = format!("{}.{}", "9".repeat(35), "9".repeat(30));
        d.append(&Value::Bytes(max.into_bytes())).unwrap();
        let array = d.finish();
        let array = array.as_primitive::<Decimal256Type>();
        assert_eq!(array.value(0).to_string(), "9".repeat(65));
        assert_eq!(array.data_type(), &DataType::Decimal256(65, 30));
    }

    #[test]
    fn integers_must_fit() {
        let mut d = decoder(DataType::Int8);
        d.append(&Value::Int(-128)).unwrap();
        let (code, message) = parts(d.append(&Value::Int(128)).unwrap_err());
        assert_eq!(code.as_deref(), Some(OUT_OF_RANGE));
        assert_eq!(message, "column \"c\" of s.t: Int(128) does not fit Int8");
        let mut b = decoder(DataType::Boolean);
        b.append(&Value::Int(2)).unwrap();
        b.append(&Value::Int(0)).unwrap();
        b.append(&Value::NULL).unwrap();
        let array = b.finish();
        let array = array.as_boolean();
        assert_eq!((array.value(0), array.value(1), array.is_null(2)), (true, false, true));
    }

    #[test]
    fn zero_and_invalid_dates_are_refused() {
        let mut d = decoder(DataType::Date32);
        d.append(&Value::Date(1970, 1, 2, 0, 0, 0, 0)).unwrap();
        let (code, message) = parts(d.append(&Value::Date(0, 0, 0, 0, 0, 0, 0)).unwrap_err());
        assert_eq!(code.as_deref(), Some(INVALID_DATETIME));
        assert!(
            message.starts_with("column \"c\" of s.t: '0000-00-00' is a zero date"),
            "{message}"
        );
        let (_, message) = parts(d.append(&Value::Date(2024, 2, 0, 0, 0, 0, 0)).unwrap_err());
        assert!(message.contains("'2024-02-00' is not a valid date"), "{message}");
        assert_eq!(d.finish().as_primitive::<Date32Type>().value(0), 1);

        let mut t = decoder(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        t.append(&Value::Date(1970, 1, 1, 0, 0, 1, 5)).unwrap();
        let array = t.finish();
        assert_eq!(array.as_primitive::<TimestampMicrosecondType>().value(0), 1_000_005);
        assert_eq!(
            array.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }

    #[test]
    fn text_must_be_utf8() {
        let mut d = decoder(DataType::Utf8);
        d.append(&Value::Bytes("😀".as_bytes().to_vec())).unwrap();
        let (code, _) = parts(d.append(&Value::Bytes(vec![0xff])).unwrap_err());
        assert_eq!(code.as_deref(), Some(NOT_UTF8));
        assert_eq!(d.finish().as_string::<i32>().value(0), "😀");
    }
}
