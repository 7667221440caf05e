//! The server's side of a cluster run: split the scan, hand the tasks to
//! the cluster, adopt the files they wrote into the run's load.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::scalar::ScalarValue;
use sluice_catalog::{JobRecord, MasterKey, RunRecord};
use tokio::sync::Notify;
use tracing::info;

use super::super::define::JobColumns;
use super::super::progress::LiveProgress;
use super::super::schema_changes::Evolution;
use super::super::{JobManager, split, window};
use super::task::{ExtractTask, FileOrigin, Role, TaskConnection, TaskOutput};
use super::{Cluster, Placement};
use crate::contract::{LoadTransaction, ScanPart, ScanRequest, SharedStore, SharedTarget, Source};
use crate::error::EngineError;
use sluice_catalog::Execution;

/// A server's cluster: where it sends extracts, the key that seals their
/// connection options, and how many tasks a run has by default.
#[derive(Clone)]
pub struct ClusterHandle {
    pub cluster: Arc<dyn Cluster>,
    pub key: MasterKey,
    /// Tasks of a run whose job sets no `parallelism`.
    pub tasks: usize,
}

/// The part of a run the cluster does, as the runner has planned it.
pub(in crate::jobs) struct ClusterExtract<'a> {
    pub job: &'a JobRecord,
    pub source: &'a dyn Source,
    pub columns: &'a JobColumns,
    pub request: &'a ScanRequest,
    /// The cursor's name and position among the loaded columns.
    pub cursor: Option<&'a (String, usize)>,
    /// Where the scan has each row's `_file`, for a file table by
    /// `_modified_at`.
    pub files: Option<FileOrigin>,
    pub evolution: &'a Evolution,
}

/// What the tasks did, together.
pub(in crate::jobs) struct Extracted {
    pub rows: u64,
    /// The largest cursor value read.
    pub high: Option<ScalarValue>,
    /// The files read at that value (a file table by `_modified_at`).
    pub high_files: Vec<String>,
}

impl JobManager {
    /// Where `job`'s next load runs: on the cluster when the server has
    /// one, the job does not ask for `local`, its source splits, its
    /// destination shares files (`shares_files`) and the run needs nothing
    /// of this server (`server_only` says what it needs, if anything); a job
    /// that asks for the cluster and cannot is refused.
    pub(in crate::jobs) fn placement(
        &self,
        job: &JobRecord,
        source: &dyn Source,
        shares_files: bool,
        split_ok: bool,
        server_only: Option<&str>,
    ) -> Result<Placement, EngineError> {
        let explicit = match job.execution {
            Execution::Local => return Ok(Placement::Local(None)),
            Execution::Cluster => true,
            Execution::Default => false,
        };
        let refuse = |reason: &str| match explicit {
            true => Err(EngineError::NotForCluster {
                job: job.name.clone(),
                reason: reason.into(),
            }),
            false => Ok(Placement::Local(Some(reason.into()))),
        };
        if self.cluster.is_none() {
            return match explicit {
                true => refuse("this server has no cluster; start it with --cluster df://scheduler:50050"),
                false => Ok(Placement::Local(None)),
            };
        }
        if let Some(reason) = server_only {
            return refuse(reason);
        }
        if !source.supports_split_scan() {
            return refuse("its source cannot be split into parts that executors read in one snapshot");
        }
        if !split_ok && !source.splits_itself() {
            return refuse("its table has no integer primary key or NOT NULL integer cursor to split on");
        }
        if !shares_files {
            return refuse(
                "executors write into a warehouse in a bucket (--warehouse s3://..., gs://..., az://...) or a \
                 BigQuery connection's staging_bucket, and its destination is neither",
            );
        }
        Ok(Placement::Cluster)
    }

