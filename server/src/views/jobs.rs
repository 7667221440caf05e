//! Views of ETL jobs and runs: `SHOW ETL JOBS` / `sluice.jobs`,
//! `SHOW ETL RUNS` / `sluice.runs`, `SHOW CREATE ETL JOB`, `RUN ETL JOB`.

use std::sync::{Arc, LazyLock};

use chrono::Utc;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, IntervalMonthDayNanoArray, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, IntervalMonthDayNano, IntervalUnit, Schema, SchemaRef};
use sluice_catalog::{
    Catalog, CatalogError, CdcState, CommitGuard, ConnectionStatus, IncrementalStart, JobFacts, JobRecord, LoadType,
    OptionValue, RunRecord, RunStatus, SchemaChangePolicy, SchemaChangeRecord, VerifySchedule,
};
use sluice_engine::contract::{Shipped, option_sql};
use sluice_engine::jobs::{
    Health, LiveRun, bytes_text, consecutive_failures, freshness, is_stale, labels_text, table_ops_today,
};
use sluice_engine::scheduler;

use crate::statements::lookback_sql;

use super::{Ident, batch, quote_ident, schema_change_notice, strings, text, timestamps, timestamptz};

/// `sluice.jobs` and `SHOW ETL JOBS`.
pub static JOBS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("name"),
        text("source"),
        text("destination"),
        text("load"),
        text("schedule"),
        Field::new("paused", DataType::Boolean, false),
        text("watermark"),
        text("last_run_status"),
        timestamptz("last_run_at"),
        timestamptz("created_at"),
        timestamptz("next_run_at"),
        text("health"),
        Field::new("consecutive_failures", DataType::Int64, false),
        text("last_error"),
        Field::new("max_retries", DataType::Int64, false),
        text("catch_up"),
        Field::new("bq_table_ops_today", DataType::Int64, true),
        text("labels"),
        Field::new("freshness", DataType::Interval(IntervalUnit::MonthDayNano), true),
        Field::new("freshness_target", DataType::Interval(IntervalUnit::MonthDayNano), true),
        Field::new("lag_bytes", DataType::Int64, true),
        Field::new("lag_seconds", DataType::Float64, true),
        Field::new("cdc_state", DataType::Utf8, true),
    ]))
});

/// A duration as an `interval` value (hours, minutes and seconds).
fn interval(duration: chrono::Duration) -> IntervalMonthDayNano {
    IntervalMonthDayNano::new(0, 0, duration.num_microseconds().unwrap_or(i64::MAX) * 1000)
}

fn load_sql(load: &LoadType) -> String {
    match load {
        LoadType::Snapshot => "SNAPSHOT".into(),
        LoadType::Cdc { mode } => format!("CDC {}", sluice_engine::jobs::cdc_mode_sql(*mode)),
        LoadType::Incremental {
            cursor,
            start,
            lookback,
        } => {
            let start = match start {
                IncrementalStart::BackfillDays(days) => format!("BACKFILL {days} DAYS"),
                IncrementalStart::Since(value) => format!("SINCE '{}'", value.replace('\'', "''")),
                IncrementalStart::All => "ALL".into(),
            };
            let mut sql = format!("INCREMENTAL BY {} {start}", Ident(cursor));
            if let Some(lookback) = lookback {
                sql.push(' ');
                sql.push_str(&lookback_sql(lookback, quote_ident));
            }
            sql
        }
    }
}

fn source_sql(job: &JobRecord) -> String {
    let s = &job.source;
    format!("{}.{}.{}", Ident(&s.connection), Ident(&s.schema), Ident(&s.table))
}

fn destination_sql(job: &JobRecord) -> String {
    let connection = job.destination.connection.as_deref().unwrap_or("warehouse");
    format!("{}.{}", Ident(connection), Ident(&job.destination.table))
}

