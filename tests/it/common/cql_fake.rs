//! A Cassandra test double at the wire level: the CQL native protocol v4
//! over TCP, serving in-memory tables to the real `scylla` driver inside
//! `sluice`.
//!
//! No Cassandra or ScyllaDB server installs from the registries here (their
//! installers download binaries at run time), so this double stands in. It
//! speaks `OPTIONS`/`SUPPORTED`, `STARTUP` with `READY` or, when it has a
//! user, `AUTHENTICATE` with `PasswordAuthenticator` (SASL PLAIN),
//! `REGISTER`, `USE`, `QUERY`, and `PREPARE`/`EXECUTE` of statements without
//! bind markers (the driver prepares its topology reads), with result paging
//! (the paging state is the next row's offset). A `SELECT` names columns
//! (or `*`) of one table, may have `WHERE` terms joined by `AND` (`=` on
//! text, `<`, `<=`, `>`, `>=` on numbers, and the same on
//! `token(partition key columns)`, computed as Cassandra's
//! `Murmur3Partitioner` does) and a `LIMIT`. The system tables the driver
//! and Sluice read (`system.local`, `system.peers`, `system.size_estimates`,
//! `system_schema.keyspaces`, `.tables`, `.columns`) are made from the
//! tables it holds. [`CqlFake::start_nodes`] runs several nodes (127.0.0.1,
//! 127.0.0.2, ... on one port, as the driver expects of peers) over the same
//! tables, each listing the others in `system.peers` with its share of the
//! token ring. Every request is recorded (text, page size, whether it
//! carried a paging state, the node) so tests assert the CQL Sluice sent.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One cell value; [`CqlFake::insert`] encodes it as its column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    /// Any integer type, `counter`, `timestamp` (milliseconds), `date`
    /// (days since 1970), `time` (nanoseconds).
    Int(i64),
    /// `float` or `double`.
    Float(f64),
    /// Text types, and `uuid`, `timeuuid` and `inet` written as text.
    Text(String),
    Bool(bool),
    /// `blob`, or the exact serialized value of any type.
    Bytes(Vec<u8>),
    /// list, set, vector, tuple and user-defined type values, in order.
    List(Vec<Val>),
    Map(Vec<(Val, Val)>),
}

/// One recorded `QUERY` or `EXECUTE`.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub page_size: Option<i32>,
    pub paged: bool,
    /// The address of the node that received it.
    pub node: String,
    /// Whether it executed a prepared statement.
    pub prepared: bool,
}

struct Table {
    /// (name, kind, CQL type) in declaration order; kind is
    /// `partition_key`, `clustering` or `regular`.
    columns: Vec<(String, String, String)>,
    rows: Vec<Vec<Val>>,
}

#[derive(Default)]
struct State {
    /// keyspace -> table.
    tables: BTreeMap<String, BTreeMap<String, Table>>,
    /// keyspace -> type name -> fields (name, CQL type).
    udts: BTreeMap<String, BTreeMap<String, Vec<(String, String)>>>,
    credentials: Option<(String, String)>,
    queries: Vec<Query>,
    /// Prepared statement texts; a statement's id is its index.
    prepared: Vec<String>,
    /// The nodes' addresses, in ring order.
    nodes: Vec<String>,
    partitioner: String,
}

/// A running double; its listener threads live as long as the test process.
pub struct CqlFake {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

/// The partitioner every real cluster of these years uses.
const MURMUR3: &str = "org.apache.cassandra.dht.Murmur3Partitioner";

impl CqlFake {
    /// A one-node double that requires `credentials` when given.
    pub fn start(credentials: Option<(&str, &str)>) -> CqlFake {
        Self::start_nodes(credentials, 1)
    }

