//! The change-data-capture state of one CDC job (docs/design/cdc.md): the
//! replication slot and publication it owns at the source, how far its
//! first load got, and the last source position its destination committed.
//!
//! The destination holds the authoritative position (it commits the
//! position with the rows); `position` here is a cache of it, and what the
//! engine needs to clean up the source (slot, publication) even when the
//! destination cannot be read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// How a CDC job applies changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CdcMode {
    /// The destination equals the source table by primary key.
    Merge,
    /// Every change is appended as a row.
    History,
}

/// The `WITH (...)` settings of a CDC job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdcSettings {
    /// `MERGE`: a delete sets `_sluice_deleted_at` instead of removing the
    /// row (`WITH (soft_delete = true)`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft_delete: bool,
    /// The WAL the job's slot may hold back before the job gives it up
    /// (`WITH (max_retained_wal = '10 GB')`); `None` is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retained_wal: Option<u64>,
    /// Change rows after which a run commits the transactions it holds
    /// (`WITH (flush_rows = 10000)`); `None` is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_rows: Option<u32>,
    /// Seconds after which a run commits the changes it holds, and a
    /// `CONTINUOUS` job checks that it is caught up
    /// (`WITH (flush_interval = '10 seconds')`); `None` is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_interval_seconds: Option<u32>,
    /// An existing publication to stream from (PostgreSQL,
    /// `WITH (publication = 'name')`), for a role that does not own the
    /// table; `None`: Sluice creates one of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication: Option<String>,
    /// The replica id a MySQL/MariaDB job reads the binlog as
    /// (`WITH (server_id = n)`); `None`: one Sluice derives from the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u32>,
}

impl CdcSettings {
    /// `max_retained_wal` when none is given: 10 GB.
    pub const DEFAULT_MAX_RETAINED_WAL: u64 = 10 << 30;

    /// `flush_rows` when none is given.
    pub const DEFAULT_FLUSH_ROWS: u32 = 10_000;

    /// The micro-batch size in effect: a batch commits at the first
    /// transaction end after this many change rows.
    pub fn flush_rows(&self) -> u64 {
        self.flush_rows.unwrap_or(Self::DEFAULT_FLUSH_ROWS).into()
    }

    /// `flush_interval` when none is given: 10 seconds.
    pub const DEFAULT_FLUSH_INTERVAL_SECONDS: u32 = 10;

    /// The longest a complete transaction waits for its micro-batch to
    /// commit.
    pub fn flush_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.flush_interval_seconds
                .unwrap_or(Self::DEFAULT_FLUSH_INTERVAL_SECONDS)
                .into(),
        )
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The retention limit in effect.
    pub fn max_retained_wal(&self) -> u64 {
        self.max_retained_wal.unwrap_or(Self::DEFAULT_MAX_RETAINED_WAL)
    }
}

/// Where a CDC job is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum CdcPhase {
    /// Saved; nothing created at the source yet.
    Created,
    /// Run `run` is creating the slot and reading the first load. Saved
    /// before the slot is created, so a crash leaves a slot the catalog
    /// knows (and drops before starting again: its exported snapshot died
    /// with the session).
    Snapshotting { run: u64 },
    /// The first load is committed; changes stream from `position`.
    Streaming,
    /// The slot is gone or unusable (WAL retention exceeded, a failover):
    /// only a fresh snapshot heals the job.
    NeedsResync { reason: String },
}

/// A micro-batch whose destination commit was started: if Sluice stops
/// before the commit's outcome is known, the next run settles it first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingBatch {
    pub run: u64,
    pub batch: u64,
    /// The source position the batch commits, as the engine's JSON.
    pub position: String,
}

