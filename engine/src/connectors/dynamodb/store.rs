//! DynamoDB tables as a document [`Store`]: `ListTables`, `DescribeTable`
//! for the key, and `Scan` in `segments` parallel segments (each with one
//! page in flight), pages merged as they come.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value as Json, json};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::api::Api;
use super::expression::{self, Expressions, IndexPartitions, KeyAttribute, Read, TableKeys};
use super::items;
use crate::connectors::documents::{ColumnSpec, Document, KeyField, Pages, Pushdown, Shape, Store, Target};
use crate::contract::{ScanRequest, SourceError, TableDescription, TableInfo, TableKind, TableRef, closest};

/// The one schema of a DynamoDB connection.
pub(super) const SCHEMA: &str = "dynamodb";

pub(super) struct DynamoStore {
    pub(super) api: Api,
    /// The `tables` option: only these tables, when given.
    pub(super) only: Option<Vec<String>>,
    pub(super) segments: u32,
    pub(super) page_size: u32,
    pub(super) consistent_read: bool,
    /// The `index_partitions` option.
    pub(super) index_partitions: Vec<IndexPartitions>,
    /// What `DescribeTable` said of each table last, for EXPLAIN.
    pub(super) described: Described,
}

impl DynamoStore {
    /// Every table name, following `LastEvaluatedTableName`.
    pub(super) async fn table_names(&self) -> Result<Vec<String>, SourceError> {
        let mut names = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let mut body = json!({"Limit": 100});
            if let Some(start) = &start {
                body["ExclusiveStartTableName"] = json!(start);
            }
            let answer = self
                .api
                .call("ListTables", &body)
                .await
                .map_err(|e| e.source_error(None))?;
            names.extend(
                answer["TableNames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_owned)),
            );
            match answer["LastEvaluatedTableName"].as_str() {
                Some(next) => start = Some(next.to_owned()),
                None => break,
            }
        }
        if let Some(only) = &self.only {
            names.retain(|n| only.contains(n));
        }
        Ok(names)
    }

    /// The table's keys and indexes (`DescribeTable`), remembered for
    /// EXPLAIN.
    async fn keys(&self, table: &str) -> Result<TableKeys, SourceError> {
        let keys = describe(&self.api, table).await?;
        remember(&self.described, table, &keys);
        Ok(keys)
    }

    /// The key attributes of `table`: partition key, then sort key.
    async fn key(&self, table: &str) -> Result<Vec<KeyField>, SourceError> {
        let keys = self.keys(table).await?;
        let Some(own) = keys.schemas.first() else {
            return Ok(vec![]);
        };
        let field = |key: &KeyAttribute, detail: &str| KeyField {
            name: key.name.clone(),
            spec: ColumnSpec::new(match key.kind.as_str() {
                "N" => Target::Int,
                "B" => Target::Bytes,
                _ => Target::String,
            }),
            detail: detail.into(),
            nullable: false,
        };
        Ok(std::iter::once(field(&own.partition, "partition key"))
            .chain(own.sort.iter().map(|k| field(k, "sort key")))
            .collect())
    }

    /// How a scan with `request` reads a table with `keys`.
    fn read_of(&self, description: &TableDescription, request: &ScanRequest, keys: &TableKeys) -> Vec<Read> {
        expression::plan_reads(
            description,
            &Pushdown::of(description, request),
            keys,
            self.consistent_read,
            self.partitions_of(&description.table.name),
        )
    }

    /// The `index_partitions` entry of `table`.
    fn partitions_of(&self, table: &str) -> Option<&IndexPartitions> {
        self.index_partitions.iter().find(|p| p.table == table)
    }
}

/// `DescribeTable`'s keys of `table`.
async fn describe(api: &Api, table: &str) -> Result<TableKeys, SourceError> {
    let answer = api
        .call("DescribeTable", &json!({"TableName": table}))
        .await
        .map_err(|e| e.source_error(Some(table)))?;
    Ok(TableKeys::from_description(&answer["Table"]))
}

fn remember(described: &Described, table: &str, keys: &TableKeys) {
    if let Ok(mut described) = described.lock() {
        described.insert(table.to_owned(), keys.clone());
    }
}

/// The keys of the tables described last, by name.
pub(super) type Described = Arc<Mutex<HashMap<String, TableKeys>>>;

