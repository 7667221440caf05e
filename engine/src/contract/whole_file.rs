//! Whole files in a scan: a source file that already holds a load's rows in
//! the destination's columns is handed over as it is, so a destination that
//! can take files copies its bytes instead of decoding and encoding every
//! row (a folder of Parquet files loaded into the warehouse).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::DataFusionError;
use datafusion::object_store::{ObjectMeta, ObjectStore};
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::scalar::ScalarValue;
use futures::stream::BoxStream;

/// A Parquet file whose columns are exactly the load's, except the
/// `constants`: columns the file does not hold, with one value for all its
/// rows (a bucket's `_file` and `_modified_at`, a `key=value` folder).
#[derive(Debug, Clone)]
pub struct WholeFile {
    /// The store the file is read from.
    pub store: Arc<dyn ObjectStore>,
    /// Its path, size and (where the store has one) entity tag, as listed:
    /// a copy reads exactly that version.
    pub meta: ObjectMeta,
    /// The file as users name it (`s3://bucket/key`), for messages.
    pub url: String,
    /// Its rows, from its footer.
    pub rows: u64,
    /// The load's columns the file lacks, by name, with their value.
    pub constants: Vec<(String, ScalarValue)>,
}

/// One part of a scan that may hand whole files over.
#[derive(Debug)]
pub enum ScanPiece {
    /// Rows, as [`Source::scan`](super::Source::scan) streams them.
    Rows(RecordBatch),
    /// A file to be loaded as it is.
    File(WholeFile),
}

/// What [`Source::scan_pieces`](super::Source::scan_pieces) streams.
pub type PieceStream = BoxStream<'static, Result<ScanPiece, DataFusionError>>;

/// Whether the Arrow schema of a file's footer, `file`, is `wanted` (the
/// load's columns other than the constants, in order): the same names and
/// types, and a NOT NULL load column only where the file's is too.
pub fn same_columns(file: &SchemaRef, wanted: &[&datafusion::arrow::datatypes::Field]) -> bool {
    file.fields().len() == wanted.len()
        && file.fields().iter().zip(wanted).all(|(have, want)| {
            have.name() == want.name()
                && have.data_type() == want.data_type()
                && (want.is_nullable() || !have.is_nullable())
        })
}

/// The Arrow schema and row count of the Parquet file `meta` names, from
/// its footer (the file's own Arrow schema where it embeds one).
pub async fn parquet_footer(store: &dyn ObjectStore, meta: &ObjectMeta) -> Result<(SchemaRef, u64), DataFusionError> {
    footer_columns(&*DFParquetMetadata::new(store, meta).fetch_metadata().await?)
}

/// The Arrow schema and row count a Parquet footer gives.
pub fn footer_columns(metadata: &ParquetMetaData) -> Result<(SchemaRef, u64), DataFusionError> {
    let file = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())?;
    Ok((Arc::new(schema), u64::try_from(file.num_rows()).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn columns_match_by_name_type_and_nullability() {
        let file: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        let id = Field::new("id", DataType::Int64, true);
        let note = Field::new("note", DataType::Utf8, true);
        assert!(same_columns(&file, &[&id, &note]));
        // A NOT NULL load column needs a NOT NULL file column.
        let strict = Field::new("note", DataType::Utf8, false);
        assert!(!same_columns(&file, &[&id, &strict]));
        // Another type, another name, another order, a missing column.
        let wide = Field::new("id", DataType::Int32, true);
        assert!(!same_columns(&file, &[&wide, &note]));
        let other = Field::new("memo", DataType::Utf8, true);
        assert!(!same_columns(&file, &[&id, &other]));
        assert!(!same_columns(&file, &[&note, &id]));
        assert!(!same_columns(&file, &[&id]));
    }
}
