//! What of a scan DynamoDB evaluates itself: the filter's comparisons of
//! an attribute with a constant ([`Pushdown`] bounds) become a `Query`'s
//! `KeyConditionExpression` when they fix the partition key of the table
//! or of one of its indexes, and a `FilterExpression` otherwise.
//!
//! A request is never narrower than the scan's filter, only wider (the
//! shared document source filters again): a bound DynamoDB would compare
//! differently from Sluice (a value whose type is not the column's) is not
//! sent, and a window `low < k <= high` on a sort key is sent as
//! `k BETWEEN low AND high`.

use std::cmp::Ordering;

use serde_json::{Map, Value as Json, json};

use crate::connectors::documents::{Bound, ColumnSpec, Op, Pushdown, Target, Value};
use crate::contract::TableDescription;

/// A key attribute: its name and its declared type (`S`, `N` or `B`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyAttribute {
    pub(super) name: String,
    pub(super) kind: String,
}

/// The key of a table or of one of its secondary indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeySchema {
    /// `None` for the table itself.
    pub(super) index: Option<String>,
    pub(super) partition: KeyAttribute,
    pub(super) sort: Option<KeyAttribute>,
    /// A global secondary index: eventually consistent only.
    pub(super) global: bool,
    /// Whether the index holds every attribute of its items (a table does).
    pub(super) all_attributes: bool,
}

/// What `DescribeTable` says about a table's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TableKeys {
    /// The table's own key first, then its local and global indexes.
    pub(super) schemas: Vec<KeySchema>,
}

impl TableKeys {
    /// The keys in a `DescribeTable` answer's `Table`.
    pub(super) fn from_description(table: &Json) -> Self {
        let types = table["AttributeDefinitions"].as_array().cloned().unwrap_or_default();
        let attribute = |name: &str| KeyAttribute {
            name: name.to_owned(),
            kind: types
                .iter()
                .find(|t| t["AttributeName"].as_str() == Some(name))
                .and_then(|t| t["AttributeType"].as_str())
                .unwrap_or("S")
                .to_owned(),
        };
        let schema = |elements: &Json, index: Option<String>, global: bool, all_attributes: bool| {
            let role = |r: &str| {
                elements
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["KeyType"].as_str() == Some(r))
                    .and_then(|e| e["AttributeName"].as_str())
                    .map(attribute)
            };
            Some(KeySchema {
                index,
                partition: role("HASH")?,
                sort: role("RANGE"),
                global,
                all_attributes,
            })
        };
        let mut schemas: Vec<KeySchema> = schema(&table["KeySchema"], None, false, true).into_iter().collect();
        for (list, global) in [("LocalSecondaryIndexes", false), ("GlobalSecondaryIndexes", true)] {
            for index in table[list].as_array().into_iter().flatten() {
                // A global index being built or deleted cannot be queried.
                let active = index["IndexStatus"].as_str().is_none_or(|s| s == "ACTIVE");
                let all = index["Projection"]["ProjectionType"].as_str() == Some("ALL");
                let name = index["IndexName"].as_str().map(str::to_owned);
                if let (true, Some(name)) = (active, name) {
                    schemas.extend(schema(&index["KeySchema"], Some(name), global, all));
                }
            }
        }
        Self { schemas }
    }
}

/// One request's expression: its text and the placeholders it uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Expressions {
    pub(super) key_condition: Option<String>,
    pub(super) filter: Option<String>,
    names: Map<String, Json>,
    values: Map<String, Json>,
}

/// How a scan reads a table.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Read {
    /// `Scan`, in parallel segments.
    Scan(Expressions),
    /// `Query` on the table (`index` `None`) or one of its indexes.
    Query {
        index: Option<String>,
        global: bool,
        expressions: Expressions,
    },
}

