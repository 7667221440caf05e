//! Which tables a prefix holds: its data files, and its folders of data
//! files of one format (with Hive-style `key=value/` folders below them as
//! partition columns).
//!
//! Listings are streamed, never collected: finding the tables folds each
//! listed file into its table's counts as the pages arrive, and a table's
//! files are read back as a stream ([`Entry::files`]), one listing page at
//! a time, so memory does not grow with the number of files. (Files
//! directly under the prefix are tables of their own, so those are held as
//! tables.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectMeta, ObjectStore};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tracing::warn;

use super::globs::TableGlob;

/// A file format of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) enum Format {
    /// Comma-separated, with a header row.
    Csv,
    /// Newline-delimited JSON objects.
    Json,
    Parquet,
    /// Avro object container files.
    Avro,
    /// Excel workbooks: one table per sheet (see `excel`).
    Excel,
}

impl Format {
    /// The format and compression of a file, by its extensions (any case):
    /// `orders.csv`, `orders.csv.gz`; `None` for other files.
    pub(crate) fn of(name: &str) -> Option<(Self, FileCompressionType, &str)> {
        let (rest, compression) = match split_extension(name) {
            Some((rest, extension)) => match extension.to_ascii_lowercase().as_str() {
                "gz" | "gzip" => (rest, FileCompressionType::GZIP),
                "bz2" => (rest, FileCompressionType::BZIP2),
                "zst" | "zstd" => (rest, FileCompressionType::ZSTD),
                "xz" => (rest, FileCompressionType::XZ),
                _ => (name, FileCompressionType::UNCOMPRESSED),
            },
            None => return None,
        };
        let (stem, extension) = split_extension(rest)?;
        let format = match extension.to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "json" | "ndjson" | "jsonl" => Format::Json,
            "parquet" => Format::Parquet,
            "avro" => Format::Avro,
            "xlsx" | "xls" => Format::Excel,
            _ => return None,
        };
        // Only text formats are compressed as a whole file.
        if compression.is_compressed() && !matches!(format, Format::Csv | Format::Json) {
            return None;
        }
        Some((format, compression, stem))
    }

    /// The format's name in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Json => "newline-delimited JSON",
            Format::Parquet => "Parquet",
            Format::Avro => "Avro",
            Format::Excel => "Excel",
        }
    }
}

/// `name` split at its last `.`, when both sides are non-empty.
fn split_extension(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('.')
        .filter(|(stem, ext)| !stem.is_empty() && !ext.is_empty())
}

/// One data file.
#[derive(Debug, Clone)]
pub(crate) struct DataFile {
    pub(crate) location: Path,
    pub(crate) size: u64,
    pub(crate) modified: DateTime<Utc>,
    pub(crate) compression: FileCompressionType,
    /// Values of the table's partition keys, from the `key=value` folders.
    pub(crate) partitions: Vec<String>,
    /// The version of the object listed, where the store tags one.
    pub(crate) e_tag: Option<String>,
}

/// Where a table's files are listed.
#[derive(Debug, Clone)]
pub(crate) enum Files {
    /// A file directly under the prefix.
    One(DataFile),
    /// A folder: its files of the table's format, directly inside it or
    /// below `key=value` folders named as the table's partition keys.
    Folder(Path),
    /// The files under `prefix` that the `index`-th pattern matches first.
    Glob {
        prefix: Path,
        tables: Arc<[TableGlob]>,
        index: usize,
    },
    /// Files listed before, by the server that split a scan for a cluster
    /// (see `split`): read as they are, not listed again.
    Listed(Vec<DataFile>),
}

/// One table: a data file, or the data files of a folder or a pattern,
/// with what the listing that found it counted.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) format: Format,
    /// Names of the `key=value` folder levels, outermost first.
    pub(crate) partition_keys: Vec<String>,
    /// Where its files are listed.
    pub(crate) files: Files,
    /// Its files when it was listed.
    pub(crate) count: u64,
    /// The size of those files.
    pub(crate) size: u64,
    /// When the newest of them was last written.
    pub(crate) modified: Option<DateTime<Utc>>,
    /// The sheet that is the table, for a sheet of an Excel workbook.
    pub(crate) sheet: Option<String>,
}

