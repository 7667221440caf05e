//! Documents into Arrow record batches of a described table's columns,
//! with `on_type_mismatch` deciding about values that do not fit.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;

use super::infer::{parse_bool, parse_float, parse_timestamp};
use super::mapping::{ColumnSpec, Mapping, OnMismatch, Target};
use super::nested;
use super::value::{Document, Value};
use crate::contract::{ColumnInfo, SourceError, TableRef};

/// The SQLSTATE of a value that does not fit its column (SQL's
/// `most_specific_type_mismatch`).
pub(crate) const MISMATCH_SQLSTATE: &str = "2200G";

/// Integers a FLOAT64 holds exactly.
const EXACT_FLOAT_INT: i64 = 1 << 53;

/// The typed value of one cell, or why the value does not fit.
pub(super) enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Timestamp(i64),
}

/// `value` as a cell of a `spec` column, or `None` when it does not fit.
pub(super) fn cell(value: &Value, spec: ColumnSpec) -> Option<Cell> {
    let text = match value {
        Value::String(s) if spec.from_text => Some(s.as_str()),
        _ => None,
    };
    Some(match (spec.target, value) {
        (_, Value::Null) => Cell::Null,
        (Target::Json, v) => Cell::Text(v.to_json().to_string()),
        (Target::Bool, Value::Bool(b)) => Cell::Bool(*b),
        (Target::Bool, _) => Cell::Bool(parse_bool(text?)?),
        (Target::Int, Value::Int(i)) => Cell::Int(*i),
        (Target::Int, _) => Cell::Int(text?.trim().parse().ok()?),
        (Target::Float, Value::Float(f)) => Cell::Float(*f),
        (Target::Float, Value::Int(i)) if i.unsigned_abs() <= EXACT_FLOAT_INT as u64 => Cell::Float(*i as f64),
        (Target::Float, _) => Cell::Float(parse_float(text?)?),
        (Target::String, Value::String(s)) => Cell::Text(s.clone()),
        (Target::Bytes, Value::Bytes(b)) => Cell::Bytes(b.clone()),
        (Target::Timestamp, Value::Timestamp(t)) => Cell::Timestamp(*t),
        (Target::Timestamp, _) => Cell::Timestamp(parse_timestamp(text?)?),
        _ => return None,
    })
}

/// One column's values, built up row by row.
pub(super) enum Builder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Builder {
    pub(super) fn new(target: Target, rows: usize) -> Self {
        match target {
            Target::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            Target::Int => Builder::Int(Int64Builder::with_capacity(rows)),
            Target::Float => Builder::Float(Float64Builder::with_capacity(rows)),
            Target::String | Target::Json | Target::Document => {
                Builder::Text(StringBuilder::with_capacity(rows, rows * 16))
            }
            Target::Bytes => Builder::Bytes(BinaryBuilder::with_capacity(rows, rows * 16)),
            Target::Timestamp => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
        }
    }

