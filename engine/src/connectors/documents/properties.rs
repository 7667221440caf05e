//! Property tests of the mapping: random documents never panic, and every
//! value ends up in a typed column, in `_document`, or in a clear error.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use proptest::prelude::*;

use super::convert::{MISMATCH_SQLSTATE, to_batch};
use super::infer::{KeyField, Shape, infer};
use super::mapping::{ColumnSpec, DOCUMENT_COLUMN, Mapping, OnMismatch, Target};
use super::value::{Document, Value};
use crate::contract::{ColumnInfo, SourceError, TableDescription, TableKind, TableRef};

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![any::<f64>(), -1e6..1e6f64].prop_map(Value::Float),
        prop_oneof![
            ".{0,12}",
            "-?[0-9]{1,20}",
            "[0-9]{1,3}\\.[0-9]{1,3}",
            "(true|false|TRUE)",
            "20[0-9]{2}-0[1-9]-1[0-9]T1[0-9]:[0-5][0-9]:[0-5][0-9](Z|\\+02:00|\\.123456Z)"
        ]
        .prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
        any::<i64>().prop_map(Value::Timestamp),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-c]{1,2}", inner, 0..4).prop_map(Value::Object),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-e]",
        Just(String::new()),
        Just(DOCUMENT_COLUMN.to_owned()),
        Just("with space".to_owned()),
        Just("_id".to_owned()),
    ]
}

fn documents() -> impl Strategy<Value = Vec<Document>> {
    proptest::collection::vec(proptest::collection::btree_map(field_name(), value(), 0..6), 0..12).prop_map(|docs| {
        docs.into_iter()
            .enumerate()
            .map(|(i, mut fields)| {
                let id = format!("doc:{i}");
                fields.insert("_id".into(), Value::String(id.clone()));
                Document::new(id, fields)
            })
            .collect()
    })
}

fn mapping() -> impl Strategy<Value = Mapping> {
    (
        any::<bool>(),
        prop_oneof![Just(OnMismatch::Fail), Just(OnMismatch::Null), Just(OnMismatch::Json)],
    )
        .prop_map(|(keep_document, on_mismatch)| Mapping {
            sample: 1000,
            keep_document,
            on_mismatch,
        })
}

fn shape(text_scalars: bool) -> Shape {
    Shape {
        key: vec![KeyField {
            name: "_id".into(),
            spec: ColumnSpec::new(Target::String),
            detail: "key".into(),
            nullable: false,
        }],
        text_scalars,
        warnings: vec![],
    }
}

fn table() -> TableRef {
    TableRef {
        schema: "s".into(),
        name: "t".into(),
    }
}

fn target(column: &ColumnInfo) -> Option<Target> {
    ColumnSpec::parse(&column.source_type).map(|s| s.target)
}

/// The JSON text of row `row` of the `_document` column, if the batch has it.
fn document_text(columns: &[ColumnInfo], batch: &RecordBatch, row: usize) -> Option<String> {
    let index = columns.iter().position(|c| target(c) == Some(Target::Document))?;
    let column = batch.column(index).as_string::<i32>();
    (!column.is_null(row)).then(|| column.value(row).to_owned())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Columns inferred from some documents, then all of them converted.
    #[test]
    fn every_value_lands_somewhere(
        docs in documents(),
        sampled in 0usize..12,
        mapping in mapping(),
        text_scalars in any::<bool>(),
    ) {
        let sample = &docs[..sampled.min(docs.len())];
        let columns = infer(sample, &shape(text_scalars), &mapping);
        let description = TableDescription {
            table: table(),
            kind: TableKind::Table,
            columns: columns.clone(),
            estimated_rows: None,
        };
        let schema = description.arrow_schema();
        match to_batch(&table(), &docs, &columns, &schema, &mapping) {
            Ok(batch) => {
                prop_assert_eq!(batch.num_rows(), docs.len());
                for (row, doc) in docs.iter().enumerate() {
                    let kept = document_text(&columns, &batch, row);
                    if let Some(text) = &kept {
                        prop_assert_eq!(text, &doc.to_json().to_string());
                    }
                    for (name, value) in &doc.fields {
                        if *value == Value::Null {
                            continue;
                        }
                        let column = columns.iter().position(|c| c.name == *name);
                        let in_column = column.is_some_and(|i| !batch.column(i).is_null(row));
                        if let Some(i) = column.filter(|_| in_column)
                            && target(&columns[i]) == Some(Target::Json)
                        {
                            prop_assert_eq!(batch.column(i).as_string::<i32>().value(row), value.to_json().to_string());
                        }
                        prop_assert!(
                            in_column || kept.is_some() || mapping.on_mismatch == OnMismatch::Null,
                            "field {name} = {value:?} of {} was dropped", doc.id
                        );
                    }
                }
            }
            Err(SourceError::Query { code, message }) => {
                prop_assert_eq!(code.as_deref(), Some(MISMATCH_SQLSTATE));
                prop_assert_eq!(mapping.on_mismatch, OnMismatch::Fail, "{}", message);
                prop_assert!(
                    docs.iter().any(|d| message.contains(&format!("document {} of s.t: field \"", d.id))),
                    "{}", message
                );
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    /// Values of one consistent kind always fit the column inferred from them.
    #[test]
    fn a_sample_of_everything_always_fits(docs in documents(), mapping in mapping(), text_scalars in any::<bool>()) {
        let columns = infer(&docs, &shape(text_scalars), &mapping);
        let description = TableDescription { table: table(), kind: TableKind::Table, columns: columns.clone(), estimated_rows: None };
        let result = to_batch(&table(), &docs, &columns, &description.arrow_schema(), &mapping);
        // Only an integer beyond 2^53 in a FLOAT64 column inferred from mixed numbers may fail.
        if let Err(e) = &result {
            prop_assert!(e.to_string().contains("int64 value"), "{e}");
        }
    }
}

#[test]
fn a_mismatch_names_document_and_field() {
    let docs = vec![
        Document::new(
            "user:1",
            BTreeMap::from([
                ("_id".into(), Value::String("user:1".into())),
                ("age".into(), Value::Int(1)),
            ]),
        ),
        Document::new(
            "user:2",
            BTreeMap::from([
                ("_id".into(), Value::String("user:2".into())),
                ("age".into(), Value::String("forty".into())),
            ]),
        ),
    ];
    let fail = Mapping::default();
    let columns = infer(&docs[..1], &shape(false), &fail);
    let description = TableDescription {
        table: table(),
        kind: TableKind::Table,
        columns: columns.clone(),
        estimated_rows: None,
    };
    let schema = description.arrow_schema();
    let err = to_batch(&table(), &docs, &columns, &schema, &fail)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "document user:2 of s.t: field \"age\" holds the string value \"forty\", which does not fit column type INT64; \
         set on_type_mismatch 'null' or 'json' on the connection or the job, or give the column another type with \
         COLUMNS"
    );
    let json = Mapping {
        on_mismatch: OnMismatch::Json,
        ..Mapping::default()
    };
    let columns = infer(&docs[..1], &shape(false), &json);
    let batch = to_batch(&table(), &docs, &columns, &schema_of(&columns), &json).unwrap();
    assert!(batch.column(1).is_null(1));
    assert_eq!(
        document_text(&columns, &batch, 1).unwrap(),
        r#"{"_id":"user:2","age":"forty"}"#
    );
}

fn schema_of(columns: &[crate::contract::ColumnInfo]) -> datafusion::arrow::datatypes::SchemaRef {
    TableDescription {
        table: table(),
        kind: TableKind::Table,
        columns: columns.to_vec(),
        estimated_rows: None,
    }
    .arrow_schema()
}
