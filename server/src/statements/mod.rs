//! Sluice's own SQL statements: their syntax tree, recognition and parsing.
//!
//! [`parse`] is the one entry point: `None` for anything that is not a
//! Sluice statement (plain SQL, which goes to DataFusion unchanged).

mod ast;
#[cfg(test)]
mod docs_parse;
mod parse;
mod parse_alert;
mod parse_database;
mod parse_fleet;
mod parse_job;
mod parse_lookback;
mod parse_role;
mod parse_secret;
mod split;

pub use ast::SluiceStatement;
#[cfg(test)]
pub(crate) use parse::parse_sluice;
pub use parse::{ParseError, ParseErrorKind, parse};
pub use parse_lookback::lookback_sql;
pub use parse_role::{Grant, RoleChange, RoleOptions};
pub use split::split_statements;
