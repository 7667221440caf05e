//! Who may run what: the privilege every statement needs, checked against
//! the session's role before the statement runs, and the audit record of
//! every statement that changes something or starts work.
//!
//! The built-in user (`--user`) is the superuser: it may do everything,
//! and only it manages roles and grants. Other roles hold `USAGE`,
//! `OPERATE` or `ADMIN` on a database, each including the ones before it.

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{ObjectName, Query, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::results::Response;
use pgwire::api::{ClientInfo, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use sluice_catalog::{AuditRecord, Catalog, Privilege};
use sluice_engine::jobs::JobChange;
use tracing::warn;

use crate::errors::StatementError;
use crate::names::ADMIN_SCHEMA;
use crate::roles::Roles;
use crate::statements::SluiceStatement;

/// What a statement needs of the session's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// Session statements, `SELECT 1`, `pg_catalog` and `information_schema`.
    Nothing,
    /// A privilege on the database.
    Privilege(Privilege),
    /// Only the built-in user: roles and grants.
    Superuser,
}

/// A statement's kind (as its error and audit record name it), what it
/// needs, and the object it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub kind: &'static str,
    pub needed: Needed,
    pub object: Option<String>,
}

impl Requirement {
    fn new(kind: &'static str, needed: Needed, object: Option<&str>) -> Self {
        Self {
            kind,
            needed,
            object: object.map(str::to_owned),
        }
    }

    /// Whether it is audited: it changes definitions or starts or stops
    /// work (everything beyond USAGE).
    pub fn audited(&self) -> bool {
        !matches!(self.needed, Needed::Nothing | Needed::Privilege(Privilege::Usage))
    }
}

/// The privilege a Sluice statement needs. Exhaustive: a new statement
/// does not compile until it is given one.
pub fn requirement(statement: &SluiceStatement) -> Requirement {
    use Needed::{Privilege as P, Superuser};
    use Privilege::{Admin, Operate, Usage};
    use SluiceStatement as S;
    let r = Requirement::new;
    match statement {
        S::CreateSecret { name, .. } | S::CreateSecretFrom { name, .. } => {
            r("CREATE SECRET", P(Admin), Some(name.as_str()))
        }
        S::AlterSecret { name, .. } => r("ALTER SECRET", P(Admin), Some(name.as_str())),
        S::DropSecret { name, .. } => r("DROP SECRET", P(Admin), Some(name.as_str())),
        S::ShowSecrets => r("SHOW SECRETS", P(Usage), None),
        S::CreateConnection { name, .. } => r("CREATE CONNECTION", P(Admin), Some(name.as_str())),
        S::AlterConnection { name, .. } => r("ALTER CONNECTION", P(Admin), Some(name.as_str())),
        S::DropConnection { name, .. } => r("DROP CONNECTION", P(Admin), Some(name.as_str())),
        S::TestConnection { name } => r("TEST CONNECTION", P(Operate), Some(name.as_str())),
        S::TestConnections => r("TEST CONNECTIONS", P(Operate), None),
        S::ShowConnections => r("SHOW CONNECTIONS", P(Usage), None),
        S::ShowCreateConnection { name } => r("SHOW CREATE CONNECTION", P(Usage), Some(name.as_str())),
        S::ShowConnectionTypes => r("SHOW CONNECTION TYPES", P(Usage), None),
        S::ShowSchemas { connection } => r("SHOW SCHEMAS", P(Usage), Some(connection.as_str())),
        S::ShowTables { connection, .. } => r("SHOW TABLES", P(Usage), Some(connection.as_str())),
        S::DescribeSourceTable { connection, .. } => r("DESCRIBE", P(Usage), Some(connection.as_str())),
        S::CreateJob(job) | S::CreateOrReplaceJob(job) => r("CREATE ETL JOB", P(Admin), Some(job.name.as_str())),
        S::AlterJob { name, change } => {
            let (kind, needed) = alter_job(change, false);
            r(kind, needed, Some(name.as_str()))
        }
        S::EditJob { name, .. } => r("ALTER ETL JOB", P(Admin), Some(name.as_str())),
        S::DropJob { name, .. } => r("DROP ETL JOB", P(Admin), Some(name.as_str())),
        S::RunJob { name, .. } => r("RUN ETL JOB", P(Operate), Some(name.as_str())),
        S::CancelRun { .. } => r("CANCEL ETL RUN", P(Operate), None),
        S::CancelJob { name } => r("CANCEL ETL JOB", P(Operate), Some(name.as_str())),
        S::ShowJobs => r("SHOW ETL JOBS", P(Usage), None),
        S::ShowCreateJob { name } => r("SHOW CREATE ETL JOB", P(Usage), Some(name.as_str())),
        S::ShowRuns { job } => r("SHOW ETL RUNS", P(Usage), job.as_deref()),
        S::ExplainJob { name } => r("EXPLAIN ETL JOB", P(Usage), Some(name.as_str())),
        S::VerifyJob { name, .. } => r("VERIFY ETL JOB", P(Operate), Some(name.as_str())),
        S::RepairJob { name, .. } => r("REPAIR ETL JOB", P(Operate), Some(name.as_str())),
        S::ResyncJob { name } => r("RESYNC ETL JOB", P(Operate), Some(name.as_str())),
        S::CreateJobs(_) => r("CREATE ETL JOBS", P(Admin), None),
        S::AlterJobs { change, .. } => {
            let (kind, needed) = alter_job(change, true);
            r(kind, needed, None)
        }
        S::ShowCreateAll { .. } => r("SHOW CREATE ALL", P(Usage), None),
        S::RunJobs { .. } => r("RUN ETL JOBS", P(Operate), None),
        S::CreateAlert(alert) => r("CREATE ALERT", P(Admin), Some(alert.name.as_str())),
        S::DropAlert { name, .. } => r("DROP ALERT", P(Admin), Some(name.as_str())),
        S::ShowAlerts => r("SHOW ALERTS", P(Usage), None),
        S::CreateRole { name, .. } => r("CREATE ROLE", Superuser, Some(name.as_str())),
        S::AlterRole { name, .. } => r("ALTER ROLE", Superuser, Some(name.as_str())),
        S::DropRole { name, .. } => r("DROP ROLE", Superuser, Some(name.as_str())),
        S::Grant(grant) => r("GRANT", Superuser, Some(grant.roles.join(", ").as_str())),
        S::Revoke(grant) => r("REVOKE", Superuser, Some(grant.roles.join(", ").as_str())),
        S::CreateDatabase { name, .. } => r("CREATE DATABASE", Superuser, Some(name.as_str())),
        S::DropDatabase { name, .. } => r("DROP DATABASE", Superuser, Some(name.as_str())),
    }
}

