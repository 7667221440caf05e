//! Sluice's own SQL statements: their syntax tree, recognition and parsing.
//!
//! Anything that is not a Sluice statement is plain SQL and goes to
//! DataFusion unchanged.

mod ast;
#[cfg(test)]
mod docs_parse;
mod parse;
mod parse_fleet;
mod parse_job;
mod parse_lookback;
mod split;

pub use ast::SluiceStatement;
pub use parse::{ParseError, ParseErrorKind, is_sluice_statement, parse};
pub use parse_lookback::lookback_sql;
pub use split::split_statements;
