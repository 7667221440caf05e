//! The pgwire handlers: Sluice statements are recognised and run here;
//! everything else goes to the DataFusion session unchanged.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::Parser as DfParser;
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

use crate::app::AppState;
use crate::errors::{StatementError, map_row_errors, map_session_error};
use crate::execute::{execute, result_fields};
use crate::login::LoginHandler;
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
        let df = Arc::new(DfSessionService::new(state.ctx.clone()));
        let parser = Arc::new(SluiceQueryParser { df: df.query_parser() });
        let session = Arc::new(SluiceSession {
            state: state.clone(),
            df,
            parser,
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
                <DfSessionService as SimpleQueryHandler>::do_query(&self.df, client, piece.text)
                    .await
                    .map(|responses| responses.into_iter().map(map_row_errors).collect())
                    .map_err(error_info)
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
        <DfSessionService as ExtendedQueryHandler>::do_query(&self.df, client, portal, max_rows)
            .await
            .map(map_row_errors)
            .map_err(map_session_error)
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
        self.df.parse_sql(client, sql, types).await.map_err(map_session_error)
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
