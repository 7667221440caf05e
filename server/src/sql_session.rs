//! The DataFusion sessions behind plain SQL: one shared state (catalogs,
//! runtime and its bounded memory pool) and a session per client with its
//! own settings; statements run on a runtime of their own, each until its
//! `statement_timeout`.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::catalog::SchemaProvider;
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use futures::StreamExt;
use pgwire::api::ClientInfo;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::error::{PgWireError, PgWireResult};
use sluice_engine::ConnectionManager;
use sluice_engine::destinations::WarehouseSchema;
use sluice_engine::jobs::JobManager;
use sluice_engine::sources::PushDownOffset;
use tokio::runtime::{Handle, Runtime};
use tokio::time::Instant;

use crate::admin_tables::AdminSchema;
use crate::errors::{StatementError, map_session_error};
use crate::names::{ADMIN_SCHEMA, DEFAULT_SCHEMA, WAREHOUSE_SCHEMA};
use crate::pg_catalog_overlay::PgCatalogOverlay;
use crate::pg_database::Databases;
use crate::pg_functions::register_catalog_functions;
use crate::pg_roles::PgRoles;
use crate::public_tables::{self, PublicSchema};
use crate::session_settings::STATEMENT_TIMEOUT_KEY;
use crate::session_time_zone::SessionTimeZone;
use crate::source_catalogs::SluiceCatalogList;
use crate::startup_error::StartupError;
use crate::system_tables::{self, SystemSchema};
use crate::type_modifiers;
use crate::wide_decimals::WideDecimalsAsText;

/// The runtime every namespace's queries share: one fair spill pool of
/// `query_memory` bytes; operators that can spill use the OS temp dir.
pub fn query_runtime_env(query_memory: usize) -> Result<Arc<RuntimeEnv>, StartupError> {
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(query_memory)))
        .build_arc()
        .map_err(|e| StartupError::Config(format!("query runtime set-up failed: {e}")))
}

/// The shared DataFusion session behind one namespace's plain SQL: its SQL
/// catalog, named after the namespace, holds pg_catalog for clients, the
/// read-only `sluice` system schema, the warehouse and the public tables;
/// every source connection is a catalog; `sluice_admin` has the system
/// tables of every namespace. Queries run on `runtime`. ETL
/// jobs run their own sessions, outside its pool.
pub fn session_context(
    connections: Arc<ConnectionManager>,
    jobs: Arc<JobManager>,
    warehouse: WarehouseSchema,
    runtime: Arc<RuntimeEnv>,
    databases: Arc<Databases>,
    admin: AdminSchema,
) -> Result<SessionContext, StartupError> {
    let catalog = connections.catalog().clone();
    let database = catalog.namespace_name().to_owned();
    let superuser = databases.superuser.clone();
    let warehouse: Arc<dyn SchemaProvider> = Arc::new(warehouse);
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema(&database, DEFAULT_SCHEMA);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_catalog_list(Arc::new(SluiceCatalogList::new(connections)))
        .with_default_features()
        .with_optimizer_rule(Arc::new(PushDownOffset))
        .with_physical_optimizer_rule(Arc::new(CooperativeJoins))
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.add_analyzer_rule(Arc::new(WideDecimalsAsText));
    ctx.add_analyzer_rule(Arc::new(SessionTimeZone));
    register_catalog_functions(&ctx);
    let roles = PgRoles {
        catalog: catalog.clone(),
        superuser: superuser.clone(),
    };
    let failed = |what: &str, e: &dyn std::fmt::Display| StartupError::Config(format!("{what} set-up failed: {e}"));
    setup_pg_catalog(&ctx, &database, roles).map_err(|e| failed("pg_catalog", &e))?;
    let sql_catalog = ctx.catalog(&database).expect("the default catalog exists");
    let pg_catalog = sql_catalog.schema("pg_catalog").expect("pg_catalog was just set up");
    let overlay = PgCatalogOverlay::new(pg_catalog, warehouse.clone(), databases, &database);
    sql_catalog
        .register_schema("pg_catalog", Arc::new(overlay))
        .map_err(|e| failed("pg_catalog", &e))?;
    sql_catalog
        .register_schema(public_tables::SCHEMA, Arc::new(PublicSchema::new(catalog.clone())))
        .map_err(|e| failed("public schema", &e))?;
    sql_catalog
        .register_schema(
            system_tables::SCHEMA,
            Arc::new(SystemSchema::new(catalog, jobs, &superuser)),
        )
        .map_err(|e| failed("system tables", &e))?;
    sql_catalog
        .register_schema(WAREHOUSE_SCHEMA, warehouse)
        .map_err(|e| failed("warehouse", &e))?;
    sql_catalog
        .register_schema(ADMIN_SCHEMA, Arc::new(admin))
        .map_err(|e| failed("sluice_admin", &e))?;
    Ok(ctx)
}

