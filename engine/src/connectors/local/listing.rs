//! Which tables a directory holds: its data files, and its subdirectories
//! of data files of one format.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tracing::warn;

/// A file format the `local` type reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// Comma-separated, with a header row.
    Csv,
    /// Newline-delimited JSON objects.
    Json,
    Parquet,
}

impl Format {
    /// The format of a file, by its extension (any case).
    fn of(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Format::Csv),
            "json" | "ndjson" | "jsonl" => Some(Format::Json),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// One data file.
#[derive(Debug, Clone)]
pub(super) struct DataFile {
    pub(super) path: PathBuf,
    pub(super) size: u64,
    pub(super) modified: Option<SystemTime>,
}

/// One table: a data file, or the data files of a subdirectory.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) name: String,
    pub(super) format: Format,
    /// Sorted by path; never empty.
    pub(super) files: Vec<DataFile>,
}

impl Entry {
    /// The size of all its files.
    pub(super) fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// When its newest file was last written.
    pub(super) fn modified(&self) -> Option<SystemTime> {
        self.files.iter().filter_map(|f| f.modified).max()
    }
}

/// A table before names are made unique.
struct Candidate {
    /// The file stem, or the subdirectory name.
    stem: String,
    /// The full file name, for files.
    file_name: Option<String>,
    format: Format,
    files: Vec<DataFile>,
}

/// The tables of `dir`, sorted by name.
pub(super) fn entries(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut candidates = Vec::new();
    for (name, path) in children(dir)? {
        // A dangling symbolic link, or a file removed meanwhile.
        let Ok(metadata) = fs::metadata(&path) else { continue };
        if metadata.is_file() {
            let Some(format) = Format::of(&path) else { continue };
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(&name).to_owned();
            candidates.push(Candidate {
                stem,
                file_name: Some(name),
                format,
                files: vec![data_file(path, &metadata)],
            });
        } else if metadata.is_dir() {
            match subdirectory(&path) {
                Ok(Some((format, files))) => candidates.push(Candidate {
                    stem: name,
                    file_name: None,
                    format,
                    files,
                }),
                Ok(None) => {}
                Err(e) => warn!(directory = %path.display(), error = %e, "subdirectory skipped: cannot be read"),
            }
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
            warn!(table = %name, directory = %dir.display(), "table name taken twice: the second one is skipped");
            continue;
        }
        let entry = Entry {
            name: name.clone(),
            format: candidate.format,
            files: candidate.files,
        };
        tables.insert(name, entry);
    }
    Ok(tables.into_values().collect())
}

/// The data files directly in a subdirectory, when they share one format.
fn subdirectory(dir: &Path) -> io::Result<Option<(Format, Vec<DataFile>)>> {
    let mut format = None;
    let mut files = Vec::new();
    for (_, path) in children(dir)? {
        let Ok(metadata) = fs::metadata(&path) else { continue };
        let Some(this) = Format::of(&path).filter(|_| metadata.is_file()) else {
            continue;
        };
        if format.is_some_and(|f| f != this) {
            warn!(directory = %dir.display(), "subdirectory skipped: its files have more than one format");
            return Ok(None);
        }
        format = Some(this);
        files.push(data_file(path, &metadata));
    }
    Ok(format.map(|format| (format, files)))
}

/// The visible entries of a directory (names not starting with `.` or `_`,
/// in UTF-8), sorted by name.
fn children(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut children = Vec::new();
    for item in fs::read_dir(dir)? {
        let item = item?;
        let Ok(name) = item.file_name().into_string() else {
            warn!(directory = %dir.display(), file = ?item.file_name(), "file skipped: its name is not UTF-8");
            continue;
        };
        if !name.starts_with(['.', '_']) {
            children.push((name, item.path()));
        }
    }
    children.sort();
    Ok(children)
}

fn data_file(path: PathBuf, metadata: &Metadata) -> DataFile {
    DataFile {
        path,
        size: metadata.len(),
        modified: metadata.modified().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str) {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "a\n1\n").unwrap();
    }

    fn names(dir: &Path) -> Vec<(String, Format, usize)> {
        entries(dir)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.format, e.files.len()))
            .collect()
    }

    #[test]
    fn files_and_single_format_subdirectories_are_tables() {
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
            names(d),
            [
                ("Events".into(), Format::Json, 1),
                ("daily".into(), Format::Csv, 2),
                ("facts".into(), Format::Parquet, 1),
                ("logs".into(), Format::Json, 1),
                ("orders".into(), Format::Csv, 1),
            ]
        );
        let daily = entries(d).unwrap().into_iter().find(|e| e.name == "daily").unwrap();
        assert_eq!(daily.size(), 8);
        assert!(daily.modified().is_some());
        assert!(daily.files[0].path.ends_with("daily/2024-01-01.csv"));
    }

    #[test]
    fn shared_stems_fall_back_to_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["orders.csv", "orders.parquet", "items.json", "items/part-0.json"] {
            write(d, name);
        }
        assert_eq!(
            names(d),
            [
                ("items".into(), Format::Json, 1),
                ("items.json".into(), Format::Json, 1),
                ("orders.csv".into(), Format::Csv, 1),
                ("orders.parquet".into(), Format::Parquet, 1),
            ]
        );
    }
}
