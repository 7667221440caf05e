//! The CQL text Sluice sends: the `system_schema` reads of exploration and
//! the `SELECT` of a scan, with the scan's columns, limit and (with
//! `incremental_filter = 'allow_filtering'`) window bounds pushed down, and
//! the token ranges a parallel scan splits the Murmur3 ring into.

use crate::connectors::documents::{Bound, ColumnSpec, Op, Pushdown, Target, Value};
use crate::contract::{ScanRequest, TableDescription};

/// A CQL identifier, always quoted (case-sensitive, any characters).
pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A CQL text literal.
fn text_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"keyspace"."table"`.
pub(super) fn table_name(keyspace: &str, table: &str) -> String {
    format!("{}.{}", ident(keyspace), ident(table))
}

pub(super) fn keyspaces() -> String {
    "SELECT keyspace_name FROM system_schema.keyspaces".to_owned()
}

pub(super) fn tables(keyspace: &str) -> String {
    format!(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = {}",
        text_literal(keyspace)
    )
}

pub(super) fn size_estimates(keyspace: &str) -> String {
    format!(
        "SELECT table_name, partitions_count, mean_partition_size FROM system.size_estimates WHERE keyspace_name = {}",
        text_literal(keyspace)
    )
}

/// The partitioner of the cluster, which decides whether a scan can be
/// split into token ranges.
pub(super) fn partitioner() -> String {
    "SELECT partitioner FROM system.local".to_owned()
}

/// The partitioner whose tokens are the signed 64-bit integers [`ranges`] splits.
pub(super) const MURMUR3: &str = "org.apache.cassandra.dht.Murmur3Partitioner";

pub(super) fn columns(keyspace: &str, table: &str) -> String {
    format!(
        "SELECT column_name, kind, position, type FROM system_schema.columns WHERE keyspace_name = {} AND \
         table_name = {}",
        text_literal(keyspace),
        text_literal(table)
    )
}

/// A part of the Murmur3 token ring: tokens after `after` (from the
/// ring's start, inclusive, when `None`) up to `to`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TokenRange {
    pub(super) after: Option<i64>,
    pub(super) to: i64,
}

impl TokenRange {
    /// `[-9223372036854775808, -1]` or `(-1, 42]`.
    pub(super) fn text(&self) -> String {
        match self.after {
            None => format!("[{}, {}]", i64::MIN, self.to),
            Some(after) => format!("({after}, {}]", self.to),
        }
    }
}

/// The whole ring (`i64::MIN..=i64::MAX`) split into `n` ranges of equal
/// width, in order: each token is in exactly one.
pub(super) fn ranges(n: u32) -> Vec<TokenRange> {
    let n = i128::from(n.max(1));
    let width = (i128::from(u64::MAX) + 1) / n;
    (1..=n)
        .map(|i| {
            let end = |i: i128| i64::try_from(i128::from(i64::MIN) + i * width - 1).unwrap_or(i64::MAX);
            TokenRange {
                after: (i > 1).then(|| end(i - 1)),
                to: if i == n { i64::MAX } else { end(i) },
            }
        })
        .collect()
}

/// The `SELECT` of one scan and how to read its rows.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Read {
    pub(super) text: String,
    /// The selected columns, in order.
    pub(super) columns: Vec<String>,
    /// The selected primary key columns, which name a row in errors.
    pub(super) key: Vec<String>,
}

/// The `SELECT` reading what `request` needs of `keyspace.table`: the
/// columns it reads, its limit when it has no filter, and with
/// `allow_filtering` the integer and timestamp bounds of its filter
/// (widened to whole milliseconds: Sluice filters the rows again); with
/// `range`, only the rows whose partition key's token is in it.
pub(super) fn read(
    keyspace: &str,
    table: &str,
    description: &TableDescription,
    request: &ScanRequest,
    allow_filtering: bool,
    range: Option<TokenRange>,
) -> Read {
    let pushdown = Pushdown::of(description, request);
    // The primary key is always read: a row's conversion needs it (and
    // errors name the row by it).
    let wanted = |c: &&crate::contract::ColumnInfo| {
        c.primary_key_position.is_some() || pushdown.fields.as_ref().is_none_or(|f| f.contains(&c.name))
    };
    let mut columns: Vec<String> = description
        .columns
        .iter()
        .filter(wanted)
        .map(|c| c.name.clone())
        .collect();
    if columns.is_empty() {
        // Nothing needed but the count of rows: read the first key column.
        columns.extend(description.columns.first().map(|c| c.name.clone()));
    }
    let mut key: Vec<_> = description
        .columns
        .iter()
        .filter(|c| c.primary_key_position.is_some() && columns.contains(&c.name))
        .collect();
    key.sort_by_key(|c| c.primary_key_position);
    let key = key.into_iter().map(|c| c.name.clone()).collect();
    let mut conditions: Vec<String> = range
        .map(|r| token_conditions(&partition_key(description), r))
        .unwrap_or_default();
    let filtering = if allow_filtering {
        pushdown
            .bounds
            .iter()
            .filter_map(|b| condition(description, b))
            .collect()
    } else {
        vec![]
    };
    let allow = !filtering.is_empty();
    conditions.extend(filtering);
    let mut text = format!(
        "SELECT {} FROM {}",
        columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "),
        table_name(keyspace, table)
    );
    if !conditions.is_empty() {
        text.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    if allow {
        text.push_str(" ALLOW FILTERING");
    }
    if let Some(limit) = pushdown.limit {
        text.push_str(&format!(" LIMIT {limit}"));
    }
    Read { text, columns, key }
}

/// The partition key columns of a described table, in key order (a
/// description marks them `indexed`).
pub(super) fn partition_key(description: &TableDescription) -> Vec<String> {
    let mut key: Vec<_> = description
        .columns
        .iter()
        .filter(|c| c.indexed)
        .filter_map(|c| Some((c.primary_key_position?, c.name.clone())))
        .collect();
    key.sort();
    key.into_iter().map(|(_, name)| name).collect()
}

/// `token("a", "b") > x AND token("a", "b") <= y` (`>=` the ring's start
/// for the first range).
fn token_conditions(key: &[String], range: TokenRange) -> Vec<String> {
    let token = format!("token({})", key.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "));
    let lower = match range.after {
        None => format!("{token} >= {}", i64::MIN),
        Some(after) => format!("{token} > {after}"),
    };
    vec![lower, format!("{token} <= {}", range.to)]
}

/// A bound as a CQL condition, where Cassandra compares exactly as Sluice
/// does or the condition only widens: integer and timestamp columns.
fn condition(description: &TableDescription, bound: &Bound) -> Option<String> {
    let column = description.columns.iter().find(|c| c.name == bound.field)?;
    let target = ColumnSpec::parse(&column.source_type)?.target;
    let (op, literal) = match (target, &bound.value, bound.op) {
        (_, _, Op::Eq) => return None,
        (Target::Int, Value::Int(i), op) => (op, i.to_string()),
        // Timestamps are milliseconds in Cassandra: round outwards.
        (Target::Timestamp, Value::Timestamp(t), Op::Gt | Op::GtEq) => (Op::GtEq, t.div_euclid(1000).to_string()),
        (Target::Timestamp, Value::Timestamp(t), Op::Lt | Op::LtEq) => (
            Op::LtEq,
            (t.div_euclid(1000) + i64::from(t.rem_euclid(1000) != 0)).to_string(),
        ),
        _ => return None,
    };
    let op = match op {
        Op::Lt => "<",
        Op::LtEq => "<=",
        Op::Gt => ">",
        Op::GtEq => ">=",
        Op::Eq => "=",
    };
    Some(format!("{} {op} {literal}", ident(&column.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ColumnInfo, TableKind, TableRef};

    fn column(name: &str, cql: &str, key: Option<u32>) -> ColumnInfo {
        let (spec, mapping) = super::super::types::map(cql);
        ColumnInfo {
            name: name.into(),
            ordinal: 1,
            source_type: spec.source_type(Some(cql)),
            nullable: key.is_none(),
            default: None,
            primary_key_position: key,
            indexed: key == Some(1),
            mapping,
        }
    }

    fn description() -> TableDescription {
        TableDescription {
            table: TableRef {
                schema: "shop".into(),
                name: "orders".into(),
            },
            kind: TableKind::Table,
            columns: vec![
                column("id", "int", Some(1)),
                column("Updated \"at\"", "timestamp", None),
                column("n", "bigint", None),
                column("tags", "set<text>", None),
            ],
            estimated_rows: None,
        }
    }

    #[test]
    fn projection_and_limit_are_pushed() {
        let d = description();
        let request = ScanRequest {
            columns: vec![3, 0],
            limit: Some(10),
            ..ScanRequest::default()
        };
        let pushed = read("shop", "orders", &d, &request, false, None);
        assert_eq!(pushed.text, r#"SELECT "id", "tags" FROM "shop"."orders" LIMIT 10"#);
        assert_eq!(pushed.key, ["id"]);
        let count = read("shop", "orders", &d, &ScanRequest::default(), false, None);
        assert_eq!(count.text, r#"SELECT "id" FROM "shop"."orders""#);
        let without_key = ScanRequest {
            columns: vec![2],
            ..ScanRequest::default()
        };
        assert_eq!(
            read("shop", "orders", &d, &without_key, false, None).text,
            r#"SELECT "id", "n" FROM "shop"."orders""#,
            "the key is read with every projection"
        );
    }

    #[test]
    fn window_bounds_need_allow_filtering_and_round_outwards() {
        let d = description();
        let request = ScanRequest {
            columns: vec![0],
            filter: Some(
                "\"Updated \"\"at\"\"\" > CAST('2024-01-01T00:00:00.000001Z' AS TIMESTAMP(6) WITH TIME ZONE) AND \
                 \"Updated \"\"at\"\"\" <= CAST('2024-01-02T00:00:00.000500Z' AS TIMESTAMP(6) WITH TIME ZONE) AND \
                 \"n\" > 5 AND \"n\" = 7"
                    .into(),
            ),
            limit: Some(3),
            ..ScanRequest::default()
        };
        let client = read("shop", "orders", &d, &request, false, None);
        assert_eq!(
            client.text, r#"SELECT "id", "Updated ""at""", "n" FROM "shop"."orders""#,
            "no WHERE, no LIMIT: Sluice filters"
        );
        let filtered = read("shop", "orders", &d, &request, true, None);
        assert_eq!(
            filtered.text,
            r#"SELECT "id", "Updated ""at""", "n" FROM "shop"."orders" WHERE "Updated ""at""" >= 1704067200000 AND "Updated ""at""" <= 1704153600001 AND "n" > 5 ALLOW FILTERING"#
        );
    }

    #[test]
    fn the_ring_splits_into_ranges_that_cover_it_once() {
        assert_eq!(
            ranges(1),
            [TokenRange {
                after: None,
                to: i64::MAX
            }]
        );
        assert_eq!(
            ranges(2),
            [
                TokenRange { after: None, to: -1 },
                TokenRange {
                    after: Some(-1),
                    to: i64::MAX
                }
            ]
        );
        for n in 1..=16 {
            let split = ranges(n);
            assert_eq!(split.len(), n as usize);
            assert_eq!(split[0].after, None);
            assert_eq!(split.last().unwrap().to, i64::MAX);
            for pair in split.windows(2) {
                assert_eq!(
                    pair[1].after,
                    Some(pair[0].to),
                    "adjacent, no gap, no overlap: {split:?}"
                );
                assert!(pair[0].to < pair[1].to);
            }
        }
        assert_eq!(ranges(4)[1].text(), "(-4611686018427387905, -1]");
        assert_eq!(ranges(4)[0].text(), "[-9223372036854775808, -4611686018427387905]");
    }

    #[test]
    fn a_range_bounds_the_token_of_the_partition_key() {
        let mut d = description();
        d.columns.push(column("day", "date", Some(2)));
        d.columns.last_mut().unwrap().indexed = true;
        d.columns.push(column("seq", "int", Some(3)));
        assert_eq!(
            partition_key(&d),
            ["id", "day"],
            "clustering columns are not in the token"
        );
        let request = ScanRequest {
            columns: vec![2],
            filter: Some("\"n\" > 5".into()),
            ..ScanRequest::default()
        };
        let split = ranges(3);
        assert_eq!(
            read("shop", "orders", &d, &request, false, Some(split[0])).text,
            r#"SELECT "id", "n", "day", "seq" FROM "shop"."orders" WHERE token("id", "day") >= -9223372036854775808 AND token("id", "day") <= -3074457345618258604"#
        );
        assert_eq!(
            read("shop", "orders", &d, &request, true, Some(split[2])).text,
            r#"SELECT "id", "n", "day", "seq" FROM "shop"."orders" WHERE token("id", "day") > 3074457345618258601 AND token("id", "day") <= 9223372036854775807 AND "n" > 5 ALLOW FILTERING"#
        );
    }

    #[test]
    fn system_reads_quote_their_literals() {
        assert_eq!(
            columns("o'k", "t"),
            "SELECT column_name, kind, position, type FROM system_schema.columns WHERE keyspace_name = 'o''k' AND \
             table_name = 't'"
        );
    }
}
