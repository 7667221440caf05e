//! The record of a table's last committed load, kept in the table's labels
//! so that start-up can compare it with the catalog's watermark (a catalog
//! restored from a backup is behind the table).
//!
//! A copy job and a label update cannot commit together, so each commit
//! writes the record in two steps around its copy job: before it, the
//! labels name the run as *pending* (with the last committed load folded
//! in); after it, as *committed*. Whoever reads the labels resolves a
//! pending run by its commit job (deterministic id): if that job succeeded,
//! the pending run is the last committed load. A crash or a failed label
//! update at any point therefore leaves a record that reads true; a later
//! label update that BigQuery shows late only delays the second step, which
//! the reader does not need.

use chrono::{DateTime, Utc};
use gcp_bigquery_client::model::table::Table;
use std::collections::HashMap;
use std::fmt::Write;

use super::api::{Api, ApiError, job_error};
use super::destination::RunNames;
use super::reasons::remote_error;
use crate::contract::DestinationError;

/// `<instance>-<run id>-<microseconds since the epoch>` of the last committed load.
const COMMITTED: &str = "sluice_committed";
/// Its watermark, encoded (see [`encode`]).
const COMMITTED_WATERMARK: &str = "sluice_committed_watermark";
/// The same for the load whose copy job was about to start.
const PENDING: &str = "sluice_pending";
const PENDING_WATERMARK: &str = "sluice_pending_watermark";
/// BigQuery's limit on the length of a label value.
const MAX_LABEL_VALUE: usize = 63;

/// One load as the labels record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LoadRecord {
    /// The instance id of the catalog whose run it was.
    pub instance: String,
    pub run_id: u64,
    pub at: DateTime<Utc>,
    /// `None` when the watermark was too long to fit in a label.
    pub watermark: Option<String>,
}

impl LoadRecord {
    pub(super) fn new(instance: &str, run_id: u64, watermark: Option<String>) -> Self {
        Self {
            instance: instance.to_owned(),
            run_id,
            at: Utc::now(),
            watermark,
        }
    }

    fn read(labels: &HashMap<String, String>, key: &str, watermark_key: &str) -> Option<Self> {
        let value = labels.get(key)?;
        let mut parts = value.rsplitn(3, '-');
        let at = parts.next()?.parse::<i64>().ok()?;
        let run_id = parts.next()?.parse().ok()?;
        let instance = parts.next()?.to_owned();
        Some(Self {
            instance,
            run_id,
            at: DateTime::from_timestamp_micros(at)?,
            watermark: labels.get(watermark_key).and_then(|w| decode(w)),
        })
    }

    fn write(&self, labels: &mut HashMap<String, String>, key: &str, watermark_key: &str) {
        labels.insert(
            key.to_owned(),
            format!("{}-{}-{}", self.instance, self.run_id, self.at.timestamp_micros()),
        );
        labels.insert(
            watermark_key.to_owned(),
            self.watermark.as_deref().and_then(encode).unwrap_or_default(),
        );
    }

    fn same_run(&self, other: &Self) -> bool {
        self.instance == other.instance && self.run_id == other.run_id
    }
}

/// Encodes a watermark as a label value: lowercase letters, digits and `-`
/// stay, any other byte becomes `_` and two hex digits (`2024-03-01T08:20:00Z`
/// is `2024-03-01_5408_3a20_3a00_5a`). `None` when longer than a label
/// value may be (a long text cursor).
pub(super) fn encode(watermark: &str) -> Option<String> {
    let mut encoded = String::new();
    for byte in watermark.bytes() {
        if byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "_{byte:02x}");
        }
    }
    (!encoded.is_empty() && encoded.len() <= MAX_LABEL_VALUE).then_some(encoded)
}

/// Reads back what [`encode`] wrote; `None` for anything else.
pub(super) fn decode(encoded: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let mut rest = encoded.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'_' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
}

/// The last committed load the labels of `table` (loaded by jobs named
/// with `token`) record: the pending one if its commit job succeeded,
/// else the committed one.
pub(super) async fn last_load(
    api: &Api,
    name: &str,
    token: &str,
    table: &Table,
) -> Result<Option<LoadRecord>, DestinationError> {
    let Some(labels) = &table.labels else {
        return Ok(None);
    };
    let committed = LoadRecord::read(labels, COMMITTED, COMMITTED_WATERMARK);
    let Some(pending) = LoadRecord::read(labels, PENDING, PENDING_WATERMARK) else {
        return Ok(committed);
    };
    if committed.as_ref().is_some_and(|c| c.same_run(&pending)) {
        return Ok(committed);
    }
    let commit = RunNames::new(name, token, &pending.instance, pending.run_id).commit_job();
    let remote = |e: ApiError| e.into_destination(Some(commit.clone()));
    let Some(job) = api.get_job(&commit).await.map_err(remote)? else {
        return Ok(committed);
    };
    let job = api.wait_job(job, &commit).await.map_err(remote)?;
    Ok(if job_error(&job).is_none() {
        Some(pending)
    } else {
        committed
    })
}

