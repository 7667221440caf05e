//! A scan's request as a `find`: the filter's comparisons of number and
//! date columns with literals become the query filter, the columns it needs
//! the projection, and the limit goes along when the filter went whole.
//!
//! The filter sent is never narrower than the scan's (a bound between two
//! milliseconds widens to the millisecond around it), because the shared
//! document source runs the whole filter and limit again on what `find`
//! returns. Text columns are never pushed: ObjectId, Decimal128 and UUID
//! values read as text but compare as their own BSON types.

use chrono::NaiveDateTime;
use datafusion::arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, DataType as SqlType, Expr, UnaryOperator, Value as Sql,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use mongodb::bson::{Bson, DateTime as BsonDateTime, Document, doc};

use crate::connectors::documents::DOCUMENT_COLUMN;
use crate::contract::{ScanRequest, TableDescription};

/// What a scan asks `find` for.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Find {
    pub(super) filter: Document,
    /// `None`: whole documents.
    pub(super) projection: Option<Document>,
    pub(super) sort: Option<Document>,
    pub(super) limit: Option<i64>,
}

/// The `find` for a scan of `description`.
pub(super) fn find(description: &TableDescription, request: &ScanRequest) -> Find {
    let parsed = request.filter.as_deref().and_then(|f| {
        Parser::new(&GenericDialect)
            .try_with_sql(f)
            .and_then(|mut p| p.parse_expr())
            .ok()
    });
    let mut conditions = Vec::new();
    let mut exact = request.filter.is_none() || parsed.is_some();
    if let Some(expr) = &parsed {
        conjuncts(expr, description, &mut conditions, &mut exact);
    }
    let range_field = conditions
        .iter()
        .find(|(_, op, _)| matches!(*op, "$gt" | "$gte" | "$lt" | "$lte"))
        .map(|(field, _, _)| field.clone());
    let filter = match conditions.len() {
        0 => Document::new(),
        1 => {
            let (field, op, value) = conditions.remove(0);
            doc! { field: { op: value } }
        }
        _ => doc! { "$and": conditions.into_iter().map(|(f, op, v)| doc! { f: { op: v } }).collect::<Vec<_>>() },
    };
    Find {
        filter,
        projection: projection(description, request, parsed.as_ref()),
        sort: range_field.map(|field| {
            if field == "_id" {
                doc! { "_id": 1 }
            } else {
                doc! { field: 1, "_id": 1 }
            }
        }),
        limit: request.limit.filter(|_| exact).and_then(|l| i64::try_from(l).ok()),
    }
}

/// `(field, operator, value)` of each pushable conjunct of `expr`; `exact`
/// turns false when a conjunct stays behind or is widened.
fn conjuncts(
    expr: &Expr,
    description: &TableDescription,
    out: &mut Vec<(String, &'static str, Bson)>,
    exact: &mut bool,
) {
    match expr {
        Expr::Nested(inner) => conjuncts(inner, description, out, exact),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, description, out, exact);
            conjuncts(right, description, out, exact);
        }
        Expr::BinaryOp { left, op, right } => match comparison(left, op, right, description) {
            Some((condition, widened)) => {
                *exact &= !widened;
                out.push(condition);
            }
            None => *exact = false,
        },
        _ => *exact = false,
    }
}

/// `column op literal` (either way round) on a number or date column, and
/// whether the bound was widened to whole milliseconds.
fn comparison(
    left: &Expr,
    op: &BinaryOperator,
    right: &Expr,
    description: &TableDescription,
) -> Option<((String, &'static str, Bson), bool)> {
    let (column, literal, op) = match (column(left), column(right)) {
        (Some(c), None) => (c, right, op.clone()),
        (None, Some(c)) => (c, left, flipped(op)?),
        _ => return None,
    };
    if column.contains('.') || column.starts_with('$') || column == DOCUMENT_COLUMN {
        return None;
    }
    let info = description.columns.iter().find(|c| c.name == column)?;
    let op = match op {
        BinaryOperator::Gt => "$gt",
        BinaryOperator::GtEq => "$gte",
        BinaryOperator::Lt => "$lt",
        BinaryOperator::LtEq => "$lte",
        BinaryOperator::Eq => "$eq",
        _ => return None,
    };
    match &info.mapping.arrow {
        DataType::Int64 | DataType::Float64 => Some(((column, op, number(literal)?), false)),
        DataType::Timestamp(..) => {
            let micros = timestamp(literal)?;
            let millis = micros.div_euclid(1_000);
            if micros.rem_euclid(1_000) == 0 {
                return Some(((column, op, Bson::DateTime(BsonDateTime::from_millis(millis))), false));
            }
            // Between two milliseconds: the millisecond around the bound.
            let (op, millis) = match op {
                "$gt" | "$gte" => ("$gte", millis),
                "$lt" | "$lte" => ("$lte", millis + 1),
                _ => return None,
            };
            Some(((column, op, Bson::DateTime(BsonDateTime::from_millis(millis))), true))
        }
        _ => None,
    }
}

/// `a < b` as `b > a`.
fn flipped(op: &BinaryOperator) -> Option<BinaryOperator> {
    Some(match op {
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Eq => BinaryOperator::Eq,
        _ => return None,
    })
}

fn column(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident.value.clone()),
        Expr::Nested(inner) => column(inner),
        _ => None,
    }
}

