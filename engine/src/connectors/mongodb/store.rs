//! One database's collections as a document [`Store`]: `listCollections`,
//! counts and sizes from `$collStats` (or `estimatedDocumentCount` where
//! that is not allowed), samples by `$sample`, reads by `find` with the
//! scan's filter, projection and limit pushed down ([`super::pushdown`]).

use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use mongodb::Collection;
use mongodb::bson::{Bson, Document as BsonDocument, doc};
use mongodb::options::FindOptions;

use super::client::Connection;
use super::errors::source_error;
use super::pushdown::{self, Find};
use super::values;
use crate::connectors::documents::{ColumnSpec, Document, KeyField, Pages, Shape, Store, Target, Value};
use crate::contract::{ScanRequest, SourceError, TableDescription, TableInfo, TableKind, TableRef};

pub(super) struct MongoStore {
    pub(super) connection: Arc<Connection>,
    pub(super) database: String,
    /// Documents per `find`/`getMore` batch and per page.
    pub(super) batch_size: u32,
}

impl MongoStore {
    async fn collection(&self, name: &str) -> Result<Collection<BsonDocument>, SourceError> {
        Ok(self
            .connection
            .client()
            .await?
            .database(&self.database)
            .collection(name))
    }

    /// Count and size from `$collStats` (needs the `collStats` action),
    /// else the count from `estimatedDocumentCount`, else nothing.
    async fn statistics(&self, name: &str) -> Result<(Option<i64>, Option<i64>), SourceError> {
        let collection = self.collection(name).await?;
        let pipeline = vec![doc! { "$collStats": { "storageStats": {} } }];
        if let Ok(cursor) = collection.aggregate(pipeline).await
            && let Ok(stats) = cursor.try_collect::<Vec<_>>().await
            && let Some(storage) = stats.first().and_then(|s| s.get_document("storageStats").ok())
        {
            return Ok((number(storage.get("count")), number(storage.get("size"))));
        }
        let count = collection.estimated_document_count().await.ok();
        Ok((count.and_then(|c| i64::try_from(c).ok()), None))
    }

    /// The `find` a scan sends, as EXPLAIN shows it.
    fn find_text(&self, table: &str, find: &Find) -> String {
        let mut text = format!("find {}.{table} filter {}", self.database, find.filter);
        if let Some(p) = &find.projection {
            text.push_str(&format!(" projection {p}"));
        }
        if let Some(s) = &find.sort {
            text.push_str(&format!(" sort {s}"));
        }
        if let Some(l) = find.limit {
            text.push_str(&format!(" limit {l}"));
        }
        text.push_str(&format!(" batchSize {}", self.batch_size));
        text
    }
}

fn number(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) if f.is_finite() => Some(*f as i64),
        _ => None,
    }
}

/// The `_id` column: integer or text when every sampled `_id` is one
/// (ObjectIds are text), JSON otherwise.
fn id_key(sample: &[Document]) -> KeyField {
    let ids: Vec<&Value> = sample.iter().filter_map(|d| d.fields.get("_id")).collect();
    let target = if !ids.is_empty() && ids.iter().all(|v| matches!(v, Value::Int(_))) {
        Target::Int
    } else if ids.iter().all(|v| matches!(v, Value::String(_))) {
        Target::String
    } else {
        Target::Json
    };
    KeyField {
        name: "_id".to_owned(),
        spec: ColumnSpec::new(target),
        detail: "mongodb _id".to_owned(),
        nullable: false,
    }
}

#[async_trait]
impl Store for MongoStore {
    fn schema(&self) -> String {
        self.database.clone()
    }

