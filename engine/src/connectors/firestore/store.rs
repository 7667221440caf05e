//! Firestore collections as a document [`Store`]: the root collections
//! (`listCollectionIds`) and the collection groups the connection names
//! (`group_<id>`) are the tables; every read is a `runQuery` paged by a
//! cursor after the last document, ordered by `__name__`, or by the
//! window's field then `__name__` when the scan's bounds are pushed into a
//! `where` filter, so pages never skip or repeat a document, equal field
//! values included.

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value as Json, json};

use super::api::Api;
use super::values;
use crate::connectors::documents::{Bound, ColumnSpec, Document, KeyField, Op, Pages, Pushdown, Shape, Store, Target};
use crate::contract::{ScanRequest, SourceError, TableDescription, TableInfo, TableKind, TableRef};

/// The one schema of a Firestore connection.
pub(super) const SCHEMA: &str = "firestore";
/// What a collection group's table name starts with.
pub(super) const GROUP_PREFIX: &str = "group_";
/// The key column of a root collection's table: the document id.
const ID: &str = "_id";
/// The key column of a collection group's table: the document's path.
const PATH: &str = "_path";

pub(super) struct FirestoreStore {
    pub(super) api: Api,
    /// The `collection_groups` option.
    pub(super) groups: Vec<String>,
    pub(super) page_size: u32,
}

/// What a table reads.
#[derive(Debug, Clone, PartialEq)]
struct Collection {
    id: String,
    group: bool,
}

impl Collection {
    fn key(&self) -> &'static str {
        if self.group { PATH } else { ID }
    }

    fn from(&self) -> Json {
        json!([{"collectionId": self.id, "allDescendants": self.group}])
    }
}

/// One `runQuery` read: the query without its cursor, and the field it is
/// ordered by before `__name__`.
#[derive(Debug, Clone)]
struct Query {
    collection: Collection,
    query: Json,
    ordered_by: Option<String>,
    limit: Option<usize>,
    page_size: usize,
}

impl FirestoreStore {
    /// The ids of the root collections, following `nextPageToken`.
    pub(super) async fn collection_ids(&self) -> Result<Vec<String>, SourceError> {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"pageSize": 300});
            if let Some(token) = &token {
                body["pageToken"] = json!(token);
            }
            let answer = self
                .api
                .post(":listCollectionIds", &body)
                .await
                .map_err(|e| e.source_error())?;
            ids.extend(
                answer["collectionIds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.as_str().map(str::to_owned)),
            );
            match answer["nextPageToken"].as_str() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(ids)
    }

    fn collection(&self, table: &str) -> Collection {
        match table.strip_prefix(GROUP_PREFIX) {
            Some(id) if self.groups.iter().any(|g| g == id) => Collection {
                id: id.to_owned(),
                group: true,
            },
            _ => Collection {
                id: table.to_owned(),
                group: false,
            },
        }
    }

    /// What a read with `pushdown` sends Firestore, for EXPLAIN.
    fn query_text(&self, table: &str, pushdown: &Pushdown) -> String {
        let query = self.query(table, pushdown);
        let limit = query.limit.map(|l| format!(", limit {l}")).unwrap_or_default();
        format!("runQuery {} in pages of {}{limit}", query.query, query.page_size)
    }

    /// The query of a scan with what of `pushdown` Firestore evaluates:
    /// the bounds on one field (the first bound's) as a `where` filter,
    /// the selected fields and an unfiltered scan's limit.
    fn query(&self, table: &str, pushdown: &Pushdown) -> Query {
        let collection = self.collection(table);
        let key = collection.key();
        let field = pushdown
            .bounds
            .iter()
            .find(|b| b.field != key && values::encode(&b.value).is_some())
            .map(|b| b.field.clone());
        let mut query = json!({"from": collection.from()});
        let mut order = vec![];
        if let Some(field) = &field {
            let filters: Vec<Json> = pushdown
                .bounds
                .iter()
                .filter(|b| &b.field == field)
                .filter_map(field_filter)
                .collect();
            query["where"] = match filters.as_slice() {
                [one] => one.clone(),
                _ => json!({"compositeFilter": {"op": "AND", "filters": filters}}),
            };
            order.push(json!({"field": {"fieldPath": field_path(field)}, "direction": "ASCENDING"}));
        }
        order.push(json!({"field": {"fieldPath": "__name__"}, "direction": "ASCENDING"}));
        query["orderBy"] = Json::Array(order);
        if let Some(fields) = &pushdown.fields {
            let mut paths: Vec<Json> = fields
                .iter()
                .filter(|f| f.as_str() != key)
                .map(|f| json!({"fieldPath": field_path(f)}))
                .collect();
            if paths.is_empty() {
                paths.push(json!({"fieldPath": "__name__"}));
            }
            query["select"] = json!({"fields": paths});
        }
        Query {
            collection,
            query,
            ordered_by: field,
            limit: pushdown.limit,
            page_size: self.page_size as usize,
        }
    }
}

/// `field op value` as a Firestore `fieldFilter`.
fn field_filter(bound: &Bound) -> Option<Json> {
    let op = match bound.op {
        Op::Lt => "LESS_THAN",
        Op::LtEq => "LESS_THAN_OR_EQUAL",
        Op::Gt => "GREATER_THAN",
        Op::GtEq => "GREATER_THAN_OR_EQUAL",
        Op::Eq => "EQUAL",
    };
    Some(json!({"fieldFilter": {
        "field": {"fieldPath": field_path(&bound.field)},
        "op": op,
        "value": values::encode(&bound.value)?,
    }}))
}