/// Step one, before the copy job: the labels name `load` as pending, with
/// the last committed load folded in. Refuses when that load is a run of
/// this catalog not before `load` (a catalog restored from a backup that
/// start-up could not align gives out run ids again): committing would load
/// rows the table holds already.
pub(super) async fn mark_pending(
    api: &Api,
    name: &str,
    token: &str,
    load: &LoadRecord,
) -> Result<(), DestinationError> {
    let remote = |e: ApiError| e.into_destination(None);
    let table = api
        .get_table(name)
        .await
        .map_err(remote)?
        .ok_or_else(|| DestinationError::TableNotFound(name.into()))?;
    let last = last_load(api, name, token, &table).await?;
    if let Some(last) = last
        .as_ref()
        .filter(|l| l.instance == load.instance && l.run_id >= load.run_id)
    {
        return Err(remote_error(
            None,
            "stale".into(),
            format!(
                "table {name} was last loaded by run {} (committed at {}, watermark {}), not before this run: the catalog \
                 is older than the table (restored from a backup?). Restart Sluice with BigQuery reachable so that it aligns \
                 the job's watermark with the table's; nothing of this run was loaded",
                last.run_id,
                last.at,
                last.watermark.as_deref().unwrap_or("not recorded")
            ),
        ));
    }
    let mut labels = table.labels.clone().unwrap_or_default();
    if let Some(last) = &last {
        last.write(&mut labels, COMMITTED, COMMITTED_WATERMARK);
    }
    load.write(&mut labels, PENDING, PENDING_WATERMARK);
    patch_labels(api, name, &table, labels).await
}

/// Step two, after the copy job succeeded: the labels name `load` as
/// committed. A failure here loses nothing (the pending record and the
/// commit job say the same); the caller only logs it.
pub(super) async fn mark_committed(api: &Api, name: &str, load: &LoadRecord) -> Result<(), DestinationError> {
    let remote = |e: ApiError| e.into_destination(None);
    let table = api
        .get_table(name)
        .await
        .map_err(remote)?
        .ok_or_else(|| DestinationError::TableNotFound(name.into()))?;
    let mut labels = table.labels.clone().unwrap_or_default();
    let pending = LoadRecord::read(&labels, PENDING, PENDING_WATERMARK);
    if !pending.is_some_and(|p| p.same_run(load)) {
        // Another load moved the record on since; never move it back.
        return Ok(());
    }
    load.write(&mut labels, COMMITTED, COMMITTED_WATERMARK);
    patch_labels(api, name, &table, labels).await
}

async fn patch_labels(
    api: &Api,
    name: &str,
    table: &Table,
    labels: HashMap<String, String>,
) -> Result<(), DestinationError> {
    let patch = Table {
        labels: Some(labels),
        table_reference: table.table_reference.clone(),
        ..Table::default()
    };
    api.patch_table(name, patch).await.map_err(|e| e.into_destination(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_round_trip_through_label_values() {
        for watermark in ["42", "-7", "2024-03-01", "2024-03-01T08:20:00.123456+00:00", "Größe ü"] {
            let encoded = encode(watermark).unwrap();
            assert!(
                encoded.len() <= MAX_LABEL_VALUE
                    && encoded
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
                "{encoded}"
            );
            assert_eq!(decode(&encoded).as_deref(), Some(watermark));
        }
        assert_eq!(encode("2024-03-01T08:20:00Z").unwrap(), "2024-03-01_5408_3a20_3a00_5a");
        assert_eq!(encode(&"x".repeat(64)), None);
        assert_eq!(decode("_zz"), None);
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let load = LoadRecord::new("00ff00ff00ff00ff", 12, Some("2024-03-01".into()));
        let mut labels = HashMap::new();
        load.write(&mut labels, COMMITTED, COMMITTED_WATERMARK);
        let read = LoadRecord::read(&labels, COMMITTED, COMMITTED_WATERMARK).unwrap();
        assert_eq!((read.instance.as_str(), read.run_id), ("00ff00ff00ff00ff", 12));
        assert_eq!(read.watermark.as_deref(), Some("2024-03-01"));
        assert_eq!(read.at.timestamp_micros(), load.at.timestamp_micros());
    }
}