    pub(super) fn append(&mut self, cell: Cell) {
        match (self, cell) {
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Builder::Int(b), Cell::Int(v)) => b.append_value(v),
            (Builder::Float(b), Cell::Float(v)) => b.append_value(v),
            (Builder::Text(b), Cell::Text(v)) => b.append_value(v),
            (Builder::Bytes(b), Cell::Bytes(v)) => b.append_value(v),
            (Builder::Timestamp(b), Cell::Timestamp(v)) => b.append_value(v),
            (builder, _) => builder.append_null(),
        }
    }

    pub(super) fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::Int(b) => b.append_null(),
            Builder::Float(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Bytes(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
        }
    }

    pub(super) fn finish(self) -> ArrayRef {
        match self {
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Int(mut b) => Arc::new(b.finish()),
            Builder::Float(mut b) => Arc::new(b.finish()),
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Bytes(mut b) => Arc::new(b.finish()),
            Builder::Timestamp(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The specs of `columns`, or an error naming a column this module did
/// not describe.
pub(crate) fn specs(table: &TableRef, columns: &[ColumnInfo]) -> Result<Vec<ColumnSpec>, SourceError> {
    columns
        .iter()
        .map(|c| {
            ColumnSpec::parse(&c.source_type).ok_or_else(|| SourceError::Query {
                code: Some("XX000".into()),
                message: format!(
                    "column \"{}\" of {table} has the unknown document type {}",
                    c.name, c.source_type
                ),
            })
        })
        .collect()
}

/// `documents` as one batch of `columns` (with `schema`, their Arrow
/// schema) under the connection's `mapping`.
pub(crate) fn to_batch(
    table: &TableRef,
    documents: &[Document],
    columns: &[ColumnInfo],
    schema: &SchemaRef,
    mapping: &Mapping,
) -> Result<RecordBatch, SourceError> {
    let specs = specs(table, columns)?;
    let mut builders: Vec<Builder> = specs.iter().map(|s| Builder::new(s.target, documents.len())).collect();
    let has_document = specs.iter().any(|s| s.target == Target::Document);
    // The values of the columns a job loads as RECORD or REPEATED, row by
    // row; built into nested arrays at the end.
    let mut nested_values: Vec<Option<Vec<Value>>> = columns
        .iter()
        .map(|c| nested::is_nested(&c.mapping.arrow).then(|| Vec::with_capacity(documents.len())))
        .collect();
    let strict_keys = !has_document && mapping.on_mismatch == OnMismatch::Fail;
    let names: HashSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    for doc in documents {
        if let Some(reason) = &doc.foreign
            && mapping.on_mismatch == OnMismatch::Fail
        {
            return Err(foreign(table, doc, reason));
        }
        if !has_document && mapping.on_mismatch == OnMismatch::Fail {
            let unknown = doc
                .fields
                .iter()
                .find(|(name, value)| !names.contains(name.as_str()) && **value != Value::Null);
            if let Some((name, _)) = unknown {
                return Err(unknown_field(table, doc, name));
            }
        }
        for (((column, spec), builder), nested_column) in columns
            .iter()
            .zip(&specs)
            .zip(builders.iter_mut())
            .zip(nested_values.iter_mut())
        {
            if let Some(values) = nested_column {
                values.push(nested_value(
                    table,
                    doc,
                    column,
                    *spec,
                    mapping.on_mismatch,
                    strict_keys,
                )?);
                continue;
            }
            if spec.target == Target::Document {
                builder.append(Cell::Text(doc.to_json().to_string()));
                continue;
            }
            let key = column.primary_key_position.is_some();
            let value = doc.fields.get(&column.name).unwrap_or(&Value::Null);
            let fits = match (key, doc.foreign.is_some()) {
                // A key column: never null, except the parts a document
                // of another shape lacks (a Redis hash in a list table).
                (true, foreign) => cell(value, *spec)
                    .filter(|c| !matches!(c, Cell::Null) || (foreign && column.nullable && *value == Value::Null)),
                (false, true) => Some(Cell::Null),
                (false, false) => {
                    cell(value, *spec).or_else(|| (mapping.on_mismatch != OnMismatch::Fail).then_some(Cell::Null))
                }
            };
            match fits {
                Some(cell) => builder.append(cell),
                None => return Err(mismatch(table, doc, column, value)),
            }
        }
    }
    let cannot_build = |e: ArrowError| SourceError::Query {
        code: Some("XX000".into()),
        message: format!("cannot build a batch of {table}: {e}"),
    };
    let arrays = builders
        .into_iter()
        .zip(nested_values)
        .zip(schema.fields())
        .map(|((builder, nested_column), field)| match nested_column {
            Some(values) => nested::build(field, &values.iter().collect::<Vec<_>>()),
            None => Ok(builder.finish()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(cannot_build)?;
    RecordBatch::try_new(schema.clone(), arrays).map_err(cannot_build)
}

/// The value of a RECORD or REPEATED column of `doc` (text parsed as
/// JSON in a store of text); one that does not fit is NULL under
/// `on_type_mismatch` `null` and `json` (`_document` keeps it), an error
/// naming where it does not fit under `fail`.
fn nested_value(
    table: &TableRef,
    doc: &Document,
    column: &ColumnInfo,
    spec: ColumnSpec,
    on_mismatch: OnMismatch,
    strict_keys: bool,
) -> Result<Value, SourceError> {
    if doc.foreign.is_some() {
        return Ok(Value::Null);
    }
    let value = match doc.fields.get(&column.name) {
        Some(Value::String(text)) if spec.from_text => Value::from_text(text),
        Some(value) => value.clone(),
        None => Value::Null,
    };
    let Some((path, what)) = nested::misfit(&value, &column.mapping.arrow, strict_keys) else {
        return Ok(value);
    };
    if on_mismatch != OnMismatch::Fail {
        return Ok(Value::Null);
    }
    Err(SourceError::Query {
        code: Some(MISMATCH_SQLSTATE.into()),
        message: format!(
            "document {} of {table}: field \"{}{path}\" holds {what}, which does not fit the column's COLUMNS type \
             ({}); set on_type_mismatch 'null' or 'json' on the connection or the job, or change the type",
            crate::contract::excerpt(&doc.id),
            column.name,
            nested_type_text(&column.mapping.arrow),
        ),
    })
}

/// A nested Arrow type as the `COLUMNS` syntax writes it.
fn nested_type_text(data_type: &DataType) -> String {
    match data_type {
        DataType::Struct(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.name(), nested_type_text(f.data_type())))
                .collect();
            format!("RECORD({})", fields.join(", "))
        }
        DataType::List(item) => format!("REPEATED {}", nested_type_text(item.data_type())),
        DataType::Utf8 => "STRING".into(),
        DataType::Int64 => "INT64".into(),
        DataType::Float64 => "FLOAT64".into(),
        DataType::Boolean => "BOOL".into(),
        DataType::Binary => "BYTES".into(),
        DataType::Timestamp(..) => "TIMESTAMP".into(),
        other => other.to_string(),
    }
}

/// The error of a value that does not fit its column.
fn mismatch(table: &TableRef, doc: &Document, column: &ColumnInfo, value: &Value) -> SourceError {
    let what = match value.kind() {
        None => "no value".to_owned(),
        Some(kind) => format!("the {} value {}", kind.name(), value.excerpt()),
    };
    let fix = if column.primary_key_position.is_some() {
        "every document needs its key".to_owned()
    } else {
        "set on_type_mismatch 'null' or 'json' on the connection or the job, or give the column another type with \
         COLUMNS"
            .to_owned()
    };
    SourceError::Query {
        code: Some(MISMATCH_SQLSTATE.into()),
        message: format!(
            "document {} of {table}: field \"{}\" holds {what}, which does not fit column type {}; {fix}",
            crate::contract::excerpt(&doc.id),
            column.name,
            column.mapping.bigquery_ddl(),
        ),
    }
}

/// The error of a field that is not a column.
fn unknown_field(table: &TableRef, doc: &Document, field: &str) -> SourceError {
    SourceError::Query {
        code: Some(MISMATCH_SQLSTATE.into()),
        message: format!(
            "document {} of {table}: field \"{}\" is not a column (no sampled document had it); raise the \
             connection's sample option so that DESCRIBE sees it, set keep_document true to keep it in _document, \
             or on_type_mismatch 'null' to leave it out",
            crate::contract::excerpt(&doc.id),
            crate::contract::excerpt(field),
        ),
    }
}

/// The error of a document that does not have the table's shape.
fn foreign(table: &TableRef, doc: &Document, reason: &str) -> SourceError {
    SourceError::Query {
        code: Some(MISMATCH_SQLSTATE.into()),
        message: format!(
            "document {} of {table}: {reason}; set on_type_mismatch 'null' or 'json' on the connection or the job \
             to load its key alone",
            crate::contract::excerpt(&doc.id)
        ),
    }
}
