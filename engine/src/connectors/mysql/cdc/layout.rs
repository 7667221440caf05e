//! The captured table's columns as of a binlog position, read when a stream
//! opens (docs/cdc.md, "Schema changes"). A change logged before
//! [`Layout::head`] uses the layout's definition or an older one; a DDL
//! statement on the table logged at or after it is one the stream stops
//! for ([`ChangeEvent::SchemaChanged`](crate::contract::ChangeEvent)), so
//! the run describes the table again and follows it.

use mysql_async::Conn;

use super::setup;
use crate::cdc::layout::capture_differs;
use crate::contract::{Capture, CdcError, ColumnInfo, Position};

/// The table's columns, read after the binlog's `head`.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The binlog file and offset read before the columns.
    head: (String, u64),
    columns: Vec<ColumnInfo>,
}

impl Layout {
    /// Reads the binlog's head, then the table's columns.
    pub(super) async fn read(conn: &mut Conn, capture: &Capture) -> Result<Self, CdcError> {
        let head = setup::head(conn).await?;
        let columns = setup::describe_whole(conn, &capture.description.table).await?.columns;
        Ok(Self { head, columns })
    }

    /// A layout read at `head` (for tests of what reads it).
    #[cfg(test)]
    pub(super) fn at(head: (String, u64), columns: Vec<ColumnInfo>) -> Self {
        Self { head, columns }
    }

    /// How the job's columns (`capture`, as the run described the table)
    /// differ from this layout, if they do: the table changed between the
    /// run's description and the stream's start.
    pub(super) fn differs_from_capture(&self, capture: &Capture) -> Option<String> {
        capture_differs(
            capture,
            self.columns.iter().map(|c| (c.name.as_str(), c.source_type.as_str())),
        )
    }

    /// How many columns the table has.
    pub(super) fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// Whether an event starting at `offset` of `file` was logged at or
    /// after the head: after the definition the layout read.
    pub(super) fn is_newer(&self, file: &str, offset: u64) -> bool {
        Position::binlog_order(file, offset) >= Position::binlog_order(&self.head.0, self.head.1)
    }
}
