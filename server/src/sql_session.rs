//! The DataFusion sessions behind plain SQL: one shared state (catalogs,
//! runtime and its bounded memory pool) and a session per client with its
//! own settings, and the per-statement `statement_timeout`.

use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use futures::StreamExt;
use pgwire::api::ClientInfo;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::error::{PgWireError, PgWireResult};
use sluice_catalog::Catalog;
use sluice_engine::ConnectionManager;
use sluice_engine::destinations::WarehouseSchema;
use sluice_engine::jobs::JobManager;
use tokio::time::Instant;

use crate::app::{DATABASE, StartupError, WAREHOUSE_SCHEMA};
use crate::errors::{StatementError, map_session_error};
use crate::source_catalogs::SluiceCatalogList;
use crate::system_tables::{self, SystemSchema};
use crate::wide_decimals::WideDecimalsAsText;

/// Where datafusion-postgres keeps a session's `statement_timeout` (in
/// milliseconds; absent means no timeout) in the client's metadata.
const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

/// The shared DataFusion session behind plain SQL: pg_catalog for clients,
/// the read-only `sluice` system schema, the warehouse, and every source
/// connection as a catalog. Queries share a fair spill pool of
/// `query_memory` bytes; operators that can spill use the OS temp dir.
/// ETL jobs run their own sessions, outside this pool.
pub fn session_context(
    catalog: Arc<Catalog>,
    connections: Arc<ConnectionManager>,
    jobs: Arc<JobManager>,
    warehouse: WarehouseSchema,
    query_memory: usize,
) -> Result<SessionContext, StartupError> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema(DATABASE, "public");
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(query_memory)))
        .build_arc()
        .map_err(|e| StartupError::Config(format!("query runtime set-up failed: {e}")))?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_catalog_list(Arc::new(SluiceCatalogList::new(connections)))
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.add_analyzer_rule(Arc::new(WideDecimalsAsText));
    setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider)
        .map_err(|e| StartupError::Config(format!("pg_catalog set-up failed: {e}")))?;
    ctx.catalog(DATABASE)
        .expect("the default catalog exists")
        .register_schema(system_tables::SCHEMA, Arc::new(SystemSchema::new(catalog, jobs)))
        .map_err(|e| StartupError::Config(format!("system tables set-up failed: {e}")))?;
    ctx.catalog(DATABASE)
        .expect("the default catalog exists")
        .register_schema(WAREHOUSE_SCHEMA, Arc::new(warehouse))
        .map_err(|e| StartupError::Config(format!("warehouse set-up failed: {e}")))?;
    Ok(ctx)
}

/// One client's session: the shared catalogs, runtime and memory pool, and
/// its own copy of the settings, so `SET datafusion.*` stays in the session.
pub fn client_context(shared: &SessionContext) -> SessionContext {
    SessionContext::new_with_state(SessionStateBuilder::new_from_existing(shared.state()).build())
}

/// Gives a new session the server's default `statement_timeout` (`None`:
/// no timeout); `SET statement_timeout` changes it afterwards.
pub fn set_default_statement_timeout<C: ClientInfo + ?Sized>(client: &mut C, timeout: Option<Duration>) {
    if let Some(timeout) = timeout {
        client
            .metadata_mut()
            .insert(STATEMENT_TIMEOUT_KEY.into(), timeout.as_millis().to_string());
    }
}

/// When a statement starting now must end, by the session's
/// `statement_timeout`.
pub fn statement_deadline<C: ClientInfo + ?Sized>(client: &C) -> Option<Instant> {
    let millis = client.metadata().get(STATEMENT_TIMEOUT_KEY)?.parse::<u64>().ok()?;
    Some(Instant::now() + Duration::from_millis(millis))
}

fn timed_out() -> PgWireError {
    PgWireError::UserError(Box::new(StatementError::StatementTimeout.into_error_info(0)))
}

/// Runs plain-SQL statements (planning, and then streaming their rows) until
/// `deadline`; past it the statement is cancelled with 57014 and its
/// resources are freed. Errors while streaming get their SQLSTATE too.
pub async fn run_until<F>(deadline: Option<Instant>, statements: F) -> PgWireResult<Vec<Response>>
where
    F: Future<Output = PgWireResult<Vec<Response>>>,
{
    let responses = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, statements)
            .await
            .map_err(|_| timed_out())?,
        None => statements.await,
    }
    .map_err(map_session_error)?;
    Ok(responses
        .into_iter()
        .map(|response| until(deadline, response))
        .collect())
}

/// Ends the rows of `response` at `deadline` and maps their errors.
fn until(deadline: Option<Instant>, response: Response) -> Response {
    let Response::Query(query) = response else {
        return response;
    };
    let (command_tag, row_schema, data_rows) = (query.command_tag, query.row_schema, query.data_rows);
    let rows = futures::stream::unfold(Some(data_rows), move |rows| async move {
        let mut rows = rows?;
        let next = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, rows.next()).await,
            None => Ok(rows.next().await),
        };
        match next {
            Ok(Some(Ok(row))) => Some((Ok(row), Some(rows))),
            Ok(Some(Err(e))) => Some((Err(map_session_error(e)), None)),
            Ok(None) => None,
            Err(_) => Some((Err(timed_out()), None)),
        }
    });
    let mut wrapped = QueryResponse::new(row_schema, rows);
    wrapped.set_command_tag(&command_tag);
    Response::Query(wrapped)
}
