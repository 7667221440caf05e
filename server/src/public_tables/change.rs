//! `INSERT`, `UPDATE` and `DELETE` on a public table: the table is read
//! whole, the expressions are evaluated by DataFusion over its rows, the
//! constraints are checked, and the caller saves it whole.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, FromTable, ObjectName, SelectItem, Statement, TableFactor, TableWithJoins,
};
use pgwire::api::portal::Format;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::types::format::FormatOptions;
use serde_json::Value;
use sluice_catalog::{PublicTable, PublicType};

use super::{MAX_BYTES, MAX_ROWS, PublicTableError, df_error, values};
use crate::errors::StatementError;

/// The hidden column UPDATE and DELETE select rows by.
const ROW_NUMBER: &str = "__sluice_row";

/// What a change did, for its response.
pub struct Outcome {
    /// `INSERT 0`, `UPDATE` or `DELETE`.
    command: &'static str,
    /// The rows inserted or updated (their new values) or deleted.
    rows: Vec<Vec<Value>>,
    returning: Option<Vec<SelectItem>>,
}

/// Applies an `INSERT`, `UPDATE` or `DELETE` to `table`.
pub async fn apply(
    ctx: &SessionContext,
    table: &mut PublicTable,
    statement: &Statement,
) -> Result<Outcome, StatementError> {
    match statement {
        Statement::Insert(insert) => {
            if insert.on.is_some() {
                return Err(PublicTableError::Unsupported("INSERT ... ON CONFLICT".into()).into());
            }
            let targets = target_columns(table, &insert.columns)?;
            let rows = insert_rows(ctx, table, &targets, insert.source.as_deref()).await?;
            check_rows(table, &rows)?;
            table.rows.extend(rows.iter().cloned());
            check_keys(table)?;
            Ok(Outcome {
                command: "INSERT 0",
                rows,
                returning: insert.returning.clone(),
            })
        }
        Statement::Update(update) => {
            if update.from.is_some() || !update.table.joins.is_empty() {
                return Err(PublicTableError::Unsupported("UPDATE ... FROM".into()).into());
            }
            let mut expressions = Vec::new();
            for assignment in &update.assignments {
                let AssignmentTarget::ColumnName(name) = &assignment.target else {
                    return Err(PublicTableError::Unsupported("UPDATE of a column tuple".into()).into());
                };
                let target = target_columns(table, std::slice::from_ref(name))?[0];
                expressions.push((assignment.value.to_string(), target));
            }
            let selection = update.selection.as_ref().map(ToString::to_string);
            let selected = select_rows(table, &update.table, &expressions, selection.as_deref()).await?;
            let mut changed = Vec::new();
            for (row, new_values) in selected {
                for ((_, column), value) in expressions.iter().zip(new_values) {
                    table.rows[row][*column] = value;
                }
                changed.push(table.rows[row].clone());
            }
            check_rows(table, &changed)?;
            check_keys(table)?;
            Ok(Outcome {
                command: "UPDATE",
                rows: changed,
                returning: update.returning.clone(),
            })
        }
        Statement::Delete(delete) => {
            if delete.using.is_some() {
                return Err(PublicTableError::Unsupported("DELETE ... USING".into()).into());
            }
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            let selection = delete.selection.as_ref().map(ToString::to_string);
            let selected: HashSet<usize> = select_rows(table, &from[0], &[], selection.as_deref())
                .await?
                .into_iter()
                .map(|(row, _)| row)
                .collect();
            let mut deleted = Vec::new();
            let mut kept = Vec::new();
            for (i, row) in std::mem::take(&mut table.rows).into_iter().enumerate() {
                match selected.contains(&i) {
                    true => deleted.push(row),
                    false => kept.push(row),
                }
            }
            table.rows = kept;
            Ok(Outcome {
                command: "DELETE",
                rows: deleted,
                returning: delete.returning.clone(),
            })
        }
        _ => Err(PublicTableError::Unsupported(statement.to_string()).into()),
    }
}

