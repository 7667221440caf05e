//! `EXPLAIN ETL JOB`: what the next run would do, planned exactly as a run
//! plans it (see [`plan`](super::plan)), without running anything.

use chrono::Utc;
use sluice_catalog::{IncrementalStart, JobRecord, LoadType, LookbackWindow};

use super::plan::{self, RunPlan};
use super::{JobManager, cdc_mode_sql, file_mark, split, window};
use crate::contract::Source;
use crate::error::EngineError;

/// One row of EXPLAIN: a step of the run and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainStep {
    pub step: String,
    pub detail: String,
}

impl ExplainStep {
    fn new(step: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            step: step.into(),
            detail: detail.into(),
        }
    }
}

impl JobManager {
    /// The plan of job `name`'s next run: source queries, window, commit
    /// guard, row estimate and destination steps. Reads the source's
    /// metadata, open transactions and planner estimate; moves no rows.
    pub async fn explain_job(&self, name: &str) -> Result<Vec<ExplainStep>, EngineError> {
        let job = self.catalog().job(name)?;
        let (source, columns) = self.source_columns(&job).await?;
        let watermark = self.catalog().watermark(name)?.map(|mark| mark.value);
        let plan = plan::plan(&job, watermark.as_deref(), &*source, columns, Utc::now()).await?;
        let source_error = |error| EngineError::Source {
            connection: job.source.connection.clone(),
            error,
        };

        let mut steps = vec![ExplainStep::new("job", summary(&job))];
        if let Some(run_id) = self.running_run(name) {
            steps.push(ExplainStep::new(
                "note",
                format!("run {run_id} is in progress; this is the plan of the run after it"),
            ));
        }
        steps.extend(window_steps(&job, &plan, watermark.as_deref()));
        steps.extend(self.query_steps(&job, &*source, &plan).await.map_err(source_error)?);
        let estimate = source
            .estimate_rows(&plan.columns.description, &plan.request)
            .await
            .map_err(source_error)?;
        steps.push(ExplainStep::new(
            "estimate",
            estimate.map_or_else(
                || "the source gives no row estimate".to_owned(),
                |rows| format!("about {rows} rows (the source planner's estimate)"),
            ),
        ));
        let destination = self.destination(job.destination.connection.as_deref())?;
        steps.push(ExplainStep::new(
            "execution",
            self.execution_text(&job, &*source, &plan)?,
        ));
        if let (Some(lookback), Some((cursor, _))) = (RunPlan::lookback(&job), &plan.cursor) {
            steps.push(ExplainStep::new(
                "dedupe",
                format!(
                    "skip rows whose ({}) the destination already holds with {cursor} > {}",
                    lookback.dedupe_on.join(", "),
                    plan.read_from.as_ref().map_or("(any value)".to_owned(), window::text)
                ),
            ));
        }
        steps.extend(
            destination
                .load_steps(&job.destination.table, plan.mode)
                .into_iter()
                .map(|detail| {
                    let (step, detail) = detail.split_once(": ").unwrap_or(("load", detail.as_str()));
                    ExplainStep::new(step, detail)
                }),
        );
        steps.push(ExplainStep::new(
            "watermark",
            match &plan.cursor {
                Some((cursor, _)) => format!(
                    "after the destination committed, record the largest {cursor} read as the watermark in the \
                     catalog (with the run, in one write)"
                ),
                None => "none: a SNAPSHOT has no watermark".to_owned(),
            },
        ));
        Ok(steps)
    }

    /// Where the run loads: the runner's placement, for a destination that
    /// takes files executors write or one that does not.
    fn execution_text(&self, job: &JobRecord, source: &dyn Source, plan: &RunPlan) -> Result<String, EngineError> {
        let splits = split::split_column(&plan.columns.description, plan.cursor.as_ref().map(|c| c.0.as_str())).is_ok();
        let dedupes = RunPlan::lookback(job).is_some() && plan.cursor.is_some();
        let server_only = Self::server_only(dedupes);
        let shares_files = self.destination(job.destination.connection.as_deref())?.shares_files();
        let placement = self.placement(job, source, shares_files, splits, server_only)?;
        Ok(self.placement_text(job, source, &placement))
    }

