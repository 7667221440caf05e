//! The binlog as [`ChangeEvent`]s: `mysql_async`'s binlog stream (as a
//! replica with MariaDB's GTID capability, so MariaDB sends its GTID
//! events), decoded one event at a time by [`Decoder`].
//!
//! Transactions: a GTID event (MariaDB 162; MySQL 33/34) or a `BEGIN`
//! query starts one at the event's offset (its key); an XID event or a
//! `COMMIT`/`ROLLBACK` query ends it at the end of that event (its resume
//! point). A transaction without `BEGIN` (MariaDB's GTID flag
//! `FL_STANDALONE`, MySQL's DDL) is its one statement. Rows of the
//! captured table become change rows; an update whose primary key changed
//! becomes a `delete` of the old key and an `insert` of the new row;
//! `TRUNCATE` of the table is a `truncate` row.
//!
//! A drain's marker: [`Marks`] holds the binlog head `mark` read (`SHOW
//! MASTER STATUS`); the stream yields the marker once it has read up to
//! that head, between transactions. Everything committed before `mark`
//! was written before that head.
//!
//! GTIDs: each position carries the GTID state after its transaction (the
//! state the stream started from, with each transaction's GTID merged in)
//! where the start had one. A stream started from a GTID state learns its
//! file from the first, artificial rotate event (whose name carries the
//! event's checksum: the format event that says so comes after it), and
//! its offset from the events after it (MariaDB marks where the state
//! leaves off with an artificial GTID list event). When that is before the
//! position it started from in `_sluice_position` order (another server's
//! binlog, after a failover), the stream raises the positions' `shift`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::DateTime;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::MySqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::StreamExt;
use mysql_async::binlog::events::{Event, EventData, OptionalMetadataField, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, Conn};

use super::super::endpoint::{classify, query_error};
use super::layout::Layout;
use super::values::{BinlogColumn, MySqlColumns, refuse_time_fraction};
use crate::cdc::{ChangeBatchBuilder, ChangeOp};
use crate::contract::{Capture, CdcError, ChangeEvent, ChangeStream, GtidState, Position, TableRef, excerpt};

/// The events a transaction starts with: MariaDB's GTID event, MySQL's
/// GTID and anonymous GTID events, a query (`BEGIN`, DDL).
const TRANSACTION_STARTS: [u8; 4] = [MARIADB_GTID_EVENT, 33, 34, 2];

/// MariaDB's GTID event.
const MARIADB_GTID_EVENT: u8 = 162;
/// The rotate event: the stream goes on in the file it names.
const ROTATE_EVENT: u8 = 4;
/// The length of an event's CRC32 checksum.
const CHECKSUM_LEN: usize = 4;
/// MariaDB's compressed query and rows events (`log_bin_compress`).
const MARIADB_COMPRESSED: std::ops::RangeInclusive<u8> = 165..=171;
/// MariaDB's GTID flag: the transaction is one statement, without BEGIN.
const FL_STANDALONE: u8 = 1;
/// An event the server made up for the stream (not in the binlog file).
const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;

/// A binlog head a drain waits for.
#[derive(Debug, Clone)]
pub(super) struct Mark {
    pub(super) prefix: String,
    pub(super) file: String,
    pub(super) position: u64,
}

/// The marks written since a stream opened, shared with the source that
/// writes them.
pub(super) type Marks = Arc<Mutex<Vec<Mark>>>;

/// An open binlog stream decoded into change events.
pub(super) struct MySqlChangeStream {
    binlog: BinlogStream,
    decoder: Decoder,
    marks: Marks,
    ready: VecDeque<ChangeEvent>,
}

impl MySqlChangeStream {
    /// A stream read by `decoder`; `changed` says how the table changed
    /// since the run described it, if it did: the stream's first event.
    pub(super) fn new(binlog: BinlogStream, decoder: Decoder, marks: Marks, changed: Option<String>) -> Self {
        Self {
            binlog,
            decoder,
            marks,
            ready: changed
                .map(|detail| ChangeEvent::SchemaChanged { detail })
                .into_iter()
                .collect(),
        }
    }

    /// Reads the stream's first event, the rotate event that names the
    /// file it starts in: a server that will not stream from where it was
    /// asked to refuses there instead (`failed` makes the error).
    pub(super) async fn start(&mut self, failed: impl FnOnce(mysql_async::Error) -> CdcError) -> Result<(), CdcError> {
        if let Some(event) = self.binlog.next().await {
            let event = event.map_err(failed)?;
            let binlog = &self.binlog;
            self.decoder.push(&event, |id| binlog.get_tme(id), &mut self.ready)?;
        }
        Ok(())
    }

