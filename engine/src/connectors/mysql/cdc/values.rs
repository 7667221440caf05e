//! Binlog row values turned into the values a scan's `SELECT` delivers
//! (binary protocol, `source.rs::select_expression`), so that the scan's
//! [`ColumnDecoder`] decodes both and the first load and the stream agree.
//!
//! What differs in the binlog (checked against MariaDB 10.11): integers
//! arrive signed unless the table map carries signedness
//! (`binlog_row_metadata`), TIMESTAMP as seconds since the epoch, TIME as
//! a duration (the scan reads its text), YEAR 0 as "1900", BIT as its
//! bytes, ENUM as the label's number, SET as a bit mask, BINARY(n) without
//! its trailing zero bytes and spatial values with their SRID in front of
//! the WKB.

use chrono::{DateTime, Datelike, Timelike};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::Schema;
use mysql_async::Value;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;

use super::super::decode::ColumnDecoder;
use super::super::source::{SPATIAL, base_type};
use crate::cdc::ValueColumns;
use crate::contract::{CdcError, ColumnInfo};

/// One job column as the binlog carries it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BinlogColumn {
    pub(super) name: String,
    /// Its place in the binlog's row images (`ORDINAL_POSITION - 1`).
    pub(super) index: usize,
    /// The table-map types a value of this column can have.
    pub(super) types: &'static [ColumnType],
    shape: Shape,
}

/// How a binlog value becomes the value a scan reads.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    /// As is: decimals, floats, dates, datetimes, text, blobs, MariaDB's
    /// JSON (text).
    Plain,
    /// An integer of `bits` bits, unsigned when `unsigned`.
    Integer { bits: u32, unsigned: bool },
    /// BIT(n): big-endian bytes.
    Bit,
    /// TIMESTAMP: seconds (and microseconds) since the epoch, UTC.
    Timestamp,
    /// TIME with `fsp` fraction digits, read as text.
    Time { fsp: usize },
    /// YEAR: 0 arrives as 1900.
    Year,
    /// ENUM: the label's number, 1-based; 0 is the empty error value.
    Enum(Vec<String>),
    /// SET: bit `i` of a little-endian mask is label `i`.
    Set(Vec<String>),
    /// BINARY(n): padded with zero bytes to `n`.
    FixedBinary(usize),
    /// Spatial: a 4-byte SRID, then the WKB the scan reads.
    Spatial,
    /// MySQL's binary JSON, read as text.
    Json,
}

use ColumnType::*;

