//! The pgwire handlers: Sluice statements are recognised and run here;
//! everything else goes to the DataFusion session unchanged.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::hooks::HookClient;
use futures::Sink;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::TransactionStatus;
use pgwire::types::format::FormatOptions;

use crate::copy_out;
use crate::errors::{StatementError, map_session_error};
use crate::execute::{execute, result_fields};
use crate::login::LoginHandler;
use crate::pg_rewrite;
use crate::privileges::{self, Requirement, session_user};
use crate::public_tables::{self, PublicStatement};
use crate::session_binding::Binding;
use crate::session_settings::SessionSettings;
use crate::settings_hook::{apply_to_context, report_changes};
use crate::sql_guard;
use crate::sql_session::{run_until, statement_deadline};
use crate::state::AppState;
use crate::statements::{self, ParseError, SluiceStatement, split_statements};
use crate::transaction_block::{self, Block};
use crate::type_modifiers;

type DfStatement = <DfSessionService as ExtendedQueryHandler>::Statement;

/// The handlers of one client connection.
pub struct SluiceHandlers {
    state: Arc<AppState>,
    session: Arc<SluiceSession>,
}

impl SluiceHandlers {
    /// Handlers for a new client connection.
    pub fn new(state: Arc<AppState>) -> Self {
        // Defaults until the login starts the session.
        let settings = SessionSettings::new(&state.login.session_defaults, "", &Default::default());
        let binding = Arc::new(Binding::new(
            settings.clone(),
            state.advisory_locks.clone(),
            state.namespaces.default_namespace(),
        ));
        let parser = Arc::new(SluiceQueryParser {
            binding: binding.clone(),
            parsed: ParsedStatements::default(),
        });
        let session = Arc::new(SluiceSession {
            state: state.clone(),
            binding,
            parser,
            settings,
            block: Block::default(),
        });
        Self { state, session }
    }
}

impl PgWireServerHandlers for SluiceHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(LoginHandler::new(
            self.state.login.clone(),
            self.session.settings.clone(),
            self.session.binding.clone(),
        ))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.state.wire_connections.clone()))
    }
}

/// One client's query processing.
pub struct SluiceSession {
    state: Arc<AppState>,
    /// The session's database and its DataFusion session.
    binding: Arc<Binding>,
    parser: Arc<SluiceQueryParser>,
    settings: SessionSettings,
    /// BEGIN ... COMMIT.
    block: Block,
}

impl SluiceSession {
    /// Brings the client up to date with the session's settings before a
    /// statement: the metadata datafusion-postgres reads, and ParameterStatus
    /// for reported parameters `set_config()` changed.
    async fn sync_settings<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.settings.sync_metadata(client);
        apply_to_context(&self.settings, &self.binding.current().ctx);
        report_changes(&self.settings, client).await
    }

    /// Runs `work` in the open transaction block's catalog transaction, if any.
    async fn in_block<F: std::future::Future>(&self, work: F) -> F::Output {
        match self.block.current() {
            Some(txn) => txn.scope(work).await,
            None => work.await,
        }
    }

    /// Runs `work` when `user` may do what `requirement` says, and audits
    /// it; `offset` places syntax errors in the query string.
    async fn authorized(
        &self,
        user: &str,
        requirement: &Requirement,
        offset: usize,
        work: impl Future<Output = Result<Response, StatementError>>,
    ) -> Result<Response, ErrorInfo> {
        let access = self.binding.current().namespace().access.clone();
        let result = match access.check(user, requirement) {
            Ok(()) => work.await,
            Err(e) => Err(e),
        }
        .map_err(|e| e.into_error_info(offset));
        access.audit(user, requirement, result.as_ref().map(|_| ()));
        result
    }

    /// Runs a statement on a public table in the open block, or on its own.
    async fn run_public(
        &self,
        client: &dyn HookClient,
        statement: &PublicStatement,
        params: &[Option<String>],
        format: &Format,
        offset: usize,
    ) -> Result<Response, ErrorInfo> {
        let bound = self.binding.current();
        let catalog = &bound.namespace().catalog;
        let styles = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let block = self.block.current();
        let work = public_tables::run(&bound.ctx, catalog, block, statement, params, format, styles);
        self.authorized(&session_user(client), &statement.requirement(), offset, work)
            .await
    }

    /// Runs a Sluice statement, refusing those a transaction block cannot hold.
    async fn run_sluice(
        &self,
        client: &mut dyn HookClient,
        statement: SluiceStatement,
        format: &Format,
        offset: usize,
    ) -> Result<Response, ErrorInfo> {
        let user = session_user(client);
        let requirement = privileges::requirement(&statement);
        let bound = self.binding.current();
        let work = async {
            self.block.check_allowed(statement.outside_transactions_only())?;
            self.in_block(execute(&self.state, bound.namespace(), client, statement, format))
                .await
        };
        self.authorized(&user, &requirement, offset, work).await
    }
}

