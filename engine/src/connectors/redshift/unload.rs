//! Large scans through `UNLOAD ... FORMAT PARQUET`: Redshift writes the
//! scan's rows as Parquet files under a fresh per-scan folder of
//! `unload_bucket` (assuming `iam_role`), and Sluice reads them back through
//! the S3 backend of the file sources (`connectors/s3`), with the
//! `unload_*` credentials. The folder is deleted once every file has been
//! read (or when the scan is dropped); folders a crash left behind are
//! deleted by the next UNLOAD scan of the same table.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};
use tracing::{info, warn};

use super::types::RsColumnType;
use crate::connectors::files::Backend;
use crate::connectors::postgres::{Endpoint, query_error};
use crate::connectors::s3::S3Bucket;
use crate::contract::{ConnectFailure, ResolvedOptions, ScanRequest, SourceError, TableDescription, TableRef};

/// The folder under `unload_bucket` that holds one folder per table.
const FOLDER: &str = "sluice-unload";

/// Rows per batch read back, unless the scan asks for another size.
const BATCH_ROWS: usize = 8192;

/// The URL the private session reads the bucket's store under.
const STORE_URL: &str = "sluice-unload://bucket";

/// Scan folders this server is reading now: the clean-up of a crash's
/// leftovers spares them.
static ACTIVE: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// A connection's `unload_bucket`, `iam_role` and `unload_*` options.
pub(super) struct Unload {
    /// `s3://bucket/prefix` as configured.
    url: String,
    iam_role: String,
    min_rows: i64,
    bucket: S3Bucket,
}

impl Unload {
    /// The connection's UNLOAD settings, when `unload_bucket` is set.
    pub(super) fn from_options(options: &ResolvedOptions, timeout: Duration) -> Option<Self> {
        let url = options.text("unload_bucket")?.to_owned();
        let (bucket, prefix) = split_url(&url).unwrap_or_default();
        let text = |name| options.text(name).map(str::to_owned);
        let secret = |name| options.secret(name).map(|s| s.expose().to_owned());
        Some(Self {
            iam_role: text("iam_role").unwrap_or_default(),
            min_rows: options.integer("unload_min_rows").unwrap_or(0),
            bucket: S3Bucket {
                bucket,
                prefix: Some(prefix),
                region: text("unload_region"),
                endpoint: text("unload_endpoint"),
                access_key_id: text("unload_access_key_id"),
                secret_access_key: secret("unload_secret_access_key"),
                session_token: secret("unload_session_token"),
                timeout,
            },
            url,
        })
    }

    /// Why the options cannot work, checked before a connection is saved.
    pub(super) fn check(options: &ResolvedOptions) -> Result<(), String> {
        let Some(url) = options.text("unload_bucket") else {
            return match UNLOAD_OPTIONS.iter().find(|name| options.text(name).is_some()) {
                Some(name) => Err(format!("{name} needs unload_bucket")),
                None => Ok(()),
            };
        };
        if split_url(url).is_none() {
            return Err(format!(
                "unload_bucket '{url}' is not an S3 URL such as 's3://bucket/prefix'"
            ));
        }
        if options.text("iam_role").is_none() {
            return Err("unload_bucket needs iam_role, the IAM role Redshift assumes to write it".into());
        }
        Ok(())
    }

    /// Whether a scan of `request` goes through UNLOAD: a scan of every row
    /// (no LIMIT) of a table of at least `unload_min_rows` estimated rows.
    pub(super) fn applies(&self, description: &TableDescription, request: &ScanRequest) -> bool {
        request.limit.is_none() && description.estimated_rows.unwrap_or(0) >= self.min_rows
    }

    /// The test before save: Sluice can list `unload_bucket` with the
    /// `unload_*` credentials.
    pub(super) async fn test(&self, timeout: Duration) -> Result<(), ConnectFailure> {
        crate::connectors::files::test(&self.bucket, timeout)
            .await
            .map_err(|failure| ConnectFailure {
                detail: format!("unload_bucket '{}': {}", self.url, failure.detail),
                ..failure
            })
    }