impl Outcome {
    /// The command's response: its tag, or the `RETURNING` rows in
    /// `format` and the session's text `styles`.
    pub async fn response(
        self,
        table: &PublicTable,
        format: &Format,
        styles: Arc<FormatOptions>,
    ) -> Result<Response, StatementError> {
        let count = self.rows.len();
        let Some(items) = self.returning else {
            let tag = match self.command {
                "INSERT 0" => Tag::new("INSERT").with_oid(0).with_rows(count),
                command => Tag::new(command).with_rows(count),
            };
            return Ok(Response::Execution(tag));
        };
        let rows: Vec<&Vec<Value>> = self.rows.iter().collect();
        let ctx = context_with(table, values::batch(table, &rows, None))?;
        let items: Vec<String> = items.iter().map(ToString::to_string).collect();
        let sql = format!("SELECT {} FROM {}", items.join(", "), quote(&table.name));
        let frame = ctx.sql(&sql).await.map_err(df_error)?;
        let schema = frame.schema().as_arrow().clone();
        let batches = frame.collect().await.map_err(df_error)?;
        let fields = Arc::new(
            arrow_schema_to_pg_fields(&schema, format, Some(styles))
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?,
        );
        let encoded: Vec<_> = batches
            .into_iter()
            .flat_map(|batch| encode_recordbatch(fields.clone(), batch))
            .collect();
        let mut response = QueryResponse::new(fields, futures::stream::iter(encoded));
        response.command_tag = self.command.to_owned();
        Ok(Response::Query(response))
    }
}

/// Refuses a table grown past the limits.
pub fn check_size(table: &PublicTable) -> Result<(), PublicTableError> {
    let too_large = |limit: String| PublicTableError::TooLarge {
        table: table.name.clone(),
        limit,
    };
    if table.rows.len() > MAX_ROWS {
        return Err(too_large(format!("{MAX_ROWS} rows")));
    }
    let bytes = serde_json::to_vec(&table.rows).map_or(usize::MAX, |bytes| bytes.len());
    if bytes > MAX_BYTES {
        return Err(too_large(format!("{} MiB", MAX_BYTES >> 20)));
    }
    Ok(())
}

/// The indexes of the named columns (all of them when none are named).
fn target_columns(table: &PublicTable, names: &[ObjectName]) -> Result<Vec<usize>, PublicTableError> {
    if names.is_empty() {
        return Ok((0..table.columns.len()).collect());
    }
    let mut targets: Vec<usize> = Vec::new();
    for name in names {
        let column = name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|ident| match ident.quote_style {
                Some(_) => ident.value.clone(),
                None => ident.value.to_lowercase(),
            })
            .unwrap_or_default();
        let index = table
            .columns
            .iter()
            .position(|c| c.name == column)
            .ok_or_else(|| PublicTableError::UndefinedColumn(column.clone()))?;
        if targets.contains(&index) {
            return Err(PublicTableError::DuplicateColumn(column));
        }
        targets.push(index);
    }
    Ok(targets)
}