/// The CDC state of one job, keyed by job name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CdcState {
    pub job: String,
    #[serde(flatten)]
    pub phase: CdcPhase,
    /// The replication slot (PostgreSQL); named so that an operator can
    /// tell which Sluice and job own it.
    pub slot: Option<String>,
    /// The publication the slot streams (PostgreSQL).
    pub publication: Option<String>,
    /// Whether Sluice created the publication (and drops it with the job).
    pub created_publication: bool,
    /// The replication client id (MySQL/MariaDB `server_id`).
    pub server_id: Option<u32>,
    /// The last source position the destination committed, as the
    /// engine's JSON; `None` before the first load committed.
    pub position: Option<String>,
    pub pending: Option<PendingBatch>,
    /// How much WAL/binlog the job holds back at the source, and how far
    /// behind it is, as last measured (`checked_at`): `lag_seconds` is the
    /// time since the destination was last known to hold everything the
    /// source had committed (the drain's marker, a snapshot).
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub checked_at: Option<DateTime<Utc>>,
}

impl CdcState {
    /// When the destination was last known to hold everything the source
    /// had committed, as last measured.
    pub fn caught_up_at(&self) -> Option<DateTime<Utc>> {
        let lag = chrono::Duration::milliseconds((self.lag_seconds? * 1000.0) as i64);
        Some(self.checked_at? - lag)
    }

    /// The state of a job nothing has been created for yet.
    pub fn new(job: &str) -> Self {
        Self {
            job: job.to_owned(),
            phase: CdcPhase::Created,
            slot: None,
            publication: None,
            created_publication: false,
            server_id: None,
            position: None,
            pending: None,
            lag_bytes: None,
            lag_seconds: None,
            checked_at: None,
        }
    }

    /// How far behind the source the destination may be at `now`: the
    /// measured `lag_seconds` plus the time since it was measured, as
    /// changes committed since are not at the destination yet.
    pub fn lag_seconds_at(&self, now: DateTime<Utc>) -> Option<f64> {
        let since = (now - self.checked_at?).num_milliseconds().max(0) as f64 / 1000.0;
        Some(self.lag_seconds? + since)
    }

    /// Whether the slot was given up: only `RESYNC ETL JOB` continues.
    pub fn needs_resync(&self) -> bool {
        matches!(self.phase, CdcPhase::NeedsResync { .. })
    }

    /// The phase as `sluice.jobs.cdc_state` shows it.
    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            CdcPhase::Created => "created",
            CdcPhase::Snapshotting { .. } => "snapshotting",
            CdcPhase::Streaming => "streaming",
            CdcPhase::NeedsResync { .. } => "needs resync",
        }
    }
}

impl Record for CdcState {
    const FAMILY: &'static str = "cdc";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.job.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode, encode};

    #[test]
    fn every_phase_round_trips() {
        let phases = [
            CdcPhase::Created,
            CdcPhase::Snapshotting { run: 7 },
            CdcPhase::Streaming,
            CdcPhase::NeedsResync {
                reason: "slot dropped".into(),
            },
        ];
        for phase in phases {
            let state = CdcState {
                phase,
                slot: Some("sluice_0123abcd_orders_1a2b3c4d".into()),
                publication: Some("sluice_0123abcd_orders_1a2b3c4d".into()),
                created_publication: true,
                position: Some(r#"{"postgres":{"commit_lsn":1,"end_lsn":2}}"#.into()),
                pending: Some(PendingBatch {
                    run: 3,
                    batch: 4,
                    position: "{}".into(),
                }),
                lag_bytes: Some(10),
                ..CdcState::new("orders")
            };
            assert_eq!(decode::<CdcState>(b"orders", &encode(&state)).unwrap(), state);
        }
    }

    #[test]
    fn the_phase_is_stored_readably_beside_the_other_fields() {
        let state = CdcState {
            phase: CdcPhase::Snapshotting { run: 9 },
            ..CdcState::new("j")
        };
        let json: serde_json::Value = serde_json::from_slice(&encode(&state)).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["data"]["phase"], "snapshotting");
        assert_eq!(json["data"]["run"], 9);
        assert_eq!(json["data"]["job"], "j");
    }
}
