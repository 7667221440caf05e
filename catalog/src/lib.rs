//! The Sluice catalog: every definition (connections, secrets, jobs), run and
//! watermark, stored in RocksDB.
//!
//! The catalog knows nothing about networks or SQL. It stores versioned
//! records, keeps secrets encrypted at rest, and makes multi-key changes
//! atomically (one RocksDB `WriteBatch`, synced to disk before it returns).

mod admin;
mod alert;
mod blocking;
mod catalog;
mod cdc;
mod connection;
mod crypto;
mod error;
mod job;
mod job_cache;
mod job_view;
mod namespace;
mod public_table;
mod record;
mod role;
mod run;
mod schedule_state;
mod schema_change;
mod secret;
mod store;
mod store_options;
mod table_jobs;
mod table_ops;
mod touched;
mod transaction;
mod verification;

pub use admin::AdminCredentials;
pub use alert::{AlertEvent, AlertRecord, DeliveryRecord, DeliveryStatus, Incident, SecretHeader, Subject};
pub use blocking::blocking;
pub use catalog::{Catalog, DropOutcome, RunCursor};
pub use cdc::{CdcMode, CdcPhase, CdcSettings, CdcState, PendingBatch};
pub use connection::{ConnectionRecord, ConnectionStatus, OptionValue, StatusUpdate};
pub use crypto::MasterKey;
pub use error::{CatalogError, ObjectKind};
pub use job::{
    CatchUp, ColumnOverride, CommitGuard, DEFAULT_MAX_RETRIES, Execution, IncrementalStart, JobColumn, JobDestination,
    JobRecord, JobSource, LoadType, Lookback, LookbackWindow, SchemaChangePolicy, TableOptions, VerifySchedule,
};
pub use job_view::{JobFacts, JobView};
pub use namespace::{DEFAULT_NAMESPACE, NamespaceRecord, check_namespace_name};
pub use public_table::{PublicColumn, PublicKey, PublicTable, PublicType};
pub use role::{AuditRecord, GrantRecord, Privilege, RoleRecord};
pub use run::{RunRecord, RunStatus, RunTrigger, Watermark, since_last_success};
pub use schedule_state::{PendingRetry, ScheduleState};
pub use schema_change::{SchemaChangeKind, SchemaChangeRecord};
pub use secret::{ExternalSecret, SecretContent, SecretInfo, SecretValue};
pub use table_ops::TableOps;
pub use transaction::{Effect, Transaction};
pub use verification::{BucketDifference, VerificationRecord};

/// The catalog layout version written to `meta`; bumped when column families
/// or key layouts change, with a migration in `store`. 2: the `run_index`
/// family indexes runs by job. 3: the `table_jobs` family indexes jobs by
/// destination table.
pub const SCHEMA_VERSION: u32 = 3;
