//! CSV files of one table whose inferred column types differ (`id` is
//! whole numbers in one file, text in another): the table is read with a
//! type every file's values fit, and `DESCRIBE` says which files disagree.

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::object_store::path::Path;

/// A column whose type differs between two files.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Disagreement {
    pub(super) column: String,
    /// The first file with the column, and its type there.
    pub(super) first: (Path, DataType),
    /// The first file that differs from it, and its type there.
    pub(super) other: (Path, DataType),
    /// The type the column is read with.
    pub(super) chosen: DataType,
}

impl Disagreement {
    /// The `DESCRIBE` warning, naming both files (`url` is what goes
    /// before an object's path).
    pub(super) fn warning(&self, url: &str) -> String {
        format!(
            "the files disagree on this column's type: {} in {url}{}, {} in {url}{}; read as {} from every file \
             (override with COLUMNS ({} <type>), or rewrite the files to agree)",
            self.first.1, self.first.0, self.other.1, self.other.0, self.chosen, self.column
        )
    }
}

/// The files' schemas (in path order) merged: columns in order of first
/// appearance, a column two files type differently read as the narrowest
/// type both fit (whole and decimal numbers: `Float64`; else `Utf8`), with
/// the first two files that disagree on each such column.
pub(super) fn merge(schemas: &[(Path, Schema)]) -> (Schema, Vec<Disagreement>) {
    let mut fields: Vec<(Field, Path)> = Vec::new();
    let mut disagreements: Vec<Disagreement> = Vec::new();
    for (file, schema) in schemas {
        for field in schema.fields() {
            let Some((merged, first_file)) = fields.iter_mut().find(|(f, _)| f.name() == field.name()) else {
                fields.push((field.as_ref().clone(), file.clone()));
                continue;
            };
            let (known, new) = (merged.data_type().clone(), field.data_type());
            if &known == new || new == &DataType::Null {
                continue;
            }
            let chosen = wider(&known, new);
            if known != DataType::Null {
                match disagreements.iter_mut().find(|d| &d.column == field.name()) {
                    Some(d) => d.chosen = chosen.clone(),
                    None => disagreements.push(Disagreement {
                        column: field.name().clone(),
                        first: (first_file.clone(), known),
                        other: (file.clone(), new.clone()),
                        chosen: chosen.clone(),
                    }),
                }
            }
            *merged = merged.clone().with_data_type(chosen).with_nullable(true);
        }
    }
    let schema = Schema::new(fields.into_iter().map(|(f, _)| f).collect::<Vec<_>>());
    (schema, disagreements)
}

/// A type the values of both `a` and `b` fit, as CSV text reads them.
fn wider(a: &DataType, b: &DataType) -> DataType {
    match (a, b) {
        (DataType::Null, other) | (other, DataType::Null) => other.clone(),
        (DataType::Int64 | DataType::Float64, DataType::Int64 | DataType::Float64) => DataType::Float64,
        _ => DataType::Utf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(columns: &[(&str, DataType)]) -> Schema {
        Schema::new(
            columns
                .iter()
                .map(|(name, t)| Field::new(*name, t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn disagreeing_columns_widen_and_name_the_files() {
        let schemas = [
            (
                Path::from("t/a.csv"),
                schema(&[("id", DataType::Int64), ("x", DataType::Int64)]),
            ),
            (
                Path::from("t/b.csv"),
                schema(&[("id", DataType::Utf8), ("x", DataType::Float64)]),
            ),
            (
                Path::from("t/c.csv"),
                schema(&[("id", DataType::Null), ("y", DataType::Boolean)]),
            ),
        ];
        let (merged, disagreements) = merge(&schemas);
        assert_eq!(
            merged,
            schema(&[
                ("id", DataType::Utf8),
                ("x", DataType::Float64),
                ("y", DataType::Boolean)
            ])
        );
        assert_eq!(disagreements.len(), 2);
        assert_eq!(disagreements[0].column, "id");
        assert_eq!(
            disagreements[0].warning("s3://b/"),
            "the files disagree on this column's type: Int64 in s3://b/t/a.csv, Utf8 in s3://b/t/b.csv; read as Utf8 \
             from every file (override with COLUMNS (id <type>), or rewrite the files to agree)"
        );
        assert_eq!(disagreements[1].chosen, DataType::Float64);
    }

    #[test]
    fn empty_columns_are_no_disagreement() {
        let schemas = [
            (Path::from("a.csv"), schema(&[("id", DataType::Null)])),
            (Path::from("b.csv"), schema(&[("id", DataType::Int64)])),
        ];
        let (merged, disagreements) = merge(&schemas);
        assert_eq!(merged, schema(&[("id", DataType::Int64)]));
        assert!(disagreements.is_empty());
    }
}
