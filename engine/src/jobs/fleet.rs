//! Jobs in bulk: `CREATE ETL JOBS FOR TABLES IN conn.schema` (one job per
//! table, all or none) and changes to a selection of jobs.

use datafusion::arrow::array::{Scalar, StringArray};
use datafusion::arrow::compute::kernels::comparison::like;
use sluice_catalog::{IncrementalStart, JobDestination, JobSource};
use tracing::info;

use super::load_request::LoadRequest;
use super::settings::JobSetting;
use super::{CreateJob, CreateJobOutcome, JobChange, JobManager};
use crate::contract::{TableDescription, TableKind, TableRef};
use crate::error::{EngineError, TableFailure};
use crate::schedule::Schedule;
use crate::sources::LoadRecommendation;
use crate::type_mapping::BigQueryType;

/// The job name of a table unless `name_template` says otherwise.
pub const DEFAULT_NAME_TEMPLATE: &str = "{schema}_{table}";

/// A `CREATE ETL JOBS FOR TABLES IN conn.schema` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateJobs {
    pub connection: String,
    pub schema: String,
    /// A SQL `LIKE` pattern the table names must match.
    pub like: Option<String>,
    /// Tables left out.
    pub except: Vec<String>,
    /// The destination connection; `None` is the local warehouse.
    pub destination: Option<String>,
    /// Where incremental jobs start; `None` is the default backfill window
    /// (integer cursors always start at `ALL`).
    pub start: Option<IncrementalStart>,
    pub schedule: Schedule,
    /// Settings every job gets.
    pub settings: Vec<JobSetting>,
    /// `{schema}` and `{table}` are replaced; names the job and its table.
    pub name_template: Option<String>,
    /// Plan only: create nothing.
    pub dry_run: bool,
}

/// What happens to one table of `CREATE ETL JOBS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanAction {
    /// `DRY RUN`: the job would be created.
    WouldCreate,
    Created,
    /// Another job loads the table already; it is left alone.
    Covered,
}

impl PlanAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanAction::WouldCreate => "would create",
            PlanAction::Created => "created",
            PlanAction::Covered => "skipped",
        }
    }
}

/// One table's job in `CREATE ETL JOBS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedJob {
    pub job: String,
    /// `schema.table` at the source.
    pub source_table: String,
    /// The destination table (also the job's name).
    pub destination_table: String,
    /// `INCREMENTAL` or `SNAPSHOT`.
    pub load: &'static str,
    pub cursor: Option<String>,
    /// Why this load type, or which job covers the table.
    pub reason: String,
    pub action: PlanAction,
    /// What `CREATE ETL JOB` had to say about the new job.
    pub notices: Vec<String>,
    /// The cursor is an integer (a row version): the job starts at `ALL`.
    pub integer_cursor: bool,
}

impl CreateJobs {
    fn job_name(&self, table: &str) -> String {
        self.name_template
            .as_deref()
            .unwrap_or(DEFAULT_NAME_TEMPLATE)
            .replace("{schema}", &self.schema)
            .replace("{table}", table)
    }

    /// The single-job request for one planned table.
    fn request(&self, plan: &PlannedJob, table: &str) -> CreateJob {
        let load = match &plan.cursor {
            Some(cursor) => LoadRequest::Incremental {
                cursor: cursor.clone(),
                start: self.start_for(plan),
                lookback: None,
            },
            None => LoadRequest::Snapshot,
        };
        CreateJob {
            name: plan.job.clone(),
            if_not_exists: false,
            source: JobSource {
                connection: self.connection.clone(),
                schema: self.schema.clone(),
                table: table.to_owned(),
                columns: None,
            },
            destination: Some(JobDestination {
                connection: self.destination.clone(),
                table: plan.destination_table.clone(),
            }),
            load,
            column_overrides: Vec::new(),
            schedule: self.schedule.clone(),
            settings: self.settings.clone(),
        }
    }

    /// An integer cursor (a row version) starts at `ALL`; otherwise the
    /// statement's start, if it gave one.
    fn start_for(&self, plan: &PlannedJob) -> Option<IncrementalStart> {
        if plan.integer_cursor {
            Some(IncrementalStart::All)
        } else {
            self.start.clone()
        }
    }
}

/// Said of an integer cursor (a row version), which starts at `ALL`.
const INTEGER_CURSOR: &str = "integer cursor: loads all rows first";

/// The cursor (none for a snapshot), the reason and whether the cursor is
/// an integer, for a described table.
fn recommend(description: &TableDescription) -> (Option<String>, String, bool) {
    match description.recommended_load() {
        LoadRecommendation::Incremental { cursor } => {
            let candidate = description
                .timestamp_candidates()
                .into_iter()
                .find(|c| c.column == cursor)
                .map(|c| c.reason)
                .unwrap_or_default();
            let integer = description
                .columns
                .iter()
                .any(|c| c.name == cursor && c.mapping.bigquery == BigQueryType::Int64);
            let reason = if integer {
                format!("{candidate}; {INTEGER_CURSOR}")
            } else {
                candidate
            };
            (Some(cursor), reason, integer)
        }
        LoadRecommendation::Snapshot => (
            None,
            "no timestamp column tracks changes with high confidence: the whole table is copied each run".into(),
            false,
        ),
    }
}

/// Table names matching a SQL `LIKE` pattern, in their order.
fn matching(names: &[String], pattern: &str) -> Result<Vec<bool>, EngineError> {
    let array = StringArray::from_iter_values(names);
    let pattern = Scalar::new(StringArray::from(vec![pattern]));
    let matched = like(&array, &pattern).map_err(|e| EngineError::InvalidJob {
        message: format!("LIKE pattern: {e}"),
    })?;
    Ok((0..names.len()).map(|i| matched.value(i)).collect())
}

