//! The mapping from schemaless documents to rows that every document and
//! key-value store shares (Redis, DynamoDB, MongoDB): not a connection type, the
//! support their folders build on. `docs/sources/documents.md` is its
//! user-facing definition.
//!
//! - [`value`]: the neutral value model (null, bool, int, float, string,
//!   bytes, timestamp, array, object) each store decodes into, and its JSON.
//! - [`infer`]: columns proposed from a sample of documents, with
//!   confidence and warnings; the store's key is the primary key.
//! - [`convert`]: documents into Arrow batches under `on_type_mismatch`.
//! - [`mapping`]: the connection options `sample`, `keep_document` and
//!   `on_type_mismatch`, and how a column's `source_type` names its type.
//! - [`source`]: a [`Store`] as a [`Source`](crate::sources::Source).

mod convert;
mod infer;
mod mapping;
mod source;
mod value;

#[cfg(test)]
mod properties;

pub(crate) use infer::{KeyField, Shape};
pub(crate) use mapping::{ColumnSpec, DOCUMENT_COLUMN, KEEP_DOCUMENT, Mapping, ON_TYPE_MISMATCH, SAMPLE, Target};
pub(crate) use source::{DocumentSource, Pages, Store};
pub(crate) use value::{Document, Value};
