//! Decoding `COPY ... TO STDOUT (FORMAT binary)` straight into Arrow
//! builders.
//!
//! Data arrives in chunks that need not align with rows; [`CopyDecoder`]
//! keeps the unfinished tail and cuts a record batch every
//! [`BATCH_ROWS`] rows. Values Arrow cannot hold exactly (NaN, infinities,
//! multi-dimensional arrays, ...) are errors naming the column, never NULLs
//! or clamped values.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder, ListArray,
    NullBufferBuilder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, FieldRef, IntervalMonthDayNano, IntervalUnit, SchemaRef, TimeUnit, i256};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::contract::excerpt;

/// Rows per record batch a scan emits.
pub(crate) const BATCH_ROWS: usize = 8192;

/// A batch is also cut once its rows hold this many bytes, so that no text
/// or binary column can overflow Arrow's 32-bit offsets (a single
/// PostgreSQL value is at most 1 GiB).
const BATCH_BYTES: usize = 256 << 20;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Header flag: every row carries an OID (never asked for).
const FLAG_OIDS: u32 = 1 << 16;

/// From 1970-01-01 (Arrow) to 2000-01-01 (PostgreSQL).
const EPOCH_DAYS: i32 = 10_957;
const EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The binary format a column arrives in: the PostgreSQL type of its
/// expression in the scan's `SELECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wire {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    /// `text`, `varchar`, `bpchar`, `name`, `json`: UTF-8 bytes.
    Text,
    /// A version byte, then the text.
    Jsonb,
    /// The text of a numeric (`::text`): NaN and infinities are refused.
    NumericText,
    Bytea,
    Date,
    /// `timestamp` and `timestamptz` alike: microseconds since 2000-01-01.
    Timestamp,
    Time,
    Interval,
    /// A one-dimensional array of the element format.
    Array(Box<Wire>),
}

/// Why a scan's data could not become Arrow batches.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("column \"{column}\": {problem}")]
    Value { column: String, problem: Problem },
    #[error("column \"{column}\": PostgreSQL {wire:?} values cannot be read as Arrow {arrow}")]
    Unsupported {
        column: String,
        wire: Wire,
        arrow: DataType,
    },
    #[error("malformed COPY data from PostgreSQL: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

impl DecodeError {
    /// The SQLSTATE that describes the error best.
    pub(crate) fn sqlstate(&self) -> &'static str {
        match self {
            DecodeError::Value { problem, .. } => problem.sqlstate(),
            DecodeError::Unsupported { .. } => "0A000",
            DecodeError::Malformed(_) => "08P01",
            DecodeError::Arrow(_) => "XX000",
        }
    }
}

/// What is wrong with one value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Problem {
    #[error("{value} cannot be represented as {target}; such values are refused")]
    Unrepresentable { value: String, target: String },
    #[error("a {0}-dimensional array cannot be loaded (only one-dimensional arrays can); such values are refused")]
    MultiDimensional(i32),
    #[error("an array with a NULL element cannot be loaded; such values are refused")]
    NullElement,
    #[error("the text is not valid UTF-8")]
    InvalidUtf8,
    #[error("malformed binary {0} value")]
    Malformed(&'static str),
}

impl Problem {
    fn sqlstate(&self) -> &'static str {
        match self {
            Problem::Unrepresentable { .. } => "22003",
            Problem::MultiDimensional(_) => "2202E",
            Problem::NullElement => "22004",
            Problem::InvalidUtf8 => "22021",
            Problem::Malformed(_) => "08P01",
        }
    }
}

/// `value` (shown as an excerpt) cannot become `target`.
fn unrepresentable(value: impl Into<String>, target: impl Into<String>) -> Problem {
    Problem::Unrepresentable {
        value: excerpt(&value.into()),
        target: target.into(),
    }
}

/// Turns the binary rows of one `COPY` into record batches of `schema`.
pub(crate) struct CopyDecoder {
    schema: SchemaRef,
    columns: Vec<Decoder>,
    buffer: Vec<u8>,
    /// Where the unread part of `buffer` starts.
    position: usize,
    stage: Stage,
    batch_rows: usize,
    /// Rows and bytes in the batch being built.
    rows: usize,
    bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Rows,
    /// The trailer was read.
    Done,
}

/// What the next bytes of the buffer hold.
enum Next {
    /// A complete row of this many bytes.
    Row(usize),
    Trailer,
    /// Not enough data yet.
    Incomplete,
}

