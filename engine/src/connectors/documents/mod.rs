//! The mapping from schemaless documents to rows that every document and
//! key-value store shares (Redis, DynamoDB, Firestore, MongoDB): not a connection type, the
//! support their folders build on. `docs/sources/documents.md` is its
//! user-facing definition.
//!
//! - [`value`]: the neutral value model (null, bool, int, float, string,
//!   bytes, timestamp, array, object) each store decodes into, and its JSON.
//! - [`infer`]: columns proposed from a sample of documents, with
//!   confidence and warnings; the store's key is the primary key.
//! - [`convert`]: documents into Arrow batches under `on_type_mismatch`;
//!   [`nested`]: the RECORD and REPEATED columns a job's `COLUMNS` asks for.
//! - [`mapping`]: the connection options `sample`, `keep_document` and
//!   `on_type_mismatch`, and how a column's `source_type` names its type.
//! - [`pushdown`]: what of a scan (window bounds, fields, limit) a store
//!   may evaluate itself.
//! - [`source`]: a [`Store`] as a [`Source`](crate::contract::Source).

mod convert;
mod infer;
mod mapping;
mod nested;
mod pushdown;
mod source;
mod value;

#[cfg(test)]
mod properties;

pub(crate) use infer::{KeyField, Shape};
pub(crate) use mapping::{ColumnSpec, DOCUMENT_COLUMN, KEEP_DOCUMENT, Mapping, ON_TYPE_MISMATCH, SAMPLE, Target};
pub(crate) use pushdown::{Bound, Op, Pushdown};
pub(crate) use source::{DocumentSource, Pages, Store};
pub(crate) use value::{Document, Value, timestamp_text};