/// Makes every join yield to the scheduler while it produces rows.
///
/// A join can turn one input batch into millions of rows without polling
/// its inputs, the only place DataFusion gives the scheduler a turn; until
/// then its task cannot be cancelled (by `statement_timeout`) or share its
/// thread. Wrapped in `CooperativeExec`, it yields every few batches.
#[derive(Debug)]
struct CooperativeJoins;

impl PhysicalOptimizerRule for CooperativeJoins {
    fn name(&self) -> &str {
        "CooperativeJoins"
    }

    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.children().len() < 2 {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        })
        .data()
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One client's session: the shared catalogs, runtime and memory pool, and
/// its own copy of the settings, so `SET datafusion.*` stays in the session.
pub fn client_context(shared: &SessionContext) -> SessionContext {
    SessionContext::new_with_state(SessionStateBuilder::new_from_existing(shared.state()).build())
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

/// The runtime plain-SQL queries run on, apart from the one serving the wire
/// protocol: a query that computes without yielding cannot starve the
/// server's other clients, or its own session's `statement_timeout`.
fn query_runtime() -> &'static Handle {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("sluice-query")
                .enable_all()
                .build()
                .expect("the query runtime starts")
        })
        .handle()
}

/// Polls a future with the query runtime as the current one, so the tasks
/// DataFusion spawns while planning and starting a query run there.
struct OnQueryRuntime<F: Future>(Pin<Box<F>>);

impl<F: Future> Future for OnQueryRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _entered = query_runtime().enter();
        self.0.as_mut().poll(cx)
    }
}

/// Runs plain-SQL statements (planning, and then streaming their rows) until
/// `deadline`; past it the statement is cancelled with 57014 and its
/// resources are freed. Errors while streaming get their SQLSTATE too.
pub async fn run_until<F>(deadline: Option<Instant>, statements: F) -> PgWireResult<Vec<Response>>
where
    F: Future<Output = PgWireResult<Vec<Response>>>,
{
    let statements = OnQueryRuntime(Box::pin(statements));
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

/// Rows handed from the query runtime to the session at once, at most:
/// the rows the encoder has ready go together, so that a large result
/// costs one message (and wake-up) per chunk rather than per row.
const ROWS_PER_CHUNK: usize = 64;

/// Chunks computed ahead of the client, per statement.
const CHUNKS_AHEAD: usize = 4;

/// Computes the rows of `response` on the query runtime, ends them at
/// `deadline` and maps their errors.
fn until(deadline: Option<Instant>, response: Response) -> Response {
    let Response::Query(query) = response else {
        return response;
    };
    let (command_tag, row_schema, data_rows) = (query.command_tag, query.row_schema, query.data_rows);
    let (sender, receiver) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
    let computing = {
        let _entered = query_runtime().enter();
        // Aborted when dropped: when the client goes or the deadline passes.
        SpawnedTask::spawn(async move {
            let mut chunks = data_rows.ready_chunks(ROWS_PER_CHUNK);
            while let Some(chunk) = chunks.next().await {
                if sender.send(chunk).await.is_err() {
                    break;
                }
            }
        })
    };
    let start = (receiver, computing, Vec::new().into_iter());
    let rows = futures::stream::unfold(Some(start), move |state| async move {
        let (mut receiver, computing, mut ready) = state?;
        loop {
            match ready.next() {
                Some(Ok(row)) => return Some((Ok(row), Some((receiver, computing, ready)))),
                Some(Err(e)) => return Some((Err(map_session_error(e)), None)),
                None => {}
            }
            let next = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, receiver.recv()).await,
                None => Ok(receiver.recv().await),
            };
            match next {
                Ok(Some(chunk)) => ready = chunk.into_iter(),
                Ok(None) => return None,
                Err(_) => return Some((Err(timed_out()), None)),
            }
        }
    });
    let row_schema = Arc::new(type_modifiers::describe(row_schema.as_ref().clone(), None));
    let mut wrapped = QueryResponse::new(row_schema, rows);
    wrapped.set_command_tag(&command_tag);
    Response::Query(wrapped)
}
