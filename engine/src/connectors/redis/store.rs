//! A Redis database as a document [`Store`]: keys found with `SCAN ...
//! MATCH pattern COUNT n` (never `KEYS`), their types and values read by
//! pipelines, one page of keys at a time.

use std::collections::HashSet;

use async_trait::async_trait;
use futures::StreamExt;
use redis::Value as Reply;
use redis::aio::MultiplexedConnection;

use super::endpoint::{Endpoint, source_error};
use super::kinds::{KEY, KeyKind, text};
use super::tables::{PatternTable, parse};
use crate::connectors::documents::{Document, Pages, Shape, Store};
use crate::contract::{SourceError, TableDescription, TableInfo, TableKind, TableRef};

pub(super) struct RedisStore {
    pub(super) endpoint: Endpoint,
    /// The `tables` option as given.
    pub(super) tables: String,
    /// The `COUNT` of each `SCAN`.
    pub(super) scan_count: usize,
}

impl RedisStore {
    fn tables(&self) -> Result<Vec<PatternTable>, SourceError> {
        parse(&self.tables).map_err(|message| SourceError::Query {
            code: Some("22023".into()),
            message,
        })
    }

    fn pattern(&self, table: &str) -> Result<String, SourceError> {
        let tables = self.tables()?;
        tables
            .iter()
            .find(|t| t.name == table)
            .map(|t| t.pattern.clone())
            .ok_or_else(|| SourceError::NotFound {
                kind: "table",
                name: table.to_owned(),
                nearby: tables.into_iter().map(|t| t.name).collect(),
            })
    }
}

/// A `SCAN` over one pattern: each key once, however often the server
/// returns it (SCAN may repeat keys while the key space changes).
struct KeyScan {
    pattern: String,
    count: usize,
    cursor: u64,
    done: bool,
    seen: HashSet<Vec<u8>>,
}

impl KeyScan {
    fn new(pattern: String, count: usize) -> Self {
        Self {
            pattern,
            count,
            cursor: 0,
            done: false,
            seen: HashSet::new(),
        }
    }

    /// The next keys not returned before; empty when the scan has ended
    /// (or this step found only repeats: check `done`).
    async fn next(&mut self, connection: &mut MultiplexedConnection) -> Result<Vec<Vec<u8>>, SourceError> {
        let (cursor, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(self.cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(self.count)
            .query_async(connection)
            .await
            .map_err(|e| source_error(&e))?;
        self.cursor = cursor;
        self.done = cursor == 0;
        Ok(keys.into_iter().filter(|k| self.seen.insert(k.clone())).collect())
    }
}

/// Where a read is: its connection and scan.
struct ReadState {
    connection: Option<MultiplexedConnection>,
    scan: KeyScan,
    kind: KeyKind,
}

/// The types of `keys`, by one pipeline of `TYPE`.
async fn types(connection: &mut MultiplexedConnection, keys: &[Vec<u8>]) -> Result<Vec<String>, SourceError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("TYPE").arg(key);
    }
    pipe.query_async(connection).await.map_err(|e| source_error(&e))
}

