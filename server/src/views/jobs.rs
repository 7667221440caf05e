//! Views of ETL jobs and runs: `SHOW ETL JOBS` / `sluice.jobs`,
//! `SHOW ETL RUNS` / `sluice.runs`, `SHOW CREATE ETL JOB`, `RUN ETL JOB`.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{BooleanArray, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_catalog::{Catalog, CatalogError, IncrementalStart, JobRecord, LoadType, RunRecord};

use crate::statements::lookback_sql;

use super::{batch, quote_ident, strings, text, timestamps, timestamptz};

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
    ]))
});

fn load_sql(load: &LoadType) -> String {
    match load {
        LoadType::Snapshot => "SNAPSHOT".into(),
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
            let mut sql = format!("INCREMENTAL BY {} {start}", quote_ident(cursor));
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
    format!(
        "{}.{}.{}",
        quote_ident(&s.connection),
        quote_ident(&s.schema),
        quote_ident(&s.table)
    )
}

fn destination_sql(job: &JobRecord) -> String {
    let connection = job.destination.connection.as_deref().unwrap_or("warehouse");
    format!("{}.{}", quote_ident(connection), quote_ident(&job.destination.table))
}

pub fn jobs(catalog: &Catalog) -> Result<RecordBatch, CatalogError> {
    let jobs = catalog.jobs()?;
    let runs = catalog.runs(None)?;
    let last: Vec<Option<&RunRecord>> = jobs
        .iter()
        .map(|j| runs.iter().rev().find(|r| r.job == j.name))
        .collect();
    let watermarks = jobs
        .iter()
        .map(|j| catalog.watermark(&j.name))
        .collect::<Result<Vec<_>, _>>()?;
    let sources: Vec<String> = jobs.iter().map(source_sql).collect();
    let destinations: Vec<String> = jobs.iter().map(destination_sql).collect();
    let loads: Vec<String> = jobs.iter().map(|j| load_sql(&j.load)).collect();
    Ok(batch(
        &JOBS,
        vec![
            strings(jobs.iter().map(|j| Some(j.name.as_str()))),
            strings(sources.iter().map(|s| Some(s.as_str()))),
            strings(destinations.iter().map(|s| Some(s.as_str()))),
            strings(loads.iter().map(|s| Some(s.as_str()))),
            strings(jobs.iter().map(|j| Some(j.schedule.as_str()))),
            Arc::new(jobs.iter().map(|j| Some(j.paused)).collect::<BooleanArray>()),
            strings(watermarks.iter().map(|w| w.as_ref().map(|w| w.value.as_str()))),
            strings(last.iter().map(|r| r.map(|r| r.status.as_str()))),
            timestamps(last.iter().map(|r| r.map(|r| r.started_at))),
            timestamps(jobs.iter().map(|j| Some(j.created_at))),
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
    ]))
});

pub fn runs(runs: &[RunRecord]) -> RecordBatch {
    batch(
        &RUNS,
        vec![
            Arc::new(runs.iter().map(|r| Some(r.id as i64)).collect::<Int64Array>()),
            strings(runs.iter().map(|r| Some(r.job.as_str()))),
            strings(runs.iter().map(|r| Some(r.status.as_str()))),
            strings(runs.iter().map(|r| Some(r.trigger.as_str()))),
            timestamps(runs.iter().map(|r| Some(r.started_at))),
            timestamps(runs.iter().map(|r| r.finished_at)),
            Arc::new(runs.iter().map(|r| Some(r.rows as i64)).collect::<Int64Array>()),
            Arc::new(runs.iter().map(|r| Some(r.bytes as i64)).collect::<Int64Array>()),
            strings(runs.iter().map(|r| r.watermark_from.as_deref())),
            strings(runs.iter().map(|r| r.watermark_to.as_deref())),
            strings(runs.iter().map(|r| r.error.as_deref())),
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
    sql.push_str(&format!(
        " SCHEDULE {} WITH (batch_rows = {}",
        job.schedule, job.batch_rows
    ));
    if let Some(parallelism) = job.parallelism {
        sql.push_str(&format!(", parallelism = {parallelism}"));
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