impl Expressions {
    /// `#n`, the placeholder of attribute `name`.
    fn name(&mut self, name: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, v)| v.as_str() == Some(name)) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), json!(name));
        placeholder
    }

    /// `:v`, the placeholder of an attribute value.
    fn value(&mut self, value: Json) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// `#n op :v`.
    fn comparison(&mut self, field: &str, op: Op, value: Json) -> String {
        let (name, value) = (self.name(field), self.value(value));
        let op = match op {
            Op::Lt => "<",
            Op::LtEq => "<=",
            Op::Gt => ">",
            Op::GtEq => ">=",
            Op::Eq => "=",
        };
        format!("{name} {op} {value}")
    }

    /// The expressions' members of a `Scan` or `Query` body.
    pub(super) fn add_to(&self, body: &mut Json) {
        if let Some(key) = &self.key_condition {
            body["KeyConditionExpression"] = json!(key);
        }
        if let Some(filter) = &self.filter {
            body["FilterExpression"] = json!(filter);
        }
        if !self.names.is_empty() {
            body["ExpressionAttributeNames"] = Json::Object(self.names.clone());
        }
        if !self.values.is_empty() {
            body["ExpressionAttributeValues"] = Json::Object(self.values.clone());
        }
    }

    /// What EXPLAIN shows: the expressions with their placeholders filled in.
    pub(super) fn text(&self) -> String {
        let fill = |expression: &str| {
            let mut text = expression.to_owned();
            // Longest placeholders first, so `#n1` does not replace part of `#n10`.
            let mut pairs: Vec<(&String, String)> = self
                .names
                .iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
                .chain(self.values.iter().map(|(k, v)| (k, v.to_string())))
                .collect();
            pairs.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
            for (placeholder, value) in pairs {
                text = text.replace(placeholder.as_str(), &value);
            }
            text
        };
        let mut parts = vec![];
        if let Some(key) = &self.key_condition {
            parts.push(format!("KeyConditionExpression {}", fill(key)));
        }
        if let Some(filter) = &self.filter {
            parts.push(format!("FilterExpression {}", fill(filter)));
        }
        parts.join(", ")
    }
}

/// How a scan of `description` with `pushdown` reads a table with `keys`:
/// a `Query` when the bounds fix the partition key of the table or of an
/// index that holds every attribute (preferring one whose sort key is
/// bounded too; a global index only when reads need not be consistent),
/// else a `Scan`; the remaining bounds as the filter expression.
pub(super) fn plan(description: &TableDescription, pushdown: &Pushdown, keys: &TableKeys, consistent: bool) -> Read {
    let typed: Vec<(&Bound, Json)> = pushdown
        .bounds
        .iter()
        .filter_map(|b| Some((b, column_value(description, b)?)))
        .collect();
    let chosen = keys
        .schemas
        .iter()
        .filter(|s| s.all_attributes && !(s.global && consistent))
        .filter_map(|s| Some((s, key_condition(s, &typed)?)))
        .max_by_key(|(s, (_, sorted))| (*sorted, std::cmp::Reverse(keys.schemas.iter().position(|k| k == *s))));
    let mut expressions = Expressions::default();
    let Some((schema, ((partition, sort), _))) = chosen else {
        expressions.filter = filter(&mut expressions, typed.iter(), &[]);
        return Read::Scan(expressions);
    };
    let mut condition = vec![expressions.comparison(&partition.0.field, Op::Eq, partition.1.clone())];
    match sort.as_slice() {
        [] => {}
        [(bound, value)] => condition.push(expressions.comparison(&bound.field, bound.op, value.clone())),
        [(low, low_value), (_, high_value)] => {
            let name = expressions.name(&low.field);
            let (a, b) = (
                expressions.value(low_value.clone()),
                expressions.value(high_value.clone()),
            );
            condition.push(format!("{name} BETWEEN {a} AND {b}"));
        }
        _ => unreachable!("a sort key condition has at most two bounds"),
    }
    expressions.key_condition = Some(condition.join(" AND "));
    // A query's filter may not name a key attribute of the table or the index.
    let table_key = &keys.schemas[0];
    let key_names: Vec<&str> = [&table_key.partition, &schema.partition]
        .into_iter()
        .chain(table_key.sort.iter())
        .chain(schema.sort.iter())
        .map(|k| k.name.as_str())
        .collect();
    expressions.filter = filter(&mut expressions, typed.iter(), &key_names);
    Read::Query {
        index: schema.index.clone(),
        global: schema.global,
        expressions,
    }
}

/// A global or local index's partition values, from the connection's
/// `index_partitions` option (`table.index=v1|v2`): a read that fixes no
/// partition key but bounds the index's sort key (an incremental job's
/// window on it) becomes one `Query` of the index per value. Items whose
/// partition value is not listed are not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IndexPartitions {
    pub(super) table: String,
    pub(super) index: String,
    pub(super) values: Vec<String>,
}

/// The `index_partitions` option: `table.index=v1|v2|...` entries
/// separated by commas.
pub(super) fn index_partitions(text: &str) -> Result<Vec<IndexPartitions>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let bad = || format!("\"{entry}\" is not table.index=value|value|...");
            let (target, values) = entry.split_once('=').ok_or_else(bad)?;
            let (table, index) = target.trim().split_once('.').ok_or_else(bad)?;
            let values: Vec<String> = values.split('|').map(|v| v.trim().to_owned()).collect();
            if table.is_empty() || index.is_empty() || values.iter().any(String::is_empty) {
                return Err(bad());
            }
            Ok(IndexPartitions {
                table: table.to_owned(),
                index: index.to_owned(),
                values,
            })
        })
        .collect()
}