/// The documents of `keys` (with their `types`) in a table of `table`
/// kind, by one pipeline of reads; keys that vanished are left out.
async fn documents(
    connection: &mut MultiplexedConnection,
    keys: &[Vec<u8>],
    types: &[String],
    table: KeyKind,
) -> Result<Vec<Document>, SourceError> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut reads = Vec::new();
    for (key, type_name) in keys.iter().zip(types) {
        if type_name == "none" {
            continue;
        }
        if let Some(kind) = KeyKind::parse(type_name) {
            kind.read(&mut pipe, key);
        } else {
            pipe.cmd("TYPE").arg(key);
        }
        reads.push((key, type_name));
    }
    if reads.is_empty() {
        return Ok(Vec::new());
    }
    let replies: Vec<Reply> = pipe.query_async(connection).await.map_err(|e| source_error(&e))?;
    let mut out = Vec::new();
    for ((key, type_name), reply) in reads.into_iter().zip(replies) {
        let bad = |message: String| SourceError::Query {
            code: Some("58000".into()),
            message: format!(
                "cannot read Redis key {}: {message}",
                crate::contract::excerpt(&text(key))
            ),
        };
        if let Reply::ServerError(e) = &reply {
            // The key changed type between TYPE and the read: a write raced the scan.
            return Err(bad(e.to_string()));
        }
        match KeyKind::parse(type_name) {
            Some(kind) if kind == table => out.extend(kind.documents(key, reply).map_err(bad)?.unwrap_or_default()),
            Some(kind) => out.extend(kind.foreign(key, reply, table).map_err(bad)?),
            None => {
                let mut doc = Document::new(
                    text(key),
                    [(KEY.to_owned(), crate::connectors::documents::Value::String(text(key)))].into(),
                );
                doc.foreign = Some(format!(
                    "the key is a {type_name}, which Sluice does not read; table holds {}",
                    table.plural()
                ));
                out.push(doc);
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl Store for RedisStore {
    fn schema(&self) -> String {
        format!("db{}", self.endpoint.database())
    }

    async fn tables(&self) -> Result<Vec<TableInfo>, SourceError> {
        let tables = self.tables()?;
        self.endpoint.connect().await?;
        Ok(tables
            .into_iter()
            .map(|t| TableInfo {
                table: TableRef {
                    schema: self.schema(),
                    name: t.name,
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
        let mut connection = self.endpoint.connect().await?;
        let mut scan = KeyScan::new(self.pattern(table)?, self.scan_count);
        let (mut keys, mut kinds) = (Vec::new(), Vec::new());
        while keys.len() < n && !scan.done {
            let mut found = scan.next(&mut connection).await?;
            found.truncate(n - keys.len());
            kinds.extend(types(&mut connection, &found).await?);
            keys.extend(found);
        }
        let count = |kind: KeyKind| kinds.iter().filter(|t| KeyKind::parse(t) == Some(kind)).count();
        let kind = KeyKind::ALL
            .into_iter()
            .max_by_key(|k| (count(*k), std::cmp::Reverse(KeyKind::ALL.iter().position(|x| x == k))))
            .unwrap_or(KeyKind::Hash);
        let mut warnings = Vec::new();
        let others = kinds
            .iter()
            .filter(|t| t.as_str() != "none" && KeyKind::parse(t) != Some(kind))
            .count();
        if keys.is_empty() {
            warnings.push("no key matches the pattern: the table is read as hashes".to_owned());
        } else if others > 0 {
            warnings.push(format!(
                "{others} of {} sampled keys are not {}: their rows follow on_type_mismatch",
                keys.len(),
                kind.plural()
            ));
        }
        let docs = documents(&mut connection, &keys, &kinds, kind).await?;
        Ok((docs, kind.shape(warnings)))
    }

    fn read(&self, table: &str, description: &TableDescription) -> Pages {
        let kind = description
            .columns
            .iter()
            .find(|c| c.name == KEY)
            .and_then(|c| KeyKind::of_source_type(&c.source_type));
        let start = match (self.pattern(table), kind) {
            (Ok(pattern), Some(kind)) => Ok((pattern, kind)),
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(SourceError::Query {
                code: Some("XX000".into()),
                message: format!("the description of Redis table {table} has no {KEY} column naming its kind"),
            }),
        };
        let endpoint = self.endpoint.clone();
        let count = self.scan_count;
        let state = start.map(|(pattern, kind)| ReadState {
            connection: None,
            scan: KeyScan::new(pattern, count),
            kind,
        });
        futures::stream::try_unfold(Some(state), move |state| {
            let endpoint = endpoint.clone();
            async move {
                let Some(state) = state else { return Ok(None) };
                let mut state = state?;
                let mut connection = match state.connection.take() {
                    Some(c) => c,
                    None => endpoint.connect().await?,
                };
                while !state.scan.done {
                    let keys = state.scan.next(&mut connection).await?;
                    if keys.is_empty() {
                        continue;
                    }
                    let kinds = types(&mut connection, &keys).await?;
                    let docs = documents(&mut connection, &keys, &kinds, state.kind).await?;
                    state.connection = Some(connection);
                    return Ok(Some((docs, Some(Ok(state)))));
                }
                Ok(None)
            }
        })
        .boxed()
    }

    fn read_text(&self, table: &str) -> String {
        let pattern = self.pattern(table).unwrap_or_default();
        format!(
            "SCAN cursor MATCH {pattern} COUNT {} with pipelined TYPE and reads per page of keys",
            self.scan_count
        )
    }
}
