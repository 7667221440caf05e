//! MariaDB servers for tests, optionally with TLS and the binary log.

use super::*;

/// Runs mariadb-install-db for a data dir under `dir`, as the mysql user.
pub(super) fn install_mariadb_data_dir(dir: &Path) -> Output {
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
    /// Options after the standard ones (a later option wins).
    extra_args: Vec<String>,
    child: Option<Child>,
    tmp: Option<TempDir>,
}

impl MariaDb {
    /// mariadb-install-db + mariadbd on a free port; waits (up to 60 s) until
    /// root can run a query over the socket. Panics with the error log on failure.
    pub fn start() -> MariaDb {
        Self::start_inner(false, &[])
    }

    /// Like [`start`](Self::start), with the binary log off
    /// (`--skip-log-bin`).
    pub fn start_without_binlog() -> MariaDb {
        Self::start_inner(false, &["--skip-log-bin"])
    }

    /// Like [`start`](Self::start), with TLS offered under a self-signed
    /// certificate for `127.0.0.1` and `localhost` (made by `openssl` in the
    /// temp dir; [`tls_cert`](Self::tls_cert) is its path).
    pub fn start_with_tls() -> MariaDb {
        Self::start_inner(true, &[])
    }

    fn start_inner(tls: bool, extra_args: &[&str]) -> MariaDb {
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
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
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
                // Column names in the binlog: CDC follows schema changes.
                "--binlog-row-metadata=FULL",
            ])
            .args(self.tls_cert.iter().flat_map(|cert| {
                [
                    format!("--ssl-cert={}", cert.display()),
                    format!("--ssl-key={}", cert.with_extension("key").display()),
                ]
            }))
            .args(&self.extra_args)
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

    /// A replica of this server with its own binlog (`--log-slave-updates`,
    /// server-id 2), started on a free port: it forgets what its own set-up
    /// logged and replicates everything from this server's first GTID
    /// (`MASTER_USE_GTID = slave_pos`), users and database included. Waits
    /// until it has caught up.
    pub fn start_replica(&self) -> MariaDb {
        let replica = Self::start_inner(false, &["--server-id=2", "--log-slave-updates"]);
        replica.sql_db(
            "mysql",
            &format!(
                "DROP USER '{u}'@'%'; DROP USER '{u}'@'localhost'; DROP DATABASE {db}; RESET MASTER; \
                 SET GLOBAL gtid_slave_pos = ''; \
                 CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {port}, MASTER_USER = '{u}', \
                 MASTER_PASSWORD = '{p}', MASTER_USE_GTID = slave_pos; START SLAVE;",
                u = self.user,
                p = self.password,
                db = self.db,
                port = self.port
            ),
        );
        replica.catch_up_with(self);
        replica
    }

    /// Waits (up to 60 s) until this replica has applied everything in
    /// `primary`'s binlog (`MASTER_GTID_WAIT`).
    pub fn catch_up_with(&self, primary: &MariaDb) {
        let position = primary.sql("SELECT @@gtid_binlog_pos;");
        let waited = self.sql_db("mysql", &format!("SELECT MASTER_GTID_WAIT('{}', 60);", position.trim()));
        assert_eq!(
            waited.trim(),
            "0",
            "the replica did not catch up with {position}: {}",
            self.sql_db("mysql", "SHOW SLAVE STATUS\\G")
        );
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
pub(super) fn self_signed_certificate(dir: &Path, owner: &str) -> PathBuf {
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