/// `ALTER ETL JOB(S) ... PAUSE | RESUME` operates a job; other changes
/// define it.
fn alter_job(change: &JobChange, many: bool) -> (&'static str, Needed) {
    use Needed::Privilege as P;
    match (change, many) {
        (JobChange::Pause, false) => ("ALTER ETL JOB PAUSE", P(Privilege::Operate)),
        (JobChange::Resume, false) => ("ALTER ETL JOB RESUME", P(Privilege::Operate)),
        (JobChange::Pause, true) => ("ALTER ETL JOBS PAUSE", P(Privilege::Operate)),
        (JobChange::Resume, true) => ("ALTER ETL JOBS RESUME", P(Privilege::Operate)),
        (JobChange::Watermark(_), false) => ("ALTER ETL JOB SET WATERMARK", P(Privilege::Admin)),
        (JobChange::Watermark(_), true) => ("ALTER ETL JOBS SET WATERMARK", P(Privilege::Admin)),
        (JobChange::Schedule(_) | JobChange::Set(_), false) => ("ALTER ETL JOB", P(Privilege::Admin)),
        (JobChange::Schedule(_) | JobChange::Set(_), true) => ("ALTER ETL JOBS", P(Privilege::Admin)),
    }
}

/// What plain SQL run in `database` needs: USAGE when it reads any table
/// outside `pg_catalog` and `information_schema` (system tables, the
/// warehouse, source connections, public tables), the superuser for the
/// `sluice_admin` tables of every database, else nothing.
pub fn plain_sql(statement: &Statement, database: &str) -> Requirement {
    struct Relations<'a> {
        database: &'a str,
        /// Names `WITH` defines in the statement.
        ctes: Vec<String>,
        reads_data: bool,
        /// Whether it reads `sluice_admin` tables.
        reads_admin: bool,
    }
    impl Visitor for Relations<'_> {
        type Break = ();

        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                self.ctes
                    .extend(with.cte_tables.iter().map(|cte| cte.alias.name.value.to_lowercase()));
            }
            ControlFlow::Continue(())
        }

        fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
            if self.is_admin(relation) {
                self.reads_admin = true;
                return ControlFlow::Break(());
            }
            if !self.is_metadata(relation) {
                self.reads_data = true;
            }
            ControlFlow::Continue(())
        }
    }
    impl Relations<'_> {
        fn parts(relation: &ObjectName) -> Vec<String> {
            relation
                .0
                .iter()
                .map(|p| p.as_ident().map_or(String::new(), |i| i.value.to_lowercase()))
                .collect()
        }

        fn is_metadata(&self, relation: &ObjectName) -> bool {
            let metadata = |schema: &str| schema == "pg_catalog" || schema == "information_schema";
            match Self::parts(relation).as_slice() {
                [schema, _] => metadata(schema),
                [database, schema, _] => database == self.database && metadata(schema),
                [table] => table.starts_with("pg_") || self.ctes.contains(table),
                _ => false,
            }
        }

        fn is_admin(&self, relation: &ObjectName) -> bool {
            match Self::parts(relation).as_slice() {
                [schema, _] => schema == ADMIN_SCHEMA,
                [database, schema, _] => database == self.database && schema == ADMIN_SCHEMA,
                _ => false,
            }
        }
    }
    let mut relations = Relations {
        database,
        ctes: Vec::new(),
        reads_data: false,
        reads_admin: false,
    };
    let _ = statement.visit(&mut relations);
    let table = match statement {
        Statement::ExplainTable { table_name, .. } => Some(table_name),
        _ => None,
    };
    if relations.reads_admin || table.is_some_and(|t| relations.is_admin(t)) {
        return Requirement::new("reading sluice_admin tables", Needed::Superuser, None);
    }
    let reads_data = relations.reads_data || table.is_some_and(|t| !relations.is_metadata(t));
    if reads_data {
        Requirement::new("reading tables", Needed::Privilege(Privilege::Usage), None)
    } else {
        Requirement::new("a query", Needed::Nothing, None)
    }
}