/// The rows of `sluice.jobs`: every job, or those named in `only`.
pub fn jobs(catalog: &Catalog, only: Option<&[String]>) -> Result<RecordBatch, CatalogError> {
    let views = match only {
        None => catalog.job_views()?,
        Some(names) => catalog.job_views_named(names)?,
    };
    let jobs: Vec<&JobRecord> = views.iter().map(|v| v.job.as_ref()).collect();
    let facts: Vec<&JobFacts> = views.iter().map(|v| v.facts.as_ref()).collect();
    let last: Vec<Option<&RunRecord>> = facts.iter().map(|f| f.runs.last()).collect();
    let last_error: Vec<Option<&str>> = facts
        .iter()
        .map(|f| {
            f.runs
                .iter()
                .rev()
                .find(|r| r.status != RunStatus::Skipped)
                .filter(|r| r.status == RunStatus::Failed)
                .and_then(|r| r.error.as_deref())
        })
        .collect();
    let connections = catalog.connections()?;
    let failed_connections: Vec<String> = connections
        .iter()
        .filter(|c| c.status == ConnectionStatus::Failed)
        .map(|c| c.name.clone())
        .collect();
    let now = Utc::now();
    let table_ops = jobs
        .iter()
        .map(|j| table_ops_today(catalog, j, now))
        .collect::<Result<Vec<_>, CatalogError>>()?;
    let freshness: Vec<Option<chrono::Duration>> = jobs
        .iter()
        .zip(&facts)
        .map(|(job, f)| freshness(job, f.watermark.as_ref(), &f.runs, f.cdc.as_ref(), now))
        .collect();
    let health: Vec<Health> = jobs
        .iter()
        .zip(&facts)
        .zip(&table_ops)
        .zip(&freshness)
        .map(|(((job, f), ops), age)| {
            let needs_resync = f.cdc.as_ref().is_some_and(CdcState::needs_resync);
            let stale = is_stale(job, *age, now);
            Health::of(job, &f.runs, &failed_connections, stale, *ops, needs_resync)
        })
        .collect();
    let mut schedules = scheduler::ParsedSchedules::default();
    let next_runs: Vec<_> = jobs
        .iter()
        .zip(&facts)
        .map(|(j, f)| scheduler::next_run_at(j, f.schedule.as_ref(), now, &mut schedules))
        .collect();
    let labels: Vec<String> = jobs.iter().map(|j| labels_text(&j.labels)).collect();
    let sources: Vec<String> = jobs.iter().map(|j| source_sql(j)).collect();
    let destinations: Vec<String> = jobs.iter().map(|j| destination_sql(j)).collect();
    let loads: Vec<String> = jobs.iter().map(|j| load_sql(&j.load)).collect();
    let lag_bytes: Int64Array = facts
        .iter()
        .map(|f| f.cdc.as_ref().and_then(|s| s.lag_bytes).map(|b| b as i64))
        .collect();
    let lag_seconds: Float64Array = facts
        .iter()
        .map(|f| f.cdc.as_ref().and_then(|s| s.lag_seconds_at(now)))
        .collect();
    Ok(batch(
        &JOBS,
        vec![
            strings(jobs.iter().map(|j| Some(j.name.as_str()))),
            strings(sources.iter().map(|s| Some(s.as_str()))),
            strings(destinations.iter().map(|s| Some(s.as_str()))),
            strings(loads.iter().map(|s| Some(s.as_str()))),
            strings(jobs.iter().map(|j| Some(j.schedule.as_str()))),
            Arc::new(jobs.iter().map(|j| Some(j.paused)).collect::<BooleanArray>()),
            strings(facts.iter().map(|f| f.watermark.as_ref().map(|w| w.value.as_str()))),
            strings(last.iter().map(|r| r.map(|r| r.status.as_str()))),
            timestamps(last.iter().map(|r| r.map(|r| r.started_at))),
            timestamps(jobs.iter().map(|j| Some(j.created_at))),
            timestamps(next_runs.iter().copied()),
            strings(health.iter().map(|h| Some(h.as_str()))),
            Arc::new(
                facts
                    .iter()
                    .map(|f| Some(i64::from(consecutive_failures(&f.runs))))
                    .collect::<Int64Array>(),
            ),
            strings(last_error.iter().copied()),
            Arc::new(
                jobs.iter()
                    .map(|j| Some(i64::from(j.max_retries)))
                    .collect::<Int64Array>(),
            ),
            strings(jobs.iter().map(|j| Some(j.catch_up.as_str()))),
            Arc::new(
                table_ops
                    .iter()
                    .map(|ops| ops.map(|ops| ops.spent as i64))
                    .collect::<Int64Array>(),
            ),
            strings(labels.iter().map(|l| Some(l.as_str()))),
            Arc::new(
                freshness
                    .iter()
                    .map(|age| age.map(interval))
                    .collect::<IntervalMonthDayNanoArray>(),
            ),
            Arc::new(
                jobs.iter()
                    .map(|j| {
                        j.freshness_target_seconds
                            .map(|s| interval(chrono::Duration::seconds(s as i64)))
                    })
                    .collect::<IntervalMonthDayNanoArray>(),
            ),
            Arc::new(lag_bytes),
            Arc::new(lag_seconds),
            strings(facts.iter().map(|f| f.cdc.as_ref().map(|s| s.phase_name()))),
        ],
    ))
}