    /// Unloads `select` (the scan's query) and streams the files back as
    /// batches of `schema`.
    pub(super) async fn scan(
        &self,
        endpoint: &Endpoint,
        table: &TableRef,
        select: &str,
        schema: SchemaRef,
        request: &ScanRequest,
    ) -> Result<SendableRecordBatchStream, SourceError> {
        let location = self.bucket.location().map_err(|e| self.bucket_error(e.to_string()))?;
        let store = location.store;
        let table_folder = location.prefix.clone().join(FOLDER).join(table_key(table));
        let scan_folder = table_folder.clone().join(format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            uuid::Uuid::new_v4().simple()
        ));
        let mut active = ActiveScan::claim(store.clone(), scan_folder.clone());
        remove_leftovers(store.as_ref(), &table_folder).await;

        let target = format!("{}{}/", location.url, scan_folder);
        let statement = statement(select, &target, &self.iam_role);
        info!(table = %table, to = %target, "Redshift scan through UNLOAD");
        let connection = endpoint.connect().await?;
        let unloaded = connection.client.batch_execute(&statement).await;
        connection.close();
        unloaded.map_err(|e| self.unload_error(query_error(e)))?;

        let files: Vec<ObjectMeta> = store
            .list(Some(&scan_folder))
            .try_collect()
            .await
            .map_err(|e| self.bucket_error(self.bucket.failure(&e).to_string()))?;
        let batches: SendableRecordBatchStream = if files.is_empty() {
            active.remove().await.map_err(|e| self.bucket_error(e.to_string()))?;
            Box::pin(RecordBatchStreamAdapter::new(schema.clone(), futures::stream::empty()))
        } else {
            read_parquet(store, &files, request)
                .await
                .map_err(|e| self.bucket_error(e.to_string()))?
        };
        let state = Reading {
            batches,
            schema: schema.clone(),
            active,
        };
        let stream = futures::stream::try_unfold(state, next_batch);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    /// A failure of the UNLOAD statement itself, naming the options that
    /// decide it: a role Redshift may not assume or a bucket it cannot
    /// write.
    fn unload_error(&self, error: SourceError) -> SourceError {
        let (code, message) = match error {
            SourceError::Query { code, message } => (code, message),
            other => return other,
        };
        let lower = message.to_ascii_lowercase();
        let code = if lower.contains("not authorized") || lower.contains("access denied") || lower.contains("iam role")
        {
            "42501"
        } else {
            match code.as_deref() {
                Some(code) if !code.starts_with("XX") => {
                    return SourceError::Query {
                        code: Some(code.into()),
                        message,
                    };
                }
                _ => "22023",
            }
        };
        SourceError::Query {
            code: Some(code.into()),
            message: format!(
                "UNLOAD to unload_bucket '{}' with iam_role '{}' failed: {message}; check that Redshift may \
                 assume iam_role and that the role may write to unload_bucket",
                self.url, self.iam_role
            ),
        }
    }

    /// Sluice cannot read what Redshift unloaded.
    fn bucket_error(&self, message: String) -> SourceError {
        SourceError::Query {
            code: Some("22023".into()),
            message: format!(
                "cannot read unload_bucket '{}': {message}; check unload_bucket and the unload_access_key_id, \
                 unload_secret_access_key, unload_region and unload_endpoint options",
                self.url
            ),
        }
    }
}

/// The options that only mean something with `unload_bucket`.
const UNLOAD_OPTIONS: &[&str] = &[
    "iam_role",
    "unload_min_rows",
    "unload_region",
    "unload_endpoint",
    "unload_access_key_id",
];

/// `s3://bucket/prefix` as (bucket, prefix).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

/// One folder name per table: `schema.table`, each part percent-encoded
/// by the object store path.
fn table_key(table: &TableRef) -> String {
    format!("{}.{}", table.schema, table.name)
}

