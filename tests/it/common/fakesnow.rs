//! fakesnow (PyPI: Snowflake's connector REST protocol over DuckDB, written
//! by a third party) in server mode on a free loopback port, killed on
//! `Drop`. Installed (once, cached) by `scripts/install-emulators.sh`
//! together with `snowflake-connector-python`, which [`FakeSnow::sql`]
//! uses to seed data through the same protocol Sluice speaks.
//!
//! It accepts any credentials, creates a database on first login, answers
//! every result inline as one Arrow block (no chunks, no polling) and has
//! no transactions visible to other sessions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::emulators::tools;
use super::{accepts_tcp, free_port, output_text, tail};

/// A running fakesnow server; every session shares one in-memory DuckDB.
pub struct FakeSnow {
    /// `http://127.0.0.1:port`, for the connection's `endpoint` option.
    pub url: String,
    pub port: u16,
    child: Child,
    log: PathBuf,
    _tmp: TempDir,
}

/// Whether `child` still runs after `wait`.
fn still_running_after(child: &mut std::process::Child, wait: Duration) -> bool {
    std::thread::sleep(wait);
    child.try_wait().unwrap().is_none()
}

impl FakeSnow {
    /// Starts fakesnow (about 3 s).
    pub fn start() -> FakeSnow {
        let tools = tools();
        let tmp = tempfile::Builder::new().prefix("sluice-fakesnow-").tempdir().unwrap();
        let log = tmp.path().join("fakesnow.log");
        for _ in 0..4 {
            let port = free_port();
            let file = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(tools.join("fakesnow-venv/bin/fakesnow"))
                .args(["-s", "--host", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(tmp.path())
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("start fakesnow");
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                // Another server may have taken the free port first: then
                // fakesnow exits for want of its address, soon after.
                if accepts_tcp(port) && still_running_after(&mut child, Duration::from_millis(500)) {
                    return FakeSnow {
                        url: format!("http://127.0.0.1:{port}"),
                        port,
                        child,
                        log,
                        _tmp: tmp,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("fakesnow did not start:\n{}", tail(&read(&log), 50));
    }

    /// Runs `statements` (one per element) in database `database`, schema
    /// `PUBLIC`, through snowflake-connector-python, and returns the rows
    /// of the last one as text (`None` for NULL).
    pub fn sql(&self, database: &str, statements: &[&str]) -> Vec<Vec<Option<String>>> {
        let code = "import sys, json, snowflake.connector\n\
                    port, database = int(sys.argv[1]), sys.argv[2]\n\
                    con = snowflake.connector.connect(user='seed', password='seed', account='fakesnow', \
                    host='127.0.0.1', port=port, protocol='http', database=database, schema='PUBLIC')\n\
                    cur = con.cursor()\n\
                    rows = []\n\
                    for statement in json.load(sys.stdin):\n    cur.execute(statement)\n    rows = cur.fetchall()\n\
                    print(json.dumps([[None if v is None else str(v) for v in row] for row in rows]))\n";
        let mut child = Command::new(tools().join("fakesnow-venv/bin/python"))
            .args(["-c", code, &self.port.to_string(), database])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let input = serde_json::to_string(statements).unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{statements:?}:\n{}", output_text(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or("[]");
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for FakeSnow {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- fakesnow log ---\n{}", tail(&read(&self.log), 40));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
