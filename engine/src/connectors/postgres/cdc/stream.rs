//! The slot's stream as [`ChangeEvent`]s: pgwire-replication delivers
//! Begin, Commit, logical messages and keepalives itself and every other
//! pgoutput message raw; `pg_walstream` parses those, and [`Decoder`]
//! turns the captured table's changes into change rows.
//!
//! Change shapes (docs/design/cdc.md 2.4): an update whose key changed
//! (the old tuple of kind `K`, or an `O` old tuple whose key columns
//! differ) becomes a `delete` of the old key followed directly by an
//! `insert` of the new row, at consecutive sequence numbers; an unchanged
//! TOAST value (`u`) is NULL in the row and named in `_sluice_unchanged`,
//! unless a full old tuple (`REPLICA IDENTITY FULL`) carries it.

use std::collections::VecDeque;

use async_trait::async_trait;
use chrono::DateTime;
use pg_walstream::{LogicalReplicationMessage, LogicalReplicationParser, TupleData};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};

use super::layout::Layout;
use super::{replication_error, text};
use crate::cdc::{ChangeBatchBuilder, ChangeOp, ChangeValue};
use crate::contract::{Capture, CdcError, ChangeEvent, ChangeStream, Position, TableRef};

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// An open replication session decoded into change events.
pub(super) struct PgChangeStream {
    client: ReplicationClient,
    decoder: Decoder,
    ready: VecDeque<ChangeEvent>,
}

impl PgChangeStream {
    /// A stream of `capture`'s table, whose columns were `layout` when it
    /// opened; when the run described the table differently (it changed in
    /// between), the stream's first event says so.
    pub(super) fn new(client: ReplicationClient, capture: &Capture, layout: Layout) -> Self {
        let ready = layout
            .differs_from_capture(capture)
            .map(|detail| ChangeEvent::SchemaChanged { detail })
            .into_iter()
            .collect();
        Self {
            client,
            decoder: Decoder::new(capture, layout),
            ready,
        }
    }
}

#[async_trait]
impl ChangeStream for PgChangeStream {
    async fn next(&mut self) -> Result<Option<ChangeEvent>, CdcError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            match self.client.recv().await.map_err(replication_error)? {
                Some(event) => self.decoder.push(event, &mut self.ready)?,
                None => return Ok(None),
            }
        }
    }

    fn confirm(&mut self, upto: &Position) {
        if let Position::Postgres { end_lsn, .. } = upto {
            self.client.update_applied_lsn(Lsn(*end_lsn));
        }
    }

    async fn close(mut self: Box<Self>) -> Result<(), CdcError> {
        self.client.shutdown().await.map_err(replication_error)
    }
}

/// The captured table as the stream describes it.
struct Relation {
    id: u32,
    /// For each job column, its place in the relation's tuples; `None`:
    /// not in this relation (a change made before the column was added, or
    /// after it was dropped), NULL.
    places: Vec<Option<usize>>,
    /// The places of the replica identity (key) columns.
    key: Vec<usize>,
}

/// The transaction being decoded.
struct Open {
    key: Position,
    /// Its commit's LSN.
    lsn: u64,
    commit_ts: i64,
    seq: u32,
}

/// Turns replication events into change events for one table.
pub(super) struct Decoder {
    table: TableRef,
    columns: Vec<String>,
    parser: LogicalReplicationParser,
    relation: Option<Relation>,
    /// The table's columns when the stream opened.
    layout: Layout,
    builder: ChangeBatchBuilder,
    open: Option<Open>,
}

impl Decoder {
    pub(super) fn new(capture: &Capture, layout: Layout) -> Self {
        Self {
            table: capture.description.table.clone(),
            columns: capture.description.columns.iter().map(|c| c.name.clone()).collect(),
            parser: LogicalReplicationParser::with_protocol_version(1),
            relation: None,
            layout,
            builder: ChangeBatchBuilder::new(capture.description.arrow_schema(), text::decode, capture.batch_rows),
            open: None,
        }
    }