/// A number literal as an Int64 when it is an integer, else a Double that
/// reads back as the same text.
fn number(expr: &Expr) -> Option<Bson> {
    match expr {
        Expr::Value(v) => match &v.value {
            Sql::Number(text, _) => {
                if let Ok(i) = text.parse::<i64>() {
                    Some(Bson::Int64(i))
                } else {
                    text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Bson::Double)
                }
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match number(expr)? {
            Bson::Int64(i) => i.checked_neg().map(Bson::Int64),
            Bson::Double(f) => Some(Bson::Double(-f)),
            _ => None,
        },
        Expr::Nested(inner) => number(inner),
        _ => None,
    }
}

/// `CAST('…' AS TIMESTAMP(6) [WITH TIME ZONE])` (the dialect's timestamp
/// literal; a wall time is UTC, the zone of every BSON date) in
/// microseconds.
fn timestamp(expr: &Expr) -> Option<i64> {
    let Expr::Cast {
        kind: CastKind::Cast,
        expr,
        data_type: SqlType::Timestamp(..),
        ..
    } = expr
    else {
        return None;
    };
    let Expr::Value(v) = expr.as_ref() else { return None };
    let Sql::SingleQuotedString(text) = &v.value else {
        return None;
    };
    let wall = text.strip_suffix('Z').unwrap_or(text);
    let t = NaiveDateTime::parse_from_str(wall, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(t.and_utc().timestamp_micros())
}

/// The fields the scan reads: its columns, those its filter names, the key
/// and every non-null column; `None` (whole documents) when the table keeps
/// `_document`, the filter cannot be read, or a name is a path.
fn projection(description: &TableDescription, request: &ScanRequest, parsed: Option<&Expr>) -> Option<Document> {
    if description.columns.iter().any(|c| c.name == DOCUMENT_COLUMN) || (request.filter.is_some() && parsed.is_none()) {
        return None;
    }
    let mut names: Vec<String> = request
        .columns
        .iter()
        .filter_map(|&i| description.columns.get(i))
        .chain(description.columns.iter().filter(|c| !c.nullable))
        .map(|c| c.name.clone())
        .collect();
    if let Some(expr) = parsed {
        identifiers(expr, &mut names);
    }
    names.push("_id".to_owned());
    if names
        .iter()
        .any(|n| n.contains('.') || n.starts_with('$') || n.is_empty())
    {
        return None;
    }
    names.sort();
    names.dedup();
    Some(names.into_iter().map(|n| (n, Bson::Int32(1))).collect())
}

/// Every identifier in `expr`, by walking its displayed form's tokens is
/// fragile; sqlparser's visitor finds them exactly.
fn identifiers(expr: &Expr, out: &mut Vec<String>) {
    use datafusion::sql::sqlparser::ast::Visit;
    use std::ops::ControlFlow;
    struct Names<'a>(&'a mut Vec<String>);
    impl datafusion::sql::sqlparser::ast::Visitor for Names<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(ident) => self.0.push(ident.value.clone()),
                Expr::CompoundIdentifier(parts) => self
                    .0
                    .push(parts.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join(".")),
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let _ = expr.visit(&mut Names(out));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ColumnInfo, TableKind, TableRef};
    use crate::type_mapping::{BigQueryType, Confidence, TypeMapping};

    fn column(name: &str, arrow: DataType, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            ordinal: 1,
            source_type: String::new(),
            nullable,
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

    fn table(extra: Vec<ColumnInfo>) -> TableDescription {
        let mut columns = vec![
            column("_id", DataType::Utf8, false),
            column("n", DataType::Int64, true),
            column(
                "at",
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            column("name", DataType::Utf8, true),
        ];
        columns.extend(extra);
        TableDescription {
            table: TableRef {
                schema: "shop".into(),
                name: "orders".into(),
            },
            kind: TableKind::Table,
            columns,
            estimated_rows: None,
        }
    }

    fn request(columns: Vec<usize>, filter: Option<&str>, limit: Option<usize>) -> ScanRequest {
        ScanRequest {
            columns,
            filter: filter.map(str::to_owned),
            limit,
            offset: 0,
            segment: None,
            batch_rows: None,
        }
    }

    fn date(millis: i64) -> Bson {
        Bson::DateTime(BsonDateTime::from_millis(millis))
    }

    #[test]
    fn an_incremental_window_becomes_a_range_sorted_by_cursor_and_id() {
        let filter = "\"at\" > CAST('2024-01-03T00:00:00.000000Z' AS TIMESTAMP(6) WITH TIME ZONE) AND \"at\" <= CAST('2024-01-08T00:00:00.000000Z' AS TIMESTAMP(6) WITH TIME ZONE)";
        let f = find(&table(vec![]), &request(vec![0, 1], Some(filter), None));
        assert_eq!(
            f.filter,
            doc! {"$and": [{"at": {"$gt": date(1_704_240_000_000)}}, {"at": {"$lte": date(1_704_672_000_000)}}]}
        );
        assert_eq!(f.sort, Some(doc! {"at": 1, "_id": 1}));
        assert_eq!(f.projection, Some(doc! {"_id": 1, "at": 1, "n": 1}));
    }

    #[test]
    fn bounds_between_milliseconds_widen_and_keep_the_limit_home() {
        let filter = "\"at\" > CAST('2024-01-03T00:00:00.000500' AS TIMESTAMP(6)) AND \"at\" <= CAST('2024-01-03T00:00:01.000500' AS TIMESTAMP(6))";
        let f = find(&table(vec![]), &request(vec![], Some(filter), Some(5)));
        assert_eq!(
            f.filter,
            doc! {"$and": [{"at": {"$gte": date(1_704_240_000_000)}}, {"at": {"$lte": date(1_704_240_001_001)}}]}
        );
        assert_eq!(f.limit, None);
    }

    #[test]
    fn numbers_push_and_text_stays_in_sluice() {
        let f = find(
            &table(vec![]),
            &request(
                vec![3],
                Some("(5 < \"n\") AND \"name\" = 'x' AND \"n\" <= -2.5e0"),
                Some(3),
            ),
        );
        assert_eq!(f.filter, doc! {"$and": [{"n": {"$gt": 5i64}}, {"n": {"$lte": -2.5}}]});
        assert_eq!(
            f.limit, None,
            "the text comparison runs in Sluice, so the limit must too"
        );
        assert_eq!(f.projection, Some(doc! {"_id": 1, "n": 1, "name": 1}));
        assert_eq!(f.sort, Some(doc! {"n": 1, "_id": 1}));
    }

    #[test]
    fn a_whole_filter_takes_the_limit_along() {
        let f = find(&table(vec![]), &request(vec![1], Some("\"n\" = 7"), Some(2)));
        assert_eq!(f.filter, doc! {"n": {"$eq": 7i64}});
        assert_eq!(f.limit, Some(2));
        assert_eq!(f.sort, None);
        let plain = find(&table(vec![]), &request(vec![1], None, Some(4)));
        assert_eq!(plain.filter, Document::new());
        assert_eq!(plain.limit, Some(4));
    }

    #[test]
    fn or_and_functions_stay_in_sluice() {
        let f = find(
            &table(vec![]),
            &request(vec![1], Some("\"n\" = 1 OR \"n\" = 2"), Some(1)),
        );
        assert_eq!(f.filter, Document::new());
        assert_eq!(f.limit, None);
        assert_eq!(f.projection, Some(doc! {"_id": 1, "n": 1}));
    }

    #[test]
    fn whole_documents_when_the_table_keeps_them_or_names_are_paths() {
        let kept = table(vec![column(DOCUMENT_COLUMN, DataType::Utf8, true)]);
        assert_eq!(find(&kept, &request(vec![1], None, None)).projection, None);
        let dotted = table(vec![column("a.b", DataType::Int64, true)]);
        let f = find(&dotted, &request(vec![4], Some("\"a.b\" > 1"), None));
        assert_eq!(f.projection, None);
        assert_eq!(f.filter, Document::new());
    }
}