fn error_info(e: PgWireError) -> ErrorInfo {
    match map_session_error(e) {
        PgWireError::UserError(info) => *info,
        other => ErrorInfo::new("ERROR".into(), "XX000".into(), other.to_string()),
    }
}

fn user_error(e: StatementError, offset: usize) -> PgWireError {
    PgWireError::UserError(Box::new(e.into_error_info(offset)))
}

#[async_trait]
impl SimpleQueryHandler for SluiceSession {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut responses = Vec::new();
        self.block.follow(client.transaction_status());
        for piece in split_statements(query) {
            self.sync_settings(client).await?;
            let result = if let Some(control) = transaction_block::control(piece.text) {
                let was_failed = self.block.is_failed();
                match self
                    .block
                    .run(control, self.binding.current().namespace(), client)
                    .await
                {
                    // ROLLBACK TO SAVEPOINT made a failed block work again:
                    // pgwire keeps a failed transaction failed through a
                    // TransactionStart, so it is ended and started again.
                    Ok(response @ Response::TransactionStart(_)) if was_failed => {
                        Ok(vec![Response::TransactionEnd(Tag::new("ROLLBACK")), response])
                    }
                    Ok(response) => Ok(vec![response]),
                    // A failed COMMIT ended the block: pgwire learns it from
                    // a TransactionEnd before the error, so the client is
                    // idle, not in a failed block, as in PostgreSQL.
                    Err(e) if self.block.is_idle() => {
                        responses.push(Response::TransactionEnd(Tag::new("ROLLBACK")));
                        Err(e.into_error_info(piece.char_offset))
                    }
                    Err(e) => Err(e.into_error_info(piece.char_offset)),
                }
            } else if self.block.is_failed() {
                Err(StatementError::TransactionAborted.into_error_info(0))
            } else if let Some(copy) = copy_out::parse(piece.text) {
                let deadline = statement_deadline(client);
                let user = session_user(client);
                let bound = self.binding.current();
                let copying = async {
                    let copy = copy.map_err(|e| user_error(e, 0))?;
                    let access = &bound.namespace().access;
                    let requirement = privileges::plain_sql_text(copy.query(), access.database());
                    access.check(&user, &requirement).map_err(|e| user_error(e, 0))?;
                    let response = copy.run(&bound.ctx, deadline).await.map_err(|e| user_error(e, 0))?;
                    Ok(vec![Response::CopyOut(response)])
                };
                self.in_block(run_until(deadline, copying)).await.map_err(error_info)
            } else if let Some(parsed) = statements::parse(piece.text) {
                match parsed {
                    Ok(statement) => self
                        .run_sluice(client, statement, &Format::UnifiedText, piece.char_offset)
                        .await
                        .map(|r| vec![r]),
                    Err(e) => Err(StatementError::from(e).into_error_info(piece.char_offset)),
                }
            } else if let Some(public) = public_tables::recognise(piece.text) {
                self.run_public(&*client, &public, &[], &Format::UnifiedText, piece.char_offset)
                    .await
                    .map(|r| vec![r])
            } else {
                let deadline = statement_deadline(client);
                let rewritten = pg_rewrite::rewrite(piece.text);
                let sql = rewritten.as_deref().unwrap_or(piece.text);
                let df = self.binding.current().df.clone();
                let statement = <DfSessionService as SimpleQueryHandler>::do_query(&df, client, sql);
                self.in_block(run_until(deadline, statement)).await.map_err(error_info)
            };
            match result {
                Ok(done) => responses.extend(done),
                Err(info) => {
                    self.block.fail();
                    // Like PostgreSQL: the failing statement ends the query string.
                    responses.push(Response::Error(Box::new(info)));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for SluiceSession {
    type Statement = DfStatement;
    type QueryParser = SluiceQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.block.follow(client.transaction_status());
        let (sql, plan) = &portal.statement.statement;
        if plan.is_none()
            && let Some(control) = transaction_block::control(sql)
        {
            let result = self
                .block
                .run(control, self.binding.current().namespace(), client)
                .await;
            if result.is_err() && self.block.is_idle() {
                // A failed COMMIT ended the block: the error keeps the
                // client idle, as in PostgreSQL.
                client.set_transaction_status(TransactionStatus::Idle);
            }
            return result.map_err(|e| user_error(e, 0));
        }
        if self.block.is_failed() {
            return Err(user_error(StatementError::TransactionAborted, 0));
        }
        if plan.is_none()
            && let Some(parsed) = self.parser.parsed.get(sql)
        {
            let statement = parsed.map_err(|e| user_error(e.into(), 0))?;
            return self
                .run_sluice(
                    client,
                    SluiceStatement::clone(&statement),
                    &portal.result_column_format,
                    0,
                )
                .await
                .map_err(|info| PgWireError::UserError(Box::new(info)));
        }
        if plan.is_none()
            && let Some(public) = public_tables::recognise(sql)
        {
            let params = public_tables::bound_values(
                &portal.parameters,
                &portal.parameter_format,
                &portal.statement.parameter_types,
            )
            .map_err(|e| user_error(e, 0))?;
            return self
                .run_public(&*client, &public, &params, &portal.result_column_format, 0)
                .await
                .map_err(|info| PgWireError::UserError(Box::new(info)));
        }
        self.sync_settings(client).await?;
        let deadline = statement_deadline(client);
        let bound = self.binding.current();
        bound.portal_format.set(portal.result_column_format.clone());
        let df = bound.df.clone();
        let statement = async {
            <DfSessionService as ExtendedQueryHandler>::do_query(&df, client, portal, max_rows)
                .await
                .map(|response| vec![response])
        };
        let mut responses = self.in_block(run_until(deadline, statement)).await?;
        Ok(responses.remove(0))
    }
}

/// Parses Sluice statements itself and hands everything else to
/// datafusion-postgres' parser. Sluice statements are stored without a plan.
pub struct SluiceQueryParser {
    /// The session's binding, whose parser parses plain SQL.
    binding: Arc<Binding>,
    parsed: ParsedStatements,
}

/// The Sluice statements this connection's Parse messages parsed, by their
/// text, so that Describe and Execute do not parse them again. (The stored
/// statement itself must stay datafusion-postgres' type: its cursor hook
/// downcasts the portal store to it.)
#[derive(Default)]
struct ParsedStatements(std::sync::Mutex<HashMap<String, Arc<SluiceStatement>>>);

impl ParsedStatements {
    /// How many are kept; when full the cache starts over.
    const MAX: usize = 256;

    /// The Sluice statement `sql` is, parsed the first time only; `None` for
    /// plain SQL.
    fn get(&self, sql: &str) -> Option<Result<Arc<SluiceStatement>, ParseError>> {
        let cache = || self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(statement) = cache().get(sql) {
            return Some(Ok(statement.clone()));
        }
        let statement = match statements::parse(sql)? {
            Ok(statement) => Arc::new(statement),
            Err(e) => return Some(Err(e)),
        };
        let mut cache = cache();
        if cache.len() >= Self::MAX {
            cache.clear();
        }
        cache.insert(sql.to_owned(), statement.clone());
        Some(Ok(statement))
    }
}

#[async_trait]
impl QueryParser for SluiceQueryParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if transaction_block::control(sql).is_some() {
            return Ok(Some((sql.to_owned(), None)));
        }
        if client.transaction_status() == TransactionStatus::Error {
            return Err(user_error(StatementError::TransactionAborted, 0));
        }
        if let Some(parsed) = self.parsed.get(sql) {
            parsed.map_err(|e| user_error(e.into(), 0))?;
            return Ok(Some((sql.to_owned(), None)));
        }
        if let Some(public) = public_tables::recognise(sql) {
            if public.has_returning() {
                let refused = StatementError::Unsupported(
                    "RETURNING on public tables in the extended query protocol; use a simple query".into(),
                );
                return Err(user_error(refused, 0));
            }
            return Ok(Some((sql.to_owned(), None)));
        }
        let rewritten = pg_rewrite::rewrite(sql);
        let sql = rewritten.as_deref().unwrap_or(sql);
        let df = self.binding.current().parser.clone();
        let parsed = df.parse_sql(client, sql, types).await.map_err(map_session_error)?;
        if let Some((_, Some((_, plan)))) = &parsed {
            sql_guard::check_plan(plan).map_err(|e| user_error(e.into(), 0))?;
        }
        Ok(parsed)
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        if let (sql, None) = statement
            && let Some(public) = public_tables::recognise(sql)
        {
            // Bound as text; the target column's type casts them.
            return Ok(vec![Type::TEXT; public.parameter_count()]);
        }
        self.binding.current().parser.get_parameter_types(statement)
    }

    fn get_result_schema(&self, statement: &Self::Statement, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        let (sql, plan) = statement;
        if plan.is_none()
            && let Some(parsed) = self.parsed.get(sql)
        {
            let parsed = parsed.map_err(|e| user_error(e.into(), 0))?;
            return result_fields(&parsed, format.unwrap_or(&Format::UnifiedText));
        }
        if plan.is_none() && public_tables::recognise(sql).is_some() {
            return Ok(Vec::new());
        }
        let fields = self.binding.current().parser.get_result_schema(statement, format)?;
        let schema = plan.as_ref().map(|(_, plan)| plan.schema().as_arrow());
        Ok(type_modifiers::describe(fields, schema))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_sluice_statement_is_parsed_once() {
        let parsed = ParsedStatements::default();
        let sql = "SHOW CREATE ETL JOB orders";
        let first = parsed.get(sql).unwrap().unwrap();
        let again = parsed.get(sql).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "parsed again");
        assert!(parsed.get("SELECT 1").is_none());
        assert!(parsed.get("SHOW ETL RUNS FOR").unwrap().is_err());
        for n in 0..=ParsedStatements::MAX {
            parsed.get(&format!("RUN ETL JOB j{n}")).unwrap().unwrap();
        }
        let kept = parsed.0.lock().unwrap().len();
        assert!((1..=ParsedStatements::MAX).contains(&kept), "{kept}");
    }
}
