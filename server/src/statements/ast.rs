//! The syntax tree of Sluice statements.

use std::collections::BTreeMap;

use sluice_catalog::{ExternalSecret, OptionValue, SecretValue};
use sluice_engine::alerts::CreateAlert;
use sluice_engine::jobs::{CreateJob, CreateJobs, CursorWindow, JobChange, JobEdit};
use sluice_engine::sources::BucketUnit;

use super::parse_role::{Grant, RoleChange, RoleOptions};

/// One parsed Sluice statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SluiceStatement {
    /// `CREATE [OR REPLACE] SECRET [IF NOT EXISTS] name AS 'value'`
    CreateSecret {
        name: String,
        value: SecretValue,
        if_not_exists: bool,
        or_replace: bool,
    },
    /// `CREATE [OR REPLACE] SECRET [IF NOT EXISTS] name FROM ENV | FILE |
    /// GCP SECRET MANAGER | AWS SECRETS MANAGER 'reference'`
    CreateSecretFrom {
        name: String,
        external: ExternalSecret,
        if_not_exists: bool,
        or_replace: bool,
    },
    /// `ALTER SECRET name AS 'value'`: saved once every connection using
    /// it passes a test with the new value.
    AlterSecret { name: String, value: SecretValue },
    /// `DROP SECRET [IF EXISTS] name`
    DropSecret { name: String, if_exists: bool },
    /// `SHOW SECRETS`
    ShowSecrets,
    /// `CREATE [OR REPLACE] CONNECTION [IF NOT EXISTS] name TYPE t OPTIONS (...) [WITH (validate = false)]`
    CreateConnection {
        name: String,
        type_name: String,
        options: BTreeMap<String, OptionValue>,
        if_not_exists: bool,
        or_replace: bool,
        validate: bool,
    },
    /// `ALTER CONNECTION name [SET (...)] [RESET (...)] [WITH (validate = false)]`
    AlterConnection {
        name: String,
        set: BTreeMap<String, OptionValue>,
        reset: Vec<String>,
        validate: bool,
    },
    /// `DROP CONNECTION [IF EXISTS] name [CASCADE | RESTRICT]`
    DropConnection {
        name: String,
        if_exists: bool,
        cascade: bool,
    },
    /// `TEST CONNECTION name`
    TestConnection { name: String },
    /// `TEST CONNECTIONS`
    TestConnections,
    /// `SHOW CONNECTIONS`
    ShowConnections,
    /// `SHOW CREATE CONNECTION name`
    ShowCreateConnection { name: String },
    /// `SHOW CONNECTION TYPES`
    ShowConnectionTypes,
    /// `SHOW SCHEMAS FROM conn`
    ShowSchemas { connection: String },
    /// `SHOW TABLES FROM conn[.schema]`
    ShowTables { connection: String, schema: Option<String> },
    /// `DESCRIBE conn.schema.table [WITH (setting = value, ...)]`
    DescribeSourceTable {
        connection: String,
        schema: String,
        table: String,
        /// Source settings for this read (`sample`, `keep_document`, `on_type_mismatch`).
        settings: BTreeMap<String, OptionValue>,
    },
    /// `CREATE ETL JOB ...`
    CreateJob(Box<CreateJob>),
    /// `CREATE OR REPLACE ETL JOB ...`
    CreateOrReplaceJob(Box<CreateJob>),
    /// `ALTER ETL JOB name PAUSE | RESUME | SET SCHEDULE ... | SET (batch_rows = n)`
    AlterJob { name: String, change: JobChange },
    /// `ALTER ETL JOB name ADD COLUMN | DROP COLUMN | SET COLUMNS | SET
    /// INCREMENTAL BY | SET SNAPSHOT | RESET WATERMARK`: what a loaded job
    /// loads, followed by its destination table.
    EditJob { name: String, edit: JobEdit },
    /// `DROP ETL JOB [IF EXISTS] name [WITH DATA | KEEP DATA] [FORCE]`:
    /// the destination table is kept unless `WITH DATA`; `FORCE` drops a
    /// CDC job whose source cannot drop its replication slot.
    DropJob {
        name: String,
        if_exists: bool,
        keep_data: bool,
        force: bool,
    },
    /// `RUN ETL JOB name [ASYNC]`
    RunJob { name: String, asynchronous: bool },
    /// `CANCEL ETL RUN id`
    CancelRun { run_id: u64 },
    /// `CANCEL ETL JOB name`: its running run, or else its queued one.
    CancelJob { name: String },
    /// `SHOW ETL JOBS`
    ShowJobs,
    /// `SHOW CREATE ETL JOB name`
    ShowCreateJob { name: String },
    /// `SHOW ETL RUNS [FOR job]`
    ShowRuns { job: Option<String> },
    /// `EXPLAIN ETL JOB name`
    ExplainJob { name: String },
    /// `VERIFY ETL JOB name [BETWEEN 'a' AND 'b'] [BY HOUR | DAY | MONTH]`
    VerifyJob {
        name: String,
        within: CursorWindow,
        by: Option<BucketUnit>,
    },
    /// `REPAIR ETL JOB name FROM 'a' TO 'b'`
    RepairJob { name: String, from: String, to: String },
    /// `RESYNC ETL JOB name`: a CDC job's fresh snapshot and new slot.
    ResyncJob { name: String },
    /// `CREATE ETL JOBS FOR TABLES IN conn.schema ...`: one job per table.
    CreateJobs(Box<CreateJobs>),
    /// `ALTER ETL JOBS WHERE condition PAUSE | RESUME | SET ...`; the
    /// condition is SQL on the columns of `sluice.jobs`.
    AlterJobs { selection: String, change: JobChange },
    /// `SHOW CREATE ALL [WITH STATE]`: the script that recreates everything.
    ShowCreateAll { with_state: bool },
    /// `RUN ETL JOBS WHERE condition`
    RunJobs { selection: String },
    /// `CREATE ALERT [IF NOT EXISTS] name ON event [FOR name] NOTIFY WEBHOOK 'url' [WITH (...)]`
    CreateAlert(Box<CreateAlert>),
    /// `DROP ALERT [IF EXISTS] name`
    DropAlert { name: String, if_exists: bool },
    /// `SHOW ALERTS`
    ShowAlerts,
    /// `CREATE ROLE | USER name [WITH] [LOGIN | NOLOGIN] [PASSWORD 'p']`
    CreateRole { name: String, options: RoleOptions },
    /// `ALTER ROLE name [WITH] options` or `ALTER ROLE name RENAME TO new`
    AlterRole { name: String, change: RoleChange },
    /// `DROP ROLE [IF EXISTS] name`
    DropRole { name: String, if_exists: bool },
    /// `GRANT privileges ON DATABASE db TO roles`
    Grant(Grant),
    /// `REVOKE privileges ON DATABASE db FROM roles`
    Revoke(Grant),
    /// `CREATE DATABASE [IF NOT EXISTS] name`: a namespace.
    CreateDatabase { name: String, if_not_exists: bool },
    /// `DROP DATABASE [IF EXISTS] name [CASCADE | RESTRICT]`
    DropDatabase {
        name: String,
        if_exists: bool,
        cascade: bool,
    },
}

