//! Translating DataFusion filters into the source's SQL.
//!
//! A filter is pushed down only when the source evaluates it the same way
//! (exact) or keeps at least every row DataFusion would (inexact: DataFusion
//! filters again). Anything else stays in DataFusion.

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Like, Operator};

use crate::contract::{ColumnInfo, Dialect, TableDescription};

/// How faithfully a filter can be evaluated by the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Fidelity {
    /// The source keeps exactly the rows DataFusion would.
    Exact,
    /// The source keeps a superset; DataFusion must filter again.
    Inexact,
}

/// A filter in the source's SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Translated {
    pub sql: String,
    pub fidelity: Fidelity,
}

/// What comparisons a column supports at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnClass {
    /// Numbers, booleans, dates and timestamps: same order and equality.
    Ordered,
    /// Character data: equality only, and possibly case-insensitive there.
    Text,
}

fn column_class(column: &ColumnInfo, dialect: &dyn Dialect) -> Option<ColumnClass> {
    if column.mapping.repeated || !dialect.compares_as_arrow(column) {
        return None;
    }
    match &column.mapping.arrow {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..)
        | DataType::Date32
        | DataType::Timestamp(..)
        | DataType::Boolean => Some(ColumnClass::Ordered),
        DataType::Utf8 | DataType::LargeUtf8 => {
            let source = column.source_type.to_lowercase();
            (source.contains("char")
                || source.contains("text")
                || source.contains("utf8")
                || source == "name"
                || source == "string")
                .then_some(ColumnClass::Text)
        }
        _ => None,
    }
}

/// Translates `expr`, or `None` when it must stay in DataFusion.
pub(crate) fn translate(expr: &Expr, table: &TableDescription, dialect: &dyn Dialect) -> Option<Translated> {
    let t = Translator { table, dialect };
    t.expr(expr)
}

struct Translator<'a> {
    table: &'a TableDescription,
    dialect: &'a dyn Dialect,
}

impl Translator<'_> {
    fn column(&self, expr: &Expr) -> Option<(String, ColumnClass)> {
        let Expr::Column(column) = expr else { return None };
        let info = self.table.columns.iter().find(|c| c.name == column.name)?;
        Some((self.dialect.quote_ident(&info.name), column_class(info, self.dialect)?))
    }

    fn literal(&self, expr: &Expr) -> Option<String> {
        match expr {
            Expr::Literal(value, _) if !value.is_null() => self.dialect.literal(value),
            _ => None,
        }
    }

    fn expr(&self, expr: &Expr) -> Option<Translated> {
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: op @ (Operator::And | Operator::Or),
                right,
            }) => {
                let (l, r) = (self.expr(left)?, self.expr(right)?);
                let keyword = if *op == Operator::And { "AND" } else { "OR" };
                Some(Translated {
                    sql: format!("({} {keyword} {})", l.sql, r.sql),
                    fidelity: l.fidelity.max(r.fidelity),
                })
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => self.comparison(left, *op, right),
            Expr::Not(inner) => {
                let inner = self.expr(inner)?;
                // NOT of a superset is a subset: only exact filters may be negated.
                (inner.fidelity == Fidelity::Exact).then(|| Translated {
                    sql: format!("(NOT {})", inner.sql),
                    fidelity: Fidelity::Exact,
                })
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let Expr::Column(column) = inner.as_ref() else {
                    return None;
                };
                let info = self.table.columns.iter().find(|c| c.name == column.name)?;
                let test = if matches!(expr, Expr::IsNull(_)) {
                    "IS NULL"
                } else {
                    "IS NOT NULL"
                };
                Some(Translated {
                    sql: format!("({} {test})", self.dialect.quote_ident(&info.name)),
                    fidelity: Fidelity::Exact,
                })
            }
            Expr::InList(InList { expr, list, negated }) => {
                let (column, class) = self.column(expr)?;
                if *negated && class == ColumnClass::Text {
                    return None;
                }
                let values = list.iter().map(|v| self.literal(v)).collect::<Option<Vec<_>>>()?;
                let not = if *negated { "NOT " } else { "" };
                Some(Translated {
                    sql: format!("({column} {not}IN ({}))", values.join(", ")),
                    fidelity: fidelity(class),
                })
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                let (column, class) = self.column(expr)?;
                (class == ColumnClass::Ordered).then_some(())?;
                Some(Translated {
                    sql: format!("({column} BETWEEN {} AND {})", self.literal(low)?, self.literal(high)?),
                    fidelity: Fidelity::Exact,
                })
            }
            Expr::Like(Like {
                negated: false,
                expr,
                pattern,
                escape_char: None,
                case_insensitive: false,
            }) => {
                let (column, class) = self.column(expr)?;
                (class == ColumnClass::Text).then_some(())?;
                Some(Translated {
                    sql: format!("({column} LIKE {})", self.literal(pattern)?),
                    fidelity: Fidelity::Inexact,
                })
            }
            _ => None,
        }
    }

    fn comparison(&self, left: &Expr, op: Operator, right: &Expr) -> Option<Translated> {
        let (column, class, literal, op) = match (self.column(left), self.column(right)) {
            (Some((column, class)), None) => (column, class, self.literal(right)?, op),
            (None, Some((column, class))) => (column, class, self.literal(left)?, op.swap()?),
            _ => return None,
        };
        let symbol = match (op, class) {
            (Operator::Eq, _) => "=",
            (Operator::NotEq, ColumnClass::Ordered) => "<>",
            (Operator::Lt, ColumnClass::Ordered) => "<",
            (Operator::LtEq, ColumnClass::Ordered) => "<=",
            (Operator::Gt, ColumnClass::Ordered) => ">",
            (Operator::GtEq, ColumnClass::Ordered) => ">=",
            _ => return None,
        };
        Some(Translated {
            sql: format!("({column} {symbol} {literal})"),
            fidelity: fidelity(class),
        })
    }
}

