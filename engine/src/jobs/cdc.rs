//! Change-data-capture jobs (docs/cdc.md): the checks at `CREATE`, the runs
//! and the clean-up at `DROP`.
//!
//! A run of a job whose destination holds no position yet takes the first
//! load: it creates the replication slot, reads the table in the snapshot
//! the slot exported and commits it with the slot's consistent point. Every
//! later run drains the change log up to what was committed when it began
//! (a marker it writes into the log): it applies whole transactions in
//! micro-batches, each committed at the destination together with its
//! position, and only then confirms that position to the source. A
//! transaction at or below the destination's position is skipped, so a
//! crash anywhere re-delivers from there without duplicates.

use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use sluice_catalog::{CdcMode, CdcPhase, CdcState, JobRecord, LoadType, RunRecord, RunTrigger, Transaction};
use tracing::{info, warn};

use super::cdc_drain::{Drain, seconds_between};
use super::cdc_schema::{Followed, by_name};
use super::continuous::is_continuous;
use super::define::JobColumns;
use super::runner::{Progress, RunSummary, Work};
use super::wal_guardian;
use super::{ActiveRun, JobManager};
use crate::cdc::{snapshot_changes, snapshot_truncate};
use crate::contract::{Capture, CdcError, ChangeSource, Destination, Position, TableDescription, WriteMode};
use crate::error::EngineError;
use crate::failpoint;

/// What `DROP ETL JOB` did at a CDC job's source.
pub(super) enum Released {
    /// The job held nothing there (MySQL/MariaDB, or no first load yet).
    Nothing,
    /// Its replication slot (and publication) are dropped.
    Dropped,
    /// `FORCE`: the source could not drop them; `sql` does, run there.
    Left { sql: String },
}

/// Rows per change batch a stream builds.
const BATCH_ROWS: usize = 8192;

/// How many times a run follows a schema change its stream met before it
/// gives up (the next run goes on).
const MAX_SCHEMA_RESTARTS: u32 = 16;

/// `MERGE` or `HISTORY`, as SQL writes it.
pub fn cdc_mode_sql(mode: CdcMode) -> &'static str {
    match mode {
        CdcMode::Merge => "MERGE",
        CdcMode::History => "HISTORY",
    }
}

/// What a CDC job captures: its columns of the source table.
pub(super) fn capture(job: &JobRecord, columns: &JobColumns, mode: CdcMode) -> Capture {
    let description = &columns.description;
    Capture {
        publication: job.cdc.publication.clone(),
        server_id: job.cdc.server_id,
        description: TableDescription {
            columns: columns
                .indexes
                .iter()
                .map(|&i| description.columns[i].clone())
                .collect(),
            ..description.clone()
        },
        mode,
        parallel: None,
        batch_rows: BATCH_ROWS,
        every_column: job.source.columns.is_none(),
    }
}

/// Refuses the CDC settings on jobs they do not apply to (`22023`):
/// `soft_delete` outside `CDC MERGE`; `CONTINUOUS`, `max_retained_wal`,
/// `flush_rows`, `flush_interval`, `publication` and `server_id` outside
/// CDC.
pub(super) fn check_cdc_settings(job: &JobRecord) -> Result<(), EngineError> {
    let refuse = |what: &str| {
        Err(EngineError::InvalidJob {
            message: format!("ETL job \"{}\": {what}", job.name),
        })
    };
    match job.load {
        LoadType::Cdc { mode: CdcMode::History } if job.cdc.soft_delete => {
            refuse("soft_delete applies to CDC MERGE only: a HISTORY table keeps every delete as a row already")
        }
        LoadType::Cdc { .. } if job.execution == sluice_catalog::Execution::Cluster => refuse(
            "a CDC job streams changes on this server; execution = 'cluster' applies to SNAPSHOT and INCREMENTAL jobs",
        ),
        LoadType::Cdc { .. } => Ok(()),
        _ if job.cdc.soft_delete => refuse("soft_delete applies to CDC MERGE jobs only"),
        _ if job.cdc.max_retained_wal.is_some() => refuse("max_retained_wal applies to CDC jobs only"),
        _ if job.cdc.flush_rows.is_some() => refuse("flush_rows applies to CDC jobs only"),
        _ if job.cdc.flush_interval_seconds.is_some() => refuse("flush_interval applies to CDC jobs only"),
        _ if job.cdc.publication.is_some() => refuse("publication applies to CDC jobs only"),
        _ if job.cdc.server_id.is_some() => refuse("server_id applies to CDC jobs only"),
        _ if is_continuous(job) => {
            refuse("only a CDC job can be CONTINUOUS (a change stream kept open); give it a SCHEDULE instead")
        }
        _ => Ok(()),
    }
}

