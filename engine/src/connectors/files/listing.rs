//! Which tables a prefix holds: its data files, and its folders of data
//! files of one format (with Hive-style `key=value/` folders below them as
//! partition columns).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectMeta, ObjectStore};
use tracing::warn;

use super::globs::TableGlob;

/// A file format of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Comma-separated, with a header row.
    Csv,
    /// Newline-delimited JSON objects.
    Json,
    Parquet,
    /// Avro object container files.
    Avro,
    /// Listed so that `DESCRIBE` can say it is not read yet.
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
}

/// One table: a data file, or the data files of a folder.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) format: Format,
    /// Sorted by path; never empty.
    pub(crate) files: Vec<DataFile>,
    /// Names of the `key=value` folder levels, outermost first.
    pub(crate) partition_keys: Vec<String>,
}

impl Entry {
    /// The size of all its files.
    pub(crate) fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// When its newest file was last written.
    pub(crate) fn modified(&self) -> Option<DateTime<Utc>> {
        self.files.iter().map(|f| f.modified).max()
    }
}

/// A table before names are made unique.
struct Candidate {
    /// The file stem, or the folder name.
    stem: String,
    /// The full file name, for files.
    file_name: Option<String>,
    format: Format,
    files: Vec<DataFile>,
    partition_keys: Vec<String>,
}

/// `prefix` as a listing prefix: `None` for the root.
fn under(prefix: &Path) -> Option<&Path> {
    (!prefix.as_ref().is_empty()).then_some(prefix)
}

/// Whether a file or folder name is shown: not starting with `.` or `_`.
fn visible(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(['.', '_'])
}

