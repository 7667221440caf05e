//! The `sluice` binary under test: started on a free port with its own data
//! directory, optional failpoints, and helpers for the clients that talk to it.

use super::*;

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
pub(crate) fn sluice_binary() -> String {
    std::env::var("SLUICE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").to_owned())
}

/// `--allowed-paths` for tests: the system temp dir and the working directory.
pub(super) fn allowed_test_paths() -> String {
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

    /// The metrics text, scraped now (with the HTTP response head).
    pub fn metrics(&self) -> String {
        let url = self.metrics_url();
        let address = url.trim_start_matches("http://").trim_end_matches("/metrics");
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
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
pub(super) fn probe_login(config: tokio_postgres::Config) -> Result<(), String> {
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