/// The reads of a scan: [`plan`]'s one read, or, when that is a `Scan` and
/// `partitions` lists the values of an index whose sort key the filter
/// bounds, one `Query` of that index per value (in the listed order).
pub(super) fn plan_reads(
    description: &TableDescription,
    pushdown: &Pushdown,
    keys: &TableKeys,
    consistent: bool,
    partitions: Option<&IndexPartitions>,
) -> Vec<Read> {
    let single = plan(description, pushdown, keys, consistent);
    let (Read::Scan(_), Some(partitions)) = (&single, partitions) else {
        return vec![single];
    };
    let Some(schema) = keys
        .schemas
        .iter()
        .find(|s| s.index.as_deref() == Some(partitions.index.as_str()))
    else {
        return vec![single];
    };
    let reads: Vec<Read> = partitions
        .values
        .iter()
        .map(|v| {
            let value = match (schema.partition.kind.as_str(), v.parse::<i64>()) {
                ("N", Ok(n)) => Value::Int(n),
                _ => Value::String(v.clone()),
            };
            let mut fixed = pushdown.clone();
            fixed.bounds.push(Bound {
                field: schema.partition.name.clone(),
                op: Op::Eq,
                value,
            });
            plan(description, &fixed, keys, consistent)
        })
        .collect();
    let all_on_index = reads
        .iter()
        .all(|r| matches!(r, Read::Query { index: Some(i), .. } if *i == partitions.index));
    if all_on_index { reads } else { vec![single] }
}

type Typed<'a> = (&'a Bound, Json);

/// The partition key's equality and the sort key's bounds (one, or a low
/// and a high one) of `schema` among `typed`, and whether the sort key is
/// bounded; `None` when the partition key is not fixed, or when an index's
/// sort key is not bounded (an index holds only items that have it).
#[allow(clippy::type_complexity)]
fn key_condition<'a>(schema: &KeySchema, typed: &[Typed<'a>]) -> Option<((Typed<'a>, Vec<Typed<'a>>), bool)> {
    let fits = |(b, v): &&Typed<'a>, key: &KeyAttribute| b.field == key.name && v.get(&key.kind).is_some();
    let partition = typed
        .iter()
        .find(|t| fits(t, &schema.partition) && t.0.op == Op::Eq)?
        .clone();
    let sort: Vec<Typed<'a>> = match &schema.sort {
        Some(key) => {
            let on_key: Vec<&Typed<'a>> = typed.iter().filter(|t| fits(t, key)).collect();
            let low = on_key.iter().find(|t| matches!(t.0.op, Op::Gt | Op::GtEq));
            let high = on_key.iter().find(|t| matches!(t.0.op, Op::Lt | Op::LtEq));
            match (on_key.iter().find(|t| t.0.op == Op::Eq), low, high) {
                (Some(eq), _, _) => vec![(*eq).clone()],
                (None, Some(low), Some(high)) if compare(&low.1, &high.1) != Some(Ordering::Greater) => {
                    vec![(*low).clone(), (*high).clone()]
                }
                (None, Some(one), _) | (None, None, Some(one)) => vec![(*one).clone()],
                (None, None, None) => vec![],
            }
        }
        None => vec![],
    };
    if schema.index.is_some() && schema.sort.is_some() && sort.is_empty() {
        return None;
    }
    let sorted = !sort.is_empty();
    Some(((partition, sort), sorted))
}

/// The order of two attribute values of one type (`N` or `S`).
fn compare(a: &Json, b: &Json) -> Option<Ordering> {
    match (a.get("N").and_then(Json::as_str), b.get("N").and_then(Json::as_str)) {
        (Some(x), Some(y)) => match (x.parse::<i64>(), y.parse::<i64>()) {
            (Ok(x), Ok(y)) => Some(x.cmp(&y)),
            _ => x.parse::<f64>().ok()?.partial_cmp(&y.parse::<f64>().ok()?),
        },
        _ => Some(a.get("S")?.as_str()?.as_bytes().cmp(b.get("S")?.as_str()?.as_bytes())),
    }
}

/// The bounds not on `excluded` attributes, joined by `AND`.
fn filter<'a>(
    expressions: &mut Expressions,
    typed: impl Iterator<Item = &'a Typed<'a>>,
    excluded: &[&str],
) -> Option<String> {
    let terms: Vec<String> = typed
        .filter(|(b, _)| !excluded.contains(&b.field.as_str()))
        .map(|(b, v)| expressions.comparison(&b.field, b.op, v.clone()))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" AND "))
}

