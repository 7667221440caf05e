//! Query jobs: the multi-statement transactions Sluice runs, executed
//! all at once or not at all over the fake's tables. Only the statement
//! shapes Sluice writes are accepted, each checked piece by piece:
//!
//! - `DELETE FROM t WHERE TRUE` and `DELETE FROM t WHERE condition`;
//! - `INSERT INTO t (columns) SELECT columns FROM staging` (a repair, a
//!   CDC first load);
//! - `INSERT INTO t (columns) VALUES (literals)` (the CDC position row);
//! - `SELECT IF(EXISTS(SELECT 1 FROM p WHERE `bound` > 'b'), ERROR('...'),
//!   0)` (a CDC batch's guard against a later recorded position);
//! - `INSERT INTO t (columns) SELECT items FROM staging S [LEFT JOIN f F
//!   ON ...]` (a CDC `HISTORY` batch);
//! - `MERGE t T USING (SELECT items FROM staging S [LEFT JOIN t F ON ...])
//!   S ON ... WHEN MATCHED AND S.op = 'delete' THEN DELETE | UPDATE SET ...
//!   WHEN MATCHED THEN UPDATE SET ... WHEN NOT MATCHED [AND S.op =
//!   'upsert'] THEN INSERT (...) VALUES (...)` (a CDC `MERGE` batch);
//!
//! where an item is `` S.`c` `` or the fill of an unchanged value,
//! `` IF('c' IN UNNEST(S.`_sluice_fill`), IF(F.`k` IS NULL, ERROR('...'), F.`c`), S.`c`) AS `c` ``,
//! and `f` may be a `<table>_current` view ([`current_rows`]).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, not};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::scalar::ScalarValue;
use serde_json::{Value, json};

use super::{State, where_clause};

