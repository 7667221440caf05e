//! How a source table's columns, read when a change stream opens, differ
//! from the columns a run captures (it described the table a moment
//! before): a schema change in between is one the stream must not read
//! past without following it (docs/cdc.md, "Schema changes").

use crate::contract::{Capture, TableRef};

/// How the columns `now` (name and type text, as a description's
/// `source_type` says it) differ from `capture`'s, if they do: a captured
/// column gone or retyped, or (when the job loads every column) one added.
pub(crate) fn capture_differs<'a>(
    capture: &Capture,
    now: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> Option<String> {
    let table = &capture.description.table;
    for column in &capture.description.columns {
        match now.clone().find(|(name, _)| *name == column.name) {
            None => return Some(dropped(table, &column.name)),
            Some((_, type_text)) if type_text != column.source_type => {
                return Some(format!(
                    "column \"{}\" of {table} was {} and is now {type_text}",
                    column.name, column.source_type
                ));
            }
            Some(_) => {}
        }
    }
    let known = |name: &str| capture.description.columns.iter().any(|c| c.name == name);
    now.clone()
        .find(|(name, _)| capture.every_column && !known(name))
        .map(|(name, _)| added(table, name))
}

/// What a stream says of a column gone from the table.
pub(crate) fn dropped(table: &TableRef, column: &str) -> String {
    format!("column \"{column}\" of {table} was dropped or renamed")
}

/// What a stream says of a column added to the table.
pub(crate) fn added(table: &TableRef, column: &str) -> String {
    format!("column \"{column}\" was added to {table}")
}