fn fidelity(class: ColumnClass) -> Fidelity {
    match class {
        ColumnClass::Ordered => Fidelity::Exact,
        ColumnClass::Text => Fidelity::Inexact,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};
    use datafusion::scalar::ScalarValue;

    use super::*;
    use crate::contract::{TableKind, TableRef};
    use crate::type_mapping::{BigQueryType, Confidence, TypeMapping};

    struct Quoting;

    impl Dialect for Quoting {
        fn family(&self) -> crate::contract::SqlFamily {
            crate::contract::SqlFamily::Postgres
        }
        fn quote_ident(&self, ident: &str) -> String {
            format!("\"{}\"", ident.replace('"', "\"\""))
        }
        fn literal(&self, value: &ScalarValue) -> Option<String> {
            match value {
                ScalarValue::Int64(Some(v)) => Some(v.to_string()),
                ScalarValue::Utf8(Some(s)) => Some(format!("'{}'", s.replace('\'', "''"))),
                _ => None,
            }
        }
    }

    fn column(name: &str, arrow: DataType, source_type: &str) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            ordinal: 1,
            source_type: source_type.into(),
            nullable: true,
            default: None,
            primary_key_position: None,
            indexed: false,
            mapping: TypeMapping {
                arrow,
                bigquery: BigQueryType::String,
                repeated: false,
                confidence: Confidence::High,
                warnings: vec![],
            },
        }
    }

    fn table() -> TableDescription {
        TableDescription {
            table: TableRef {
                schema: "s".into(),
                name: "t".into(),
            },
            kind: TableKind::Table,
            columns: vec![
                column("id", DataType::Int64, "bigint"),
                column("select", DataType::Utf8, "text"),
                column("uid", DataType::Utf8, "uuid"),
                column("score", DataType::Float64, "double precision"),
            ],
            estimated_rows: None,
        }
    }

    fn sql(expr: Expr) -> Option<(String, Fidelity)> {
        translate(&expr, &table(), &Quoting).map(|t| (t.sql, t.fidelity))
    }

    #[test]
    fn numeric_comparisons_are_exact_and_quoted() {
        assert_eq!(
            sql(col("id").gt(lit(5i64))),
            Some(("(\"id\" > 5)".into(), Fidelity::Exact))
        );
        assert_eq!(
            sql(lit(5i64).lt(col("id"))),
            Some(("(\"id\" > 5)".into(), Fidelity::Exact))
        );
        assert_eq!(
            sql(col("id").gt(lit(1i64)).and(col("id").is_not_null())),
            Some(("((\"id\" > 1) AND (\"id\" IS NOT NULL))".into(), Fidelity::Exact))
        );
    }

    #[test]
    fn text_equality_is_inexact_and_text_order_is_not_pushed() {
        assert_eq!(
            sql(col("select").eq(lit("it's"))),
            Some(("(\"select\" = 'it''s')".into(), Fidelity::Inexact))
        );
        assert_eq!(sql(col("select").lt(lit("b"))), None);
        assert_eq!(
            sql(!col("select").eq(lit("a"))),
            None,
            "NOT of a superset would lose rows"
        );
        assert_eq!(sql(col("uid").eq(lit("x"))), None, "uuid is text only in Arrow");
        assert_eq!(sql(col("score").gt(lit(1i64))), None, "floats stay in DataFusion");
        assert_eq!(sql(col("id").gt(lit(1i64)).or(col("uid").eq(lit("x")))), None);
    }

    /// A dialect that compares no column as Arrow does.
    struct Refusing;

    impl Dialect for Refusing {
        fn family(&self) -> crate::contract::SqlFamily {
            crate::contract::SqlFamily::Postgres
        }
        fn quote_ident(&self, ident: &str) -> String {
            Quoting.quote_ident(ident)
        }
        fn literal(&self, value: &ScalarValue) -> Option<String> {
            Quoting.literal(value)
        }
        fn compares_as_arrow(&self, _column: &ColumnInfo) -> bool {
            false
        }
    }

    #[test]
    fn the_dialect_keeps_comparisons_it_would_get_wrong_in_datafusion() {
        let refused = |expr: Expr| translate(&expr, &table(), &Refusing).map(|t| t.sql);
        assert_eq!(refused(col("id").gt(lit(5i64))), None);
        assert_eq!(refused(col("select").eq(lit("a"))), None);
        assert_eq!(refused(col("id").is_null()), Some("(\"id\" IS NULL)".into()));
    }
}