impl BinlogColumn {
    /// How the binlog carries `column`; the types whose binlog values
    /// cannot be read as the scan reads them are refused (`0A000`).
    pub(super) fn of(column: &ColumnInfo) -> Result<Self, CdcError> {
        let base = base_type(column);
        let unsigned = column
            .source_type
            .split_whitespace()
            .any(|word| word.eq_ignore_ascii_case("unsigned"));
        let integer = |bits: u32, types: &'static [ColumnType]| -> (Shape, &'static [ColumnType]) {
            (Shape::Integer { bits, unsigned }, types)
        };
        let (shape, types): (Shape, &'static [ColumnType]) = match base.as_str() {
            "tinyint" => integer(8, &[MYSQL_TYPE_TINY]),
            "smallint" => integer(16, &[MYSQL_TYPE_SHORT]),
            "mediumint" => integer(24, &[MYSQL_TYPE_INT24]),
            "int" => integer(32, &[MYSQL_TYPE_LONG]),
            "bigint" => integer(64, &[MYSQL_TYPE_LONGLONG]),
            "float" => (Shape::Plain, &[MYSQL_TYPE_FLOAT]),
            "double" => (Shape::Plain, &[MYSQL_TYPE_DOUBLE]),
            "decimal" => (Shape::Plain, &[MYSQL_TYPE_NEWDECIMAL]),
            "bit" => (Shape::Bit, &[MYSQL_TYPE_BIT]),
            "date" => (Shape::Plain, &[MYSQL_TYPE_NEWDATE, MYSQL_TYPE_DATE]),
            "datetime" => (Shape::Plain, &[MYSQL_TYPE_DATETIME2, MYSQL_TYPE_DATETIME]),
            "timestamp" => (Shape::Timestamp, &[MYSQL_TYPE_TIMESTAMP2, MYSQL_TYPE_TIMESTAMP]),
            "time" => {
                let fsp = fraction_digits(column);
                refuse_time_fraction(&column.name, fsp)?;
                (Shape::Time { fsp }, &[MYSQL_TYPE_TIME2, MYSQL_TYPE_TIME])
            }
            "year" => (Shape::Year, &[MYSQL_TYPE_YEAR]),
            "enum" => (Shape::Enum(labels(&column.source_type)), &[MYSQL_TYPE_ENUM]),
            "set" => (Shape::Set(labels(&column.source_type)), &[MYSQL_TYPE_SET]),
            "char" => (Shape::Plain, &[MYSQL_TYPE_STRING]),
            "binary" => (
                Shape::FixedBinary(width(&column.source_type).unwrap_or(1)),
                &[MYSQL_TYPE_STRING],
            ),
            "varchar" | "varbinary" => (Shape::Plain, &[MYSQL_TYPE_VARCHAR, MYSQL_TYPE_VAR_STRING]),
            "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                (Shape::Plain, &[MYSQL_TYPE_BLOB])
            }
            // MariaDB's JSON is LONGTEXT; MySQL's is binary.
            "json" => (Shape::Json, &[MYSQL_TYPE_BLOB, MYSQL_TYPE_JSON]),
            spatial if SPATIAL.contains(&spatial) => (Shape::Spatial, &[MYSQL_TYPE_GEOMETRY]),
            _ => {
                return Err(CdcError::Unsupported(format!(
                    "column \"{}\" has type {}, whose binlog values change data capture cannot read yet: leave it \
                     out of the job's columns",
                    column.name, column.source_type
                )));
            }
        };
        Ok(Self {
            name: column.name.clone(),
            index: (column.ordinal as usize).saturating_sub(1),
            types,
            shape,
        })
    }

    /// The value the scan reads for the binlog's `value` of this column.
    pub(super) fn normalize(&self, value: BinlogValue<'_>) -> Result<Value, CdcError> {
        let value = match value {
            BinlogValue::Value(value) => value,
            BinlogValue::Jsonb(_) if self.shape == Shape::Json => Value::try_from(value).map_err(|e| self.bad(e))?,
            other => {
                return Err(CdcError::Unsupported(format!(
                    "column \"{}\": a partial JSON update (binlog_row_value_options = PARTIAL_JSON) cannot be \
                     followed; {other:?}",
                    self.name
                )));
            }
        };
        if value == Value::NULL {
            return Ok(value);
        }
        Ok(match (&self.shape, value) {
            (Shape::Integer { bits, unsigned: true }, Value::Int(i)) if i < 0 => {
                Value::UInt((i128::from(i) + (1i128 << bits)) as u64)
            }
            (Shape::Bit, Value::Bytes(bytes)) => Value::UInt(bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b))),
            (Shape::Timestamp, Value::Int(seconds)) => timestamp(seconds, 0),
            (Shape::Timestamp, Value::Bytes(text)) => {
                let text = String::from_utf8_lossy(&text);
                let (seconds, micros) = text.split_once('.').unwrap_or((&text, "0"));
                match (seconds.parse(), micros.parse()) {
                    (Ok(seconds), Ok(micros)) => timestamp(seconds, micros),
                    _ => return Err(self.bad(format!("'{text}' is not a binlog timestamp"))),
                }
            }
            (Shape::Time { fsp }, Value::Time(negative, days, hours, minutes, seconds, micros)) => {
                let hours = days * 24 + u32::from(hours);
                let sign = if negative { "-" } else { "" };
                let mut text = format!("{sign}{hours:02}:{minutes:02}:{seconds:02}");
                if *fsp > 0 {
                    text.push('.');
                    text.push_str(&format!("{micros:06}")[..(*fsp).min(6)]);
                }
                Value::Bytes(text.into_bytes())
            }
            (Shape::Year, Value::Bytes(text)) => match std::str::from_utf8(&text).map(str::parse::<i64>) {
                Ok(Ok(1900)) => Value::Int(0),
                Ok(Ok(year)) => Value::Int(year),
                _ => return Err(self.bad("not a binlog YEAR")),
            },
            (Shape::Enum(labels), Value::Int(number)) => match number {
                0 => Value::Bytes(Vec::new()),
                n => match usize::try_from(n - 1).ok().and_then(|i| labels.get(i)) {
                    Some(label) => Value::Bytes(label.clone().into_bytes()),
                    None => return Err(self.bad(format!("ENUM value number {n} has no label"))),
                },
            },
            (Shape::Set(labels), Value::Bytes(mask)) => {
                let chosen: Vec<&str> = labels
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask.get(i / 8).is_some_and(|byte| byte & (1 << (i % 8)) != 0))
                    .map(|(_, label)| label.as_str())
                    .collect();
                Value::Bytes(chosen.join(",").into_bytes())
            }
            (Shape::FixedBinary(width), Value::Bytes(mut bytes)) => {
                if bytes.len() < *width {
                    bytes.resize(*width, 0);
                }
                Value::Bytes(bytes)
            }
            (Shape::Spatial, Value::Bytes(bytes)) => match bytes.get(4..) {
                Some(wkb) => Value::Bytes(wkb.to_vec()),
                None => return Err(self.bad("a spatial value shorter than its SRID")),
            },
            (_, value) => value,
        })
    }

    fn bad(&self, why: impl std::fmt::Display) -> CdcError {
        CdcError::Decode {
            column: self.name.clone(),
            message: why.to_string(),
        }
    }
}

