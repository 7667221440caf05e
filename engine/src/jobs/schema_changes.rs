//! Source schema changes: before a run moves data it compares the source
//! table with the columns the job recorded, and follows what its
//! `on_schema_change` allows. Under `'evolve'` (the default) an added column
//! is added to the destination as NULLABLE, a dropped one stays there and is
//! loaded as NULL, a widened type is followed; anything else, and every
//! change under `'fail'`, fails the run before anything is written.

use std::str::FromStr;
use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_catalog::{
    Catalog, JobColumn, JobRecord, LoadType, SchemaChangeKind, SchemaChangePolicy, SchemaChangeRecord,
};
use tracing::info;

use super::define::JobColumns;
use crate::contract::{Destination, DestinationError, TableDescription};
use crate::error::EngineError;
use crate::type_mapping::{TYPE_METADATA, widens};

/// One change a run follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnChange {
    pub column: String,
    pub kind: SchemaChangeKind,
    /// The column's source type before and after, `NOT NULL` included.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// How a run's rows reach the destination after the source changed.
#[derive(Debug, Clone)]
pub(crate) struct Evolution {
    /// The job's columns after the changes.
    pub columns: Vec<JobColumn>,
    /// The changes followed, in column order.
    pub changes: Vec<ColumnChange>,
    /// The destination's schema after the changes: the recorded columns in
    /// their order (dropped ones kept), added ones at the end.
    pub target: SchemaRef,
    /// For each target column, its position among the loaded columns;
    /// `None` loads NULL.
    sources: Vec<Option<usize>>,
}

/// The columns a job records at `CREATE ETL JOB`: the loaded ones.
pub(crate) fn record(columns: &JobColumns) -> Vec<JobColumn> {
    columns
        .indexes
        .iter()
        .zip(columns.schema.fields())
        .map(|(&i, field)| {
            let source = &columns.description.columns[i];
            JobColumn {
                name: field.name().clone(),
                source_type: source.source_type.clone(),
                source_arrow: source.mapping.arrow.to_string(),
                arrow: field.data_type().to_string(),
                tag: field.metadata().get(TYPE_METADATA).cloned(),
                nullable: field.is_nullable(),
                dropped: false,
            }
        })
        .collect()
}

/// The job as a run resolves its columns: recorded columns the source
/// dropped are taken out of its column list and overrides (they are
/// loaded as NULL), so that resolving does not fail on them.
pub(crate) fn without_dropped(job: &JobRecord, description: &TableDescription) -> JobRecord {
    let gone =
        |name: &str| job.columns.iter().any(|c| c.name == name) && !description.columns.iter().any(|c| c.name == name);
    let mut job = job.clone();
    if let Some(names) = &mut job.source.columns {
        names.retain(|n| !gone(n));
    }
    job.column_overrides.retain(|o| !gone(&o.column));
    job
}

/// Compares the loaded columns with those the job recorded; an error names
/// the first change the job does not follow, with the fix.
pub(crate) fn compare(job: &JobRecord, loaded: &JobColumns) -> Result<Evolution, EngineError> {
    let current = record(loaded);
    if job.columns.is_empty() {
        // A job saved before Sluice recorded columns: today's are its own.
        return Ok(Evolution {
            sources: (0..current.len()).map(Some).collect(),
            columns: current,
            changes: Vec::new(),
            target: loaded.schema.clone(),
        });
    }
    let refuse = |column: &str, change: String, fix: String| EngineError::SchemaChange {
        job: job.name.clone(),
        column: column.to_owned(),
        change,
        fix,
    };
    let mut columns = Vec::new();
    let mut changes = Vec::new();
    for old in &job.columns {
        let new = current.iter().find(|c| c.name == old.name);
        let (column, change) = follow(job, old, new).map_err(|change| refuse(&old.name, change, recreate_fix(job)))?;
        columns.push(column);
        changes.extend(change);
    }
    for new in current.iter().filter(|c| !job.columns.iter().any(|o| o.name == c.name)) {
        changes.push(ColumnChange::new(
            new,
            SchemaChangeKind::Added,
            None,
            Some(new.source_type.clone()),
        ));
        columns.push(JobColumn {
            nullable: true,
            ..new.clone()
        });
    }
    if job.on_schema_change == SchemaChangePolicy::Fail
        && let Some(change) = changes.first()
    {
        return Err(refuse(
            &change.column,
            format!(
                "was {}, is now {}",
                change.before.as_deref().unwrap_or("absent"),
                change.after.as_deref().unwrap_or("dropped")
            ),
            format!(
                "The job has on_schema_change = 'fail'; ALTER ETL JOB {} SET (on_schema_change = 'evolve') to follow \
                 the change, or DROP ETL JOB ... WITH DATA and CREATE ETL JOB again",
                job.name
            ),
        ));
    }
    let (fields, sources) = target_fields(&columns, loaded)?;
    Ok(Evolution {
        columns,
        changes,
        target: Arc::new(Schema::new(fields)),
        sources,
    })
}

