//! Executing Sluice statements against the engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::PgWireResult;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::NoticeResponse;
use pgwire::types::format::FormatOptions;
use sluice_catalog::{ConnectionStatus, RunRecord, RunTrigger, SecretContent};
use sluice_engine::contract::TableRef;
use sluice_engine::jobs::{
    CreateJobOutcome, JobChange, JobDropped, LiveRun, PlanAction, Progress, table_ops_today, table_ops_warning,
};
use sluice_engine::{AlterConnection, CreateConnection, CreateOutcome};
use tracing::info;

use crate::errors::{StatementError, notice};
use crate::namespace::Namespace;
use crate::namespaces::Namespaces;
use crate::state::AppState;
use crate::statements::SluiceStatement;
use crate::views;

/// Rows read to show sample values and detect types stored as text.
const DESCRIBE_SAMPLE_ROWS: usize = 100;

/// The columns a statement returns, or `None` for a command with a tag only.
pub fn result_schema(statement: &SluiceStatement) -> Option<SchemaRef> {
    match statement {
        SluiceStatement::ShowSecrets => Some(views::SECRETS.clone()),
        SluiceStatement::ShowConnections => Some(views::CONNECTIONS.clone()),
        SluiceStatement::ShowConnectionTypes => Some(views::CONNECTION_TYPES.clone()),
        SluiceStatement::ShowCreateConnection { .. } => Some(views::CREATE_STATEMENT.clone()),
        SluiceStatement::TestConnection { .. } | SluiceStatement::TestConnections => Some(views::TEST_RESULTS.clone()),
        SluiceStatement::ShowSchemas { .. } => Some(views::SCHEMAS.clone()),
        SluiceStatement::ShowTables { .. } => Some(views::TABLES.clone()),
        SluiceStatement::DescribeSourceTable { .. } => Some(views::DESCRIBE.clone()),
        SluiceStatement::RunJob { .. } => Some(views::RUN_SUMMARY.clone()),
        SluiceStatement::CancelRun { .. } | SluiceStatement::CancelJob { .. } => None,
        SluiceStatement::ShowJobs => Some(views::JOBS.clone()),
        SluiceStatement::ShowRuns { .. } => Some(views::RUNS.clone()),
        SluiceStatement::ShowCreateJob { .. } => Some(views::CREATE_JOB.clone()),
        SluiceStatement::ExplainJob { .. } => Some(views::EXPLAIN.clone()),
        SluiceStatement::VerifyJob { .. } => Some(views::VERIFY.clone()),
        SluiceStatement::RepairJob { .. } | SluiceStatement::ResyncJob { .. } => Some(views::RUN_SUMMARY.clone()),
        SluiceStatement::CreateJobs(_) => Some(views::PLANNED_JOBS.clone()),
        SluiceStatement::AlterJobs { .. } => Some(views::CHANGED_JOBS.clone()),
        SluiceStatement::RunJobs { .. } => Some(views::JOB_RUNS.clone()),
        SluiceStatement::ShowCreateAll { .. } => Some(views::SCRIPT.clone()),
        SluiceStatement::ShowAlerts => Some(views::ALERTS.clone()),
        SluiceStatement::CreateAlert(_) | SluiceStatement::DropAlert { .. } => None,
        SluiceStatement::CreateRole { .. }
        | SluiceStatement::AlterRole { .. }
        | SluiceStatement::DropRole { .. }
        | SluiceStatement::Grant(_)
        | SluiceStatement::Revoke(_)
        | SluiceStatement::CreateDatabase { .. }
        | SluiceStatement::DropDatabase { .. } => None,
        SluiceStatement::CreateJob(_)
        | SluiceStatement::CreateOrReplaceJob(_)
        | SluiceStatement::DropJob { .. }
        | SluiceStatement::AlterJob { .. }
        | SluiceStatement::EditJob { .. } => None,
        SluiceStatement::CreateSecret { .. }
        | SluiceStatement::CreateSecretFrom { .. }
        | SluiceStatement::DropSecret { .. }
        | SluiceStatement::AlterSecret { .. }
        | SluiceStatement::CreateConnection { .. }
        | SluiceStatement::AlterConnection { .. }
        | SluiceStatement::DropConnection { .. } => None,
    }
}