/// `mysql_common` decodes a negative TIME(1..4) value with a fraction
/// wrongly (an unsigned subtraction that panics in debug builds and wraps
/// in release builds), and it decodes every column of a row image: a
/// table with such a column cannot be followed.
pub(super) fn refuse_time_fraction(column: &str, fsp: usize) -> Result<(), CdcError> {
    if (1..=4).contains(&fsp) {
        return Err(CdcError::Unsupported(format!(
            "column \"{column}\" is TIME({fsp}): the binlog decoder Sluice uses reads negative TIME values with 1 to \
             4 fraction digits wrongly, so a table with such a column cannot be followed yet (TIME, TIME(5) and \
             TIME(6) can)"
        )));
    }
    Ok(())
}

/// The fraction digits of a TIME, DATETIME or TIMESTAMP column: `time(3)`.
pub(super) fn fraction_digits(column: &ColumnInfo) -> usize {
    width(&column.source_type).unwrap_or(0)
}

/// The `(n)` after a type name.
fn width(source_type: &str) -> Option<usize> {
    let (_, rest) = source_type.split_once('(')?;
    rest.split_once(')')?.0.trim().parse().ok()
}

/// The labels of `enum('a','b')` or `set('a','b')`, as `COLUMN_TYPE`
/// writes them (a quote inside a label doubled).
fn labels(source_type: &str) -> Vec<String> {
    let Some((_, list)) = source_type.split_once('(') else {
        return Vec::new();
    };
    let mut labels = Vec::new();
    let mut chars = list.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                c => label.push(c),
            }
        }
        labels.push(label);
    }
    labels
}

/// A TIMESTAMP as the DATETIME the scan reads with `time_zone = '+00:00'`;
/// 0 is the zero date, which the scan refuses too.
fn timestamp(seconds: i64, micros: u32) -> Value {
    match DateTime::from_timestamp(seconds, micros * 1000) {
        Some(time) if seconds != 0 => Value::Date(
            time.year() as u16,
            time.month() as u8,
            time.day() as u8,
            time.hour() as u8,
            time.minute() as u8,
            time.second() as u8,
            micros,
        ),
        _ => Value::Date(0, 0, 0, 0, 0, 0, 0),
    }
}

/// The job's columns of change rows, decoded as the scan decodes them.
pub(super) struct MySqlColumns {
    decoders: Vec<ColumnDecoder>,
}

impl MySqlColumns {
    pub(super) fn new(description: &crate::contract::TableDescription) -> Result<Self, CdcError> {
        let every: Vec<usize> = (0..description.columns.len()).collect();
        let (decoders, _) = description.decoders(&every, ColumnDecoder::new)?;
        Ok(Self { decoders })
    }
}

impl ValueColumns for MySqlColumns {
    type Value = Value;

    fn append(&mut self, column: usize, value: Value) -> Result<(), CdcError> {
        self.decoders[column].append(&value).map_err(CdcError::from)
    }

