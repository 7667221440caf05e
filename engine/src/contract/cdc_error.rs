//! Why change data capture cannot start or continue.

use crate::contract::{SourceError, TableRef};

/// A failure of a [`ChangeSource`](super::ChangeSource) or its stream. The
/// set-up checks carry the SQLSTATE and hint the server reports.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CdcError {
    /// PostgreSQL `wal_level` is not `logical`.
    #[error("wal_level is \"{found}\": change data capture needs wal_level = logical")]
    WalLevel { found: String },
    /// The role may not open replication connections.
    #[error("role \"{role}\" has no REPLICATION privilege: change data capture reads the change log over replication")]
    NoReplicationPrivilege { role: String },
    /// The role may not create the publication, which needs table ownership.
    #[error("role \"{role}\" does not own {table}, so it cannot create the publication change data capture reads")]
    NotTableOwner { role: String, table: TableRef },
    /// MERGE needs a key to find a changed row; REPLICA IDENTITY NOTHING
    /// publishes no updates or deletes at all.
    #[error("{table} has no primary key or replica identity index{}", if *.nothing { " (REPLICA IDENTITY NOTHING)" } else { "" })]
    NoKey { table: TableRef, nothing: bool },
    /// A MySQL/MariaDB server setting that change data capture needs
    /// (`log_bin`, `binlog_format`, `binlog_row_image`) has another value.
    #[error("{setting} is \"{found}\": change data capture needs {setting} = {wanted}")]
    BinlogSetting {
        setting: &'static str,
        found: String,
        wanted: &'static str,
    },
    /// The MySQL/MariaDB user lacks a privilege reading the binlog needs.
    #[error("user {user} has no {privilege} privilege: change data capture reads the binlog as a replica does")]
    NoBinlogPrivilege { user: String, privilege: &'static str },
    /// MERGE needs a primary key to find a changed row (MySQL/MariaDB).
    #[error("{table} has no primary key")]
    NoPrimaryKey { table: TableRef },
    /// The publication a job names does not exist.
    #[error("publication \"{name}\" does not exist")]
    NoPublication { name: String, table: TableRef },
    /// The publication a job names does not publish the table, or not
    /// every kind of change.
    #[error("publication \"{name}\" {problem}")]
    PublicationIncomplete { name: String, problem: String, fix: String },
    /// Every replication slot is taken.
    #[error("all {max} replication slots are in use (max_replication_slots = {max})")]
    NoFreeSlot { max: i64 },
    /// The source refused a query or could not be reached.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The replication connection failed; `code` is the server's SQLSTATE
    /// when it gave one.
    #[error("replication stream: {message}")]
    Replication { code: Option<String>, message: String },
    /// A value in the change log does not fit its column's type.
    #[error("column \"{column}\": {message}")]
    Decode { column: String, message: String },
    /// The job's slot is gone or was given up (WAL retention past
    /// `max_retained_wal`, a lost slot), or the binlog it continues from
    /// was purged or does not hold its GTID state: only `RESYNC ETL JOB`
    /// continues.
    #[error(
        "ETL job \"{job}\" needs a resync: {reason}. RESYNC ETL JOB {job} takes a fresh snapshot of the table and \
         continues from there (from a new slot, for PostgreSQL)"
    )]
    NeedsResync { job: String, reason: String },
    /// The change log holds something this job cannot follow.
    #[error("{0}")]
    Unsupported(String),
}

impl CdcError {
    /// The SQLSTATE a client sees, where there is a fitting one.
    pub fn sqlstate(&self) -> Option<&str> {
        Some(match self {
            CdcError::WalLevel { .. }
            | CdcError::BinlogSetting { .. }
            | CdcError::NeedsResync { .. }
            | CdcError::PublicationIncomplete { .. } => "55000",
            CdcError::NoPublication { .. } => "42704",
            CdcError::NoReplicationPrivilege { .. }
            | CdcError::NoBinlogPrivilege { .. }
            | CdcError::NotTableOwner { .. } => "42501",
            CdcError::NoKey { .. } | CdcError::NoPrimaryKey { .. } => "42P10",
            CdcError::NoFreeSlot { .. } => "53400",
            CdcError::Source(SourceError::Query { code, .. }) | CdcError::Replication { code, .. } => {
                return code.as_deref();
            }
            CdcError::Source(SourceError::NotFound { .. }) => "42P01",
            CdcError::Source(SourceError::Connect(_)) => "08006",
            CdcError::Decode { .. } => "22P02",
            CdcError::Unsupported(_) => "0A000",
        })
    }

    /// What to change at the source, for the set-up checks.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            CdcError::WalLevel { .. } => {
                "set wal_level = logical in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart \
                 PostgreSQL"
                    .into()
            }
            CdcError::NoReplicationPrivilege { role } => format!("run ALTER ROLE \"{role}\" REPLICATION"),
            CdcError::NotTableOwner { table, .. } => format!(
                "have the owner run CREATE PUBLICATION ... FOR TABLE {table} and name it in the job's \
                 WITH (publication = '...')"
            ),
            CdcError::NoKey { table, .. } => format!(
                "add a primary key, or ALTER TABLE {table} REPLICA IDENTITY USING INDEX <unique index>; or use CDC \
                 HISTORY with ALTER TABLE {table} REPLICA IDENTITY FULL (deletes then carry the whole row)"
            ),
            CdcError::BinlogSetting { setting: "log_bin", .. } => {
                "start the server with --log-bin and a --server-id (in its configuration file): a restart is \
                  needed"
                    .into()
            }
            CdcError::BinlogSetting { setting, wanted, .. } => format!(
                "run SET GLOBAL {setting} = '{wanted}' and set {setting} = {wanted} in the server's configuration \
                 file; sessions that are already connected keep the old value until they reconnect"
            ),
            CdcError::NoBinlogPrivilege { user, privilege } => format!("run GRANT {privilege} ON *.* TO {user}"),
            CdcError::NoPrimaryKey { table } => format!(
                "add a primary key to {table}, or use CDC HISTORY, which appends every change and needs no key \
                 (a delete's row carries the whole row)"
            ),
            CdcError::NoPublication { name, table } => format!(
                "have the table's owner run CREATE PUBLICATION \"{name}\" FOR TABLE {table}, or leave out \
                 publication so that Sluice creates one (its role must then own the table)"
            ),
            CdcError::PublicationIncomplete { fix, .. } => fix.clone(),
            CdcError::NoFreeSlot { .. } => {
                "raise max_replication_slots (and restart PostgreSQL), or drop an unused slot with \
                 pg_drop_replication_slot"
                    .into()
            }
            _ => return None,
        })
    }
}

impl From<crate::contract::ConnectFailure> for CdcError {
    fn from(failure: crate::contract::ConnectFailure) -> Self {
        CdcError::Source(SourceError::Connect(failure))
    }
}