/// The new rows of an INSERT: the source's values cast to the target
/// columns, the other columns from their defaults or serial counters.
async fn insert_rows(
    ctx: &SessionContext,
    table: &mut PublicTable,
    targets: &[usize],
    source: Option<&datafusion::sql::sqlparser::ast::Query>,
) -> Result<Vec<Vec<Value>>, StatementError> {
    // DEFAULT VALUES names no column.
    let targets = if source.is_some() { targets } else { &[] };
    let mut given: Vec<Vec<Value>> = Vec::new();
    match source {
        None => given.push(Vec::new()),
        Some(query) => {
            let batches = ctx
                .sql(&query.to_string())
                .await
                .map_err(df_error)?
                .collect()
                .await
                .map_err(df_error)?;
            for batch in batches {
                if batch.num_columns() > targets.len() {
                    return Err(PublicTableError::TooManyValues.into());
                }
                if batch.num_columns() < targets.len() {
                    return Err(PublicTableError::TooFewValues.into());
                }
                let columns = batch
                    .columns()
                    .iter()
                    .zip(targets)
                    .map(|(array, &target)| {
                        let column = &table.columns[target];
                        values::cast(array, column.data_type, &column.name)
                    })
                    .collect::<Result<Vec<ArrayRef>, _>>()?;
                for row in 0..batch.num_rows() {
                    given.push(
                        columns
                            .iter()
                            .zip(targets)
                            .map(|(array, &target)| values::value_at(array, row, table.columns[target].data_type))
                            .collect(),
                    );
                }
            }
        }
    }
    let mut defaults = Vec::new();
    for (i, column) in table.columns.iter().enumerate() {
        let value = match &column.default {
            Some(sql) if !targets.contains(&i) => default_value(ctx, sql, column.data_type, &column.name).await?,
            _ => Value::Null,
        };
        defaults.push(value);
    }
    let mut rows = Vec::new();
    for values in given {
        let mut row = defaults.clone();
        for (i, column) in table.columns.iter().enumerate() {
            if column.serial && !targets.contains(&i) {
                table.last_serial += 1;
                row[i] = Value::from(table.last_serial);
            }
        }
        for (&target, value) in targets.iter().zip(values) {
            row[target] = value;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// A column default, evaluated once per statement.
async fn default_value(
    ctx: &SessionContext,
    sql: &str,
    data_type: PublicType,
    column: &str,
) -> Result<Value, StatementError> {
    let batches = ctx
        .sql(&format!("SELECT {sql}"))
        .await
        .map_err(df_error)?
        .collect()
        .await
        .map_err(df_error)?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Value::Null);
    };
    let array = values::cast(batch.column(0), data_type, column)?;
    Ok(values::value_at(&array, 0, data_type))
}

/// The rows `selection` matches (by row number), each with `expressions`
/// evaluated over it and cast to the type of its target column.
async fn select_rows(
    table: &PublicTable,
    target: &TableWithJoins,
    expressions: &[(String, usize)],
    selection: Option<&str>,
) -> Result<Vec<(usize, Vec<Value>)>, StatementError> {
    let rows: Vec<&Vec<Value>> = table.rows.iter().collect();
    let numbers: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows.len() as i64));
    let batch = values::batch(
        table,
        &rows,
        Some((Field::new(ROW_NUMBER, DataType::Int64, false), numbers)),
    );
    let ctx = context_with(table, batch)?;
    let alias = match &target.relation {
        TableFactor::Table { alias: Some(alias), .. } => format!(" AS {}", alias.name),
        _ => String::new(),
    };
    let mut items = vec![quote(ROW_NUMBER)];
    items.extend(expressions.iter().map(|(e, _)| format!("({e})")));
    let mut sql = format!("SELECT {} FROM {}{alias}", items.join(", "), quote(&table.name));
    if let Some(selection) = selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(df_error)?
        .collect()
        .await
        .map_err(df_error)?;
    let mut selected = Vec::new();
    for batch in batches {
        let numbers = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| StatementError::Internal("row numbers of a public table are not Int64".into()))?
            .clone();
        let columns = batch.columns()[1..]
            .iter()
            .zip(expressions)
            .map(|(array, (_, target))| {
                let column = &table.columns[*target];
                values::cast(array, column.data_type, &column.name).map(|array| (array, column.data_type))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let new_values = columns
                .iter()
                .map(|(array, data_type)| values::value_at(array, row, *data_type))
                .collect();
            selected.push((numbers.value(row) as usize, new_values));
        }
    }
    Ok(selected)
}

/// A session holding one table named like `table`, for evaluating
/// expressions written against it.
fn context_with(table: &PublicTable, batch: RecordBatch) -> Result<SessionContext, StatementError> {
    let ctx = SessionContext::new();
    let provider = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(df_error)?;
    ctx.register_table(TableReference::bare(table.name.clone()), Arc::new(provider))
        .map_err(df_error)?;
    Ok(ctx)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// NOT NULL and `varchar(n)` lengths of new or changed rows.
fn check_rows(table: &PublicTable, rows: &[Vec<Value>]) -> Result<(), PublicTableError> {
    for row in rows {
        for (column, value) in table.columns.iter().zip(row) {
            if column.not_null && value.is_null() {
                return Err(PublicTableError::NotNull {
                    table: table.name.clone(),
                    column: column.name.clone(),
                });
            }
            if let (Some(length), Value::String(text)) = (column.max_length, value)
                && text.chars().count() > length as usize
            {
                return Err(PublicTableError::TooLong {
                    column: column.name.clone(),
                    length,
                });
            }
        }
    }
    Ok(())
}

/// Every primary key and unique constraint over all rows.
fn check_keys(table: &PublicTable) -> Result<(), PublicTableError> {
    for key in &table.keys {
        let indexes: Vec<usize> = key
            .columns
            .iter()
            .filter_map(|name| table.columns.iter().position(|c| &c.name == name))
            .collect();
        let mut seen = HashSet::new();
        for row in &table.rows {
            let key_values: Vec<&Value> = indexes.iter().map(|&i| &row[i]).collect();
            if key_values.iter().any(|v| v.is_null()) {
                continue;
            }
            if !seen.insert(serde_json::to_string(&key_values).unwrap_or_default()) {
                return Err(PublicTableError::UniqueViolation {
                    constraint: key.name.clone(),
                    detail: format!(
                        "Key ({})=({}) already exists.",
                        key.columns.join(", "),
                        key_values
                            .iter()
                            .map(|v| values::display(v))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}
