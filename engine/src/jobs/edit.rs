//! Editing a job that may have loaded data: `ALTER ETL JOB`'s `ADD COLUMN`,
//! `DROP COLUMN`, `SET COLUMNS`, `SET INCREMENTAL BY`, `SET SNAPSHOT` and
//! `RESET WATERMARK`, and the `CREATE OR REPLACE` that amounts to them.
//!
//! The new definition is checked against the live source as at `CREATE`.
//! The destination table only ever grows, through the same
//! `Destination::evolve_table` that source schema changes use: an added
//! column comes as NULLABLE (rows loaded before have NULL there), a column
//! no longer loaded stays (rows loaded after have NULL there), a kept
//! column keeps its destination type and may only relax from REQUIRED to
//! NULLABLE. A change of load type or cursor clears the watermark; the next
//! run then loads the job's start window in place of the table's rows.

use std::str::FromStr;

use chrono::Utc;
use datafusion::arrow::datatypes::DataType;
use sluice_catalog::{
    ColumnOverride, IncrementalStart, JobColumn, JobRecord, LoadType, SchemaChangeKind, SchemaChangePolicy, Transaction,
};
use tracing::info;

use super::define::{JobColumns, check_cursor, check_lookback};
use super::load_request::LoadRequest;
use super::{JobManager, schema_changes};
use crate::contract::{DestinationError, TableDescription};
use crate::error::EngineError;
use crate::type_mapping::{TYPE_METADATA, load_type, widens};

/// A change to what a job loads, made by `ALTER ETL JOB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEdit {
    /// `ADD COLUMN col [type]`
    AddColumn(ColumnSpec),
    /// `DROP COLUMN col`
    DropColumn(String),
    /// `SET COLUMNS (col [type], ...)`: exactly these, in this order.
    SetColumns(Vec<ColumnSpec>),
    /// `SET INCREMENTAL BY col [start]` or `SET SNAPSHOT`.
    SetLoad(LoadRequest),
    /// `RESET WATERMARK`: the next run loads the start window again.
    ResetWatermark,
}

/// A column of `ADD COLUMN` or `SET COLUMNS`, with its type when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub typed: Option<ColumnOverride>,
}

impl JobEdit {
    /// The job's definition after the edit; `loaded` names the columns it
    /// loads now, in order.
    fn apply(&self, job: &JobRecord, loaded: &[String]) -> Result<JobRecord, EngineError> {
        let mut wanted = job.clone();
        let invalid = |message: String| EngineError::InvalidJob { message };
        match self {
            JobEdit::AddColumn(spec) => {
                if loaded.contains(&spec.name) {
                    return Err(invalid(format!(
                        "column \"{}\" is loaded by ETL job \"{}\" already; ALTER ETL JOB {} SET COLUMNS (...) \
                         changes the column list",
                        spec.name, job.name, job.name
                    )));
                }
                let mut names = loaded.to_vec();
                names.push(spec.name.clone());
                wanted.source.columns = Some(names);
                set_type(&mut wanted, spec);
            }
            JobEdit::DropColumn(name) => {
                if !loaded.contains(name) {
                    return Err(invalid(format!(
                        "column \"{name}\" is not loaded by ETL job \"{}\" (it loads {})",
                        job.name,
                        quoted(loaded)
                    )));
                }
                if loaded.len() == 1 {
                    return Err(invalid(format!(
                        "column \"{name}\" is the only column ETL job \"{}\" loads; a job loads at least one",
                        job.name
                    )));
                }
                wanted.source.columns = Some(loaded.iter().filter(|n| *n != name).cloned().collect());
                wanted.column_overrides.retain(|o| &o.column != name);
            }
            JobEdit::SetColumns(specs) => {
                for (i, spec) in specs.iter().enumerate() {
                    if specs[..i].iter().any(|s| s.name == spec.name) {
                        return Err(invalid(format!("column \"{}\" is listed twice", spec.name)));
                    }
                }
                wanted.source.columns = Some(specs.iter().map(|s| s.name.clone()).collect());
                wanted.column_overrides = specs.iter().filter_map(|s| s.typed.clone()).collect();
            }
            JobEdit::SetLoad(load) => wanted.load = load.clone().resolve(),
            JobEdit::ResetWatermark => {}
        }
        Ok(wanted)
    }
}

/// Gives `spec`'s column its type, or the one it maps to when none is given.
fn set_type(job: &mut JobRecord, spec: &ColumnSpec) {
    job.column_overrides.retain(|o| o.column != spec.name);
    job.column_overrides.extend(spec.typed.clone());
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}

/// The cursor of a load type, `None` for a snapshot.
fn cursor_of(load: &LoadType) -> Option<&str> {
    match load {
        LoadType::Incremental { cursor, .. } => Some(cursor),
        LoadType::Snapshot | LoadType::Cdc { .. } => None,
    }
}