/// `sluice.runs` and `SHOW ETL RUNS`.
pub static RUNS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Int64, false),
        text("job"),
        text("status"),
        text("trigger"),
        timestamptz("started_at"),
        timestamptz("finished_at"),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        text("watermark_from"),
        text("watermark_to"),
        text("error"),
        text("phase"),
        Field::new("rows_per_second", DataType::Float64, true),
        Field::new("eta_seconds", DataType::Float64, true),
        Field::new("bytes_uploaded", DataType::Int64, true),
        Field::new("load_jobs_done", DataType::Int64, true),
        Field::new("load_jobs_total", DataType::Int64, true),
        text("sqlstate"),
        text("guard_cap"),
        text("guard_reason"),
        text("guard_warning"),
        text("notices"),
        Field::new("tasks_done", DataType::Int64, true),
        Field::new("tasks_total", DataType::Int64, true),
        text("executors"),
    ]))
});

/// The warnings a run sends as NOTICEs to the session that ran it: the
/// commit guard's and each source schema change it followed. They stay in
/// `sluice.runs.notices` for runs no session waited for (ASYNC, scheduled).
pub fn run_notices(run: &RunRecord, changes: &[SchemaChangeRecord]) -> Vec<String> {
    let guard = run.guard_warning.iter().map(|w| format!("commit guard: {w}"));
    let schema = changes
        .iter()
        .filter(|c| c.run_id == run.id && c.job == run.job)
        .map(schema_change_notice);
    guard.chain(schema).collect()
}

