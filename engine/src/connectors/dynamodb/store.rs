//! DynamoDB tables as a document [`Store`]: `ListTables`, `DescribeTable`
//! for the key, and `Scan` in `segments` parallel segments (each with one
//! page in flight), pages merged as they come.

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value as Json, json};

use super::api::Api;
use super::items;
use crate::connectors::documents::{ColumnSpec, Document, KeyField, Pages, Shape, Store, Target};
use crate::sources::{SourceError, TableDescription, TableInfo, TableKind, TableRef, closest};

/// The one schema of a DynamoDB connection.
pub(super) const SCHEMA: &str = "dynamodb";

pub(super) struct DynamoStore {
    pub(super) api: Api,
    /// The `tables` option: only these tables, when given.
    pub(super) only: Option<Vec<String>>,
    pub(super) segments: u32,
    pub(super) page_size: u32,
    pub(super) consistent_read: bool,
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

    /// The key attributes of `table`: partition key, then sort key.
    async fn key(&self, table: &str) -> Result<Vec<KeyField>, SourceError> {
        let answer = self
            .api
            .call("DescribeTable", &json!({"TableName": table}))
            .await
            .map_err(|e| e.source_error(Some(table)))?;
        let description = &answer["Table"];
        let types = description["AttributeDefinitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut key: Vec<(u8, KeyField)> = Vec::new();
        for element in description["KeySchema"].as_array().into_iter().flatten() {
            let name = element["AttributeName"].as_str().unwrap_or_default().to_owned();
            let role = element["KeyType"].as_str().unwrap_or_default();
            let attribute_type = types
                .iter()
                .find(|t| t["AttributeName"].as_str() == Some(name.as_str()))
                .and_then(|t| t["AttributeType"].as_str())
                .unwrap_or("S");
            let target = match attribute_type {
                "N" => Target::Int,
                "B" => Target::Bytes,
                _ => Target::String,
            };
            let (order, detail) = if role == "HASH" {
                (0, "partition key")
            } else {
                (1, "sort key")
            };
            key.push((
                order,
                KeyField {
                    name,
                    spec: ColumnSpec::new(target),
                    detail: detail.into(),
                    nullable: false,
                },
            ));
        }
        key.sort_by_key(|(order, _)| *order);
        Ok(key.into_iter().map(|(_, k)| k).collect())
    }
}

/// One `Scan` request of a segment.
fn scan_body(table: &str, limit: u32, consistent: bool, segment: Option<(u32, u32)>, start: Option<&Json>) -> Json {
    let mut body = json!({"TableName": table, "Limit": limit, "ConsistentRead": consistent});
    if let Some((segment, total)) = segment {
        body["Segment"] = json!(segment);
        body["TotalSegments"] = json!(total);
    }
    if let Some(start) = start {
        body["ExclusiveStartKey"] = start.clone();
    }
    body
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
            let answer = self
                .api
                .call("Scan", &scan_body(table, limit, false, None, start.as_ref()))
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
        let key: Vec<String> = description.primary_key().into_iter().map(str::to_owned).collect();
        let total = self.segments.max(1);
        let segments = (0..total).map(|segment| {
            let (api, table, key) = (self.api.clone(), table.to_owned(), key.clone());
            let (limit, consistent) = (self.page_size, self.consistent_read);
            let parallel = (total > 1).then_some((segment, total));
            // State: the next page's start key; `None` once the segment ended.
            futures::stream::try_unfold(Some(None::<Json>), move |state| {
                let (api, table, key) = (api.clone(), table.clone(), key.clone());
                async move {
                    let Some(start) = state else { return Ok(None) };
                    let body = scan_body(&table, limit, consistent, parallel, start.as_ref());
                    let answer = api
                        .call("Scan", &body)
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
        });
        futures::stream::select_all(segments).boxed()
    }

    fn read_text(&self, table: &str) -> String {
        format!(
            "Scan {table} (TotalSegments {}, Limit {}, ConsistentRead {})",
            self.segments, self.page_size, self.consistent_read
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