    /// `count` nodes on 127.0.0.1, 127.0.0.2, ... (one port: the driver
    /// connects to a peer's address on its contact point's port) serving
    /// the same tables.
    pub fn start_nodes(credentials: Option<(&str, &str)>, count: u8) -> CqlFake {
        let (port, listeners) = (0..20)
            .find_map(|_| {
                let first = TcpListener::bind("127.0.0.1:0").expect("bind the CQL double");
                let port = first.local_addr().unwrap().port();
                let mut listeners = vec![first];
                for n in 2..=count {
                    listeners.push(TcpListener::bind(("127.0.0.".to_owned() + &n.to_string(), port)).ok()?);
                }
                Some((port, listeners))
            })
            .expect("a port free on every loopback address");
        let state = Arc::new(Mutex::new(State {
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            nodes: (1..=count).map(|n| format!("127.0.0.{n}")).collect(),
            partitioner: MURMUR3.to_owned(),
            ..State::default()
        }));
        for listener in listeners {
            let shared = state.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let state = shared.clone();
                    std::thread::spawn(move || serve(stream, &state));
                }
            });
        }
        CqlFake { port, state }
    }

    /// Makes `system.local` name another partitioner (a cluster whose
    /// tokens are not Murmur3's).
    pub fn set_partitioner(&self, class: &str) {
        self.state.lock().unwrap().partitioner = class.to_owned();
    }

    /// Creates `keyspace.table` with `columns` (name, kind, CQL type).
    pub fn create_table(&self, keyspace: &str, table: &str, columns: &[(&str, &str, &str)]) {
        let columns = columns
            .iter()
            .map(|(n, k, t)| (n.to_string(), k.to_string(), t.to_string()))
            .collect();
        self.state
            .lock()
            .unwrap()
            .tables
            .entry(keyspace.to_owned())
            .or_default()
            .insert(table.to_owned(), Table { columns, rows: vec![] });
    }

    /// Declares the user-defined type `keyspace.name`.
    pub fn create_type(&self, keyspace: &str, name: &str, fields: &[(&str, &str)]) {
        let fields = fields.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        self.state
            .lock()
            .unwrap()
            .udts
            .entry(keyspace.to_owned())
            .or_default()
            .insert(name.to_owned(), fields);
    }

    /// Appends rows (one value per column, in declaration order).
    pub fn insert(&self, keyspace: &str, table: &str, rows: Vec<Vec<Val>>) {
        let mut state = self.state.lock().unwrap();
        let t = state.tables.get_mut(keyspace).unwrap().get_mut(table).unwrap();
        t.rows.extend(rows);
    }

    /// Every `QUERY` received whose text contains `part`.
    pub fn queries(&self, part: &str) -> Vec<Query> {
        let state = self.state.lock().unwrap();
        state
            .queries
            .iter()
            .filter(|q| q.text.contains(part))
            .cloned()
            .collect()
    }
}