/// Audit records kept unless told otherwise (`--keep-audit`); the oldest
/// goes when a new one is saved.
pub const DEFAULT_KEEP_AUDIT: u64 = 10_000;

/// The session's user, as it logged in.
pub fn session_user<C: ClientInfo + ?Sized>(client: &C) -> String {
    client.metadata().get(METADATA_USER).cloned().unwrap_or_default()
}

/// Checks privileges and writes the audit trail for one server.
pub struct Access {
    catalog: Arc<Catalog>,
    superuser: String,
    /// Audit records kept.
    keep_audit: u64,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("superuser", &self.superuser)
            .field("keep_audit", &self.keep_audit)
            .finish_non_exhaustive()
    }
}

impl Access {
    /// Checks against `catalog`'s grants; keeps the newest `keep_audit`
    /// audit records.
    pub fn new(catalog: Arc<Catalog>, superuser: &str, keep_audit: u64) -> Self {
        Self {
            catalog,
            superuser: superuser.to_owned(),
            keep_audit,
        }
    }

    /// The database (namespace) whose privileges this checks.
    pub fn database(&self) -> &str {
        self.catalog.namespace_name()
    }

    /// Role management, for the superuser's statements.
    pub fn roles(&self) -> Roles<'_> {
        Roles {
            catalog: &self.catalog,
            superuser: &self.superuser,
        }
    }

    /// Refuses `requirement` unless `user` may do it now (grants are read
    /// at every statement, so a REVOKE applies to open sessions at once).
    pub fn check(&self, user: &str, requirement: &Requirement) -> Result<(), StatementError> {
        if user == self.superuser {
            return Ok(());
        }
        let denied = |needed| {
            Err(StatementError::PermissionDenied {
                kind: requirement.kind,
                needed,
                database: self.database().to_owned(),
                role: user.to_owned(),
            })
        };
        match requirement.needed {
            Needed::Nothing => Ok(()),
            Needed::Superuser => denied(None),
            Needed::Privilege(privilege) => match self.catalog.privilege(self.database(), user)? {
                Some(held) if held >= privilege => Ok(()),
                _ => denied(Some(privilege)),
            },
        }
    }

    /// Records an audited statement's outcome: `ok` or its SQLSTATE. A
    /// failure to record is logged; the statement's result stands.
    pub fn audit(&self, user: &str, requirement: &Requirement, outcome: Result<(), &ErrorInfo>) {
        if !requirement.audited() {
            return;
        }
        let record = AuditRecord {
            id: 0,
            at: Utc::now(),
            role: user.to_owned(),
            database: self.database().to_owned(),
            statement: requirement.kind.to_owned(),
            object: requirement.object.clone(),
            outcome: outcome.map_or_else(|e| e.code.clone(), |()| "ok".to_owned()),
        };
        if let Err(e) = self.catalog.record_audit(&record, self.keep_audit) {
            warn!(error = %e, statement = requirement.kind, "could not record the audit trail");
        }
    }
}

/// What plain SQL text needs: the most any of its statements needs (USAGE
/// when it does not parse: DataFusion reports why).
pub fn plain_sql_text(sql: &str, database: &str) -> Requirement {
    match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(statements) => statements
            .iter()
            .map(|statement| plain_sql(statement, database))
            .max_by_key(|r| match r.needed {
                Needed::Nothing => 0,
                Needed::Privilege(_) => 1,
                Needed::Superuser => 2,
            })
            .filter(|r| r.needed != Needed::Nothing)
            .unwrap_or_else(|| Requirement::new("a query", Needed::Nothing, None)),
        Err(_) => Requirement::new("reading tables", Needed::Privilege(Privilege::Usage), None),
    }
}