/// The wire description of a statement's result columns.
pub fn result_fields(statement: &SluiceStatement, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    match result_schema(statement) {
        Some(schema) => arrow_schema_to_pg_fields(&schema, format, None),
        None => Ok(vec![]),
    }
}

/// Runs one statement. NOTICEs go to `client` as they happen.
pub async fn execute(
    state: &AppState,
    namespace: &Namespace,
    client: &mut dyn HookClient,
    statement: SluiceStatement,
    format: &Format,
) -> Result<Response, StatementError> {
    let engine = &namespace.connections;
    let catalog = engine.catalog();
    let wire = Wire {
        format,
        options: Arc::new(FormatOptions::from_client_metadata(client.metadata())),
    };
    Ok(match statement {
        SluiceStatement::CreateSecret {
            name,
            value,
            or_replace: true,
            ..
        } => {
            if catalog.replace_secret(&name, &value)? {
                info!(secret = %name, "secret created or replaced");
            } else {
                send_notice(client, "00000", format!("secret \"{name}\" is unchanged")).await;
            }
            Response::Execution(Tag::new("CREATE SECRET"))
        }
        SluiceStatement::CreateSecret {
            name,
            value,
            if_not_exists,
            ..
        } => {
            if catalog.create_secret(&name, &value, if_not_exists)? {
                info!(secret = %name, "secret created");
            } else {
                send_notice(client, "42710", format!("secret \"{name}\" already exists, skipping")).await;
            }
            Response::Execution(Tag::new("CREATE SECRET"))
        }
        SluiceStatement::CreateSecretFrom {
            name,
            external,
            if_not_exists,
            or_replace,
        } => {
            engine.check_external_secret(&external)?;
            let content = SecretContent::External(external);
            if or_replace {
                if catalog.replace_secret_with(&name, &content)? {
                    info!(secret = %name, "secret created or replaced");
                } else {
                    send_notice(client, "00000", format!("secret \"{name}\" is unchanged")).await;
                }
            } else if catalog.create_secret_with(&name, &content, if_not_exists)? {
                info!(secret = %name, "secret created");
            } else {
                send_notice(client, "42710", format!("secret \"{name}\" already exists, skipping")).await;
            }
            Response::Execution(Tag::new("CREATE SECRET"))
        }
        SluiceStatement::AlterSecret { name, value } => {
            for (outcome, failure) in engine.alter_secret(&name, &value).await? {
                match failure {
                    None => {
                        let message = format!(
                            "connection \"{}\" works with the new value of secret \"{name}\"",
                            outcome.name
                        );
                        send_notice(client, "00000", message).await;
                    }
                    Some(failure) => send_notice(client, "01000", failure.to_string()).await,
                }
            }
            Response::Execution(Tag::new("ALTER SECRET"))
        }
        SluiceStatement::DropSecret { name, if_exists } => {
            if catalog.drop_secret(&name, if_exists)? {
                info!(secret = %name, "secret dropped");
            } else {
                send_notice(client, "00000", format!("secret \"{name}\" does not exist, skipping")).await;
            }
            Response::Execution(Tag::new("DROP SECRET"))
        }
        SluiceStatement::ShowSecrets => rows(views::secrets(catalog)?, &wire)?,
        SluiceStatement::CreateAlert(request) => {
            let name = request.name.clone();
            if sluice_engine::alerts::create_alert(catalog, *request)? {
                info!(alert = %name, "alert created");
            } else {
                send_notice(client, "42710", format!("alert \"{name}\" already exists, skipping")).await;
            }
            Response::Execution(Tag::new("CREATE ALERT"))
        }
        SluiceStatement::DropAlert { name, if_exists } => {
            if catalog.drop_alert(&name, if_exists)? {
                info!(alert = %name, "alert dropped");
            } else {
                send_notice(client, "00000", format!("alert \"{name}\" does not exist, skipping")).await;
            }
            Response::Execution(Tag::new("DROP ALERT"))
        }
        SluiceStatement::ShowAlerts => rows(views::alerts(catalog)?, &wire)?,
        SluiceStatement::CreateRole { name, options } => {
            namespace.access.roles().create(&name, options)?;
            Response::Execution(Tag::new("CREATE ROLE"))
        }
        SluiceStatement::AlterRole { name, change } => {
            namespace.access.roles().alter(&name, change)?;
            Response::Execution(Tag::new("ALTER ROLE"))
        }
        SluiceStatement::DropRole { name, if_exists } => {
            if !namespace.access.roles().drop_role(&name, if_exists)? {
                send_notice(client, "00000", format!("role \"{name}\" does not exist, skipping")).await;
            }
            Response::Execution(Tag::new("DROP ROLE"))
        }
        SluiceStatement::Grant(grant) => {
            for notice in namespace.access.roles().grant(grant, false)? {
                send_notice(client, "01007", notice).await;
            }
            Response::Execution(Tag::new("GRANT"))
        }
        SluiceStatement::Revoke(grant) => {
            for notice in namespace.access.roles().grant(grant, true)? {
                send_notice(client, "01006", notice).await;
            }
            Response::Execution(Tag::new("REVOKE"))
        }
        SluiceStatement::CreateDatabase { name, if_not_exists } => {
            if !state.namespaces.create(&name, if_not_exists).await? {
                send_notice(client, "42P04", format!("database \"{name}\" already exists, skipping")).await;
            }
            Response::Execution(Tag::new("CREATE DATABASE"))
        }
        SluiceStatement::DropDatabase {
            name,
            if_exists,
            cascade,
        } => {
            let namespaces = &state.namespaces;
            if !Namespaces::drop(namespaces, &name, if_exists, cascade, &namespace.name).await? {
                send_notice(client, "00000", format!("database \"{name}\" does not exist, skipping")).await;
            }
            Response::Execution(Tag::new("DROP DATABASE"))
        }
        SluiceStatement::CreateConnection {
            name,
            type_name,
            options,
            if_not_exists,
            or_replace,
            validate,
        } => {
            let request = CreateConnection {
                name: name.clone(),
                type_name,
                options,
                if_not_exists,
                validate,
            };
            let outcome = if or_replace {
                engine.create_or_replace(request).await?
            } else {
                engine.create(request).await?
            };
            match outcome {
                CreateOutcome::Created {
                    status: ConnectionStatus::Unknown,
                } => {
                    send_notice(
                        client,
                        "00000",
                        format!("connection \"{name}\" saved without testing (status unknown)"),
                    )
                    .await;
                }
                CreateOutcome::Created { .. } | CreateOutcome::Replaced { .. } => {}
                CreateOutcome::Unchanged => {
                    send_notice(client, "00000", format!("connection \"{name}\" is unchanged")).await;
                }
                CreateOutcome::AlreadyExists => {
                    send_notice(
                        client,
                        "42710",
                        format!("connection \"{name}\" already exists, skipping"),
                    )
                    .await;
                }
            }
            Response::Execution(Tag::new("CREATE CONNECTION"))
        }
        SluiceStatement::AlterConnection {
            name,
            set,
            reset,
            validate,
        } => {
            engine
                .alter(AlterConnection {
                    name,
                    set,
                    reset,
                    validate,
                })
                .await?;
            Response::Execution(Tag::new("ALTER CONNECTION"))
        }
        SluiceStatement::DropConnection {
            name,
            if_exists,
            cascade,
        } => {
            let outcome = namespace.jobs.drop_connection(&name, if_exists, cascade)?;
            if !outcome.dropped {
                send_notice(
                    client,
                    "00000",
                    format!("connection \"{name}\" does not exist, skipping"),
                )
                .await;
            }
            for job in outcome.dropped_jobs {
                send_notice(client, "00000", format!("drop cascades to ETL job \"{job}\"")).await;
            }
            Response::Execution(Tag::new("DROP CONNECTION"))
        }
        SluiceStatement::TestConnection { name } => {
            let outcome = engine.test(&name).await?;
            rows(views::test_results(&[outcome]), &wire)?
        }
        SluiceStatement::TestConnections => rows(views::test_results(&engine.test_all().await?), &wire)?,
        SluiceStatement::ShowConnections => rows(views::connections(catalog)?, &wire)?,
        SluiceStatement::ShowCreateConnection { name } => {
            rows(views::create_statement(&catalog.connection(&name)?), &wire)?
        }
        SluiceStatement::ShowConnectionTypes => rows(views::connection_types(), &wire)?,
        SluiceStatement::ShowSchemas { connection } => {
            rows(views::schemas(&engine.schemas(&connection).await?), &wire)?
        }
        SluiceStatement::ShowTables { connection, schema } => rows(
            views::tables(&engine.tables(&connection, schema.as_deref()).await?),
            &wire,
        )?,
        SluiceStatement::DescribeSourceTable {
            connection,
            schema,
            table,
            settings,
        } => {
            let table = TableRef { schema, name: table };
            let description = engine.describe_with(&connection, &table, &settings).await?;
            let samples = match engine
                .sample_with(&connection, &description, DESCRIBE_SAMPLE_ROWS, &settings)
                .await
            {
                Ok(samples) => samples,
                Err(e) => {
                    send_notice(client, "01000", format!("could not sample values: {e}")).await;
                    Vec::new()
                }
            };
            let key = description.primary_key();
            let key = if key.is_empty() {
                "none".to_owned()
            } else {
                format!("({})", key.join(", "))
            };
            send_notice(
                client,
                "00000",
                format!(
                    "{}: recommended load {}; primary key {key}; about {} rows",
                    description.table,
                    description.recommended_load().describe(),
                    description
                        .estimated_rows
                        .map_or("an unknown number of".to_owned(), |n| n.to_string())
                ),
            )
            .await;
            rows(views::describe(&description, &samples), &wire)?
        }
        SluiceStatement::CreateJob(request) => {
            let name = request.name.clone();
            let outcome = namespace.jobs.create_job(*request).await?;
            report_job_outcome(client, &name, outcome).await;
            Response::Execution(Tag::new("CREATE ETL JOB"))
        }
        SluiceStatement::CreateOrReplaceJob(request) => {
            let name = request.name.clone();
            let outcome = namespace.jobs.create_or_replace_job(*request).await?;
            report_job_outcome(client, &name, outcome).await;
            Response::Execution(Tag::new("CREATE ETL JOB"))
        }
        SluiceStatement::DropJob {
            name,
            if_exists,
            keep_data,
            force,
        } => {
            match namespace.jobs.drop_job(&name, if_exists, keep_data, force).await? {
                JobDropped::Dropped => {}
                JobDropped::Missing => {
                    send_notice(client, "00000", format!("ETL job \"{name}\" does not exist, skipping")).await;
                }
                JobDropped::LeftAtSource { sql } => {
                    let message = format!(
                        "ETL job \"{name}\" is dropped, but its source could not drop what the job holds there; \
                         run this at the source, or its WAL keeps growing: {sql}"
                    );
                    send_notice(client, "01000", message).await;
                }
            }
            Response::Execution(Tag::new("DROP ETL JOB"))
        }
        SluiceStatement::RunJob {
            name,
            asynchronous: false,
        } => {
            let run = run_with_progress(namespace, client, name).await?;
            let seconds = run
                .finished_at
                .map_or(0.0, |f| (f - run.started_at).num_milliseconds() as f64 / 1000.0);
            let rate = run.rows as f64 / seconds.max(0.001);
            let message = format!(
                "run {} {}: {} rows, {:.1} MB stored in {seconds:.1} s ({rate:.0} rows/s)",
                run.id,
                run.status.as_str(),
                run.rows,
                run.bytes as f64 / 1e6
            );
            send_notice(client, "00000", message).await;
            for notice in views::run_notices(&run, &catalog.schema_changes()?) {
                send_notice(client, "01000", notice).await;
            }
            if run.table_ops.is_some_and(|ops| ops > 0)
                && let Some(job) = catalog.find_job(&run.job)?
                && let Some(ops) = table_ops_today(catalog, &job, chrono::Utc::now())?
                && let Some(warning) = table_ops_warning(&job, ops)
            {
                send_notice(client, "01000", warning).await;
            }
            rows(views::run_summary(&run), &wire)?
        }
        SluiceStatement::RunJob {
            name,
            asynchronous: true,
        } => {
            let run_id = start_in_background(namespace, name).await?;
            rows(views::run_summary(&catalog.run(run_id)?), &wire)?
        }
        SluiceStatement::EditJob { name, edit } => {
            for notice in namespace.jobs.edit_job(&name, edit).await? {
                send_notice(client, "00000", notice).await;
            }
            Response::Execution(Tag::new("ALTER ETL JOB"))
        }
        SluiceStatement::AlterJob { name, change } => {
            namespace.jobs.alter_job(&name, change)?;
            Response::Execution(Tag::new("ALTER ETL JOB"))
        }
        SluiceStatement::CancelRun { run_id } => {
            namespace.jobs.cancel_run(run_id)?;
            Response::Execution(Tag::new("CANCEL ETL RUN"))
        }
        SluiceStatement::CancelJob { name } => {
            let run_id = namespace.jobs.cancel_job(&name)?;
            send_notice(client, "00000", format!("cancelled run {run_id} of ETL job \"{name}\"")).await;
            Response::Execution(Tag::new("CANCEL ETL JOB"))
        }
        SluiceStatement::ShowJobs => rows(views::jobs(catalog, None)?, &wire)?,
        SluiceStatement::ShowCreateJob { name } => rows(views::create_job(&catalog.job(&name)?), &wire)?,
        SluiceStatement::ExplainJob { name } => rows(views::explain(&namespace.jobs.explain_job(&name).await?), &wire)?,
        SluiceStatement::VerifyJob { name, within, by } => {
            let verification = namespace.jobs.verify_job(&name, &within, by).await?;
            let differing = verification.differences.len();
            let message = match differing {
                0 => format!(
                    "ETL job \"{name}\": source and destination agree in all {} buckets",
                    verification.buckets
                ),
                n => format!(
                    "ETL job \"{name}\": {n} of {} buckets differ; REPAIR ETL JOB {name} FROM ... TO ... reloads a window",
                    verification.buckets
                ),
            };
            send_notice(client, if differing == 0 { "00000" } else { "01000" }, message).await;
            rows(views::verify(&verification), &wire)?
        }
        SluiceStatement::RepairJob { name, from, to } => {
            let jobs = namespace.jobs.clone();
            let task = tokio::spawn(async move { jobs.repair_job(&name, from, to, &|_| {}).await });
            let run = task
                .await
                .map_err(|e| StatementError::Internal(format!("the repair stopped unexpectedly: {e}")))??;
            send_notice(
                client,
                "00000",
                format!(
                    "run {} {}: {} rows of the window loaded again; the watermark did not move",
                    run.id,
                    run.status.as_str(),
                    run.rows
                ),
            )
            .await;
            rows(views::run_summary(&run), &wire)?
        }
        SluiceStatement::ResyncJob { name } => {
            let jobs = namespace.jobs.clone();
            let task = tokio::spawn(async move { jobs.resync_job(&name, &|_| {}).await });
            let run = task
                .await
                .map_err(|e| StatementError::Internal(format!("the resync stopped unexpectedly: {e}")))??;
            rows(views::run_summary(&run), &wire)?
        }
        SluiceStatement::CreateJobs(request) => {
            let dry_run = request.dry_run;
            let plans = namespace.jobs.create_jobs(*request).await?;
            if !dry_run {
                for plan in &plans {
                    let message = match plan.action {
                        PlanAction::Covered => format!("{}: skipped, {}", plan.source_table, plan.reason),
                        _ => format!(
                            "created ETL job \"{}\" for {}: {}{} ({})",
                            plan.job,
                            plan.source_table,
                            plan.load,
                            plan.cursor.as_ref().map_or(String::new(), |c| format!(" BY {c}")),
                            plan.reason
                        ),
                    };
                    send_notice(client, "00000", message).await;
                    for notice in &plan.notices {
                        send_notice(client, "01000", notice.clone()).await;
                    }
                }
            }
            rows(views::planned_jobs(&plans), &wire)?
        }
        SluiceStatement::AlterJobs { selection, change } => {
            let jobs = selected_jobs(namespace, &selection).await?;
            namespace.jobs.alter_jobs(&jobs, &change).await?;
            let change = match change {
                JobChange::Pause => "paused",
                JobChange::Resume => "resumed",
                JobChange::Schedule(_) => "schedule set",
                JobChange::Set(_) => "settings set",
                JobChange::Watermark(_) => "watermark set",
            };
            rows(views::changed_jobs(&jobs, change), &wire)?
        }
        SluiceStatement::ShowCreateAll { with_state } => rows(views::create_all(catalog, with_state)?, &wire)?,
        SluiceStatement::RunJobs { selection } => {
            let jobs = selected_jobs(namespace, &selection).await?;
            rows(views::job_runs(&run_all(namespace, jobs).await), &wire)?
        }
        SluiceStatement::ShowRuns { job } => {
            if let Some(job) = &job {
                catalog.job(job)?;
            }
            rows(
                views::runs(
                    &catalog.runs(job.as_deref())?,
                    &namespace.jobs.live_runs(),
                    &catalog.schema_changes()?,
                ),
                &wire,
            )?
        }
    })
}

