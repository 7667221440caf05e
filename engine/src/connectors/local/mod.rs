//! A local directory of CSV, NDJSON and Parquet files, read through
//! DataFusion and its `object_store` file system (so that object storage
//! types can share the reading code).
//!
//! The model, kept deliberately simple:
//! - one schema, [`SCHEMA`] (`files`);
//! - every data file directly in the directory is a table named after its
//!   file stem (`orders.csv` -> `orders`); a subdirectory whose data files
//!   (directly inside it) all have one format is one table named after the
//!   subdirectory, so that new files can later be loaded incrementally;
//! - data files are `*.csv` (with a header row), `*.json`, `*.ndjson`,
//!   `*.jsonl` (newline-delimited JSON) and `*.parquet`; other files, and
//!   names starting with `.` or `_`, are ignored;
//! - when two tables would share a name, files are named by their full file
//!   name instead (`orders.csv`, `orders.parquet`).
//!
//! Column types come from Parquet footers, or from DataFusion's inference
//! over the first 1000 rows of CSV and NDJSON files (see [`source`]).

mod convert;
mod dialect;
mod listing;
mod source;

pub(crate) use dialect::{DataFusionDialect, session as datafusion_session};

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use crate::connection_types::{Category, ConnectionType, TypeStatus};
use crate::connectors::Connector;
use crate::error::{ConnectFailure, ConnectFailureKind};
use crate::options::OptionKind::Text;
use crate::options::{MAX_CONCURRENT_RUNS, OptionSpec as O, ResolvedOptions};

/// The one schema of a local directory.
const SCHEMA: &str = "files";

pub(crate) static LOCAL: ConnectionType = ConnectionType {
    name: "local",
    display_name: "Local directory",
    category: Category::Files,
    status: TypeStatus::Available,
    options: &[
        O::required(
            "path",
            Text,
            "directory of CSV, NDJSON or Parquet files; a relative path is resolved against the server's working \
             directory",
        ),
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["path"],
    connector: Some(&LocalConnector),
    source: Some(source::open),
    destination: None,
};

struct LocalConnector;

#[async_trait]
impl Connector for LocalConnector {
    async fn test(&self, options: &ResolvedOptions, _timeout: Duration) -> Result<(), ConnectFailure> {
        let directory = Directory::new(options);
        tokio::task::spawn_blocking(move || directory.check())
            .await
            .map_err(|e| ConnectFailure::new(ConnectFailureKind::Other, e.to_string()))?
    }
}

/// The directory a connection reads, as the user wrote it and resolved.
#[derive(Debug, Clone)]
struct Directory {
    /// The `path` option, for messages.
    given: String,
    /// Absolute, against the working directory at the time of opening.
    path: PathBuf,
}

impl Directory {
    fn new(options: &ResolvedOptions) -> Self {
        let given = options.text("path").unwrap_or_default().to_owned();
        let path = std::path::absolute(&given).unwrap_or_else(|_| PathBuf::from(&given));
        Self { given, path }
    }

    /// The path as given, and where it resolved to when it was relative.
    fn label(&self) -> String {
        if Path::new(&self.given).is_absolute() {
            self.given.clone()
        } else {
            format!("{} (resolved to {})", self.given, self.path.display())
        }
    }

    /// Checks that the directory exists and can be listed.
    fn check(&self) -> Result<(), ConnectFailure> {
        let metadata = std::fs::metadata(&self.path).map_err(|e| self.failure(&e))?;
        if !metadata.is_dir() {
            return Err(ConnectFailure::new(
                ConnectFailureKind::Other,
                format!("{} is not a directory", self.label()),
            ));
        }
        std::fs::read_dir(&self.path).map(drop).map_err(|e| self.failure(&e))
    }

    /// Why the directory could not be read.
    fn failure(&self, error: &std::io::Error) -> ConnectFailure {
        let what = self.label();
        match error.kind() {
            ErrorKind::NotFound => {
                ConnectFailure::new(ConnectFailureKind::Other, format!("directory {what} does not exist"))
            }
            ErrorKind::PermissionDenied => ConnectFailure::new(
                ConnectFailureKind::Refused,
                format!("directory {what} is not readable: permission denied"),
            ),
            _ => ConnectFailure::new(
                ConnectFailureKind::Other,
                format!("directory {what} cannot be read: {error}"),
            ),
        }
    }
}
