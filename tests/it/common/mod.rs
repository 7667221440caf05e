//! Shared integration-test harness: real PostgreSQL and MariaDB servers and
//! the `sluice` binary, each started on its own free port in its own temp dir.
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

pub mod bqemulator;
pub mod dynamodb;
pub mod emulators;
pub mod redis;
mod replica;

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

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn accepts_tcp(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// (uid, gid) of a system user, from /etc/passwd.
fn user_ids(name: &str) -> (u32, u32) {
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
fn find_bin(name: &str, candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A command that runs `program` as `user` when we are root (via runuser),
/// or as ourselves otherwise.
fn command_as(user: &str, program: impl AsRef<Path>) -> Command {
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
fn chown_to(path: &Path, user: &str) {
    if is_root() {
        let (uid, gid) = user_ids(user);
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to {user}: {e}", path.display()));
    }
}

/// A temp dir under /tmp (short enough for unix socket paths, and traversable
/// by the postgres/mysql users even if $TMPDIR is private to root).
fn server_tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create temp dir in /tmp")
}

fn keep_dirs() -> bool {
    std::env::var("SLUICE_TEST_KEEP").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn finish_tempdir(dir: TempDir) {
    if keep_dirs() {
        eprintln!("SLUICE_TEST_KEEP: keeping {}", dir.keep().display());
    }
}

/// Runs `cmd` with `input` on its stdin, capturing stdout and stderr.
fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
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

fn output_text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn print_log_tail_if_panicking(what: &str, path: &Path) {
    if thread::panicking() {
        eprintln!(
            "===== {what} log {} (tail) =====\n{}\n===== end of {what} log =====",
            path.display(),
            tail(&read_lossy(path), 200)
        );
    }
}

fn kill_pid(pid: u32, signal: &str) {
    let _ = Command::new(find_bin("kill", &["/usr/bin/kill", "/bin/kill"]))
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn wait_child_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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

fn check_err(sql: &str, code: &str, res: Result<(), tokio_postgres::Error>) -> String {
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

/// The rows of a simple query, every value as text (`None` for NULL).
/// Panics with the error when the query fails.
pub async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// The first value of the first row of a simple query ("" for NULL).
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

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/// Directory holding initdb/pg_ctl/psql of the newest PostgreSQL under
/// /usr/lib/postgresql (override with `SLUICE_TEST_PG_BIN`).
pub fn pg_bin_dir() -> PathBuf {
    find_pg_bin_dir().expect("no PostgreSQL server under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

fn find_pg_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("SLUICE_TEST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let bin = e.path().join("bin");
            let Ok(v) = name.parse::<u32>() else { continue };
            if bin.join("initdb").exists() && best.as_ref().is_none_or(|(b, _)| v > *b) {
                best = Some((v, bin));
            }
        }
    }
    best.map(|(_, p)| p)
}

/// A throwaway PostgreSQL cluster.
///
/// Local (unix socket) connections are `trust`; TCP connections need a
/// password (scram-sha-256). Role `etl` / `etl_pw_123` (LOGIN SUPERUSER) owns
/// database `shop`. The server runs with fsync=off, TimeZone=UTC and
/// wal_level=logical (so CDC tests can create replication slots).
pub struct PgServer {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub db: String,
    /// Password of the `postgres` superuser (for TCP; the socket needs none).
    pub admin_password: String,
    /// Temp dir root; also the unix socket directory.
    pub dir: PathBuf,
    bin: PathBuf,
    tmp: Option<TempDir>,
}

impl PgServer {
    /// initdb + pg_ctl start on a free port (~1–3 s). Panics with the server
    /// log on failure.
    pub fn start() -> PgServer {
        let tmp = server_tempdir("sluice-pg-");
        let dir = tmp.path().to_path_buf();
        chown_to(&dir, "postgres");
        let bin = pg_bin_dir();
        let admin_password = "postgres_pw_123".to_owned();
        let pwfile = dir.join("pwfile");
        fs::write(&pwfile, format!("{admin_password}\n")).expect("write pwfile");
        chown_to(&pwfile, "postgres");

        let out = command_as("postgres", bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed:\n{}", output_text(&out));

        let mut pg = PgServer {
            port: 0,
            user: ETL_USER.to_owned(),
            password: ETL_PASSWORD.to_owned(),
            db: ETL_DB.to_owned(),
            admin_password,
            dir,
            bin,
            tmp: Some(tmp),
        };
        pg.start_on_free_port();
        pg.psql_admin_db(
            "postgres",
            &format!(
                "CREATE ROLE {} LOGIN SUPERUSER PASSWORD '{}';\nCREATE DATABASE {} OWNER {};\n",
                pg.user, pg.password, pg.db, pg.user
            ),
        );
        pg
    }

    fn start_on_free_port(&mut self) {
        for attempt in 1..=START_ATTEMPTS {
            self.port = free_port();
            match self.pg_ctl_start() {
                Ok(()) => return,
                Err(out) => {
                    let log = self.log_contents();
                    let port_clash = log.contains("could not bind") || log.contains("already in use");
                    if !port_clash || attempt == START_ATTEMPTS {
                        panic!(
                            "pg_ctl start failed on port {}:\n{}\n--- pg.log ---\n{}",
                            self.port,
                            output_text(&out),
                            tail(&log, 100)
                        );
                    }
                }
            }
        }
    }

    fn pg_ctl_start(&self) -> Result<(), Output> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c shared_buffers=32MB -c TimeZone=UTC \
             -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10",
            self.port,
            self.dir.display()
        );
        let out = command_as("postgres", self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.log_path())
            .arg("-o")
            .arg(opts)
            .args(["-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl");
        if out.status.success() { Ok(()) } else { Err(out) }
    }

    /// Always "127.0.0.1".
    pub fn host(&self) -> String {
        "127.0.0.1".to_owned()
    }

    /// Path of the server log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("pg.log")
    }

    pub fn log_contents(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// libpq key/value connection string for etl over TCP.
    pub fn conn_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={} password={} dbname={}",
            self.port, self.user, self.password, self.db
        )
    }

    /// `postgres://etl:etl_pw_123@127.0.0.1:PORT/shop`
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            self.user, self.password, self.port, self.db
        )
    }

    /// tokio-postgres config for etl over TCP.
    pub fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.db)
            .connect_timeout(Duration::from_secs(10));
        c
    }

    /// A client connected as etl over TCP to `shop` (connection task spawned).
    pub async fn client(&self) -> Client {
        connect(&self.config())
            .await
            .unwrap_or_else(|e| panic!("connect to test postgres on {}: {e:?}", self.port))
    }

    fn psql_cmd(&self, db: &str) -> Command {
        let psql = self.bin.join("psql");
        let mut c = Command::new(if psql.exists() { psql } else { PathBuf::from("psql") });
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-f", "-"])
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS");
        c
    }

    /// Runs `sql` (any number of statements) in database `shop` as the
    /// `postgres` superuser over the unix socket; panics on error. Returns
    /// stdout in unaligned tuples-only form (`psql -qAt`): one row per line,
    /// columns separated by `|`.
    pub fn psql_admin(&self, sql: &str) -> String {
        self.psql_admin_db(&self.db.clone(), sql)
    }

    /// [`psql_admin`](Self::psql_admin) in another database.
    pub fn psql_admin_db(&self, db: &str, sql: &str) -> String {
        let out = run_with_stdin(&mut self.psql_cmd(db), sql);
        assert!(
            out.status.success(),
            "psql_admin failed for:\n{sql}\n{}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server (`pg_ctl -m fast stop`). It can be started again
    /// on the same port with [`start_again`](Self::start_again).
    pub fn stop(&self) {
        let _ = command_as("postgres", self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .stdin(Stdio::null())
            .output();
    }

    /// Starts a stopped server again on the same port; panics if it fails.
    pub fn start_again(&self) {
        if let Err(out) = self.pg_ctl_start() {
            panic!(
                "pg_ctl start (again) failed on port {}:\n{}\n--- pg.log ---\n{}",
                self.port,
                output_text(&out),
                tail(&self.log_contents(), 100)
            );
        }
    }

    fn postmaster_pid(&self) -> Option<u32> {
        let s = fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        s.lines().next()?.trim().parse().ok()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        print_log_tail_if_panicking("postgres", &self.log_path());
        let pid = self.postmaster_pid();
        let stopped = command_as("postgres", self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if let (false, Some(pid)) = (stopped, pid) {
            kill_pid(pid, "KILL");
        }
        if let Some(tmp) = self.tmp.take() {
            finish_tempdir(tmp);
        }
    }
}

// ---------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------

/// Runs mariadb-install-db for a data dir under `dir`, as the mysql user.
fn install_mariadb_data_dir(dir: &Path) -> Output {
    command_as(
        "mysql",
        find_bin(
            "mariadb-install-db",
            &["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"],
        ),
    )
    .arg("--no-defaults")
    .arg(format!("--datadir={}", dir.join("data").display()))
    .args([
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        "--skip-name-resolve",
    ])
    .stdin(Stdio::null())
    .output()
    .expect("run mariadb-install-db")
}

/// A throwaway MariaDB server (`mariadbd --no-defaults`).
///
/// Users `etl`@`%` and `etl`@`localhost` with password `etl_pw_123` have all
/// privileges; database `shop` exists. Server charset is utf8mb4 (with
/// --no-defaults it would otherwise be latin1), name resolution is off,
/// InnoDB does not flush at commit, and the binlog is on in ROW format
/// (server-id 1) so CDC tests can read it.
pub struct MariaDb {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub db: String,
    /// Temp dir root (data dir, socket, logs).
    pub dir: PathBuf,
    /// The server's self-signed TLS certificate, when started with TLS.
    pub tls_cert: Option<PathBuf>,
    child: Option<Child>,
    tmp: Option<TempDir>,
}

impl MariaDb {
    /// mariadb-install-db + mariadbd on a free port; waits (up to 60 s) until
    /// root can run a query over the socket. Panics with the error log on failure.
    pub fn start() -> MariaDb {
        Self::start_inner(false)
    }

    /// Like [`start`](Self::start), with TLS offered under a self-signed
    /// certificate for `127.0.0.1` and `localhost` (made by `openssl` in the
    /// temp dir; [`tls_cert`](Self::tls_cert) is its path).
    pub fn start_with_tls() -> MariaDb {
        Self::start_inner(true)
    }

    fn start_inner(tls: bool) -> MariaDb {
        let tmp = server_tempdir("sluice-maria-");
        let dir = tmp.path().to_path_buf();
        chown_to(&dir, "mysql");
        // mariadb-install-db's bootstrap server occasionally crashes (signal 11)
        // on a loaded machine; a fresh attempt in a clean data dir succeeds.
        let mut out = install_mariadb_data_dir(&dir);
        for _ in 1..START_ATTEMPTS {
            if out.status.success() {
                break;
            }
            let _ = fs::remove_dir_all(dir.join("data"));
            out = install_mariadb_data_dir(&dir);
        }
        assert!(
            out.status.success(),
            "mariadb-install-db failed:\n{}",
            output_text(&out)
        );

        let mut m = MariaDb {
            port: 0,
            user: ETL_USER.to_owned(),
            password: ETL_PASSWORD.to_owned(),
            db: ETL_DB.to_owned(),
            tls_cert: tls.then(|| self_signed_certificate(&dir, "mysql")),
            dir,
            child: None,
            tmp: Some(tmp),
        };
        for attempt in 1..=START_ATTEMPTS {
            m.port = free_port();
            match m.spawn_and_wait() {
                Ok(()) => break,
                Err(why) => {
                    let log = m.log_contents();
                    let port_clash = log.contains("Can't start server: Bind") || log.contains("Address already in use");
                    if !port_clash || attempt == START_ATTEMPTS {
                        panic!(
                            "mariadbd did not start on port {}: {why}\n--- err.log ---\n{}",
                            m.port,
                            tail(&log, 100)
                        );
                    }
                }
            }
        }
        m.sql_db(
            "mysql",
            &format!(
                "CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4;\n\
             CREATE USER '{u}'@'%' IDENTIFIED BY '{p}';\n\
             CREATE USER '{u}'@'localhost' IDENTIFIED BY '{p}';\n\
             GRANT ALL PRIVILEGES ON *.* TO '{u}'@'%' WITH GRANT OPTION;\n\
             GRANT ALL PRIVILEGES ON *.* TO '{u}'@'localhost' WITH GRANT OPTION;\n\
             FLUSH PRIVILEGES;\n",
                db = m.db,
                u = m.user,
                p = m.password
            ),
        );
        m
    }

    /// Spawns mariadbd on `self.port`, waits until it answers over the socket.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        // Clear a previous run's error log so port-clash detection is accurate.
        let _ = fs::remove_file(self.log_path());
        let mut cmd = Command::new(find_bin(
            "mariadbd",
            &["/usr/sbin/mariadbd", "/usr/sbin/mysqld", "/usr/bin/mariadbd"],
        ));
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", self.dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", self.log_path().display()))
            .args([
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--innodb-buffer-pool-size=64M",
                "--server-id=1",
                "--log-bin=mysql-bin",
                "--binlog-format=ROW",
            ])
            .args(self.tls_cert.iter().flat_map(|cert| {
                [
                    format!("--ssl-cert={}", cert.display()),
                    format!("--ssl-key={}", cert.with_extension("key").display()),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            // Run mariadbd itself as mysql (no runuser in between), so the
            // Child is the server and can be killed directly.
            let (uid, gid) = user_ids("mysql");
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().map_err(|e| format!("spawn mariadbd: {e}"))?;
        self.child = Some(child);

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("mariadbd exited early: {st}"));
            }
            let ok = self
                .root_cli()
                .args(["-e", "SELECT 1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill_child();
                return Err("not ready after 60 s".to_owned());
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn kill_child(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn root_cli(&self) -> Command {
        let mut c = Command::new(find_bin("mariadb", &["/usr/bin/mariadb", "/usr/bin/mysql"]));
        c.arg("--no-defaults")
            .arg("--default-character-set=utf8mb4")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root"]);
        c
    }

    /// Always "127.0.0.1".
    pub fn host(&self) -> String {
        "127.0.0.1".to_owned()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// Path of the server's error log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("err.log")
    }

    pub fn log_contents(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// `mysql://etl:etl_pw_123@127.0.0.1:PORT/shop`
    pub fn url(&self) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{}/{}",
            self.user, self.password, self.port, self.db
        )
    }

    /// Runs `sql` (any number of `;`-separated statements) as root over the
    /// socket, with `shop` as the current database; panics on error. Returns
    /// stdout in batch form (`-N -B`): one row per line, tab-separated.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_db(&self.db.clone(), sql)
    }

    /// [`sql`](Self::sql) with another current database.
    pub fn sql_db(&self, db: &str, sql: &str) -> String {
        let mut cmd = self.root_cli();
        cmd.args(["-N", "-B", db]);
        let out = run_with_stdin(&mut cmd, sql);
        assert!(
            out.status.success(),
            "mariadb sql failed for:\n{sql}\n{}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the `mariadb` CLI as etl over TCP (127.0.0.1:port, database
    /// `shop`, `-N -B -e sql`); returns the raw output (does not panic).
    pub fn cli_tcp(&self, sql: &str) -> Output {
        Command::new(find_bin("mariadb", &["/usr/bin/mariadb", "/usr/bin/mysql"]))
            .arg("--no-defaults")
            .arg("--default-character-set=utf8mb4")
            .args(["--protocol=TCP", "-h", "127.0.0.1", "-P"])
            .arg(self.port.to_string())
            .args(["-u", &self.user])
            .arg(format!("-p{}", self.password))
            .args(["-N", "-B", &self.db, "-e", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb cli")
    }

    /// Kills the server (SIGKILL). [`start_again`](Self::start_again) brings
    /// it back on the same port.
    pub fn stop(&mut self) {
        self.kill_child();
    }

    /// Starts a stopped server again on the same port; panics on failure.
    pub fn start_again(&mut self) {
        self.kill_child();
        if let Err(why) = self.spawn_and_wait() {
            panic!(
                "mariadbd did not start again on port {}: {why}\n--- err.log ---\n{}",
                self.port,
                tail(&self.log_contents(), 100)
            );
        }
    }
}

/// A self-signed certificate (`server.crt`, key `server.key`) in `dir` for
/// `127.0.0.1` and `localhost`, readable by `owner`: a certificate that
/// rustls accepts when it is given as the trusted CA itself.
fn self_signed_certificate(dir: &Path, owner: &str) -> PathBuf {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "openssl req failed:\n{}", output_text(&out));
    chown_to(&cert, owner);
    chown_to(&key, owner);
    cert
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        print_log_tail_if_panicking("mariadb", &self.log_path());
        self.kill_child();
        if let Some(tmp) = self.tmp.take() {
            finish_tempdir(tmp);
        }
    }
}

// ---------------------------------------------------------------------------
// Sluice
// ---------------------------------------------------------------------------

/// How to start the sluice binary. `Default` = the plain `Sluice::start()`.
#[derive(Clone, Debug)]
pub struct SluiceOpts {
    /// Extra arguments after `serve --listen 127.0.0.1:PORT --data-dir DIR`.
    pub args: Vec<String>,
    /// Extra environment variables (applied last, so they override the
    /// harness defaults, including `SLUICE_PASSWORD`).
    pub envs: Vec<(String, String)>,
    /// Environment variables to remove (applied after `envs`).
    pub env_remove: Vec<String>,
    /// Password given as `SLUICE_PASSWORD` and used by `client()`/`psql()`.
    pub password: String,
    /// Use this data dir instead of `<tempdir>/data` (not removed on drop).
    pub data_dir: Option<PathBuf>,
    /// Wait until a tokio-postgres login as admin succeeds (default true).
    /// When false, only waits until the port accepts TCP.
    pub wait_for_login: bool,
    /// Startup timeout (default 30 s).
    pub timeout: Duration,
}

impl Default for SluiceOpts {
    fn default() -> Self {
        SluiceOpts {
            args: Vec::new(),
            envs: Vec::new(),
            env_remove: Vec::new(),
            password: SLUICE_TEST_PASSWORD.to_owned(),
            data_dir: None,
            wait_for_login: true,
            timeout: Duration::from_secs(30),
        }
    }
}

impl SluiceOpts {
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_owned());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn env_remove(mut self, k: &str) -> Self {
        self.env_remove.push(k.to_owned());
        self
    }

    /// The effective admin password (an `envs` override of SLUICE_PASSWORD wins).
    fn effective_password(&self) -> String {
        self.envs
            .iter()
            .rev()
            .find(|(k, _)| k == "SLUICE_PASSWORD")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| self.password.clone())
    }
}

/// The binary under test: `SLUICE_TEST_BIN` when set (a copy, safe from other
/// builds sharing the target dir), else the one cargo built.
fn sluice_binary() -> String {
    std::env::var("SLUICE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").to_owned())
}

/// `--allowed-paths` for tests: the system temp dir and the working directory.
fn allowed_test_paths() -> String {
    let cwd = std::env::current_dir().expect("working directory");
    format!("{},{}", std::env::temp_dir().display(), cwd.display())
}

/// The `sluice` binary running as a child process.
///
/// Layout: `<tmp>/data` is the data dir, `<tmp>/sluice.log` gets stdout and
/// stderr (appended across restarts, with a marker line per start).
/// `SLUICE_MASTER_KEY` is removed from the environment, so the key file is
/// created in the data dir. Note the readiness probe logs in once as `admin`.
pub struct Sluice {
    pub port: u16,
    /// Options used for (re)starts; tests may change them before `restart()`.
    pub opts: SluiceOpts,
    child: Option<Child>,
    data_dir: PathBuf,
    log_path: PathBuf,
    tmp: Option<TempDir>,
}

impl Sluice {
    /// `sluice serve` with the default options; panics (with the log) if it
    /// does not accept an admin login within 30 s.
    pub fn start() -> Sluice {
        Self::start_opts(SluiceOpts::default())
    }

    /// Like [`start`](Self::start) with extra CLI args and env vars.
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Sluice {
        let opts = SluiceOpts {
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..SluiceOpts::default()
        };
        Self::start_opts(opts)
    }

    pub fn start_opts(opts: SluiceOpts) -> Sluice {
        Self::try_start_opts(opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts sluice; on failure returns an error text that includes the log
    /// (use this to test that bad configurations refuse to start).
    pub fn try_start_opts(opts: SluiceOpts) -> Result<Sluice, String> {
        let tmp = tempfile::Builder::new()
            .prefix("sluice-srv-")
            .tempdir()
            .map_err(|e| format!("create temp dir: {e}"))?;
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| tmp.path().join("data"));
        let log_path = tmp.path().join("sluice.log");
        let mut s = Sluice {
            port: free_port(),
            opts,
            child: None,
            data_dir,
            log_path,
            tmp: Some(tmp),
        };
        s.spawn_with_port_retries()?;
        Ok(s)
    }

    fn spawn_with_port_retries(&mut self) -> Result<(), String> {
        for attempt in 1..=START_ATTEMPTS {
            let log_len_before = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let log = read_lossy(&self.log_path);
                    let new_part = log.get(log_len_before as usize..).unwrap_or(&log);
                    let port_clash = new_part.contains("in use") || new_part.contains("AddrInUse");
                    if !port_clash || attempt == START_ATTEMPTS {
                        return Err(e);
                    }
                    self.port = free_port();
                }
            }
        }
        unreachable!()
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open {}: {e}", self.log_path.display()))?;
        let _ = writeln!(log, "===== harness: starting sluice on 127.0.0.1:{} =====", self.port);
        let log_err = log.try_clone().map_err(|e| format!("clone log fd: {e}"))?;

        let mut cmd = Command::new(sluice_binary());
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.opts.args)
            .env("SLUICE_PASSWORD", &self.opts.password)
            // No demo set-up unless a test asks for it (SLUICE_DEMO_DIR in envs).
            .env("SLUICE_DEMO_DIR", "")
            // Metrics on a free port; `metrics_url()` finds it in the log.
            .env("SLUICE_METRICS_LISTEN", "127.0.0.1:0")
            // Tests keep their local files in temp dirs; the demo lives under the cwd.
            .env("SLUICE_ALLOWED_PATHS", allowed_test_paths())
            .env_remove("SLUICE_MASTER_KEY");
        for (k, v) in &self.opts.envs {
            cmd.env(k, v);
        }
        for k in &self.opts.env_remove {
            cmd.env_remove(k);
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", sluice_binary()))?;
        self.child = Some(child);

        let deadline = Instant::now() + self.opts.timeout;
        let mut last_err = String::from("port never accepted TCP");
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!(
                    "sluice exited early ({st}) on port {}; log {}:\n{}",
                    self.port,
                    self.log_path.display(),
                    tail(&self.log_contents(), 200)
                ));
            }
            // The log line proves the port is this server's, not another
            // process's that took the free port meanwhile.
            if accepts_tcp(self.port) && self.printed_listening() {
                if !self.opts.wait_for_login {
                    return Ok(());
                }
                match probe_login(self.config()) {
                    Ok(()) => return Ok(()),
                    Err(e) => last_err = format!("login probe failed: {e}"),
                }
            }
            if Instant::now() > deadline {
                self.kill_child();
                return Err(format!(
                    "sluice not ready on port {} after {:?} ({last_err}); log {}:\n{}",
                    self.port,
                    self.opts.timeout,
                    self.log_path.display(),
                    tail(&self.log_contents(), 200)
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether this start's log says the server listens on its port.
    fn printed_listening(&self) -> bool {
        let log = self.log_contents();
        let this_start = log.rsplit("===== harness: starting sluice").next().unwrap_or_default();
        this_start.contains(&format!("listening on 127.0.0.1:{} ", self.port))
    }

    fn kill_child(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The metrics endpoint of the latest start, from the log.
    pub fn metrics_url(&self) -> String {
        let log = self.log_contents();
        let line = log
            .lines()
            .rev()
            .find(|l| l.starts_with("Metrics at "))
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{}", tail(&log, 50)));
        line.trim_start_matches("Metrics at ").trim().to_owned()
    }

    /// The admin password in effect.
    pub fn password(&self) -> String {
        self.opts.effective_password()
    }

    /// tokio-postgres config: admin / password / dbname sluice on 127.0.0.1:port.
    pub fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user("admin")
            .password(self.password())
            .dbname("sluice")
            .connect_timeout(Duration::from_secs(10));
        c
    }

    /// A client logged in as admin (NoTls, connection task spawned).
    pub async fn client(&self) -> Client {
        match connect(&self.config()).await {
            Ok(c) => c,
            Err(e) => panic!(
                "connect to sluice on {}: {e:?}\nlog:\n{}",
                self.port,
                tail(&self.log_contents(), 100)
            ),
        }
    }

    /// Connects as admin and returns the result (for tests of login failures).
    pub async fn try_client(&self) -> Result<Client, tokio_postgres::Error> {
        connect(&self.config()).await
    }

    fn psql_command(&self) -> Command {
        let psql = find_pg_bin_dir()
            .map(|d| d.join("psql"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let mut c = Command::new(psql);
        c.args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", "admin", "-d", "sluice"])
            .env("PGPASSWORD", self.password())
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .env_remove("PGSSLMODE");
        c
    }

    /// Runs SQL through `psql` (fed on stdin, so psql splits statements as
    /// it would for a file). Does not panic; inspect the Output.
    pub fn psql(&self, sql: &str) -> Output {
        let mut c = self.psql_command();
        c.args(["-f", "-"]);
        run_with_stdin(&mut c, sql)
    }

    /// Runs `psql -f path`.
    pub fn psql_file(&self, path: impl AsRef<Path>) -> Output {
        let mut c = self.psql_command();
        c.arg("-f").arg(path.as_ref()).stdin(Stdio::null());
        c.output().expect("run psql")
    }

    /// Runs psql with extra arguments (e.g. `&["-At", "-c", "select 1"]`).
    pub fn psql_args(&self, args: &[&str]) -> Output {
        let mut c = self.psql_command();
        c.args(args).stdin(Stdio::null());
        c.output().expect("run psql")
    }

    /// SIGKILL the server and reap it.
    pub fn kill9(&mut self) {
        self.kill_child();
    }

    /// SIGTERM the server and wait up to 30 s for it to exit; returns its
    /// exit status (panics if it did not exit).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("sluice is not running");
        kill_pid(child.id(), "TERM");
        match wait_child_timeout(&mut child, Duration::from_secs(30)) {
            Some(st) => st,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sluice did not exit within 30 s of SIGTERM; log:\n{}",
                    tail(&self.log_contents(), 100)
                );
            }
        }
    }

    /// Runs `sql` on `client`, which reaches a failpoint that aborts the
    /// server, and waits (up to 20 s) until the process is gone.
    pub async fn run_into_failpoint(&mut self, client: &Client, sql: &str) {
        assert!(
            client.simple_query(sql).await.is_err(),
            "the failpoint ends the statement: {sql}"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.is_running() {
            assert!(Instant::now() < deadline, "the failpoint did not stop the server");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Restarts the server without `SLUICE_FAILPOINTS` and connects.
    pub async fn restart_without_failpoints(&mut self) -> Client {
        self.opts.envs.retain(|(k, _)| k != "SLUICE_FAILPOINTS");
        self.restart();
        self.client().await
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The child's pid, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// (Re)starts sluice on the same data dir (killing it first if it is
    /// still running) with `self.opts`; same port if still free, else a new
    /// one (`self.port` is updated). Panics with the log on failure.
    pub fn restart(&mut self) {
        self.kill_child();
        if !port_is_free(self.port) {
            self.port = free_port();
        }
        if let Err(e) = self.spawn_with_port_retries() {
            panic!("restart failed: {e}");
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn log_contents(&self) -> String {
        read_lossy(&self.log_path)
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        print_log_tail_if_panicking("sluice", &self.log_path);
        self.kill_child();
        if let Some(tmp) = self.tmp.take() {
            finish_tempdir(tmp);
        }
    }
}

/// One login attempt from a private thread + runtime, so it works whether or
/// not the caller is inside a tokio runtime.
fn probe_login(config: tokio_postgres::Config) -> Result<(), String> {
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            // connect() returns once startup and authentication completed
            // (ReadyForQuery); no query is needed.
            let fut = async {
                let (client, conn) = config.connect(NoTls).await?;
                drop(client);
                let _ = conn.await;
                Ok::<(), tokio_postgres::Error>(())
            };
            match tokio::time::timeout(Duration::from_secs(10), fut).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{e:?}")),
                Err(_) => Err("timed out".to_owned()),
            }
        })
    })
    .join()
    .unwrap_or_else(|_| Err("probe thread panicked".to_owned()))
}
