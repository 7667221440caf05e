//! What the statements on many jobs return: the plan of `CREATE ETL JOBS`,
//! one row per job an `ALTER ETL JOBS` changed or a `RUN ETL JOBS` ran.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_catalog::RunRecord;
use sluice_engine::jobs::PlannedJob;

use super::{batch, strings, text};

/// `CREATE ETL JOBS`: one row per table.
pub static PLANNED_JOBS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("job"),
        text("source_table"),
        text("destination_table"),
        text("load"),
        text("cursor"),
        text("reason"),
        text("action"),
    ]))
});

pub fn planned_jobs(plans: &[PlannedJob]) -> RecordBatch {
    batch(
        &PLANNED_JOBS,
        vec![
            strings(plans.iter().map(|p| Some(p.job.as_str()))),
            strings(plans.iter().map(|p| Some(p.source_table.as_str()))),
            strings(plans.iter().map(|p| Some(p.destination_table.as_str()))),
            strings(plans.iter().map(|p| Some(p.load))),
            strings(plans.iter().map(|p| p.cursor.as_deref())),
            strings(plans.iter().map(|p| Some(p.reason.as_str()))),
            strings(plans.iter().map(|p| Some(p.action.as_str()))),
        ],
    )
}

/// `ALTER ETL JOBS`: one row per job changed.
pub static CHANGED_JOBS: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(vec![text("job"), text("change")])));

pub fn changed_jobs(jobs: &[String], change: &str) -> RecordBatch {
    batch(
        &CHANGED_JOBS,
        vec![
            strings(jobs.iter().map(|j| Some(j.as_str()))),
            strings(jobs.iter().map(|_| Some(change))),
        ],
    )
}

/// `RUN ETL JOBS`: one row per job, its run or why it did not run.
pub static JOB_RUNS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("job"),
        Field::new("run_id", DataType::Int64, true),
        text("status"),
        Field::new("rows", DataType::Int64, true),
        text("error"),
    ]))
});

/// Each job with its finished run, or the error that kept it from running.
pub fn job_runs(runs: &[(String, Result<RunRecord, String>)]) -> RecordBatch {
    batch(
        &JOB_RUNS,
        vec![
            strings(runs.iter().map(|(job, _)| Some(job.as_str()))),
            Arc::new(
                runs.iter()
                    .map(|(_, r)| r.as_ref().ok().map(|r| r.id as i64))
                    .collect::<Int64Array>(),
            ),
            strings(
                runs.iter()
                    .map(|(_, r)| Some(r.as_ref().map_or("not started", |r| r.status.as_str()))),
            ),
            Arc::new(
                runs.iter()
                    .map(|(_, r)| r.as_ref().ok().map(|r| r.rows as i64))
                    .collect::<Int64Array>(),
            ),
            strings(runs.iter().map(|(_, r)| match r {
                Ok(run) => run.error.as_deref(),
                Err(e) => Some(e.as_str()),
            })),
        ],
    )
}