/// The names of the jobs whose `sluice.jobs` row meets `condition`.
async fn selected_jobs(namespace: &Namespace, condition: &str) -> Result<Vec<String>, StatementError> {
    let query = format!("SELECT name FROM sluice.jobs WHERE {condition} ORDER BY name");
    let batches = namespace.ctx.sql(&query).await?.collect().await?;
    let mut names = Vec::new();
    for batch in batches {
        let column = datafusion::arrow::compute::cast(batch.column(0), &datafusion::arrow::datatypes::DataType::Utf8)
            .map_err(datafusion::error::DataFusionError::from)?;
        names.extend(column.as_string::<i32>().iter().flatten().map(str::to_owned));
    }
    Ok(names)
}

/// Jobs run at once by `RUN ETL JOBS`.
const BULK_RUNS_AT_ONCE: usize = 4;

/// Runs `jobs`, a few at a time, each in a task of its own (closing the
/// session does not stop them); each job's finished run or why it did not
/// run, in the order of `jobs`.
async fn run_all(namespace: &Namespace, jobs: Vec<String>) -> Vec<(String, Result<RunRecord, String>)> {
    use futures::StreamExt;
    futures::stream::iter(jobs)
        .map(|job| {
            let manager = namespace.jobs.clone();
            async move {
                let name = job.clone();
                let task = tokio::spawn(async move { manager.run_job(&name, RunTrigger::Manual, &|_| {}).await });
                let outcome = match task.await {
                    Ok(Ok(run)) => Ok(run),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("the run stopped unexpectedly: {e}")),
                };
                (job, outcome)
            }
        })
        .buffered(BULK_RUNS_AT_ONCE)
        .collect()
        .await
}