    /// A mark the stream has read up to, if any (removed from the marks).
    fn reached_mark(&self) -> Option<ChangeEvent> {
        let mut marks = self.marks.lock().expect("marks lock");
        let i = marks
            .iter()
            .position(|mark| self.decoder.has_read(&mark.file, mark.position))?;
        let mark = marks.remove(i);
        Some(ChangeEvent::Marker {
            prefix: mark.prefix,
            at: self.decoder.here(),
        })
    }
}

#[async_trait]
impl ChangeStream for MySqlChangeStream {
    async fn next(&mut self) -> Result<Option<ChangeEvent>, CdcError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if let Some(marker) = self.reached_mark() {
                return Ok(Some(marker));
            }
            match self.binlog.next().await {
                Some(event) => {
                    let event = event.map_err(binlog_error)?;
                    let binlog = &self.binlog;
                    self.decoder.push(&event, |id| binlog.get_tme(id), &mut self.ready)?;
                }
                None => return Ok(None),
            }
        }
    }

    /// The destination holds the position; the source keeps nothing for
    /// the job, so there is nothing to tell it.
    fn confirm(&mut self, _upto: &Position) {}

    async fn close(self: Box<Self>) -> Result<(), CdcError> {
        self.binlog.close().await.map_err(binlog_error)
    }
}

/// The file and offset a rotate event names; `checksum`: the bytes after
/// the name (the first, artificial rotate event of a stream from a GTID
/// state ends with its checksum).
fn rotated_to(event: &Event, checksum: usize) -> std::io::Result<Option<(String, u64)>> {
    Ok(match event.read_data()? {
        Some(EventData::RotateEvent(rotate)) => {
            let name = rotate.name_raw();
            let name = &name[..name.len().saturating_sub(checksum)];
            Some((String::from_utf8_lossy(name).into_owned(), rotate.position()))
        }
        _ => None,
    })
}

/// Whether the server's binlog events end with a checksum
/// (`binlog_checksum`).
pub(super) async fn checksums(conn: &mut Conn) -> Result<bool, mysql_async::Error> {
    let checksum: Option<String> = conn.query_first("SELECT @@GLOBAL.binlog_checksum").await?;
    Ok(checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE")))
}

/// Where a stream from a GTID state starts on this server, read from its
/// first events: the file its artificial rotate event names, at the start
/// of the first transaction it sends, or where the server says it passed
/// over what the state holds (MariaDB's artificial GTID list event), or
/// the end of the last event it sent before it ended (MySQL passes over
/// the transactions the set holds without a word: an offset at most that
/// file early). `None` where the stream ends before it names a file.
pub(super) async fn gtid_start(
    binlog: &mut BinlogStream,
    checksums: bool,
) -> Result<Option<(String, u64)>, mysql_async::Error> {
    let mut start: Option<(String, u64)> = None;
    while let Some(event) = binlog.next().await.transpose()? {
        let header = event.header();
        let (kind, end) = (header.event_type_raw(), u64::from(header.log_pos()));
        if kind == ROTATE_EVENT {
            let checksum = if checksums && start.is_none() { CHECKSUM_LEN } else { 0 };
            start = rotated_to(&event, checksum)?.or(start);
            continue;
        }
        let Some((_, at)) = &mut start else { continue };
        let artificial = header.flags_raw() & LOG_EVENT_ARTIFICIAL_F != 0 || end == 0;
        if !artificial && TRANSACTION_STARTS.contains(&kind) {
            *at = (*at).max(end.saturating_sub(u64::from(header.event_size())));
            break;
        }
        *at = (*at).max(end);
    }
    Ok(start)
}

/// A failure of the binlog stream, with the server's SQLSTATE when it sent
/// one (a purged file is `HY000`, error 1236).
pub(super) fn binlog_error(err: mysql_async::Error) -> CdcError {
    match err {
        mysql_async::Error::Server(server) => CdcError::Replication {
            code: Some(server.state),
            message: format!("binlog stream: error {}: {}", server.code, server.message),
        },
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => CdcError::from(classify(err)),
        other => CdcError::Source(query_error(other)),
    }
}

/// The transaction being decoded.
struct Open {
    key: Position,
    commit_ts: i64,
    seq: u32,
    /// No `BEGIN`: the transaction is its one statement.
    standalone: bool,
}

/// Turns binlog events into change events for one table.
pub(super) struct Decoder {
    table: TableRef,
    columns: Vec<BinlogColumn>,
    /// The job's primary key columns, as indexes into `columns`.
    key: Vec<usize>,
    /// The table's columns when the stream opened.
    layout: Layout,
    /// For each job column, its place in the row images of the table map
    /// last checked; `None`: not in them (logged before the column was
    /// added, or after it was dropped), NULL.
    places: Vec<Option<usize>>,
    builder: ChangeBatchBuilder<MySqlColumns>,
    /// Where the stream has read to: the end of the last event.
    file: String,
    at: u64,
    open: Option<Open>,
    /// The table map whose layout was last checked against the job.
    checked: Option<u64>,
    /// The GTID state after the last transaction that began, where the
    /// stream started from one.
    gtid: Option<GtidState>,
    /// Added to file numbers in positions (see [`Position::MySql`]).
    shift: u64,
    /// Started from a GTID state: the position it started from, which the
    /// first transaction must not sort before.
    realign: Option<Position>,
    /// How the stream started, until its first rotate event.
    start: Start,
}

/// How a stream started: the first event the server sends is an artificial
/// rotate event naming the file it starts in, read before the format event
/// that says whether events end with a checksum.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    /// From the file the stream asked for.
    File,
    /// From a GTID state: the server names the file, and `checksum` bytes
    /// follow the name.
    Gtid { checksum: usize },
    /// The first rotate event was read.
    Started,
}