/// Runs, with the live progress of those still running and the schema
/// changes they followed.
pub fn runs(runs: &[RunRecord], live: &[LiveRun], changes: &[SchemaChangeRecord]) -> RecordBatch {
    let live: Vec<Option<&LiveRun>> = runs
        .iter()
        .map(|r| live.iter().find(|l| l.run_id == r.id && r.status == RunStatus::Running))
        .collect();
    let rows = |r: &RunRecord, l: &Option<&LiveRun>| l.map_or(r.rows, |l| l.rows.max(r.rows)) as i64;
    let notices: Vec<String> = runs.iter().map(|r| run_notices(r, changes).join("\n")).collect();
    // Shipping counters: live while running, as recorded afterwards.
    let shipped = |counter: fn(&Shipped) -> Option<u64>, recorded: fn(&RunRecord) -> Option<u64>| -> ArrayRef {
        Arc::new(
            runs.iter()
                .zip(&live)
                .map(|(r, l)| match l {
                    Some(l) => l.shipped.as_ref().and_then(counter),
                    None => recorded(r),
                })
                .map(|n| n.map(|n| n as i64))
                .collect::<Int64Array>(),
        )
    };
    batch(
        &RUNS,
        vec![
            Arc::new(runs.iter().map(|r| Some(r.id as i64)).collect::<Int64Array>()),
            strings(runs.iter().map(|r| Some(r.job.as_str()))),
            strings(runs.iter().map(|r| Some(r.status.as_str()))),
            strings(runs.iter().map(|r| Some(r.trigger.as_str()))),
            timestamps(runs.iter().map(|r| Some(r.started_at))),
            timestamps(runs.iter().map(|r| r.finished_at)),
            Arc::new(
                runs.iter()
                    .zip(&live)
                    .map(|(r, l)| Some(rows(r, l)))
                    .collect::<Int64Array>(),
            ),
            Arc::new(runs.iter().map(|r| Some(r.bytes as i64)).collect::<Int64Array>()),
            strings(runs.iter().map(|r| r.watermark_from.as_deref())),
            strings(runs.iter().map(|r| r.watermark_to.as_deref())),
            strings(runs.iter().map(|r| r.error.as_deref())),
            strings(live.iter().map(|l| l.map(|l| l.phase.as_str()))),
            Arc::new(
                live.iter()
                    .map(|l| l.map(|l| l.rows_per_second))
                    .collect::<Float64Array>(),
            ),
            Arc::new(
                live.iter()
                    .map(|l| l.and_then(|l| l.eta).map(|eta| eta.as_secs_f64()))
                    .collect::<Float64Array>(),
            ),
            shipped(|s| Some(s.bytes_uploaded), |r| r.bytes_uploaded),
            shipped(|s| s.jobs.map(|j| j.done), |r| r.load_jobs_done),
            shipped(|s| s.jobs.map(|j| j.total), |r| r.load_jobs_total),
            strings(runs.iter().map(|r| r.sqlstate.as_deref())),
            strings(runs.iter().map(|r| r.guard_cap.as_deref())),
            strings(runs.iter().map(|r| r.guard_reason.as_deref())),
            strings(runs.iter().map(|r| r.guard_warning.as_deref())),
            strings(notices.iter().map(|n| Some(n.as_str()).filter(|n| !n.is_empty()))),
            Arc::new(
                runs.iter()
                    .map(|r| r.tasks_done.map(|n| n as i64))
                    .collect::<Int64Array>(),
            ),
            Arc::new(
                runs.iter()
                    .map(|r| r.tasks_total.map(|n| n as i64))
                    .collect::<Int64Array>(),
            ),
            strings(runs.iter().map(|r| r.executors.as_deref())),
        ],
    )
}

/// The one row `RUN ETL JOB` returns.
pub static RUN_SUMMARY: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Int64, false),
        text("status"),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("seconds", DataType::Float64, false),
        text("watermark_from"),
        text("watermark_to"),
    ]))
});

pub fn run_summary(run: &RunRecord) -> RecordBatch {
    let seconds = run
        .finished_at
        .map_or(0.0, |f| (f - run.started_at).num_milliseconds() as f64 / 1000.0);
    batch(
        &RUN_SUMMARY,
        vec![
            Arc::new(Int64Array::from(vec![run.id as i64])),
            strings([Some(run.status.as_str())]),
            Arc::new(Int64Array::from(vec![run.rows as i64])),
            Arc::new(Int64Array::from(vec![run.bytes as i64])),
            Arc::new(Float64Array::from(vec![seconds])),
            strings([run.watermark_from.as_deref()]),
            strings([run.watermark_to.as_deref()]),
        ],
    )
}