    async fn tables(&self) -> Result<Vec<TableInfo>, SourceError> {
        let db = self.connection.client().await?.database(&self.database);
        let specs: Vec<_> = db
            .list_collections()
            .await
            .map_err(|e| source_error(e, &self.database))?
            .try_collect()
            .await
            .map_err(|e| source_error(e, &self.database))?;
        let mut tables = Vec::new();
        for spec in specs {
            if spec.name.starts_with("system.") {
                continue;
            }
            let view = matches!(spec.collection_type, mongodb::results::CollectionType::View);
            let (estimated_rows, size_bytes) = if view {
                (None, None)
            } else {
                self.statistics(&spec.name).await?
            };
            tables.push(TableInfo {
                table: TableRef {
                    schema: self.database.clone(),
                    name: spec.name,
                },
                kind: if view { TableKind::View } else { TableKind::Table },
                estimated_rows,
                size_bytes,
                files: None,
                last_modified: None,
            });
        }
        tables.sort_by(|a, b| a.table.name.cmp(&b.table.name));
        Ok(tables)
    }

    async fn sample(&self, table: &str, n: usize) -> Result<(Vec<Document>, Shape), SourceError> {
        let size = i64::try_from(n).unwrap_or(i64::MAX);
        let what = format!("{}.{table}", self.database);
        let docs: Vec<BsonDocument> = self
            .collection(table)
            .await?
            .aggregate(vec![doc! { "$sample": { "size": size } }])
            .await
            .map_err(|e| source_error(e, &what))?
            .try_collect()
            .await
            .map_err(|e| source_error(e, &what))?;
        let sample: Vec<Document> = docs.iter().map(values::document).collect();
        let shape = Shape {
            key: vec![id_key(&sample)],
            text_scalars: false,
            warnings: vec![],
        };
        Ok((sample, shape))
    }

    fn read(&self, table: &str, description: &TableDescription) -> Pages {
        self.read_request(table, description, &ScanRequest::every_column(description))
    }

    fn read_request(&self, table: &str, description: &TableDescription, request: &ScanRequest) -> Pages {
        let find = pushdown::find(description, request);
        let (connection, database, table) = (self.connection.clone(), self.database.clone(), table.to_owned());
        let what = format!("{}.{table}", self.database);
        let batch_size = self.batch_size.max(1);
        let mut options = FindOptions::default();
        options.batch_size = Some(batch_size);
        options.allow_disk_use = find.sort.as_ref().map(|_| true);
        options.projection = find.projection;
        options.sort = find.sort;
        options.limit = find.limit;
        let filter = find.filter;
        let opened = async move {
            let error_name = what.clone();
            let collection = connection
                .client()
                .await?
                .database(&database)
                .collection::<BsonDocument>(&table);
            let cursor = collection
                .find(filter)
                .with_options(options)
                .await
                .map_err(|e| source_error(e, &what))?;
            let pages = cursor
                .map_err(move |e| source_error(e, &error_name))
                .try_chunks(batch_size as usize)
                .map(|chunk| match chunk {
                    Ok(docs) => Ok(docs.iter().map(values::document).collect()),
                    Err(e) => Err(e.1),
                });
            Ok::<_, SourceError>(pages)
        };
        futures::stream::once(opened).try_flatten().boxed()
    }

    fn read_text(&self, table: &str) -> String {
        self.find_text(table, &Find::default())
    }

    fn read_request_text(&self, table: &str, description: &TableDescription, request: &ScanRequest) -> String {
        self.find_text(table, &pushdown::find(description, request))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn with_id(id: Value) -> Document {
        Document::new("d", BTreeMap::from([("_id".to_owned(), id)]))
    }

    #[test]
    fn the_id_column_follows_the_sampled_ids() {
        let ints = [with_id(Value::Int(1)), with_id(Value::Int(2))];
        assert_eq!(id_key(&ints).spec.target, Target::Int);
        let text = [
            with_id(Value::String("65a1".into())),
            with_id(Value::String("k".into())),
        ];
        assert_eq!(id_key(&text).spec.target, Target::String);
        let mixed = [with_id(Value::Int(1)), with_id(Value::String("k".into()))];
        assert_eq!(id_key(&mixed).spec.target, Target::Json);
        assert_eq!(id_key(&[]).spec.target, Target::String);
        assert!(!id_key(&[]).nullable);
    }
}