    /// Decodes one replication event, appending what it yields to `out`.
    pub(super) fn push(&mut self, event: ReplicationEvent, out: &mut VecDeque<ChangeEvent>) -> Result<(), CdcError> {
        match event {
            ReplicationEvent::Begin {
                final_lsn,
                commit_time_micros,
                ..
            } => {
                let key = Position::postgres_snapshot(final_lsn.0);
                let commit_ts = commit_time_micros.saturating_add(PG_EPOCH_MICROS);
                out.push_back(ChangeEvent::Begin {
                    key: key.clone(),
                    commit_ts: DateTime::from_timestamp_micros(commit_ts).unwrap_or_default(),
                });
                self.open = Some(Open {
                    key,
                    lsn: final_lsn.0,
                    commit_ts,
                    seq: 0,
                });
            }
            ReplicationEvent::XLogData { data, .. } => {
                let message = self
                    .parser
                    .parse_wal_message_bytes(data)
                    .map_err(|e| CdcError::Unsupported(format!("pgoutput message: {e}")))?
                    .message;
                self.message(message, out)?;
                if self.builder.is_full() {
                    out.extend(self.builder.finish()?.map(ChangeEvent::Rows));
                }
            }
            ReplicationEvent::Commit { lsn, end_lsn, .. } => {
                out.extend(self.builder.finish()?.map(ChangeEvent::Rows));
                self.open = None;
                out.push_back(ChangeEvent::Commit {
                    resume: Position::Postgres {
                        commit_lsn: lsn.0,
                        end_lsn: end_lsn.0,
                    },
                });
            }
            ReplicationEvent::Message { prefix, lsn, .. } => out.push_back(ChangeEvent::Marker {
                prefix,
                at: Position::postgres_snapshot(lsn.0),
            }),
            ReplicationEvent::KeepAlive { wal_end, .. } if self.open.is_none() => out.push_back(ChangeEvent::Idle {
                head: Position::postgres_snapshot(wal_end.0),
            }),
            _ => {}
        }
        Ok(())
    }

    fn message(&mut self, message: LogicalReplicationMessage, out: &mut VecDeque<ChangeEvent>) -> Result<(), CdcError> {
        match message {
            LogicalReplicationMessage::Relation {
                relation_id,
                namespace,
                relation_name,
                columns,
                ..
            } if *namespace == *self.table.schema && *relation_name == *self.table.name => {
                let newer = self.open.as_ref().is_some_and(|open| open.lsn > self.layout.lsn);
                if newer && let Some(detail) = self.layout.differs_from_relation(&self.table, &columns) {
                    // The rows before it in the transaction were of the
                    // old definition; the caller stops here.
                    out.extend(self.builder.finish()?.map(ChangeEvent::Rows));
                    out.push_back(ChangeEvent::SchemaChanged { detail });
                }
                let places = self
                    .columns
                    .iter()
                    .map(|name| columns.iter().position(|c| *c.name == **name))
                    .collect();
                let key = (0..columns.len()).filter(|&i| columns[i].is_key()).collect();
                self.relation = Some(Relation {
                    id: relation_id,
                    places,
                    key,
                });
            }
            LogicalReplicationMessage::Insert { relation_id, tuple } if self.is_ours(relation_id) => {
                let row = self.values(&tuple)?;
                self.row(ChangeOp::Insert, row)?;
            }
            LogicalReplicationMessage::Update {
                relation_id,
                old_tuple,
                new_tuple,
                key_type,
            } if self.is_ours(relation_id) => {
                let mut new = self.values(&new_tuple)?;
                match (key_type, old_tuple) {
                    (Some('O'), Some(old)) => {
                        let before = self.values(&old)?;
                        for (value, was) in new.iter_mut().zip(&before) {
                            if *value == ChangeValue::Unchanged {
                                value.clone_from(was);
                            }
                        }
                        if self.key_of(&old) != self.key_of(&new_tuple) {
                            self.row(ChangeOp::Delete, before)?;
                            self.row(ChangeOp::Insert, new)?;
                        } else {
                            self.row(ChangeOp::Update, new)?;
                        }
                    }
                    (Some('K'), Some(old)) => {
                        let before = self.values(&old)?;
                        self.row(ChangeOp::Delete, before)?;
                        self.row(ChangeOp::Insert, new)?;
                    }
                    _ => self.row(ChangeOp::Update, new)?,
                }
            }
            LogicalReplicationMessage::Delete {
                relation_id, old_tuple, ..
            } if self.is_ours(relation_id) => {
                let row = self.values(&old_tuple)?;
                self.row(ChangeOp::Delete, row)?;
            }
            LogicalReplicationMessage::Truncate { relation_ids, .. }
                if relation_ids.iter().any(|&id| self.is_ours(id)) =>
            {
                let row = vec![ChangeValue::Null; self.columns.len()];
                self.row(ChangeOp::Truncate, row)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn is_ours(&self, relation_id: u32) -> bool {
        self.relation.as_ref().is_some_and(|r| r.id == relation_id)
    }

    /// The job's columns of a tuple.
    fn values(&self, tuple: &TupleData) -> Result<Vec<ChangeValue>, CdcError> {
        let relation = self
            .relation
            .as_ref()
            .expect("only rows of a known relation are decoded");
        relation
            .places
            .iter()
            .zip(&self.columns)
            .map(|(&place, name)| {
                let Some(place) = place else {
                    return Ok(ChangeValue::Null);
                };
                let column = tuple.columns.get(place).ok_or_else(|| {
                    CdcError::Unsupported(format!("a change of {} has no column \"{name}\"", self.table))
                })?;
                Ok(if column.is_null() {
                    ChangeValue::Null
                } else if column.is_unchanged() {
                    ChangeValue::Unchanged
                } else if column.is_text() {
                    ChangeValue::Text(String::from_utf8_lossy(column.as_bytes()).into_owned())
                } else {
                    return Err(CdcError::Unsupported(format!(
                        "column \"{name}\" arrived in binary format"
                    )));
                })
            })
            .collect()
    }

    /// The replica identity columns of a tuple, as sent.
    fn key_of<'t>(&self, tuple: &'t TupleData) -> Vec<Option<&'t [u8]>> {
        let relation = self
            .relation
            .as_ref()
            .expect("only rows of a known relation are decoded");
        relation
            .key
            .iter()
            .map(|&i| tuple.columns.get(i).map(|c| c.as_bytes()))
            .collect()
    }

    fn row(&mut self, op: ChangeOp, values: Vec<ChangeValue>) -> Result<(), CdcError> {
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| CdcError::Unsupported("a change arrived outside a transaction".into()))?;
        self.builder
            .push(op, open.key.row_position(open.seq), open.commit_ts, values);
        open.seq += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray, RecordBatch};
    use datafusion::arrow::datatypes::Int64Type;
    use pg_walstream::{ColumnData, ColumnInfo, encode_message_to_bytes};

