//! Ordinary tables in the `public` schema, for migration tools' bookkeeping
//! (dbmate's `schema_migrations`, Alembic's `alembic_version`,
//! node-pg-migrate's `pgmigrations`).
//!
//! `CREATE TABLE`, `DROP TABLE`, `INSERT`, `UPDATE` and `DELETE` on public
//! tables are recognised here and run against the catalog: each table is
//! one catalog record with all its rows, changed in the session's
//! transaction, so a migration's Sluice statements and the tool's
//! bookkeeping row commit or roll back together. Outside a block each
//! statement is its own transaction. `SELECT` reads the tables through
//! DataFusion ([`PublicSchema`]), which also serves their keys as
//! `information_schema.table_constraints`. Tables are small by design: at most
//! [`MAX_ROWS`] rows and [`MAX_BYTES`] bytes each.

mod change;
mod define;
mod schema;
mod values;

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Expr, FromTable, ObjectName, ObjectType, Statement, TableFactor, TableObject, Value, ValueWithSpan,
    visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, Response, Tag};
use pgwire::types::format::FormatOptions;
use sluice_catalog::{Catalog, Privilege, Transaction};

use crate::errors::StatementError;
use crate::privileges::{Needed, Requirement};

pub use schema::{PublicSchema, SCHEMA, TABLE_CONSTRAINTS};

/// The most rows a public table holds.
pub const MAX_ROWS: usize = 10_000;
/// The most bytes a public table's rows take (as stored).
pub const MAX_BYTES: usize = 4 << 20;

pub use crate::public_table_error::PublicTableError;

/// A statement on a public table, parsed.
#[derive(Debug, Clone)]
pub struct PublicStatement {
    statement: Statement,
    /// The table it changes (the first, for `DROP TABLE a, b`).
    table: String,
    /// The database its table is qualified with (`db.public.t`), if any:
    /// it must be the session's.
    database: Option<String>,
}