/// Checks plain SQL (both protocols, at parse and at execution) against
/// the session's role: a datafusion-postgres query hook after the SQL guard.
#[derive(Debug)]
pub struct PrivilegeHook(pub Arc<Access>);

impl PrivilegeHook {
    fn refused<C: ClientInfo + ?Sized>(&self, statement: &Statement, client: &C) -> Option<PgWireError> {
        let requirement = plain_sql(statement, self.0.database());
        self.0
            .check(&session_user(client), &requirement)
            .err()
            .map(|e| PgWireError::UserError(Box::new(e.into_error_info(0))))
    }
}

#[async_trait]
impl QueryHook for PrivilegeHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.refused(statement, client).map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        self.refused(statement, client).map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.refused(statement, client).map(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::parse_sluice;

    fn needs(sql: &str) -> Needed {
        requirement(&parse_sluice(sql).unwrap()).needed
    }

    fn plain(sql: &str) -> Needed {
        plain_sql(&Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap()[0], "sluice").needed
    }

    #[test]
    fn statements_need_the_privilege_of_what_they_do() {
        let usage = Needed::Privilege(Privilege::Usage);
        let operate = Needed::Privilege(Privilege::Operate);
        let admin = Needed::Privilege(Privilege::Admin);
        for (sql, needed) in [
            ("SHOW ETL JOBS", usage),
            ("DESCRIBE shop.public.orders", usage),
            ("SHOW CREATE ALL", usage),
            ("RUN ETL JOB orders", operate),
            ("CANCEL ETL RUN 7", operate),
            ("ALTER ETL JOB orders PAUSE", operate),
            ("ALTER ETL JOBS WHERE true RESUME", operate),
            ("VERIFY ETL JOB orders", operate),
            ("ALTER ETL JOB orders SET WATERMARK '5'", admin),
            ("ALTER ETL JOB orders SET SCHEDULE EVERY 5 MINUTES", admin),
            ("ALTER ETL JOB orders RESET WATERMARK", admin),
            ("CREATE CONNECTION c TYPE postgres", admin),
            ("CREATE SECRET s AS 'x'", admin),
            ("DROP ALERT a", admin),
            ("CREATE ROLE r", Needed::Superuser),
            ("GRANT USAGE ON DATABASE sluice TO r", Needed::Superuser),
            ("CREATE DATABASE model_5", Needed::Superuser),
            ("DROP DATABASE model_5 CASCADE", Needed::Superuser),
        ] {
            assert_eq!(needs(sql), needed, "{sql}");
        }
        let run = requirement(&parse_sluice("RUN ETL JOB orders").unwrap());
        assert_eq!((run.kind, run.object.as_deref()), ("RUN ETL JOB", Some("orders")));
        assert!(run.audited());
        assert!(!requirement(&parse_sluice("SHOW ETL JOBS").unwrap()).audited());
    }

    #[test]
    fn plain_sql_needs_usage_to_read_tables() {
        for sql in [
            "SELECT 1",
            "SELECT * FROM pg_catalog.pg_class",
            "SELECT * FROM sluice.pg_catalog.pg_roles",
            "SELECT * FROM pg_type",
            "SELECT table_name FROM information_schema.tables",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SHOW statement_timeout",
            "SET statement_timeout = '1s'",
        ] {
            assert_eq!(plain(sql), Needed::Nothing, "{sql}");
        }
        for sql in [
            "SELECT * FROM sluice.jobs",
            "SELECT count(*) FROM warehouse.orders",
            "SELECT * FROM shop.public.orders",
            "SELECT * FROM pg_catalog.pg_class JOIN warehouse.orders ON true",
            "SELECT (SELECT max(id) FROM warehouse.orders)",
            "WITH x AS (SELECT * FROM sluice.runs) SELECT * FROM x",
            "SELECT * FROM schema_migrations",
            "DESCRIBE warehouse.orders",
            "SELECT * FROM other.pg_catalog.pg_class",
        ] {
            assert_eq!(plain(sql), Needed::Privilege(Privilege::Usage), "{sql}");
        }
        for sql in [
            "SELECT * FROM sluice_admin.jobs",
            "SELECT * FROM sluice.sluice_admin.runs",
            "SELECT 1 FROM warehouse.orders JOIN sluice_admin.runs ON true",
        ] {
            assert_eq!(plain(sql), Needed::Superuser, "{sql}");
        }
        let in_model_5 =
            |sql: &str| plain_sql(&Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap()[0], "model_5").needed;
        assert_eq!(in_model_5("SELECT * FROM model_5.pg_catalog.pg_class"), Needed::Nothing);
        assert_eq!(
            in_model_5("SELECT * FROM sluice.pg_catalog.pg_class"),
            Needed::Privilege(Privilege::Usage)
        );
    }
}