impl CopyDecoder {
    /// A decoder for rows whose columns arrive as `wires` and become the
    /// fields of `schema`, in batches of `batch_rows` rows.
    pub(crate) fn new(schema: SchemaRef, wires: &[Wire], batch_rows: usize) -> Result<Self, DecodeError> {
        let columns = schema
            .fields()
            .iter()
            .zip(wires)
            .map(|(field, wire)| {
                Decoder::new(wire, field.data_type()).ok_or_else(|| DecodeError::Unsupported {
                    column: field.name().clone(),
                    wire: wire.clone(),
                    arrow: field.data_type().clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if columns.len() != schema.fields().len() {
            return Err(DecodeError::Malformed("a column without a wire format"));
        }
        Ok(Self {
            schema,
            columns,
            buffer: Vec::new(),
            position: 0,
            stage: Stage::Header,
            batch_rows: batch_rows.max(1),
            rows: 0,
            bytes: 0,
        })
    }

    /// Adds the next chunk of `COPY` data.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if self.position > 0 {
            self.buffer.drain(..self.position);
            self.position = 0;
        }
        self.buffer.extend_from_slice(chunk);
    }

    /// Decodes buffered rows; returns a batch once one is full, `None`
    /// when more data is needed.
    pub(crate) fn next_batch(&mut self) -> Result<Option<RecordBatch>, DecodeError> {
        loop {
            match self.stage {
                Stage::Header => {
                    if !self.read_header()? {
                        return Ok(None);
                    }
                }
                Stage::Rows => {
                    if self.rows >= self.batch_rows || self.bytes >= BATCH_BYTES {
                        return self.flush().map(Some);
                    }
                    match self.next_tuple()? {
                        Next::Row(length) => self.decode_row(length)?,
                        Next::Trailer => {
                            self.position += 2;
                            self.stage = Stage::Done;
                        }
                        Next::Incomplete => return Ok(None),
                    }
                }
                Stage::Done => {
                    if self.position < self.buffer.len() {
                        return Err(DecodeError::Malformed("data after the trailer"));
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// Ends the data, once [`CopyDecoder::next_batch`] asks for more and
    /// there is none: the last, partly filled batch, if it has rows.
    pub(crate) fn finish(mut self) -> Result<Option<RecordBatch>, DecodeError> {
        if self.stage != Stage::Done {
            return Err(DecodeError::Malformed("data ended before the trailer"));
        }
        if self.rows == 0 {
            return Ok(None);
        }
        self.flush().map(Some)
    }

    /// Reads the header; `false` when it is not complete yet.
    fn read_header(&mut self) -> Result<bool, DecodeError> {
        let data = &self.buffer[self.position..];
        let fixed = SIGNATURE.len() + 8;
        if data.len() < fixed {
            return Ok(false);
        }
        if &data[..SIGNATURE.len()] != SIGNATURE {
            return Err(DecodeError::Malformed("bad signature"));
        }
        let mut reader = Reader::new(&data[SIGNATURE.len()..fixed]);
        let (flags, extension) = (reader.u32(), reader.u32());
        let (Some(flags), Some(extension)) = (flags, extension) else {
            return Err(DecodeError::Malformed("short header"));
        };
        if flags & FLAG_OIDS != 0 {
            return Err(DecodeError::Malformed("rows carry OIDs"));
        }
        let length = fixed + extension as usize;
        if data.len() < length {
            return Ok(false);
        }
        self.position += length;
        self.stage = Stage::Rows;
        Ok(true)
    }

    fn next_tuple(&self) -> Result<Next, DecodeError> {
        let data = &self.buffer[self.position..];
        let mut reader = Reader::new(data);
        let Some(count) = reader.i16() else {
            return Ok(Next::Incomplete);
        };
        if count == -1 {
            return Ok(Next::Trailer);
        }
        if usize::try_from(count).ok() != Some(self.columns.len()) {
            return Err(DecodeError::Malformed("unexpected number of fields in a row"));
        }
        for _ in 0..count {
            let Some(length) = reader.i32() else {
                return Ok(Next::Incomplete);
            };
            if length == -1 {
                continue;
            }
            let length = usize::try_from(length).map_err(|_| DecodeError::Malformed("negative field length"))?;
            if reader.take(length).is_none() {
                return Ok(Next::Incomplete);
            }
        }
        Ok(Next::Row(reader.offset))
    }

    /// Appends the complete row of `length` bytes at the read position.
    fn decode_row(&mut self, length: usize) -> Result<(), DecodeError> {
        let mut reader = Reader::new(&self.buffer[self.position + 2..self.position + length]);
        for (decoder, field) in self.columns.iter_mut().zip(self.schema.fields()) {
            let value = match reader.i32() {
                Some(-1) => None,
                Some(n) => reader.take(n as usize),
                None => None,
            };
            decoder.append(value).map_err(|problem| DecodeError::Value {
                column: field.name().clone(),
                problem,
            })?;
        }
        self.position += length;
        self.rows += 1;
        self.bytes += length;
        Ok(())
    }

    fn flush(&mut self) -> Result<RecordBatch, DecodeError> {
        let arrays = self
            .columns
            .iter_mut()
            .map(Decoder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)?;
        self.rows = 0;
        self.bytes = 0;
        Ok(batch)
    }
}

/// Big-endian reads from a byte slice; `None` past its end.
struct Reader<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, offset: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.offset.checked_add(n)?;
        let bytes = self.data.get(self.offset..end)?;
        self.offset = end;
        Some(bytes)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn i16(&mut self) -> Option<i16> {
        self.array().map(i16::from_be_bytes)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }

    fn is_empty(&self) -> bool {
        self.offset == self.data.len()
    }
}

/// A value of exactly `N` bytes.
fn exact<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N], Problem> {
    bytes.try_into().map_err(|_| Problem::Malformed(what))
}

fn utf8(bytes: &[u8]) -> Result<&str, Problem> {
    std::str::from_utf8(bytes).map_err(|_| Problem::InvalidUtf8)
}

/// One column's builder, with the wire format it decodes.
enum Decoder {
    Bool(BooleanBuilder),
    Int2(Int16Builder),
    Int4(Int32Builder),
    Int8(Int64Builder),
    Oid(Int64Builder),
    Float4(Float32Builder),
    Float8(Float64Builder),
    /// A Decimal128 of precision up to 18, accumulated in `i64`.
    Decimal64(Decimal128Builder, NumericTarget<i64>),
    Decimal128(Decimal128Builder, NumericTarget<i128>),
    Decimal256(Decimal256Builder, NumericTarget<i256>),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    NumericText(StringBuilder),
    Bytea(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    Array(Box<ArrayDecoder>),
}

impl Decoder {
    /// A decoder of `wire` values into `arrow` values, if it can be done.
    fn new(wire: &Wire, arrow: &DataType) -> Option<Self> {
        use DataType as D;
        let rows = BATCH_ROWS;
        Some(match (wire, arrow) {
            (Wire::Bool, D::Boolean) => Decoder::Bool(BooleanBuilder::with_capacity(rows)),
            (Wire::Int2, D::Int16) => Decoder::Int2(Int16Builder::with_capacity(rows)),
            (Wire::Int4, D::Int32) => Decoder::Int4(Int32Builder::with_capacity(rows)),
            (Wire::Int8, D::Int64) => Decoder::Int8(Int64Builder::with_capacity(rows)),
            (Wire::Oid, D::Int64) => Decoder::Oid(Int64Builder::with_capacity(rows)),
            (Wire::Float4, D::Float32) => Decoder::Float4(Float32Builder::with_capacity(rows)),
            (Wire::Float8, D::Float64) => Decoder::Float8(Float64Builder::with_capacity(rows)),
            (Wire::Numeric, D::Decimal128(precision, scale)) if *precision <= MAX_I64_PRECISION => Decoder::Decimal64(
                Decimal128Builder::with_capacity(rows)
                    .with_precision_and_scale(*precision, *scale)
                    .ok()?,
                NumericTarget::new(*precision, *scale, arrow)?,
            ),
            (Wire::Numeric, D::Decimal128(precision, scale)) => Decoder::Decimal128(
                Decimal128Builder::with_capacity(rows)
                    .with_precision_and_scale(*precision, *scale)
                    .ok()?,
                NumericTarget::new(*precision, *scale, arrow)?,
            ),
            (Wire::Numeric, D::Decimal256(precision, scale)) => Decoder::Decimal256(
                Decimal256Builder::with_capacity(rows)
                    .with_precision_and_scale(*precision, *scale)
                    .ok()?,
                NumericTarget::new(*precision, *scale, arrow)?,
            ),
            (Wire::Text, D::Utf8) => Decoder::Text(StringBuilder::new()),
            (Wire::Jsonb, D::Utf8) => Decoder::Jsonb(StringBuilder::new()),
            (Wire::NumericText, D::Utf8) => Decoder::NumericText(StringBuilder::new()),
            (Wire::Bytea, D::Binary) => Decoder::Bytea(BinaryBuilder::new()),
            (Wire::Date, D::Date32) => Decoder::Date(Date32Builder::with_capacity(rows)),
            (Wire::Timestamp, D::Timestamp(TimeUnit::Microsecond, zone)) => {
                Decoder::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone_opt(zone.clone()))
            }
            (Wire::Time, D::Time64(TimeUnit::Microsecond)) => {
                Decoder::Time(Time64MicrosecondBuilder::with_capacity(rows))
            }
            (Wire::Interval, D::Interval(IntervalUnit::MonthDayNano)) => {
                Decoder::Interval(IntervalMonthDayNanoBuilder::with_capacity(rows))
            }
            (Wire::Array(element), D::List(field)) => Decoder::Array(Box::new(ArrayDecoder {
                field: field.clone(),
                elements: Decoder::new(element, field.data_type())?,
                offsets: vec![0],
                nulls: NullBufferBuilder::new(rows),
            })),
            _ => return None,
        })
    }

    fn append(&mut self, value: Option<&[u8]>) -> Result<(), Problem> {
        let Some(bytes) = value else {
            self.append_null();
            return Ok(());
        };
        match self {
            Decoder::Bool(b) => b.append_value(exact::<1>(bytes, "boolean")?[0] != 0),
            Decoder::Int2(b) => b.append_value(i16::from_be_bytes(exact(bytes, "smallint")?)),
            Decoder::Int4(b) => b.append_value(i32::from_be_bytes(exact(bytes, "integer")?)),
            Decoder::Int8(b) => b.append_value(i64::from_be_bytes(exact(bytes, "bigint")?)),
            Decoder::Oid(b) => b.append_value(i64::from(u32::from_be_bytes(exact(bytes, "oid")?))),
            Decoder::Float4(b) => b.append_value(f32::from_be_bytes(exact(bytes, "real")?)),
            Decoder::Float8(b) => b.append_value(f64::from_be_bytes(exact(bytes, "double precision")?)),
            Decoder::Decimal64(b, target) => b.append_value(i128::from(target.decode(bytes)?)),
            Decoder::Decimal128(b, target) => b.append_value(target.decode(bytes)?),
            Decoder::Decimal256(b, target) => b.append_value(target.decode(bytes)?),
            Decoder::Text(b) => b.append_value(utf8(bytes)?),
            Decoder::Jsonb(b) => match bytes.split_first() {
                Some((1, text)) => b.append_value(utf8(text)?),
                _ => return Err(Problem::Malformed("jsonb")),
            },
            Decoder::NumericText(b) => match utf8(bytes)? {
                special @ ("NaN" | "Infinity" | "-Infinity") => {
                    return Err(unrepresentable(format!("numeric '{special}'"), "a decimal text"));
                }
                number => b.append_value(number),
            },
            Decoder::Bytea(b) => b.append_value(bytes),
            Decoder::Date(b) => b.append_value(date(i32::from_be_bytes(exact(bytes, "date")?))?),
            Decoder::Timestamp(b) => b.append_value(timestamp(i64::from_be_bytes(exact(bytes, "timestamp")?))?),
            Decoder::Time(b) => b.append_value(time(i64::from_be_bytes(exact(bytes, "time")?))?),
            Decoder::Interval(b) => b.append_value(interval(bytes)?),
            Decoder::Array(a) => a.append(bytes)?,
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Decoder::Bool(b) => b.append_null(),
            Decoder::Int2(b) => b.append_null(),
            Decoder::Int4(b) => b.append_null(),
            Decoder::Int8(b) | Decoder::Oid(b) => b.append_null(),
            Decoder::Float4(b) => b.append_null(),
            Decoder::Float8(b) => b.append_null(),
            Decoder::Decimal64(b, _) | Decoder::Decimal128(b, _) => b.append_null(),
            Decoder::Decimal256(b, _) => b.append_null(),
            Decoder::Text(b) | Decoder::Jsonb(b) | Decoder::NumericText(b) => b.append_null(),
            Decoder::Bytea(b) => b.append_null(),
            Decoder::Date(b) => b.append_null(),
            Decoder::Timestamp(b) => b.append_null(),
            Decoder::Time(b) => b.append_null(),
            Decoder::Interval(b) => b.append_null(),
            Decoder::Array(a) => a.append_null(),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Decoder::Bool(b) => Arc::new(b.finish()),
            Decoder::Int2(b) => Arc::new(b.finish()),
            Decoder::Int4(b) => Arc::new(b.finish()),
            Decoder::Int8(b) | Decoder::Oid(b) => Arc::new(b.finish()),
            Decoder::Float4(b) => Arc::new(b.finish()),
            Decoder::Float8(b) => Arc::new(b.finish()),
            Decoder::Decimal64(b, _) | Decoder::Decimal128(b, _) => Arc::new(b.finish()),
            Decoder::Decimal256(b, _) => Arc::new(b.finish()),
            Decoder::Text(b) | Decoder::Jsonb(b) | Decoder::NumericText(b) => Arc::new(b.finish()),
            Decoder::Bytea(b) => Arc::new(b.finish()),
            Decoder::Date(b) => Arc::new(b.finish()),
            Decoder::Timestamp(b) => Arc::new(b.finish()),
            Decoder::Time(b) => Arc::new(b.finish()),
            Decoder::Interval(b) => Arc::new(b.finish()),
            Decoder::Array(a) => a.finish()?,
        })
    }
}

/// A one-dimensional array column as an Arrow list.
struct ArrayDecoder {
    field: FieldRef,
    elements: Decoder,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl ArrayDecoder {
    fn append(&mut self, bytes: &[u8]) -> Result<(), Problem> {
        let malformed = Problem::Malformed("array");
        let mut reader = Reader::new(bytes);
        let (Some(dimensions), Some(_flags), Some(_element_type)) = (reader.i32(), reader.i32(), reader.u32()) else {
            return Err(malformed);
        };
        let length = match dimensions {
            0 => 0,
            1 => {
                let (Some(length), Some(_lower_bound)) = (reader.i32(), reader.i32()) else {
                    return Err(malformed);
                };
                length
            }
            n if n > 1 => return Err(Problem::MultiDimensional(n)),
            _ => return Err(malformed),
        };
        for _ in 0..length {
            let element = match reader.i32() {
                Some(-1) => return Err(Problem::NullElement),
                Some(n) => reader.take(usize::try_from(n).map_err(|_| Problem::Malformed("array"))?),
                None => None,
            };
            let element = element.ok_or(Problem::Malformed("array"))?;
            self.elements.append(Some(element))?;
        }
        if !reader.is_empty() {
            return Err(Problem::Malformed("array"));
        }
        let end = self
            .offsets
            .last()
            .and_then(|last| last.checked_add(length))
            .ok_or_else(|| unrepresentable("more than 2^31 array elements in one batch", "an Arrow list"))?;
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }

    fn append_null(&mut self) {
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last);
        self.nulls.append_null();
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let values = self.elements.finish()?;
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        Ok(Arc::new(ListArray::try_new(
            self.field.clone(),
            offsets,
            values,
            self.nulls.finish(),
        )?))
    }
}

fn date(days: i32) -> Result<i32, Problem> {
    match days {
        i32::MAX => Err(unrepresentable("date 'infinity'", "an Arrow Date32")),
        i32::MIN => Err(unrepresentable("date '-infinity'", "an Arrow Date32")),
        // PostgreSQL dates end in 5874897 AD: far from overflowing.
        _ => days
            .checked_add(EPOCH_DAYS)
            .ok_or_else(|| unrepresentable(format!("date {days} days after 2000-01-01"), "an Arrow Date32")),
    }
}

fn timestamp(micros: i64) -> Result<i64, Problem> {
    let target = "an Arrow Timestamp(Microsecond)";
    match micros {
        i64::MAX => Err(unrepresentable("timestamp 'infinity'", target)),
        i64::MIN => Err(unrepresentable("timestamp '-infinity'", target)),
        _ => micros
            .checked_add(EPOCH_MICROS)
            .ok_or_else(|| unrepresentable(format!("timestamp {micros} µs after 2000-01-01"), target)),
    }
}

fn time(micros: i64) -> Result<i64, Problem> {
    if (0..MICROS_PER_DAY).contains(&micros) {
        Ok(micros)
    } else if micros == MICROS_PER_DAY {
        Err(unrepresentable(
            "time '24:00:00'",
            "an Arrow Time64 (ends at 23:59:59.999999)",
        ))
    } else {
        Err(Problem::Malformed("time"))
    }
}

fn interval(bytes: &[u8]) -> Result<IntervalMonthDayNano, Problem> {
    let mut reader = Reader::new(bytes);
    let (Some(micros), Some(days), Some(months), true) = (reader.i64(), reader.i32(), reader.i32(), bytes.len() == 16)
    else {
        return Err(Problem::Malformed("interval"));
    };
    let target = "an Arrow Interval(MonthDayNano)";
    // PostgreSQL 17 spells infinite intervals with every field at its limit.
    if (months, days, micros) == (i32::MAX, i32::MAX, i64::MAX) {
        return Err(unrepresentable("interval 'infinity'", target));
    }
    if (months, days, micros) == (i32::MIN, i32::MIN, i64::MIN) {
        return Err(unrepresentable("interval '-infinity'", target));
    }
    let nanoseconds = micros.checked_mul(1_000).ok_or_else(|| {
        unrepresentable(
            format!("interval '{months} mons {days} days {micros} microseconds'"),
            target,
        )
    })?;
    Ok(IntervalMonthDayNano::new(months, days, nanoseconds))
}

/// The integer a decimal is accumulated in: `i64` for a precision of at
/// most 18 digits, `i128` for the rest of Decimal128 (at most 38), `i256`
/// for Decimal256. Decoding in the narrowest type that fits is several times
/// faster.
trait DecimalInt: Copy + PartialOrd {
    const ZERO: Self;
    /// 10^exponent, or `None` when it does not fit.
    fn pow10(exponent: u32) -> Option<Self>;
    fn from_i32(value: i32) -> Self;
    fn checked_mul(self, other: Self) -> Option<Self>;
    fn checked_add(self, other: Self) -> Option<Self>;
    fn wrapping_neg(self) -> Self;
}

/// The largest precision whose values an `i64` holds.
const MAX_I64_PRECISION: u8 = 18;

/// `DecimalInt` for a primitive integer, with a table of its powers of ten
/// (all `$powers` of them that it holds).
macro_rules! primitive_decimal_int {
    ($int:ty, $powers:literal) => {
        impl DecimalInt for $int {
            const ZERO: Self = 0;
            fn pow10(exponent: u32) -> Option<Self> {
                const TABLE: [$int; $powers] = {
                    let mut table = [1; $powers];
                    let mut i = 1;
                    while i < $powers {
                        table[i] = table[i - 1] * 10;
                        i += 1;
                    }
                    table
                };
                TABLE.get(exponent as usize).copied()
            }
            fn from_i32(value: i32) -> Self {
                <$int>::from(value)
            }
            fn checked_mul(self, other: Self) -> Option<Self> {
                <$int>::checked_mul(self, other)
            }
            fn checked_add(self, other: Self) -> Option<Self> {
                <$int>::checked_add(self, other)
            }
            fn wrapping_neg(self) -> Self {
                <$int>::wrapping_neg(self)
            }
        }
    };
}

// 10^0 ..= 10^18 fit an i64, 10^0 ..= 10^38 an i128.
primitive_decimal_int!(i64, 19);
primitive_decimal_int!(i128, 39);

impl DecimalInt for i256 {
    const ZERO: Self = i256::ZERO;
    fn pow10(exponent: u32) -> Option<Self> {
        i256::from_i128(10).checked_pow(exponent)
    }
    fn from_i32(value: i32) -> Self {
        i256::from_i128(i128::from(value))
    }
    fn checked_mul(self, other: Self) -> Option<Self> {
        i256::checked_mul(self, other)
    }
    fn checked_add(self, other: Self) -> Option<Self> {
        i256::checked_add(self, other)
    }
    fn wrapping_neg(self) -> Self {
        i256::wrapping_neg(self)
    }
}

/// The Arrow decimal type a numeric column is read as, with `T` its
/// integer.
struct NumericTarget<T> {
    scale: i32,
    /// 10^precision: every value's magnitude must stay below it.
    limit: T,
    /// Numeric digits are base 10000.
    base: T,
    /// The type's name, for errors.
    name: String,
}

const NUMERIC_POSITIVE: u16 = 0x0000;
const NUMERIC_NEGATIVE: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PLUS_INFINITY: u16 = 0xD000;
const NUMERIC_MINUS_INFINITY: u16 = 0xF000;

impl<T: DecimalInt> NumericTarget<T> {
    fn new(precision: u8, scale: i8, arrow: &DataType) -> Option<Self> {
        Some(Self {
            scale: i32::from(scale),
            limit: T::pow10(u32::from(precision))?,
            base: T::from_i32(10_000),
            name: format!("an Arrow {arrow}"),
        })
    }

    /// The value as an integer scaled by 10^scale: exact, or an error.
    fn decode(&self, bytes: &[u8]) -> Result<T, Problem> {
        let mut reader = Reader::new(bytes);
        let (Some(count), Some(weight), Some(sign), Some(_display_scale)) =
            (reader.i16(), reader.i16(), reader.u16(), reader.u16())
        else {
            return Err(Problem::Malformed("numeric"));
        };
        let negative = match sign {
            NUMERIC_POSITIVE => false,
            NUMERIC_NEGATIVE => true,
            NUMERIC_NAN => return Err(unrepresentable("numeric 'NaN'", self.name.clone())),
            NUMERIC_PLUS_INFINITY => return Err(unrepresentable("numeric 'Infinity'", self.name.clone())),
            NUMERIC_MINUS_INFINITY => return Err(unrepresentable("numeric '-Infinity'", self.name.clone())),
            _ => return Err(Problem::Malformed("numeric")),
        };
        let out_of_range = || unrepresentable(format!("numeric {}", numeric_text(bytes)), self.name.clone());
        // Digit i is worth digit * 10000^(weight - i), that is digit *
        // 10^exponent once scaled. Horner's rule over the digits that reach
        // the scale; digits below it must be zero. The accumulator only
        // grows, so overflowing `T` means the value is out of range.
        let mut accumulator = T::ZERO;
        let mut last_exponent = None;
        for i in 0..i32::from(count) {
            let digit = reader
                .i16()
                .filter(|d| (0..10_000).contains(d))
                .ok_or(Problem::Malformed("numeric"))?;
            let exponent = 4 * (i32::from(weight) - i) + self.scale;
            let (factor, addend) = if exponent >= 0 {
                (self.base, i32::from(digit))
            } else if exponent > -4 {
                let divisor = 10i32.pow(exponent.unsigned_abs());
                if i32::from(digit) % divisor != 0 {
                    return Err(out_of_range());
                }
                (
                    T::pow10((4 + exponent) as u32).ok_or_else(out_of_range)?,
                    i32::from(digit) / divisor,
                )
            } else if digit == 0 {
                continue;
            } else {
                return Err(out_of_range());
            };
            accumulator = accumulator
                .checked_mul(factor)
                .and_then(|a| a.checked_add(T::from_i32(addend)))
                .ok_or_else(out_of_range)?;
            last_exponent = Some(exponent.max(0));
        }
        if !reader.is_empty() {
            return Err(Problem::Malformed("numeric"));
        }
        let scaled = match last_exponent {
            Some(exponent) => accumulator
                .checked_mul(T::pow10(exponent as u32).ok_or_else(out_of_range)?)
                .ok_or_else(out_of_range)?,
            None => T::ZERO,
        };
        if scaled >= self.limit {
            return Err(out_of_range());
        }
        Ok(if negative { scaled.wrapping_neg() } else { scaled })
    }
}

/// A binary numeric as decimal text, for error messages.
fn numeric_text(bytes: &[u8]) -> String {
    let mut reader = Reader::new(bytes);
    let (Some(count), Some(weight), Some(sign), Some(_)) = (reader.i16(), reader.i16(), reader.u16(), reader.u16())
    else {
        return "(malformed)".to_owned();
    };
    let digits: String = (0..count)
        .map_while(|_| reader.i16())
        .map(|d| format!("{d:04}"))
        .collect();
    let point = (i64::from(weight) + 1) * 4;
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (integer, fraction) = digits.split_at(point as usize);
        format!("{integer}.{fraction}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    let text = text.trim_start_matches('0');
    let text = if text.is_empty() || text.starts_with('.') {
        format!("0{text}")
    } else {
        text.to_owned()
    };
    if sign == NUMERIC_NEGATIVE {
        format!("-{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Decimal128Type, Decimal256Type, Field, Int32Type, Schema};

    use super::*;

    /// PostgreSQL's binary numeric for a decimal text like "-123.45".
    fn numeric(text: &str) -> Vec<u8> {
        let (negative, text) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
        let integer = integer.trim_start_matches('0');
        let pad_integer = (4 - integer.len() % 4) % 4;
        let integer = format!("{}{integer}", "0".repeat(pad_integer));
        let pad_fraction = (4 - fraction.len() % 4) % 4;
        let fraction_padded = format!("{fraction}{}", "0".repeat(pad_fraction));
        let all = format!("{integer}{fraction_padded}");
        let mut digits: Vec<i16> = (0..all.len() / 4)
            .map(|i| all[i * 4..i * 4 + 4].parse().unwrap())
            .collect();
        let mut weight = (integer.len() / 4) as i16 - 1;
        while digits.first() == Some(&0) {
            digits.remove(0);
            weight -= 1;
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            weight = 0;
        }
        let mut out = Vec::new();
        out.extend((digits.len() as i16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend(if negative { NUMERIC_NEGATIVE } else { NUMERIC_POSITIVE }.to_be_bytes());
        out.extend((fraction.len() as u16).to_be_bytes());
        for d in digits {
            out.extend(d.to_be_bytes());
        }
        out
    }

    fn special(sign: u16) -> Vec<u8> {
        [
            0u16.to_be_bytes(),
            0u16.to_be_bytes(),
            sign.to_be_bytes(),
            0u16.to_be_bytes(),
        ]
        .concat()
    }

    /// Decodes as Decimal256, and where the precision allows in `i128` and
    /// `i64` too, checking that all agree.
    fn decode(text_or_bytes: &[u8], precision: u8, scale: i8) -> Result<String, String> {
        let wide = decode_in::<i256>(text_or_bytes, DataType::Decimal256(precision, scale));
        let narrow = DataType::Decimal128(precision, scale);
        if precision <= 38 {
            assert_eq!(
                decode_in::<i128>(text_or_bytes, narrow.clone()),
                wide,
                "i128 and i256 disagree"
            );
        }
        if precision <= MAX_I64_PRECISION {
            assert_eq!(decode_in::<i64>(text_or_bytes, narrow), wide, "i64 and i256 disagree");
        }
        wide
    }

    /// Decodes in `T`, errors named as Decimal256 for comparison.
    fn decode_in<T: DecimalInt + ToString>(bytes: &[u8], arrow: DataType) -> Result<String, String> {
        let (DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale)) = arrow else {
            unreachable!("a decimal type")
        };
        let target = NumericTarget::<T>::new(precision, scale, &arrow).unwrap();
        target
            .decode(bytes)
            .map(|v| v.to_string())
            .map_err(|e| e.to_string().replace("Decimal128", "Decimal256"))
    }

    #[test]
    fn numerics_decode_exactly_at_the_target_scale() {
        assert_eq!(decode(&numeric("123.45"), 12, 2), Ok("12345".into()));
        assert_eq!(decode(&numeric("-123.4"), 12, 2), Ok("-12340".into()));
        assert_eq!(decode(&numeric("0"), 12, 2), Ok("0".into()));
        assert_eq!(decode(&numeric("0.01"), 12, 2), Ok("1".into()));
        assert_eq!(
            decode(&numeric("100000"), 5, 0),
            Err("numeric 100000 cannot be represented as an Arrow Decimal256(5, 0); such values are refused".into())
        );
        assert_eq!(decode(&numeric("10000"), 5, 0), Ok("10000".into()));
        assert_eq!(decode(&numeric("99999"), 5, 0), Ok("99999".into()));
        assert_eq!(decode(&numeric("12300"), 5, 0), Ok("12300".into()));
        let max = "9".repeat(29) + "." + &"9".repeat(9);
        assert_eq!(decode(&numeric(&max), 38, 9), Ok("9".repeat(38)));
        assert_eq!(
            decode(&numeric(&format!("-{max}")), 38, 9),
            Ok(format!("-{}", "9".repeat(38)))
        );
        // 38 integer and 38 decimal digits: the last base-10000 digit holds
        // two digits below the scale, which must be zero.
        let widest = "9".repeat(38) + "." + &"9".repeat(38);
        assert_eq!(decode(&numeric(&widest), 76, 38), Ok("9".repeat(76)));
        assert!(
            decode(&numeric("0.123"), 10, 2)
                .unwrap_err()
                .contains("numeric 0.123 cannot be represented")
        );
        let tiny = format!("0.{}1", "0".repeat(49));
        assert!(decode(&numeric(&tiny), 76, 38).is_err(), "more than 38 decimal places");
        assert_eq!(
            decode(&numeric("5"), 3, -2),
            Err("numeric 5 cannot be represented as an Arrow Decimal256(3, -2); such values are refused".into())
        );
        assert_eq!(decode(&numeric("500"), 3, -2), Ok("5".into()));
        // The edges of the i64 accumulator (precision up to 18).
        assert_eq!(decode(&numeric(&"9".repeat(18)), 18, 0), Ok("9".repeat(18)));
        assert_eq!(
            decode(&numeric("-9999999999999999.99"), 18, 2),
            Ok(format!("-{}", "9".repeat(18)))
        );
        assert!(decode(&numeric(&format!("1{}", "0".repeat(18))), 18, 0).is_err());
        assert!(
            decode(&numeric(&format!("1{}", "0".repeat(30))), 18, 0).is_err(),
            "past i64"
        );
        assert!(
            decode(&numeric(&format!("1{}", "0".repeat(30))), 12, 2).is_err(),
            "past i64"
        );
    }

    #[test]
    fn huge_values_appear_in_errors_as_excerpts() {
        let huge = "9".repeat(5000);
        let err = decode(&numeric(&huge), 10, 2).unwrap_err();
        assert!(err.len() < 300, "{} bytes: {err}", err.len());
        assert!(err.contains("... (5008 bytes in all)"), "{err}");
    }

    #[test]
    fn numeric_specials_are_refused() {
        for (sign, text) in [
            (NUMERIC_NAN, "numeric 'NaN'"),
            (NUMERIC_PLUS_INFINITY, "numeric 'Infinity'"),
            (NUMERIC_MINUS_INFINITY, "numeric '-Infinity'"),
        ] {
            let err = decode(&special(sign), 10, 2).unwrap_err();
            assert!(err.starts_with(text), "{err}");
        }
        assert!(decode(&[0, 1], 10, 2).unwrap_err().contains("malformed"));
    }

    #[test]
    fn numeric_text_for_messages() {
        for text in ["123.45", "-0.001", "100000000", "0", "12345678.9"] {
            assert_eq!(numeric_text(&numeric(text)), text);
        }
    }

    fn field(len: i32, bytes: &[u8]) -> Vec<u8> {
        let mut out = len.to_be_bytes().to_vec();
        out.extend(bytes);
        out
    }

    fn copy_data(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0u32.to_be_bytes());
        out.extend(4u32.to_be_bytes());
        out.extend([9, 9, 9, 9]); // a header extension to skip
        for row in rows {
            out.extend((row.len() as i16).to_be_bytes());
            for value in row {
                match value {
                    Some(bytes) => out.extend(field(bytes.len() as i32, bytes)),
                    None => out.extend((-1i32).to_be_bytes()),
                }
            }
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    fn int_array(values: &[i32]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(1i32.to_be_bytes());
        out.extend(0i32.to_be_bytes());
        out.extend(23u32.to_be_bytes());
        out.extend((values.len() as i32).to_be_bytes());
        out.extend(1i32.to_be_bytes());
        for v in values {
            out.extend(field(4, &v.to_be_bytes()));
        }
        out
    }

    fn list_of_int() -> DataType {
        DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)))
    }

    fn decode_all(schema: SchemaRef, wires: &[Wire], data: &[u8], chunk: usize, batch_rows: usize) -> Vec<RecordBatch> {
        let mut decoder = CopyDecoder::new(schema, wires, batch_rows).unwrap();
        let mut batches = Vec::new();
        for piece in data.chunks(chunk) {
            decoder.push(piece);
            while let Some(batch) = decoder.next_batch().unwrap() {
                batches.push(batch);
            }
        }
        batches.extend(decoder.finish().unwrap());
        batches
    }

    #[test]
    fn rows_split_across_chunks_and_batches() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("tags", list_of_int(), true),
        ]));
        let wires = [Wire::Int4, Wire::Text, Wire::Array(Box::new(Wire::Int4))];
        let rows: Vec<Vec<Option<Vec<u8>>>> = (0..5)
            .map(|i: i32| {
                vec![
                    Some(i.to_be_bytes().to_vec()),
                    (i != 2).then(|| format!("n{i} 🚀").into_bytes()),
                    (i != 3).then(|| int_array(&(0..i).collect::<Vec<_>>())),
                ]
            })
            .collect();
        let data = copy_data(&rows);
        for chunk in [1, 3, 7, data.len()] {
            let batches = decode_all(schema.clone(), &wires, &data, chunk, 2);
            assert_eq!(batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), vec![2, 2, 1]);
            let ids: Vec<i32> = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int32Type>().values().to_vec())
                .collect();
            assert_eq!(ids, vec![0, 1, 2, 3, 4]);
            let names: Vec<Option<String>> = batches
                .iter()
                .flat_map(|b| {
                    b.column(1)
                        .as_string::<i32>()
                        .iter()
                        .map(|s| s.map(str::to_owned))
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(
                names,
                vec![
                    Some("n0 🚀".into()),
                    Some("n1 🚀".into()),
                    None,
                    Some("n3 🚀".into()),
                    Some("n4 🚀".into())
                ]
            );
            let lists: Vec<Option<Vec<i32>>> = batches
                .iter()
                .flat_map(|b| {
                    let list = b.column(2).as_list::<i32>();
                    (0..list.len())
                        .map(|i| {
                            list.is_valid(i)
                                .then(|| list.value(i).as_primitive::<Int32Type>().values().to_vec())
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(
                lists,
                vec![
                    Some(vec![]),
                    Some(vec![0]),
                    Some(vec![0, 1]),
                    None,
                    Some(vec![0, 1, 2, 3])
                ]
            );
        }
    }

    #[test]
    fn zero_columns_count_rows() {
        let schema = Arc::new(Schema::empty());
        let data = copy_data(&vec![vec![]; 5]);
        let batches = decode_all(schema, &[], &data, 4, 3);
        assert_eq!(batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), vec![3, 2]);
        assert!(batches.iter().all(|b| b.num_columns() == 0));
    }

    #[test]
    fn empty_results_have_no_batches() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, true)]));
        assert!(decode_all(schema, &[Wire::Int4], &copy_data(&[]), 100, 10).is_empty());
    }