/// `RESET WATERMARK` on a job of `kind`, which has none.
fn no_watermark(job: &str, kind: &str) -> EngineError {
    EngineError::InvalidJob {
        message: format!("ETL job \"{job}\" is {kind}: it has no watermark to reset"),
    }
}

/// A start rule as written in SQL.
fn start_text(start: &IncrementalStart) -> String {
    match start {
        IncrementalStart::BackfillDays(days) => format!("BACKFILL {days} DAYS"),
        IncrementalStart::Since(value) => format!("SINCE '{}'", value.replace('\'', "''")),
        IncrementalStart::All => "ALL".into(),
    }
}

impl JobManager {
    /// `ALTER ETL JOB name` with an edit of what it loads; returns notices
    /// that say how the destination follows. Refused while the job runs.
    pub async fn edit_job(&self, name: &str, edit: JobEdit) -> Result<Vec<String>, EngineError> {
        let job = self.catalog().job(name)?;
        let _stopped = self.hold_stream(name).await?;
        let _editing = self.claim(name, 0)?;
        if edit == JobEdit::ResetWatermark {
            return self.reset_watermark(job);
        }
        let (_, current) = self.source_columns(&job).await?;
        let loaded: Vec<String> = current.schema.fields().iter().map(|f| f.name().clone()).collect();
        let wanted = edit.apply(&job, &loaded)?;
        self.change_definition(job, wanted, current.description).await
    }

    /// Clears an incremental job's watermark, recorded in its runs; the
    /// next run loads its start window in place of the table's rows.
    fn reset_watermark(&self, mut job: JobRecord) -> Result<Vec<String>, EngineError> {
        let start = match &job.load {
            LoadType::Incremental { start, .. } => start,
            LoadType::Snapshot => return Err(no_watermark(&job.name, "a snapshot")),
            LoadType::Cdc { .. } => {
                return Err(no_watermark(
                    &job.name,
                    "a change data capture job (it follows the source's log position)",
                ));
            }
        };
        let start = start_text(start);
        job.reload = true;
        job.updated_at = Utc::now();
        let note = format!(
            "ALTER ETL JOB {} RESET WATERMARK: the next run loads {start} again in place of the table's rows",
            job.name
        );
        let run = self.catalog().move_watermark(&job, None, &note)?;
        self.notify_changed();
        info!(job = %job.name, run_id = run.id, "watermark reset");
        Ok(vec![format!(
            "the watermark of ETL job \"{}\" is cleared (was {}; recorded as run {}): its next run loads {start} \
             again and replaces the table's rows with them",
            job.name,
            run.watermark_from.map_or("not set".into(), |w| format!("'{w}'")),
            run.id
        )])
    }

    /// Saves `wanted` in place of the loaded job `old` once the destination
    /// table followed it: the columns resolved against the source's
    /// `description`, the cursor checked as at `CREATE`, the table's new
    /// columns added. A change of load type or cursor clears the watermark.
    /// The caller holds the job (no run overlaps). Returns notices.
    pub(super) async fn change_definition(
        &self,
        old: JobRecord,
        mut wanted: JobRecord,
        description: TableDescription,
    ) -> Result<Vec<String>, EngineError> {
        if matches!(old.load, LoadType::Cdc { .. }) || matches!(wanted.load, LoadType::Cdc { .. }) {
            return Err(EngineError::CannotEdit {
                job: old.name,
                reason: "a change data capture job's columns and load type cannot change once it has loaded data; \
                         drop the job and create it again (its replication slot goes with it)"
                    .into(),
            });
        }
        let columns = JobColumns::resolve(&wanted, description)?;
        let now = Utc::now();
        check_cursor(&wanted.load, &columns, now)?;
        if wanted.parallelism.is_some_and(|n| n > 1) {
            self.check_parallelism(&wanted, &columns)?;
        }
        let destination = self.destination(wanted.destination.connection.as_deref())?;
        if let LoadType::Incremental {
            cursor,
            lookback: Some(lookback),
            ..
        } = &wanted.load
        {
            check_lookback(
                lookback,
                cursor,
                &columns,
                destination.as_ref(),
                &wanted.destination.table,
            )
            .await?;
        }
        // The recorded columns as the new definition sees them: the edit
        // itself is followed, whatever the job's on_schema_change.
        let mut base = wanted.clone();
        base.columns = old.columns.clone();
        base.on_schema_change = SchemaChangePolicy::Evolve;
        let evolution = schema_changes::compare(&base, &columns)?;
        check_types(&old, &wanted, &old.columns, &columns)?;
        if Transaction::active() && evolution.columns != old.columns {
            return Err(EngineError::OperationNotSupported {
                operation: "CREATE OR REPLACE",
                job: old.name,
                reason: "changing a loaded job's columns cannot run inside a transaction block (ROLLBACK could not \
                         take the destination table's change back); run it outside BEGIN ... COMMIT"
                    .into(),
            });
        }
        destination
            .evolve_table(&wanted.destination.table, &evolution.target)
            .await
            .map_err(|e| match e {
                DestinationError::SchemaMismatch { differences, .. } => EngineError::CannotEdit {
                    job: old.name.clone(),
                    reason: format!("its destination table cannot follow: {}", differences.join("; ")),
                },
                other => other.into(),
            })?;
        let mut notices: Vec<String> = evolution.changes.iter().map(change_notice).collect();
        wanted.columns = evolution.columns;
        wanted.updated_at = now;
        let rebased = cursor_of(&old.load) != cursor_of(&wanted.load);
        if rebased {
            wanted.reload = true;
            notices.push(match &wanted.load {
                LoadType::Snapshot | LoadType::Cdc { .. } => format!(
                    "ETL job \"{}\" is a SNAPSHOT now: its watermark is cleared, and its next run replaces the table's \
                     rows with the source's",
                    wanted.name
                ),
                LoadType::Incremental { cursor, start, .. } => format!(
                    "ETL job \"{}\" loads incrementally by \"{cursor}\" now: its next run loads {} in place of the \
                     table's rows, and later runs append",
                    wanted.name,
                    start_text(start)
                ),
            });
        }
        if rebased {
            let note = format!(
                "the load type of ETL job {} changed: the next run loads its start window in place of the table's rows",
                old.name
            );
            self.catalog().move_watermark(&wanted, None, &note)?;
        } else {
            self.catalog().replace_job(&wanted)?;
        }
        self.notify_changed();
        info!(job = %wanted.name, changes = evolution.changes.len(), rebased, "loaded ETL job edited");
        Ok(notices)
    }
}

