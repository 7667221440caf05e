//! A local directory of data files, read by the shared file source
//! ([`crate::connectors::files`]) over `object_store`'s local file system.
//! Unlike buckets, local tables have the `_file` and `_modified_at` columns
//! only with the option `file_columns`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path as ObjectPath;

use crate::connectors::files::{self, Backend, Location};
use crate::contract::{
    Category, ConnectFailure, ConnectFailureKind, ConnectionType, Connector, Driver, MAX_CONCURRENT_RUNS,
    OptionKind::{Bool, Text},
    OptionSpec as O, ResolvedOptions, Source,
};

pub(crate) static LOCAL: ConnectionType = ConnectionType {
    name: "local",
    display_name: "Local directory",
    category: Category::Files,
    options: &[
        O::required(
            "path",
            Text,
            "directory of CSV, NDJSON, Parquet or Avro files; a relative path is resolved against the server's working \
             directory",
        ),
        O::optional(
            "file_columns",
            Bool,
            "add the columns _file (the file's path) and _modified_at (its last-modified time) to every table, for \
             lineage and INCREMENTAL BY _modified_at (default: false)",
        ),
        files::TABLES,
        files::PARALLEL_READS,
        files::csv::HEADER,
        files::csv::DELIMITER,
        files::csv::QUOTE,
        files::csv::ESCAPE,
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["path"],
    driver: Some(Driver {
        connector: &LocalConnector,
        source: Some(open),
        destination: None,
        cdc: None,
    }),
};

struct LocalConnector;

#[async_trait]
impl Connector for LocalConnector {
    async fn test(&self, options: &ResolvedOptions, _timeout: Duration) -> Result<(), ConnectFailure> {
        files::check_options(options)?;
        Directory::new(options).check().await
    }
}

/// Opens a `local` connection's options as a source.
fn open(options: &ResolvedOptions, _timeout: Duration) -> Arc<dyn Source> {
    files::open(
        Arc::new(Directory::new(options)),
        options.text(files::TABLES.name),
        files::parallel_reads(options),
        files::csv::CsvSyntax::from_options(options),
    )
}

/// The directory a connection reads, as the user wrote it and resolved.
#[derive(Debug, Clone)]
struct Directory {
    /// The `path` option, for messages.
    given: String,
    /// Absolute, against the working directory at the time of opening.
    path: PathBuf,
    /// Whether tables carry `_file` and `_modified_at`.
    file_columns: bool,
}

#[async_trait]
impl Backend for Directory {
    fn location(&self) -> Result<Location, ConnectFailure> {
        let prefix = ObjectPath::from_absolute_path(&self.path).map_err(|e| {
            ConnectFailure::new(
                ConnectFailureKind::Other,
                format!("directory {} cannot be read: {e}", self.label()),
            )
        })?;
        Ok(Location {
            store: Arc::new(LocalFileSystem::new()),
            prefix,
            url: "/".into(),
        })
    }

    async fn check(&self) -> Result<(), ConnectFailure> {
        let directory = self.clone();
        tokio::task::spawn_blocking(move || directory.check_now())
            .await
            .map_err(|e| ConnectFailure::new(ConnectFailureKind::Other, e.to_string()))?
    }

    fn failure(&self, error: &datafusion::object_store::Error) -> ConnectFailure {
        ConnectFailure::new(
            ConnectFailureKind::Other,
            format!("directory {} cannot be read: {error}", self.label()),
        )
    }

    fn pseudo_columns(&self) -> bool {
        self.file_columns
    }

    fn shared(&self) -> bool {
        false
    }
}

impl Directory {
    fn new(options: &ResolvedOptions) -> Self {
        let given = options.text("path").unwrap_or_default().to_owned();
        let path = std::path::absolute(&given).unwrap_or_else(|_| PathBuf::from(&given));
        Self {
            given,
            path,
            file_columns: options.boolean("file_columns").unwrap_or(false),
        }
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
    fn check_now(&self) -> Result<(), ConnectFailure> {
        let metadata = std::fs::metadata(&self.path).map_err(|e| self.io_failure(&e))?;
        if !metadata.is_dir() {
            return Err(ConnectFailure::new(
                ConnectFailureKind::Other,
                format!("{} is not a directory", self.label()),
            ));
        }
        std::fs::read_dir(&self.path).map(drop).map_err(|e| self.io_failure(&e))
    }

    /// Why the directory could not be read.
    fn io_failure(&self, error: &std::io::Error) -> ConnectFailure {
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