impl Entry {
    /// The table's files as one listing, streamed page by page in the
    /// store's listing order (by key on S3, GCS and Azure; directory order
    /// on a local disk). A file that no longer fits the table (another
    /// format, other `key=value` folders) is skipped with a warning.
    pub(crate) fn files(&self, store: Arc<dyn ObjectStore>) -> BoxStream<'static, Result<DataFile, ObjectStoreError>> {
        let format = self.format;
        match &self.files {
            Files::One(file) => futures::stream::once(futures::future::ready(Ok(file.clone()))).boxed(),
            Files::Listed(files) => futures::stream::iter(files.clone().into_iter().map(Ok)).boxed(),
            Files::Folder(dir) => {
                let (dir, keys, table) = (dir.clone(), self.partition_keys.clone(), self.name.clone());
                store
                    .list(Some(&dir))
                    .try_filter_map(move |object| {
                        let file = in_folder(&dir, &object).and_then(|(this, compression, levels)| {
                            let names: Vec<&str> = levels.iter().map(|(k, _)| k.as_str()).collect();
                            if this != format || names != keys {
                                warn!(table = %table, file = %object.location, "file skipped: its format or key=value folders differ from the table's");
                                return None;
                            }
                            let values = levels.into_iter().map(|(_, v)| v).collect();
                            Some(data_file(object, compression, values))
                        });
                        futures::future::ready(Ok(file))
                    })
                    .boxed()
            }
            Files::Glob { prefix, tables, index } => {
                let (prefix, tables, index) = (prefix.clone(), tables.clone(), *index);
                store
                    .list(under(&prefix))
                    .try_filter_map(move |object| {
                        let file = globbed_file(&prefix, &tables, object)
                            .filter(|(i, this, _)| *i == index && *this == format)
                            .map(|(_, _, file)| file);
                        futures::future::ready(Ok(file))
                    })
                    .boxed()
            }
        }
    }
}

/// The error of a listing.
pub(crate) type ObjectStoreError = datafusion::object_store::Error;

/// Files, bytes and the newest time of a set of files.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    count: u64,
    size: u64,
    modified: Option<DateTime<Utc>>,
}

impl Tally {
    fn add(&mut self, size: u64, modified: DateTime<Utc>) {
        self.count += 1;
        self.size += size;
        self.modified = self.modified.max(Some(modified));
    }
}

/// A table before names are made unique.
struct Candidate {
    /// The file stem, or the folder name.
    stem: String,
    /// The full file name, for files.
    file_name: Option<String>,
    format: Format,
    files: Files,
    partition_keys: Vec<String>,
    tally: Tally,
}

/// `prefix` as a listing prefix: `None` for the root.
fn under(prefix: &Path) -> Option<&Path> {
    (!prefix.as_ref().is_empty()).then_some(prefix)
}

/// Whether a file or folder name is shown: not starting with `.` or `_`.
fn visible(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(['.', '_'])
}

/// The tables under `prefix`, sorted by name; with `wanted`, only the
/// table of that name, if any (the folders that cannot be named so are
/// not listed). A folder that cannot be listed is skipped whole (with a
/// warning), never read in part.
pub(crate) async fn entries(
    store: &dyn ObjectStore,
    prefix: &Path,
    wanted: Option<&str>,
) -> Result<Vec<Entry>, ObjectStoreError> {
    let top = store.list_with_delimiter(under(prefix)).await?;
    let mut candidates = Vec::new();
    let mut objects = top.objects;
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    for object in objects {
        let Some(name) = object.location.filename().map(str::to_owned) else {
            continue;
        };
        if !visible(&name) {
            continue;
        }
        let Some((format, compression, stem)) = Format::of(&name) else {
            continue;
        };
        let mut tally = Tally::default();
        tally.add(object.size, object.last_modified);
        candidates.push(Candidate {
            stem: stem.to_owned(),
            file_name: Some(name.clone()),
            format,
            files: Files::One(data_file(object, compression, Vec::new())),
            partition_keys: Vec::new(),
            tally,
        });
    }
    let mut folders = top.common_prefixes;
    folders.sort();
    for dir in folders {
        let Some(name) = dir.filename().map(str::to_owned) else {
            continue;
        };
        // A folder is the wanted table, or shares its stem with the file
        // that is (and so decides whether that file keeps its stem).
        let relevant = wanted.is_none_or(|wanted| {
            name == wanted || (candidates.iter()).any(|c| c.stem == name && c.file_name.as_deref() == Some(wanted))
        });
        if !visible(&name) || !relevant {
            continue;
        }
        match folder(store, &dir).await {
            Ok(Some((format, tally, partition_keys))) => candidates.push(Candidate {
                stem: name,
                file_name: None,
                format,
                files: Files::Folder(dir),
                partition_keys,
                tally,
            }),
            Ok(None) => {}
            Err(e) => warn!(folder = %dir, error = %e, "folder skipped: cannot be listed"),
        }
    }
    let mut stems: HashMap<String, usize> = HashMap::new();
    for candidate in &candidates {
        *stems.entry(candidate.stem.clone()).or_default() += 1;
    }
    let mut tables = BTreeMap::new();
    for candidate in candidates {
        let name = match candidate.file_name {
            Some(file_name) if stems.get(&candidate.stem).is_some_and(|&n| n > 1) => file_name,
            _ => candidate.stem,
        };
        if tables.contains_key(&name) {
            warn!(table = %name, prefix = %prefix, "table name taken twice: the second one is skipped");
            continue;
        }
        let entry = Entry {
            name: name.clone(),
            format: candidate.format,
            partition_keys: candidate.partition_keys,
            files: candidate.files,
            count: candidate.tally.count,
            size: candidate.tally.size,
            modified: candidate.tally.modified,
            sheet: None,
        };
        tables.insert(name, entry);
    }
    if let Some(wanted) = wanted {
        // A workbook's sheets are tables named `<workbook>_<sheet>`.
        tables.retain(|name, entry| {
            name == wanted
                || entry.format == Format::Excel
                    && (wanted.strip_prefix(name.as_str())).is_some_and(|sheet| sheet.starts_with('_'))
        });
    }
    Ok(tables.into_values().collect())
}