/// What becomes of recorded column `old`, found at the source as `new`
/// (`None`: dropped there): its next record and the change followed, or
/// why the job cannot follow it.
fn follow(
    job: &JobRecord,
    old: &JobColumn,
    new: Option<&JobColumn>,
) -> Result<(JobColumn, Option<ColumnChange>), String> {
    let Some(new) = new else {
        if let Some(role) = key_role(job, &old.name).filter(|_| !old.dropped) {
            return Err(format!("({}) was dropped, and it is the job's {role}", old.source_type));
        }
        let change =
            (!old.dropped).then(|| ColumnChange::new(old, SchemaChangeKind::Dropped, Some(describe(old)), None));
        let kept = JobColumn {
            nullable: true,
            dropped: true,
            ..old.clone()
        };
        return Ok((kept, change));
    };
    let next = JobColumn {
        nullable: old.nullable || new.nullable || old.dropped,
        ..new.clone()
    };
    if old.dropped {
        // Back at the source: its destination column is loaded again.
        if old.tag != new.tag {
            return Err(another_type(old, new));
        }
        let change = ColumnChange::new(new, SchemaChangeKind::Added, None, Some(new.source_type.clone()));
        return Ok((next, Some(change)));
    }
    let retyped = old.source_type != new.source_type || old.source_arrow != new.source_arrow;
    let kind = if retyped {
        if !is_widening(old, new) {
            return Err(format!(
                "was {}, is now {}: not a widening change",
                old.source_type, new.source_type
            ));
        }
        if old.tag != new.tag {
            return Err(another_type(old, new));
        }
        SchemaChangeKind::Widened
    } else if next.nullable != old.nullable {
        SchemaChangeKind::Nullable
    } else {
        return Ok((next, None));
    };
    let change = ColumnChange::new(old, kind, Some(describe(old)), Some(describe(new)));
    Ok((next, Some(change)))
}

fn another_type(old: &JobColumn, new: &JobColumn) -> String {
    format!(
        "was {}, is now {}, which loads as another destination type",
        old.source_type, new.source_type
    )
}

impl ColumnChange {
    fn new(column: &JobColumn, kind: SchemaChangeKind, before: Option<String>, after: Option<String>) -> Self {
        Self {
            column: column.name.clone(),
            kind,
            before,
            after,
        }
    }
}

impl Evolution {
    /// Whether the job's recorded columns change.
    pub fn updates(&self, job: &JobRecord) -> bool {
        self.columns != job.columns
    }

    /// Whether the destination's columns are the `loaded` ones, in their
    /// order, with their names and types (a NOT NULL one may be NULLABLE
    /// at the destination): [`Evolution::arrange`] then moves no column.
    pub fn loads_in_place(&self, loaded: &SchemaRef) -> bool {
        self.sources.len() == loaded.fields().len()
            && self.sources.iter().enumerate().all(|(i, source)| *source == Some(i))
            && (self.target.fields().iter().zip(loaded.fields())).all(|(target, loaded)| {
                target.name() == loaded.name()
                    && target.data_type() == loaded.data_type()
                    && (target.is_nullable() || !loaded.is_nullable())
            })
    }

