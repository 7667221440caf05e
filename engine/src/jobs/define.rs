//! `CREATE ETL JOB`: validate everything against the live source, create the
//! destination table up front, then save the job.

use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::compute::can_cast_types;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_catalog::{
    CatchUp, ColumnOverride, DEFAULT_MAX_RETRIES, DropOutcome, IncrementalStart, JobDestination, JobRecord, JobSource,
    LoadType, Lookback, Transaction,
};
use tracing::{info, warn};

use super::cdc::{Released, check_cdc_settings};
use super::load_request::{DEFAULT_BACKFILL_DAYS, LoadRequest};
use super::settings::JobSetting;
use super::{JobManager, guard, nested_type, schema_changes, split, window};
use crate::cdc::change_table_schema;
use crate::contract::{
    ColumnInfo, Destination, DestinationError, TableDescription, TableOptions, TableRef, TableSetup, TableSpec,
};
use crate::error::EngineError;
use crate::schedule::Schedule;
use crate::type_mapping::{BigQueryType, TYPE_METADATA};

/// A `CREATE ETL JOB` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateJob {
    pub name: String,
    pub if_not_exists: bool,
    pub source: JobSource,
    /// `INTO`; without it, the warehouse table `bq_<source table>`.
    pub destination: Option<JobDestination>,
    pub load: LoadRequest,
    pub column_overrides: Vec<ColumnOverride>,
    pub schedule: Schedule,
    pub settings: Vec<JobSetting>,
}

/// Default rows per extracted batch.
pub const DEFAULT_BATCH_ROWS: u32 = 8192;

/// The columns a job loads, resolved against the source's description.
#[derive(Debug, Clone)]
pub struct JobColumns {
    pub description: TableDescription,
    /// Indexes into the description's columns, in load order.
    pub indexes: Vec<usize>,
    /// The destination schema: mapped types with the job's overrides.
    pub schema: SchemaRef,
}

impl JobColumns {
    /// Resolves a job's column list and overrides; errors name the column.
    pub fn resolve(job: &JobRecord, mut description: TableDescription) -> Result<Self, EngineError> {
        let find = |name: &str| description.columns.iter().position(|c| c.name == name);
        let indexes: Vec<usize> = match &job.source.columns {
            None => (0..description.columns.len()).collect(),
            Some(names) => names
                .iter()
                .map(|n| find(n).ok_or_else(|| unknown_column(&description, n)))
                .collect::<Result<_, _>>()?,
        };
        let mut fields = Vec::with_capacity(indexes.len());
        for &i in &indexes {
            let column = &description.columns[i];
            let mut field = Field::new(
                &column.name,
                column.mapping.arrow.clone(),
                column.nullable || column.mapping.repeated,
            );
            let mut tag = column.mapping.type_tag();
            if let Some(o) = job.column_overrides.iter().find(|o| o.column == column.name) {
                tag = o.bigquery_type.trim().eq_ignore_ascii_case("JSON").then_some("JSON");
                if nested_type::is_nested(&o.bigquery_type) {
                    let nested = nested_override(column, o)?;
                    // The source builds the nested values itself.
                    description.columns[i].mapping.arrow = nested.clone();
                    field = field.with_data_type(nested);
                    if let Some(required) = o.required {
                        field = field.with_nullable(!required);
                    }
                    fields.push(field);
                    continue;
                }
                let target = override_type(&o.bigquery_type)?;
                if !can_cast_types(&column.mapping.arrow, &target) {
                    return Err(EngineError::InvalidJob {
                        message: format!(
                            "column \"{}\" ({}) cannot be converted to {}",
                            column.name, column.source_type, o.bigquery_type
                        ),
                    });
                }
                field = field.with_data_type(target);
                if let Some(required) = o.required {
                    field = field.with_nullable(!required);
                }
            }
            if let Some(tag) = tag {
                field = field.with_metadata([(TYPE_METADATA.to_owned(), tag.to_owned())].into());
            }
            fields.push(field);
        }
        for o in &job.column_overrides {
            if !indexes.iter().any(|&i| description.columns[i].name == o.column) {
                return Err(unknown_column(&description, &o.column));
            }
        }
        if let LoadType::Incremental { cursor, .. } = &job.load {
            check_cursor_override(&description, &fields, cursor)?;
        }
        Ok(Self {
            schema: Arc::new(Schema::new(fields)),
            indexes,
            description,
        })
    }