    use super::*;
    use crate::connectors::postgres::types::{PgColumnType, PgTypeKind, map};
    use crate::contract::{ColumnInfo as SourceColumn, TableDescription, TableKind};

    fn column(name: &str, type_name: &str, key: bool) -> SourceColumn {
        let ty = PgColumnType {
            name: type_name.into(),
            formatted: type_name.into(),
            precision: None,
            scale: None,
            kind: PgTypeKind::Base,
        };
        SourceColumn {
            name: name.into(),
            ordinal: 1,
            source_type: type_name.into(),
            nullable: !key,
            default: None,
            primary_key_position: key.then_some(1),
            indexed: key,
            mapping: map(&ty),
        }
    }

    fn capture(batch_rows: usize) -> Capture {
        Capture {
            description: TableDescription {
                table: TableRef {
                    schema: "public".into(),
                    name: "items".into(),
                },
                kind: TableKind::Table,
                columns: vec![column("id", "int8", true), column("big", "text", false)],
                estimated_rows: None,
            },
            mode: sluice_catalog::CdcMode::Merge,
            parallel: None,
            batch_rows,
            publication: None,
            server_id: None,
            every_column: false,
        }
    }

    fn xlog(message: LogicalReplicationMessage) -> ReplicationEvent {
        ReplicationEvent::XLogData {
            wal_start: Lsn(0),
            wal_end: Lsn(0),
            server_time_micros: 0,
            data: encode_message_to_bytes(&message, 1).freeze(),
        }
    }

    /// The columns of the test table: one the job does not load, its key
    /// and a text column.
    fn relation_columns() -> Vec<ColumnInfo> {
        vec![
            ColumnInfo::new(0, "extra".into(), 23, -1),
            ColumnInfo::new(1, "id".into(), 20, -1),
            ColumnInfo::new(0, "big".into(), 25, -1),
        ]
    }

    fn relation(id: u32, name: &str) -> ReplicationEvent {
        relation_of(id, name, relation_columns())
    }

    fn relation_of(id: u32, name: &str, columns: Vec<ColumnInfo>) -> ReplicationEvent {
        xlog(LogicalReplicationMessage::Relation {
            relation_id: id,
            namespace: "public".into(),
            relation_name: name.into(),
            replica_identity: b'd',
            columns,
        })
    }

    fn tuple(values: [Option<&str>; 3]) -> TupleData {
        TupleData::new(
            values
                .into_iter()
                .map(|v| match v {
                    None => ColumnData::null(),
                    Some("<u>") => ColumnData::unchanged(),
                    Some(text) => ColumnData::text(text.as_bytes().to_vec()),
                })
                .collect(),
        )
    }

