//! The watermark of a job loading files `INCREMENTAL BY _modified_at`: the
//! newest last-modified time loaded, and the files loaded at exactly that
//! time (their `_file` values). The next run reads the files modified
//! after that time, and those modified at that time that it does not name:
//! a file that shows up later with the same timestamp (stores keep
//! seconds only, a listing that a new file passed, `touch -d`) is loaded
//! once, and none is loaded twice.
//!
//! The files are part of the watermark's text (`<time> with files
//! ["s3://b/a.csv", ...]`), so they commit with the destination and the
//! catalog exactly as the time does. Only the files at the newest time are
//! kept, so the text stays small however many files a table has.

use std::collections::BTreeSet;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, Scalar};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::datatypes::DataType;
use datafusion::scalar::ScalarValue;

use super::define::JobColumns;
use super::window;
use crate::contract::{Dialect, FILE_COLUMN, FILE_MODIFIED_TYPE, FILE_URL_TYPE};
use crate::error::EngineError;

/// What follows the time in a watermark's text, before the files.
const SEPARATOR: &str = " with files ";

/// A watermark's cursor value, without the files it names.
pub(super) fn cursor_text(mark: &str) -> &str {
    mark.split_once(SEPARATOR).map_or(mark, |(cursor, _)| cursor)
}

/// The files a watermark names (none for a plain one).
pub(super) fn files(mark: &str) -> Result<BTreeSet<String>, EngineError> {
    match mark.split_once(SEPARATOR) {
        None => Ok(BTreeSet::new()),
        Some((_, files)) => serde_json::from_str(files).map_err(|e| EngineError::InvalidJob {
            message: format!("the watermark's list of files cannot be read ({e}): {mark}"),
        }),
    }
}

/// The watermark text of `cursor` with `files` loaded at that value.
fn text(cursor: &str, files: &BTreeSet<String>) -> String {
    if files.is_empty() {
        return cursor.to_owned();
    }
    let list = serde_json::to_string(files).expect("a list of strings serialises");
    format!("{cursor}{SEPARATOR}{list}")
}

/// Where a file job's scan has each row's `_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileOrigin {
    /// Its position in a scanned batch.
    pub position: usize,
    /// Whether the job does not load it, so the scan reads it only for the
    /// watermark and the run drops it.
    pub appended: bool,
}

impl FileOrigin {
    /// The position of `_file` among the described columns, when `cursor`
    /// (a position among the loaded columns) is a file source's
    /// `_modified_at`.
    pub fn column(columns: &JobColumns, cursor: usize) -> Option<usize> {
        let described = &columns.description.columns;
        let is_modified = described
            .get(*columns.indexes.get(cursor)?)
            .is_some_and(|c| c.source_type == FILE_MODIFIED_TYPE);
        is_modified
            .then(|| {
                described
                    .iter()
                    .position(|c| c.name == FILE_COLUMN && c.source_type == FILE_URL_TYPE)
            })
            .flatten()
    }

    /// `batch` without `_file` when the job does not load it.
    pub fn strip(self, batch: RecordBatch) -> RecordBatch {
        if self.appended {
            batch.project(&(0..self.position).collect::<Vec<_>>()).unwrap_or(batch)
        } else {
            batch
        }
    }
}

