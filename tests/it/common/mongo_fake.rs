//! A MongoDB test double at the wire level: OP_MSG over TCP, decoded and
//! answered with the `bson` crate (through `mongodb::bson`), serving
//! in-memory collections to the real driver inside `sluice`.
//!
//! No MongoDB server installs from the registries here (the npm and PyPI
//! packages that bundle one download it at run time; `nx-27017` stores
//! documents as JSON and refuses Decimal128 and Timestamp values), so this
//! double stands in. It speaks the handshake (`hello`/`isMaster`), `ping`,
//! `saslStart` (always refused: tests of a good login use no user),
//! `listDatabases`, `listCollections`, `aggregate` with `$sample` and
//! `$collStats`, `count`, `find`/`getMore` with real cursors and batch
//! sizes, `killCursors` and `endSessions`, and records every command it
//! received so tests assert the exact filter, sort and projection sent.
//! `find` evaluates `$eq`, `$gt`, `$gte`, `$lt`, `$lte` and `$and` with
//! MongoDB's type brackets (numbers with numbers, dates with dates, ...).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use mongodb::bson::{Bson, Document, doc};

const OP_MSG: i32 = 2013;

#[derive(Default)]
struct State {
    /// database -> collection -> documents, in insertion order.
    databases: BTreeMap<String, BTreeMap<String, Vec<Document>>>,
    commands: Vec<Document>,
    cursors: HashMap<i64, (String, Vec<Document>)>,
    next_cursor: i64,
    /// Answer `$collStats` with `Unauthorized`, as for a user without the
    /// `collStats` action.
    deny_coll_stats: bool,
}

/// A running double; it stops listening when dropped.
pub struct MongoFake {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stopped: Arc<AtomicBool>,
}

impl MongoFake {
    pub fn start() -> MongoFake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the MongoDB double");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            next_cursor: 1000,
            ..State::default()
        }));
        let stopped = Arc::new(AtomicBool::new(false));
        let (shared, stop) = (state.clone(), stopped.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(AtomicOrdering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        MongoFake { port, state, stopped }
    }

    /// `mongodb://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Adds documents to `db.collection` (creating both).
    pub fn insert(&self, db: &str, collection: &str, documents: Vec<Document>) {
        let mut state = self.state.lock().unwrap();
        state
            .databases
            .entry(db.to_owned())
            .or_default()
            .entry(collection.to_owned())
            .or_default()
            .extend(documents);
    }

    /// Removes the documents of `db.collection` whose `_id` is `id`.
    pub fn delete(&self, db: &str, collection: &str, id: &Bson) {
        let mut state = self.state.lock().unwrap();
        if let Some(docs) = state.databases.get_mut(db).and_then(|d| d.get_mut(collection)) {
            docs.retain(|d| d.get("_id") != Some(id));
        }
    }

    pub fn deny_coll_stats(&self) {
        self.state.lock().unwrap().deny_coll_stats = true;
    }

    /// Every command received so far whose name is `name`, oldest first.
    pub fn commands(&self, name: &str) -> Vec<Document> {
        self.state
            .lock()
            .unwrap()
            .commands
            .iter()
            .filter(|c| c.keys().next().is_some_and(|k| k.eq_ignore_ascii_case(name)))
            .cloned()
            .collect()
    }

    pub fn clear_commands(&self) {
        self.state.lock().unwrap().commands.clear();
    }
}

impl Drop for MongoFake {
    fn drop(&mut self) {
        self.stopped.store(true, AtomicOrdering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Answers one connection's messages until it closes.
fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    loop {
        let mut header = [0u8; 16];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        let int = |i: usize| i32::from_le_bytes(header[i..i + 4].try_into().unwrap());
        let (length, request_id, op_code) = (int(0), int(4), int(12));
        let mut rest = vec![0u8; usize::try_from(length).unwrap_or(0).saturating_sub(16)];
        if stream.read_exact(&mut rest).is_err() {
            return;
        }
        if op_code != OP_MSG {
            return; // The driver speaks OP_MSG only.
        }
        let Some(body) = parse_msg(&rest) else { return };
        let more_to_come = u32::from_le_bytes(rest[0..4].try_into().unwrap()) & 2 != 0;
        let reply = {
            let mut state = state.lock().unwrap();
            state.commands.push(body.clone());
            answer(&mut state, &body)
        };
        if more_to_come {
            continue;
        }
        if stream.write_all(&encode_msg(&reply, request_id)).is_err() {
            return;
        }
    }
}

/// The body of an OP_MSG: section 0, with any document sequences (kind 1)
/// added as arrays.
fn parse_msg(bytes: &[u8]) -> Option<Document> {
    let flags = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let end = bytes.len() - if flags & 1 != 0 { 4 } else { 0 };
    let mut at = 4;
    let mut body = None;
    let mut sequences = Vec::new();
    while at < end {
        let kind = bytes[at];
        at += 1;
        let size = usize::try_from(i32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?)).ok()?;
        if kind == 0 {
            body = Some(Document::from_reader(&bytes[at..at + size]).ok()?);
            at += size;
        } else {
            let section = &bytes[at + 4..at + size];
            let nul = section.iter().position(|b| *b == 0)?;
            let name = String::from_utf8(section[..nul].to_vec()).ok()?;
            let mut docs = Vec::new();
            let mut inner = nul + 1;
            while inner < section.len() {
                let len = usize::try_from(i32::from_le_bytes(section[inner..inner + 4].try_into().ok()?)).ok()?;
                docs.push(Bson::Document(
                    Document::from_reader(&section[inner..inner + len]).ok()?,
                ));
                inner += len;
            }
            sequences.push((name, docs));
            at += size;
        }
    }
    let mut body = body?;
    for (name, docs) in sequences {
        body.insert(name, docs);
    }
    Some(body)
}

fn encode_msg(reply: &Document, response_to: i32) -> Vec<u8> {
    let mut doc = Vec::new();
    reply.to_writer(&mut doc).unwrap();
    let length = 16 + 4 + 1 + doc.len();
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&i32::try_from(length).unwrap().to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&response_to.to_le_bytes());
    out.extend_from_slice(&OP_MSG.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&doc);
    out
}