/// The table, format and file of a listed object under the `tables`
/// option: the first pattern its path below `prefix` matches.
fn globbed_file(prefix: &Path, tables: &[TableGlob], object: ObjectMeta) -> Option<(usize, Format, DataFile)> {
    let relative = object
        .location
        .prefix_match(prefix)?
        .map(|p| p.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join("/");
    let (format, compression, _) = object.location.filename().and_then(Format::of)?;
    let index = tables.iter().position(|t| t.matches(&relative))?;
    Some((index, format, data_file(object, compression, Vec::new())))
}

/// The tables the `tables` option names under `prefix`, sorted by name:
/// the data files each pattern matches first, counted from one streamed
/// listing (any depth). A table's files have the format of its first file
/// in path order; files of another format are skipped with a warning when
/// read, and a table without files is not listed.
pub(crate) async fn globbed(
    store: &dyn ObjectStore,
    prefix: &Path,
    tables: &[TableGlob],
) -> Result<Vec<Entry>, ObjectStoreError> {
    /// Per table: the first file in path order, and the tally per format.
    type Found = (Option<(Path, Format)>, BTreeMap<Format, Tally>);
    let mut found: Vec<Found> = vec![(None, BTreeMap::new()); tables.len()];
    let mut listed = store.list(under(prefix));
    while let Some(object) = listed.try_next().await? {
        let Some((index, format, file)) = globbed_file(prefix, tables, object) else {
            continue;
        };
        let (first, tallies) = &mut found[index];
        if first.as_ref().is_none_or(|(path, _)| file.location < *path) {
            *first = Some((file.location, format));
        }
        tallies.entry(format).or_default().add(file.size, file.modified);
    }
    let shared: Arc<[TableGlob]> = tables.to_vec().into();
    let mut entries = Vec::new();
    for (index, (table, (first, tallies))) in tables.iter().zip(found).enumerate() {
        let Some((_, format)) = first else { continue };
        let skipped: u64 = (tallies.iter())
            .filter(|(f, _)| **f != format)
            .map(|(_, t)| t.count)
            .sum();
        if skipped > 0 {
            warn!(table = %table.name, skipped, "files skipped: their format differs from the table's first file's");
        }
        let tally = tallies.get(&format).copied().unwrap_or_default();
        entries.push(Entry {
            name: table.name.clone(),
            format,
            partition_keys: Vec::new(),
            files: Files::Glob {
                prefix: prefix.clone(),
                tables: shared.clone(),
                index,
            },
            count: tally.count,
            size: tally.size,
            modified: tally.modified,
            sheet: None,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// A `key=value` folder name, split.
fn partition(name: &str) -> Option<(&str, &str)> {
    name.split_once('=').filter(|(key, _)| !key.is_empty())
}

/// A `key=value` level of a file's path.
type Level = (String, String);

/// The format, compression and `key=value` levels of an object in folder
/// `dir`: a visible data file directly inside it or below visible
/// `key=value` folders; `None` for any other object.
fn in_folder(dir: &Path, object: &ObjectMeta) -> Option<(Format, FileCompressionType, Vec<Level>)> {
    let parts: Vec<String> = object
        .location
        .prefix_match(dir)?
        .map(|p| p.as_ref().to_owned())
        .collect();
    let (name, folders) = parts.split_last()?;
    if !visible(name) {
        return None;
    }
    let (format, compression, _) = Format::of(name)?;
    let levels = folders
        .iter()
        .map(|f| {
            partition(f)
                .filter(|_| visible(f))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((format, compression, levels))
}

/// The format, tally and partition keys of a folder's data files (see
/// [`in_folder`]), from one streamed listing, when they share one format.
/// The keys are those of most files; files below other `key=value` levels
/// are not the table's (a warning says so).
async fn folder(store: &dyn ObjectStore, dir: &Path) -> Result<Option<(Format, Tally, Vec<String>)>, ObjectStoreError> {
    let mut format = None;
    let mut by_keys: BTreeMap<Vec<String>, Tally> = BTreeMap::new();
    let mut listed = store.list(Some(dir));
    while let Some(object) = listed.try_next().await? {
        let Some((this, _, levels)) = in_folder(dir, &object) else {
            continue;
        };
        if format.is_some_and(|f| f != this) {
            warn!(folder = %dir, "folder skipped: its files have more than one format");
            return Ok(None);
        }
        format = Some(this);
        by_keys
            .entry(levels.into_iter().map(|(k, _)| k).collect())
            .or_default()
            .add(object.size, object.last_modified);
    }
    let Some(format) = format else { return Ok(None) };
    let others = by_keys.len().saturating_sub(1);
    let Some((keys, tally)) = by_keys.into_iter().max_by_key(|(keys, t)| (t.count, keys.len())) else {
        return Ok(None);
    };
    if others > 0 {
        warn!(folder = %dir, "files skipped: their key=value folders differ from the other files'");
    }
    Ok(Some((format, tally, keys)))
}

fn data_file(object: ObjectMeta, compression: FileCompressionType, partitions: Vec<String>) -> DataFile {
    DataFile {
        location: object.location,
        size: object.size,
        modified: object.last_modified,
        compression,
        partitions,
        e_tag: object.e_tag,
    }
}

/// Whether the prefix can be listed: reads at most one page.
pub(crate) async fn first_page(store: &dyn ObjectStore, prefix: &Path) -> Result<(), ObjectStoreError> {
    match store.list(under(prefix)).next().await {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Arc;

    use datafusion::object_store::local::LocalFileSystem;

    use super::*;

    fn write(dir: &std::path::Path, name: &str) {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "a\n1\n").unwrap();
    }

    async fn list(dir: &std::path::Path) -> Vec<Entry> {
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let prefix = Path::from_absolute_path(dir).unwrap();
        entries(store.as_ref(), &prefix, None).await.unwrap()
    }

    async fn names(dir: &std::path::Path) -> Vec<(String, Format, u64)> {
        list(dir)
            .await
            .into_iter()
            .map(|e| (e.name, e.format, e.count))
            .collect()
    }

    /// An entry's files, read back from its listing, by path.
    async fn files_of(entry: &Entry) -> Vec<DataFile> {
        let mut files: Vec<DataFile> = entry
            .files(Arc::new(LocalFileSystem::new()))
            .try_collect()
            .await
            .unwrap();
        files.sort_by(|a, b| a.location.cmp(&b.location));
        files
    }

    #[test]
    fn formats_and_compression_come_from_extensions() {
        let gz = Format::of("orders.CSV.gz").unwrap();
        assert_eq!((gz.0, gz.1, gz.2), (Format::Csv, FileCompressionType::GZIP, "orders"));
        let zst = Format::of("e.jsonl.zst").unwrap();
        assert_eq!((zst.0, zst.1), (Format::Json, FileCompressionType::ZSTD));
        assert_eq!(Format::of("a.parquet").unwrap().0, Format::Parquet);
        assert!(Format::of("a.parquet.gz").is_none());
        assert!(Format::of("notes.txt.gz").is_none());
        assert!(Format::of("csv").is_none());
        assert!(Format::of(".csv").is_none());
        assert_eq!(Format::of("book.xlsx").unwrap().0, Format::Excel);
    }

    #[tokio::test]
    async fn files_and_single_format_folders_are_tables() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "orders.csv",
            "Events.NDJSON",
            "logs.jsonl",
            "facts.parquet",
            "readme.txt",
            ".hidden.csv",
            "_SUCCESS",
            "daily/2024-01-01.csv",
            "daily/2024-01-02.csv",
            "daily/notes.md",
            "daily/nested/2024-01-03.csv",
            "mixed/a.csv",
            "mixed/b.parquet",
            "empty/readme.txt",
        ] {
            write(d, name);
        }
        assert_eq!(
            names(d).await,
            [
                ("Events".into(), Format::Json, 1),
                ("daily".into(), Format::Csv, 2),
                ("facts".into(), Format::Parquet, 1),
                ("logs".into(), Format::Json, 1),
                ("orders".into(), Format::Csv, 1),
            ]
        );
        let daily = list(d).await.into_iter().find(|e| e.name == "daily").unwrap();
        assert_eq!(daily.size, 8);
        assert!(daily.modified.is_some());
        let files = files_of(&daily).await;
        assert_eq!(files.len(), 2);
        assert!(files[0].location.as_ref().ends_with("daily/2024-01-01.csv"));
    }

    #[tokio::test]
    async fn key_value_folders_are_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "sales/year=2024/region=eu/a.csv.gz",
            "sales/year=2024/region=us/b.csv",
            "sales/year=2025/region=eu/c.csv",
            "sales/year=2025/d.csv",
            "sales/other/e.csv",
        ] {
            write(d, name);
        }
        let sales = list(d).await.into_iter().find(|e| e.name == "sales").unwrap();
        assert_eq!(sales.partition_keys, ["year", "region"]);
        assert_eq!(sales.count, 3);
        let files: Vec<_> = files_of(&sales)
            .await
            .iter()
            .map(|f| {
                (
                    f.location.filename().unwrap().to_owned(),
                    f.partitions.clone(),
                    f.compression,
                )
            })
            .collect();
        assert_eq!(
            files,
            [
                (
                    "a.csv.gz".into(),
                    vec!["2024".to_owned(), "eu".into()],
                    FileCompressionType::GZIP
                ),
                (
                    "b.csv".into(),
                    vec!["2024".into(), "us".into()],
                    FileCompressionType::UNCOMPRESSED
                ),
                (
                    "c.csv".into(),
                    vec!["2025".into(), "eu".into()],
                    FileCompressionType::UNCOMPRESSED
                ),
            ]
        );
    }

    #[tokio::test]
    async fn the_tables_option_maps_globs_to_tables() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "exports/orders/1.csv.gz",
            "exports/orders/2.csv",
            "exports/orders/old/0.csv",
            "exports/orders/readme.txt",
            "events/day=1/a.parquet",
            "events/day=2/b.parquet",
            "events/c.json",
            "loose.csv",
        ] {
            write(d, name);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let prefix = Path::from_absolute_path(d).unwrap();
        let tables =
            super::super::globs::parse("orders=exports/orders/*.csv*, events=events/**/*.parquet, none=nothing/*")
                .unwrap();
        let entries = globbed(store.as_ref(), &prefix, &tables).await.unwrap();
        let mut found = Vec::new();
        for e in &entries {
            let files: Vec<_> = files_of(e)
                .await
                .iter()
                .map(|f| f.location.filename().unwrap().to_owned())
                .collect();
            found.push((e.name.as_str(), e.format, files));
        }
        assert_eq!(
            found,
            [
                (
                    "events",
                    Format::Parquet,
                    vec!["a.parquet".to_owned(), "b.parquet".into()]
                ),
                ("orders", Format::Csv, vec!["1.csv.gz".to_owned(), "2.csv".into()]),
            ]
        );
    }

    #[tokio::test]
    async fn shared_stems_fall_back_to_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["orders.csv", "orders.parquet", "items.json", "items/part-0.json"] {
            write(d, name);
        }
        assert_eq!(
            names(d).await,
            [
                ("items".into(), Format::Json, 1),
                ("items.json".into(), Format::Json, 1),
                ("orders.csv".into(), Format::Csv, 1),
                ("orders.parquet".into(), Format::Parquet, 1),
            ]
        );
    }
}