/// The window's lower bound after watermark `low` that names `files`:
/// `cursor > low OR (cursor = low AND _file NOT IN (files))`.
pub(super) fn lower_bound(
    dialect: &dyn Dialect,
    cursor: &str,
    low: &ScalarValue,
    files: &BTreeSet<String>,
) -> Result<String, EngineError> {
    let literal = |value: &ScalarValue| {
        dialect.bound_literal(value).ok_or_else(|| EngineError::InvalidJob {
            message: format!("cannot write {value} as a literal for the source"),
        })
    };
    let cursor = dialect.quote_ident(cursor);
    let low = literal(low)?;
    if files.is_empty() {
        return Ok(format!("{cursor} > {low}"));
    }
    let names = files
        .iter()
        .map(|f| literal(&ScalarValue::Utf8(Some(f.clone()))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!(
        "({cursor} > {low} OR ({cursor} = {low} AND {} NOT IN ({})))",
        dialect.quote_ident(FILE_COLUMN),
        names.join(", ")
    ))
}

/// The newest cursor value a run has read and the files read at it,
/// starting from the watermark's.
#[derive(Debug)]
pub(super) struct Boundary {
    at: Option<ScalarValue>,
    files: BTreeSet<String>,
}

impl Boundary {
    /// Starts at watermark `mark` (the files it names), or at the first
    /// run's lower bound `low`.
    pub fn new(low: Option<ScalarValue>, mark: Option<&str>) -> Result<Self, EngineError> {
        Ok(Self {
            at: low,
            files: mark.map(files).transpose()?.unwrap_or_default(),
        })
    }

    /// Takes in the rows of one batch: their cursor values and files.
    pub fn observe(&mut self, cursor: &ArrayRef, file: &ArrayRef) -> Result<(), EngineError> {
        let Some(newest) = window::column_max(cursor) else {
            return Ok(());
        };
        if self.at.as_ref().is_none_or(|at| newest > *at) {
            self.at = Some(newest.clone());
            self.files.clear();
        } else if self.at.as_ref() != Some(&newest) {
            return Ok(());
        }
        let failed = |e: datafusion::arrow::error::ArrowError| EngineError::Extract {
            message: format!("cannot read the files of the rows: {e}"),
        };
        let at = newest
            .to_array()
            .map_err(|e| EngineError::Extract { message: e.to_string() })?;
        let matches = eq(cursor, &Scalar::new(at)).map_err(failed)?;
        let names = cast(file, &DataType::Utf8).map_err(failed)?;
        let names = names.as_string::<i32>();
        for row in (0..matches.len()).filter(|&row| matches.is_valid(row) && matches.value(row)) {
            if names.is_valid(row) {
                self.files.insert(names.value(row).to_owned());
            }
        }
        Ok(())
    }

    /// Takes in what another reader of the run saw (a cluster task): the
    /// newest value it read and the files it read at that value.
    pub fn absorb(&mut self, at: Option<ScalarValue>, files: impl IntoIterator<Item = String>) {
        let Some(at) = at else { return };
        if self.at.as_ref().is_none_or(|mine| at > *mine) {
            self.at = Some(at);
            self.files = files.into_iter().collect();
        } else if self.at.as_ref() == Some(&at) {
            self.files.extend(files);
        }
    }

    /// The files read at the newest value.
    pub fn files(&self) -> &BTreeSet<String> {
        &self.files
    }

    /// The watermark to commit: the newest value read (or the one the run
    /// started from) with the files read at it.
    pub fn watermark(&self) -> Option<String> {
        self.at.as_ref().map(|at| text(&window::text(at), &self.files))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{StringArray, TimestampMicrosecondArray};

    use super::*;
    use crate::sources::datafusion_sql::DataFusionDialect;

    fn batch(times: &[i64], files: &[&str]) -> (ArrayRef, ArrayRef) {
        let times: ArrayRef = Arc::new(TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC"));
        let files: ArrayRef = Arc::new(StringArray::from(files.to_vec()));
        (times, files)
    }

    fn at(micros: i64) -> ScalarValue {
        ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into()))
    }

    #[test]
    fn tasks_boundaries_merge_into_the_runs() {
        let mut run = Boundary::new(Some(at(5)), Some("x with files [\"old\"]")).unwrap();
        run.absorb(Some(at(4)), ["older".to_owned()]);
        assert_eq!(
            run.files().iter().collect::<Vec<_>>(),
            ["old"],
            "an older time changes nothing"
        );
        run.absorb(Some(at(7)), ["a".to_owned()]);
        run.absorb(None, ["none".to_owned()]);
        run.absorb(Some(at(7)), ["b".to_owned(), "a".to_owned()]);
        run.absorb(Some(at(6)), ["c".to_owned()]);
        assert_eq!(
            run.files().iter().collect::<Vec<_>>(),
            ["a", "b"],
            "the files at the newest time"
        );
        assert!(run.watermark().unwrap().ends_with(" with files [\"a\",\"b\"]"));
    }

    #[test]
    fn the_watermark_keeps_the_files_at_the_newest_time() {
        let mut boundary = Boundary::new(None, None).unwrap();
        let (t, f) = batch(&[5, 7, 7], &["a", "b", "c"]);
        boundary.observe(&t, &f).unwrap();
        let (t, f) = batch(&[6], &["d"]);
        boundary.observe(&t, &f).unwrap();
        let mark = boundary.watermark().unwrap();
        assert_eq!(cursor_text(&mark), window::text(&at(7)));
        assert_eq!(files(&mark).unwrap(), BTreeSet::from(["b".to_owned(), "c".to_owned()]));

        // A later run at the same time adds its files; a newer time starts over.
        let mut next = Boundary::new(Some(at(7)), Some(&mark)).unwrap();
        let (t, f) = batch(&[7], &["e"]);
        next.observe(&t, &f).unwrap();
        assert_eq!(files(&next.watermark().unwrap()).unwrap().len(), 3);
        let (t, f) = batch(&[8], &["f"]);
        next.observe(&t, &f).unwrap();
        assert_eq!(
            files(&next.watermark().unwrap()).unwrap(),
            BTreeSet::from(["f".to_owned()])
        );
    }

    #[test]
    fn a_run_that_reads_nothing_keeps_the_watermark() {
        let mark = text(
            "2026-01-01T00:00:00Z",
            &BTreeSet::from(["s3://b/a \"1\".csv".to_owned()]),
        );
        let boundary = Boundary::new(Some(at(1)), Some(&mark)).unwrap();
        assert_eq!(
            files(&boundary.watermark().unwrap()).unwrap(),
            files(&mark).unwrap(),
            "names with quotes survive"
        );
        assert_eq!(cursor_text("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00Z");
        assert!(files("2026-01-01T00:00:00Z").unwrap().is_empty());
    }

    #[test]
    fn the_lower_bound_skips_only_the_named_files_at_the_watermark() {
        let files = BTreeSet::from(["s3://b/a.csv".to_owned(), "s3://b/it's.csv".to_owned()]);
        let bound = lower_bound(&DataFusionDialect, "_modified_at", &at(1), &files).unwrap();
        assert!(bound.starts_with("(\"_modified_at\" > "), "{bound}");
        assert!(
            bound.contains("\"_file\" NOT IN ('s3://b/a.csv', 's3://b/it''s.csv')"),
            "{bound}"
        );
        let plain = lower_bound(&DataFusionDialect, "_modified_at", &at(1), &BTreeSet::new()).unwrap();
        assert!(!plain.contains("_file"), "{plain}");
    }
}