/// The UNLOAD statement: `select` as a string literal (Redshift reads
/// backslash escapes in it, so both `'` and `\` are escaped), Parquet files
/// of at most 256 MB written in parallel by the slices under `target`.
pub(super) fn statement(select: &str, target: &str, iam_role: &str) -> String {
    format!(
        "UNLOAD ({}) TO {} IAM_ROLE {} FORMAT PARQUET PARALLEL ON MAXFILESIZE 256 MB",
        literal(select),
        literal(target),
        literal(iam_role)
    )
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The select-list item UNLOAD gets for a column whose cursor expression
/// is `expression`: types Parquet has no column type for go as their text,
/// so they load as the cursor path loads them, and every computed value is
/// named after its column (Parquet columns need distinct names).
pub(super) fn unload_expression(
    column_type: &RsColumnType,
    target: &DataType,
    expression: String,
    quoted_name: &str,
) -> String {
    let expression = match (column_type.canonical(), target) {
        ("character" | "character varying" | "super", _) => expression,
        (_, DataType::Utf8) => format!("CAST({expression} AS VARCHAR(65535))"),
        _ => expression,
    };
    if expression == quoted_name {
        expression
    } else {
        format!("{expression} AS {quoted_name}")
    }
}

/// Deletes the scan folders under `table_folder` that no scan of this
/// server is reading: those a crashed or killed run left.
async fn remove_leftovers(store: &dyn ObjectStore, table_folder: &Path) {
    let listed: Vec<ObjectMeta> = match store.list(Some(table_folder)).try_collect().await {
        Ok(listed) => listed,
        Err(e) => {
            warn!(folder = %table_folder, error = %e, "cannot list earlier UNLOAD folders");
            return;
        }
    };
    let active = ACTIVE.lock().expect("the active scans").clone();
    for meta in listed {
        let in_active = active
            .iter()
            .any(|folder| meta.location.as_ref().starts_with(folder.as_str()));
        if !in_active && let Err(e) = store.delete(&meta.location).await {
            warn!(object = %meta.location, error = %e, "cannot delete an earlier UNLOAD file");
        }
    }
}

/// Deletes every object under `folder`.
async fn remove_folder(store: &dyn ObjectStore, folder: &Path) -> Result<(), datafusion::object_store::Error> {
    let listed: Vec<ObjectMeta> = store.list(Some(folder)).try_collect().await?;
    for meta in listed {
        store.delete(&meta.location).await?;
    }
    Ok(())
}

/// A scan folder being read: registered in [`ACTIVE`] until dropped, and
/// deleted on drop unless the scan deleted it already.
struct ActiveScan {
    store: Arc<dyn ObjectStore>,
    folder: Path,
    removed: bool,
}

impl ActiveScan {
    fn claim(store: Arc<dyn ObjectStore>, folder: Path) -> Self {
        ACTIVE.lock().expect("the active scans").insert(folder.to_string());
        Self {
            store,
            folder,
            removed: false,
        }
    }

    async fn remove(&mut self) -> Result<(), DataFusionError> {
        remove_folder(self.store.as_ref(), &self.folder)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.removed = true;
        Ok(())
    }
}

impl Drop for ActiveScan {
    fn drop(&mut self) {
        ACTIVE.lock().expect("the active scans").remove(self.folder.as_ref());
        if self.removed {
            return;
        }
        let (store, folder) = (self.store.clone(), self.folder.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = remove_folder(store.as_ref(), &folder).await {
                    warn!(%folder, error = %e, "cannot delete an abandoned UNLOAD folder");
                }
            });
        }
    }
}

/// The unloaded files of one scan, as they are read.
struct Reading {
    batches: SendableRecordBatchStream,
    schema: SchemaRef,
    active: ActiveScan,
}

async fn next_batch(mut state: Reading) -> Result<Option<(RecordBatch, Reading)>, DataFusionError> {
    match state.batches.next().await {
        Some(batch) => {
            let batch = conform(&batch?, &state.schema)?;
            Ok(Some((batch, state)))
        }
        None => {
            // Every row is read: the folder has done its work. A folder
            // that cannot be deleted now is left to the next scan.
            if let Err(e) = state.active.remove().await {
                warn!(folder = %state.active.folder, error = %e, "cannot delete an UNLOAD folder after reading it");
            }
            Ok(None)
        }
    }
}