/// The pages of one `Scan` segment or one `Query`: `body` sent again with
/// each `LastEvaluatedKey` as `ExclusiveStartKey` until there is none.
fn pages(api: Api, operation: &'static str, table: String, key: Vec<String>, body: Json) -> Pages {
    // State: the next page's start key; `None` once the read ended.
    futures::stream::try_unfold(Some(None::<Json>), move |state| {
        let (api, table, key, mut body) = (api.clone(), table.clone(), key.clone(), body.clone());
        async move {
            let Some(start) = state else { return Ok(None) };
            if let Some(start) = start {
                body["ExclusiveStartKey"] = start;
            }
            let answer = api
                .call(operation, &body)
                .await
                .map_err(|e| e.source_error(Some(&table)))?;
            let docs = documents(&table, &answer, &key)?;
            let next = match answer.get("LastEvaluatedKey") {
                Some(next) if !next.is_null() => Some(Some(next.clone())),
                _ => None,
            };
            Ok(Some((docs, next)))
        }
    })
    .boxed()
}

/// The items of one `Scan` answer as documents.
fn documents(table: &str, answer: &Json, key: &[String]) -> Result<Vec<Document>, SourceError> {
    answer["Items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            items::document(item, key).map_err(|message| SourceError::Query {
                code: Some("58000".into()),
                message: format!("cannot read an item of DynamoDB table {table}: {message}"),
            })
        })
        .collect()
}

#[async_trait]
impl Store for DynamoStore {
    fn schema(&self) -> String {
        SCHEMA.to_owned()
    }

    async fn tables(&self) -> Result<Vec<TableInfo>, SourceError> {
        Ok(self
            .table_names()
            .await?
            .into_iter()
            .map(|name| TableInfo {
                table: TableRef {
                    schema: SCHEMA.to_owned(),
                    name,
                },
                kind: TableKind::Table,
                estimated_rows: None,
                size_bytes: None,
                files: None,
                last_modified: None,
            })
            .collect())
    }

    async fn sample(&self, table: &str, n: usize) -> Result<(Vec<Document>, Shape), SourceError> {
        let key = self.key(table).await?;
        let names: Vec<String> = key.iter().map(|k| k.name.clone()).collect();
        let mut docs = Vec::new();
        let mut start: Option<Json> = None;
        while docs.len() < n {
            let limit = u32::try_from(n - docs.len()).unwrap_or(u32::MAX).min(1000);
            let mut body = json!({"TableName": table, "Limit": limit, "ConsistentRead": false});
            if let Some(start) = &start {
                body["ExclusiveStartKey"] = start.clone();
            }
            let answer = self
                .api
                .call("Scan", &body)
                .await
                .map_err(|e| e.source_error(Some(table)))?;
            docs.extend(documents(table, &answer, &names)?);
            match answer.get("LastEvaluatedKey") {
                Some(next) if !next.is_null() => start = Some(next.clone()),
                _ => break,
            }
        }
        docs.truncate(n);
        Ok((
            docs,
            Shape {
                key,
                text_scalars: false,
                warnings: vec![],
            },
        ))
    }

    fn read(&self, table: &str, description: &TableDescription) -> Pages {
        self.read_request(table, description, &ScanRequest::every_column(description))
    }

    fn read_text(&self, table: &str) -> String {
        self.scan_text(table, &Expressions::default(), self.segments)
    }

    /// [`Store::read_segments`] in the connection's `segments`.
    fn read_request(&self, table: &str, description: &TableDescription, request: &ScanRequest) -> Pages {
        self.read_segments(table, description, request, self.segments)
    }

    fn reads_in_segments(&self) -> bool {
        true
    }

    /// A `Query` when the scan's filter fixes a partition key (one per
    /// listed partition value of an index whose sort key it bounds, read
    /// one after the other), else a `Scan` in `parts` parallel segments
    /// (each with one page in flight, pages merged as they come), with the
    /// rest of the filter's bounds as the filter expression.
    ///
    /// A request for one `segment` (a cluster task's) reads only that one
    /// of its `total`; a `Query` is then read by segment 0 alone.
    fn read_segments(&self, table: &str, description: &TableDescription, request: &ScanRequest, parts: u32) -> Pages {
        let key: Vec<String> = description.primary_key().into_iter().map(str::to_owned).collect();
        let (api, table, described) = (self.api.clone(), table.to_owned(), self.described.clone());
        let (description, pushdown) = (description.clone(), Pushdown::of(description, request));
        let segments = match request.segment {
            Some(segment) => Segments {
                read: segment.index..segment.index + 1,
                total: segment.total.max(1),
            },
            None => Segments {
                read: 0..parts.max(1),
                total: parts.max(1),
            },
        };
        let (limit, consistent) = (self.page_size, self.consistent_read);
        let partitions = self.partitions_of(&table).cloned();
        let opened = async move {
            let keys = describe(&api, &table).await?;
            remember(&described, &table, &keys);
            let body = json!({"TableName": table, "Limit": limit});
            let reads = expression::plan_reads(&description, &pushdown, &keys, consistent, partitions.as_ref());
            let streams: Vec<Pages> = reads
                .into_iter()
                .map(|read| read_pages(&api, &table, &key, body.clone(), read, &segments, consistent))
                .collect();
            Ok::<_, SourceError>(futures::stream::iter(streams).flatten().boxed())
        };
        futures::stream::once(opened).try_flatten().boxed()
    }