impl Decoder {
    /// A decoder for `capture`'s table, reading from `from` (by its GTID
    /// state when `by_gtid`); `checksums`: the server's events end with a
    /// CRC32 checksum (`binlog_checksum`).
    pub(super) fn new(
        capture: &Capture,
        from: &Position,
        by_gtid: bool,
        checksums: bool,
        layout: Layout,
    ) -> Result<Self, CdcError> {
        let Position::MySql {
            file, end, gtid, shift, ..
        } = from
        else {
            return Err(CdcError::Unsupported(format!(
                "{} is not a binlog position",
                from.to_json()
            )));
        };
        let description = &capture.description;
        let columns = description
            .columns
            .iter()
            .map(BinlogColumn::of)
            .collect::<Result<Vec<_>, _>>()?;
        let key = (0..columns.len())
            .filter(|&i| description.columns[i].primary_key_position.is_some())
            .collect();
        Ok(Self {
            table: description.table.clone(),
            places: columns.iter().map(|c| Some(c.index)).collect(),
            columns,
            key,
            layout,
            builder: ChangeBatchBuilder::with_values(
                description.arrow_schema(),
                MySqlColumns::new(description)?,
                capture.batch_rows,
            ),
            file: file.clone(),
            at: *end,
            open: None,
            checked: None,
            gtid: gtid.clone(),
            shift: *shift,
            realign: by_gtid.then(|| from.clone()),
            start: match (by_gtid, checksums) {
                (false, _) => Start::File,
                (true, checksums) => Start::Gtid {
                    checksum: if checksums { CHECKSUM_LEN } else { 0 },
                },
            },
        })
    }

    /// Whether the stream has read the binlog up to `(file, position)`,
    /// with no transaction open (never before the server named the file of
    /// a stream from a GTID state: until then the stream is at another
    /// server's coordinates).
    fn has_read(&self, file: &str, position: u64) -> bool {
        self.open.is_none()
            && !matches!(self.start, Start::Gtid { .. })
            && Position::binlog_order(&self.file, self.at) >= Position::binlog_order(file, position)
    }

    /// Where the stream is.
    fn here(&self) -> Position {
        Position::MySql {
            file: self.file.clone(),
            begin: self.at,
            end: self.at,
            gtid: self.gtid.clone(),
            shift: self.shift,
        }
    }

    /// Moves the read position forward to `(file, position)` (never back:
    /// the server resends a file's format event when it starts a stream
    /// in the middle of the file).
    fn advance(&mut self, file: &str, position: u64) {
        if Position::binlog_order(file, position) > Position::binlog_order(&self.file, self.at) {
            file.clone_into(&mut self.file);
            self.at = position;
        }
    }