type Failure = (&'static str, String);
type Key = (String, String);
/// A row by column name.
pub type Row = BTreeMap<String, ScalarValue>;

fn invalid(message: impl Into<String>) -> Failure {
    ("invalidQuery", message.into())
}

/// Runs a query job's script.
pub fn run_script(s: &mut State, query: &Value) -> Result<(), Failure> {
    if query.get("useLegacySql") != Some(&json!(false)) {
        return Err(invalid("the fake only runs standard SQL (useLegacySql: false)"));
    }
    let sql = query
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    s.scripts.push(sql.clone());
    let statements: Vec<&str> = sql.split(";\n").map(|t| t.trim().trim_end_matches(';')).collect();
    let [begin, body @ .., commit] = statements.as_slice() else {
        return Err(invalid(format!("not one transaction: {sql}")));
    };
    if *begin != "BEGIN TRANSACTION" || *commit != "COMMIT TRANSACTION" || body.is_empty() {
        return Err(invalid(format!("not one transaction: {sql}")));
    }
    // All or nothing: the statements change a copy.
    let mut tables = s.tables.clone();
    for statement in body {
        run_statement(&mut tables, statement)?;
    }
    s.tables = tables;
    Ok(())
}

fn run_statement(tables: &mut BTreeMap<Key, super::FakeTable>, statement: &str) -> Result<(), Failure> {
    if let Some(rest) = statement.strip_prefix("DELETE FROM ") {
        let (target, condition) = rest
            .split_once(" WHERE ")
            .ok_or_else(|| invalid(format!("expected DELETE FROM ... WHERE ..., not {statement}")))?;
        return delete(tables, &table(target)?, condition);
    }
    if let Some(rest) = statement.strip_prefix("INSERT INTO ") {
        let (target, rest) = rest
            .split_once(" (")
            .ok_or_else(|| invalid(format!("INSERT INTO needs a column list: {statement}")))?;
        let (columns, rest) = rest
            .split_once(") ")
            .ok_or_else(|| invalid(format!("INSERT INTO needs a column list: {statement}")))?;
        let columns: Vec<String> = columns.split(", ").map(unquote).collect();
        let target = table(target)?;
        if let Some(values) = rest.strip_prefix("VALUES (").and_then(|v| v.strip_suffix(')')) {
            return insert_values(tables, &target, &columns, values);
        }
        let select = rest
            .strip_prefix("SELECT ")
            .ok_or_else(|| invalid(format!("expected VALUES or SELECT: {statement}")))?;
        let (items, from) = select
            .split_once(" FROM ")
            .ok_or_else(|| invalid(format!("no FROM in {statement}")))?;
        if !from.contains(" S") {
            // The same columns copied from a staging table.
            let quoted: Vec<String> = columns.iter().map(|c| format!("`{c}`")).collect();
            if items != quoted.join(", ") {
                return Err(invalid(format!("the fake copies the same columns: {statement}")));
            }
            let added = stored(tables, &table(from)?)?.batches.clone();
            tables.get_mut(&target).expect("checked").batches.extend(added);
            return Ok(());
        }
        let rows = select_rows(tables, items, from)?;
        let rows: Vec<Row> = rows
            .into_iter()
            .map(|row| columns.iter().map(|c| (c.clone(), row[c].clone())).collect())
            .collect();
        stored(tables, &target)?;
        let batch = to_batch(&columns, &rows)?;
        tables.get_mut(&target).expect("checked").batches.extend(batch);
        return Ok(());
    }
    if let Some(rest) = statement.strip_prefix("MERGE ") {
        return merge(tables, rest, statement);
    }
    if let Some(rest) = statement.strip_prefix("SELECT IF(EXISTS(SELECT 1 FROM ") {
        return guard(tables, rest, statement);
    }
    Err(invalid(format!("the fake does not run {statement}")))
}

/// `SELECT IF(EXISTS(SELECT 1 FROM p WHERE `bound` > 'b'), ERROR('m'), 0)`:
/// fails with `m` when `p` holds a bound past `b`.
fn guard(tables: &BTreeMap<Key, super::FakeTable>, rest: &str, statement: &str) -> Result<(), Failure> {
    let bad = || invalid(format!("the fake does not run {statement}"));
    let (positions, rest) = rest.split_once(" WHERE `bound` > ").ok_or_else(bad)?;
    let (bound, rest) = rest.split_once("), ERROR(").ok_or_else(bad)?;
    let message = rest.strip_suffix("), 0)").ok_or_else(bad)?;
    let (bound, message) = (string_literal(bound)?, string_literal(message)?);
    let past = rows_of(tables, &table(positions)?)?
        .iter()
        .any(|row| match row.get("bound") {
            Some(ScalarValue::Utf8(Some(recorded))) => *recorded > bound,
            _ => false,
        });
    if past { Err(invalid(message)) } else { Ok(()) }
}

/// `` `dataset`.`table` `` as a key.
fn table(reference: &str) -> Result<Key, Failure> {
    let (d, t) = reference
        .trim()
        .split_once("`.`")
        .ok_or_else(|| invalid(format!("expected `dataset`.`table`, not {reference}")))?;
    Ok((d.trim_matches('`').to_owned(), t.trim_matches('`').to_owned()))
}

fn unquote(text: &str) -> String {
    text.trim().trim_matches('`').to_owned()
}

fn stored<'a>(tables: &'a BTreeMap<Key, super::FakeTable>, key: &Key) -> Result<&'a super::FakeTable, Failure> {
    tables
        .get(key)
        .ok_or_else(|| ("notFound", format!("Not found: Table {}.{}", key.0, key.1)))
}