impl JobManager {
    /// `CREATE ETL JOBS`: plans one job per table of the schema and, unless
    /// a dry run, creates all of them or, when any table fails, none (the
    /// error names every failing table).
    pub async fn create_jobs(&self, request: CreateJobs) -> Result<Vec<PlannedJob>, EngineError> {
        if let Some(template) = &request.name_template
            && !template.contains("{table}")
        {
            return Err(EngineError::InvalidJob {
                message: format!(
                    "name_template '{template}' must contain {{table}}, or every job would get the same name"
                ),
            });
        }
        let mut tables: Vec<String> = self
            .connections
            .tables(&request.connection, Some(&request.schema))
            .await?
            .into_iter()
            .filter(|t| t.kind != TableKind::View && t.kind != TableKind::MaterializedView)
            .map(|t| t.table.name)
            .collect();
        tables.sort();
        if let Some(missing) = request.except.iter().find(|t| !tables.contains(t)) {
            return Err(EngineError::InvalidJob {
                message: format!(
                    "EXCEPT names \"{missing}\", which is not a table of {}.{}",
                    request.connection, request.schema
                ),
            });
        }
        tables.retain(|t| !request.except.contains(t));
        if let Some(pattern) = &request.like {
            let keep = matching(&tables, pattern)?;
            let mut keep = keep.into_iter();
            tables.retain(|_| keep.next().unwrap_or(false));
        }
        let existing = self.catalog().jobs()?;
        let mut plans = Vec::with_capacity(tables.len());
        for table in &tables {
            let job = request.job_name(table);
            let covering = existing.iter().find(|j| {
                j.source.connection == request.connection
                    && j.source.schema == request.schema
                    && j.source.table == *table
            });
            let (cursor, reason, integer_cursor, action) = match covering {
                Some(other) => (
                    None,
                    format!("loaded already by ETL job \"{}\"", other.name),
                    false,
                    PlanAction::Covered,
                ),
                None => {
                    let table_ref = TableRef {
                        schema: request.schema.clone(),
                        name: table.clone(),
                    };
                    let description = self
                        .connections
                        .describe(&request.connection, &table_ref)
                        .await
                        .map_err(|e| failed(table, e))?;
                    let (cursor, reason, integer_cursor) = recommend(&description);
                    (cursor, reason, integer_cursor, PlanAction::WouldCreate)
                }
            };
            plans.push(PlannedJob {
                destination_table: job.clone(),
                job,
                source_table: format!("{}.{table}", request.schema),
                load: if cursor.is_some() { "INCREMENTAL" } else { "SNAPSHOT" },
                cursor,
                reason,
                action,
                notices: Vec::new(),
                integer_cursor,
            });
        }
        if request.dry_run {
            return Ok(plans);
        }
        let created = self
            .catalog()
            .in_one_transaction(async {
                let mut failures = Vec::new();
                for (plan, table) in plans.iter_mut().zip(&tables) {
                    if plan.action != PlanAction::WouldCreate {
                        continue;
                    }
                    match self.create_job(request.request(plan, table)).await {
                        Ok(CreateJobOutcome::Created { notices }) => {
                            plan.action = PlanAction::Created;
                            plan.notices = notices;
                        }
                        Ok(_) => unreachable!("a job without IF NOT EXISTS or OR REPLACE is created or fails"),
                        Err(e) => failures.push(TableFailure {
                            table: table.clone(),
                            error: Box::new(e),
                        }),
                    }
                }
                if failures.is_empty() {
                    Ok(plans)
                } else {
                    Err(EngineError::JobsNotCreated { failures })
                }
            })
            .await?;
        self.notify_changed();
        info!(
            connection = %request.connection,
            schema = %request.schema,
            jobs = created.iter().filter(|p| p.action == PlanAction::Created).count(),
            "ETL jobs created for a schema"
        );
        Ok(created)
    }

    /// Applies one change to each of `names`, all or none.
    pub async fn alter_jobs(&self, names: &[String], change: &JobChange) -> Result<(), EngineError> {
        self.catalog()
            .in_one_transaction(async { names.iter().try_for_each(|name| self.alter_job(name, change.clone())) })
            .await?;
        self.notify_changed();
        Ok(())
    }
}

/// A failure while planning: the one table, named.
fn failed(table: &str, error: EngineError) -> EngineError {
    EngineError::JobsNotCreated {
        failures: vec![TableFailure {
            table: table.to_owned(),
            error: Box::new(error),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_select_tables() {
        let names = vec!["orders".to_owned(), "order_items".into(), "customers".into()];
        assert_eq!(matching(&names, "order%").unwrap(), [true, true, false]);
        assert_eq!(matching(&names, "%s").unwrap(), [true, true, true]);
        assert_eq!(matching(&names, "orders").unwrap(), [true, false, false]);
    }

    #[test]
    fn names_follow_the_template() {
        let mut request = CreateJobs {
            connection: "shop".into(),
            schema: "public".into(),
            like: None,
            except: vec![],
            destination: None,
            start: None,
            schedule: Schedule::manual(),
            settings: vec![],
            name_template: None,
            dry_run: false,
        };
        assert_eq!(request.job_name("orders"), "public_orders");
        request.name_template = Some("raw_{table}".into());
        assert_eq!(request.job_name("orders"), "raw_orders");
    }
}
