//! Keeps plain SQL read-only: DataFusion's DDL, DML, `COPY ... TO` and
//! runtime settings are refused before they are planned, in both the simple
//! and the extended query protocol.
//!
//! The check is an allow-list over the parsed statement and every statement
//! nested in it (`EXPLAIN ANALYZE INSERT ...`, `WITH x AS (INSERT ...)`), so a
//! statement kind DataFusion learns later is refused until it is listed here.
//! Sluice's own statements (`CREATE CONNECTION`, ...) never reach DataFusion
//! and are not checked here.

use std::ops::ControlFlow;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Select, Statement, Visit, Visitor};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::results::Response;
use pgwire::error::{PgWireError, PgWireResult};

use crate::errors::{Refused, StatementError};

/// Settings under this prefix replace the shared memory pool or the spill
/// directory, so a session may not change them.
const RUNTIME_SETTINGS: &str = "datafusion.runtime.";

/// Refuses `statement` (or a statement nested in it) unless it only reads.
pub fn check(statement: &Statement) -> Result<(), Refused> {
    match statement.visit(&mut ReadOnly) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(refused) => Err(refused),
    }
}

/// Refuses a planned statement that would define, change or write data:
/// DataFusion's own check, a second line behind [`check`] on every plan of
/// the extended protocol.
pub fn check_plan(plan: &LogicalPlan) -> Result<(), Refused> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .verify_plan(plan)
        .map_err(|e| {
            // "DDL not supported: CreateMemoryTable" names the plan node.
            let message = e.message().into_owned();
            let kind = message.rsplit(": ").next().unwrap_or(&message).to_owned();
            Refused { kind }
        })
}

struct ReadOnly;

impl Visitor for ReadOnly {
    type Break = Refused;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Refused> {
        let allowed = match statement {
            // Every form of SET (`SET a = 1, b = 2`, quoted names) is covered.
            Statement::Set(_) | Statement::Reset(_) => !statement
                .to_string()
                .replace('"', "")
                .to_ascii_lowercase()
                .contains(RUNTIME_SETTINGS),
            Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ExplainTable { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowFunctions { .. }
            | Statement::ShowCreate { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Prepare { .. }
            | Statement::Execute { .. }
            | Statement::Deallocate { .. } => true,
            _ => false,
        };
        if allowed {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(Refused {
                kind: statement_kind(statement),
            })
        }
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Refused> {
        // `SELECT ... INTO t` creates a table.
        if select.into.is_some() {
            return ControlFlow::Break(Refused {
                kind: "SELECT INTO".into(),
            });
        }
        ControlFlow::Continue(())
    }
}

/// `CREATE TABLE` for `Statement::CreateTable`, `SET datafusion.runtime.*`
/// for a runtime setting: the statement kind in SQL words.
fn statement_kind(statement: &Statement) -> String {
    match statement {
        Statement::Set(_) => return format!("SET {RUNTIME_SETTINGS}*"),
        Statement::Reset(_) => return format!("RESET {RUNTIME_SETTINGS}*"),
        _ => {}
    }
    let debug = format!("{statement:?}");
    let variant = debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default();
    let mut words = String::new();
    for c in variant.chars() {
        if c.is_ascii_uppercase() && !words.is_empty() {
            words.push(' ');
        }
        words.push(c.to_ascii_uppercase());
    }
    words
}

/// The guard as the first datafusion-postgres query hook: it sees every
/// parsed statement of both protocols before it is planned or run.
#[derive(Debug)]
pub struct SqlGuardHook;

fn refused(statement: &Statement) -> Option<PgWireError> {
    check(statement)
        .err()
        .map(|e| PgWireError::UserError(Box::new(StatementError::from(e).into_error_info(0))))
}

#[async_trait]
impl QueryHook for SqlGuardHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refused(statement).map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        refused(statement).map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refused(statement).map(Err)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn kind_refused(sql: &str) -> Option<String> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses").remove(0);
        check(&statement).err().map(|e| e.kind)
    }

    #[test]
    fn reads_pass() {
        for sql in [
            "SELECT 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "EXPLAIN SELECT 1",
            "SHOW statement_timeout",
            "SET statement_timeout = '1s'",
            "SET datafusion.execution.batch_size = 1024",
            "RESET TimeZone",
            "RESET ALL",
            "BEGIN",
            "COMMIT",
        ] {
            assert_eq!(kind_refused(sql), None, "{sql}");
        }
    }

    #[test]
    fn writes_are_refused_by_kind() {
        for (sql, kind) in [
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            (
                "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc/'",
                "CREATE TABLE",
            ),
            ("CREATE TABLE t (a int)", "CREATE TABLE"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("INSERT INTO t VALUES (1)", "INSERT"),
            ("DROP TABLE t", "DROP"),
            ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", "INSERT"),
            ("SELECT 1 INTO t", "SELECT INTO"),
            (
                "SET datafusion.runtime.memory_limit = '100G'",
                "SET datafusion.runtime.*",
            ),
            ("RESET datafusion.runtime.memory_limit", "RESET datafusion.runtime.*"),
        ] {
            assert_eq!(kind_refused(sql).as_deref(), Some(kind), "{sql}");
        }
    }
}
