//! Shared integration-test harness: real PostgreSQL and MariaDB servers and
//! the `sluice` binary, each started on its own free port in its own temp dir.
//! One file per server (`postgres.rs`, `mariadb.rs`, `sluice.rs`, the
//! emulators); this file keeps the process and SQLSTATE helpers they share.
//!
//! Every test module uses this through `crate::common`; each uses only part
//! of it, hence the `dead_code` allow.
//!
//! * [`PgServer::start`], [`MariaDb::start`] and [`Sluice::start`] are
//!   synchronous (they shell out and poll); call them from sync or async tests
//!   alike. Only the methods that hand out a `tokio_postgres::Client` are async.
//! * Everything stops and cleans its temp dir on `Drop`. When a test is
//!   panicking, `Drop` prints the tail of the server's log to stderr (shown
//!   by the test runner for failing tests). Set `SLUICE_TEST_KEEP=1` to keep
//!   the temp dirs for inspection.
//! * When run as root (CI), PostgreSQL runs as the `postgres` user through
//!   `runuser` and MariaDB as the `mysql` user; as any other user, both simply
//!   run as that user.
#![allow(dead_code)]

pub mod bigquery_read;
pub mod bqemulator;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod cql_fake;
pub mod dynalite;
pub mod dynamodb;
pub mod emulators;
pub mod fakesnow;
pub mod firestore;
pub mod http;
mod mariadb;
pub mod mongo_fake;
mod postgres;
pub mod redis;
pub mod redshift_unload;
mod replica;
pub mod secret_manager;
mod sluice;
pub mod sqlbridge;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

pub use mariadb::*;
pub use postgres::*;
pub use sluice::*;

/// Password of the `etl` role/user created in both source databases.
pub const ETL_USER: &str = "etl";
pub const ETL_PASSWORD: &str = "etl_pw_123";
pub const ETL_DB: &str = "shop";
/// Password the harness gives the `sluice` binary through `SLUICE_PASSWORD`.
pub const SLUICE_TEST_PASSWORD: &str = "sluice_test_pw";

const START_ATTEMPTS: usize = 4;

// ---------------------------------------------------------------------------
// small helpers
// ---------------------------------------------------------------------------

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read, drop).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

pub(super) fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub(super) fn accepts_tcp(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

pub(super) fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// (uid, gid) of a system user, from /etc/passwd.
pub(super) fn user_ids(name: &str) -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            return (
                f[2].parse().expect("uid in /etc/passwd"),
                f[3].parse().expect("gid in /etc/passwd"),
            );
        }
    }
    panic!("system user {name:?} not found in /etc/passwd (is the server package installed?)");
}

/// First existing path among `candidates`, else `name` (looked up in PATH).
pub(super) fn find_bin(name: &str, candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A command that runs `program` as `user` when we are root (via runuser),
/// or as ourselves otherwise.
pub(super) fn command_as(user: &str, program: impl AsRef<Path>) -> Command {
    if is_root() {
        let mut c = Command::new(find_bin(
            "runuser",
            &["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"],
        ));
        c.arg("-u").arg(user).arg("--").arg(program.as_ref());
        c
    } else {
        Command::new(program.as_ref())
    }
}

/// Make `path` owned by the system user `user` (no-op unless root).
pub(super) fn chown_to(path: &Path, user: &str) {
    if is_root() {
        let (uid, gid) = user_ids(user);
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to {user}: {e}", path.display()));
    }
}

/// A temp dir under /tmp (short enough for unix socket paths, and traversable
/// by the postgres/mysql users even if $TMPDIR is private to root).
pub(super) fn server_tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create temp dir in /tmp")
}

pub(super) fn keep_dirs() -> bool {
    std::env::var("SLUICE_TEST_KEEP").is_ok_and(|v| !v.is_empty() && v != "0")
}

pub(super) fn finish_tempdir(dir: TempDir) {
    if keep_dirs() {
        eprintln!("SLUICE_TEST_KEEP: keeping {}", dir.keep().display());
    }
}

/// Runs `cmd` with `input` on its stdin, capturing stdout and stderr.
pub(super) fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_owned();
    // Write from another thread so a large output cannot deadlock us.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for child");
    let _ = writer.join();
    out
}

pub(super) fn output_text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(super) fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

pub(super) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(super) fn print_log_tail_if_panicking(what: &str, path: &Path) {
    if thread::panicking() {
        eprintln!(
            "===== {what} log {} (tail) =====\n{}\n===== end of {what} log =====",
            path.display(),
            tail(&read_lossy(path), 200)
        );
    }
}