pub(super) fn capture_error(job: &JobRecord) -> impl Fn(CdcError) -> EngineError + '_ {
    |error| EngineError::ChangeCapture {
        connection: job.source.connection.clone(),
        error,
    }
}

impl JobManager {
    /// The checks of `CREATE ETL JOB ... CDC`, before anything is saved:
    /// what is supported (into the warehouse or BigQuery, no column type
    /// overrides) and the source's set-up (`ChangeSource::check`). Returns
    /// the source's notices.
    pub(super) async fn check_cdc(
        &self,
        job: &JobRecord,
        mode: CdcMode,
        columns: &JobColumns,
    ) -> Result<Vec<String>, EngineError> {
        let unsupported = |reason: String| {
            Err(EngineError::OperationNotSupported {
                operation: "CREATE",
                job: job.name.clone(),
                reason,
            })
        };
        if !self
            .destination(job.destination.connection.as_deref())?
            .supports_changes()
        {
            return unsupported(
                "change data capture loads into the local warehouse (INTO table) or a BigQuery connection only".into(),
            );
        }
        if !job.column_overrides.is_empty() {
            return unsupported("a CDC job loads the source's own column types: leave out COLUMNS (...)".into());
        }
        let changes = self.connections.change_source(&job.source.connection)?;
        changes
            .check(&capture(job, columns, mode))
            .await
            .map_err(capture_error(job))
    }

    /// Drops the replication slot and publication a CDC job created. What
    /// it did: nothing to drop, dropped, or (`force`, the source could not
    /// drop them) left at the source, with the SQL that drops them there.
    pub(super) async fn release_cdc(&self, job: &JobRecord, force: bool) -> Result<Released, EngineError> {
        let Some(state) = self.catalog().cdc_state(&job.name)? else {
            return Ok(Released::Nothing);
        };
        let Some(slot) = state.slot.clone() else {
            return Ok(Released::Nothing);
        };
        let released = match self.connections.change_source(&job.source.connection) {
            Ok(changes) => changes.release(&state).await,
            Err(EngineError::ChangeCapture { error, .. }) => Err(error),
            Err(e) => return Err(e),
        };
        let publication = state.publication.clone().filter(|_| state.created_publication);
        match released {
            Ok(()) => {
                info!(job = %job.name, slot, "released the job's replication slot and publication");
                Ok(Released::Dropped)
            }
            Err(error) if force => {
                warn!(job = %job.name, slot, error = %error, "dropped the job, leaving its replication slot at the source");
                let mut sql = format!("SELECT pg_drop_replication_slot('{slot}');");
                if let Some(publication) = &publication {
                    sql.push_str(&format!(" DROP PUBLICATION \"{publication}\";"));
                }
                Ok(Released::Left { sql })
            }
            Err(error) => Err(EngineError::SourceObjectsKept {
                job: job.name.clone(),
                objects: match &publication {
                    Some(publication) => format!("its replication slot \"{slot}\" and publication \"{publication}\""),
                    None => format!("its replication slot \"{slot}\""),
                },
                connection: job.source.connection.clone(),
                error: Box::new(error),
            }),
        }
    }

    /// Inside a transaction block, marks `job` `needs resync` if the block
    /// is rolled back: its slot, released by the `DROP` that the rollback
    /// undoes, is gone at the source whatever the block does. Runs before
    /// the block's hold on the job's stream ends (rollback effects run
    /// newest first), so no stream starts from the missing slot.
    pub(super) fn needs_resync_on_rollback(&self, job: &str) {
        let catalog = Arc::clone(self.catalog());
        let job = job.to_owned();
        Transaction::on_rollback(Box::pin(async move {
            let reason = "its replication slot was dropped by a DROP ETL JOB that was rolled back".to_owned();
            let marked = catalog.update_cdc_state(&job, |state| {
                state.phase = CdcPhase::NeedsResync { reason };
                state.lag_bytes = None;
            });
            if let Err(e) = marked {
                warn!(job, error = %e, "could not mark the job needs resync after a rolled back DROP");
            }
        }));
    }