    /// A batch of the loaded columns as the destination's columns: in the
    /// destination's order, dropped ones as NULL.
    pub fn arrange(&self, batch: RecordBatch) -> Result<RecordBatch, EngineError> {
        arrange_into(&self.target, &self.sources, batch)
    }

    /// For each target column, its position among the loaded columns.
    pub fn sources(&self) -> &[Option<usize>] {
        &self.sources
    }
}

/// `batch` of the loaded columns as the `target` columns, each taken from
/// the loaded column `sources` names, or NULL.
pub(super) fn arrange_into(
    target: &SchemaRef,
    sources: &[Option<usize>],
    batch: RecordBatch,
) -> Result<RecordBatch, EngineError> {
    if batch.schema_ref() == target {
        return Ok(batch);
    }
    let arrays = target
        .fields()
        .iter()
        .zip(sources)
        .map(|(field, source)| match source {
            Some(i) => batch.column(*i).clone(),
            None => new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(target.clone(), arrays).map_err(|e| EngineError::Extract { message: e.to_string() })
}

/// The destination fields of `columns`: a loaded column's field from the
/// run's schema (NULLABLE where the destination's is), a dropped one's from
/// what the job recorded.
fn target_fields(columns: &[JobColumn], loaded: &JobColumns) -> Result<(Vec<Field>, Vec<Option<usize>>), EngineError> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut sources = Vec::with_capacity(columns.len());
    for column in columns {
        match loaded.schema.index_of(&column.name) {
            Ok(i) => {
                fields.push(loaded.schema.field(i).clone().with_nullable(column.nullable));
                sources.push(Some(i));
            }
            Err(_) => {
                let data_type = DataType::from_str(&column.arrow).map_err(|e| EngineError::InvalidJob {
                    message: format!(
                        "the dropped column \"{}\" cannot be kept: its recorded type {} does not read back ({e})",
                        column.name, column.arrow
                    ),
                })?;
                let mut field = Field::new(&column.name, data_type, true);
                if let Some(tag) = &column.tag {
                    field = field.with_metadata([(TYPE_METADATA.to_owned(), tag.clone())].into());
                }
                fields.push(field);
                sources.push(None);
            }
        }
    }
    Ok((fields, sources))
}

/// The fix for a change the job cannot follow.
fn recreate_fix(job: &JobRecord) -> String {
    format!(
        "Change the column back at the source, or DROP ETL JOB {0} WITH DATA and CREATE ETL JOB {0} again to load the table \
         with the new definition",
        job.name
    )
}

/// Follows `evolution` before run `run_id` of `job` writes anything: the
/// destination's columns change first, to `table` (the evolution's target,
/// with the columns Sluice adds to a CDC table); a no-op when a failed run
/// changed them already. Then the job's recorded columns and the changes
/// are saved in one catalog write, numbered from `seq_from` (a run that
/// follows changes more than once numbers on). A destination that cannot
/// follow a change fails the run with the column and the fix.
pub(crate) async fn apply(
    catalog: &Catalog,
    job: &JobRecord,
    (run_id, seq_from): (u64, u32),
    destination: &dyn Destination,
    evolution: &Evolution,
    table: &SchemaRef,
) -> Result<(), EngineError> {
    if !evolution.updates(job) {
        return Ok(());
    }
    if !evolution.changes.is_empty() {
        destination
            .evolve_table(&job.destination.table, table)
            .await
            .map_err(|e| match e {
                DestinationError::SchemaMismatch { differences, .. } => {
                    let change = evolution
                        .changes
                        .iter()
                        .find(|c| differences.iter().any(|d| d.contains(&format!("\"{}\"", c.column))))
                        .unwrap_or(&evolution.changes[0]);
                    EngineError::SchemaChange {
                        job: job.name.clone(),
                        column: change.column.clone(),
                        change: format!(
                            "was {}, is now {}, which the destination cannot follow ({})",
                            change.before.as_deref().unwrap_or("absent"),
                            change.after.as_deref().unwrap_or("dropped"),
                            differences.join("; ")
                        ),
                        fix: recreate_fix(job),
                    }
                }
                other => other.into(),
            })?;
    }
    let at = Utc::now();
    let records: Vec<SchemaChangeRecord> = evolution
        .changes
        .iter()
        .enumerate()
        .map(|(seq, change)| SchemaChangeRecord {
            job: job.name.clone(),
            run_id,
            seq: seq_from + seq as u32,
            column: change.column.clone(),
            kind: change.kind,
            before: change.before.clone(),
            after: change.after.clone(),
            at,
        })
        .collect();
    catalog.record_schema_changes(&job.name, &evolution.columns, &records)?;
    for change in &evolution.changes {
        info!(job = %job.name, run_id, column = %change.column, change = change.kind.as_str(), "followed a source schema change");
    }
    Ok(())
}

/// What a column is to the job besides data: its cursor or a dedupe key.
fn key_role(job: &JobRecord, column: &str) -> Option<&'static str> {
    match &job.load {
        LoadType::Incremental { cursor, .. } if cursor == column => Some("cursor"),
        LoadType::Incremental {
            lookback: Some(lookback),
            ..
        } if lookback.dedupe_on.iter().any(|c| c == column) => Some("DEDUPE ON key"),
        _ => None,
    }
}