    fn finish(&mut self, _columns: &Schema) -> Result<Vec<ArrayRef>, CdcError> {
        Ok(self.decoders.iter_mut().map(ColumnDecoder::finish).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::mysql::types::{MySqlColumnType, map};

    fn column(name: &str, data_type: &str, column_type: &str, ordinal: u32) -> ColumnInfo {
        let ty = MySqlColumnType {
            data_type: data_type.into(),
            column_type: column_type.into(),
            precision: None,
            scale: None,
        };
        ColumnInfo {
            name: name.into(),
            ordinal,
            source_type: column_type.into(),
            nullable: true,
            default: None,
            primary_key_position: None,
            indexed: false,
            mapping: map(&ty),
        }
    }

    fn normalized(column_type: &str, value: Value) -> Value {
        let data_type = column_type.split(['(', ' ']).next().unwrap();
        BinlogColumn::of(&column(data_type, data_type, column_type, 1))
            .unwrap()
            .normalize(BinlogValue::Value(value))
            .unwrap()
    }

    fn bytes(text: &str) -> Value {
        Value::Bytes(text.as_bytes().to_vec())
    }

    #[test]
    fn binlog_values_become_what_the_scan_reads() {
        // Values as MariaDB 10.11 logged them (binlog_row_metadata = NO_LOG).
        assert_eq!(
            normalized("int(10) unsigned", Value::Int(-1)),
            Value::UInt(4_294_967_295)
        );
        assert_eq!(normalized("bigint(20) unsigned", Value::Int(-1)), Value::UInt(u64::MAX));
        assert_eq!(normalized("tinyint(3) unsigned", Value::Int(-1)), Value::UInt(255));
        assert_eq!(normalized("tinyint(4)", Value::Int(-1)), Value::Int(-1));
        assert_eq!(normalized("bit(5)", Value::Bytes(vec![0x15])), Value::UInt(21));
        assert_eq!(
            normalized("bit(64)", Value::Bytes(vec![0xff; 8])),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            normalized("timestamp(3)", bytes("1704164645.123000")),
            Value::Date(2024, 1, 2, 3, 4, 5, 123_000)
        );
        assert_eq!(
            normalized("timestamp", bytes("1714903200")),
            Value::Date(2024, 5, 5, 10, 0, 0, 0)
        );
        assert_eq!(normalized("timestamp", bytes("0")), Value::Date(0, 0, 0, 0, 0, 0, 0));
        assert_eq!(
            normalized("time", Value::Time(true, 0, 12, 30, 0, 0)),
            bytes("-12:30:00")
        );
        assert_eq!(
            normalized("time(6)", Value::Time(false, 34, 22, 59, 59, 500_000)),
            bytes("838:59:59.500000")
        );
        assert_eq!(
            normalized("time(5)", Value::Time(true, 0, 1, 2, 3, 4)),
            bytes("-01:02:03.00000")
        );
        assert_eq!(normalized("year(4)", bytes("1900")), Value::Int(0));
        assert_eq!(normalized("year(4)", bytes("2024")), Value::Int(2024));
        assert_eq!(normalized("enum('small','it''s')", Value::Int(2)), bytes("it's"));
        assert_eq!(normalized("enum('small','large')", Value::Int(0)), bytes(""));
        assert_eq!(normalized("set('a','b','c')", Value::Bytes(vec![5])), bytes("a,c"));
        assert_eq!(normalized("set('a','b','c')", Value::Bytes(vec![0])), bytes(""));
        assert_eq!(normalized("binary(4)", bytes("x")), Value::Bytes(vec![b'x', 0, 0, 0]));
        assert_eq!(
            normalized("point", Value::Bytes(vec![0, 0, 0, 0, 1, 1])),
            Value::Bytes(vec![1, 1])
        );
        assert_eq!(normalized("varchar(10)", bytes("yz")), bytes("yz"));
        assert_eq!(normalized("int(11)", Value::NULL), Value::NULL);
    }

    #[test]
    fn columns_the_binlog_cannot_be_read_for_are_refused_by_name() {
        for (data_type, column_type) in [("time", "time(2)"), ("uuid", "uuid"), ("inet6", "inet6")] {
            let err = BinlogColumn::of(&column("c", data_type, column_type, 3)).unwrap_err();
            assert_eq!(err.sqlstate(), Some("0A000"));
            assert!(err.to_string().contains("column \"c\""), "{err}");
        }
        let ok = BinlogColumn::of(&column("c", "time", "time(6)", 3)).unwrap();
        assert_eq!(ok.index, 2);
        assert_eq!(ok.types, &[MYSQL_TYPE_TIME2, MYSQL_TYPE_TIME]);
    }

    #[test]
    fn a_value_of_the_wrong_kind_names_its_column() {
        let column = BinlogColumn::of(&column("e", "enum", "enum('a')", 1)).unwrap();
        let err = column.normalize(BinlogValue::Value(Value::Int(5))).unwrap_err();
        assert!(
            matches!(&err, CdcError::Decode { column, .. } if column == "e"),
            "{err}"
        );
    }
}