/// What a NOTICE says of a column change an edit made.
fn change_notice(change: &schema_changes::ColumnChange) -> String {
    let column = &change.column;
    match change.kind {
        SchemaChangeKind::Added => format!(
            "column \"{column}\" is loaded from now on: it is added to the destination table as NULLABLE, and rows \
             loaded before have NULL in it"
        ),
        SchemaChangeKind::Dropped => format!(
            "column \"{column}\" is no longer loaded: the destination table keeps it (a table is never narrowed), \
             and rows loaded from now on have NULL in it"
        ),
        SchemaChangeKind::Nullable => format!("column \"{column}\" is NULLABLE in the destination table now"),
        SchemaChangeKind::Widened => format!(
            "column \"{column}\" follows the source's wider type {}",
            change.after.as_deref().unwrap_or_default()
        ),
    }
}

/// Refuses a column whose destination type the edit would change: a kept
/// column keeps its type (or a widening of it) and may only relax from
/// REQUIRED to NULLABLE; an added one comes as NULLABLE.
fn check_types(
    job: &JobRecord,
    wanted: &JobRecord,
    before: &[JobColumn],
    columns: &JobColumns,
) -> Result<(), EngineError> {
    let refuse = |column: &str, problem: String| EngineError::CannotEdit {
        job: job.name.clone(),
        reason: format!("column \"{column}\" {problem}"),
    };
    for field in columns.schema.fields() {
        let name = field.name();
        let required = wanted
            .column_overrides
            .iter()
            .any(|o| &o.column == name && o.required == Some(true));
        let Some(old) = before.iter().find(|c| &c.name == name) else {
            if required {
                return Err(refuse(
                    name,
                    "would be added as REQUIRED, but the rows loaded before have no value in it: add it as NULLABLE"
                        .into(),
                ));
            }
            continue;
        };
        let tag = field.metadata().get(TYPE_METADATA).cloned();
        let old_type = DataType::from_str(&old.arrow).ok();
        let unchanged = old.arrow == field.data_type().to_string() && old.tag == tag;
        if !unchanged {
            let (was, is) = (
                old_type
                    .as_ref()
                    .map_or(old.arrow.clone(), |t| destination_type(t, old.tag.as_deref())),
                destination_type(field.data_type(), tag.as_deref()),
            );
            let widening = old_type.as_ref().is_some_and(|t| widens(t, field.data_type()));
            if was != is || !widening {
                return Err(refuse(
                    name,
                    format!(
                        "is {was} in the destination table and cannot become {is}: rows already loaded keep their \
                         type; leave its type as it is (ALTER ETL JOB {} SET COLUMNS (...) with \"{name}\" {was})",
                        job.name
                    ),
                ));
            }
        }
        if old.nullable && required {
            return Err(refuse(
                name,
                "is NULLABLE in the destination table and cannot become REQUIRED (only REQUIRED to NULLABLE is allowed)"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// The type a column has in the destination, as a BigQuery type name.
fn destination_type(data_type: &DataType, tag: Option<&str>) -> String {
    load_type(data_type, tag).map_or_else(|_| data_type.to_string(), |t| t.to_string())
}
