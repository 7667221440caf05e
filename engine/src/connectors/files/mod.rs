//! One file source over any `object_store` backend: a local directory, an
//! S3, GCS or Azure Blob bucket prefix. Each backend (`connectors/local`,
//! `s3`, `gcs`, `azure_blob`) only builds its store and says why a call
//! failed; listing, formats, schemas and scans are here, read through a
//! private DataFusion session.
//!
//! The model, kept deliberately simple:
//! - one schema, [`SCHEMA`] (`files`), the connection's prefix;
//! - every data file directly under the prefix is a table named after its
//!   stem (`orders.csv.gz` -> `orders`); a folder whose data files (directly
//!   inside it, or below Hive-style `key=value/` folders, which become text
//!   columns) all have one format is one table named after the folder, so
//!   that new files can be loaded incrementally;
//! - data files are `*.csv` (by default with a header row, see [`csv`]), `*.json`, `*.ndjson`,
//!   `*.jsonl` (newline-delimited JSON), each optionally compressed
//!   (`.gz`, `.bz2`, `.zst`, `.xz`), `*.parquet` and `*.avro`; Excel
//!   workbooks directly under the prefix are one table per sheet
//!   (`<workbook>_<sheet>`, see [`excel`]); other files, and names
//!   starting with `.` or `_`, are ignored;
//! - when two tables would share a name, files are named by their full file
//!   name instead (`orders.csv`, `orders.parquet`);
//! - bucket tables have two more columns, `_file` (the object's URL) and
//!   `_modified_at` (its last-modified time), for lineage and for
//!   `INCREMENTAL BY _modified_at`.
//!
//! Column types come from Parquet footers and Avro schemas, or from
//! DataFusion's inference over the first 1000 rows of CSV and NDJSON files
//! (see [`source`]).

mod avro;
mod bucket;
mod convert;
pub(crate) mod csv;
mod errors;
mod excel;
mod footers;
mod globs;
mod listing;
mod source;
mod split;
#[cfg(test)]
mod streamed_tests;
mod widen;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::object_store::ObjectStore;
use datafusion::object_store::path::Path;
use object_store::{ClientOptions, RetryConfig};

pub(crate) use bucket::{BucketConnector, FromOptions, open_bucket};
pub(crate) use errors::classify;
pub(crate) use source::open;

use crate::contract::{ConnectFailure, ConnectFailureKind, OptionKind, OptionSpec, ResolvedOptions};

/// The option `tables` every file type has (see [`globs`]).
pub(crate) const TABLES: OptionSpec = OptionSpec::optional(globs::OPTION, OptionKind::Text, globs::DESCRIPTION);

/// Files a scan reads at once when the connection does not say.
pub(crate) const DEFAULT_PARALLEL_READS: usize = 4;

/// The option `parallel_reads` every file type has.
pub(crate) const PARALLEL_READS: OptionSpec = OptionSpec::optional(
    "parallel_reads",
    OptionKind::Integer { min: 1, max: 32 },
    "files a scan reads at once (default: 4); each has at most two batches waiting, so memory grows with this \
     number, not with the file count",
);

/// The `parallel_reads` option, or its default.
pub(crate) fn parallel_reads(options: &ResolvedOptions) -> usize {
    options
        .integer(PARALLEL_READS.name)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_PARALLEL_READS)
}

/// Checks the `tables` and CSV options before a connection is saved.
pub(crate) fn check_options(options: &ResolvedOptions) -> Result<(), ConnectFailure> {
    let mismatch = |message| ConnectFailure::new(ConnectFailureKind::OptionMismatch, message);
    if let Some(value) = options.text(globs::OPTION) {
        globs::parse(value).map_err(mismatch)?;
    }
    csv::CsvSyntax::from_options(options).map(drop).map_err(mismatch)
}

/// The one schema of a file connection.
pub(crate) const SCHEMA: &str = "files";

/// Where a connection's files are.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The folder (key prefix) of the tables; empty for the whole bucket.
    pub(crate) prefix: Path,
    /// What `_file` puts before an object's path (`s3://bucket/`).
    pub(crate) url: String,
}

/// What is specific to one storage backend.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    /// Builds the store (no request yet), or says why the options cannot.
    fn location(&self) -> Result<Location, ConnectFailure>;

    /// Checks, before each use, what listing alone would not report well
    /// (a local directory that is a file, say). Nothing by default.
    async fn check(&self) -> Result<(), ConnectFailure> {
        Ok(())
    }

    /// Why a call to the store failed.
    fn failure(&self, error: &datafusion::object_store::Error) -> ConnectFailure;

    /// Whether tables carry the `_file` and `_modified_at` columns.
    fn pseudo_columns(&self) -> bool {
        true
    }

    /// Whether other machines reach the same files with the same options
    /// (a bucket), so that a cluster's executors can read them; a local
    /// directory is this machine's only.
    fn shared(&self) -> bool {
        true
    }
}

/// The test before save: the backend's check, then one page of the prefix
/// listed, within `timeout`.
pub(crate) async fn test(backend: &dyn Backend, timeout: Duration) -> Result<(), ConnectFailure> {
    let run = async {
        backend.check().await?;
        let location = backend.location()?;
        listing::first_page(location.store.as_ref(), &location.prefix)
            .await
            .map_err(|e| backend.failure(&e))
    };
    tokio::time::timeout(timeout, run).await.unwrap_or_else(|_| {
        Err(ConnectFailure::new(
            ConnectFailureKind::Timeout,
            format!("listing the files took longer than {} seconds", timeout.as_secs()),
        ))
    })
}

/// HTTP settings of the cloud backends: TLS with the system's roots,
/// `timeout` to connect, and few quick retries so that an unreachable
/// endpoint is reported within the test's time. A request has no overall
/// time limit: a file's GET lasts as long as the scan takes to read the
/// file at its pace (the files read at once share the CPU), and
/// `object_store`'s default of 30 seconds failed the reads of big files.
pub(crate) fn client_options(timeout: Duration) -> (ClientOptions, RetryConfig) {
    let options = crate::tls::with_system_roots(ClientOptions::new())
        .with_allow_http(true)
        .with_connect_timeout(timeout)
        .with_timeout_disabled();
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: timeout.max(Duration::from_secs(1)),
        ..RetryConfig::default()
    };
    (options, retry)
}

/// The `prefix` option as a folder path (no leading or trailing `/`).
pub(crate) fn prefix_path(prefix: Option<&str>) -> Path {
    Path::from(prefix.unwrap_or_default().trim_matches('/'))
}

#[cfg(test)]
mod tests {
    use object_store::ClientConfigKey;

    use super::*;

    #[test]
    fn a_slow_read_is_not_cut_off_but_a_connect_is() {
        let (options, _) = client_options(Duration::from_secs(7));
        assert_eq!(options.get_config_value(&ClientConfigKey::Timeout), None);
        assert_eq!(
            options.get_config_value(&ClientConfigKey::ConnectTimeout).as_deref(),
            Some("7s")
        );
    }
}