    /// Whether the WAL guardian gave `job`'s slot up (`needs resync`): its
    /// runs fail until `RESYNC ETL JOB`.
    pub fn needs_resync(&self, job: &str) -> Result<bool, EngineError> {
        Ok(self.catalog().cdc_state(job)?.is_some_and(|state| state.needs_resync()))
    }

    /// `RESYNC ETL JOB name`: a run (trigger `resync`) that drops the job's
    /// slot and publication, takes a fresh snapshot into the destination
    /// and drains from the new slot; how a job leaves `needs resync`.
    /// Refused while the job runs ([`EngineError::JobRunning`]).
    pub async fn resync_job(
        &self,
        name: &str,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<RunSummary, EngineError> {
        let job = self.catalog().job(name)?;
        let LoadType::Cdc { mode } = job.load else {
            return Err(EngineError::OperationNotSupported {
                operation: "RESYNC",
                job: name.to_owned(),
                reason: "only a CDC job has a change stream to restart; RUN ETL JOB instead".into(),
            });
        };
        // A continuous job's stream stops for the resync and starts again
        // from the new slot after it.
        let _stopped = self.hold_stream(name).await?;
        self.run_work(name, RunTrigger::Resync, Work::Resync(mode), progress)
            .await
    }

    /// One run of a CDC job: the first load (or a resync's snapshot), or a
    /// drain of the change log. A drain that meets a newer definition of
    /// the table stops there; the run follows it and drains on from what
    /// the destination committed.
    pub(super) async fn execute_cdc(
        &self,
        job: &JobRecord,
        mode: CdcMode,
        run: &mut RunRecord,
        active: &ActiveRun,
        resync: bool,
    ) -> Result<(), EngineError> {
        let changes = self.connections.change_source(&job.source.connection)?;
        let destination = self.destination(job.destination.connection.as_deref())?;
        let table = job.destination.table.as_str();
        let last = destination.last_commit(table).await?;
        let committed = last
            .as_ref()
            .and_then(|state| state.watermark.as_deref())
            .map(Position::from_json)
            .transpose()
            .map_err(|reason| EngineError::InvalidJob {
                message: format!("destination table \"{table}\" holds no change position: {reason}"),
            })?;
        let mut state = self
            .catalog()
            .cdc_state(&job.name)?
            .unwrap_or_else(|| CdcState::new(&job.name));
        let snapshot = match &state.phase {
            _ if resync => true,
            CdcPhase::NeedsResync { reason } => {
                return Err(capture_error(job)(CdcError::NeedsResync {
                    job: job.name.clone(),
                    reason: reason.clone(),
                }));
            }
            // An interrupted first load or resync is taken again unless
            // its destination commit made it.
            CdcPhase::Snapshotting { run } => last.as_ref().is_none_or(|commit| commit.run_id != *run),
            CdcPhase::Created | CdcPhase::Streaming => committed.is_none(),
        };
        let run_id = run.id;
        let cancelled = move || EngineError::Cancelled { run_id };
        let mut followed = self.follow_cdc_schema(job, mode, (run.id, 0), &*destination).await?;
        let mut position = match committed {
            Some(position) if !snapshot => {
                // The destination's position is the truth the cache follows.
                state.position = Some(position.to_json());
                wal_guardian::check(job, &*changes, self.catalog(), &mut state).await?;
                position
            }
            committed => {
                // HISTORY keeps what it recorded: a resync appends to it.
                let append = mode == CdcMode::History && committed.is_some();
                let load = self.first_load(&followed, &*changes, &*destination, append, &mut state, run);
                tokio::select! {
                    position = load => position?,
                    () = active.cancel.notified() => return Err(cancelled()),
                }
            }
        };
        let mut restarts = 0;
        let drained = loop {
            let drain = Drain {
                job: &followed.job,
                capture: &followed.capture,
                changes: &*changes,
                destination: &*destination,
                spec: &followed.spec,
                rows: &followed.changes,
                active,
                catalog: self.catalog(),
                metrics: &self.metrics,
            };
            let drained = drain.run(&mut state, position, run).await?;
            let Some(detail) = &drained.schema_changed else {
                break drained;
            };
            restarts += 1;
            if restarts > MAX_SCHEMA_RESTARTS {
                return Err(capture_error(job)(CdcError::Unsupported(format!(
                    "the table's definition kept changing while the run read its changes ({detail}); run the job again"
                ))));
            }
            info!(job = %job.name, run_id = run.id, detail, "the source table changed: following it");
            followed = self
                .follow_cdc_schema(&followed.job, mode, (run.id, followed.followed), &*destination)
                .await?;
            position = drained.committed;
        };
        state.phase = CdcPhase::Streaming;
        state.position = Some(drained.committed.to_json());
        let now = Utc::now();
        if let Some(caught_up_at) = drained.caught_up_at {
            state.lag_seconds = Some(seconds_between(caught_up_at, now));
            state.checked_at = Some(now);
        }
        match changes.retained(&state).await {
            Ok(retention) => state.lag_bytes = retention.and_then(|r| r.behind),
            Err(e) => warn!(job = %job.name, error = %e, "could not measure the WAL the slot holds back"),
        }
        self.catalog().set_cdc_state(&state)?;
        Ok(())
    }

    /// Drops what an earlier slot left (a resync, an interrupted first
    /// load), creates the source's objects and the slot, and commits the
    /// table as of the slot's exported snapshot with the slot's consistent
    /// point: in place of the table's rows, or (`append`, a `HISTORY`
    /// resync) after them, behind a `truncate` row.
    async fn first_load(
        &self,
        followed: &Followed,
        changes: &dyn ChangeSource,
        destination: &dyn Destination,
        append: bool,
        state: &mut CdcState,
        run: &mut RunRecord,
    ) -> Result<Position, EngineError> {
        let Followed {
            job,
            capture,
            spec,
            table: schema,
            ..
        } = followed;
        let failed = capture_error(job);
        // Saved before anything at the source changes: a crash from here
        // on leaves a phase the next run takes the snapshot again from,
        // and names (slot, publication) it drops first.
        state.phase = CdcPhase::Snapshotting { run: run.id };
        self.catalog().set_cdc_state(state)?;
        if state.slot.is_some() {
            changes.release(state).await.map_err(&failed)?;
            failpoint::hit("cdc_resync_released")?;
        }
        changes
            .prepare(capture, self.catalog().instance_id(), state)
            .await
            .map_err(&failed)?;
        self.catalog().set_cdc_state(state)?;
        let (mut rows, position) = changes.snapshot(capture, state).await.map_err(&failed)?;
        let table = job.destination.table.as_str();
        let mode = if append { WriteMode::Append } else { WriteMode::Replace };
        let mut load = destination.begin(table, run.id, mode).await?;
        let commit_ts = Utc::now().timestamp_micros();
        let scan_schema = rows.schema();
        let copied = async {
            if append {
                load.write(by_name(&snapshot_truncate(&scan_schema, &position, commit_ts), schema)?)
                    .await?;
            }
            while let Some(batch) = rows.next().await {
                let batch = batch.map_err(|e| EngineError::from_scan(&job.source.connection, e))?;
                run.rows += batch.num_rows() as u64;
                let changes = snapshot_changes(&batch, &position, commit_ts);
                load.write(by_name(&changes, schema)?).await?;
            }
            failpoint::hit("cdc_snapshot_before_commit")?;
            Ok::<_, EngineError>(())
        }
        .await;
        if let Err(e) = copied {
            if let Err(abort) = load.abort().await {
                warn!(error = %abort, "could not discard the partial first load");
            }
            return Err(e);
        }
        let report = load.commit(Some(position.to_json())).await?;
        run.bytes += report.bytes;
        failpoint::hit("cdc_snapshot_committed")?;
        // An empty change batch records the table's change layout (what
        // `<table>_current` reads by).
        destination
            .begin_changes(table, run.id, spec)
            .await?
            .commit(Some(position.to_json()))
            .await?;
        state.phase = CdcPhase::Streaming;
        state.position = Some(position.to_json());
        self.catalog().set_cdc_state(state)?;
        info!(job = %job.name, rows = run.rows, position = %position.to_json(), append, "snapshot committed");
        Ok(position)
    }
}
