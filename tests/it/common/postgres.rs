//! PostgreSQL servers for tests: a primary per test, started on a free port.

use super::*;

/// Directory holding initdb/pg_ctl/psql of the newest PostgreSQL under
/// /usr/lib/postgresql (override with `SLUICE_TEST_PG_BIN`).
pub fn pg_bin_dir() -> PathBuf {
    find_pg_bin_dir().expect("no PostgreSQL server under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

pub(super) fn find_pg_bin_dir() -> Option<PathBuf> {
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
    pub(super) bin: PathBuf,
    /// Extra `-c name=value` server settings.
    pub(super) settings: String,
    pub(super) tmp: Option<TempDir>,
}

impl PgServer {
    /// initdb + pg_ctl start on a free port (~1–3 s). Panics with the server
    /// log on failure.
    pub fn start() -> PgServer {
        Self::start_with_settings(&[])
    }

    /// [`start`](Self::start) with extra server settings, each `name=value`
    /// (no spaces), e.g. `log_statement=all`.
    pub fn start_with_settings(settings: &[&str]) -> PgServer {
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
            settings: settings.iter().map(|s| format!(" -c {s}")).collect(),
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

    pub(super) fn start_on_free_port(&mut self) {
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
             -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10{}",
            self.port,
            self.dir.display(),
            self.settings
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
