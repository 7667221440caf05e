//! What a change-data-capture source implements (issue #22,
//! docs/design/cdc.md): [`ChangeSource`] sets a capture up and opens a
//! [`ChangeStream`] of [`ChangeEvent`]s at a [`Position`] of its log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use sluice_catalog::{CdcMode, CdcState};

use super::cdc_error::CdcError;
use super::position::Position;
use super::source::TableDescription;

/// What one CDC job captures.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The source table, with the job's columns only, in the job's order;
    /// the primary key read from it.
    pub description: TableDescription,
    pub mode: CdcMode,
    /// The first load's split column (an index into the description's
    /// columns) and number of streams, as `WITH (parallelism = n)`.
    pub parallel: Option<(usize, usize)>,
    /// Rows per batch.
    pub batch_rows: usize,
    /// An existing publication to stream from (PostgreSQL); `None`: the
    /// source creates one for the job.
    pub publication: Option<String>,
    /// The replica id to read the binlog as (MySQL/MariaDB); `None`: one
    /// derived from the job.
    pub server_id: Option<u32>,
    /// Whether the job loads every column of the table (no column list):
    /// a column added at the source is then one to follow.
    pub every_column: bool,
}

/// One event of a change stream, in log order.
#[derive(Debug, Clone)]
pub enum ChangeEvent {
    /// A transaction starts; `key` is its position (PostgreSQL: its commit
    /// LSN, with `end_lsn` not yet known and equal to it). A transaction
    /// the destination already holds (`committed.contains(&key)`) is
    /// skipped by the caller.
    Begin { key: Position, commit_ts: DateTime<Utc> },
    /// Changes of the open transaction, in the [`change_schema`]; a large
    /// transaction arrives as many batches.
    Rows(RecordBatch),
    /// The transaction is complete; `resume` is where the log continues
    /// after it, the position a destination commits with it.
    Commit { resume: Position },
    /// A marker a session wrote into the log (PostgreSQL
    /// `pg_logical_emit_message(false, prefix, ..)`): every transaction
    /// committed before it was delivered before it (the drain of a
    /// scheduled run).
    Marker { prefix: String, at: Position },
    /// The table's definition changed at the source after the layout the
    /// stream started with (a column added, dropped, renamed or retyped),
    /// in the open transaction, before its first change that uses the new
    /// definition; `detail` says what changed. The caller stops reading,
    /// commits nothing of the open transaction, follows the change (the
    /// job's `on_schema_change`) and opens a new stream from its committed
    /// position.
    SchemaChanged { detail: String },
    /// Nothing is in flight and the log's head is at `head`: with nothing
    /// staged the caller may confirm it, so an idle source frees its log.
    Idle { head: Position },
}

/// A source whose table changes can be captured.
#[async_trait]
pub trait ChangeSource: Send + Sync {
    /// Checks, before anything is saved or created, that the source is set
    /// up for capturing `capture` (log level, privileges, key, free slot);
    /// returns notices to show.
    async fn check(&self, capture: &Capture) -> Result<Vec<String>, CdcError>;

    /// Names the source-side objects of job `state.job` of Sluice
    /// `instance` and creates those that must exist before the first load
    /// (PostgreSQL: the publication). Save `state` afterwards.
    async fn prepare(&self, capture: &Capture, instance: &str, state: &mut CdcState) -> Result<(), CdcError>;

    /// Creates the replication slot and reads the first load consistent
    /// with it: the rows, as the table's scan schema, and the position the
    /// stream continues from. Save `state` (phase `Snapshotting`) before.
    async fn snapshot(
        &self,
        capture: &Capture,
        state: &CdcState,
    ) -> Result<(SendableRecordBatchStream, Position), CdcError>;

    /// Streams the changes committed after `from`; [`CdcError::NeedsResync`]
    /// when the source can no longer stream from there (the job is then
    /// given up as by the WAL guardian).
    async fn stream(
        &self,
        capture: &Capture,
        state: &CdcState,
        from: &Position,
    ) -> Result<Box<dyn ChangeStream>, CdcError>;

    /// Drops what [`prepare`](Self::prepare) and
    /// [`snapshot`](Self::snapshot) created (the slot; the publication if
    /// Sluice created it). Objects already gone are fine.
    async fn release(&self, state: &CdcState) -> Result<(), CdcError>;

    /// Writes a [`ChangeEvent::Marker`] with `prefix` into the change log:
    /// a stream delivers it after every transaction committed before this
    /// call, which is how a scheduled run knows it has drained the log.
    /// A continuous stream marks every `flush_interval` for as long as the
    /// source lives: implementations keep one session for their markers
    /// (`cdc::kept::KeptSession`).
    async fn mark(&self, prefix: &str) -> Result<(), CdcError>;

    /// How much change log the job's slot holds back at the source; `None`
    /// when the slot does not exist. A continuous stream measures at most
    /// once a minute: implementations ask on the session they keep for
    /// their markers.
    async fn retained(&self, state: &CdcState) -> Result<Option<Retention>, CdcError>;
}

/// The change log a job's slot holds back at the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Bytes the source keeps for the slot (PostgreSQL: from its
    /// `restart_lsn`): what `max_retained_wal` limits. `None` when the
    /// source no longer knows (a lost slot).
    pub held: Option<u64>,
    /// Bytes committed after the position the destination confirmed
    /// (`confirmed_flush_lsn`): `lag_bytes`.
    pub behind: Option<u64>,
    /// Why the source can no longer continue from the job's position,
    /// when it already removed log the job needs (PostgreSQL: the slot's
    /// `wal_status = 'lost'`; MySQL: the binlog file was purged): only a
    /// fresh snapshot can continue.
    pub lost: Option<String>,
}

/// An open change stream.
#[async_trait]
pub trait ChangeStream: Send {
    /// The next event; `None` when the source ended the stream. Must be
    /// cancel-safe: a drain waits for it alongside its timers and drops the
    /// future when one fires, so no event may be lost then.
    async fn next(&mut self) -> Result<Option<ChangeEvent>, CdcError>;

    /// Tells the source that everything up to `upto` is committed at the
    /// destination, so it may free its log up to there. Call only after
    /// the destination's commit.
    fn confirm(&mut self, upto: &Position);

    /// Ends the stream (the source's replication session with it).
    async fn close(self: Box<Self>) -> Result<(), CdcError>;
}
