//! Ordinary tables of the `public` schema: the small bookkeeping tables
//! migration tools keep (dbmate's `schema_migrations`, Alembic's
//! `alembic_version`, node-pg-migrate's `pgmigrations`).
//!
//! A table is one record holding its definition and all its rows, so a
//! change is one put that joins the session's transaction like any other
//! catalog change, and two sessions changing the same table conflict at
//! COMMIT. The server keeps tables small (see its row limit).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::Record;

/// The column types a public table supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicType {
    Text,
    Int4,
    Int8,
    Float8,
    Bool,
    /// Microseconds since the epoch, no time zone.
    Timestamp,
    /// Microseconds since the epoch, UTC.
    Timestamptz,
}

/// One column of a public table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicColumn {
    pub name: String,
    pub data_type: PublicType,
    /// The `n` of `varchar(n)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    pub not_null: bool,
    /// The SQL text of the column's default, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// `serial`/`bigserial`: filled from the table's counter when not given.
    #[serde(default)]
    pub serial: bool,
}

/// A primary key or unique constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub name: String,
    pub columns: Vec<String>,
    pub primary: bool,
}

/// A table of the `public` schema with its rows. Values are JSON: text as
/// strings, integers and timestamps (microseconds) as numbers, booleans,
/// floats, and null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicTable {
    pub name: String,
    pub columns: Vec<PublicColumn>,
    pub keys: Vec<PublicKey>,
    pub rows: Vec<Vec<Value>>,
    /// The last value handed out to serial columns.
    pub last_serial: i64,
}

impl Record for PublicTable {
    const FAMILY: &'static str = "public_tables";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.name.clone()
    }
}
