//! VERIFY's checksum queries (`SELECT b, COUNT(*), SUM(...) FROM (SELECT ...
//! FROM `dataset`.`table` ...) q GROUP BY b`), run by the fake in DataFusion
//! over the table's rows, with the BigQuery functions they call rewritten to
//! DataFusion's: `TO_HEX(MD5(x))`, `UNIX_MICROS(x)`, `TIMESTAMP(x)`,
//! `FORMAT_TIMESTAMP(f, x, 'UTC')`, `FORMAT_DATETIME(f, x)`,
//! `FORMAT_DATE(f, x)`.

use std::sync::{Arc, Mutex};

use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde_json::{Value, json};

use super::State;

/// Whether the fake answers `sql` here.
pub fn is_checksum_query(sql: &str) -> bool {
    sql.starts_with("SELECT b, COUNT(*), SUM(")
}

/// The rows of the query as the REST API writes them.
pub async fn run(state: &Arc<Mutex<State>>, sql: &str) -> Result<Vec<Value>, String> {
    let from = sql.find(" FROM `").ok_or("no FROM `dataset`.`table`")? + 6;
    let end = from
        + sql[from..]
            .find(" WHERE ")
            .or_else(|| sql[from..].find(") q"))
            .ok_or("no end of FROM")?;
    let reference = &sql[from..end];
    let (dataset, table) = reference.split_once("`.`").ok_or("expected `dataset`.`table`")?;
    let key = (dataset.trim_matches('`').to_owned(), table.trim_matches('`').to_owned());
    let batches = state
        .lock()
        .unwrap()
        .tables
        .get(&key)
        .ok_or(format!("Not found: Table {}.{}", key.0, key.1))?
        .batches
        .clone();
    let schema = batches.first().ok_or("the fake needs a loaded table")?.schema();
    let mut sql = sql.replace(reference, "t").replace("TO_HEX(MD5(", "md5((");
    sql = rewrite(&sql, "UNIX_MICROS", |a| format!("CAST({} AS BIGINT)", a[0]))?;
    sql = rewrite(&sql, "TIMESTAMP", |a| a[0].clone())?;
    sql = rewrite(&sql, "FORMAT_TIMESTAMP", |a| format!("to_char({}, {})", a[1], a[0]))?;
    sql = rewrite(&sql, "FORMAT_DATETIME", |a| format!("to_char({}, {})", a[1], a[0]))?;
    sql = rewrite(&sql, "FORMAT_DATE", |a| format!("to_char({}, {})", a[1], a[0]))?;
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema, vec![batches]).map_err(|e| e.to_string())?;
    ctx.register_table("t", Arc::new(table)).map_err(|e| e.to_string())?;
    let result = async { ctx.sql(&sql).await?.collect().await }
        .await
        .map_err(|e| format!("{e} in {sql}"))?;
    let mut rows = Vec::new();
    for batch in &result {
        let texts: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            let cells: Vec<Value> = texts
                .iter()
                .map(|c| {
                    use datafusion::arrow::array::{Array, AsArray};
                    let v = (!c.is_null(row)).then(|| c.as_string::<i32>().value(row).to_owned());
                    json!({ "v": v })
                })
                .collect();
            rows.push(json!({ "f": cells }));
        }
    }
    Ok(rows)
}

/// Replaces every call `NAME(args)` (not part of a longer name) by
/// `with(args)`, arguments split at top-level commas.
fn rewrite(sql: &str, name: &str, with: impl Fn(&[String]) -> String) -> Result<String, String> {
    let call = format!("{name}(");
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find(&call) {
        let longer = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        if longer {
            out.push_str(&call);
            rest = &rest[at + call.len()..];
            continue;
        }
        let body = &rest[at + call.len()..];
        let (mut depth, mut args, mut current, mut quoted) = (0, Vec::new(), String::new(), false);
        let mut end = None;
        for (i, c) in body.char_indices() {
            match c {
                '\'' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted && depth == 0 => {
                    end = Some(i);
                    break;
                }
                ')' if !quoted => depth -= 1,
                ',' if !quoted && depth == 0 => {
                    args.push(current.trim().to_owned());
                    current.clear();
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        let end = end.ok_or(format!("unbalanced {name}("))?;
        args.push(current.trim().to_owned());
        out.push_str(&with(&args));
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