/// A top-level field name as a Firestore field path: plain when it is a
/// simple name, else in backquotes.
fn field_path(name: &str) -> String {
    let simple = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if simple {
        name.to_owned()
    } else {
        format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
    }
}

/// The pages of `query`: each a `runQuery` starting after the last
/// document of the one before, until a short page or the limit.
fn pages(api: Api, query: Query) -> Pages {
    // State: the cursor after the last page (`None` before the first), the
    // documents still wanted, and whether the read is over.
    futures::stream::try_unfold((None::<Json>, query.limit, false), move |(cursor, left, done)| {
        let (api, query) = (api.clone(), query.clone());
        async move {
            if done || left == Some(0) {
                return Ok(None);
            }
            let size = left.map_or(query.page_size, |l| l.min(query.page_size));
            let mut body = query.query.clone();
            body["limit"] = json!(size);
            if let Some(cursor) = &cursor {
                body["startAt"] = json!({"values": cursor, "before": false});
            }
            let answer = api
                .post(":runQuery", &json!({"structuredQuery": body}))
                .await
                .map_err(|e| e.source_error())?;
            let raw: Vec<&Json> = answer
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.get("document"))
                .collect();
            let next = raw.last().map(|last| {
                let name = json!({"referenceValue": last["name"]});
                match &query.ordered_by {
                    Some(field) => json!([last["fields"][field], name]),
                    None => json!([name]),
                }
            });
            let documents = raw
                .iter()
                .map(|d| document(&query.collection, &api.root, d))
                .collect::<Result<Vec<_>, _>>()?;
            let read = documents.len();
            let left = left.map(|l| l - read.min(l));
            Ok(Some((documents, (next, left, read < size))))
        }
    })
    .boxed()
}

/// One raw document with its key field.
fn document(collection: &Collection, root: &str, raw: &Json) -> Result<Document, SourceError> {
    let name = raw["name"].as_str().unwrap_or_default();
    let path = name.strip_prefix(root).map_or(name, |p| p.trim_start_matches('/'));
    let mut fields = values::fields(&raw["fields"]).map_err(|message| SourceError::Query {
        code: Some("58000".into()),
        message: format!("cannot read Firestore document {path}: {message}"),
    })?;
    let key = if collection.group {
        path
    } else {
        path.rsplit('/').next().unwrap_or(path)
    };
    fields.insert(
        collection.key().to_owned(),
        crate::connectors::documents::Value::String(key.to_owned()),
    );
    Ok(Document::new(path, fields))
}

#[async_trait]
impl Store for FirestoreStore {
    fn schema(&self) -> String {
        SCHEMA.to_owned()
    }

    async fn tables(&self) -> Result<Vec<TableInfo>, SourceError> {
        let ids = self.collection_ids().await?;
        let groups = self.groups.iter().map(|g| format!("{GROUP_PREFIX}{g}"));
        Ok(ids
            .into_iter()
            .chain(groups)
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
        let pushdown = Pushdown {
            limit: Some(n),
            ..Pushdown::default()
        };
        let query = self.query(table, &pushdown);
        let collection = query.collection.clone();
        let mut documents = Vec::new();
        let mut pages = pages(self.api.clone(), query);
        while let Some(page) = pages.next().await {
            documents.extend(page?);
        }
        let (detail, name) = if collection.group {
            ("document path", PATH)
        } else {
            ("document id", ID)
        };
        Ok((
            documents,
            Shape {
                key: vec![KeyField {
                    name: name.to_owned(),
                    spec: ColumnSpec::new(Target::String),
                    detail: detail.into(),
                    nullable: false,
                }],
                text_scalars: false,
                warnings: vec![],
            },
        ))
    }

    fn read(&self, table: &str, _description: &TableDescription) -> Pages {
        pages(self.api.clone(), self.query(table, &Pushdown::default()))
    }

    fn read_text(&self, table: &str) -> String {
        self.query_text(table, &Pushdown::default())
    }

    fn read_request(&self, table: &str, description: &TableDescription, request: &ScanRequest) -> Pages {
        pages(self.api.clone(), self.query(table, &Pushdown::of(description, request)))
    }

    fn read_request_text(&self, table: &str, description: &TableDescription, request: &ScanRequest) -> String {
        self.query_text(table, &Pushdown::of(description, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::documents::Value;

    #[test]
    fn field_paths_quote_what_is_not_a_simple_name() {
        assert_eq!(field_path("updated_at"), "updated_at");
        assert_eq!(field_path("2x"), "`2x`");
        assert_eq!(field_path("a.b`c"), "`a.b\\`c`");
    }

    #[test]
    fn a_window_becomes_a_where_filter_ordered_by_its_field_then_name() {
        let bounds = [
            Bound {
                field: "ts".into(),
                op: Op::Gt,
                value: Value::Timestamp(0),
            },
            Bound {
                field: "ts".into(),
                op: Op::LtEq,
                value: Value::Timestamp(1),
            },
        ];
        let filter = field_filter(&bounds[0]).unwrap();
        assert_eq!(filter["fieldFilter"]["op"], "GREATER_THAN");
        assert_eq!(
            filter["fieldFilter"]["value"],
            json!({"timestampValue": "1970-01-01T00:00:00.000000Z"})
        );
        assert!(
            field_filter(&Bound {
                field: "x".into(),
                op: Op::Eq,
                value: Value::Null
            })
            .is_none()
        );
    }
}
