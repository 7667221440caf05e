//! A Cassandra test double at the wire level: the CQL native protocol v4
//! over TCP, serving in-memory tables to the real `scylla` driver inside
//! `sluice`.
//!
//! No Cassandra or ScyllaDB server installs from the registries here (their
//! installers download binaries at run time), so this double stands in. It
//! speaks `OPTIONS`/`SUPPORTED`, `STARTUP` with `READY` or, when it has a
//! user, `AUTHENTICATE` with `PasswordAuthenticator` (SASL PLAIN),
//! `REGISTER`, `USE`, and `QUERY` with result paging (the paging state is
//! the next row's offset). A `SELECT` names columns (or `*`) of one table,
//! may have `WHERE` terms joined by `AND` (`=` on text, `<`, `<=`, `>`,
//! `>=` on numbers) and a `LIMIT`. The system tables the driver and Sluice
//! read (`system.local`, `system.peers`, `system.size_estimates`,
//! `system_schema.keyspaces`, `.tables`, `.columns`) are made from the
//! tables it holds. Every `QUERY` is recorded (text, page size, whether it
//! carried a paging state) so tests assert the CQL Sluice sent.
//! `PREPARE`/`EXECUTE` are refused: Sluice sends unprepared queries only.

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

/// One recorded `QUERY`.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub page_size: Option<i32>,
    pub paged: bool,
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
}

/// A running double; its listener thread lives as long as the test process.
pub struct CqlFake {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl CqlFake {
    /// A double that requires `credentials` when given.
    pub fn start(credentials: Option<(&str, &str)>) -> CqlFake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the CQL double");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        CqlFake { port, state }
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
const REGISTER: u8 = 0x0B;
const AUTH_RESPONSE: u8 = 0x0F;
const AUTH_SUCCESS: u8 = 0x10;

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
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
        let (op, reply) = answer(opcode, &body, state);
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

fn answer(opcode: u8, body: &[u8], state: &Mutex<State>) -> (u8, Vec<u8>) {
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
        QUERY => query(body, state),
        _ => error(0x000A, "this test double answers unprepared QUERY only"),
    }
}

/// A QUERY frame's text, page size and paging state.
fn query(body: &[u8], state: &Mutex<State>) -> (u8, Vec<u8>) {
    let len = i32::from_be_bytes(body[0..4].try_into().unwrap()) as usize;
    let text = String::from_utf8_lossy(&body[4..4 + len]).into_owned();
    let mut at = 4 + len + 2;
    let flags = body[at];
    at += 1;
    if flags & 0x01 != 0 {
        return error(0x2200, "this test double takes no bound values");
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
    match select(&state, trimmed) {
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

/// Runs a SELECT: its columns (name, CQL type) and rows.
fn select(state: &State, text: &str) -> Result<(Columns, Vec<Vec<Val>>), String> {
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
    let (all_columns, mut rows) = table_rows(state, &keyspace, &table)?;
    for condition in conditions {
        let (name, op, value) = ["<=", ">=", "<", ">", "="]
            .iter()
            .find_map(|op| {
                let parts = split_outside_quotes(condition, op);
                (parts.len() == 2).then(|| (unquote(parts[0].trim()), *op, parts[1].trim().to_owned()))
            })
            .ok_or_else(|| format!("cannot read the condition {condition}"))?;
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

/// The columns and rows of a data table or of a system table made from them.
fn table_rows(state: &State, keyspace: &str, table: &str) -> Result<(Columns, Vec<Vec<Val>>), String> {
    let cols =
        |list: &[(&str, &str)]| -> Columns { list.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect() };
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
            ]),
            vec![vec![
                text("local"),
                text("6c7a5c3e-6bd9-4a0e-9b7a-1f3c2d4e5f60"),
                text("127.0.0.1"),
                text("dc1"),
                text("rack1"),
                Val::List(vec![text("0")]),
                text("sluice-test"),
                text("4.1.0"),
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
            vec![],
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
    b.extend((0x0001i32 | if more { 0x0002 } else { 0 }).to_be_bytes());
    b.extend((columns.len() as i32).to_be_bytes());
    if more {
        b.extend(4i32.to_be_bytes());
        b.extend((end as u32).to_be_bytes());
    }
    string(&mut b, "ks");
    string(&mut b, "t");
    for (name, cql_type) in columns {
        string(&mut b, name);
        type_option(state, &mut b, cql_type);
    }
    let page = &rows[offset.min(rows.len())..end];
    b.extend((page.len() as i32).to_be_bytes());
    for row in page {
        for ((_, cql_type), value) in columns.iter().zip(row) {
            cell(&mut b, encode(state, cql_type, value));
        }
    }
    b
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