impl PublicStatement {
    /// Refuses a table of another database than `session_database`, as
    /// PostgreSQL does (`0A000`).
    pub fn check_database(&self, session_database: &str) -> Result<(), StatementError> {
        match &self.database {
            Some(database) if database != session_database => Err(StatementError::CrossDatabase(format!(
                "{database}.{SCHEMA}.{}",
                self.table
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the statement returns rows (`RETURNING`).
    pub fn has_returning(&self) -> bool {
        match &self.statement {
            Statement::Insert(insert) => insert.returning.is_some(),
            Statement::Update(update) => update.returning.is_some(),
            Statement::Delete(delete) => delete.returning.is_some(),
            _ => false,
        }
    }

    /// What it needs: ADMIN, as every change of a definition.
    pub fn requirement(&self) -> Requirement {
        let kind = match &self.statement {
            Statement::CreateTable(_) => "CREATE TABLE",
            Statement::Drop { .. } => "DROP TABLE",
            Statement::Insert(_) => "INSERT",
            Statement::Update(_) => "UPDATE",
            _ => "DELETE",
        };
        Requirement {
            kind,
            needed: Needed::Privilege(Privilege::Admin),
            object: Some(self.table.clone()),
        }
    }

    /// The number of `$n` parameters the statement takes.
    pub fn parameter_count(&self) -> usize {
        let mut count = 0;
        let _ = visit_expressions(&self.statement, |expr| {
            if let Some(n) = placeholder(expr) {
                count = count.max(n);
            }
            ControlFlow::<()>::Continue(())
        });
        count
    }
}

/// Recognises `CREATE TABLE`, `DROP TABLE`, `INSERT`, `UPDATE` and `DELETE`
/// on a table of the `public` schema (named plainly or as `public.t`).
pub fn recognise(sql: &str) -> Option<PublicStatement> {
    let first = sql.split_whitespace().next()?;
    if !["create", "drop", "insert", "update", "delete"]
        .iter()
        .any(|word| first.eq_ignore_ascii_case(word))
    {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let statement = match statements.as_slice() {
        [_] => statements.remove(0),
        _ => return None,
    };
    let table = match &statement {
        // Only a plain definition: `CREATE EXTERNAL TABLE`, `AS query`,
        // `LIKE`, temporary and replaced tables stay DataFusion's (refused).
        Statement::CreateTable(create)
            if !create.external
                && !create.temporary
                && !create.or_replace
                && create.global.is_none()
                && create.location.is_none()
                && create.query.is_none()
                && create.like.is_none()
                && create.clone.is_none() =>
        {
            public_name(&create.name)?
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => {
            let tables = names.iter().map(public_name).collect::<Option<Vec<_>>>()?;
            let first = tables.first()?.clone();
            if tables.iter().any(|(database, _)| *database != first.0) {
                return None;
            }
            first
        }
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => public_name(name)?,
            _ => return None,
        },
        Statement::Update(update) => table_factor_name(&update.table.relation)?,
        Statement::Delete(delete) => match &delete.from {
            FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => match tables.as_slice() {
                [table] => table_factor_name(&table.relation)?,
                _ => return None,
            },
        },
        _ => return None,
    };
    let (database, table) = table;
    Some(PublicStatement {
        statement,
        table,
        database,
    })
}

fn table_factor_name(factor: &TableFactor) -> Option<(Option<String>, String)> {
    match factor {
        TableFactor::Table { name, .. } => public_name(name),
        _ => None,
    }
}

/// The database (when given) and the table's name if `name` is in the
/// `public` schema: `t`, `public.t` or `db.public.t` (unquoted names folded
/// to lower case).
fn public_name(name: &ObjectName) -> Option<(Option<String>, String)> {
    let parts = name
        .0
        .iter()
        .map(|part| {
            let ident = part.as_ident()?;
            Some(match ident.quote_style {
                Some(_) => ident.value.clone(),
                None => ident.value.to_lowercase(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    match parts.as_slice() {
        [table] => Some((None, table.clone())),
        [schema, table] if schema == SCHEMA => Some((None, table.clone())),
        [database, schema, table] if schema == SCHEMA => Some((Some(database.clone()), table.clone())),
        _ => None,
    }
}

/// `n` of a `$n` placeholder.
fn placeholder(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::Placeholder(p),
            ..
        }) => p.strip_prefix('$')?.parse().ok(),
        _ => None,
    }
}

/// Replaces `$n` placeholders with the bound values, as text literals
/// (a column's type casts them).
fn bind(statement: &mut Statement, params: &[Option<String>]) -> Result<(), StatementError> {
    let flow = visit_expressions_mut(statement, |expr| {
        if let Some(n) = placeholder(expr) {
            let Some(param) = n.checked_sub(1).and_then(|i| params.get(i)) else {
                return ControlFlow::Break(n);
            };
            let value = match param {
                Some(text) => Value::SingleQuotedString(text.clone()),
                None => Value::Null,
            };
            *expr = Expr::value(value);
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(n) => Err(StatementError::Unsupported(format!("there is no parameter ${n}"))),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The bound values of the extended protocol as text: text-format values
/// as sent, binary ones decoded for the integer and boolean types.
pub fn bound_values(
    values: &[Option<Bytes>],
    format: &Format,
    types: &[Option<Type>],
) -> Result<Vec<Option<String>>, StatementError> {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let Some(bytes) = value else {
                return Ok(None);
            };
            let binary = format.format_for(i) == FieldFormat::Binary;
            let declared = types.get(i).cloned().flatten();
            let text = match (binary, declared, bytes.len()) {
                (true, Some(Type::INT2), 2) => i16::from_be_bytes([bytes[0], bytes[1]]).to_string(),
                (true, Some(Type::INT4), 4) => i32::from_be_bytes(bytes[..].try_into().unwrap_or_default()).to_string(),
                (true, Some(Type::INT8), 8) => i64::from_be_bytes(bytes[..].try_into().unwrap_or_default()).to_string(),
                (true, Some(Type::BOOL), 1) => (bytes[0] != 0).to_string(),
                (true, Some(other), _) if !matches!(other, Type::TEXT | Type::VARCHAR | Type::UNKNOWN) => {
                    return Err(StatementError::Unsupported(format!(
                        "binary parameters of type {other} on public tables; send them as text"
                    )));
                }
                _ => String::from_utf8(bytes.to_vec()).map_err(|_| PublicTableError::InvalidValue {
                    column: format!("${}", i + 1),
                    reason: "not valid UTF-8".into(),
                })?,
            };
            Ok(Some(text))
        })
        .collect()
}

/// How many times an autocommit change is tried when another session
/// changed the same table meanwhile.
const AUTOCOMMIT_ATTEMPTS: usize = 5;

/// Runs a statement on a public table in `block` (the session's open
/// transaction), or in a transaction of its own committed at once.
pub async fn run(
    ctx: &SessionContext,
    catalog: &Catalog,
    block: Option<Transaction>,
    statement: &PublicStatement,
    params: &[Option<String>],
    format: &Format,
    styles: Arc<FormatOptions>,
) -> Result<Response, StatementError> {
    statement.check_database(catalog.namespace_name())?;
    let mut statement = statement.clone();
    bind(&mut statement.statement, params)?;
    if let Some(txn) = block {
        return txn.scope(execute(ctx, catalog, &statement, format, &styles)).await;
    }
    let mut attempt = 1;
    loop {
        let txn = Transaction::new();
        let response = txn.scope(execute(ctx, catalog, &statement, format, &styles)).await?;
        match catalog.commit(&txn) {
            Ok(_) => return Ok(response),
            Err(sluice_catalog::CatalogError::Conflict { .. }) if attempt < AUTOCOMMIT_ATTEMPTS => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn execute(
    ctx: &SessionContext,
    catalog: &Catalog,
    statement: &PublicStatement,
    format: &Format,
    styles: &Arc<FormatOptions>,
) -> Result<Response, StatementError> {
    let name = &statement.table;
    match &statement.statement {
        Statement::CreateTable(create) => {
            if catalog.public_table(name)?.is_some() {
                if create.if_not_exists {
                    return Ok(Response::Execution(Tag::new("CREATE TABLE")));
                }
                return Err(PublicTableError::DuplicateTable(name.clone()).into());
            }
            let table = define::table(name, create)?;
            catalog.save_public_table(&table)?;
            Ok(Response::Execution(Tag::new("CREATE TABLE")))
        }
        Statement::Drop { names, if_exists, .. } => {
            let names: Vec<String> = names.iter().filter_map(public_name).map(|(_, name)| name).collect();
            for name in &names {
                match catalog.public_table(name)? {
                    Some(_) => catalog.drop_public_table(name)?,
                    None if *if_exists => {}
                    None => return Err(PublicTableError::UndefinedTable(name.clone()).into()),
                }
            }
            Ok(Response::Execution(Tag::new("DROP TABLE")))
        }
        other => {
            let mut table = catalog
                .public_table(name)?
                .ok_or_else(|| PublicTableError::UndefinedTable(name.clone()))?;
            let outcome = change::apply(ctx, &mut table, other).await?;
            change::check_size(&table)?;
            catalog.save_public_table(&table)?;
            outcome.response(&table, format, styles.clone()).await
        }
    }
}

impl From<PublicTableError> for StatementError {
    fn from(e: PublicTableError) -> Self {
        StatementError::PublicTable(e)
    }
}

/// A DataFusion error of a public table statement.
fn df_error(e: DataFusionError) -> StatementError {
    StatementError::DataFusion(e)
}