const ERROR: u8 = 0x00;
const STARTUP: u8 = 0x01;
const READY: u8 = 0x02;
const AUTHENTICATE: u8 = 0x03;
const OPTIONS: u8 = 0x05;
const SUPPORTED: u8 = 0x06;
const QUERY: u8 = 0x07;
const RESULT: u8 = 0x08;
const PREPARE: u8 = 0x09;
const EXECUTE: u8 = 0x0A;
const REGISTER: u8 = 0x0B;
const AUTH_RESPONSE: u8 = 0x0F;
const AUTH_SUCCESS: u8 = 0x10;

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let node = stream.local_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    loop {
        let mut header = [0u8; 9];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        let stream_id = [header[2], header[3]];
        let opcode = header[4];
        let length = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
        let mut body = vec![0u8; length];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let (op, reply) = answer(opcode, &body, state, &node);
        let mut frame = vec![0x84, 0, stream_id[0], stream_id[1], op];
        frame.extend((reply.len() as u32).to_be_bytes());
        frame.extend(reply);
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

fn error(code: i32, message: &str) -> (u8, Vec<u8>) {
    let mut b = code.to_be_bytes().to_vec();
    string(&mut b, message);
    (ERROR, b)
}

fn answer(opcode: u8, body: &[u8], state: &Mutex<State>, node: &str) -> (u8, Vec<u8>) {
    match opcode {
        OPTIONS => {
            let mut b = 2u16.to_be_bytes().to_vec();
            string(&mut b, "CQL_VERSION");
            b.extend(1u16.to_be_bytes());
            string(&mut b, "3.4.5");
            string(&mut b, "COMPRESSION");
            b.extend(0u16.to_be_bytes());
            (SUPPORTED, b)
        }
        STARTUP if state.lock().unwrap().credentials.is_some() => {
            let mut b = vec![];
            string(&mut b, "org.apache.cassandra.auth.PasswordAuthenticator");
            (AUTHENTICATE, b)
        }
        STARTUP | REGISTER => (READY, vec![]),
        AUTH_RESPONSE => {
            let token = &body[4..];
            let parts: Vec<&[u8]> = token.split(|&b| b == 0).collect();
            let given = (
                String::from_utf8_lossy(parts.get(1).copied().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(parts.get(2).copied().unwrap_or_default()).into_owned(),
            );
            if state.lock().unwrap().credentials.as_ref() == Some(&given) {
                (AUTH_SUCCESS, (-1i32).to_be_bytes().to_vec())
            } else {
                error(
                    0x0100,
                    &format!("Provided username {} and/or password are incorrect", given.0),
                )
            }
        }
        QUERY => {
            let len = i32::from_be_bytes(body[0..4].try_into().unwrap()) as usize;
            let text = String::from_utf8_lossy(&body[4..4 + len]).into_owned();
            query(text, &body[4 + len..], state, node, false)
        }
        PREPARE => prepare(body, state, node),
        EXECUTE => {
            let len = u16::from_be_bytes([body[0], body[1]]) as usize;
            let id = u32::from_be_bytes(body[2..2 + len].try_into().unwrap()) as usize;
            let text = state.lock().unwrap().prepared.get(id).cloned();
            match text {
                Some(text) => query(text, &body[2 + len..], state, node, true),
                None => {
                    let mut b = 0x2500i32.to_be_bytes().to_vec();
                    string(&mut b, "unknown prepared statement");
                    b.extend((len as u16).to_be_bytes());
                    b.extend(&body[2..2 + len]);
                    (ERROR, b)
                }
            }
        }
        _ => error(0x000A, "this test double does not answer that request"),
    }
}

/// A PREPARE of a statement without bind markers: its id and the columns
/// its rows will have.
fn prepare(body: &[u8], state: &Mutex<State>, node: &str) -> (u8, Vec<u8>) {
    let len = i32::from_be_bytes(body[0..4].try_into().unwrap()) as usize;
    let text = String::from_utf8_lossy(&body[4..4 + len]).into_owned();
    if text.contains('?') {
        return error(0x2200, "this test double prepares statements without bind markers only");
    }
    let mut state = state.lock().unwrap();
    let columns = match select(&state, text.trim(), node) {
        Ok((columns, _)) => columns,
        Err(message) => return error(0x2200, &message),
    };
    let id = match state.prepared.iter().position(|p| *p == text) {
        Some(id) => id,
        None => {
            state.prepared.push(text);
            state.prepared.len() - 1
        }
    };
    let mut b = 4i32.to_be_bytes().to_vec();
    b.extend(4u16.to_be_bytes());
    b.extend((id as u32).to_be_bytes());
    // Bind markers: no flags, no columns, no partition key.
    b.extend([0u8; 12]);
    metadata(&state, &mut b, &columns, None);
    (RESULT, b)
}

/// A QUERY's or EXECUTE's statement `text` run with its query parameters
/// `body` (consistency, flags, page size, paging state).
fn query(text: String, body: &[u8], state: &Mutex<State>, node: &str, prepared: bool) -> (u8, Vec<u8>) {
    let mut at = 2;
    let flags = body[at];
    at += 1;
    if flags & 0x01 != 0 {
        if u16::from_be_bytes([body[at], body[at + 1]]) != 0 {
            return error(0x2200, "this test double takes no bound values");
        }
        at += 2;
    }
    let mut page_size = None;
    if flags & 0x04 != 0 {
        page_size = Some(i32::from_be_bytes(body[at..at + 4].try_into().unwrap()));
        at += 4;
    }
    let mut offset = 0usize;
    if flags & 0x08 != 0 {
        let n = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        if n == 4 {
            offset = u32::from_be_bytes(body[at + 4..at + 8].try_into().unwrap()) as usize;
        }
    }
    state.lock().unwrap().queries.push(Query {
        text: text.clone(),
        page_size,
        paged: flags & 0x08 != 0,
        node: node.to_owned(),
        prepared,
    });
    let state = state.lock().unwrap();
    let trimmed = text.trim();
    if let Some(keyspace) = trimmed.strip_prefix("USE ").or_else(|| trimmed.strip_prefix("use ")) {
        let keyspace = unquote(keyspace.trim());
        if !state.tables.contains_key(&keyspace) {
            return error(0x2200, &format!("Keyspace '{keyspace}' does not exist"));
        }
        let mut b = 3i32.to_be_bytes().to_vec();
        string(&mut b, &keyspace);
        return (RESULT, b);
    }
    match select(&state, trimmed, node) {
        Ok((columns, rows)) => (RESULT, rows_result(&state, &columns, &rows, offset, page_size)),
        Err(message) => error(0x2200, &message),
    }
}

/// `"name"` or `name` as the name.
fn unquote(name: &str) -> String {
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => name.to_ascii_lowercase(),
    }
}

/// Splits at `sep` outside quotes.
fn split_outside_quotes<'a>(text: &'a str, sep: &str) -> Vec<&'a str> {
    let (mut parts, mut start, mut quote) = (vec![], 0, None);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if text[i..].starts_with(sep) => {
                parts.push(&text[start..i]);
                i += sep.len();
                start = i;
                continue;
            }
            None => {}
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}

