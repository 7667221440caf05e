//! Rewrites PostgreSQL forms that clients' metadata queries use into SQL
//! DataFusion plans, before the statement reaches datafusion-postgres:
//!
//! - `current_user`, `session_user`, `user`, `current_role` all call the
//!   session's `session_user`, and a result column that is one of them (or
//!   `current_setting(...)`, `current_schema()`, ...) is named as in
//!   PostgreSQL (so `SELECT current_user, session_user` works);
//! - `LIKE p ESCAPE 'c'` with a constant pattern becomes the same pattern
//!   with DataFusion's backslash escapes;
//! - a scalar subquery over `pg_catalog` tables inside a `CASE` result
//!   column (SQLAlchemy's column defaults, identity and collation) is NULL:
//!   DataFusion cannot run correlated subqueries there, and Sluice tables
//!   have no defaults, identity columns or collations;
//! - `unnest(x.indkey)` and `generate_subscripts(x.indkey, 1)` over the
//!   `int2vector` columns of `pg_index` (text in the catalog) work on their
//!   items;
//! - `ARRAY(subquery)` over `pg_auth_members` is an empty array (`'{}'`):
//!   DataFusion cannot run it, and the roles a role is a member of (psql's
//!   `\du`) are none in Sluice; other `ARRAY(subquery)`s (psql's `\d`
//!   over `unnest(reloptions)`) are left to DataFusion;
//! - `information_schema.table_constraints`, which DataFusion's
//!   information schema lacks, reads the public tables' keys
//!   ([`public_tables::TABLE_CONSTRAINTS`]).
//!
//! Statements without these forms are passed on unchanged.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, Query, SelectItem, SetExpr,
    TableFactor, Value, ValueWithSpan, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::pg_functions::INT2VECTOR_ITEMS;
use crate::public_tables;

/// Special registers that name the session's user.
const USER_REGISTERS: &[&str] = &["current_user", "session_user", "user", "current_role"];
/// `int2vector`/`oidvector` columns of pg_index, kept as text.
const VECTOR_COLUMNS: &[&str] = &["indkey", "indclass", "indcollation", "indoption"];

/// `sql` with the rewrites applied, or `None` when nothing changes (or it
/// does not parse here: DataFusion reports the error).
pub fn rewrite(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    let triggers = [
        "user",
        "current_",
        "set_config",
        "pg_backend_pid",
        "escape",
        "unnest",
        "generate_subscripts",
        "table_constraints",
        "array(",
    ];
    let catalog_case = lower.contains("case") && lower.contains("pg_");
    if !catalog_case && !triggers.iter().any(|t| lower.contains(t)) {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut rewriter = Rewriter { changed: false };
    for statement in &mut statements {
        let _ = statement.visit(&mut rewriter);
    }
    if !rewriter.changed {
        return None;
    }
    Some(statements.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; "))
}

struct Rewriter {
    changed: bool,
}

fn user_register(expr: &Expr) -> Option<String> {
    let name = match expr {
        Expr::Function(Function {
            name,
            args: FunctionArguments::None,
            ..
        }) if name.0.len() == 1 => name.0[0].as_ident()?.value.to_ascii_lowercase(),
        Expr::Identifier(Ident {
            value,
            quote_style: None,
            ..
        }) => value.to_ascii_lowercase(),
        _ => return None,
    };
    USER_REGISTERS.contains(&name.as_str()).then_some(name)
}

/// Functions whose result column PostgreSQL names after the function.
const NAMED_AFTER_FUNCTION: &[&str] = &[
    "current_schema",
    "current_database",
    "current_catalog",
    "current_setting",
    "set_config",
    "pg_backend_pid",
];

/// The result column name PostgreSQL gives `expr`, for the session
/// functions DataFusion would name `f()` or `f(Utf8("x"))`.
fn postgres_column_name(expr: &Expr) -> Option<String> {
    if let Some(name) = user_register(expr) {
        return Some(name);
    }
    let name = match expr {
        Expr::Function(function) => function_name(function)?,
        Expr::Identifier(Ident {
            value,
            quote_style: None,
            ..
        }) => value.to_ascii_lowercase(),
        _ => return None,
    };
    NAMED_AFTER_FUNCTION.contains(&name.as_str()).then_some(name)
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    let list = datafusion::sql::sqlparser::ast::FunctionArgumentList {
        duplicate_treatment: None,
        args: args
            .into_iter()
            .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
            .collect(),
        clauses: vec![],
    };
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(list),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn function_name(function: &Function) -> Option<String> {
    Some(function.name.0.last()?.as_ident()?.value.to_ascii_lowercase())
}

fn unnamed_args(function: &Function) -> Option<Vec<&Expr>> {
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

fn is_vector_column(expr: &Expr) -> bool {
    let last = match expr {
        Expr::Identifier(i) => i,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(i) => i,
            None => return false,
        },
        _ => return false,
    };
    VECTOR_COLUMNS.contains(&last.value.to_ascii_lowercase().as_str())
}

/// A constant string: a literal or literals joined with `||`.
fn constant_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s),
            ..
        }) => Some(s.clone()),
        Expr::Nested(inner) => constant_text(inner),
        Expr::BinaryOp {
            left,
            op: datafusion::sql::sqlparser::ast::BinaryOperator::StringConcat,
            right,
        } => Some(constant_text(left)? + &constant_text(right)?),
        _ => None,
    }
}