/// The statement that recreates a job (`SHOW CREATE ETL JOB`).
pub fn create_job_sql(job: &JobRecord) -> String {
    let mut sql = format!("CREATE ETL JOB {} FROM {}", quote_ident(&job.name), source_sql(job));
    if let Some(columns) = &job.source.columns {
        let columns: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        sql.push_str(&format!(" ({})", columns.join(", ")));
    }
    sql.push_str(&format!(" INTO {} {}", destination_sql(job), load_sql(&job.load)));
    if !job.column_overrides.is_empty() {
        let overrides: Vec<String> = job
            .column_overrides
            .iter()
            .map(|o| {
                let mode = match o.required {
                    Some(true) => " REQUIRED",
                    Some(false) => " NULLABLE",
                    None => "",
                };
                format!("{} {}{mode}", quote_ident(&o.column), o.bigquery_type)
            })
            .collect();
        sql.push_str(&format!(" COLUMNS ({})", overrides.join(", ")));
    }
    // `CONTINUOUS` stands where `SCHEDULE ...` does.
    let schedule = match job.schedule.as_str() {
        continuous @ "CONTINUOUS" => continuous.to_owned(),
        schedule => format!("SCHEDULE {schedule}"),
    };
    sql.push_str(&format!(
        " {schedule} WITH (batch_rows = {}, max_retries = {}, catch_up = '{}'",
        job.batch_rows,
        job.max_retries,
        job.catch_up.as_str()
    ));
    if let Some(parallelism) = job.parallelism {
        sql.push_str(&format!(", parallelism = {parallelism}"));
    }
    for (name, value) in job.layout.iter() {
        sql.push_str(&format!(", {name} = {}", option_sql(value)));
    }
    if job.guard != CommitGuard::default() {
        let guard = &job.guard;
        sql.push_str(&format!(
            ", commit_guard = '{}', guard_margin = '{} seconds', guard_max_hold = '{} seconds'",
            if guard.enabled { "on" } else { "off" },
            guard.margin_seconds,
            guard.max_hold_seconds
        ));
    }
    if job.on_schema_change != SchemaChangePolicy::default() {
        sql.push_str(&format!(", on_schema_change = '{}'", job.on_schema_change.as_str()));
    }
    if let Some(seconds) = job.freshness_target_seconds {
        sql.push_str(&format!(", freshness_target = '{seconds} seconds'"));
    }
    if !job.labels.is_empty() {
        sql.push_str(&format!(
            ", labels = '{}'",
            labels_text(&job.labels).replace('\'', "''")
        ));
    }
    if job.verify != VerifySchedule::default() {
        sql.push_str(&format!(", verify = '{}'", job.verify.as_str()));
    }
    if job.cdc.soft_delete {
        sql.push_str(", soft_delete = true");
    }
    if let Some(bytes) = job.cdc.max_retained_wal {
        sql.push_str(&format!(", max_retained_wal = '{}'", bytes_text(bytes)));
    }
    if let Some(rows) = job.cdc.flush_rows {
        sql.push_str(&format!(", flush_rows = {rows}"));
    }
    if let Some(seconds) = job.cdc.flush_interval_seconds {
        sql.push_str(&format!(", flush_interval = '{seconds} seconds'"));
    }
    if let Some(publication) = &job.cdc.publication {
        sql.push_str(&format!(", publication = '{}'", publication.replace('\'', "''")));
    }
    if let Some(id) = job.cdc.server_id {
        sql.push_str(&format!(", server_id = {id}"));
    }
    for (name, value) in &job.source_settings {
        let value = match value {
            OptionValue::Text(text) => format!("'{}'", text.replace('\'', "''")),
            OptionValue::Integer(n) => n.to_string(),
            OptionValue::Bool(b) => b.to_string(),
            OptionValue::Secret { .. } => continue,
        };
        sql.push_str(&format!(", {name} = {value}"));
    }
    sql.push_str(");");
    sql
}

/// The result of `SHOW CREATE ETL JOB`.
pub static CREATE_JOB: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(vec![text("job"), text("create_statement")])));

pub fn create_job(job: &JobRecord) -> RecordBatch {
    let sql = create_job_sql(job);
    batch(
        &CREATE_JOB,
        vec![strings([Some(job.name.as_str())]), strings([Some(sql.as_str())])],
    )
}