pub(super) fn kill_pid(pid: u32, signal: &str) {
    let _ = Command::new(find_bin("kill", &["/usr/bin/kill", "/bin/kill"]))
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub(super) fn wait_child_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------
// SQLSTATE helpers
// ---------------------------------------------------------------------------

/// The SQLSTATE code of a tokio-postgres error ("" if it has none, e.g. an
/// I/O or protocol error).
pub fn sqlstate(err: &tokio_postgres::Error) -> String {
    err.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

pub(super) fn check_err(sql: &str, code: &str, res: Result<(), tokio_postgres::Error>) -> String {
    match res {
        Ok(()) => panic!("expected SQLSTATE {code}, but statement succeeded: {sql}"),
        Err(e) => {
            let got = sqlstate(&e);
            let msg = e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string());
            assert_eq!(
                got, code,
                "wrong SQLSTATE for {sql:?}: got {got:?} ({msg}); full error: {e:?}"
            );
            msg
        }
    }
}

/// Asserts that `sql` (sent with the simple-query protocol, so it may hold
/// several statements) fails with SQLSTATE `code`; returns the error message.
pub async fn expect_err(client: &Client, sql: &str, code: &str) -> String {
    check_err(sql, code, client.batch_execute(sql).await)
}

/// Like [`expect_err`] but sends one statement with the extended protocol
/// (`client.query(sql, &[])`).
pub async fn expect_err_extended(client: &Client, sql: &str, code: &str) -> String {
    let res = client.query(sql, &[]).await.map(|_| ());
    check_err(sql, code, res)
}

/// `DESCRIBE` rows as `column | source type | key position | BigQuery type |
/// confidence`, one string per column (`-` when not in the key).
pub fn describe_summary(describe: &[Vec<Option<String>>]) -> Vec<String> {
    describe
        .iter()
        .map(|r| {
            let text = |i: usize| r[i].as_deref().unwrap_or("-");
            format!("{} | {} | {} | {} | {}", text(0), text(2), text(5), text(7), text(9))
        })
        .collect()
}

/// The rows of a simple query, every value as text (`None` for NULL), or
/// the error.
pub async fn try_rows(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, tokio_postgres::Error> {
    Ok(client
        .simple_query(sql)
        .await?
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect())
}

/// The rows of a simple query, every value as text (`None` for NULL).
/// Panics with the error when the query fails.
pub async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    try_rows(client, sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

/// Polls `sql` (one value) until `done` accepts it and returns it; panics
/// after `timeout`, showing the runs.
pub async fn wait_for(client: &Client, sql: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let value = one(client, sql).await;
        if done(&value) {
            return value;
        }
        if Instant::now() > deadline {
            let runs = rows(
                client,
                "SELECT run_id, job, trigger, status, rows, error FROM sluice.runs",
            )
            .await;
            panic!("timed out waiting for {sql:?} (last value {value:?}); runs: {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first value of the first row of a simple query ("" for NULL).
/// `rows` as `|`-separated text, NULL as `NULL`.
pub fn as_lines(rows: Vec<Vec<Option<String>>>) -> Vec<String> {
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

pub async fn one(client: &Client, sql: &str) -> String {
    rows(client, sql).await[0][0].clone().unwrap_or_default()
}

/// `CREATE CONNECTION shop TYPE postgres` to `pg`'s `shop` database as `etl`.
pub async fn create_shop_connection(client: &Client, pg: &PgServer) {
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password '{ETL_PASSWORD}')",
            pg.port
        ))
        .await
        .unwrap();
}

/// The newest manifest of warehouse table `table` in Sluice's data
/// directory `data_dir`, and its JSON.
pub fn latest_manifest(data_dir: &Path, table: &str) -> (PathBuf, serde_json::Value) {
    let manifests = data_dir.join("warehouse").join(table).join("_manifests");
    let latest = std::fs::read_dir(&manifests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let manifest = serde_json::from_slice(&std::fs::read(&latest).unwrap()).unwrap();
    (latest, manifest)
}

/// Files under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if fs::read(&path)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
        {
            hits.push(path);
        }
    }
    hits
}

/// Connects with `config` and NoTls, spawns the connection task.
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        // Errors after the test dropped the client or killed the server are expected.
        let _ = conn.await;
    });
    Ok(client)
}

/// Copies directory `from` to `to` (which must not exist), as `cp -a`.
pub fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {from:?} {to:?}");
}