fn delete(tables: &mut BTreeMap<Key, super::FakeTable>, target: &Key, condition: &str) -> Result<(), Failure> {
    let table = stored(tables, target)?;
    if condition == "TRUE" {
        tables.get_mut(target).expect("checked").batches.clear();
        return Ok(());
    }
    let fields = fields_of(table);
    let mut kept = Vec::new();
    for batch in &table.batches {
        let deleted = where_clause(condition, &fields, &BTreeMap::new(), batch).map_err(invalid)?;
        // NULL is not deleted.
        let deleted = match deleted.nulls() {
            Some(_) => datafusion::arrow::compute::prep_null_mask_filter(&deleted),
            None => deleted,
        };
        kept.push(filter_record_batch(batch, &not(&deleted).unwrap()).unwrap());
    }
    tables.get_mut(target).expect("checked").batches = kept;
    Ok(())
}

/// `'text'`, an integer or `CURRENT_TIMESTAMP()`, typed by the column.
fn insert_values(
    tables: &mut BTreeMap<Key, super::FakeTable>,
    target: &Key,
    columns: &[String],
    values: &str,
) -> Result<(), Failure> {
    let table = stored(tables, target)?;
    let values = split_top(values);
    if values.len() != columns.len() {
        return Err(invalid(format!(
            "{} columns but {} values",
            columns.len(),
            values.len()
        )));
    }
    let mut row = Row::new();
    for (column, value) in columns.iter().zip(values) {
        let ty = field_type(&table.resource, column)?;
        let scalar = match (ty.as_str(), value.as_str()) {
            ("TIMESTAMP", "CURRENT_TIMESTAMP()") => {
                ScalarValue::TimestampMicrosecond(Some(chrono::Utc::now().timestamp_micros()), Some("UTC".into()))
            }
            ("STRING", text) => ScalarValue::Utf8(Some(string_literal(text)?)),
            ("INTEGER" | "INT64", number) => ScalarValue::Int64(Some(
                number
                    .parse()
                    .map_err(|_| invalid(format!("Could not cast literal {number} to type INT64")))?,
            )),
            (ty, value) => return Err(invalid(format!("the fake does not insert {value} into a {ty} column"))),
        };
        row.insert(column.clone(), scalar);
    }
    let batch = to_batch(columns, &[row])?;
    tables.get_mut(target).expect("checked").batches.extend(batch);
    Ok(())
}

fn field_type(resource: &Value, column: &str) -> Result<String, Failure> {
    resource
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .and_then(|fields| fields.iter().find(|f| f["name"] == json!(column)))
        .and_then(|f| f["type"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("Unrecognized name: {column}")))
}

/// The text of a `'...'` literal (BigQuery's escapes `\\` and `\'`).
fn string_literal(text: &str) -> Result<String, Failure> {
    let inner = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .ok_or_else(|| invalid(format!("not a string literal: {text}")))?;
    Ok(inner.replace("\\'", "'").replace("\\\\", "\\"))
}