impl SluiceStatement {
    /// The statement's name when it cannot run inside a transaction block:
    /// it starts or stops work outside the catalog, or records a live
    /// result, which a ROLLBACK could not take back.
    pub fn outside_transactions_only(&self) -> Option<&'static str> {
        match self {
            SluiceStatement::RunJob { .. } => Some("RUN ETL JOB"),
            SluiceStatement::RunJobs { .. } => Some("RUN ETL JOBS"),
            SluiceStatement::CancelRun { .. } => Some("CANCEL ETL RUN"),
            SluiceStatement::CancelJob { .. } => Some("CANCEL ETL JOB"),
            SluiceStatement::RepairJob { .. } => Some("REPAIR ETL JOB"),
            SluiceStatement::ResyncJob { .. } => Some("RESYNC ETL JOB"),
            SluiceStatement::VerifyJob { .. } => Some("VERIFY ETL JOB"),
            SluiceStatement::TestConnection { .. } => Some("TEST CONNECTION"),
            SluiceStatement::TestConnections => Some("TEST CONNECTIONS"),
            SluiceStatement::EditJob { .. } => Some("ALTER ETL JOB (a change of columns, load type or watermark)"),
            SluiceStatement::CreateDatabase { .. } => Some("CREATE DATABASE"),
            SluiceStatement::DropDatabase { .. } => Some("DROP DATABASE"),
            _ => None,
        }
    }
}
