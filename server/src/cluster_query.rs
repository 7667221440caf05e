//! `SET sluice.execution = 'cluster'`: a session's queries over warehouse
//! tables run on the server's cluster (docs/cluster.md). The query is
//! planned here as any other; when it reads tables, every one must be a
//! warehouse table in the bucket (each goes as the version this plan
//! read), and the plan is sent to the scheduler; executors read the
//! tables' files and the rows stream back to the client. A query that
//! reads no table (`SELECT version()`) runs here. The hook comes after the guard and the
//! privilege hooks, so what they refuse never reaches the cluster.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use futures::StreamExt;
use pgwire::api::ClientInfo;
use pgwire::api::portal::Format;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;
use sluice_engine::EngineError;
use sluice_engine::destinations::TableShare;
use sluice_engine::jobs::JobManager;

use crate::errors::StatementError;
use crate::session_settings::SessionSettings;

/// The setting, and its value that sends queries to the cluster.
pub const EXECUTION_SETTING: &str = "sluice.execution";
pub const ON_CLUSTER: &str = "cluster";

/// The result format of the portal being executed (the extended protocol
/// gives hooks no portal): the handler sets it, the hook takes it.
#[derive(Default)]
pub struct PortalFormat(Mutex<Option<Format>>);

impl PortalFormat {
    pub fn set(&self, format: Format) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(format);
    }

    fn take(&self) -> Format {
        (self.0.lock().unwrap_or_else(|p| p.into_inner()).take()).unwrap_or(Format::UnifiedText)
    }
}

/// Runs a session's queries on the cluster when its setting says so.
pub struct ClusterQueryHook {
    settings: SessionSettings,
    jobs: Arc<JobManager>,
    format: Arc<PortalFormat>,
}

impl ClusterQueryHook {
    pub fn new(settings: SessionSettings, jobs: Arc<JobManager>, format: Arc<PortalFormat>) -> Self {
        Self { settings, jobs, format }
    }

    /// Whether `statement` is a query this session sends to the cluster.
    fn takes(&self, statement: &Statement) -> bool {
        let on_cluster = (self.settings.get(EXECUTION_SETTING)).is_ok_and(|(_, value)| value == ON_CLUSTER);
        on_cluster && matches!(statement, Statement::Query(_))
    }

    /// Sends `plan` to the cluster, its rows in `format` and the session's
    /// `styles`, when it reads warehouse tables; `None` for a plan that
    /// reads none (`SELECT version()`, `sluice.jobs`), which runs here.
    async fn run(
        &self,
        plan: LogicalPlan,
        ctx: &SessionContext,
        format: &Format,
        styles: Arc<FormatOptions>,
    ) -> Option<Result<Response, StatementError>> {
        match reads_warehouse_tables(&plan) {
            Ok(false) => None,
            Ok(true) => Some(self.send(plan, ctx, format, styles).await),
            Err(e) => Some(Err(e)),
        }
    }

    /// Sends `plan`, analysed and optimised in the session as a query run
    /// here is (its `timestamptz` results in the session's zone), with
    /// the session's options.
    async fn send(
        &self,
        plan: LogicalPlan,
        ctx: &SessionContext,
        format: &Format,
        styles: Arc<FormatOptions>,
    ) -> Result<Response, StatementError> {
        let cluster = self.jobs.cluster().ok_or_else(|| {
            StatementError::Unsupported(
                "this server has no cluster (start it with --cluster df://scheduler:50050); \
                 SET sluice.execution = 'local' to query here"
                    .into(),
            )
        })?;
        let state = ctx.state();
        let plan = state.optimize(&plan).map_err(StatementError::DataFusion)?;
        let rows = cluster.query(plan, state.config_options()).await.map_err(|message| {
            StatementError::Engine(EngineError::Cluster {
                scheduler: cluster.scheduler().to_owned(),
                message,
            })
        })?;
        let fields = Arc::new(
            arrow_pg::datatypes::arrow_schema_to_pg_fields(&rows.schema(), format, Some(styles))
                .map_err(|e| StatementError::Internal(e.to_string()))?,
        );
        let encoded = fields.clone();
        let rows = rows
            .map(
                move |batch| -> Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> {
                    match batch {
                        Ok(batch) => arrow_pg::datatypes::encode_recordbatch(encoded.clone(), batch),
                        Err(e) => Box::new(std::iter::once(Err(PgWireError::ApiError(Box::new(e))))),
                    }
                },
            )
            .flat_map(futures::stream::iter);
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

/// Whether `plan` goes to the cluster: it reads warehouse tables, all in
/// the bucket, and no other table. A plan reading no warehouse table runs
/// here; one reading a table of a warehouse in a local directory, or
/// mixing warehouse tables with others, is refused, naming the table.
fn reads_warehouse_tables(plan: &LogicalPlan) -> Result<bool, StatementError> {
    let (mut shared, mut local, mut other) = (0, None, None);
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.to_string();
            match source_as_provider(&scan.source) {
                Ok(table) if TableShare::of(table.as_ref()).is_some() => shared += 1,
                Ok(table) if TableShare::is_warehouse_table(table.as_ref()) => local = Some(name),
                _ => other = other.take().or(Some(name)),
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(StatementError::DataFusion)?;
    let refused = |reason: String| {
        Err(StatementError::Unsupported(format!(
            "{reason}; SET sluice.execution = 'local' to run the query on this server"
        )))
    };
    match (shared, local, other) {
        (_, Some(table), _) => refused(format!(
            "{table} is in a warehouse in a local directory, which a cluster cannot read: only warehouse tables \
             in a bucket can be queried on the cluster"
        )),
        (0, None, _) => Ok(false),
        (_, None, Some(table)) => refused(format!(
            "a query on the cluster reads only warehouse tables in a bucket, and {table} is not one"
        )),
        (_, None, None) => Ok(true),
    }
}

/// The session's text styles (`DateStyle`, `IntervalStyle`, ...), which
/// rows run here are written in too.
fn styles(client: &dyn HookClient) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
}

fn wire_error(error: StatementError) -> PgWireError {
    PgWireError::UserError(Box::new(error.into_error_info(0)))
}

#[async_trait]
impl QueryHook for ClusterQueryHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !self.takes(statement) {
            return None;
        }
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(statement.clone()));
        let planned = ctx.state().statement_to_plan(statement).await;
        let response = match planned {
            Ok(plan) => self.run(plan, ctx, &Format::UnifiedText, styles(client)).await?,
            Err(e) => Err(StatementError::DataFusion(e)),
        };
        Some(response.map_err(wire_error))
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let format = self.format.take();
        if !self.takes(statement) {
            return None;
        }
        let response = match plan.clone().replace_params_with_values(params) {
            Ok(plan) => self.run(plan, ctx, &format, styles(client)).await?,
            Err(e) => Err(StatementError::DataFusion(e)),
        };
        Some(response.map_err(wire_error))
    }
}