/// A LIKE pattern with escape character `escape` rewritten to backslash
/// escapes.
fn backslash_pattern(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            if let Some(next) = chars.next() {
                out.push('\\');
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether every table `query` reads is a `pg_catalog` table.
fn reads_only_pg_catalog(query: &Query) -> bool {
    struct Tables(bool);
    impl Visitor for Tables {
        type Break = ();
        fn pre_visit_table_factor(&mut self, table: &TableFactor) -> ControlFlow<()> {
            let catalog = match table {
                TableFactor::Table { name, .. } => name.0.iter().any(|part| {
                    part.as_ident()
                        .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog") || i.value.starts_with("pg_"))
                }),
                _ => true,
            };
            self.0 &= catalog;
            ControlFlow::Continue(())
        }
    }
    let mut tables = Tables(true);
    let _ = query.visit(&mut tables);
    tables.0
}

/// Whether the query reads `pg_auth_members` (role memberships).
fn reads_role_memberships(query: &Query) -> bool {
    struct Memberships(bool);
    impl Visitor for Memberships {
        type Break = ();
        fn pre_visit_table_factor(&mut self, table: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, .. } = table
                && name
                    .0
                    .last()
                    .and_then(|part| part.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_auth_members"))
            {
                self.0 = true;
            }
            ControlFlow::Continue(())
        }
    }
    let mut memberships = Memberships(false);
    let _ = query.visit(&mut memberships);
    memberships.0
}

/// Replaces scalar subqueries over `pg_catalog` with NULL.
struct CatalogSubqueriesAsNull {
    changed: bool,
}

impl VisitorMut for CatalogSubqueriesAsNull {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(query) = expr
            && reads_only_pg_catalog(query)
        {
            *expr = Expr::value(Value::Null);
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        let parts: Vec<String> = relation
            .0
            .iter()
            .filter_map(|part| Some(part.as_ident()?.value.to_ascii_lowercase()))
            .collect();
        if let [.., schema, table] = parts.as_slice()
            && schema == "information_schema"
            && table == "table_constraints"
        {
            *relation = ObjectName::from(vec![
                Ident::new(public_tables::SCHEMA),
                Ident::new(public_tables::TABLE_CONSTRAINTS),
            ]);
            self.changed = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr @ Expr::Case { .. })
                | SelectItem::ExprWithAlias {
                    expr: expr @ Expr::Case { .. },
                    ..
                } = item
                {
                    let mut nulls = CatalogSubqueriesAsNull { changed: false };
                    let _ = expr.visit(&mut nulls);
                    self.changed |= nulls.changed;
                }
            }
            // Name result columns that are session functions as PostgreSQL
            // does (`current_user`, `current_setting`), unless two would
            // share a name (DataFusion needs distinct ones).
            let names: Vec<Option<String>> = select
                .projection
                .iter()
                .map(|item| match item {
                    SelectItem::UnnamedExpr(expr) => postgres_column_name(expr),
                    _ => None,
                })
                .collect();
            for (item, name) in select.projection.iter_mut().zip(&names) {
                if let (SelectItem::UnnamedExpr(expr), Some(name)) = (&*item, name)
                    && names.iter().filter(|n| n.as_ref() == Some(name)).count() == 1
                {
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: Ident::with_quote('"', name),
                    };
                    self.changed = true;
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if user_register(expr).is_some() {
            *expr = Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new("session_user")]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::None,
                filter: None,
                null_treatment: None,
                over: None,
                within_group: vec![],
            });
            self.changed = true;
            return ControlFlow::Continue(());
        }
        if let Expr::Like {
            pattern, escape_char, ..
        }
        | Expr::ILike {
            pattern, escape_char, ..
        } = expr
            && let Some(ValueWithSpan {
                value: Value::SingleQuotedString(escape),
                ..
            }) = escape_char
            && let Some(escape) = escape.chars().next()
            && escape != '\\'
            && let Some(text) = constant_text(pattern)
        {
            **pattern = Expr::value(Value::SingleQuotedString(backslash_pattern(&text, escape)));
            *escape_char = None;
            self.changed = true;
            return ControlFlow::Continue(());
        }
        if let Expr::Function(function) = expr
            && let FunctionArguments::Subquery(query) = &function.args
            && function_name(function).as_deref() == Some("array")
            && reads_only_pg_catalog(query)
            && reads_role_memberships(query)
        {
            *expr = Expr::value(Value::SingleQuotedString("{}".into()));
            self.changed = true;
            return ControlFlow::Continue(());
        }
        if let Expr::Function(function) = expr
            && let Some(name) = function_name(function)
            && let Some(args) = unnamed_args(function)
        {
            let replacement = match (name.as_str(), args.as_slice()) {
                ("unnest", [column]) if is_vector_column(column) => {
                    Some(call("unnest", vec![call(INT2VECTOR_ITEMS, vec![(*column).clone()])]))
                }
                ("generate_subscripts", [array, _dimension]) => {
                    let array = if is_vector_column(array) {
                        format!("{INT2VECTOR_ITEMS}({array})")
                    } else {
                        array.to_string()
                    };
                    let sql = format!("unnest(range(1, CAST(array_length({array}) AS BIGINT) + 1))");
                    Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(&sql)
                        .and_then(|mut p| p.parse_expr())
                        .ok()
                }
                _ => None,
            };
            if let Some(replacement) = replacement {
                *expr = replacement;
                self.changed = true;
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_registers_call_session_user_under_their_names() {
        let sql = rewrite("select current_user, session_user, user, current_role").unwrap();
        assert_eq!(
            sql,
            "SELECT session_user AS \"current_user\", session_user AS \"session_user\", \
             session_user AS \"user\", session_user AS \"current_role\""
        );
        assert_eq!(rewrite("select 1"), None);
        assert_eq!(
            rewrite("select current_setting('TimeZone'), current_schema()").unwrap(),
            "SELECT current_setting('TimeZone') AS \"current_setting\", current_schema() AS \"current_schema\""
        );
        assert_eq!(
            rewrite("select current_setting('a'), current_setting('b')"),
            None,
            "two columns would share a name"
        );
        assert_eq!(rewrite("select \"user\" from t"), None);
    }

    #[test]
    fn like_escape_becomes_backslash_escapes() {
        let sql = rewrite("select 1 where n NOT LIKE 'pg/_' || '%' ESCAPE '/'").unwrap();
        assert!(sql.ends_with("NOT LIKE 'pg\\_%'"), "{sql}");
        assert_eq!(backslash_pattern("a\\b//c/%", '/'), "a\\\\b\\/c\\%");
    }

    #[test]
    fn catalog_subqueries_in_case_columns_are_null() {
        let sql = rewrite(
            "SELECT CASE WHEN a.atthasdef THEN (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d \
             WHERE d.adrelid = a.attrelid) ELSE NULL END AS \"default\", \
             CASE WHEN x THEN (SELECT 1 FROM warehouse.t) END AS y FROM pg_catalog.pg_attribute a",
        )
        .unwrap();
        assert!(
            sql.starts_with("SELECT CASE WHEN a.atthasdef THEN NULL ELSE NULL END"),
            "{sql}"
        );
        assert!(sql.contains("(SELECT 1 FROM warehouse.t)"), "{sql}");
    }

    #[test]
    fn array_subqueries_over_pg_catalog_are_empty() {
        let sql = rewrite(
            "SELECT r.rolname, ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m \
             JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid) as memberof \
             FROM pg_catalog.pg_roles r",
        )
        .unwrap();
        assert_eq!(sql, "SELECT r.rolname, '{}' AS memberof FROM pg_catalog.pg_roles r");
        assert_eq!(rewrite("SELECT ARRAY(SELECT id FROM warehouse.t)"), None);
        // psql's `\d` table options stay an array for DataFusion.
        let options = "SELECT array_to_string(c.reloptions || array(SELECT 'toast.' || x \
             FROM pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_catalog.pg_class c \
             LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)";
        assert!(
            !rewrite(options).is_some_and(|sql| sql.contains("'{}'")),
            "{:?}",
            rewrite(options)
        );
    }

    #[test]
    fn int2vector_columns_are_unnested_as_arrays() {
        let sql =
            rewrite("select unnest(i.indkey) as a, generate_subscripts(i.indkey, 1) as o from pg_index i").unwrap();
        assert!(sql.contains("unnest(sluice_int2vector_items(i.indkey)) AS a"), "{sql}");
        assert!(
            sql.contains("unnest(range(1, CAST(array_length(sluice_int2vector_items(i.indkey)) AS BIGINT) + 1)) AS o"),
            "{sql}"
        );
    }
}
