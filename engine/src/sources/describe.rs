//! What Sluice recommends from a table's description: the cursor column for
//! incremental loads, and the load type.

use crate::type_mapping::BigQueryType;

use crate::contract::{ColumnInfo, TableDescription};

/// A column that could drive incremental loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampCandidate {
    pub column: String,
    /// 1 is the best candidate.
    pub rank: u32,
    /// The candidate Sluice would pick.
    pub recommended: bool,
    pub reason: String,
}

/// The load type Sluice suggests for a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadRecommendation {
    /// Append rows past a watermark on this column.
    Incremental { cursor: String },
    /// Replace the whole table each run.
    Snapshot,
}

impl LoadRecommendation {
    /// How the recommendation reads in `DESCRIBE`.
    pub fn describe(&self) -> String {
        match self {
            LoadRecommendation::Incremental { cursor } => format!("INCREMENTAL BY {cursor}"),
            LoadRecommendation::Snapshot => "SNAPSHOT".into(),
        }
    }
}

const UPDATED_NAMES: &[&str] = &[
    "updated_at",
    "modified_at",
    "last_modified",
    "last_modified_at",
    "changed_at",
    "last_update",
    "last_updated",
    "updated_on",
    "modified_on",
    "updated",
    "modified",
    "update_time",
    "modify_time",
    "mtime",
];
const CREATED_NAMES: &[&str] = &[
    "created_at",
    "inserted_at",
    "created_on",
    "creation_date",
    "created",
    "inserted",
    "create_time",
    "ctime",
];

/// How well a column name suggests a change time: 0 updated-like, 1
/// created-like, 2 anything else.
fn name_class(name: &str) -> u32 {
    let lower = name.to_lowercase();
    let matches = |names: &[&str]| names.iter().any(|n| lower == *n || lower.ends_with(&format!("_{n}")));
    if matches(UPDATED_NAMES) {
        0
    } else if matches(CREATED_NAMES) {
        1
    } else {
        2
    }
}

/// A SQL Server `rowversion` column: a counter the server raises on every
/// insert and update, the best change cursor a table can have.
fn is_row_version(column: &ColumnInfo) -> bool {
    column.source_type == "rowversion" && column.mapping.bigquery == BigQueryType::Int64
}

impl TableDescription {
    /// Timestamp and date columns ranked as incremental cursors: SQL Server
    /// row versions first, then names like `updated_at`, then
    /// `created_at`-like ones, indexed and NOT NULL columns before others.
    /// The first is recommended when it is a row version or its name or an
    /// index says it tracks changes.
    pub fn timestamp_candidates(&self) -> Vec<TimestampCandidate> {
        let mut ranked: Vec<_> = self
            .columns
            .iter()
            .filter(|c| {
                !c.mapping.repeated
                    && (is_row_version(c)
                        || matches!(
                            c.mapping.bigquery,
                            BigQueryType::Timestamp | BigQueryType::Datetime | BigQueryType::Date
                        ))
            })
            .map(|c| {
                (
                    (
                        !is_row_version(c),
                        name_class(&c.name),
                        !c.indexed,
                        c.nullable,
                        c.ordinal,
                    ),
                    c,
                )
            })
            .collect();
        ranked.sort_by_key(|(key, _)| *key);
        ranked
            .into_iter()
            .enumerate()
            .map(|(i, ((not_version, class, not_indexed, _, _), c))| {
                let mut reasons = Vec::new();
                match class {
                    _ if !not_version => reasons.push("row version: the server raises it on every insert and update"),
                    0 => reasons.push("name suggests last change time"),
                    1 => reasons.push("name suggests creation time (misses updates)"),
                    _ => {}
                }
                if !not_indexed {
                    reasons.push("indexed");
                }
                if !c.nullable {
                    reasons.push("not null");
                }
                TimestampCandidate {
                    column: c.name.clone(),
                    rank: i as u32 + 1,
                    recommended: i == 0 && (!not_version || class < 2 || !not_indexed),
                    reason: reasons.join(", "),
                }
            })
            .collect()
    }

    /// Incremental by the recommended cursor when there is one, else snapshot.
    pub fn recommended_load(&self) -> LoadRecommendation {
        match self.timestamp_candidates().into_iter().find(|c| c.recommended) {
            Some(candidate) => LoadRecommendation::Incremental {
                cursor: candidate.column,
            },
            None => LoadRecommendation::Snapshot,
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};

    use super::*;
    use crate::contract::{ColumnInfo, TableKind, TableRef};
    use crate::type_mapping::{Confidence, TypeMapping};

    fn column(name: &str, ordinal: u32, bigquery: BigQueryType, indexed: bool, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            ordinal,
            source_type: "x".into(),
            nullable,
            default: None,
            primary_key_position: None,
            indexed,
            mapping: TypeMapping {
                arrow: DataType::Timestamp(TimeUnit::Microsecond, None),
                bigquery,
                repeated: false,
                confidence: Confidence::High,
                warnings: vec![],
            },
        }
    }

    fn table(columns: Vec<ColumnInfo>) -> TableDescription {
        TableDescription {
            table: TableRef {
                schema: "s".into(),
                name: "t".into(),
            },
            kind: TableKind::Table,
            columns,
            estimated_rows: None,
        }
    }

    #[test]
    fn updated_at_beats_created_at_and_indexed_beats_plain() {
        let t = table(vec![
            column("id", 1, BigQueryType::Int64, true, false),
            column("shipped", 2, BigQueryType::Date, false, true),
            column("created_at", 3, BigQueryType::Timestamp, true, false),
            column("Updated_At", 4, BigQueryType::Timestamp, false, true),
            column("event_time", 5, BigQueryType::Datetime, true, true),
        ]);
        let names: Vec<_> = t
            .timestamp_candidates()
            .into_iter()
            .map(|c| (c.column, c.recommended))
            .collect();
        assert_eq!(
            names,
            vec![
                ("Updated_At".into(), true),
                ("created_at".into(), false),
                ("event_time".into(), false),
                ("shipped".into(), false)
            ]
        );
        assert_eq!(
            t.recommended_load(),
            LoadRecommendation::Incremental {
                cursor: "Updated_At".into()
            }
        );
    }

    #[test]
    fn an_unindexed_anonymous_timestamp_is_not_recommended() {
        let t = table(vec![column("happened", 1, BigQueryType::Timestamp, false, true)]);
        assert!(!t.timestamp_candidates()[0].recommended);
        assert_eq!(t.recommended_load(), LoadRecommendation::Snapshot);
        let indexed = table(vec![column("happened", 1, BigQueryType::Timestamp, true, true)]);
        assert_eq!(indexed.recommended_load().describe(), "INCREMENTAL BY happened");
    }

    #[test]
    fn a_sql_server_row_version_is_offered_first() {
        let mut version = column("ver", 3, BigQueryType::Int64, false, false);
        version.source_type = "rowversion".into();
        let t = table(vec![
            column("id", 1, BigQueryType::Int64, true, false),
            column("updated_at", 2, BigQueryType::Datetime, true, false),
            version,
        ]);
        let candidates = t.timestamp_candidates();
        let names: Vec<_> = candidates.iter().map(|c| (c.column.as_str(), c.recommended)).collect();
        assert_eq!(names, [("ver", true), ("updated_at", false)]);
        assert!(candidates[0].reason.contains("row version"), "{}", candidates[0].reason);
    }
}