    /// The query of each stream the run opens.
    async fn query_steps(
        &self,
        job: &JobRecord,
        source: &dyn Source,
        plan: &RunPlan,
    ) -> Result<Vec<ExplainStep>, crate::contract::SourceError> {
        let description = &plan.columns.description;
        let parts = job.parallelism.filter(|&n| n > 1);
        let queries = match parts {
            Some(parts) if source.scans_in_segments() => {
                vec![source.segmented_scan_query(description, &plan.request, parts as usize)]
            }
            Some(parts) => {
                let column =
                    split::split_column(description, plan.cursor.as_ref().map(|c| c.0.as_str())).map_err(|e| {
                        crate::contract::SourceError::Query {
                            code: Some("0A000".into()),
                            message: e.to_string(),
                        }
                    })?;
                source
                    .parallel_scan_queries(description, &plan.request, column, parts as usize)
                    .await?
            }
            None => vec![source.scan_query(description, &plan.request)],
        };
        let count = queries.len();
        Ok(queries
            .into_iter()
            .enumerate()
            .map(|(i, query)| {
                let step = if count > 1 {
                    format!("source query {}/{count}", i + 1)
                } else {
                    "source query".to_owned()
                };
                ExplainStep::new(step, query)
            })
            .collect())
    }
}

/// `incremental by c from conn.schema.table into dest.table`.
fn summary(job: &JobRecord) -> String {
    let load = match &job.load {
        LoadType::Incremental { cursor, .. } => format!("incremental by {cursor}"),
        LoadType::Snapshot => "snapshot".to_owned(),
        LoadType::Cdc { mode } => format!("change data capture ({})", cdc_mode_sql(*mode).to_lowercase()),
    };
    format!(
        "{load} from {}.{}.{} into {}.{}{}",
        job.source.connection,
        job.source.schema,
        job.source.table,
        job.destination.connection.as_deref().unwrap_or("warehouse"),
        job.destination.table,
        job.parallelism
            .filter(|&n| n > 1)
            .map_or(String::new(), |n| format!(", {n} parallel streams"))
    )
}

/// The window rows: low, lookback, cap and its reason.
fn window_steps(job: &JobRecord, plan: &RunPlan, watermark: Option<&str>) -> Vec<ExplainStep> {
    let LoadType::Incremental { cursor, start, .. } = &job.load else {
        return vec![ExplainStep::new(
            "window",
            "the whole table: a SNAPSHOT replaces the destination table",
        )];
    };
    let low = match (&plan.low, watermark) {
        (Some(low), Some(mark)) => {
            let named = file_mark::files(mark).map_or(0, |files| files.len());
            if plan.files.is_some() && named > 0 {
                format!(
                    "{cursor} > {low} (the watermark), or = {low} for files other than the {named} it names",
                    low = window::text(low)
                )
            } else {
                format!("{cursor} > {} (the watermark)", window::text(low))
            }
        }
        (Some(low), None) => {
            let rule = match start {
                IncrementalStart::BackfillDays(days) => format!("BACKFILL {days} DAYS"),
                IncrementalStart::Since(text) => format!("SINCE '{text}'"),
                IncrementalStart::All => "ALL".to_owned(),
            };
            format!("{cursor} > {} (first run: {rule})", window::text(low))
        }
        (None, _) => "none: the first run reads every row (ALL)".to_owned(),
    };
    let mut steps = vec![ExplainStep::new("window low", low)];
    if let Some(lookback) = RunPlan::lookback(job) {
        steps.push(ExplainStep::new(
            "window lookback",
            match &plan.read_from {
                Some(from) => {
                    let width = match lookback.window {
                        LookbackWindow::Seconds(seconds) => format!("{seconds} seconds"),
                        LookbackWindow::Values(values) => format!("{values} cursor values"),
                    };
                    format!("reads from {cursor} > {} ({width} before low)", window::text(from))
                }
                None => "none: no lower bound yet".to_owned(),
            },
        ));
    }
    if let Some(decision) = &plan.guard {
        steps.push(ExplainStep::new(
            "window cap",
            match plan.cap() {
                Some(cap) => format!("{cursor} <= {}", window::text(cap)),
                None => "none: the run reads up to the newest row".to_owned(),
            },
        ));
        steps.push(ExplainStep::new("cap reason", decision.reason.clone()));
        if let Some(warning) = &decision.warning {
            steps.push(ExplainStep::new("guard warning", warning.clone()));
        }
    }
    steps
}