    fn decode_one(wire: Wire, arrow: DataType, value: Vec<u8>) -> Result<ArrayRef, String> {
        let schema = Arc::new(Schema::new(vec![Field::new("c", arrow, true)]));
        let mut decoder = CopyDecoder::new(schema, &[wire], 10).unwrap();
        decoder.push(&copy_data(&[vec![Some(value)]]));
        decoder.next_batch().map_err(|e| e.to_string())?;
        Ok(decoder.finish().map_err(|e| e.to_string())?.unwrap().column(0).clone())
    }

    #[test]
    fn refused_values_name_the_column_and_value() {
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")));
        let cases = [
            (
                Wire::Date,
                DataType::Date32,
                i32::MAX.to_be_bytes().to_vec(),
                "date 'infinity'",
            ),
            (
                Wire::Date,
                DataType::Date32,
                i32::MIN.to_be_bytes().to_vec(),
                "date '-infinity'",
            ),
            (
                Wire::Timestamp,
                utc.clone(),
                i64::MAX.to_be_bytes().to_vec(),
                "timestamp 'infinity'",
            ),
            (
                Wire::Timestamp,
                utc,
                i64::MIN.to_be_bytes().to_vec(),
                "timestamp '-infinity'",
            ),
            (
                Wire::Time,
                DataType::Time64(TimeUnit::Microsecond),
                MICROS_PER_DAY.to_be_bytes().to_vec(),
                "time '24:00:00'",
            ),
            (
                Wire::Numeric,
                DataType::Decimal128(10, 2),
                special(NUMERIC_NAN),
                "numeric 'NaN'",
            ),
        ];
        for (wire, arrow, value, text) in cases {
            let err = decode_one(wire, arrow, value).unwrap_err();
            assert!(
                err.starts_with(&format!("column \"c\": {text} cannot be represented as an Arrow")),
                "{err}"
            );
        }
        let mut two_dimensions = Vec::new();
        for v in [2i32, 0, 23, 1, 1, 1, 1] {
            two_dimensions.extend(v.to_be_bytes());
        }
        let err = decode_one(Wire::Array(Box::new(Wire::Int4)), list_of_int(), two_dimensions).unwrap_err();
        assert!(err.contains("column \"c\": a 2-dimensional array"), "{err}");
        let mut null_element = Vec::new();
        for v in [1i32, 1, 23, 1, 1, -1] {
            null_element.extend(v.to_be_bytes());
        }
        let err = decode_one(Wire::Array(Box::new(Wire::Int4)), list_of_int(), null_element).unwrap_err();
        assert!(err.contains("column \"c\": an array with a NULL element"), "{err}");
    }