    /// What of this server a run needs, if anything: the keys a LOOKBACK
    /// window is deduplicated against (`dedupes`).
    pub(in crate::jobs) fn server_only(dedupes: bool) -> Option<&'static str> {
        dedupes.then_some("its LOOKBACK window is deduplicated against keys read on this server")
    }

    /// How EXPLAIN says where a load runs.
    pub(in crate::jobs) fn placement_text(
        &self,
        job: &JobRecord,
        source: &dyn Source,
        placement: &Placement,
    ) -> String {
        match (placement, &self.cluster) {
            (Placement::Cluster, Some(handle)) => format!(
                "on the cluster at {}: {} tasks, each {} and written by an executor into {}; this server commits",
                handle.cluster.scheduler(),
                job.parallelism.map_or(handle.tasks, |n| n as usize).max(1),
                match source.splits_itself() {
                    true => "one of the source's own segments of the read",
                    false => "a range of the split column read in one snapshot",
                },
                match job.destination.connection {
                    None => "the warehouse's bucket as Parquet",
                    Some(_) => "the destination's staging bucket as load chunks",
                }
            ),
            (Placement::Local(Some(reason)), _) => format!("on this server: {reason}"),
            _ => "on this server".to_owned(),
        }
    }

    /// Runs the extract on the cluster into `transaction`'s `target`,
    /// committing nothing; `run` records the tasks (sent, then done) and
    /// the executors that ran them.
    pub(in crate::jobs) async fn extract_on_cluster(
        &self,
        plan: ClusterExtract<'_>,
        run: &mut RunRecord,
        target: SharedTarget,
        transaction: &mut dyn LoadTransaction,
        live: &LiveProgress,
        cancel: &Notify,
    ) -> Result<Extracted, EngineError> {
        let handle = self
            .cluster
            .as_ref()
            .expect("placed on the cluster only when there is one");
        let job = plan.job;
        let description = &plan.columns.description;
        let split = match plan.source.splits_itself() {
            true => None,
            false => Some(split::split_column(description, plan.cursor.map(|c| c.0.as_str()))?),
        };
        let parts = job.parallelism.map_or(handle.tasks, |n| n as usize).max(1);
        let scan = (plan.source.split_scan(description, plan.request, split, parts).await).map_err(|error| {
            EngineError::Source {
                connection: job.source.connection.clone(),
                error,
            }
        })?;
        let (kind, options) = self
            .connections
            .source_options_of(&job.source.connection, &job.source_settings)?;
        let seal_for = |role| (job.name.as_str(), run.id, role);
        let source = TaskConnection::seal(
            &job.source.connection,
            &kind,
            &options,
            &handle.key,
            seal_for(Role::Source),
        );
        let destination = match (&target.store, &job.destination.connection) {
            (SharedStore::Connection, Some(name)) => {
                let (kind, options) = self.connections.destination_options_of(name)?;
                Some(TaskConnection::seal(
                    name,
                    &kind,
                    &options,
                    &handle.key,
                    seal_for(Role::Destination),
                ))
            }
            _ => None,
        };
        let tasks: Vec<ExtractTask> = (scan.parts.iter().enumerate())
            .map(|(part, ScanPart { request, snapshot })| ExtractTask {
                job: job.name.clone(),
                run_id: run.id,
                part: part as u32,
                source: source.clone(),
                schema: description.table.schema.clone(),
                table: description.table.name.clone(),
                columns: (request.columns.iter())
                    .map(|&i| description.columns[i].name.clone())
                    .collect(),
                filter: request.filter.clone(),
                segment: request.segment,
                batch_rows: request.batch_rows,
                snapshot: snapshot.clone(),
                loaded: plan.columns.schema.clone(),
                cursor: plan.cursor.map(|c| c.1),
                files: plan.files,
                arrangement: plan.evolution.sources().to_vec(),
                store: target.store.clone(),
                destination: destination.clone(),
                prefix: target.prefix.clone(),
                target_schema: target.schema.clone(),
            })
            .collect();
        let total = tasks.len();
        run.tasks_total = Some(total as u64);
        run.tasks_done = Some(0);
        self.catalog().update_run(run)?;
        info!(job = %job.name, run_id = run.id, tasks = total, scheduler = handle.cluster.scheduler(), "extract sent to the cluster");
        // `sluice.runs` shows the tasks done as they finish.
        let (done_tx, mut done_rx) = tokio::sync::watch::channel(0);
        let progress = move |done| {
            let _ = done_tx.send(done);
        };
        let running = handle.cluster.run(tasks, &progress);
        tokio::pin!(running);
        let outputs = loop {
            tokio::select! {
                outputs = &mut running => break outputs,
                Ok(()) = done_rx.changed() => {
                    run.tasks_done = Some(*done_rx.borrow_and_update());
                    self.catalog().update_run(run)?;
                }
                () = cancel.notified() => return Err(EngineError::Cancelled { run_id: run.id }),
            }
        };
        // The snapshot may end once every task has read its part.
        drop(scan);
        let outputs =
            (outputs.and_then(|outputs| one_per_part(outputs, total))).map_err(|message| EngineError::Cluster {
                scheduler: handle.cluster.scheduler().to_owned(),
                message,
            })?;
        let cursor_type = plan.cursor.map(|c| plan.columns.schema.field(c.1).data_type().clone());
        let mut extracted = Extracted {
            rows: 0,
            high: None,
            high_files: Vec::new(),
        };
        let mut executors = BTreeMap::<&str, usize>::new();
        let mut highs = Vec::with_capacity(outputs.len());
        for output in &outputs {
            extracted.rows += output.rows;
            *executors.entry(&output.executor).or_default() += 1;
            if let (Some(high), Some(cursor_type)) = (&output.high, &cursor_type) {
                let high = window::parse(high, cursor_type)?;
                extracted.high = window::greater(extracted.high.take(), Some(high.clone()));
                highs.push((high, &output.high_files));
            }
        }
        extracted.high_files = (highs.into_iter())
            .filter(|(high, _)| Some(high) == extracted.high.as_ref())
            .flat_map(|(_, files)| files.iter().cloned())
            .collect();
        info!(job = %job.name, run_id = run.id, rows = extracted.rows, ?executors, "cluster tasks done");
        run.tasks_done = Some(outputs.len() as u64);
        run.executors = Some(
            (executors.iter())
                .map(|(executor, tasks)| format!("{executor} ({tasks})"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        live.set_rows(extracted.rows);
        let files = outputs.into_iter().flat_map(|output| output.files).collect();
        transaction.adopt(files).await?;
        Ok(extracted)
    }
}

/// Exactly one output per part `0..total`, else why not.
fn one_per_part(outputs: Vec<TaskOutput>, total: usize) -> Result<Vec<TaskOutput>, String> {
    let mut by_part: BTreeMap<u32, TaskOutput> = BTreeMap::new();
    for output in outputs {
        if by_part.insert(output.part, output).is_some() {
            return Err("a part was reported twice".into());
        }
    }
    if let Some(unknown) = by_part.keys().find(|&&part| part as usize >= total) {
        return Err(format!("part {unknown} was reported but never sent"));
    }
    let missing: Vec<String> = (0..total as u32)
        .filter(|part| !by_part.contains_key(part))
        .map(|part| part.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(format!("parts {} were not reported", missing.join(", ")));
    }
    Ok(by_part.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(part: u32) -> TaskOutput {
        TaskOutput {
            part,
            rows: 1,
            files: Vec::new(),
            high: None,
            high_files: Vec::new(),
            executor: "e".into(),
        }
    }

    #[test]
    fn every_part_must_answer_exactly_once() {
        let parts =
            |outputs: Vec<TaskOutput>| one_per_part(outputs, 3).map(|o| o.iter().map(|o| o.part).collect::<Vec<_>>());
        assert_eq!(parts(vec![output(2), output(0), output(1)]), Ok(vec![0, 1, 2]));
        assert_eq!(
            parts(vec![output(0), output(2)]),
            Err("parts 1 were not reported".into())
        );
        assert_eq!(
            parts(vec![output(0), output(1), output(1)]),
            Err("a part was reported twice".into())
        );
        assert!(
            parts(vec![output(0), output(1), output(2), output(3)]).is_err(),
            "a part never sent"
        );
    }
}
