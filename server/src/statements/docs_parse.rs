//! Every statement in the docs parses: each ```sql block of docs/*.md and
//! docs/sources/*.md is split into statements; Sluice's own must parse with
//! Sluice's parser, the others (plain SQL for DataFusion) with sqlparser's
//! PostgreSQL dialect. So no page shows a statement that does not parse.

use std::path::{Path, PathBuf};

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::{parse, split_statements};

/// The ```sql blocks of a Markdown file, without psql's meta-commands
/// (`\c model_5`).
fn sql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(bool, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim() == "sql", String::new())),
            (Some(_), Some(_)) => {
                if let Some((true, body)) = current.take() {
                    blocks.push(body);
                }
            }
            (Some((_, body)), None) if !line.trim_start().starts_with('\\') => {
                body.push_str(line);
                body.push('\n');
            }
            (Some(_), None) => {}
            (None, None) => {}
        }
    }
    blocks
}

fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
}

/// Why `statement` does not parse, if it does not.
fn parse_failure(statement: &str) -> Option<String> {
    match parse(statement) {
        Some(parsed) => parsed.err().map(|e| e.message),
        None => Parser::parse_sql(&PostgreSqlDialect {}, statement)
            .err()
            .map(|e| e.to_string()),
    }
}

#[test]
fn every_sql_block_in_the_docs_parses() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let mut failures = Vec::new();
    let mut statements = 0;
    for file in markdown_files(&docs)
        .into_iter()
        .chain(markdown_files(&docs.join("sources")))
    {
        let markdown = std::fs::read_to_string(&file).unwrap();
        for block in sql_blocks(&markdown) {
            for statement in split_statements(&block) {
                statements += 1;
                if let Some(why) = parse_failure(statement.text) {
                    failures.push(format!("{}: {}\n    {why}", file.display(), statement.text.trim()));
                }
            }
        }
    }
    assert!(
        statements > 100,
        "found only {statements} statements in {}",
        docs.display()
    );
    assert!(
        failures.is_empty(),
        "{} statements do not parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_statement_that_does_not_parse_is_caught() {
    assert!(parse_failure("ALTER CONNECTION shop SET OPTIONS (max_concurrent_runs 1)").is_none());
    assert!(parse_failure("CREATE ETL JOB j FROM shop.public.orders").is_some());
    assert!(parse_failure("SELECT * FROM orders WHERE").is_some());
    assert_eq!(
        sql_blocks("```sql\nSELECT 1;\n\\c other\n```\n```sql-error 42601\nx\n```\n"),
        ["SELECT 1;\n"]
    );
}