    fn begin(lsn: u64) -> ReplicationEvent {
        ReplicationEvent::Begin {
            final_lsn: Lsn(lsn),
            xid: 1,
            commit_time_micros: 1_000_000,
        }
    }

    fn commit(lsn: u64) -> ReplicationEvent {
        ReplicationEvent::Commit {
            lsn: Lsn(lsn),
            end_lsn: Lsn(lsn + 8),
            commit_time_micros: 1_000_000,
        }
    }

    fn decode(batch_rows: usize, events: Vec<ReplicationEvent>) -> Vec<ChangeEvent> {
        let mut decoder = Decoder::new(&capture(batch_rows), Layout::of(0, &relation_columns()));
        let mut out = VecDeque::new();
        for event in events {
            decoder.push(event, &mut out).unwrap();
        }
        out.into()
    }

    /// (op, id, big, unchanged columns, position) of one decoded row.
    type Row = (String, Option<i64>, Option<String>, bool, String);

    /// Every decoded row, in order.
    fn rows(events: &[ChangeEvent]) -> Vec<Row> {
        let batches: Vec<&RecordBatch> = events
            .iter()
            .filter_map(|e| match e {
                ChangeEvent::Rows(batch) => Some(batch),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for batch in batches {
            for row in 0..batch.num_rows() {
                let id = batch.column(0).as_primitive::<Int64Type>();
                let big = batch.column(1).as_string::<i32>();
                out.push((
                    batch.column(2).as_string::<i32>().value(row).to_owned(),
                    id.is_valid(row).then(|| id.value(row)),
                    big.is_valid(row).then(|| big.value(row).to_owned()),
                    batch.column(5).is_valid(row),
                    batch.column(3).as_string::<i32>().value(row).to_owned(),
                ));
            }
        }
        out
    }

    #[test]
    fn every_change_shape_becomes_rows_in_log_order() {
        let events = decode(
            100,
            vec![
                relation(7, "other"),
                relation(9, "items"),
                begin(0x100),
                xlog(LogicalReplicationMessage::Insert {
                    relation_id: 9,
                    tuple: tuple([Some("5"), Some("1"), Some("a")]),
                }),
                xlog(LogicalReplicationMessage::Insert {
                    relation_id: 7,
                    tuple: tuple([Some("5"), Some("99"), Some("other table")]),
                }),
                xlog(LogicalReplicationMessage::Update {
                    relation_id: 9,
                    old_tuple: None,
                    new_tuple: tuple([Some("5"), Some("1"), Some("<u>")]),
                    key_type: None,
                }),
                xlog(LogicalReplicationMessage::Update {
                    relation_id: 9,
                    old_tuple: Some(tuple([None, Some("1"), None])),
                    new_tuple: tuple([Some("5"), Some("2"), Some("<u>")]),
                    key_type: Some('K'),
                }),
                xlog(LogicalReplicationMessage::Delete {
                    relation_id: 9,
                    old_tuple: tuple([None, Some("2"), None]),
                    key_type: 'K',
                }),
                xlog(LogicalReplicationMessage::Truncate {
                    relation_ids: vec![7, 9],
                    flags: 0,
                }),
                commit(0x100),
            ],
        );
        assert!(matches!(&events[0], ChangeEvent::Begin { key, commit_ts }
            if *key == Position::postgres_snapshot(0x100) && commit_ts.timestamp() == 946_684_801));
        let s = |v: &str| Some(v.to_owned());
        let at = |seq: u32| Position::postgres_snapshot(0x100).row_position(seq);
        assert_eq!(
            rows(&events),
            [
                ("insert".into(), Some(1), s("a"), false, at(0)),
                ("update".into(), Some(1), None, true, at(1)),
                ("delete".into(), Some(1), None, false, at(2)),
                ("insert".into(), Some(2), None, true, at(3)),
                ("delete".into(), Some(2), None, false, at(4)),
                ("truncate".into(), None, None, false, at(5)),
            ]
        );
        assert!(matches!(
            events.last(),
            Some(ChangeEvent::Commit {
                resume: Position::Postgres {
                    commit_lsn: 0x100,
                    end_lsn: 0x108
                }
            })
        ));
    }

    #[test]
    fn a_full_old_tuple_fills_unchanged_values_and_shows_key_changes() {
        let events = decode(
            100,
            vec![
                relation(9, "items"),
                begin(0x200),
                xlog(LogicalReplicationMessage::Update {
                    relation_id: 9,
                    old_tuple: Some(tuple([Some("5"), Some("1"), Some("big")])),
                    new_tuple: tuple([Some("6"), Some("1"), Some("<u>")]),
                    key_type: Some('O'),
                }),
                xlog(LogicalReplicationMessage::Update {
                    relation_id: 9,
                    old_tuple: Some(tuple([Some("6"), Some("1"), Some("big")])),
                    new_tuple: tuple([Some("6"), Some("3"), Some("<u>")]),
                    key_type: Some('O'),
                }),
                commit(0x200),
            ],
        );
        let s = |v: &str| Some(v.to_owned());
        let at = |seq: u32| Position::postgres_snapshot(0x200).row_position(seq);
        assert_eq!(
            rows(&events),
            [
                ("update".into(), Some(1), s("big"), false, at(0)),
                ("delete".into(), Some(1), s("big"), false, at(1)),
                ("insert".into(), Some(3), s("big"), false, at(2)),
            ]
        );
    }

    #[test]
    fn large_transactions_arrive_in_batches_and_idle_only_between_transactions() {
        let mut events = vec![relation(9, "items"), begin(0x300)];
        for id in 0..10 {
            events.push(xlog(LogicalReplicationMessage::Insert {
                relation_id: 9,
                tuple: tuple([None, Some(&id.to_string()), None]),
            }));
        }
        let keepalive = |lsn| ReplicationEvent::KeepAlive {
            wal_end: Lsn(lsn),
            reply_requested: false,
            server_time_micros: 0,
        };
        events.push(keepalive(0x350));
        events.push(commit(0x300));
        events.push(keepalive(0x400));
        let out = decode(4, events);
        let sizes: Vec<usize> = out
            .iter()
            .filter_map(|e| match e {
                ChangeEvent::Rows(batch) => Some(batch.num_rows()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, [4, 4, 2]);
        let idle: Vec<_> = out.iter().filter(|e| matches!(e, ChangeEvent::Idle { .. })).collect();
        assert_eq!(idle.len(), 1, "no idle inside a transaction");
        assert!(matches!(out.last(), Some(ChangeEvent::Idle { head }) if *head == Position::postgres_snapshot(0x400)));
    }

    #[test]
    fn changes_older_than_the_layout_read_missing_columns_as_null() {
        // Committed before the stream's layout: "big" did not exist yet.
        let mut decoder = Decoder::new(&capture(10), Layout::of(0x500, &relation_columns()));
        let mut out = VecDeque::new();
        let old = vec![
            ColumnInfo::new(0, "extra".into(), 23, -1),
            ColumnInfo::new(1, "id".into(), 20, -1),
        ];
        for event in [
            begin(0x400),
            relation_of(9, "items", old),
            xlog(LogicalReplicationMessage::Insert {
                relation_id: 9,
                tuple: TupleData::new(vec![ColumnData::null(), ColumnData::text(b"7".to_vec())]),
            }),
            commit(0x400),
        ] {
            decoder.push(event, &mut out).unwrap();
        }
        let out: Vec<ChangeEvent> = out.into();
        assert!(!out.iter().any(|e| matches!(e, ChangeEvent::SchemaChanged { .. })));
        assert_eq!(
            rows(&out),
            [(
                "insert".into(),
                Some(7),
                None,
                false,
                "0000000000000400-00000000".into()
            )]
        );
    }

    #[test]
    fn a_newer_definition_stops_the_stream_before_its_first_change() {
        let mut decoder = Decoder::new(&capture(10), Layout::of(0x500, &relation_columns()));
        let mut out = VecDeque::new();
        let mut added = relation_columns();
        added.push(ColumnInfo::new(0, "tag".into(), 25, -1));
        for event in [
            relation(9, "items"),
            begin(0x600),
            xlog(LogicalReplicationMessage::Insert {
                relation_id: 9,
                tuple: tuple([None, Some("1"), Some("a")]),
            }),
            relation_of(9, "items", added),
        ] {
            decoder.push(event, &mut out).unwrap();
        }
        let out: Vec<ChangeEvent> = out.into();
        assert_eq!(rows(&out).len(), 1, "the rows before it come first");
        match out.last() {
            Some(ChangeEvent::SchemaChanged { detail }) => {
                assert_eq!(detail, "column \"tag\" was added to public.items");
            }
            other => panic!("expected a schema change last, got {other:?}"),
        }
    }
}
