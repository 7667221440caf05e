//! The names a system-table scan's filters pin (`WHERE name = 'x'`,
//! `WHERE job IN ('a', 'b')`), so the view reads those rows' records only
//! instead of the whole catalog.

use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

/// Whether `filter` pins `column` to a list of names.
pub fn pins(filter: &Expr, column: &str) -> bool {
    pinned_names(filter, column).is_some()
}

/// The names the first filter that pins `column` allows, or `None` when no
/// filter does (the view then reads every row). DataFusion still applies
/// every filter to the rows, so this only has to be a superset.
pub fn names(filters: &[Expr], column: &str) -> Option<Vec<String>> {
    filters.iter().find_map(|f| pinned_names(f, column))
}

fn pinned_names(filter: &Expr, column: &str) -> Option<Vec<String>> {
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), value) | (value, Expr::Column(c)) if c.name == column => {
                text(value).map(|name| vec![name])
            }
            _ => None,
        },
        Expr::InList(list) if !list.negated => match list.expr.as_ref() {
            Expr::Column(c) if c.name == column => list.list.iter().map(text).collect(),
            _ => None,
        },
        _ => None,
    }
}

/// A non-NULL string literal.
fn text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(value, _) => value.try_as_str().flatten().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    #[test]
    fn equality_and_in_lists_on_the_column_pin_names() {
        assert_eq!(names(&[col("name").eq(lit("a"))], "name"), Some(vec!["a".into()]));
        assert_eq!(names(&[lit("a").eq(col("name"))], "name"), Some(vec!["a".into()]));
        assert_eq!(
            names(&[col("name").in_list(vec![lit("a"), lit("b")], false)], "name"),
            Some(vec!["a".into(), "b".into()])
        );
        let other = col("health").eq(lit("failing"));
        assert_eq!(
            names(&[other.clone(), col("name").eq(lit("a"))], "name"),
            Some(vec!["a".into()])
        );
        assert!(pins(&col("name").eq(lit("a")), "name"));
    }

    #[test]
    fn other_conditions_pin_nothing() {
        for filter in [
            col("health").eq(lit("failing")),
            col("name").not_eq(lit("a")),
            col("name").like(lit("a%")),
            col("name").in_list(vec![lit("a")], true),
            col("name").in_list(vec![lit("a"), col("load")], false),
            col("name").eq(col("load")),
            col("name").eq(lit(1)),
        ] {
            assert!(!pins(&filter, "name"), "{filter}");
        }
        assert_eq!(names(&[], "name"), None);
    }
}