/// The bound's constant as the attribute value DynamoDB compares like
/// Sluice: a number for an `INT64`/`FLOAT64` column, a non-empty string
/// for a `STRING` column, a boolean for `=` on a `BOOL` column; `None`
/// for anything else (it stays in Sluice).
fn column_value(description: &TableDescription, bound: &Bound) -> Option<Json> {
    let column = description.columns.iter().find(|c| c.name == bound.field)?;
    let spec = ColumnSpec::parse(&column.source_type)?;
    if spec.from_text {
        return None;
    }
    match (spec.target, &bound.value) {
        (Target::Int | Target::Float, Value::Int(i)) => Some(json!({"N": i.to_string()})),
        (Target::Int | Target::Float, Value::Float(f)) => number(*f).map(|n| json!({"N": n})),
        (Target::String, Value::String(s)) if !s.is_empty() => Some(json!({"S": s})),
        (Target::Bool, Value::Bool(b)) if bound.op == Op::Eq => Some(json!({"BOOL": b})),
        _ => None,
    }
}

/// A float as DynamoDB number text: its shortest exact digits, when
/// DynamoDB's range (1E-130 to 1E+126 in magnitude) holds it.
fn number(f: f64) -> Option<String> {
    (f.is_finite() && (f == 0.0 || (1e-129..1e125).contains(&f.abs()))).then(|| format!("{f}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ColumnInfo, TableKind, TableRef};
    use crate::type_mapping::Confidence;

    fn description(columns: &[(&str, Target)]) -> TableDescription {
        TableDescription {
            table: TableRef {
                schema: "dynamodb".into(),
                name: "events".into(),
            },
            kind: TableKind::Table,
            columns: columns
                .iter()
                .enumerate()
                .map(|(i, (name, target))| {
                    let spec = ColumnSpec::new(*target);
                    ColumnInfo {
                        name: (*name).into(),
                        ordinal: i as u32 + 1,
                        source_type: spec.source_type(None),
                        nullable: true,
                        default: None,
                        primary_key_position: None,
                        indexed: false,
                        mapping: spec.mapping(Confidence::High),
                    }
                })
                .collect(),
            estimated_rows: None,
        }
    }

    fn keys() -> TableKeys {
        TableKeys::from_description(&json!({
            "AttributeDefinitions": [
                {"AttributeName": "id", "AttributeType": "N"},
                {"AttributeName": "kind", "AttributeType": "S"},
                {"AttributeName": "ts", "AttributeType": "N"},
            ],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                {"IndexName": "by_kind", "IndexStatus": "ACTIVE", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": "kind", "KeyType": "HASH"}, {"AttributeName": "ts", "KeyType": "RANGE"}]},
                {"IndexName": "thin", "IndexStatus": "ACTIVE", "Projection": {"ProjectionType": "KEYS_ONLY"},
                 "KeySchema": [{"AttributeName": "ts", "KeyType": "HASH"}]},
            ],
        }))
    }

    fn read(filter: &str, consistent: bool) -> Read {
        let d = description(&[
            ("id", Target::Int),
            ("kind", Target::String),
            ("ts", Target::Int),
            ("total", Target::Float),
            ("ok", Target::Bool),
            ("tags", Target::Json),
        ]);
        let request = crate::contract::ScanRequest {
            filter: Some(filter.to_owned()),
            ..crate::contract::ScanRequest::every_column(&d)
        };
        plan(&d, &Pushdown::of(&d, &request), &keys(), consistent)
    }

    fn scan(filter: Option<&str>, names: Json, values: Json) -> Read {
        Read::Scan(Expressions {
            key_condition: None,
            filter: filter.map(str::to_owned),
            names: names.as_object().cloned().unwrap_or_default(),
            values: values.as_object().cloned().unwrap_or_default(),
        })
    }

    #[test]
    fn bounds_become_a_typed_filter_expression() {
        // Consistent reads: no query of the global index `kind` fixes.
        assert_eq!(
            read(
                r#""total" > 4.5e1 AND "kind" = 'a b' AND "ok" = TRUE AND "tags" = '[]' AND "ts" <= 7"#,
                true
            ),
            scan(
                Some("#n0 > :v0 AND #n1 = :v1 AND #n2 = :v2 AND #n3 <= :v3"),
                json!({"#n0": "total", "#n1": "kind", "#n2": "ok", "#n3": "ts"}),
                json!({":v0": {"N": "45"}, ":v1": {"S": "a b"}, ":v2": {"BOOL": true}, ":v3": {"N": "7"}}),
            )
        );
        // A string bound on a number column, an empty string, an OR: Sluice's.
        assert_eq!(
            read(r#""ts" = 'x' AND "kind" = ''"#, false),
            scan(None, json!({}), json!({}))
        );
        assert_eq!(read(r#""ts" > 1 OR "ts" < 0"#, false), scan(None, json!({}), json!({})));
        assert_eq!(number(0.1).as_deref(), Some("0.1"));
        assert_eq!(number(1e300), None);
    }

    #[test]
    fn listed_index_partitions_make_a_window_one_query_per_value() {
        let d = description(&[("id", Target::Int), ("kind", Target::String), ("ts", Target::Int)]);
        let reads = |filter: &str, consistent: bool, option: &str| {
            let request = crate::contract::ScanRequest {
                filter: Some(filter.to_owned()),
                ..crate::contract::ScanRequest::every_column(&d)
            };
            let partitions = index_partitions(option).unwrap();
            let of_table = partitions.iter().find(|p| p.table == "events");
            plan_reads(&d, &Pushdown::of(&d, &request), &keys(), consistent, of_table)
        };
        let window = r#""ts" > 3 AND "ts" <= 9"#;
        let queries = reads(window, false, "other.x=1, events.by_kind=a|b");
        let conditions: Vec<String> = queries
            .iter()
            .map(|r| match r {
                Read::Query {
                    index: Some(index),
                    expressions,
                    ..
                } => format!("{index}: {}", expressions.text()),
                other => panic!("not a query of the index: {other:?}"),
            })
            .collect();
        assert_eq!(
            conditions,
            [
                r#"by_kind: KeyConditionExpression kind = {"S":"a"} AND ts BETWEEN {"N":"3"} AND {"N":"9"}"#,
                r#"by_kind: KeyConditionExpression kind = {"S":"b"} AND ts BETWEEN {"N":"3"} AND {"N":"9"}"#,
            ]
        );
        // Without the option, a consistent read (no global index), a window
        // not on the index's sort key, or an unknown index: the one Scan.
        for (filter, consistent, option) in [
            (window, false, ""),
            (window, true, "events.by_kind=a|b"),
            (r#""id" > 3"#, false, "events.by_kind=a|b"),
            (window, false, "events.nope=a"),
        ] {
            let planned = reads(filter, consistent, option);
            assert!(
                matches!(planned.as_slice(), [Read::Scan(_)]),
                "{filter} {option}: {planned:?}"
            );
        }
        for bad in ["events=a", "events.by_kind", "events.by_kind=a||b", ".i=a"] {
            assert!(index_partitions(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_fixed_partition_key_is_a_query() {
        let Read::Query {
            index,
            global,
            expressions,
        } = read(r#""kind" = 'a' AND "ts" > 3 AND "ts" <= 9 AND "total" < 5"#, false)
        else {
            panic!("not a query")
        };
        assert_eq!((index.as_deref(), global), (Some("by_kind"), true));
        assert_eq!(
            expressions.key_condition.as_deref(),
            Some("#n0 = :v0 AND #n1 BETWEEN :v1 AND :v2")
        );
        assert_eq!(expressions.filter.as_deref(), Some("#n2 < :v3"));
        assert_eq!(
            expressions.text(),
            r#"KeyConditionExpression kind = {"S":"a"} AND ts BETWEEN {"N":"3"} AND {"N":"9"}, FilterExpression total < {"N":"5"}"#
        );
        // The table's own key, consistent or not, with the rest filtered.
        let Read::Query { index, expressions, .. } = read(r#""id" = 5 AND "kind" = 'a'"#, true) else {
            panic!("not a query")
        };
        assert_eq!(index, None);
        assert_eq!(expressions.key_condition.as_deref(), Some("#n0 = :v0"));
        assert_eq!(expressions.filter.as_deref(), Some("#n1 = :v1"));
        // A global index is not read consistently; an index whose sort key
        // is not bounded lacks the items without it.
        assert!(matches!(read(r#""kind" = 'a' AND "ts" > 3"#, true), Read::Scan(_)));
        assert!(matches!(read(r#""kind" = 'a'"#, false), Read::Scan(_)));
        // An index that lacks attributes is never read.
        assert!(matches!(read(r#""ts" = 3"#, false), Read::Scan(_)));
        // An empty window keeps its lower bound only.
        let Read::Query { expressions, .. } = read(r#""kind" = 'a' AND "ts" > 9 AND "ts" <= 3"#, false) else {
            panic!("not a query")
        };
        assert_eq!(expressions.key_condition.as_deref(), Some("#n0 = :v0 AND #n1 > :v1"));
    }
}