    fn read_request_text(&self, table: &str, description: &TableDescription, request: &ScanRequest) -> String {
        self.read_segments_text(table, description, request, self.segments)
    }

    fn read_segments_text(
        &self,
        table: &str,
        description: &TableDescription,
        request: &ScanRequest,
        parts: u32,
    ) -> String {
        let described = self.described.lock().ok().and_then(|d| d.get(table).cloned());
        let Some(keys) = described else {
            let read = self.read_of(description, request, &TableKeys { schemas: vec![] });
            let [Read::Scan(expressions)] = read.as_slice() else {
                unreachable!("without keys a read is a scan")
            };
            return format!(
                "{} (a Query instead when DescribeTable shows a key the filter fixes)",
                self.scan_text(table, expressions, parts)
            );
        };
        let texts: Vec<String> = self
            .read_of(description, request, &keys)
            .into_iter()
            .map(|read| match read {
                Read::Scan(expressions) => self.scan_text(table, &expressions, parts),
                Read::Query { index, expressions, .. } => {
                    let on = index.map(|i| format!(" index {i}")).unwrap_or_default();
                    format!("Query {table}{on} (Limit {}, {})", self.page_size, expressions.text())
                }
            })
            .collect();
        texts.join("; then ")
    }
}

/// Which `Scan` segments a read reads, of how many.
struct Segments {
    read: std::ops::Range<u32>,
    total: u32,
}

/// The pages of one read: a `Scan` in `segments` read in parallel, or a
/// `Query` (read only by a read that includes segment 0); `body` has the
/// table and page size.
fn read_pages(
    api: &Api,
    table: &str,
    key: &[String],
    mut body: Json,
    read: Read,
    segments: &Segments,
    consistent: bool,
) -> Pages {
    let total = segments.total;
    match read {
        Read::Scan(expressions) => {
            body["ConsistentRead"] = json!(consistent);
            expressions.add_to(&mut body);
            let segments = segments.read.clone().map(|segment| {
                let mut body = body.clone();
                if total > 1 {
                    body["Segment"] = json!(segment);
                    body["TotalSegments"] = json!(total);
                }
                pages(api.clone(), "Scan", table.to_owned(), key.to_vec(), body)
            });
            futures::stream::select_all(segments).boxed()
        }
        Read::Query { .. } if !segments.read.contains(&0) => futures::stream::empty().boxed(),
        Read::Query {
            index,
            global,
            expressions,
        } => {
            if let Some(index) = index {
                body["IndexName"] = json!(index);
            }
            if !global {
                body["ConsistentRead"] = json!(consistent);
            }
            expressions.add_to(&mut body);
            pages(api.clone(), "Query", table.to_owned(), key.to_vec(), body)
        }
    }
}

impl DynamoStore {
    fn scan_text(&self, table: &str, expressions: &Expressions, segments: u32) -> String {
        let filter = Some(expressions.text())
            .filter(|t| !t.is_empty())
            .map(|t| format!(", {t}"))
            .unwrap_or_default();
        format!(
            "Scan {table} (TotalSegments {}, Limit {}, ConsistentRead {}{filter})",
            segments.max(1),
            self.page_size,
            self.consistent_read
        )
    }
}

/// The table names `tables` lists, or `NotFound` naming the existing ones.
pub(super) fn check_listed(only: &[String], existing: &[String]) -> Result<(), SourceError> {
    match only.iter().find(|t| !existing.contains(t)) {
        Some(missing) => Err(SourceError::NotFound {
            kind: "table",
            name: missing.clone(),
            nearby: closest(missing, existing.to_vec()),
        }),
        None => Ok(()),
    }
}