type Columns = Vec<(String, String)>;

/// Runs a SELECT on `node`: its columns (name, CQL type) and rows.
fn select(state: &State, text: &str, node: &str) -> Result<(Columns, Vec<Vec<Val>>), String> {
    let rest = text
        .strip_prefix("SELECT ")
        .ok_or_else(|| format!("cannot run {text}"))?;
    let parts = split_outside_quotes(rest, " FROM ");
    let (list, rest) = (parts[0], parts.get(1).ok_or("no FROM")?);
    let rest = rest.trim().trim_end_matches(" ALLOW FILTERING");
    let limit_parts = split_outside_quotes(rest, " LIMIT ");
    let limit: Option<usize> = limit_parts.get(1).map(|l| l.trim().parse().unwrap());
    let where_parts = split_outside_quotes(limit_parts[0], " WHERE ");
    let from = where_parts[0].trim();
    let conditions: Vec<&str> = where_parts
        .get(1)
        .map(|w| split_outside_quotes(w.trim_end_matches(" ALLOW FILTERING"), " AND "))
        .unwrap_or_default();
    let names = split_outside_quotes(from, ".");
    let (keyspace, table) = (
        unquote(names[0].trim()),
        unquote(names.get(1).ok_or("no keyspace")?.trim()),
    );
    let (all_columns, mut rows) = table_rows(state, &keyspace, &table, node)?;
    for condition in conditions {
        let (name, op, value) = ["<=", ">=", "<", ">", "="]
            .iter()
            .find_map(|op| {
                let parts = split_outside_quotes(condition, op);
                (parts.len() == 2).then(|| (parts[0].trim(), *op, parts[1].trim().to_owned()))
            })
            .ok_or_else(|| format!("cannot read the condition {condition}"))?;
        if let Some(arguments) = name.strip_prefix("token(").and_then(|n| n.strip_suffix(')')) {
            let key = partition_key(state, &keyspace, &table, &all_columns)?;
            let named: Vec<String> = split_outside_quotes(arguments, ",")
                .iter()
                .map(|c| unquote(c.trim()))
                .collect();
            let key_names: Vec<String> = key.iter().map(|&i| all_columns[i].0.clone()).collect();
            if named != key_names {
                return Err(format!(
                    "The token function arguments must be in the partition key order: {}",
                    key_names.join(", ")
                ));
            }
            rows.retain(|row| {
                let parts: Vec<Vec<u8>> = key
                    .iter()
                    .map(|&i| encode(state, &all_columns[i].1, &row[i]).expect("a partition key is never null"))
                    .collect();
                matches(&Val::Int(token(&parts)), op, &value)
            });
            continue;
        }
        let name = unquote(name);
        let i = all_columns
            .iter()
            .position(|c| c.0 == name)
            .ok_or_else(|| format!("Undefined column name {name}"))?;
        rows.retain(|row| matches(&row[i], op, &value));
    }
    let picked: Vec<usize> = if list.trim() == "*" {
        (0..all_columns.len()).collect()
    } else {
        split_outside_quotes(list, ",")
            .iter()
            .map(|c| {
                let name = unquote(c.trim());
                all_columns
                    .iter()
                    .position(|col| col.0 == name)
                    .ok_or_else(|| format!("Undefined column name {name} in table {keyspace}.{table}"))
            })
            .collect::<Result<_, _>>()?
    };
    let columns = picked.iter().map(|&i| all_columns[i].clone()).collect();
    let mut rows: Vec<Vec<Val>> = rows
        .into_iter()
        .map(|row| picked.iter().map(|&i| row[i].clone()).collect())
        .collect();
    if let Some(limit) = limit {
        rows.truncate(limit);
    }
    Ok((columns, rows))
}