/// The tables under `prefix`, sorted by name. A folder that cannot be
/// listed is skipped whole (with a warning), never read in part.
pub(crate) async fn entries(
    store: &dyn ObjectStore,
    prefix: &Path,
) -> Result<Vec<Entry>, datafusion::object_store::Error> {
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
        candidates.push(Candidate {
            stem: stem.to_owned(),
            file_name: Some(name.clone()),
            format,
            files: vec![data_file(object, compression, Vec::new())],
            partition_keys: Vec::new(),
        });
    }
    let mut folders = top.common_prefixes;
    folders.sort();
    for dir in folders {
        let Some(name) = dir.filename().map(str::to_owned) else {
            continue;
        };
        if !visible(&name) {
            continue;
        }
        match folder(store, &dir).await {
            Ok(Some((format, files, partition_keys))) => candidates.push(Candidate {
                stem: name,
                file_name: None,
                format,
                files,
                partition_keys,
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
            files: candidate.files,
            partition_keys: candidate.partition_keys,
        };
        tables.insert(name, entry);
    }
    Ok(tables.into_values().collect())
}

/// The tables the `tables` option names under `prefix`, sorted by name:
/// the data files each pattern matches first, listed as one stream (any
/// depth). A table's files have the format of its first file in path order;
/// files of another format are skipped with a warning, and a table without
/// files is not listed.
pub(crate) async fn globbed(
    store: &dyn ObjectStore,
    prefix: &Path,
    tables: &[TableGlob],
) -> Result<Vec<Entry>, datafusion::object_store::Error> {
    use futures::TryStreamExt;
    let mut found: Vec<Vec<(Format, DataFile)>> = vec![Vec::new(); tables.len()];
    let mut listed = store.list(under(prefix));
    while let Some(object) = listed.try_next().await? {
        let Some(relative) = object
            .location
            .prefix_match(prefix)
            .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>().join("/"))
        else {
            continue;
        };
        let Some((format, compression, _)) = object.location.filename().and_then(Format::of) else {
            continue;
        };
        if let Some(i) = tables.iter().position(|t| t.matches(&relative)) {
            found[i].push((format, data_file(object, compression, Vec::new())));
        }
    }
    let mut entries = Vec::new();
    for (table, mut files) in tables.iter().zip(found) {
        files.sort_by(|a, b| a.1.location.cmp(&b.1.location));
        let Some(&(format, _)) = files.first() else { continue };
        let files = files
            .into_iter()
            .filter_map(|(this, file)| {
                if this != format {
                    warn!(table = %table.name, file = %file.location, "file skipped: its format differs from the table's first file's");
                }
                (this == format).then_some(file)
            })
            .collect();
        entries.push(Entry {
            name: table.name.clone(),
            format,
            files,
            partition_keys: Vec::new(),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// A `key=value` folder name, split.
fn partition(name: &str) -> Option<(&str, &str)> {
    name.split_once('=').filter(|(key, _)| !key.is_empty())
}

/// The data files of a folder, directly inside it or below `key=value`
/// folders, when they share one format; with the partition keys. The keys
/// are those of most files; files below other `key=value` levels are
/// skipped with a warning.
async fn folder(
    store: &dyn ObjectStore,
    dir: &Path,
) -> Result<Option<(Format, Vec<DataFile>, Vec<String>)>, datafusion::object_store::Error> {
    let mut format = None;
    let mut found = Vec::new();
    // Folders to list, with the partition levels above them.
    let mut pending = vec![(dir.clone(), Vec::<(String, String)>::new())];
    while let Some((path, levels)) = pending.pop() {
        let listed = store.list_with_delimiter(Some(&path)).await?;
        for object in listed.objects {
            let Some(name) = object.location.filename() else {
                continue;
            };
            if !visible(name) {
                continue;
            }
            let Some((this, compression, _)) = Format::of(name) else {
                continue;
            };
            if format.is_some_and(|f| f != this) {
                warn!(folder = %dir, "folder skipped: its files have more than one format");
                return Ok(None);
            }
            format = Some(this);
            found.push((object, compression, levels.clone()));
        }
        for sub in listed.common_prefixes {
            let Some(name) = sub.filename() else { continue };
            if let Some((key, value)) = partition(name).filter(|_| visible(name)) {
                let mut below = levels.clone();
                below.push((key.to_owned(), value.to_owned()));
                pending.push((sub.clone(), below));
            }
        }
    }
    let Some(format) = format else { return Ok(None) };
    found.sort_by(|a, b| a.0.location.cmp(&b.0.location));
    let key_names = |levels: &[(String, String)]| levels.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let mut counts: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for (_, _, levels) in &found {
        *counts.entry(key_names(levels)).or_default() += 1;
    }
    let keys = counts
        .into_iter()
        .max_by_key(|(keys, n)| (*n, keys.len()))
        .map(|(keys, _)| keys)
        .unwrap_or_default();
    let mut files = Vec::with_capacity(found.len());
    for (object, compression, levels) in found {
        if key_names(&levels) != keys {
            warn!(folder = %dir, file = %object.location, "file skipped: its key=value folders differ from the other files'");
            continue;
        }
        let values = levels.into_iter().map(|(_, v)| v).collect();
        files.push(data_file(object, compression, values));
    }
    Ok(Some((format, files, keys)))
}

fn data_file(object: ObjectMeta, compression: FileCompressionType, partitions: Vec<String>) -> DataFile {
    DataFile {
        location: object.location,
        size: object.size,
        modified: object.last_modified,
        compression,
        partitions,
    }
}

/// Whether the prefix can be listed: reads at most one page.
pub(crate) async fn first_page(store: &dyn ObjectStore, prefix: &Path) -> Result<(), datafusion::object_store::Error> {
    use futures::StreamExt;
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
        entries(store.as_ref(), &prefix).await.unwrap()
    }

    async fn names(dir: &std::path::Path) -> Vec<(String, Format, usize)> {
        list(dir)
            .await
            .into_iter()
            .map(|e| (e.name, e.format, e.files.len()))
            .collect()
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
        assert_eq!(daily.size(), 8);
        assert!(daily.modified().is_some());
        assert!(daily.files[0].location.as_ref().ends_with("daily/2024-01-01.csv"));
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
        let files: Vec<_> = sales
            .files
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
        let found: Vec<_> = entries
            .iter()
            .map(|e| {
                let files: Vec<_> = e
                    .files
                    .iter()
                    .map(|f| f.location.filename().unwrap().to_owned())
                    .collect();
                (e.name.as_str(), e.format, files)
            })
            .collect();
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