/// NOTICEs for what `CREATE [OR REPLACE] ETL JOB` did.
async fn report_job_outcome(client: &mut dyn HookClient, name: &str, outcome: CreateJobOutcome) {
    match outcome {
        CreateJobOutcome::AlreadyExists => {
            send_notice(client, "42710", format!("ETL job \"{name}\" already exists, skipping")).await;
        }
        CreateJobOutcome::Created { notices } => {
            for message in notices {
                send_notice(client, "01000", message).await;
            }
        }
        CreateJobOutcome::Replaced { notices } => {
            for message in notices {
                send_notice(client, "00000", message).await;
            }
        }
        CreateJobOutcome::Unchanged => {
            send_notice(client, "00000", format!("ETL job \"{name}\" is unchanged")).await;
        }
    }
}

/// Starts a run that goes on after the statement returns; returns its id.
async fn start_in_background(namespace: &Namespace, name: String) -> Result<u64, StatementError> {
    let jobs = namespace.jobs.clone();
    let (started, run_id) = tokio::sync::oneshot::channel();
    let started = Mutex::new(Some(started));
    let mut task = tokio::spawn(async move {
        let report = move |p: Progress| {
            if let Some(started) = started.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = started.send(p.run_id);
            }
        };
        jobs.run_job(&name, RunTrigger::Manual, &report).await
    });
    tokio::select! {
        id = run_id => id.map_err(|_| StatementError::Internal("the run ended before it started".into())),
        finished = &mut task => Err(match finished {
            Ok(Err(e)) => e.into(),
            Ok(Ok(run)) => return Ok(run.id),
            Err(e) => StatementError::Internal(format!("the run stopped unexpectedly: {e}")),
        }),
    }
}

