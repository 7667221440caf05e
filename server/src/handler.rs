//! The pgwire handlers: Sluice statements are recognised and run here;
//! everything else goes to the DataFusion session unchanged.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use datafusion_postgres::Parser as DfParser;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::Sink;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use crate::errors::{StatementError, map_session_error};
use crate::execute::{execute, result_fields};
use crate::login::LoginHandler;
use crate::sql_guard::{self, SqlGuardHook};
use crate::sql_session::{client_context, run_until, set_default_statement_timeout, statement_deadline};
use crate::state::AppState;
use crate::statements::{self, is_sluice_statement, split_statements};

type DfStatement = <DfSessionService as ExtendedQueryHandler>::Statement;

/// The handlers of one client connection.
pub struct SluiceHandlers {
    state: Arc<AppState>,
    session: Arc<SluiceSession>,
}

impl SluiceHandlers {
    /// Handlers for a new client connection.
    pub fn new(state: Arc<AppState>) -> Self {
        // The guard comes first: it refuses writes before any other hook or
        // DataFusion sees them.
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(SqlGuardHook),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let ctx = Arc::new(client_context(&state.ctx));
        let df = Arc::new(DfSessionService::new_with_hooks(ctx, hooks));
        let parser = Arc::new(SluiceQueryParser { df: df.query_parser() });
        let session = Arc::new(SluiceSession {
            state: state.clone(),
            df,
            parser,
            defaults_set: AtomicBool::new(false),
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
        Arc::new(LoginHandler::new(self.state.login.clone()))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.state.wire_connections.clone()))
    }
}

/// One client's query processing.
pub struct SluiceSession {
    state: Arc<AppState>,
    df: Arc<DfSessionService>,
    parser: Arc<SluiceQueryParser>,
    /// Whether the server's session defaults were given to the client.
    defaults_set: AtomicBool,
}

impl SluiceSession {
    /// Gives the client the server's session defaults before its first
    /// statement runs.
    fn set_defaults<C: ClientInfo>(&self, client: &mut C) {
        if !self.defaults_set.swap(true, Ordering::Relaxed) {
            set_default_statement_timeout(client, self.state.statement_timeout);
        }
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
        self.set_defaults(client);
        let mut responses = Vec::new();
        for piece in split_statements(query) {
            let result = if is_sluice_statement(piece.text) {
                let executed = match statements::parse(piece.text) {
                    Ok(statement) => execute(&self.state, client, statement, &Format::UnifiedText).await,
                    Err(e) => Err(e.into()),
                };
                executed
                    .map(|r| vec![r])
                    .map_err(|e| e.into_error_info(piece.char_offset))
            } else {
                let deadline = statement_deadline(client);
                let statement = <DfSessionService as SimpleQueryHandler>::do_query(&self.df, client, piece.text);
                run_until(deadline, statement).await.map_err(error_info)
            };
            match result {
                Ok(done) => responses.extend(done),
                Err(info) => {
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
        let (sql, plan) = &portal.statement.statement;
        if plan.is_none() && is_sluice_statement(sql) {
            let statement = statements::parse(sql).map_err(|e| user_error(e.into(), 0))?;
            return execute(&self.state, client, statement, &portal.result_column_format)
                .await
                .map_err(|e| user_error(e, 0));
        }
        self.set_defaults(client);
        let deadline = statement_deadline(client);
        let statement = async {
            <DfSessionService as ExtendedQueryHandler>::do_query(&self.df, client, portal, max_rows)
                .await
                .map(|response| vec![response])
        };
        let mut responses = run_until(deadline, statement).await?;
        Ok(responses.remove(0))
    }
}

/// Parses Sluice statements itself and hands everything else to
/// datafusion-postgres' parser. Sluice statements are stored without a plan.
pub struct SluiceQueryParser {
    df: Arc<DfParser>,
}

#[async_trait]
impl QueryParser for SluiceQueryParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if is_sluice_statement(sql) {
            statements::parse(sql).map_err(|e| user_error(e.into(), 0))?;
            return Ok(Some((sql.to_owned(), None)));
        }
        let parsed = self.df.parse_sql(client, sql, types).await.map_err(map_session_error)?;
        if let Some((_, Some((_, plan)))) = &parsed {
            sql_guard::check_plan(plan).map_err(|e| user_error(e.into(), 0))?;
        }
        Ok(parsed)
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.df.get_parameter_types(statement)
    }

    fn get_result_schema(&self, statement: &Self::Statement, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        let (sql, plan) = statement;
        if plan.is_none() && is_sluice_statement(sql) {
            let parsed = statements::parse(sql).map_err(|e| user_error(e.into(), 0))?;
            return result_fields(&parsed, format.unwrap_or(&Format::UnifiedText));
        }
        self.df.get_result_schema(statement, format)
    }
}