    /// The loaded columns of the source's primary key, in key order.
    pub fn primary_key(&self) -> Vec<String> {
        let mut key: Vec<(u32, String)> = self
            .indexes
            .iter()
            .filter_map(|&i| {
                let column = &self.description.columns[i];
                Some((column.primary_key_position?, column.name.clone()))
            })
            .collect();
        key.sort();
        key.into_iter().map(|(_, name)| name).collect()
    }

    /// The position of `name` among the loaded columns.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.indexes
            .iter()
            .position(|&i| self.description.columns[i].name == name)
    }
}

/// The Arrow type of a `RECORD(...)` or `REPEATED` override of `column`:
/// only a JSON column (a document store's nested values) takes one.
fn nested_override(column: &ColumnInfo, o: &ColumnOverride) -> Result<DataType, EngineError> {
    if column.mapping.bigquery != BigQueryType::Json || column.mapping.repeated {
        return Err(EngineError::InvalidJob {
            message: format!(
                "column \"{}\" ({}) cannot be loaded as {}: RECORD and REPEATED types are for the JSON columns of \
                 document and key-value sources",
                column.name, column.source_type, o.bigquery_type
            ),
        });
    }
    nested_type::nested_type(&o.bigquery_type).map_err(|reason| EngineError::InvalidJob {
        message: format!("COLUMNS ({} {}): {reason}", column.name, o.bigquery_type),
    })
}

/// Refuses a `COLUMNS` override that changes how the cursor compares: the
/// watermark's low mark is read as the source's type and its high mark
/// would be the converted value (`'9' > '10'` as text, a timestamp cut to
/// its day as a date), so the window would skip or repeat rows.
fn check_cursor_override(description: &TableDescription, fields: &[Field], cursor: &str) -> Result<(), EngineError> {
    let (Some(column), Some(field)) = (
        description.columns.iter().find(|c| c.name == cursor),
        fields.iter().find(|f| f.name() == cursor),
    ) else {
        return Ok(());
    };
    if field.data_type() == &column.mapping.arrow {
        return Ok(());
    }
    Err(EngineError::InvalidJob {
        message: format!(
            "the cursor column \"{cursor}\" ({}) cannot be loaded as another type: the watermark compares source values; \
             leave \"{cursor}\" out of COLUMNS (...) or give it the type {}",
            column.source_type, column.mapping.bigquery
        ),
    })
}

fn unknown_column(description: &TableDescription, name: &str) -> EngineError {
    EngineError::UnknownColumn {
        table: description.table.to_string(),
        column: name.into(),
        existing: description.columns.iter().map(|c| c.name.clone()).collect(),
    }
}

/// The Arrow type a `COLUMNS (col TYPE)` override loads as.
fn override_type(text: &str) -> Result<DataType, EngineError> {
    let upper = text.trim().to_ascii_uppercase();
    let (name, args) = match upper.split_once('(') {
        Some((name, rest)) => (name.trim(), Some(rest.trim_end_matches(')'))),
        None => (upper.as_str(), None),
    };
    let precision_scale = |default: (u8, i8)| -> Result<(u8, i8), EngineError> {
        match args {
            None => Ok(default),
            Some(args) => {
                let parts: Vec<_> = args.split(',').map(|p| p.trim().parse::<i64>()).collect();
                match parts.as_slice() {
                    [Ok(p)] => Ok((*p as u8, 0)),
                    [Ok(p), Ok(s)] => Ok((*p as u8, *s as i8)),
                    _ => Err(EngineError::InvalidJob {
                        message: format!("bad precision/scale in {text}"),
                    }),
                }
            }
        }
    };
    Ok(match name {
        "STRING" | "JSON" => DataType::Utf8,
        "INT64" | "INTEGER" | "BIGINT" => DataType::Int64,
        "FLOAT64" | "FLOAT" => DataType::Float64,
        "BOOL" | "BOOLEAN" => DataType::Boolean,
        "DATE" => DataType::Date32,
        "DATETIME" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "BYTES" => DataType::Binary,
        "NUMERIC" | "DECIMAL" => {
            let (p, s) = precision_scale((38, 9))?;
            if !(1..=38).contains(&p) || !(0..=9).contains(&s) || s as u8 > p || p - s as u8 > 29 {
                return Err(EngineError::InvalidJob {
                    message: format!("{text}: NUMERIC allows precision 1..38, scale 0..9"),
                });
            }
            DataType::Decimal128(p, s)
        }
        "BIGNUMERIC" | "BIGDECIMAL" => {
            let (p, s) = precision_scale((76, 38))?;
            if !(1..=76).contains(&p) || !(0..=38).contains(&s) || s as u8 > p {
                return Err(EngineError::InvalidJob {
                    message: format!("{text}: BIGNUMERIC allows precision 1..76, scale 0..38"),
                });
            }
            DataType::Decimal256(p, s)
        }
        _ => {
            return Err(EngineError::InvalidJob {
                message: format!(
                    "unknown column type {text}; use STRING, INT64, FLOAT64, NUMERIC(p, s), BIGNUMERIC(p, s), BOOL, DATE, DATETIME, TIMESTAMP, BYTES or JSON"
                ),
            });
        }
    })
}

