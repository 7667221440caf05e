//! docs/type-mapping.md embeds the type-mapping tables every connector's
//! `types.rs` renders; these tests keep the document and the code in step.

use datafusion::arrow::datatypes::DataType;

use super::{bigquery, mysql, postgres, redshift, snowflake, sqlserver};
use crate::type_mapping::{load_type, render_numeric_markdown_table};

/// Every documented mapping loads into BigQuery as the type the docs
/// show: the BigQuery schema code reads types through `load_type`.
#[test]
fn documented_types_load_as_documented() {
    let rows = postgres::types::examples()
        .into_iter()
        .map(|(label, column)| (label.to_owned(), postgres::types::map(&column)))
        .chain(
            mysql::types::examples()
                .into_iter()
                .map(|(label, column)| (label.to_owned(), mysql::types::map(&column))),
        )
        .chain(
            redshift::types::examples()
                .into_iter()
                .map(|(label, column)| (label.to_owned(), redshift::types::map(&column))),
        )
        .chain(
            sqlserver::types::examples()
                .into_iter()
                .map(|(label, column)| (label.to_owned(), sqlserver::types::map(&column))),
        )
        .chain(
            snowflake::types::examples()
                .into_iter()
                .map(|(label, column)| (label, snowflake::types::map(&column))),
        )
        .chain(
            bigquery::types::examples()
                .into_iter()
                .map(|(label, field)| (label, bigquery::types::mapping(&field))),
        );
    for (label, mapping) in rows {
        let in_flight = match &mapping.arrow {
            DataType::List(element) if mapping.repeated => element.data_type().clone(),
            other => other.clone(),
        };
        assert_eq!(
            load_type(&in_flight, mapping.type_tag()),
            Ok(mapping.bigquery),
            "{label} is documented as {}",
            mapping.bigquery_ddl()
        );
    }
    assert!(load_type(&DataType::UInt64, None).unwrap_err().contains("UInt64"));
    assert!(
        load_type(
            &DataType::Duration(datafusion::arrow::datatypes::TimeUnit::Second),
            None
        )
        .is_err()
    );
}

/// docs/type-mapping.md embeds the rendered tables; they must not drift.
#[test]
fn docs_are_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/type-mapping.md");
    let doc = std::fs::read_to_string(path).expect("read docs/type-mapping.md");
    let sections = [
        ("numeric", render_numeric_markdown_table()),
        ("postgres", postgres::types::render_markdown_table()),
        ("mysql", mysql::types::render_markdown_table()),
        ("redshift", redshift::types::render_markdown_table()),
        ("sqlserver", sqlserver::types::render_markdown_table()),
        ("snowflake", snowflake::types::render_markdown_table()),
        ("bigquery", bigquery::types::render_markdown_table()),
    ];
    let mut expected = doc.clone();
    for (name, table) in &sections {
        let begin = format!("<!-- BEGIN GENERATED: {name} -->\n");
        let end = format!("<!-- END GENERATED: {name} -->");
        let start = expected
            .find(&begin)
            .unwrap_or_else(|| panic!("{path}: missing {begin:?}"))
            + begin.len();
        let stop = start
            + expected[start..]
                .find(&end)
                .unwrap_or_else(|| panic!("{path}: missing {end:?} after {begin:?}"));
        expected.replace_range(start..stop, table);
    }
    if expected == doc {
        return;
    }
    if std::env::var_os("SLUICE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(path, &expected).expect("write docs/type-mapping.md");
        return;
    }
    panic!(
        "docs/type-mapping.md is out of date with engine/src/type_mapping and connectors/*/types.rs; regenerate it with \
         `SLUICE_BLESS=1 cargo test -p sluice-engine connectors::type_docs::docs_are_up_to_date`"
    );
}
