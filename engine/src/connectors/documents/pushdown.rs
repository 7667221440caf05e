//! What of a scan a store may evaluate itself: the comparisons of a field
//! with a constant among the filter's top-level `AND` terms (the
//! incremental window is one or two of them), the fields the scan needs
//! and its limit. Sluice still applies the whole request to what the store
//! returns, so a store may use any part of this or none.

use chrono::DateTime;
use datafusion::sql::sqlparser::ast::{BinaryOperator, DataType, Expr, TimezoneInfo, UnaryOperator, Value as SqlValue};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::mapping::Target;
use super::value::Value;
use crate::contract::{ScanRequest, TableDescription};

/// A comparison operator of a [`Bound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Lt,
    LtEq,
    Gt,
    GtEq,
    Eq,
}

/// `field op value`, one `AND` term of the filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bound {
    pub(crate) field: String,
    pub(crate) op: Op,
    pub(crate) value: Value,
}

/// What a store may evaluate of one scan.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Pushdown {
    /// Comparisons every returned row satisfies.
    pub(crate) bounds: Vec<Bound>,
    /// The top-level fields the scan reads; `None` for all of them.
    pub(crate) fields: Option<Vec<String>>,
    /// At most this many documents are needed (only without a filter).
    pub(crate) limit: Option<usize>,
}

impl Pushdown {
    /// What of `request` on `description` a store may evaluate: the bounds
    /// the filter's terms name, the fields the selected columns and the
    /// filter read (all fields when a term is not a bound or the table keeps
    /// `_document`) and the limit of an unfiltered scan.
    pub(crate) fn of(description: &TableDescription, request: &ScanRequest) -> Self {
        let (bounds, complete) = match &request.filter {
            Some(filter) => bounds(filter),
            None => (vec![], true),
        };
        let whole_document = description
            .columns
            .iter()
            .any(|c| super::mapping::ColumnSpec::parse(&c.source_type).map(|s| s.target) == Some(Target::Document));
        let fields = (complete && !whole_document).then(|| {
            let mut fields: Vec<String> = request
                .columns
                .iter()
                .filter_map(|&i| description.columns.get(i))
                .map(|c| c.name.clone())
                .chain(bounds.iter().map(|b| b.field.clone()))
                .collect();
            fields.sort();
            fields.dedup();
            fields
        });
        Self {
            bounds,
            fields,
            limit: request.filter.is_none().then_some(request.limit).flatten(),
        }
    }
}

/// The bounds among the `AND` terms of `filter` (SQL as the DataFusion
/// dialect writes it), and whether every term is one.
pub(crate) fn bounds(filter: &str) -> (Vec<Bound>, bool) {
    let Ok(expr) = Parser::new(&GenericDialect)
        .try_with_sql(filter)
        .and_then(|mut p| p.parse_expr())
    else {
        return (vec![], false);
    };
    let mut terms = Vec::new();
    conjuncts(&expr, &mut terms);
    let found: Vec<Bound> = terms.iter().filter_map(|t| bound(t)).collect();
    let complete = found.len() == terms.len();
    (found, complete)
}

fn conjuncts<'a>(expr: &'a Expr, terms: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, terms);
            conjuncts(right, terms);
        }
        Expr::Nested(inner) => conjuncts(inner, terms),
        other => terms.push(other),
    }
}

fn bound(term: &Expr) -> Option<Bound> {
    let Expr::BinaryOp { left, op, right } = term else {
        return None;
    };
    let op = match op {
        BinaryOperator::Lt => Op::Lt,
        BinaryOperator::LtEq => Op::LtEq,
        BinaryOperator::Gt => Op::Gt,
        BinaryOperator::GtEq => Op::GtEq,
        BinaryOperator::Eq => Op::Eq,
        _ => return None,
    };
    let Expr::Identifier(field) = left.as_ref() else {
        return None;
    };
    Some(Bound {
        field: field.value.clone(),
        op,
        value: constant(right)?,
    })
}

/// A number, a string, a boolean, or a timestamp with a time zone written as
/// `CAST('...Z' AS TIMESTAMP(6) WITH TIME ZONE)`.
fn constant(expr: &Expr) -> Option<Value> {
    match expr {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => {
                let text = n.to_string();
                text.parse::<i64>()
                    .ok()
                    .map(Value::Int)
                    .or_else(|| text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::Float))
            }
            SqlValue::SingleQuotedString(s) => Some(Value::String(s.clone())),
            SqlValue::Boolean(b) => Some(Value::Bool(*b)),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match constant(expr)? {
            Value::Int(i) => i.checked_neg().map(Value::Int),
            Value::Float(f) => Some(Value::Float(-f)),
            _ => None,
        },
        Expr::Cast {
            expr,
            data_type: DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz),
            ..
        } => {
            let Expr::Value(v) = expr.as_ref() else { return None };
            let SqlValue::SingleQuotedString(text) = &v.value else {
                return None;
            };
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| Value::Timestamp(t.timestamp_micros()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_terms_are_bounds() {
        let (found, complete) = bounds(
            "\"updated at\" > CAST('2024-01-01T00:00:00.000001Z' AS TIMESTAMP(6) WITH TIME ZONE) AND \"n\" <= -5",
        );
        assert!(complete);
        assert_eq!(
            found,
            [
                Bound {
                    field: "updated at".into(),
                    op: Op::Gt,
                    value: Value::Timestamp(1_704_067_200_000_001),
                },
                Bound {
                    field: "n".into(),
                    op: Op::LtEq,
                    value: Value::Int(-5),
                },
            ]
        );
        let (found, complete) = bounds("\"a\" = 'x' AND (\"b\" > 1e-1 OR \"c\" < 2)");
        assert!(!complete, "an OR is left to Sluice");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].value, Value::String("x".into()));
        assert_eq!(
            bounds("\"t\" > CAST('2024-01-01T00:00:00' AS TIMESTAMP(6))"),
            (vec![], false)
        );
        assert_eq!(bounds("not sql ((("), (vec![], false));
    }
}