fn error(code: i32, name: &str, message: &str) -> Document {
    doc! { "ok": 0.0, "errmsg": message, "code": code, "codeName": name }
}

fn answer(state: &mut State, body: &Document) -> Document {
    let Some(command) = body.keys().next().cloned() else {
        return error(59, "CommandNotFound", "empty command");
    };
    let db = body.get_str("$db").unwrap_or("admin").to_owned();
    match command.to_ascii_lowercase().as_str() {
        "hello" | "ismaster" => {
            let mut hello = doc! {
                "helloOk": true, "ismaster": true, "isWritablePrimary": true,
                "maxBsonObjectSize": 16_777_216, "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000, "localTime": mongodb::bson::DateTime::now(),
                "logicalSessionTimeoutMinutes": 30, "connectionId": 1,
                "minWireVersion": 0, "maxWireVersion": 21, "readOnly": false, "ok": 1.0,
            };
            if body.contains_key("saslSupportedMechs") {
                hello.insert("saslSupportedMechs", vec!["SCRAM-SHA-256", "SCRAM-SHA-1"]);
            }
            hello
        }
        "ping" | "endsessions" => doc! { "ok": 1.0 },
        "saslstart" | "authenticate" => error(18, "AuthenticationFailed", "Authentication failed."),
        "listdatabases" => {
            let databases: Vec<Document> = state
                .databases
                .keys()
                .map(|name| doc! { "name": name, "sizeOnDisk": 4096i64, "empty": false })
                .collect();
            doc! { "databases": databases, "totalSize": 4096i64, "ok": 1.0 }
        }
        "listcollections" => {
            let collections: Vec<Document> = state
                .databases
                .get(&db)
                .into_iter()
                .flat_map(|c| c.keys())
                .map(|name| {
                    doc! {
                        "name": name, "type": "collection", "options": {},
                        "info": { "readOnly": false },
                        "idIndex": { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
                    }
                })
                .collect();
            let ns = format!("{db}.$cmd.listCollections");
            doc! { "cursor": { "id": 0i64, "ns": ns, "firstBatch": collections }, "ok": 1.0 }
        }
        "count" => {
            let name = body.get_str("count").unwrap_or_default();
            let n = documents(state, &db, name).len() as i64;
            doc! { "n": n, "ok": 1.0 }
        }
        "aggregate" => aggregate(state, &db, body),
        "find" => {
            let name = body.get_str("find").unwrap_or_default().to_owned();
            let filter = body.get_document("filter").cloned().unwrap_or_default();
            let mut docs: Vec<Document> = documents(state, &db, &name)
                .into_iter()
                .filter(|d| matches(d, &filter))
                .collect();
            if let Ok(sort) = body.get_document("sort") {
                docs.sort_by(|a, b| sort_order(a, b, sort));
            }
            if let Some(limit) = body.get("limit").and_then(as_i64).filter(|l| *l > 0) {
                docs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            }
            if let Ok(projection) = body.get_document("projection") {
                docs = docs.iter().map(|d| project(d, projection)).collect();
            }
            let batch = body.get("batchSize").and_then(as_i64).unwrap_or(101);
            first_batch(state, format!("{db}.{name}"), docs, batch)
        }
        "getmore" => {
            let id = body.get("getMore").and_then(as_i64).unwrap_or_default();
            let batch = body.get("batchSize").and_then(as_i64).unwrap_or(101);
            let Some((ns, mut rest)) = state.cursors.remove(&id) else {
                return error(43, "CursorNotFound", &format!("cursor id {id} not found"));
            };
            let take = usize::try_from(batch).unwrap_or(usize::MAX).min(rest.len());
            let next: Vec<Document> = rest.drain(..take).collect();
            let id = if rest.is_empty() {
                0
            } else {
                state.cursors.insert(id, (ns.clone(), rest));
                id
            };
            doc! { "cursor": { "id": id, "ns": ns, "nextBatch": next }, "ok": 1.0 }
        }
        "killcursors" => {
            let ids: Vec<Bson> = body.get_array("cursors").cloned().unwrap_or_default();
            for id in &ids {
                if let Some(id) = as_i64(id) {
                    state.cursors.remove(&id);
                }
            }
            doc! { "cursorsKilled": ids, "cursorsNotFound": [], "cursorsAlive": [], "cursorsUnknown": [], "ok": 1.0 }
        }
        other => error(59, "CommandNotFound", &format!("no such command: '{other}'")),
    }
}

fn aggregate(state: &mut State, db: &str, body: &Document) -> Document {
    let name = body.get_str("aggregate").unwrap_or_default().to_owned();
    let stages = body.get_array("pipeline").cloned().unwrap_or_default();
    let batch = body
        .get_document("cursor")
        .ok()
        .and_then(|c| c.get("batchSize"))
        .and_then(as_i64)
        .unwrap_or(101);
    let mut docs = documents(state, db, &name);
    for stage in stages.iter().filter_map(Bson::as_document) {
        if let Ok(sample) = stage.get_document("$sample") {
            // Deterministic: the first `size` documents.
            let size = sample.get("size").and_then(as_i64).unwrap_or(0);
            docs.truncate(usize::try_from(size).unwrap_or(0));
        } else if stage.contains_key("$collStats") {
            if state.deny_coll_stats {
                return error(13, "Unauthorized", "not authorized to execute command collStats");
            }
            let size: usize = docs
                .iter()
                .map(|d| mongodb::bson::to_vec(d).map_or(0, |v| v.len()))
                .sum();
            docs = vec![doc! {
                "ns": format!("{db}.{name}"),
                "storageStats": { "count": docs.len() as i64, "size": size as i64 },
            }];
        } else {
            return error(40324, "Location40324", "unrecognized pipeline stage");
        }
    }
    first_batch(state, format!("{db}.{name}"), docs, batch)
}

fn documents(state: &State, db: &str, collection: &str) -> Vec<Document> {
    state
        .databases
        .get(db)
        .and_then(|c| c.get(collection))
        .cloned()
        .unwrap_or_default()
}

/// The reply opening a cursor over `docs`; the rest waits for `getMore`.
fn first_batch(state: &mut State, ns: String, mut docs: Vec<Document>, batch: i64) -> Document {
    let take = if batch <= 0 {
        101
    } else {
        usize::try_from(batch).unwrap_or(usize::MAX)
    }
    .min(docs.len());
    let first: Vec<Document> = docs.drain(..take).collect();
    let id = if docs.is_empty() {
        0
    } else {
        state.next_cursor += 1;
        let id = state.next_cursor;
        state.cursors.insert(id, (ns.clone(), docs));
        id
    };
    doc! { "cursor": { "id": id, "ns": ns, "firstBatch": first }, "ok": 1.0 }
}

fn as_i64(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) => Some(*f as i64),
        _ => None,
    }
}

