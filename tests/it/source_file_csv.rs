//! CSV syntax options of file connections (`header`, `delimiter`, `quote`,
//! `escape`) through a real client: refused when wrong, used by DESCRIBE,
//! queries and jobs.

use std::fs;

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headerless_semicolon_file_describes_reads_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("people.csv"), "1;'Ann';10.5\n2;'B;o\\'b';20\n3;'Cy';\n").unwrap();
    let sluice = Sluice::start();
    let client = sluice.client().await;

    for (option, value) in [("delimiter", ";;"), ("quote", ""), ("escape", "é")] {
        let message = expect_err(
            &client,
            &format!(
                "CREATE CONNECTION bad TYPE local OPTIONS (path '{}', {option} '{value}')",
                d.display()
            ),
            "22023",
        )
        .await;
        assert!(message.contains(&format!("\"{option}\"")), "{option}: {message}");
    }
    let message = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION bad TYPE local OPTIONS (path '{}', delimiter '\"')",
            d.display()
        ),
        "22023",
    )
    .await;
    assert!(message.contains("\"delimiter\" and \"quote\""), "{message}");
    assert!(rows(&client, "SHOW CONNECTIONS").await.is_empty(), "nothing half-saved");

    client
        .batch_execute(&format!(
            "CREATE CONNECTION semi TYPE local OPTIONS (path '{}', header 'false', delimiter ';', quote '''', \
             escape '\\')",
            d.display()
        ))
        .await
        .unwrap();
    let described = rows(&client, "DESCRIBE semi.files.people").await;
    let columns: Vec<(String, String)> = described
        .iter()
        .map(|c| (c[0].clone().unwrap(), c[7].clone().unwrap()))
        .collect();
    assert_eq!(
        columns,
        [
            ("column_1".to_owned(), "INT64".to_owned()),
            ("column_2".into(), "STRING".into()),
            ("column_3".into(), "FLOAT64".into())
        ],
        "{described:?}"
    );
    let people = rows(
        &client,
        "SELECT column_1, column_2, column_3 FROM semi.files.people ORDER BY column_1",
    )
    .await;
    assert_eq!(
        people,
        [
            [Some("1".to_owned()), Some("Ann".into()), Some("10.5".into())],
            [Some("2".into()), Some("B;o'b".into()), Some("20.0".into())],
            [Some("3".into()), Some("Cy".into()), None],
        ]
    );

    client
        .batch_execute("CREATE ETL JOB people FROM semi.files.people INTO warehouse.people SNAPSHOT")
        .await
        .unwrap();
    let summary = rows(&client, "RUN ETL JOB people").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(summary[0][2].as_deref(), Some("3"), "{summary:?}");
    assert_eq!(
        one(
            &client,
            "SELECT string_agg(column_2, '|' ORDER BY column_1) FROM warehouse.people"
        )
        .await,
        "Ann|B;o'b|Cy"
    );
}