/// Streams the rows of the Parquet `files` of `store`, read by a private
/// DataFusion session as the file sources read theirs.
async fn read_parquet(
    store: Arc<dyn ObjectStore>,
    files: &[ObjectMeta],
    request: &ScanRequest,
) -> Result<SendableRecordBatchStream, DataFusionError> {
    let config = SessionConfig::new().with_batch_size(request.batch_rows.unwrap_or(BATCH_ROWS).max(1));
    let ctx = SessionContext::new_with_config(config);
    let url = url::Url::parse(STORE_URL).map_err(|e| DataFusionError::External(Box::new(e)))?;
    ctx.register_object_store(&url, store);
    let paths: Vec<String> = files.iter().map(|f| format!("{STORE_URL}/{}", f.location)).collect();
    let options = ParquetReadOptions::default().file_extension("");
    ctx.read_parquet(paths, options).await?.execute_stream().await
}

/// A batch read from an unloaded file as a batch of the scan's schema:
/// columns by position, each cast to the scan's type (refusing, never
/// nulling, what does not convert).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, DataFusionError> {
    if batch.num_columns() != schema.fields().len() {
        return Err(DataFusionError::Execution(format!(
            "an unloaded file has {} columns, the scan {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(array, field)| {
            cast_with_options(array, field.data_type(), &options)
                .map_err(|e| DataFusionError::Execution(format!("unloaded column \"{}\": {e}", field.name())))
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_quotes_the_select_the_target_and_the_role() {
        assert_eq!(
            statement(
                "SELECT \"id\" FROM \"s\".\"t\" WHERE (\"note\" = 'it''s a\\b')",
                "s3://b/p/x/",
                "arn:aws:iam::1:role/r"
            ),
            "UNLOAD ('SELECT \"id\" FROM \"s\".\"t\" WHERE (\"note\" = ''it''''s a\\\\b'')') TO 's3://b/p/x/' \
             IAM_ROLE 'arn:aws:iam::1:role/r' FORMAT PARQUET PARALLEL ON MAXFILESIZE 256 MB"
        );
    }

    fn unload(min_rows: i64) -> Unload {
        Unload {
            url: "s3://b/p".into(),
            iam_role: "r".into(),
            min_rows,
            bucket: S3Bucket {
                bucket: "b".into(),
                prefix: None,
                region: None,
                endpoint: None,
                access_key_id: None,
                secret_access_key: None,
                session_token: None,
                timeout: Duration::from_secs(1),
            },
        }
    }

    fn table(estimated_rows: Option<i64>) -> TableDescription {
        TableDescription {
            table: TableRef {
                schema: "s".into(),
                name: "t".into(),
            },
            kind: crate::contract::TableKind::Table,
            columns: Vec::new(),
            estimated_rows,
        }
    }

    #[test]
    fn only_scans_of_every_row_of_large_enough_tables_unload() {
        let every = ScanRequest::default();
        let limited = ScanRequest {
            limit: Some(5),
            ..ScanRequest::default()
        };
        assert!(unload(0).applies(&table(None), &every));
        assert!(!unload(0).applies(&table(Some(10)), &limited));
        assert!(unload(100).applies(&table(Some(100)), &every));
        assert!(!unload(100).applies(&table(Some(99)), &every));
        assert!(!unload(100).applies(&table(None), &every));
    }

    #[test]
    fn columns_parquet_cannot_type_are_unloaded_as_text_under_their_own_name() {
        let item = |ty: &str, target: DataType, expression: &str| {
            unload_expression(&RsColumnType::named(ty), &target, expression.into(), "\"c\"")
        };
        assert_eq!(item("integer", DataType::Int32, "\"c\""), "\"c\"");
        assert_eq!(item("character", DataType::Utf8, "\"c\""), "\"c\"");
        assert_eq!(item("super", DataType::Utf8, "\"c\""), "\"c\"");
        assert_eq!(
            item("time with time zone", DataType::Utf8, "\"c\""),
            "CAST(\"c\" AS VARCHAR(65535)) AS \"c\""
        );
        assert_eq!(
            item("geometry", DataType::Binary, "ST_AsBinary(\"c\")"),
            "ST_AsBinary(\"c\") AS \"c\""
        );
    }

    #[test]
    fn bucket_urls_split_into_bucket_and_prefix() {
        assert_eq!(split_url("s3://b/a/b/"), Some(("b".into(), "a/b".into())));
        assert_eq!(split_url("s3://b"), Some(("b".into(), String::new())));
        assert_eq!(split_url("b/a"), None);
        assert_eq!(split_url("s3:///a"), None);
    }
}