/// How often `RUN ETL JOB` reports progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Runs a job in a task of its own (closing the session does not stop it),
/// sending a NOTICE with rows and rows/s every second.
async fn run_with_progress(
    namespace: &Namespace,
    client: &mut dyn HookClient,
    name: String,
) -> Result<RunRecord, StatementError> {
    let jobs = namespace.jobs.clone();
    let latest = Arc::new(Mutex::new(None::<Progress>));
    let sink = latest.clone();
    let mut task = tokio::spawn(async move {
        let report = move |p: Progress| *sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        jobs.run_job(&name, RunTrigger::Manual, &report).await
    });
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    ticker.tick().await;
    loop {
        tokio::select! {
            finished = &mut task => {
                return finished.map_err(|e| StatementError::Internal(format!("the run stopped unexpectedly: {e}")))?
                    .map_err(StatementError::from);
            }
            _ = ticker.tick() => {
                let progress = *latest.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(p) = progress {
                    let live = namespace.jobs.live_runs().into_iter().find(|l| l.run_id == p.run_id);
                    send_notice(client, "00000", progress_message(p, live.as_ref())).await;
                }
            }
        }
    }
}

/// A progress NOTICE: rows, MB read (and files read of all, from file
/// sources) and rate, and where the destination
/// reports them, the phase, bytes uploaded and load jobs done out of
/// submitted.
fn progress_message(p: Progress, live: Option<&LiveRun>) -> String {
    let (rows, elapsed) = live.map_or((p.rows, p.elapsed), |l| (l.rows.max(p.rows), l.elapsed));
    let seconds = elapsed.as_secs_f64().max(0.001);
    let mut read = live.map_or(String::new(), |l| format!(", {:.1} MB read", l.bytes_read as f64 / 1e6));
    if let Some(files) = live.and_then(|l| l.files) {
        read.push_str(&format!(", files {}/{}", files.done, files.total));
    }
    let mut message = format!(
        "run {}: {rows} rows{read}, {:.0} rows/s, {seconds:.1} s",
        p.run_id,
        rows as f64 / seconds
    );
    if let Some(live) = live
        && let Some(shipped) = live.shipped
    {
        message.push_str(&format!(
            ", {}, {} bytes uploaded",
            live.phase.as_str(),
            shipped.bytes_uploaded
        ));
        if let Some(jobs) = shipped.jobs {
            message.push_str(&format!(", load jobs {}/{}", jobs.done, jobs.total));
        }
    }
    message
}

async fn send_notice(client: &mut dyn HookClient, code: &str, message: String) {
    let message = PgWireBackendMessage::NoticeResponse(NoticeResponse::from(notice(code, message)));
    // A client that went away cannot be told; the statement's effect stands.
    let _ = client.send_message(message).await;
}

/// How result rows go on the wire: each column's format, and the session's
/// text styles (`DateStyle`, `IntervalStyle`, `bytea_output`,
/// `extra_float_digits`), as plain queries' rows have them.
struct Wire<'a> {
    format: &'a Format,
    options: Arc<FormatOptions>,
}

/// A query response carrying one batch.
fn rows(batch: RecordBatch, wire: &Wire) -> Result<Response, StatementError> {
    let fields = Arc::new(
        arrow_schema_to_pg_fields(&batch.schema(), wire.format, Some(wire.options.clone()))
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?,
    );
    let encoded = encode_recordbatch(fields.clone(), batch);
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter(encoded),
    )))
}