    #[test]
    fn values_decode_exactly() {
        let column = decode_one(Wire::Jsonb, DataType::Utf8, b"\x01{\"a\": 1}".to_vec()).unwrap();
        assert_eq!(column.as_string::<i32>().value(0), "{\"a\": 1}");
        let column = decode_one(Wire::Oid, DataType::Int64, u32::MAX.to_be_bytes().to_vec()).unwrap();
        assert_eq!(
            column
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(0),
            4_294_967_295
        );
        let column = decode_one(Wire::Numeric, DataType::Decimal128(38, 9), numeric("-1.5")).unwrap();
        assert_eq!(column.as_primitive::<Decimal128Type>().value(0), -1_500_000_000);
        let column = decode_one(Wire::Numeric, DataType::Decimal256(40, 10), numeric("2.5")).unwrap();
        assert_eq!(
            column.as_primitive::<Decimal256Type>().value(0),
            i256::from_i128(25_000_000_000)
        );
        let mut value = 90_000_000i64.to_be_bytes().to_vec();
        value.extend(3i32.to_be_bytes());
        value.extend((-14i32).to_be_bytes());
        let column = decode_one(Wire::Interval, DataType::Interval(IntervalUnit::MonthDayNano), value).unwrap();
        assert_eq!(
            column
                .as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()
                .value(0),
            IntervalMonthDayNano::new(-14, 3, 90_000_000_000)
        );
        let column = decode_one(Wire::Date, DataType::Date32, 0i32.to_be_bytes().to_vec()).unwrap();
        assert_eq!(
            column
                .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
                .value(0),
            10_957
        );
        assert!(
            decode_one(Wire::Text, DataType::Utf8, vec![0xff])
                .unwrap_err()
                .contains("not valid UTF-8")
        );
    }

