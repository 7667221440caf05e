//! Every example in docs/sql-reference.md runs, in order, against real
//! servers: ```sql blocks must succeed through psql, ```sql-error CODE
//! blocks must fail with that SQLSTATE.

use crate::common;

use common::*;

/// The fenced blocks of a Markdown file: (info string, body).
pub(crate) fn code_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.push(current.take().unwrap()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

#[tokio::test]
async fn sql_reference_examples_run() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.orders (id bigint PRIMARY KEY, amount numeric(12,2), updated_at timestamptz); \
         INSERT INTO public.orders SELECT g, g * 2.5, now() FROM generate_series(1, 10) g; ANALYZE;",
    );
    let maria = MariaDb::start();
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let markdown = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sql-reference.md")).unwrap();
    let blocks = code_blocks(&markdown);
    let mut ran = 0;
    for (info, body) in blocks {
        let sql = body
            .replace("port 5432", &format!("port {}", pg.port))
            .replace("port 3306", &format!("port {}", maria.port));
        if info == "sql" {
            let output = sluice.psql(&sql);
            assert!(
                output.status.success(),
                "example failed:\n{sql}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            ran += 1;
        } else if let Some(code) = info.strip_prefix("sql-error ") {
            expect_err(&client, &sql, code.trim()).await;
            ran += 1;
        } else if info == "sql-bigquery" {
            // Needs a BigQuery project: tests/bigquery.rs covers these.
        } else {
            assert!(
                info.is_empty(),
                "unknown code block kind ```{info}: use sql, sql-error CODE, sql-bigquery or none"
            );
        }
    }
    assert!(ran >= 10, "only {ran} examples ran");
}