    /// Decodes one binlog event, appending what it yields to `out`;
    /// `table_map` finds the table map of a rows event.
    pub(super) fn push<'t>(
        &mut self,
        event: &Event,
        table_map: impl Fn(u64) -> Option<&'t TableMapEvent<'static>>,
        out: &mut VecDeque<ChangeEvent>,
    ) -> Result<(), CdcError> {
        let header = event.header();
        let kind = header.event_type_raw();
        if kind == ROTATE_EVENT {
            // The next file starts (the stream's first rotate: the file it
            // starts in): nothing more of this one.
            let checksum = match std::mem::replace(&mut self.start, Start::Started) {
                Start::File => return Ok(()),
                Start::Gtid { checksum } => checksum,
                Start::Started => 0,
            };
            if let Some((file, at)) = rotated_to(event, checksum).map_err(|e| self.broken(e))? {
                self.file = file;
                self.at = at;
            }
            return Ok(());
        }
        if header.flags_raw() & LOG_EVENT_ARTIFICIAL_F != 0 || header.log_pos() == 0 {
            // Made up for the stream: the format event of a stream that
            // starts inside a file, MariaDB's GTID list where a GTID start
            // leaves off (at its position).
            self.advance(&self.file.clone(), u64::from(header.log_pos()));
            return Ok(());
        }
        let end = u64::from(header.log_pos());
        let start = end.saturating_sub(u64::from(header.event_size()));
        let timestamp = i64::from(header.timestamp()) * 1_000_000;
        if kind == MARIADB_GTID_EVENT {
            let (gtid, standalone) = mariadb_gtid(event.data(), header.server_id())?;
            self.begin(start, timestamp, Some(gtid), standalone, out)?;
        } else if MARIADB_COMPRESSED.contains(&kind) {
            return Err(CdcError::BinlogSetting {
                setting: "log_bin_compress",
                found: "ON".into(),
                wanted: "OFF",
            });
        } else {
            match event.read_data().map_err(|e| self.broken(e))? {
                Some(EventData::GtidEvent(gtid)) => {
                    let sid: String = gtid.sid().iter().map(|b| format!("{b:02x}")).collect();
                    let gtid = format!("{sid}:{}", gtid.gno());
                    self.begin(start, timestamp, Some(gtid), true, out)?;
                }
                Some(EventData::AnonymousGtidEvent(_)) => self.begin(start, timestamp, None, true, out)?,
                Some(EventData::QueryEvent(query)) => {
                    let text = query.query();
                    let statement = text.trim().trim_end_matches(';').trim();
                    if statement.eq_ignore_ascii_case("BEGIN") {
                        if self.open.is_none() {
                            self.begin(start, timestamp, None, false, out)?;
                        }
                        if let Some(open) = &mut self.open {
                            open.standalone = false;
                        }
                    } else if statement.eq_ignore_ascii_case("COMMIT") || statement.eq_ignore_ascii_case("ROLLBACK") {
                        self.commit(end, out)?;
                    } else {
                        if self.open.is_none() {
                            self.begin(start, timestamp, None, true, out)?;
                        }
                        if truncates(statement, &query.schema(), &self.table) {
                            self.row(ChangeOp::Truncate, None)?;
                        } else if logged_as_statement(statement, &self.table) {
                            return Err(CdcError::BinlogSetting {
                                setting: "binlog_format",
                                found: format!("STATEMENT or MIXED for the session that ran `{}`", excerpt(statement)),
                                wanted: "ROW",
                            });
                        } else if self.layout.is_newer(&self.file, start) && redefines(statement, &self.table) {
                            // Logged after the definition the stream read:
                            // the caller follows it and reads on.
                            out.extend(self.builder.finish()?.map(ChangeEvent::Rows));
                            out.push_back(ChangeEvent::SchemaChanged {
                                detail: format!("`{}` changed {}", excerpt(statement), self.table),
                            });
                        }
                        if self.open.as_ref().is_some_and(|open| open.standalone) {
                            self.commit(end, out)?;
                        }
                    }
                }
                Some(EventData::XidEvent(_)) => self.commit(end, out)?,
                Some(EventData::RowsEvent(rows)) => {
                    let tme = table_map(rows.table_id()).ok_or_else(|| {
                        CdcError::Unsupported(format!(
                            "a rows event for table id {} without its table map",
                            rows.table_id()
                        ))
                    })?;
                    if *tme.database_name() == *self.table.schema && *tme.table_name() == *self.table.name {
                        self.check_layout(tme)?;
                        self.rows(&rows, tme)?;
                        if self.builder.is_full() {
                            out.extend(self.builder.finish()?.map(ChangeEvent::Rows));
                        }
                    }
                }
                _ => {}
            }
        }
        self.advance(&self.file.clone(), end);
        Ok(())
    }

    fn begin(
        &mut self,
        start: u64,
        timestamp: i64,
        gtid: Option<String>,
        standalone: bool,
        out: &mut VecDeque<ChangeEvent>,
    ) -> Result<(), CdcError> {
        if self.open.is_some() {
            return Err(CdcError::Unsupported(format!(
                "a transaction began at {}:{start} inside another",
                self.file
            )));
        }
        if let Some(from) = self.realign.take() {
            self.shift = Position::shift_after(&self.file, start, self.shift, &from);
        }
        // A transaction without a GTID (MySQL's anonymous ones) leaves the
        // state as it was, and its key compares by file and offset.
        let gtid = match (&self.gtid, gtid) {
            (Some(state), Some(gtid)) => {
                let state = state.with(&gtid).map_err(CdcError::Unsupported)?;
                self.gtid = Some(state.clone());
                Some(state)
            }
            _ => None,
        };
        let key = Position::MySql {
            file: self.file.clone(),
            begin: start,
            end: start,
            gtid,
            shift: self.shift,
        };
        out.push_back(ChangeEvent::Begin {
            key: key.clone(),
            commit_ts: DateTime::from_timestamp_micros(timestamp).unwrap_or_default(),
        });
        self.open = Some(Open {
            key,
            commit_ts: timestamp,
            seq: 0,
            standalone,
        });
        Ok(())
    }

    fn commit(&mut self, end: u64, out: &mut VecDeque<ChangeEvent>) -> Result<(), CdcError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        out.extend(self.builder.finish()?.map(ChangeEvent::Rows));
        let Position::MySql { file, begin, shift, .. } = open.key else {
            unreachable!("binlog transactions have binlog keys")
        };
        out.push_back(ChangeEvent::Commit {
            resume: Position::MySql {
                file,
                begin,
                end,
                gtid: self.gtid.clone(),
                shift,
            },
        });
        Ok(())
    }

    /// Finds the job's columns in a table map: by name where the binlog
    /// logs names (`binlog_row_metadata = FULL`), else by their place in
    /// the table as the stream's layout has it, which only a table map of
    /// as many columns can be read by. Refuses a table map a job column
    /// cannot be read from (another type, a key column missing).
    fn check_layout(&mut self, tme: &TableMapEvent<'_>) -> Result<(), CdcError> {
        if self.checked == Some(tme.table_id()) {
            return Ok(());
        }
        let changed = |why: String| {
            CdcError::Unsupported(format!(
                "the binlog's layout of {} does not match the job's columns ({why}): the table's definition changed \
                 while older changes were still to be read; SET GLOBAL binlog_row_metadata = FULL so the binlog names \
                 each column, then RESYNC ETL JOB",
                self.table
            ))
        };
        let count = tme.columns_count() as usize;
        for i in 0..count {
            let ty = tme.get_column_type(i).map_err(|e| changed(e.to_string()))?;
            if ty == Some(ColumnType::MYSQL_TYPE_TIME2) {
                let fsp = tme.get_column_metadata(i).and_then(|m| m.first().copied()).unwrap_or(0);
                refuse_time_fraction(&format!("#{}", i + 1), usize::from(fsp))?;
            }
        }
        let places: Vec<Option<usize>> = match column_names(tme) {
            Some(names) => self
                .columns
                .iter()
                .map(|column| names.iter().position(|name| *name == column.name))
                .collect(),
            None if count != self.layout.column_count() => {
                return Err(changed(format!(
                    "it logs {count} columns without their names, the table has {}",
                    self.layout.column_count()
                )));
            }
            None => self.columns.iter().map(|column| Some(column.index)).collect(),
        };
        for (i, (column, place)) in self.columns.iter().zip(&places).enumerate() {
            let Some(place) = *place else {
                if self.key.contains(&i) {
                    return Err(changed(format!("key column \"{}\" is not in it", column.name)));
                }
                continue;
            };
            match tme.get_column_type(place).ok().flatten() {
                Some(ty) if column.types.contains(&ty) => {}
                Some(ty) => return Err(changed(format!("column \"{}\" is logged as {ty:?}", column.name))),
                None => return Err(changed(format!("column \"{}\" is not in it", column.name))),
            }
        }
        self.places = places;
        self.checked = Some(tme.table_id());
        Ok(())
    }

    fn rows(&mut self, rows: &RowsEventData<'_>, tme: &TableMapEvent<'_>) -> Result<(), CdcError> {
        for row in rows.rows(tme) {
            let (before, after) = row.map_err(|e| self.broken(e))?;
            match (before, after) {
                (None, Some(after)) => self.row(ChangeOp::Insert, Some(after))?,
                (Some(before), None) => self.row(ChangeOp::Delete, Some(before))?,
                (Some(before), Some(after)) => {
                    if self.key_of(&before) != self.key_of(&after) {
                        self.row(ChangeOp::Delete, Some(before))?;
                        self.row(ChangeOp::Insert, Some(after))?;
                    } else {
                        self.row(ChangeOp::Update, Some(after))?;
                    }
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// The primary key values of a row image.
    fn key_of<'r>(&self, row: &'r BinlogRow) -> Vec<Option<&'r BinlogValue<'r>>> {
        self.key
            .iter()
            .map(|&i| self.places[i].and_then(|place| row.as_ref(place)))
            .collect()
    }

    /// One change row: the job's columns of `image` (none for a truncate).
    fn row(&mut self, op: ChangeOp, image: Option<BinlogRow>) -> Result<(), CdcError> {
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| CdcError::Unsupported("a change arrived outside a transaction".into()))?;
        let position = open.key.row_position(open.seq);
        let commit_ts = open.commit_ts;
        open.seq += 1;
        let values = match image {
            None => vec![mysql_async::Value::NULL; self.columns.len()],
            Some(mut image) => self
                .columns
                .iter()
                .zip(&self.places)
                .map(|(column, place)| {
                    let Some(place) = *place else {
                        return Ok(mysql_async::Value::NULL);
                    };
                    let value = image.take(place).ok_or_else(|| CdcError::BinlogSetting {
                        setting: "binlog_row_image",
                        found: "not FULL".into(),
                        wanted: "FULL",
                    })?;
                    column.normalize(value)
                })
                .collect::<Result<_, _>>()?,
        };
        self.builder.push_values(op, position, commit_ts, values)
    }

    fn broken(&self, e: impl std::fmt::Display) -> CdcError {
        CdcError::Unsupported(format!("an undecodable binlog event at {}:{}: {e}", self.file, self.at))
    }
}

/// A MariaDB GTID event's GTID (`domain-server-sequence`) and whether its
/// transaction is standalone: sequence number (8 bytes), domain (4 bytes),
/// flags (1 byte), little-endian.
fn mariadb_gtid(data: &[u8], server_id: u32) -> Result<(String, bool), CdcError> {
    let (Some(seq), Some(domain), Some(&flags)) = (data.get(..8), data.get(8..12), data.get(12)) else {
        return Err(CdcError::Unsupported(format!(
            "a MariaDB GTID event of {} bytes",
            data.len()
        )));
    };
    let seq = u64::from_le_bytes(seq.try_into().expect("8 bytes"));
    let domain = u32::from_le_bytes(domain.try_into().expect("4 bytes"));
    Ok((format!("{domain}-{server_id}-{seq}"), flags & FL_STANDALONE != 0))
}

/// Whether `statement` is a change to rows that names `table`'s name:
/// logged as a statement (by a session whose `binlog_format` was not ROW)
/// rather than as rows, so its changes cannot be followed.
fn logged_as_statement(statement: &str, table: &TableRef) -> bool {
    names_table(statement, &["INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD"], table)
}

/// Whether `statement` starts with one of `verbs` and names `table`'s name
/// anywhere.
fn names_table(statement: &str, verbs: &[&str], table: &TableRef) -> bool {
    let first = statement.split_whitespace().next().unwrap_or_default();
    verbs.iter().any(|verb| first.eq_ignore_ascii_case(verb))
        && statement.to_lowercase().contains(&table.name.to_lowercase())
}

/// Whether `statement` may change `table`'s definition: DDL that names
/// its name (a false alarm only costs the stream a restart).
fn redefines(statement: &str, table: &TableRef) -> bool {
    names_table(statement, &["ALTER", "RENAME", "DROP", "CREATE"], table)
}

/// The column names a table map logs (`binlog_row_metadata = FULL`).
fn column_names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
    tme.iter_optional_meta().find_map(|field| match field {
        Ok(OptionalMetadataField::ColumnName(names)) => names
            .iter_names()
            .map(|name| name.map(|n| n.name().into_owned()))
            .collect::<Result<Vec<_>, _>>()
            .ok(),
        _ => None,
    })
}