    #[test]
    fn malformed_data_is_an_error() {
        let schema = Arc::new(Schema::new(vec![Field::new("c", DataType::Int32, true)]));
        let mut decoder = CopyDecoder::new(schema.clone(), &[Wire::Int4], 10).unwrap();
        decoder.push(b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0");
        assert!(decoder.next_batch().unwrap_err().to_string().contains("bad signature"));
        let mut decoder = CopyDecoder::new(schema.clone(), &[Wire::Int4], 10).unwrap();
        let data = copy_data(&[vec![Some(vec![0, 0, 0, 1])]]);
        decoder.push(&data[..data.len() - 2]);
        assert_eq!(decoder.next_batch().unwrap(), None);
        assert!(decoder.finish().unwrap_err().to_string().contains("before the trailer"));
        let mut decoder = CopyDecoder::new(schema, &[Wire::Int4], 10).unwrap();
        decoder.push(&copy_data(&[vec![Some(vec![0, 1])]]));
        assert!(
            decoder
                .next_batch()
                .unwrap_err()
                .to_string()
                .contains("malformed binary integer")
        );
        assert!(
            CopyDecoder::new(
                Arc::new(Schema::new(vec![Field::new("c", DataType::Utf8, true)])),
                &[Wire::Int4],
                10
            )
            .is_err()
        );
    }
}