/// A column's source type as shown in changes.
fn describe(column: &JobColumn) -> String {
    if column.nullable {
        column.source_type.clone()
    } else {
        format!("{} NOT NULL", column.source_type)
    }
}

/// Whether `new` holds every value `old` did: a wider Arrow type, or the
/// same one with no smaller type parameters (`varchar(20)` to
/// `varchar(40)` or `text`, `timestamp(3)` to `timestamp(6)`).
fn is_widening(old: &JobColumn, new: &JobColumn) -> bool {
    if old.source_arrow != new.source_arrow {
        return match (
            DataType::from_str(&old.source_arrow),
            DataType::from_str(&new.source_arrow),
        ) {
            (Ok(old), Ok(new)) => widens(&old, &new),
            _ => false,
        };
    }
    let (old, new) = (parameters(&old.source_type), parameters(&new.source_type));
    match (old.is_empty(), new.is_empty()) {
        // Unbounded now (text, or a display width dropped).
        (_, true) => true,
        (true, false) => false,
        (false, false) => old.len() == new.len() && old.iter().zip(&new).all(|(o, n)| n >= o),
    }
}

/// The numbers in a type's parentheses: `numeric(12,2)` is `[12, 2]`.
fn parameters(source_type: &str) -> Vec<u64> {
    let Some((_, rest)) = source_type.split_once('(') else {
        return Vec::new();
    };
    let inside = rest.split(')').next().unwrap_or_default();
    inside.split(',').filter_map(|p| p.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use datafusion::arrow::array::{Array, Int32Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::TimeUnit;
    use sluice_catalog::{IncrementalStart, JobDestination, JobSource};

    use super::*;
    use crate::contract::{ColumnInfo, TableKind, TableRef};
    use crate::type_mapping::{BigQueryType, Confidence, TypeMapping};

    fn source_column(name: &str, source_type: &str, arrow: DataType, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            ordinal: 1,
            source_type: source_type.into(),
            nullable,
            default: None,
            primary_key_position: None,
            indexed: false,
            mapping: TypeMapping {
                arrow,
                bigquery: BigQueryType::Int64,
                repeated: false,
                confidence: Confidence::High,
                warnings: vec![],
            },
        }
    }

    fn description(columns: Vec<ColumnInfo>) -> TableDescription {
        TableDescription {
            table: TableRef {
                schema: "public".into(),
                name: "t".into(),
            },
            kind: TableKind::Table,
            columns,
            estimated_rows: None,
        }
    }

    /// Job `j`, incremental by `id`, having recorded the columns of `created`.
    fn job(created: Vec<ColumnInfo>) -> JobRecord {
        let mut job = JobRecord {
            name: "j".into(),
            source: JobSource {
                connection: "shop".into(),
                schema: "public".into(),
                table: "t".into(),
                columns: None,
            },
            destination: JobDestination {
                connection: None,
                table: "t".into(),
            },
            load: LoadType::Incremental {
                cursor: "id".into(),
                start: IncrementalStart::All,
                lookback: None,
            },
            column_overrides: vec![],
            schedule: "MANUAL".into(),
            batch_rows: 8192,
            max_retries: 3,
            catch_up: Default::default(),
            layout: Default::default(),
            guard: Default::default(),
            on_schema_change: Default::default(),
            verify: Default::default(),
            columns: Vec::new(),
            freshness_target_seconds: None,
            labels: Default::default(),
            source_settings: Default::default(),
            reload: false,
            cdc: Default::default(),
            parallelism: None,
            execution: Default::default(),
            paused: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        job.columns = record(&JobColumns::resolve(&job, description(created)).unwrap());
        job
    }

    fn evolve(job: &JobRecord, now: Vec<ColumnInfo>) -> Result<(Evolution, JobColumns), EngineError> {
        let now = description(now);
        let loaded = JobColumns::resolve(&without_dropped(job, &now), now)?;
        compare(job, &loaded).map(|evolution| (evolution, loaded))
    }

    fn created() -> Vec<ColumnInfo> {
        vec![
            source_column("id", "integer", DataType::Int32, false),
            source_column("qty", "integer", DataType::Int32, false),
            source_column("note", "text", DataType::Utf8, true),
        ]
    }

    #[test]
    fn added_dropped_and_widened_columns_are_followed_and_rows_arranged() {
        let job = job(created());
        let now = vec![
            source_column("id", "integer", DataType::Int32, false),
            source_column("extra", "text", DataType::Utf8, true),
            source_column("qty", "bigint", DataType::Int64, false),
        ];
        let (evolution, loaded) = evolve(&job, now).unwrap();
        let changes: Vec<_> = evolution
            .changes
            .iter()
            .map(|c| format!("{} {} {:?} {:?}", c.column, c.kind.as_str(), c.before, c.after))
            .collect();
        assert_eq!(
            changes,
            [
                r#"qty widened Some("integer NOT NULL") Some("bigint NOT NULL")"#,
                r#"note dropped Some("text") None"#,
                r#"extra added None Some("text")"#,
            ]
        );
        let target: Vec<_> = evolution
            .target
            .fields()
            .iter()
            .map(|f| format!("{} {} {}", f.name(), f.data_type(), f.is_nullable()))
            .collect();
        assert_eq!(
            target,
            ["id Int32 false", "qty Int64 false", "note Utf8 true", "extra Utf8 true"]
        );
        assert!(evolution.updates(&job));
        let batch = RecordBatch::try_new(
            loaded.schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1])),
                Arc::new(StringArray::from(vec!["x"])),
                Arc::new(Int64Array::from(vec![5_000_000_000])),
            ],
        )
        .unwrap();
        let arranged = evolution.arrange(batch).unwrap();
        assert_eq!(arranged.schema(), evolution.target);
        assert_eq!(arranged.column(2).null_count(), 1);
        assert_eq!(arranged.column(3).as_ref(), &StringArray::from(vec!["x"]) as &dyn Array);

        // The next run finds the job up to date.
        let mut followed = job.clone();
        followed.columns = evolution.columns.clone();
        let now = vec![
            source_column("id", "integer", DataType::Int32, false),
            source_column("extra", "text", DataType::Utf8, true),
            source_column("qty", "bigint", DataType::Int64, false),
        ];
        let (again, _) = evolve(&followed, now).unwrap();
        assert!(again.changes.is_empty() && !again.updates(&followed));
        assert_eq!(again.target, evolution.target);
    }

    #[test]
    fn narrowing_a_dropped_cursor_and_any_change_under_fail_are_refused() {
        let job = job(created());
        let refusal = |result: Result<(Evolution, JobColumns), EngineError>| match result {
            Err(EngineError::SchemaChange { column, change, .. }) => format!("{column}: {change}"),
            other => panic!("not refused: {:?}", other.map(|(e, _)| e.changes)),
        };
        let mut narrowed = created();
        narrowed[1] = source_column("qty", "smallint", DataType::Int16, false);
        assert_eq!(
            refusal(evolve(&job, narrowed)),
            "qty: was integer, is now smallint: not a widening change"
        );
        let without_cursor = created()[1..].to_vec();
        assert!(refusal(evolve(&job, without_cursor)).contains("the job's cursor"));

        let mut strict = job.clone();
        strict.on_schema_change = SchemaChangePolicy::Fail;
        let mut added = created();
        added.push(source_column("extra", "text", DataType::Utf8, true));
        assert_eq!(refusal(evolve(&strict, added)), "extra: was absent, is now text");
        assert!(evolve(&strict, created()).is_ok(), "no change, no failure");
    }

    #[test]
    fn a_column_list_keeps_its_dropped_column_and_ignores_new_ones() {
        let mut listed = job(created());
        listed.source.columns = Some(vec!["id".into(), "note".into()]);
        listed.columns = record(&JobColumns::resolve(&listed, description(created())).unwrap());
        let now = vec![
            source_column("id", "integer", DataType::Int32, false),
            source_column("qty", "integer", DataType::Int32, false),
            source_column("extra", "text", DataType::Utf8, true),
        ];
        let (evolution, loaded) = evolve(&listed, now).unwrap();
        assert_eq!(loaded.schema.fields().len(), 1, "only id is read");
        let changes: Vec<_> = evolution.changes.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(changes, ["dropped"]);
        let names: Vec<_> = evolution.target.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "note"]);
    }

    #[test]
    fn a_job_without_recorded_columns_records_todays() {
        let mut old = job(created());
        old.columns.clear();
        old.on_schema_change = SchemaChangePolicy::Fail;
        let (evolution, loaded) = evolve(&old, created()).unwrap();
        assert!(evolution.changes.is_empty());
        assert_eq!(evolution.columns, record(&loaded));
        assert!(evolution.updates(&old));
    }

    fn column(source_type: &str, arrow: DataType) -> JobColumn {
        JobColumn {
            name: "c".into(),
            source_type: source_type.into(),
            source_arrow: arrow.to_string(),
            arrow: arrow.to_string(),
            tag: None,
            nullable: true,
            dropped: false,
        }
    }

    #[test]
    fn widenings_are_told_from_narrowings() {
        let text = || DataType::Utf8;
        for (old, new, widening) in [
            (
                column("integer", DataType::Int32),
                column("bigint", DataType::Int64),
                true,
            ),
            (
                column("bigint", DataType::Int64),
                column("integer", DataType::Int32),
                false,
            ),
            (
                column("character varying(20)", text()),
                column("character varying(40)", text()),
                true,
            ),
            (column("character varying(20)", text()), column("text", text()), true),
            (
                column("character varying(20)", text()),
                column("character varying(5)", text()),
                false,
            ),
            (column("text", text()), column("varchar(5)", text()), false),
            (
                column("int(11)", DataType::Int32),
                column("bigint(20)", DataType::Int64),
                true,
            ),
            (column("integer", DataType::Int32), column("text", text()), false),
        ] {
            assert_eq!(
                is_widening(&old, &new),
                widening,
                "{} -> {}",
                old.source_type,
                new.source_type
            );
        }
    }

    #[test]
    fn recorded_arrow_types_read_back() {
        for data_type in [
            DataType::Int32,
            DataType::Decimal128(12, 2),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Utf8,
            DataType::Date32,
        ] {
            assert_eq!(DataType::from_str(&data_type.to_string()).unwrap(), data_type);
        }
    }
}