/// Whether `statement`, run with current database `schema`, truncates
/// `table`.
fn truncates(statement: &str, schema: &str, table: &TableRef) -> bool {
    let starts = statement
        .get(..8)
        .is_some_and(|word| word.eq_ignore_ascii_case("truncate"));
    if !starts {
        return false;
    }
    let Ok(statements) = Parser::parse_sql(&MySqlDialect {}, statement) else {
        return false;
    };
    statements.iter().any(|parsed| match parsed {
        Statement::Truncate(truncate) => truncate.table_names.iter().any(|target| {
            let parts: Vec<&str> = target
                .name
                .0
                .iter()
                .filter_map(|part| part.as_ident().map(|ident| ident.value.as_str()))
                .collect();
            match parts.as_slice() {
                [name] => schema == table.schema && *name == table.name,
                [database, name] => *database == table.schema && *name == table.name,
                _ => false,
            }
        }),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use mysql_async::binlog::BinlogVersion;
    use mysql_async::binlog::events::FormatDescriptionEvent;
    use sluice_catalog::CdcMode;

    use super::*;
    use crate::connectors::mysql::types::{MySqlColumnType, map};
    use crate::contract::{ColumnInfo, TableDescription, TableKind};

    fn capture() -> Capture {
        let ty = MySqlColumnType {
            data_type: "bigint".into(),
            column_type: "bigint".into(),
            precision: None,
            scale: None,
        };
        let id = ColumnInfo {
            name: "id".into(),
            ordinal: 1,
            source_type: "bigint".into(),
            nullable: false,
            default: None,
            primary_key_position: Some(1),
            indexed: true,
            mapping: map(&ty),
        };
        Capture {
            description: TableDescription {
                table: table(),
                kind: TableKind::Table,
                columns: vec![id],
                estimated_rows: None,
            },
            mode: CdcMode::Merge,
            parallel: None,
            batch_rows: 100,
            publication: None,
            server_id: None,
            every_column: true,
        }
    }

    /// An event as a server sends it (before any format event: no
    /// checksum is taken off): the header, then `data`.
    fn event(kind: u8, server_id: u32, log_pos: u32, flags: u16, data: &[u8]) -> Event {
        let mut bytes = 0u32.to_le_bytes().to_vec();
        bytes.push(kind);
        bytes.extend(server_id.to_le_bytes());
        bytes.extend((19 + data.len() as u32).to_le_bytes());
        bytes.extend(log_pos.to_le_bytes());
        bytes.extend(flags.to_le_bytes());
        bytes.extend(data);
        Event::read(&FormatDescriptionEvent::new(BinlogVersion::Version4), &bytes[..]).unwrap()
    }

    /// The stream's first, artificial rotate event, its name followed by
    /// the event's checksum.
    fn first_rotate(file: &str) -> Event {
        let mut data = 4u64.to_le_bytes().to_vec();
        data.extend(file.as_bytes());
        data.extend([0x1f, 0x0e, 0xab, 0x68]);
        event(ROTATE_EVENT, 1, 0, LOG_EVENT_ARTIFICIAL_F, &data)
    }

    /// A MariaDB transaction `domain-server_id-sequence` of no rows that
    /// starts at `start`: its GTID event (42 bytes) and XID event (31).
    fn transaction(domain: u32, server_id: u32, sequence: u64, start: u32) -> [Event; 2] {
        let mut gtid = sequence.to_le_bytes().to_vec();
        gtid.extend(domain.to_le_bytes());
        gtid.extend([0u8; 11]);
        [
            event(MARIADB_GTID_EVENT, server_id, start + 42, 0, &gtid),
            event(16, server_id, start + 42 + 31, 0, &7u64.to_le_bytes()),
        ]
    }

    fn push(decoder: &mut Decoder, events: &[Event]) -> Vec<ChangeEvent> {
        let mut out = VecDeque::new();
        for event in events {
            decoder.push(event, |_| None, &mut out).unwrap();
        }
        out.into()
    }

    fn binlog(file: &str, (begin, end): (u64, u64), gtid: &str, shift: u64) -> Position {
        Position::MySql {
            file: file.into(),
            begin,
            end,
            gtid: Some(GtidState::parse(gtid).unwrap()),
            shift,
        }
    }

    #[test]
    fn a_stream_from_a_gtid_state_on_another_server_learns_its_file_and_keeps_positions_growing() {
        // Committed on the old primary, whose files are numbered higher.
        let from = binlog("old-bin.000007", (900, 1000), "0-1-10,1-1-5", 0);
        let layout = Layout::at(("mysql-bin.000001".into(), 700), Vec::new());
        let mut decoder = Decoder::new(&capture(), &from, true, true, layout).unwrap();
        assert!(
            !decoder.has_read("mysql-bin.000001", 4),
            "at another server's coordinates yet"
        );
        push(&mut decoder, &[first_rotate("mysql-bin.000001")]);
        assert_eq!((decoder.file.as_str(), decoder.at), ("mysql-bin.000001", 4));
        assert!(!decoder.has_read("mysql-bin.000001", 700));
        // MariaDB's artificial GTID list where the state leaves off.
        push(&mut decoder, &[event(163, 1, 700, LOG_EVENT_ARTIFICIAL_F, &[0; 4])]);
        assert!(
            decoder.has_read("mysql-bin.000001", 700),
            "a drain's marker at the head arrives"
        );

        // The new primary's own transaction, in domain 1.
        let out = push(&mut decoder, &transaction(1, 2, 6, 700));
        let [ChangeEvent::Begin { key, .. }, ChangeEvent::Commit { resume }] = &out[..] else {
            panic!("{out:?}");
        };
        assert_eq!(*resume, binlog("mysql-bin.000001", (700, 773), "0-1-10,1-2-6", 7));
        assert!(!from.contains(key) && resume.contains(key));
        assert!(
            from.committed_bound() < key.row_position(0),
            "{} sorts after everything committed before",
            key.row_position(0)
        );

        // The next run, on the same server: the same shift.
        let layout = Layout::at(("mysql-bin.000001".into(), 773), Vec::new());
        let mut decoder = Decoder::new(&capture(), resume, true, true, layout).unwrap();
        push(&mut decoder, &[first_rotate("mysql-bin.000001")]);
        let out = push(&mut decoder, &transaction(0, 2, 11, 773));
        let [ChangeEvent::Begin { key, .. }, ChangeEvent::Commit { resume: next }] = &out[..] else {
            panic!("{out:?}");
        };
        assert_eq!(*next, binlog("mysql-bin.000001", (773, 846), "0-2-11,1-2-6", 7));
        assert!(!resume.contains(key) && next.contains(key));
    }

    #[test]
    fn a_mysql_stream_adds_each_transactions_gtid_to_its_set() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let from = binlog("binlog.000002", (100, 200), &format!("{uuid}:1-5"), 0);
        let layout = Layout::at(("binlog.000002".into(), 200), Vec::new());
        let mut decoder = Decoder::new(&capture(), &from, true, true, layout).unwrap();
        push(&mut decoder, &[first_rotate("binlog.000002")]);
        // MySQL 5.6's GTID event: flags, the source's UUID, the number.
        let mut gtid = vec![1u8];
        gtid.extend((0..16).map(|i| u8::from_str_radix(&uuid.replace('-', "")[2 * i..2 * i + 2], 16).unwrap()));
        gtid.extend(6u64.to_le_bytes());
        let out = push(
            &mut decoder,
            &[
                event(33, 1, 200 + 44, 0, &gtid),
                event(16, 1, 200 + 44 + 31, 0, &7u64.to_le_bytes()),
            ],
        );
        let [ChangeEvent::Begin { key, .. }, ChangeEvent::Commit { resume }] = &out[..] else {
            panic!("{out:?}");
        };
        assert_eq!(*resume, binlog("binlog.000002", (200, 275), &format!("{uuid}:1-6"), 0));
        assert!(!from.contains(key) && resume.contains(key));
    }

    #[test]
    fn a_stream_from_a_file_keeps_its_file_and_a_state_it_had_none_of_stays_unknown() {
        let from = Position::mysql_snapshot("bin.000003".into(), 500, None);
        let layout = Layout::at(("bin.000003".into(), 500), Vec::new());
        let mut decoder = Decoder::new(&capture(), &from, false, true, layout).unwrap();
        push(&mut decoder, &[first_rotate("bin.000003")]);
        assert_eq!((decoder.file.as_str(), decoder.at), ("bin.000003", 500));
        let out = push(&mut decoder, &transaction(0, 1, 3, 500));
        let [ChangeEvent::Begin { key, .. }, ChangeEvent::Commit { resume }] = &out[..] else {
            panic!("{out:?}");
        };
        assert!(matches!(
            key,
            Position::MySql {
                gtid: None,
                shift: 0,
                ..
            }
        ));
        assert!(matches!(
            resume,
            Position::MySql {
                gtid: None,
                end: 573,
                ..
            }
        ));
    }

    fn table() -> TableRef {
        TableRef {
            schema: "shop".into(),
            name: "items".into(),
        }
    }

    #[test]
    fn truncates_of_the_table_are_recognised_however_written() {
        let t = table();
        assert!(truncates("TRUNCATE TABLE items", "shop", &t));
        assert!(truncates("truncate `shop`.`items`", "other", &t));
        assert!(truncates("TRUNCATE shop.items", "", &t));
        assert!(
            !truncates("TRUNCATE TABLE items", "other", &t),
            "another database's items"
        );
        assert!(!truncates("TRUNCATE TABLE items2", "shop", &t));
        assert!(!truncates("CREATE TABLE items (id int)", "shop", &t));
        assert!(!truncates("TRUNCATE TABLE Items", "shop", &t), "names are exact");
    }

    #[test]
    fn row_changes_logged_as_statements_are_recognised() {
        let t = table();
        assert!(logged_as_statement("INSERT INTO items VALUES (1)", &t));
        assert!(logged_as_statement("update `Items` set qty = 1", &t));
        assert!(!logged_as_statement("INSERT INTO other VALUES (1)", &t));
        assert!(!logged_as_statement("CREATE TABLE items2 (id int)", &t));
    }

    #[test]
    fn ddl_naming_the_table_is_recognised() {
        let t = table();
        assert!(redefines("ALTER TABLE items ADD COLUMN tag text", &t));
        assert!(redefines("alter table `shop`.`Items` drop column qty", &t));
        assert!(redefines("RENAME TABLE items TO items_old", &t));
        assert!(!redefines("ALTER TABLE other ADD COLUMN tag text", &t));
        assert!(!redefines("INSERT INTO items VALUES (1)", &t));
    }

    #[test]
    fn mariadb_gtid_events_give_their_gtid_and_standalone_flag() {
        // As MariaDB 10.11 sent them: a DML transaction and a DDL statement.
        let dml = [0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0, 0, 0];
        assert_eq!(mariadb_gtid(&dml, 1).unwrap(), ("0-1-7".to_owned(), false));
        let ddl = [0x0f, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0x29];
        assert_eq!(mariadb_gtid(&ddl, 3).unwrap(), ("2-3-15".to_owned(), true));
        assert!(mariadb_gtid(&dml[..10], 1).is_err());
    }
}