/// Checks `LOOKBACK ... DEDUPE ON`: the window fits the cursor, the dedupe
/// columns are loaded, and the destination can read keys back.
pub(super) async fn check_lookback(
    lookback: &Lookback,
    cursor: &str,
    columns: &JobColumns,
    destination: &dyn Destination,
    table: &str,
) -> Result<(), EngineError> {
    let position = columns.position(cursor).expect("the cursor was checked");
    window::check_lookback(&lookback.window, cursor, columns.schema.field(position).data_type())?;
    for name in &lookback.dedupe_on {
        if columns.position(name).is_none() {
            if columns.description.columns.iter().any(|c| &c.name == name) {
                return Err(EngineError::InvalidJob {
                    message: format!("the DEDUPE ON column \"{name}\" must be one of the loaded columns"),
                });
            }
            return Err(unknown_column(&columns.description, name));
        }
    }
    // A table that does not exist yet is created empty: nothing to read back.
    match destination.loaded_keys(table, &lookback.dedupe_on, cursor, None).await {
        Ok(_) | Err(DestinationError::TableNotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Checks an incremental job's cursor: loaded, of an orderable type, with
/// a start that fits its type.
pub(super) fn check_cursor(
    load: &LoadType,
    columns: &JobColumns,
    now: chrono::DateTime<Utc>,
) -> Result<(), EngineError> {
    let LoadType::Incremental { cursor, start, .. } = load else {
        return Ok(());
    };
    let position = columns.position(cursor).ok_or_else(|| EngineError::InvalidJob {
        message: format!("the cursor column \"{cursor}\" must be one of the loaded columns"),
    })?;
    let column = &columns.description.columns[columns.indexes[position]];
    if column.mapping.repeated || !is_orderable_cursor(&column.mapping.bigquery) {
        return Err(EngineError::InvalidJob {
            message: format!(
                "cursor column \"{cursor}\" is {}; an incremental cursor must be a timestamp, date or integer column",
                column.source_type
            ),
        });
    }
    if matches!(start, IncrementalStart::BackfillDays(_)) && column.mapping.bigquery == BigQueryType::Int64 {
        return Err(EngineError::InvalidJob {
            message: format!("cursor \"{cursor}\" is an integer: use SINCE <value> or ALL instead of BACKFILL n DAYS"),
        });
    }
    window::first_low(start, &columns.schema.field(position).data_type().clone(), now)?;
    Ok(())
}

/// Whether a column can drive incremental loads.
fn is_orderable_cursor(bigquery: &BigQueryType) -> bool {
    matches!(
        bigquery,
        BigQueryType::Timestamp | BigQueryType::Datetime | BigQueryType::Date | BigQueryType::Int64
    )
}

/// An `ALTER ETL JOB` change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobChange {
    Pause,
    Resume,
    Schedule(Schedule),
    Set(Vec<JobSetting>),
    /// `SET WATERMARK 'value'`: where the next incremental run starts (a
    /// restore from `SHOW CREATE ALL WITH STATE`).
    Watermark(String),
}

/// What `create_job` did.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateJobOutcome {
    /// Saved; `notices` say what the job's runs cannot guard against.
    Created { notices: Vec<String> },
    /// `IF NOT EXISTS` and the name was taken.
    AlreadyExists,
    /// `OR REPLACE` with the definition the job has: nothing changed.
    Unchanged,
    /// `OR REPLACE` changed the job; `notices` say how a loaded job's
    /// table follows.
    Replaced { notices: Vec<String> },
}

impl CreateJob {
    /// The job record this request defines, before its columns are resolved.
    fn definition(&self, now: chrono::DateTime<Utc>) -> JobRecord {
        let destination = self.destination.clone().unwrap_or_else(|| JobDestination {
            connection: None,
            table: format!("bq_{}", self.source.table),
        });
        let mut job = JobRecord {
            name: self.name.clone(),
            source: self.source.clone(),
            destination,
            load: self.load.clone().resolve(),
            column_overrides: self.column_overrides.clone(),
            schedule: self.schedule.to_string(),
            batch_rows: DEFAULT_BATCH_ROWS,
            parallelism: None,
            execution: Default::default(),
            max_retries: DEFAULT_MAX_RETRIES,
            catch_up: CatchUp::default(),
            layout: TableOptions::default(),
            guard: Default::default(),
            on_schema_change: Default::default(),
            verify: Default::default(),
            columns: Vec::new(),
            freshness_target_seconds: None,
            labels: Default::default(),
            source_settings: Default::default(),
            reload: false,
            cdc: Default::default(),
            paused: false,
            created_at: now,
            updated_at: now,
        };
        for setting in self.settings.iter().cloned() {
            setting.apply(&mut job);
        }
        job
    }
}

impl JobManager {
    /// Validates a job against the live source, creates its destination
    /// table, then saves it. Nothing is saved when a step fails.
    pub async fn create_job(&self, request: CreateJob) -> Result<CreateJobOutcome, EngineError> {
        if self.catalog().find_job(&request.name)?.is_some() {
            return if request.if_not_exists {
                Ok(CreateJobOutcome::AlreadyExists)
            } else {
                Err(sluice_catalog::CatalogError::AlreadyExists {
                    kind: sluice_catalog::ObjectKind::Job,
                    name: request.name,
                }
                .into())
            };
        }
        let now = Utc::now();
        let mut job = request.definition(now);
        check_cdc_settings(&job)?;
        self.check_table_options(&job)?;
        let table = TableRef {
            schema: job.source.schema.clone(),
            name: job.source.table.clone(),
        };
        let description = self
            .connections
            .describe_with(&job.source.connection, &table, &job.source_settings)
            .await?;
        let columns = JobColumns::resolve(&job, description)?;
        self.check_nested_overrides(&job)?;
        job.columns = schema_changes::record(&columns);
        let cdc_notices = match job.load {
            LoadType::Cdc { mode } => self.check_cdc(&job, mode, &columns).await?,
            _ => Vec::new(),
        };
        check_cursor(&job.load, &columns, now)?;
        if job.parallelism.is_some_and(|n| n > 1) {
            self.check_parallelism(&job, &columns)?;
        }
        let mut notices = self.guard_notices(&job, &columns).await?;
        notices.extend(cdc_notices);
        if let LoadType::Incremental { cursor, .. } = &job.load
            && !request.load.start_given()
        {
            notices.push(format!(
                "ETL job \"{}\" has no BACKFILL, SINCE or ALL: its first run loads the last {DEFAULT_BACKFILL_DAYS} days \
                 by \"{cursor}\" only; CREATE OR REPLACE it with INCREMENTAL BY {cursor} ALL to load every row",
                job.name
            ));
        }
        let destination = self.destination(job.destination.connection.as_deref())?;
        destination
            .check_schedule(&job.destination.table, &request.schedule)
            .map_err(|message| EngineError::InvalidJob { message })?;
        if let LoadType::Incremental {
            cursor,
            lookback: Some(lookback),
            ..
        } = &job.load
        {
            check_lookback(lookback, cursor, &columns, destination.as_ref(), &job.destination.table).await?;
        }
        let spec = TableSpec {
            name: job.destination.table.clone(),
            schema: match job.load {
                LoadType::Cdc { mode } => change_table_schema(&columns.schema, mode, job.cdc.soft_delete),
                _ => columns.schema.clone(),
            },
            job: job.name.clone(),
            cursor: match &job.load {
                LoadType::Incremental { cursor, .. } => Some(cursor.clone()),
                LoadType::Snapshot | LoadType::Cdc { .. } => None,
            },
            primary_key: columns.primary_key(),
            layout: job.layout.clone(),
        };
        // Checked again when the job is saved; here so that another job's
        // table is not touched.
        if let Some(owner) = self.catalog().table_owner(&job.destination)? {
            return Err(sluice_catalog::CatalogError::TableTaken {
                table: job.destination.table.clone(),
                job: owner,
            }
            .into());
        }
        let setup = destination.ensure_table(&spec).await?;
        if setup == TableSetup::Created {
            let (destination, table) = (destination.clone(), spec.name.clone());
            Transaction::on_rollback(Box::pin(async move {
                if let Err(e) = destination.drop_table(&table).await {
                    warn!(%table, error = %e, "could not drop the table made for a job that was rolled back");
                }
            }));
        }
        if let Err(e) = self.catalog().create_job(&job) {
            if setup == TableSetup::Created
                && let Err(drop) = destination.drop_table(&spec.name).await
            {
                warn!(table = %spec.name, error = %drop, "could not drop the table made for a job that was not saved");
            }
            return Err(e.into());
        }
        self.notify_changed();
        info!(job = %job.name, source = %table, destination = %job.destination.table, "ETL job created");
        Ok(CreateJobOutcome::Created { notices })
    }

    /// `CREATE OR REPLACE ETL JOB`: creates the job, or changes an existing
    /// one to the request's definition.
    pub async fn create_or_replace_job(&self, request: CreateJob) -> Result<CreateJobOutcome, EngineError> {
        match self.catalog().find_job(&request.name)? {
            Some(old) => self.replace_job(old, request).await,
            None => self.create_job(request).await,
        }
    }

    /// `CREATE OR REPLACE` of an existing job: nothing when the definition
    /// is the same; schedule and settings change in place; while the job
    /// has loaded nothing, anything may change (the job is made again, its
    /// empty table with it); once it has, its columns, column types and
    /// load type change as the `ALTER ETL JOB` edits would change them
    /// ([`JobManager::change_definition`]), and the error names what
    /// cannot change (the source table, the destination table, its layout).
    async fn replace_job(&self, old: JobRecord, request: CreateJob) -> Result<CreateJobOutcome, EngineError> {
        let mut wanted = request.definition(old.created_at);
        wanted.columns = old.columns.clone();
        wanted.paused = old.paused;
        wanted.reload = old.reload;
        wanted.updated_at = old.updated_at;
        if wanted == old {
            return Ok(CreateJobOutcome::Unchanged);
        }
        // A continuous job's stream stops, and starts again with the change.
        let _stopped = self.hold_stream(&old.name).await?;
        if let Some(run_id) = self.running_run(&old.name) {
            return Err(EngineError::JobRunning { job: old.name, run_id });
        }
        let same_table = (&old.source.connection, &old.source.schema, &old.source.table)
            == (&wanted.source.connection, &wanted.source.schema, &wanted.source.table);
        let fixed: Vec<&str> = [
            (!same_table, "the source table"),
            (old.destination != wanted.destination, "the destination table"),
            (old.layout != wanted.layout, "the destination table's layout"),
            (
                old.cdc.publication != wanted.cdc.publication,
                "the publication it streams from",
            ),
        ]
        .into_iter()
        .filter_map(|(changed, what)| changed.then_some(what))
        .collect();
        let edited = old.source.columns != wanted.source.columns
            || old.column_overrides != wanted.column_overrides
            || old.load != wanted.load;
        if fixed.is_empty() {
            if wanted.schedule != old.schedule {
                self.destination(wanted.destination.connection.as_deref())?
                    .check_schedule(&wanted.destination.table, &request.schedule)
                    .map_err(|message| EngineError::InvalidJob { message })?;
            }
            if wanted.parallelism != old.parallelism && wanted.parallelism.is_some_and(|n| n > 1) {
                self.check_parallel_source(&wanted)?;
            }
            if !edited {
                wanted.updated_at = Utc::now();
                self.catalog().replace_job(&wanted)?;
                self.notify_changed();
                info!(job = %wanted.name, "ETL job replaced in place");
                return Ok(CreateJobOutcome::Replaced { notices: Vec::new() });
            }
        }
        if self.has_loaded(&old)? {
            if !fixed.is_empty() {
                return Err(EngineError::CannotReplace {
                    kind: "ETL job",
                    name: old.name,
                    what: fixed.join(", "),
                    why: "it has loaded data",
                });
            }
            let _editing = self.claim(&old.name, 0)?;
            let (_, current) = self.source_columns(&old).await?;
            let notices = self.change_definition(old, wanted, current.description).await?;
            return Ok(CreateJobOutcome::Replaced { notices });
        }
        // Nothing loaded: the job is made again. Another table goes when
        // this commits; the same one is emptied now, to be made again with
        // the new columns.
        let same_destination = old.destination == wanted.destination;
        let remade = async {
            self.drop_job(&old.name, false, same_destination, false).await?;
            if same_destination {
                self.drop_empty_table(&old).await?;
            }
            self.create_job(request).await
        };
        let outcome = self.catalog().in_one_transaction(remade).await?;
        // The scheduler looked while the change was staged.
        self.notify_changed();
        match outcome {
            CreateJobOutcome::Created { notices } => Ok(CreateJobOutcome::Replaced { notices }),
            other => Ok(other),
        }
    }

    /// Whether a job ever loaded its destination: a watermark or a
    /// successful run.
    fn has_loaded(&self, job: &JobRecord) -> Result<bool, EngineError> {
        Ok(self.catalog().watermark(&job.name)?.is_some()
            || self
                .catalog()
                .runs(Some(&job.name))?
                .iter()
                .any(|run| run.status == sluice_catalog::RunStatus::Succeeded))
    }

    /// Drops the table of a job that loaded nothing, which the replacing
    /// job is about to make again.
    async fn drop_empty_table(&self, job: &JobRecord) -> Result<(), EngineError> {
        let destination = self.destination(job.destination.connection.as_deref())?;
        match destination.drop_table(&job.destination.table).await {
            Ok(()) | Err(DestinationError::TableNotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// What the commit guard cannot do for the runs of a new incremental
    /// job: a cursor it does not cover without LOOKBACK, or a source user
    /// that cannot see other sessions' transactions.
    async fn guard_notices(&self, job: &JobRecord, columns: &JobColumns) -> Result<Vec<String>, EngineError> {
        let LoadType::Incremental { cursor, lookback, .. } = &job.load else {
            return Ok(Vec::new());
        };
        if !job.guard.enabled {
            return Ok(Vec::new());
        }
        let position = columns.position(cursor).expect("the cursor was checked");
        let cursor_type = columns.schema.field(position).data_type();
        if !guard::covers(cursor_type) {
            return Ok(if lookback.is_none() {
                vec![format!("cursor \"{cursor}\": {}", guard::uncovered_reason(cursor_type))]
            } else {
                Vec::new()
            });
        }
        let source = self
            .connections
            .source_with(&job.source.connection, &job.source_settings)?;
        let horizon = guard::horizon(job, &*source).await?;
        Ok(horizon
            .and_then(|h| h.blind)
            .map(|grant| {
                format!(
                    "the user of connection \"{}\" cannot see other sessions' transactions, so runs cannot wait for \
                     rows they have not committed yet; grant it {grant} (runs record that they ran unguarded)",
                    job.source.connection
                )
            })
            .into_iter()
            .collect())
    }

    /// Checks that the source can be read by parallel streams, split on a
    /// suitable column.
    pub(super) fn check_parallelism(&self, job: &JobRecord, columns: &JobColumns) -> Result<(), EngineError> {
        if self.check_parallel_source(job)? {
            return Ok(());
        }
        let cursor = match &job.load {
            LoadType::Incremental { cursor, .. } => Some(cursor.as_str()),
            LoadType::Snapshot | LoadType::Cdc { .. } => None,
        };
        split::split_column(&columns.description, cursor).map(drop)
    }

    /// Refuses `RECORD`/`REPEATED` overrides on a source that does not
    /// build nested values (only document and key-value stores do).
    fn check_nested_overrides(&self, job: &JobRecord) -> Result<(), EngineError> {
        let Some(o) = job
            .column_overrides
            .iter()
            .find(|o| nested_type::is_nested(&o.bigquery_type))
        else {
            return Ok(());
        };
        if self.connections.source(&job.source.connection)?.reads_nested() {
            return Ok(());
        }
        Err(EngineError::InvalidJob {
            message: format!(
                "COLUMNS ({} {}): connection \"{}\" cannot load nested types; RECORD and REPEATED are for the JSON \
                 columns of document and key-value sources (load JSON and use JSON functions)",
                o.column, o.bigquery_type, job.source.connection
            ),
        })
    }

    /// Checks that the job's source can be read by parallel streams at all;
    /// `true` when it splits the read itself (no split column needed).
    fn check_parallel_source(&self, job: &JobRecord) -> Result<bool, EngineError> {
        let source = self.connections.source(&job.source.connection)?;
        if source.scans_in_segments() {
            return Ok(true);
        }
        if !source.supports_parallel_scan() {
            return Err(EngineError::InvalidJob {
                message: format!(
                    "connection \"{}\" cannot be read by parallel streams (WITH (parallelism = n) needs a PostgreSQL, \
                     MySQL, MariaDB, SQL Server, DynamoDB, Cassandra or file source); leave out parallelism",
                    job.source.connection
                ),
            });
        }
        Ok(false)
    }

    /// Changes what can change without touching the destination table.
    pub fn alter_job(&self, name: &str, change: JobChange) -> Result<(), EngineError> {
        let mut job = self.catalog().job(name)?;
        match change {
            JobChange::Pause => job.paused = true,
            JobChange::Resume => job.paused = false,
            JobChange::Schedule(schedule) => {
                self.destination(job.destination.connection.as_deref())?
                    .check_schedule(&job.destination.table, &schedule)
                    .map_err(|message| EngineError::InvalidJob { message })?;
                job.schedule = schedule.to_string();
                check_cdc_settings(&job)?;
            }
            JobChange::Watermark(value) => self.set_watermark(&job, value)?,
            JobChange::Set(settings) => {
                if let Some(layout) = settings.iter().find(|s| s.is_layout()) {
                    return Err(EngineError::InvalidJob {
                        message: format!(
                            "{} sets the destination table's layout when the job creates the table; it cannot be altered",
                            layout.name()
                        ),
                    });
                }
                if settings.iter().any(|s| matches!(s, JobSetting::Publication(_))) {
                    return Err(EngineError::InvalidJob {
                        message: format!(
                            "ETL job \"{name}\" streams from the publication chosen when it was created; to stream \
                             from another, drop the job and create it again"
                        ),
                    });
                }
                if settings
                    .iter()
                    .any(|s| matches!(s, JobSetting::Parallelism(n) if *n > 1))
                {
                    self.check_parallel_source(&job)?;
                }
                settings.into_iter().for_each(|s| s.apply(&mut job));
                check_cdc_settings(&job)?;
            }
        }
        job.updated_at = Utc::now();
        self.catalog().replace_job(&job)?;
        // A stream takes up the change when the scheduler starts it again
        // (in a transaction block, once the block commits).
        self.hold_until_transaction_ends(name);
        if let Some(run_id) = self.stop_stream(name) {
            info!(job = name, run_id, "the job's stream stops to take up the change");
        }
        self.notify_changed();
        info!(job = name, "ETL job altered");
        Ok(())
    }

    /// Saves `value` as an incremental job's watermark, checked against the
    /// cursor's type; refused while the job runs.
    fn set_watermark(&self, job: &JobRecord, value: String) -> Result<(), EngineError> {
        let LoadType::Incremental { cursor, .. } = &job.load else {
            return Err(EngineError::InvalidJob {
                message: format!("ETL job \"{}\" is a snapshot: it has no watermark", job.name),
            });
        };
        if let Some(run_id) = self.running_run(&job.name) {
            return Err(EngineError::JobRunning {
                job: job.name.clone(),
                run_id,
            });
        }
        let cursor_type = job
            .columns
            .iter()
            .find(|c| c.name == *cursor)
            .and_then(|c| c.source_arrow.parse::<DataType>().ok())
            .ok_or_else(|| EngineError::InvalidJob {
                message: format!(
                    "ETL job \"{}\" has no recorded type for its cursor \"{cursor}\"",
                    job.name
                ),
            })?;
        window::parse(&value, &cursor_type)?;
        let note = format!(
            "ALTER ETL JOB {} SET WATERMARK: the next run reads after '{value}'",
            job.name
        );
        self.catalog().move_watermark(job, Some(&value), &note)?;
        Ok(())
    }

    /// Drops a connection, refusing while a job that uses it is running
    /// (with `cascade` those jobs would be dropped from under their run).
    pub fn drop_connection(&self, name: &str, if_exists: bool, cascade: bool) -> Result<DropOutcome, EngineError> {
        for job in self.catalog().jobs_using(name)? {
            if let Some(run_id) = self.running_run(&job) {
                return Err(EngineError::JobRunning { job, run_id });
            }
        }
        self.connections.drop_connection(name, if_exists, cascade)
    }

    /// Drops a job; unless `keep_data`, its destination table too. A CDC
    /// job's replication slot and publication go first; when the source
    /// cannot drop them the job stays, unless `force`.
    pub async fn drop_job(
        &self,
        name: &str,
        if_exists: bool,
        keep_data: bool,
        force: bool,
    ) -> Result<JobDropped, EngineError> {
        let _stopped = self.hold_stream(name).await?;
        if let Some(run) = self.running_run(name) {
            return Err(EngineError::JobRunning {
                job: name.into(),
                run_id: run,
            });
        }
        // A CDC job's slot and publication go first: a job whose source
        // cannot be reached stays (unless `force`), so nothing holds WAL
        // unknown to Sluice.
        let mut left = None;
        if let Some(job) = self.catalog().find_job(name)?
            && matches!(job.load, LoadType::Cdc { .. })
        {
            match self.release_cdc(&job, force).await? {
                Released::Nothing => {}
                Released::Dropped => self.needs_resync_on_rollback(name),
                Released::Left { sql } => left = Some(sql),
            }
        }
        let Some(job) = self.catalog().drop_job(name, if_exists)? else {
            return Ok(JobDropped::Missing);
        };
        self.notify_changed();
        // Catalogs from before one job per table may share a table.
        let shared = self.catalog().table_owner(&job.destination)?;
        if let Some(owner) = &shared {
            warn!(job = name, table = %job.destination.table, other_job = %owner, "the destination table is kept: another job loads it");
        }
        if !keep_data && shared.is_none() {
            let destination = self.destination(job.destination.connection.as_deref())?;
            let table = job.destination.table.clone();
            if Transaction::active() {
                // The table goes when the drop commits.
                Transaction::after_commit(Box::pin(async move {
                    if let Err(e) = destination.drop_table(&table).await {
                        warn!(%table, error = %e, "could not drop the table of a dropped ETL job");
                    }
                }));
            } else {
                destination.drop_table(&table).await?;
            }
        }
        info!(job = name, keep_data, "ETL job dropped");
        Ok(match left {
            Some(sql) => JobDropped::LeftAtSource { sql },
            None => JobDropped::Dropped,
        })
    }
}

/// What `DROP ETL JOB` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobDropped {
    /// There was no such job (`IF EXISTS`).
    Missing,
    Dropped,
    /// Dropped with `FORCE` while its source could not drop the job's
    /// replication slot (and publication): `sql`, run at the source, does.
    LeftAtSource {
        sql: String,
    },
}

impl JobManager {
    /// Refuses table options that the job's destination does not take
    /// (the local warehouse takes none), naming the types that do.
    fn check_table_options(&self, job: &JobRecord) -> Result<(), EngineError> {
        let (allowed, destination) = match job.destination.connection.as_deref() {
            None => (&[][..], "the local warehouse".to_owned()),
            Some(name) => (self.connections.table_options(name)?, format!("connection \"{name}\"")),
        };
        let Some((name, _)) = job
            .layout
            .iter()
            .find(|(name, _)| !allowed.iter().any(|option| option.name == *name))
        else {
            return Ok(());
        };
        let takes = match allowed {
            [] => "takes no table options".to_owned(),
            some => format!(
                "takes {}",
                some.iter().map(|option| option.name).collect::<Vec<_>>().join(", ")
            ),
        };
        Err(EngineError::InvalidJob {
            message: format!(
                "{name} is an option of {} tables; ETL job \"{}\" loads into {destination}, which {takes}",
                crate::connectors::table_option_types(name).join(" and "),
                job.name
            ),
        })
    }
}