/// Splits `text` at the `, ` outside parentheses and quotes.
fn split_top(text: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, None::<char>);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (Some(_), '\\') => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                continue;
            }
            (Some(q), c) if c == q => quoted = None,
            (Some(_), _) => {}
            (None, '\'' | '`') => quoted = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 && chars.peek() == Some(&' ') => {
                chars.next();
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// The rows of a table (or view) by column name.
fn rows_of(tables: &BTreeMap<Key, super::FakeTable>, key: &Key) -> Result<Vec<Row>, Failure> {
    let table = stored(tables, key)?;
    if let Some(query) = table.resource.pointer("/view/query").and_then(Value::as_str) {
        return current_rows(tables, query).map_err(invalid);
    }
    // A column added by `tables.patch` is NULL in the rows stored before.
    let columns = column_names(table);
    let mut rows = Vec::new();
    for batch in &table.batches {
        for mut row in batch_rows(batch) {
            for column in &columns {
                row.entry(column.clone()).or_insert(ScalarValue::Null);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// A table's fields (`schema.fields`), in its order.
fn fields_of(table: &super::FakeTable) -> Vec<Value> {
    table
        .resource
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The names of a table's columns, in its order.
fn column_names(table: &super::FakeTable) -> Vec<String> {
    fields_of(table)
        .iter()
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .collect()
}

pub fn batch_rows(batch: &RecordBatch) -> Vec<Row> {
    (0..batch.num_rows())
        .map(|row| {
            batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(f, c)| (f.name().clone(), ScalarValue::try_from_array(c, row).unwrap()))
                .collect()
        })
        .collect()
}

/// `rows` as a batch of `columns` (none when there are no rows).
fn to_batch(columns: &[String], rows: &[Row]) -> Result<Option<RecordBatch>, Failure> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    for column in columns {
        let values: Vec<ScalarValue> = rows.iter().map(|r| r[column].clone()).collect();
        let data_type = values.iter().find(|v| !v.is_null()).unwrap_or(&values[0]).data_type();
        let values = values
            .into_iter()
            .map(|v| {
                if v.data_type() == data_type {
                    Ok(v)
                } else {
                    v.cast_to(&data_type)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let array = ScalarValue::iter_to_array(values).map_err(|e| invalid(e.to_string()))?;
        fields.push(Field::new(column, data_type, true));
        arrays.push(array);
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), arrays)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

/// One item of a select list: the column it writes and how.
enum Item {
    /// `` S.`c` ``
    Staged(String),
    /// The fill of an unchanged value from the joined row, checked by `key`.
    Fill {
        column: String,
        key: String,
        message: String,
    },
}

fn parse_item(item: &str) -> Result<Item, Failure> {
    if let Some(column) = item.strip_prefix("S.") {
        return Ok(Item::Staged(unquote(column)));
    }
    let bad = || invalid(format!("the fake does not evaluate {item}"));
    let rest = item.strip_prefix("IF('").ok_or_else(bad)?;
    let (column, rest) = rest
        .split_once("' IN UNNEST(S.`_sluice_fill`), IF(F.`")
        .ok_or_else(bad)?;
    let (key, rest) = rest.split_once("` IS NULL, ERROR(").ok_or_else(bad)?;
    let (message, rest) = rest.split_once("), F.`").ok_or_else(bad)?;
    let expected = format!("{column}`), S.`{column}`) AS `{column}`");
    if rest != expected {
        return Err(bad());
    }
    Ok(Item::Fill {
        column: column.to_owned(),
        key: key.to_owned(),
        message: string_literal(message)?,
    })
}

/// The joined rows, the (joined column, staged column) pairs they match on,
/// and whether only rows not soft-deleted match.
type Joined = (Vec<Row>, Vec<(String, String)>, bool);

/// `items FROM staging S [LEFT JOIN f F ON F.k = S._sluice_fill_k AND ...
/// [AND F._sluice_deleted_at IS NULL]]`: the rows, by the names the items
/// give them.
fn select_rows(tables: &BTreeMap<Key, super::FakeTable>, items: &str, from: &str) -> Result<Vec<Row>, Failure> {
    let items = split_top(items)
        .iter()
        .map(|i| parse_item(i))
        .collect::<Result<Vec<_>, _>>()?;
    let (staging, join) = match from.split_once(" S LEFT JOIN ") {
        Some((staging, join)) => (staging, Some(join)),
        None => (
            from.strip_suffix(" S")
                .ok_or_else(|| invalid(format!("expected FROM staging S: {from}")))?,
            None,
        ),
    };
    let staged = rows_of(tables, &table(staging)?)?;
    let mut joined: Option<Joined> = None;
    if let Some(join) = join {
        let (source, on) = join
            .split_once(" F ON ")
            .ok_or_else(|| invalid(format!("expected LEFT JOIN f F ON ...: {join}")))?;
        let (on, live_only) = match on.strip_suffix(" AND F.`_sluice_deleted_at` IS NULL") {
            Some(on) => (on, true),
            None => (on, false),
        };
        let mut pairs = Vec::new();
        for condition in on.split(" AND ") {
            let (left, right) = condition
                .split_once(" = ")
                .ok_or_else(|| invalid(format!("expected F.k = S.k: {condition}")))?;
            let (left, right) = (
                unquote(left.strip_prefix("F.").ok_or_else(|| invalid(condition.to_owned()))?),
                unquote(right.strip_prefix("S.").ok_or_else(|| invalid(condition.to_owned()))?),
            );
            if right != format!("_sluice_fill_{left}") {
                return Err(invalid(format!("the fake joins on the fill key only: {condition}")));
            }
            pairs.push((left, right));
        }
        joined = Some((rows_of(tables, &table(source)?)?, pairs, live_only));
    }
    let mut out = Vec::new();
    for row in staged {
        let found: Option<&Row> = match &joined {
            None => None,
            Some((rows, pairs, live_only)) => {
                let mut matches = rows.iter().filter(|f| {
                    pairs
                        .iter()
                        .all(|(k, s)| !row[s].is_null() && f.get(k) == Some(&row[s]))
                        && (!live_only || f.get("_sluice_deleted_at").is_none_or(ScalarValue::is_null))
                });
                let first = matches.next();
                if matches.next().is_some() {
                    return Err(invalid("a staged row joins more than one row"));
                }
                first
            }
        };
        let fill: Vec<String> = match row.get("_sluice_fill") {
            Some(ScalarValue::List(list)) if !list.is_null(0) => list
                .value(0)
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let mut result = Row::new();
        for item in &items {
            match item {
                Item::Staged(column) => {
                    let value = row
                        .get(column)
                        .ok_or_else(|| invalid(format!("Unrecognized name: {column}")))?;
                    result.insert(column.clone(), value.clone());
                }
                Item::Fill { column, key, message } => {
                    let value = if fill.contains(column) {
                        match found {
                            Some(f) if !f[key].is_null() => f[column].clone(),
                            _ => return Err(invalid(message.clone())),
                        }
                    } else {
                        row[column].clone()
                    };
                    result.insert(column.clone(), value);
                }
            }
        }
        out.push(result);
    }
    Ok(out)
}

/// `` `c` = S.`c`, ... ``: the columns set.
fn set_list(text: &str) -> Result<Vec<String>, Failure> {
    text.split(", ")
        .map(|set| {
            let (left, right) = set
                .split_once(" = S.")
                .ok_or_else(|| invalid(format!("expected `c` = S.`c`: {set}")))?;
            if left != right {
                return Err(invalid(format!("the fake sets a column to its own source: {set}")));
            }
            Ok(unquote(left))
        })
        .collect()
}

fn merge(tables: &mut BTreeMap<Key, super::FakeTable>, rest: &str, statement: &str) -> Result<(), Failure> {
    let bad = |what: &str| invalid(format!("the fake's MERGE expects {what}: {statement}"));
    let (target, rest) = rest
        .split_once(" T USING (SELECT ")
        .ok_or_else(|| bad("T USING (SELECT"))?;
    let target = table(target)?;
    let (source, rest) = rest.split_once(") S ON ").ok_or_else(|| bad(") S ON"))?;
    let (items, from) = source.split_once(" FROM ").ok_or_else(|| bad("FROM"))?;
    let (on, rest) = rest
        .split_once(" WHEN MATCHED AND S.`_sluice_op` = 'delete' THEN ")
        .ok_or_else(|| bad("WHEN MATCHED AND S.`_sluice_op` = 'delete'"))?;
    let (delete, rest) = rest
        .split_once(" WHEN MATCHED THEN UPDATE SET ")
        .ok_or_else(|| bad("WHEN MATCHED THEN UPDATE SET"))?;
    let (update, rest) = rest
        .split_once(" WHEN NOT MATCHED")
        .ok_or_else(|| bad("WHEN NOT MATCHED"))?;
    let (insert_upserts_only, rest) = match rest.strip_prefix(" AND S.`_sluice_op` = 'upsert' THEN INSERT (") {
        Some(rest) => (true, rest),
        None => (
            false,
            rest.strip_prefix(" THEN INSERT (").ok_or_else(|| bad("THEN INSERT"))?,
        ),
    };
    let (names, values) = rest.split_once(") VALUES (").ok_or_else(|| bad("VALUES"))?;
    let values = values.strip_suffix(')').ok_or_else(|| bad("VALUES (...)"))?;
    let names: Vec<String> = names.split(", ").map(unquote).collect();
    let expected: Vec<String> = names.iter().map(|n| format!("S.`{n}`")).collect();
    if values != expected.join(", ") {
        return Err(bad("INSERT of the source's own columns"));
    }
    let keys: Vec<String> = on
        .split(" AND ")
        .map(|c| {
            let (left, right) = c.split_once(" = ").ok_or_else(|| bad("T.k = S.k"))?;
            let (left, right) = (
                left.strip_prefix("T.").ok_or_else(|| bad("T.k"))?,
                right.strip_prefix("S.").ok_or_else(|| bad("S.k"))?,
            );
            if left != right {
                return Err(bad("the same key column on both sides"));
            }
            Ok(unquote(left))
        })
        .collect::<Result<_, _>>()?;
    let deleted_sets = match delete {
        "DELETE" => None,
        other => Some(set_list(
            other
                .strip_prefix("UPDATE SET ")
                .ok_or_else(|| bad("DELETE or UPDATE SET"))?,
        )?),
    };
    let updated = set_list(update)?;
    let source = select_rows(tables, items, from)?;
    let mut target_rows = rows_of(tables, &target)?;
    let key_of = |row: &Row| -> Vec<ScalarValue> { keys.iter().map(|k| row[k].clone()).collect() };
    let mut touched = std::collections::BTreeSet::new();
    let mut inserted = Vec::new();
    for s in &source {
        let key = key_of(s);
        let at = target_rows
            .iter()
            .position(|t| key_of(t) == key && !key.iter().any(ScalarValue::is_null));
        let op = match s.get("_sluice_op") {
            Some(ScalarValue::Utf8(Some(op))) => op.clone(),
            _ => return Err(bad("a source _sluice_op")),
        };
        match at {
            Some(at) => {
                if !touched.insert(at) {
                    return Err(invalid(
                        "UPDATE/MERGE must match at most one source row for each target row",
                    ));
                }
                match (&deleted_sets, op == "delete") {
                    (None, true) => {
                        target_rows[at].insert("_sluice_deleted".into(), ScalarValue::Boolean(Some(true)));
                    }
                    (Some(columns), true) => {
                        for c in columns {
                            target_rows[at].insert(c.clone(), s[c].clone());
                        }
                    }
                    (_, false) => {
                        for c in &updated {
                            target_rows[at].insert(c.clone(), s[c].clone());
                        }
                    }
                }
            }
            None if insert_upserts_only && op != "upsert" => {}
            None => inserted.push(names.iter().map(|n| (n.clone(), s[n].clone())).collect::<Row>()),
        }
    }
    target_rows.retain(|r| !r.contains_key("_sluice_deleted"));
    target_rows.extend(inserted);
    let table = tables.get_mut(&target).expect("read above");
    let columns = column_names(table);
    for row in &mut target_rows {
        for c in &columns {
            if !row.contains_key(c) {
                return Err(invalid(format!("a row without column {c}")));
            }
        }
    }
    table.batches = to_batch(&columns, &target_rows)?.into_iter().collect();
    Ok(())
}

/// The columns of a `<table>_current` view (its query as Sluice writes it):
/// the table's fields it selects.
pub fn view_fields(tables: &BTreeMap<Key, super::FakeTable>, query: &str) -> Result<Vec<Value>, String> {
    let (history, columns) = parse_view(query)?;
    let table = tables
        .get(&history)
        .ok_or(format!("Not found: Table {}.{}", history.0, history.1))?;
    let fields = fields_of(table);
    columns
        .iter()
        .map(|c| {
            fields
                .iter()
                .find(|f| f["name"] == json!(c))
                .cloned()
                .ok_or(format!("Unrecognized name: {c}"))
        })
        .collect()
}

/// The history table and the selected columns of a view query as Sluice
/// writes it.
fn parse_view(query: &str) -> Result<(Key, Vec<String>), String> {
    let bad = || format!("the fake does not evaluate the view {query}");
    let columns = query
        .strip_prefix("SELECT ")
        .and_then(|r| r.split_once(" FROM (SELECT *"))
        .ok_or_else(bad)?
        .0;
    let history = query
        .split_once("AS `_sluice_rank` FROM ")
        .and_then(|(_, r)| r.split_once(" WHERE "))
        .ok_or_else(bad)?
        .0;
    let parts: Vec<&str> = history.split("`.`").collect();
    let [_, dataset, table] = parts.as_slice() else {
        return Err(bad());
    };
    Ok((
        (unquote(dataset), unquote(table)),
        columns.split(", ").map(unquote).collect(),
    ))
}

/// The rows of a `<table>_current` view whose query is `query` (exactly
/// the one Sluice writes): per key the last change after the last
/// `truncate`, unless a `delete`.
pub fn current_rows(tables: &BTreeMap<Key, super::FakeTable>, query: &str) -> Result<Vec<Row>, String> {
    let bad = || format!("the fake does not evaluate the view {query}");
    let rest = query.strip_prefix("SELECT ").ok_or_else(bad)?;
    let (columns, rest) = rest
        .split_once(" FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY ")
        .ok_or_else(bad)?;
    let (keys, rest) = rest
        .split_once(" ORDER BY `_sluice_position` DESC) AS `_sluice_rank` FROM ")
        .ok_or_else(bad)?;
    let (history, _) = rest.split_once(" WHERE ").ok_or_else(bad)?;
    let expected = format!(
        "SELECT {columns} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY `_sluice_position` DESC) AS \
         `_sluice_rank` FROM {history} WHERE `_sluice_op` != 'truncate' AND `_sluice_position` > \
         IFNULL((SELECT MAX(`_sluice_position`) FROM {history} WHERE `_sluice_op` = 'truncate'), '')) WHERE \
         `_sluice_rank` = 1 AND `_sluice_op` != 'delete'"
    );
    if query != expected {
        return Err(bad());
    }
    let (key, _) = parse_view(query)?;
    let rows = rows_of(tables, &key).map_err(|(_, m)| m)?;
    let text = |row: &Row, c: &str| match row.get(c) {
        Some(ScalarValue::Utf8(Some(t))) => t.clone(),
        _ => String::new(),
    };
    let last_truncate = rows
        .iter()
        .filter(|r| text(r, "_sluice_op") == "truncate")
        .map(|r| text(r, "_sluice_position"))
        .max()
        .unwrap_or_default();
    let keys: Vec<String> = keys.split(", ").map(unquote).collect();
    let columns: Vec<String> = columns.split(", ").map(unquote).collect();
    let mut latest: BTreeMap<String, Row> = BTreeMap::new();
    for row in rows {
        if text(&row, "_sluice_op") == "truncate" || text(&row, "_sluice_position") <= last_truncate {
            continue;
        }
        let key = format!("{:?}", keys.iter().map(|k| row[k].clone()).collect::<Vec<_>>());
        if latest
            .get(&key)
            .is_none_or(|l| text(l, "_sluice_position") < text(&row, "_sluice_position"))
        {
            latest.insert(key, row);
        }
    }
    Ok(latest
        .into_values()
        .filter(|r| text(r, "_sluice_op") != "delete")
        .map(|r| columns.iter().map(|c| (c.clone(), r[c].clone())).collect())
        .collect())
}
