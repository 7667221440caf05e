//! A file table split for a cluster by file: the server lists the table
//! once and deals its files out to the parts, about equal in bytes; each
//! part carries its share of that listing (its files, with their sizes,
//! times and versions, and what the table's files are), so that every
//! part reads exactly the files the server listed, none twice, without
//! listing again.

use chrono::DateTime;
use datafusion::object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::listing::{DataFile, Entry, Files, Format};
use crate::contract::SourceError;

/// One part's share of a table's listing, as its part token carries it.
#[derive(Debug, Serialize, Deserialize)]
struct Share {
    format: Format,
    partition_keys: Vec<String>,
    sheet: Option<String>,
    files: Vec<ListedFile>,
}

/// A file as the server listed it.
#[derive(Debug, Serialize, Deserialize)]
struct ListedFile {
    path: String,
    size: u64,
    /// Microseconds since 1970, UTC.
    modified: i64,
    partitions: Vec<String>,
    e_tag: Option<String>,
}

/// `files` dealt out to at most `parts` groups of about equal bytes.
pub(super) fn deal(files: Vec<DataFile>, parts: usize) -> Vec<Vec<DataFile>> {
    crate::contract::deal_by_size(files, parts, |f| f.size)
}

/// The token of a part that reads `files` of `entry`.
pub(super) fn token(entry: &Entry, files: &[DataFile]) -> String {
    let share = Share {
        format: entry.format,
        partition_keys: entry.partition_keys.clone(),
        sheet: entry.sheet.clone(),
        files: files
            .iter()
            .map(|f| ListedFile {
                path: f.location.to_string(),
                size: f.size,
                modified: f.modified.timestamp_micros(),
                partitions: f.partitions.clone(),
                e_tag: f.e_tag.clone(),
            })
            .collect(),
    };
    serde_json::to_string(&share).expect("a share serialises")
}

/// The table `name` with the files a part's token names as its listing.
pub(super) fn entry_of(name: &str, token: &str) -> Result<Entry, SourceError> {
    let bad = |why: String| SourceError::Query {
        code: Some("XX000".into()),
        message: format!("a part of {name} names its files wrongly: {why}"),
    };
    let share: Share = serde_json::from_str(token).map_err(|e| bad(e.to_string()))?;
    let files = (share.files.into_iter())
        .map(|f| {
            let location = Path::parse(&f.path).map_err(|e| bad(e.to_string()))?;
            let file_name = location.filename().unwrap_or_default();
            let (_, compression, _) =
                Format::of(file_name).ok_or_else(|| bad(format!("{file_name} is no data file")))?;
            let modified =
                DateTime::from_timestamp_micros(f.modified).ok_or_else(|| bad(format!("time {}", f.modified)))?;
            Ok(DataFile {
                location,
                size: f.size,
                modified,
                compression,
                partitions: f.partitions,
                e_tag: f.e_tag,
            })
        })
        .collect::<Result<Vec<_>, SourceError>>()?;
    Ok(Entry {
        name: name.to_owned(),
        format: share.format,
        partition_keys: share.partition_keys,
        count: files.len() as u64,
        size: files.iter().map(|f| f.size).sum(),
        modified: files.iter().map(|f| f.modified).max(),
        sheet: share.sheet,
        files: Files::Listed(files),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::datasource::file_format::file_compression_type::FileCompressionType;

    fn file(name: &str, size: u64) -> DataFile {
        DataFile {
            location: Path::from(format!("in/events/day=1/{name}")),
            size,
            modified: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            compression: FileCompressionType::UNCOMPRESSED,
            partitions: vec!["1".into()],
            e_tag: Some(format!("\"{name}\"")),
        }
    }

    fn names(groups: &[Vec<DataFile>]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| g.iter().map(|f| f.location.filename().unwrap().to_owned()).collect())
            .collect()
    }

    #[test]
    fn files_are_dealt_out_by_bytes_each_once() {
        let files = vec![
            file("a.csv", 10),
            file("b.csv", 50),
            file("c.csv", 20),
            file("d.csv", 30),
            file("e.csv", 5),
        ];
        let groups = deal(files, 2);
        assert_eq!(
            names(&groups),
            [vec!["a.csv", "b.csv"], vec!["c.csv", "d.csv", "e.csv"]]
        );
        let bytes: Vec<u64> = groups.iter().map(|g| g.iter().map(|f| f.size).sum()).collect();
        assert_eq!(bytes, [60, 55]);
        assert_eq!(deal(vec![file("a.csv", 1)], 8).len(), 1, "no empty parts");
        assert_eq!(deal(Vec::new(), 8).len(), 1, "one empty part for no files");
        assert!(deal(Vec::new(), 8)[0].is_empty());
    }

    #[test]
    fn a_token_gives_back_the_files_it_names() {
        let entry = Entry {
            name: "events".into(),
            format: Format::Csv,
            partition_keys: vec!["day".into()],
            files: Files::Listed(Vec::new()),
            count: 9,
            size: 999,
            modified: None,
            sheet: None,
        };
        let listed = vec![file("a.csv.gz", 10), file("b.csv", 20)];
        let back = entry_of("events", &token(&entry, &listed)).unwrap();
        assert_eq!(
            (back.format, back.partition_keys, back.count, back.size),
            (Format::Csv, vec!["day".to_owned()], 2, 30)
        );
        let Files::Listed(files) = back.files else {
            panic!("the part's files")
        };
        assert_eq!(files.len(), 2);
        for (file, listed) in files.iter().zip(&listed) {
            assert_eq!(
                (&file.location, file.size, file.modified, &file.partitions, &file.e_tag),
                (
                    &listed.location,
                    listed.size,
                    listed.modified,
                    &listed.partitions,
                    &listed.e_tag
                )
            );
        }
        assert_eq!(files[0].compression, FileCompressionType::GZIP, "from the file's name");
        let wrong = entry_of("events", "{\"format\": 1}").unwrap_err();
        assert!(
            wrong.to_string().contains("a part of events names its files wrongly"),
            "{wrong}"
        );
    }
}
