//! `WITH (parallelism = n)`: the column a parallel run splits into ranges.

use datafusion::arrow::datatypes::DataType;

use crate::contract::TableDescription;
use crate::error::EngineError;

/// The column to split a table on: the first primary-key column, else the
/// cursor, if it is a NOT NULL integer (a nullable column's NULLs would fall
/// outside every range).
pub(super) fn split_column(description: &TableDescription, cursor: Option<&str>) -> Result<usize, EngineError> {
    let usable = |i: &usize| {
        let column = &description.columns[*i];
        !column.nullable
            && !column.mapping.repeated
            && matches!(
                column.mapping.arrow,
                DataType::Int16 | DataType::Int32 | DataType::Int64
            )
    };
    let key = description
        .primary_key()
        .first()
        .and_then(|name| description.columns.iter().position(|c| c.name == *name));
    let cursor = cursor.and_then(|name| description.columns.iter().position(|c| c.name == name));
    key.filter(usable)
        .or(cursor.filter(usable))
        .ok_or_else(|| EngineError::InvalidJob {
            message: format!(
                "WITH (parallelism = n) splits {} into ranges of an integer primary key or a NOT NULL integer \
                 cursor, and it has neither; leave out parallelism",
                description.table
            ),
        })
}