/// The positions in `columns` of the partition key of a data table.
fn partition_key(state: &State, keyspace: &str, table: &str, columns: &Columns) -> Result<Vec<usize>, String> {
    let t = state
        .tables
        .get(keyspace)
        .and_then(|tables| tables.get(table))
        .ok_or_else(|| format!("token() of a system table {keyspace}.{table}"))?;
    Ok(t.columns
        .iter()
        .filter(|c| c.1 == "partition_key")
        .map(|c| columns.iter().position(|d| d.0 == c.0).unwrap())
        .collect())
}

/// The token of a partition key of `parts` (each column's serialized
/// value), as Cassandra's `Murmur3Partitioner` computes it: one column's
/// value as it is, several as a composite (each as a 2-byte length, the
/// bytes, a 0 byte), hashed with MurmurHash3 x64 128 (seed 0), the first
/// 64 bits as a signed integer, `i64::MIN` taken as `i64::MAX`.
pub fn token(parts: &[Vec<u8>]) -> i64 {
    let key: Vec<u8> = match parts {
        [one] => one.clone(),
        _ => parts
            .iter()
            .flat_map(|p| {
                let mut c = (p.len() as u16).to_be_bytes().to_vec();
                c.extend(p);
                c.push(0);
                c
            })
            .collect(),
    };
    match murmur3_x64_128_h1(&key) {
        i64::MIN => i64::MAX,
        t => t,
    }
}