/// MongoDB's comparison within one type bracket; `None` across brackets.
fn compare(a: &Bson, b: &Bson) -> Option<Ordering> {
    let number = |v: &Bson| match v {
        Bson::Int32(i) => Some(f64::from(*i)),
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(f) => Some(*f),
        _ => None,
    };
    match (a, b) {
        (Bson::DateTime(x), Bson::DateTime(y)) => Some(x.cmp(y)),
        (Bson::String(x), Bson::String(y)) => Some(x.cmp(y)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => Some(x.bytes().cmp(&y.bytes())),
        (Bson::Boolean(x), Bson::Boolean(y)) => Some(x.cmp(y)),
        _ => number(a)?.partial_cmp(&number(b)?),
    }
}

fn matches(doc: &Document, filter: &Document) -> bool {
    filter.iter().all(|(key, condition)| {
        if key == "$and" {
            return condition
                .as_array()
                .is_some_and(|all| all.iter().filter_map(Bson::as_document).all(|f| matches(doc, f)));
        }
        let value = doc.get(key);
        match condition.as_document().filter(|c| c.keys().all(|k| k.starts_with('$'))) {
            Some(operators) => operators.iter().all(|(op, operand)| {
                let order = value.and_then(|v| compare(v, operand));
                match op.as_str() {
                    "$eq" => order == Some(Ordering::Equal),
                    "$gt" => order == Some(Ordering::Greater),
                    "$gte" => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
                    "$lt" => order == Some(Ordering::Less),
                    "$lte" => matches!(order, Some(Ordering::Less | Ordering::Equal)),
                    _ => false,
                }
            }),
            None => value.and_then(|v| compare(v, condition)) == Some(Ordering::Equal),
        }
    })
}

fn sort_order(a: &Document, b: &Document, sort: &Document) -> Ordering {
    for (key, direction) in sort {
        let order = match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) => compare(x, y).unwrap_or(Ordering::Equal),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let order = if as_i64(direction) == Some(-1) {
            order.reverse()
        } else {
            order
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// An inclusion projection (`_id` always kept).
fn project(doc: &Document, projection: &Document) -> Document {
    doc.iter()
        .filter(|(k, _)| *k == "_id" || projection.contains_key(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
