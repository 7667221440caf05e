//! The captured table's columns as of a WAL position, read when a stream
//! opens, so the stream can tell a schema change it must stop for from the
//! old layouts of changes it is still catching up on.
//!
//! pgoutput describes the table (a `Relation` message) before the first
//! change that uses a new definition. A change committed at or before
//! [`Layout::lsn`] cannot use a definition newer than the layout, so its
//! relation is read as it is: columns the job has and it lacks are NULL,
//! columns it has and the job does not are ignored. A change committed
//! after it may: when its relation differs from the layout, the stream
//! yields [`ChangeEvent::SchemaChanged`](crate::contract::ChangeEvent) and
//! the run describes the table again (docs/cdc.md, "Schema changes").

use pg_walstream::ColumnInfo as RelationColumn;

use super::super::{PgConnection, query_error};
use crate::cdc::layout::{added, capture_differs, dropped};
use crate::contract::{Capture, CdcError, TableRef};

/// One live column of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LayoutColumn {
    name: String,
    type_id: u32,
    type_modifier: i32,
    /// `format_type(atttypid, atttypmod)`: what a description's
    /// `source_type` says.
    type_text: String,
}

/// The table's live columns, read in a snapshot taken after `lsn`.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The WAL insert position read before the columns: every transaction
    /// committed before it is visible to the read.
    pub(super) lsn: u64,
    columns: Vec<LayoutColumn>,
}

impl Layout {
    /// Reads the WAL position, then (in a later snapshot) the table's
    /// columns.
    pub(super) async fn read(connection: &PgConnection, capture: &Capture) -> Result<Self, CdcError> {
        let lsn: i64 = connection
            .client
            .query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8", &[])
            .await
            .map_err(query_error)?
            .get(0);
        let table = &capture.description.table;
        let columns = connection
            .client
            .query(
                "SELECT a.attname::text, a.atttypid::int8, a.atttypmod, format_type(a.atttypid, a.atttypmod) \
                 FROM pg_attribute a \
                 WHERE a.attrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass \
                   AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(query_error)?
            .iter()
            .map(|row| LayoutColumn {
                name: row.get(0),
                type_id: u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX),
                type_modifier: row.get(2),
                type_text: row.get(3),
            })
            .collect();
        Ok(Self {
            lsn: u64::try_from(lsn).unwrap_or_default(),
            columns,
        })
    }

    /// How the job's columns (`capture`, as the run described the table)
    /// differ from this layout, if they do: the table changed between the
    /// run's description and the stream's start.
    pub(super) fn differs_from_capture(&self, capture: &Capture) -> Option<String> {
        capture_differs(
            capture,
            self.columns.iter().map(|c| (c.name.as_str(), c.type_text.as_str())),
        )
    }

    /// How a relation message of a change committed after [`Layout::lsn`]
    /// differs from this layout in the columns the job follows, if it does.
    pub(super) fn differs_from_relation(&self, table: &TableRef, relation: &[RelationColumn]) -> Option<String> {
        for column in &self.columns {
            match relation.iter().find(|r| *r.name == *column.name) {
                None => return Some(dropped(table, &column.name)),
                Some(now) if now.type_id != column.type_id || now.type_modifier != column.type_modifier => {
                    return Some(format!(
                        "column \"{}\" of {table} changed type (type {} modifier {} in the change stream, {} when \
                         the stream started)",
                        column.name, now.type_id, now.type_modifier, column.type_text
                    ));
                }
                Some(_) => {}
            }
        }
        relation
            .iter()
            .find(|r| !self.columns.iter().any(|c| *c.name == *r.name))
            .map(|r| added(table, &r.name))
    }
}

#[cfg(test)]
impl Layout {
    /// The layout a relation message describes, as of `lsn`.
    pub(super) fn of(lsn: u64, relation: &[RelationColumn]) -> Self {
        Self {
            lsn,
            columns: relation
                .iter()
                .map(|c| LayoutColumn {
                    name: c.name.to_string(),
                    type_id: c.type_id,
                    type_modifier: c.type_modifier,
                    type_text: c.type_id.to_string(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(columns: &[(&str, u32, &str)]) -> Layout {
        Layout {
            lsn: 100,
            columns: columns
                .iter()
                .map(|&(name, type_id, type_text)| LayoutColumn {
                    name: name.into(),
                    type_id,
                    type_modifier: -1,
                    type_text: type_text.into(),
                })
                .collect(),
        }
    }

    fn table() -> TableRef {
        TableRef {
            schema: "public".into(),
            name: "items".into(),
        }
    }

    fn relation(columns: &[(&str, u32)]) -> Vec<RelationColumn> {
        columns
            .iter()
            .map(|&(name, type_id)| RelationColumn::new(0, name.into(), type_id, -1))
            .collect()
    }

    #[test]
    fn a_relation_differs_by_an_added_dropped_or_retyped_column() {
        let layout = layout(&[("id", 20, "bigint"), ("note", 25, "text")]);
        assert_eq!(
            layout.differs_from_relation(&table(), &relation(&[("id", 20), ("note", 25)])),
            None
        );
        let added = layout.differs_from_relation(&table(), &relation(&[("id", 20), ("note", 25), ("tag", 25)]));
        assert_eq!(added.as_deref(), Some("column \"tag\" was added to public.items"));
        let dropped = layout.differs_from_relation(&table(), &relation(&[("id", 20)]));
        assert_eq!(
            dropped.as_deref(),
            Some("column \"note\" of public.items was dropped or renamed")
        );
        let retyped = layout
            .differs_from_relation(&table(), &relation(&[("id", 23), ("note", 25)]))
            .unwrap();
        assert!(
            retyped.contains("column \"id\" of public.items changed type"),
            "{retyped}"
        );
    }
}