/// The first half of MurmurHash3 x64 128 with seed 0, as Cassandra's
/// `MurmurHash.hash3_x64_128` computes it, including its one departure
/// from the reference: the bytes of the tail are sign-extended.
fn murmur3_x64_128_h1(key: &[u8]) -> i64 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    fn fmix(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
    let (mut h1, mut h2) = (0u64, 0u64);
    let blocks = key.chunks_exact(16);
    let tail = blocks.remainder();
    for block in blocks {
        let k1 = u64::from_le_bytes(block[..8].try_into().unwrap());
        let k2 = u64::from_le_bytes(block[8..].try_into().unwrap());
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    // Cassandra reads each tail byte as a signed Java byte widened to long.
    let signed = |i: usize, shift: usize| ((tail[i] as i8 as i64) << shift) as u64;
    let (mut k1, mut k2) = (0u64, 0u64);
    for i in (8..tail.len()).rev() {
        k2 ^= signed(i, (i - 8) * 8);
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    for i in (0..tail.len().min(8)).rev() {
        k1 ^= signed(i, i * 8);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    h1 ^= key.len() as u64;
    h2 ^= key.len() as u64;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1.wrapping_add(h2) as i64
}

fn matches(value: &Val, op: &str, literal: &str) -> bool {
    let ordering = match value {
        Val::Text(s) => s.as_str().partial_cmp(literal.trim_matches('\'')),
        Val::Int(i) => literal.parse::<i64>().ok().map(|l| i.cmp(&l)),
        Val::Float(f) => literal.parse::<f64>().ok().and_then(|l| f.partial_cmp(&l)),
        _ => None,
    };
    let Some(o) = ordering else { return false };
    match op {
        "=" => o.is_eq(),
        "<" => o.is_lt(),
        "<=" => o.is_le(),
        ">" => o.is_gt(),
        _ => o.is_ge(),
    }
}

fn text(s: &str) -> Val {
    Val::Text(s.to_owned())
}

/// A node's host id: the same on every connection.
fn host_id(n: usize) -> Val {
    text(&format!("6c7a5c3e-6bd9-4a0e-9b7a-1f3c2d4e5f{n:02}"))
}

/// The token a node owns: the nodes split the ring evenly.
fn node_token(n: usize, count: usize) -> Val {
    let width = (1i128 << 64) / count as i128;
    Val::List(vec![text(
        &(i64::MIN as i128 + width * (n as i128 + 1) - 1).to_string(),
    )])
}

/// The columns and rows of a data table or of a system table made from
/// them, as `node` answers.
fn table_rows(state: &State, keyspace: &str, table: &str, node: &str) -> Result<(Columns, Vec<Vec<Val>>), String> {
    let cols =
        |list: &[(&str, &str)]| -> Columns { list.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect() };
    let count = state.nodes.len();
    let me = state.nodes.iter().position(|n| n == node).unwrap_or(0);
    Ok(match (keyspace, table) {
        ("system", "local") => (
            cols(&[
                ("key", "text"),
                ("host_id", "uuid"),
                ("rpc_address", "inet"),
                ("data_center", "text"),
                ("rack", "text"),
                ("tokens", "set<text>"),
                ("cluster_name", "text"),
                ("release_version", "text"),
                ("partitioner", "text"),
            ]),
            vec![vec![
                text("local"),
                host_id(me),
                text(node),
                text("dc1"),
                text("rack1"),
                node_token(me, count),
                text("sluice-test"),
                text("4.1.0"),
                text(&state.partitioner),
            ]],
        ),
        ("system", "peers") => (
            cols(&[
                ("peer", "inet"),
                ("host_id", "uuid"),
                ("rpc_address", "inet"),
                ("data_center", "text"),
                ("rack", "text"),
                ("tokens", "set<text>"),
            ]),
            state
                .nodes
                .iter()
                .enumerate()
                .filter(|(n, _)| *n != me)
                .map(|(n, address)| {
                    vec![
                        text(address),
                        host_id(n),
                        text(address),
                        text("dc1"),
                        text("rack1"),
                        node_token(n, count),
                    ]
                })
                .collect(),
        ),
        ("system", "size_estimates") => {
            let mut rows = vec![];
            for (ks, tables) in &state.tables {
                for (name, t) in tables {
                    rows.push(vec![text(ks), text(name), Val::Int(t.rows.len() as i64), Val::Int(100)]);
                }
            }
            (
                cols(&[
                    ("keyspace_name", "text"),
                    ("table_name", "text"),
                    ("partitions_count", "bigint"),
                    ("mean_partition_size", "bigint"),
                ]),
                rows,
            )
        }
        ("system_schema", "keyspaces") => {
            let mut names: Vec<&str> = vec!["system", "system_schema", "system_auth"];
            names.extend(state.tables.keys().map(String::as_str));
            (
                cols(&[("keyspace_name", "text"), ("durable_writes", "boolean")]),
                names.into_iter().map(|n| vec![text(n), Val::Bool(true)]).collect(),
            )
        }
        ("system_schema", "tables") => {
            let rows = state
                .tables
                .iter()
                .flat_map(|(ks, tables)| tables.keys().map(move |t| vec![text(ks), text(t)]))
                .collect();
            (cols(&[("keyspace_name", "text"), ("table_name", "text")]), rows)
        }
        ("system_schema", "columns") => {
            let mut rows = vec![];
            for (ks, tables) in &state.tables {
                for (name, t) in tables {
                    let mut positions: BTreeMap<&str, i64> = BTreeMap::new();
                    for (column, kind, cql_type) in &t.columns {
                        let position = positions.entry(kind.as_str()).or_insert(-1);
                        *position += 1;
                        let position = if kind == "regular" { -1 } else { *position };
                        rows.push(vec![
                            text(ks),
                            text(name),
                            text(column),
                            text(kind),
                            Val::Int(position),
                            text(cql_type),
                        ]);
                    }
                }
            }
            (
                cols(&[
                    ("keyspace_name", "text"),
                    ("table_name", "text"),
                    ("column_name", "text"),
                    ("kind", "text"),
                    ("position", "int"),
                    ("type", "text"),
                ]),
                rows,
            )
        }
        _ => {
            let t = state
                .tables
                .get(keyspace)
                .and_then(|tables| tables.get(table))
                .ok_or_else(|| format!("unconfigured table {table}"))?;
            let columns = t.columns.iter().map(|(n, _, ty)| (n.clone(), ty.clone())).collect();
            (columns, t.rows.clone())
        }
    })
}

/// A Rows result of rows `offset..` (a page when `page_size` is given).
fn rows_result(state: &State, columns: &Columns, rows: &[Vec<Val>], offset: usize, page_size: Option<i32>) -> Vec<u8> {
    let end = match page_size {
        Some(n) if n > 0 => (offset + n as usize).min(rows.len()),
        _ => rows.len(),
    };
    let more = end < rows.len();
    let mut b = 2i32.to_be_bytes().to_vec();
    metadata(state, &mut b, columns, more.then_some(end));
    let page = &rows[offset.min(rows.len())..end];
    b.extend((page.len() as i32).to_be_bytes());
    for row in page {
        for ((_, cql_type), value) in columns.iter().zip(row) {
            cell(&mut b, encode(state, cql_type, value));
        }
    }
    b
}

/// Rows metadata of `columns`, with the paging state `next` (the next
/// row's offset) when there are more rows.
fn metadata(state: &State, b: &mut Vec<u8>, columns: &Columns, next: Option<usize>) {
    b.extend((0x0001i32 | if next.is_some() { 0x0002 } else { 0 }).to_be_bytes());
    b.extend((columns.len() as i32).to_be_bytes());
    if let Some(next) = next {
        b.extend(4i32.to_be_bytes());
        b.extend((next as u32).to_be_bytes());
    }
    string(b, "ks");
    string(b, "t");
    for (name, cql_type) in columns {
        string(b, name);
        type_option(state, b, cql_type);
    }
}

fn string(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u16).to_be_bytes());
    b.extend(s.as_bytes());
}

fn cell(b: &mut Vec<u8>, value: Option<Vec<u8>>) {
    match value {
        None => b.extend((-1i32).to_be_bytes()),
        Some(v) => {
            b.extend((v.len() as i32).to_be_bytes());
            b.extend(v);
        }
    }
}

/// `name<a, b>` as its name and arguments (split at top-level commas).
fn parts(cql_type: &str) -> (String, Vec<String>) {
    let t = cql_type.trim();
    match t.find('<') {
        Some(open) if t.ends_with('>') => {
            let inner = &t[open + 1..t.len() - 1];
            let (mut args, mut depth, mut start) = (vec![], 0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '<' => depth += 1,
                    '>' => depth -= 1,
                    ',' if depth == 0 => {
                        args.push(inner[start..i].trim().to_owned());
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            args.push(inner[start..].trim().to_owned());
            (t[..open].trim().to_owned(), args)
        }
        _ => (t.to_owned(), vec![]),
    }
}

fn udt<'a>(state: &'a State, name: &str) -> (&'a str, &'a [(String, String)]) {
    state
        .udts
        .iter()
        .find_map(|(ks, types)| types.get(name).map(|f| (ks.as_str(), f.as_slice())))
        .unwrap_or_else(|| panic!("unknown CQL type {name}"))
}

/// The protocol's [option] for a CQL type.
fn type_option(state: &State, b: &mut Vec<u8>, cql_type: &str) {
    let (name, args) = parts(cql_type);
    let simple = |id: u16| id.to_be_bytes().to_vec();
    let id: Vec<u8> = match name.as_str() {
        "frozen" => return type_option(state, b, &args[0]),
        "ascii" => simple(0x01),
        "bigint" => simple(0x02),
        "blob" => simple(0x03),
        "boolean" => simple(0x04),
        "counter" => simple(0x05),
        "decimal" => simple(0x06),
        "double" => simple(0x07),
        "float" => simple(0x08),
        "int" => simple(0x09),
        "timestamp" => simple(0x0B),
        "uuid" => simple(0x0C),
        "text" | "varchar" => simple(0x0D),
        "varint" => simple(0x0E),
        "timeuuid" => simple(0x0F),
        "inet" => simple(0x10),
        "date" => simple(0x11),
        "time" => simple(0x12),
        "smallint" => simple(0x13),
        "tinyint" => simple(0x14),
        "duration" => simple(0x15),
        "list" | "set" => {
            b.extend(if name == "list" { 0x20u16 } else { 0x22u16 }.to_be_bytes());
            return type_option(state, b, &args[0]);
        }
        "map" => {
            b.extend(0x21u16.to_be_bytes());
            type_option(state, b, &args[0]);
            return type_option(state, b, &args[1]);
        }
        "tuple" => {
            b.extend(0x31u16.to_be_bytes());
            b.extend((args.len() as u16).to_be_bytes());
            for a in &args {
                type_option(state, b, a);
            }
            return;
        }
        "vector" => {
            b.extend(0x00u16.to_be_bytes());
            let class = format!(
                "org.apache.cassandra.db.marshal.VectorType(org.apache.cassandra.db.marshal.{}Type, {})",
                if args[0] == "float" { "Float" } else { "Int32" },
                args[1]
            );
            return string(b, &class);
        }
        other => {
            let (keyspace, fields) = udt(state, other);
            b.extend(0x30u16.to_be_bytes());
            string(b, keyspace);
            string(b, other);
            b.extend((fields.len() as u16).to_be_bytes());
            for (field, ty) in fields {
                string(b, field);
                type_option(state, b, ty);
            }
            return;
        }
    };
    b.extend(id);
}

/// An unsigned variable-length integer as Cassandra writes it (the count
/// of leading one bits of the first byte is the count of extra bytes).
fn vint(b: &mut Vec<u8>, value: i64) {
    let v = ((value << 1) ^ (value >> 63)) as u64; // zigzag
    let size = (639 - (v | 1).leading_zeros() as usize * 9) >> 6;
    let extra = size - 1;
    if extra == 8 {
        b.push(0xff);
        b.extend(v.to_be_bytes());
        return;
    }
    let bytes = v.to_be_bytes();
    let mut out = bytes[8 - (extra + 1)..].to_vec();
    out[0] |= !(0xffu8 >> extra);
    b.extend(out);
}

/// A value serialized as `cql_type`; `None` is null.
fn encode(state: &State, cql_type: &str, value: &Val) -> Option<Vec<u8>> {
    let (name, args) = parts(cql_type);
    Some(match (name.as_str(), value) {
        (_, Val::Null) => return None,
        ("frozen", v) => return encode(state, &args[0], v),
        (_, Val::Bytes(b)) => b.clone(),
        ("bigint" | "counter" | "timestamp" | "time", Val::Int(i)) => i.to_be_bytes().to_vec(),
        ("int", Val::Int(i)) => (*i as i32).to_be_bytes().to_vec(),
        ("smallint", Val::Int(i)) => (*i as i16).to_be_bytes().to_vec(),
        ("tinyint", Val::Int(i)) => vec![*i as i8 as u8],
        ("date", Val::Int(days)) => ((*days + (1i64 << 31)) as u32).to_be_bytes().to_vec(),
        ("varint", Val::Int(i)) => {
            let mut bytes = i.to_be_bytes().to_vec();
            while bytes.len() > 1 && ((bytes[0] == 0 && bytes[1] < 0x80) || (bytes[0] == 0xff && bytes[1] >= 0x80)) {
                bytes.remove(0);
            }
            bytes
        }
        ("double", Val::Float(f)) => f.to_be_bytes().to_vec(),
        ("float", Val::Float(f)) => (*f as f32).to_be_bytes().to_vec(),
        ("boolean", Val::Bool(v)) => vec![u8::from(*v)],
        ("uuid" | "timeuuid", Val::Text(s)) => hex_bytes(&s.replace('-', "")),
        ("inet", Val::Text(s)) => match s.parse::<std::net::IpAddr>().unwrap() {
            std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
            std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
        },
        (_, Val::Text(s)) => s.as_bytes().to_vec(),
        ("list" | "set", Val::List(items)) => {
            let mut b = (items.len() as i32).to_be_bytes().to_vec();
            for item in items {
                cell(&mut b, encode(state, &args[0], item));
            }
            b
        }
        ("map", Val::Map(pairs)) => {
            let mut b = (pairs.len() as i32).to_be_bytes().to_vec();
            for (k, v) in pairs {
                cell(&mut b, encode(state, &args[0], k));
                cell(&mut b, encode(state, &args[1], v));
            }
            b
        }
        ("tuple", Val::List(items)) => {
            let mut b = vec![];
            for (item, ty) in items.iter().zip(&args) {
                cell(&mut b, encode(state, ty, item));
            }
            b
        }
        // A vector of fixed-size elements is their values back to back.
        ("vector", Val::List(items)) => items
            .iter()
            .flat_map(|item| encode(state, &args[0], item).unwrap_or_default())
            .collect(),
        ("duration", Val::List(parts)) => {
            let mut b = vec![];
            for part in parts {
                let Val::Int(i) = part else {
                    panic!("duration parts are integers")
                };
                vint(&mut b, *i);
            }
            b
        }
        (other, Val::List(items)) => {
            let (_, fields) = udt(state, other);
            let mut b = vec![];
            for (item, (_, ty)) in items.iter().zip(fields) {
                cell(&mut b, encode(state, ty, item));
            }
            b
        }
        (ty, v) => panic!("the CQL double cannot write {v:?} as {ty}"),
    })
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}
