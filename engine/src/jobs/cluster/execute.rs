//! An extract task as an executor runs it: open the source from the sealed
//! options, read the part in its snapshot, convert each batch to the
//! destination's columns and write it into the load's shared folder.

use std::time::Duration;

use futures::StreamExt;
use sluice_catalog::MasterKey;
use tracing::{Instrument, info, info_span};

use super::super::file_mark::Boundary;
use super::super::{runner, schema_changes, window};
use super::task::{ExtractTask, TaskOutput};
use crate::contract::{PartWriter, ResolvedOptions, ScanRequest, SharedStore, TableRef};
use crate::destinations::{ScrubbedDestination, SharedWriter};
use crate::error::EngineError;
use crate::sources::Scrubbed;

/// How long an executor waits to connect to a source.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `task` on this process, `executor` naming it in the output; files
/// of a task that fails are deleted.
pub async fn run_task(task: &ExtractTask, key: &MasterKey, executor: &str) -> Result<TaskOutput, EngineError> {
    let span = info_span!("cluster_task", job = %task.job, run_id = task.run_id, part = task.part);
    async {
        let options = task.source_options(key)?;
        let connection = &task.source.name;
        let kind = crate::connectors::lookup(&task.source.kind)?;
        let factory = (kind.driver.as_ref().and_then(|d| d.source)).ok_or_else(|| EngineError::NotASource {
            connection: connection.clone(),
            kind: kind.name.into(),
        })?;
        let source = Scrubbed::new(factory(&options, connect_timeout(&options)), options.scrubber());
        let source_error = |error| EngineError::Source {
            connection: connection.clone(),
            error,
        };
        let table = TableRef {
            schema: task.schema.clone(),
            name: task.table.clone(),
        };
        let description = crate::contract::Source::describe(&source, &table)
            .await
            .map_err(source_error)?;
        let columns = (task.columns.iter())
            .map(|name| {
                description
                    .columns
                    .iter()
                    .position(|c| &c.name == name)
                    .ok_or_else(|| EngineError::Extract {
                        message: format!("{table} has no column \"{name}\" any more; run the job again"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let request = ScanRequest {
            columns,
            filter: task.filter.clone(),
            segment: task.segment,
            batch_rows: task.batch_rows,
            ..ScanRequest::default()
        };
        let mut stream = crate::contract::Source::scan_part(&source, &description, &request, task.snapshot.as_deref())
            .await
            .map_err(source_error)?;
        let mut writer = part_writer(task, key).await?;
        let mut boundary = match task.files {
            Some(_) => Some(Boundary::new(None, None)?),
            None => None,
        };
        let read = async {
            let (mut rows, mut high) = (0, None);
            while let Some(batch) = stream.next().await {
                let mut batch = batch.map_err(|e| EngineError::from_scan(connection, e))?;
                if let (Some(files), Some(boundary), Some(cursor)) = (task.files, &mut boundary, task.cursor) {
                    boundary.observe(batch.column(cursor), batch.column(files.position))?;
                    batch = files.strip(batch);
                }
                let batch = runner::conform_to(batch, &task.loaded)?;
                if let Some(cursor) = task.cursor {
                    high = window::greater(high, window::column_max(batch.column(cursor)));
                }
                rows += batch.num_rows() as u64;
                let batch = schema_changes::arrange_into(&task.target_schema, &task.arrangement, batch)?;
                writer.write(batch).await?;
            }
            Ok::<_, EngineError>((rows, high))
        }
        .await;
        let (rows, high) = match read {
            Ok(read) => read,
            Err(e) => {
                if let Err(discard) = writer.discard().await {
                    tracing::warn!(error = %discard, "could not delete the files of a failed task");
                }
                return Err(e);
            }
        };
        let files = writer.finish().await?;
        info!(rows, files = files.len(), "task done");
        Ok(TaskOutput {
            part: task.part,
            rows,
            files,
            high: high.as_ref().map(window::text),
            high_files: boundary.map_or_else(Vec::new, |b| b.files().iter().cloned().collect()),
            executor: executor.to_owned(),
        })
    }
    .instrument(span)
    .await
}

/// How long an executor waits for a connection with `options`.
fn connect_timeout(options: &ResolvedOptions) -> Duration {
    (options.integer("connect_timeout")).map_or(CONNECT_TIMEOUT, |s| Duration::from_secs(s.unsigned_abs()))
}

/// Opens the writer of `task`'s files: into the warehouse's bucket, or
/// the destination connection's own store through its type's driver (its
/// errors scrubbed of the connection's secrets).
async fn part_writer(task: &ExtractTask, key: &MasterKey) -> Result<Box<dyn PartWriter>, EngineError> {
    let target = task.target();
    let SharedStore::Connection = target.store else {
        return Ok(Box::new(SharedWriter::open(&target, task.part)?));
    };
    let destination = (task.destination.as_ref()).ok_or_else(|| EngineError::NotForCluster {
        job: task.job.clone(),
        reason: "the task names no destination connection for its files".into(),
    })?;
    let options = task.destination_options(destination, key)?;
    let kind = crate::connectors::lookup(&destination.kind)?;
    let open = (kind.driver.as_ref())
        .and_then(|d| d.destination.as_ref())
        .and_then(|d| d.part_writer)
        .ok_or_else(|| EngineError::NotForCluster {
            job: task.job.clone(),
            reason: format!("executors cannot write files for a {} destination", kind.name),
        })?;
    let writer = open(&options, &target, task.part, connect_timeout(&options)).await;
    Ok(ScrubbedDestination::part_writer(writer, options.scrubber())?)
}
