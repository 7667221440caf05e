//! bqemulator (PyPI: a BigQuery REST API over DuckDB, written by a third
//! party), on free loopback ports in a temp dir, killed on `Drop`. Installed
//! (once, cached) by `scripts/install-emulators.sh` together with the DuckDB
//! extensions it loads at start, so that it never downloads anything.
//!
//! It checks no token: the tests still sign in against the project's fake
//! (whose key file's `token_uri` they use). Its known gaps (it ignores the
//! job id of uploads, re-runs a repeated job id, keeps `numRows` stale
//! after copy jobs, has no BIGNUMERIC) are covered by the project's own fake.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::emulators::tools;
use super::{accepts_tcp, free_port, output_text, tail};

/// A running bqemulator serving one project.
pub struct BqEmulator {
    /// The REST root (`http://127.0.0.1:port`), for `SLUICE_BIGQUERY_ENDPOINT`.
    pub url: String,
    /// The gRPC root (`http://127.0.0.1:port`, the Storage Read API), for
    /// `SLUICE_BIGQUERY_STORAGE_ENDPOINT`.
    pub grpc_url: String,
    pub project: String,
    child: Child,
    log: PathBuf,
    _tmp: TempDir,
}

impl BqEmulator {
    /// Starts the emulator for `project` (about 5 s).
    pub fn start(project: &str) -> BqEmulator {
        let tools = tools();
        let tmp = tempfile::Builder::new().prefix("sluice-bqemu-").tempdir().unwrap();
        let log = tmp.path().join("bqemulator.log");
        for _ in 0..4 {
            let (rest, grpc) = (free_port(), free_port());
            let file = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(tools.join("bqemu-venv/bin/bqemulator"))
                .args(["start", "--rest-host", "127.0.0.1", "--rest-port", &rest.to_string()])
                .args(["--grpc-host", "127.0.0.1", "--grpc-port", &grpc.to_string()])
                .args(["--ephemeral", "--project", project])
                .env("HOME", tools.join("bqemu-home"))
                .env("BQEMU_UPLOAD_STAGING_DIR", tmp.path().join("uploads"))
                .current_dir(tmp.path())
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("start bqemulator");
            let deadline = Instant::now() + Duration::from_secs(90);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                // Both ports: another process may take the gRPC port (picked
                // free) before the emulator binds it, which ends the emulator
                // after its REST port came up; it is started again on others.
                if accepts_tcp(rest) && accepts_tcp(grpc) {
                    return BqEmulator {
                        url: format!("http://127.0.0.1:{rest}"),
                        grpc_url: format!("http://127.0.0.1:{grpc}"),
                        project: project.to_owned(),
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
        panic!("bqemulator did not start:\n{}", tail(&read(&log), 50));
    }

    /// Runs a GoogleSQL query through the emulator's own `jobs.query` API and
    /// returns its rows as text (`None` for NULL), in the order returned.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let body = serde_json::json!({"query": sql, "useLegacySql": false}).to_string();
        let url = format!("{}/bigquery/v2/projects/{}/queries", self.url, self.project);
        let answer = post_json(&self.python(), &url, &body);
        let answer: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert!(answer.get("error").is_none(), "{sql}: {answer}");
        answer["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        row["f"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|cell| cell["v"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn python(&self) -> PathBuf {
        tools().join("bqemu-venv/bin/python")
    }
}

/// POSTs `body` as JSON to `url` and returns the answer's body, whatever its
/// status (the emulator's venv has Python; curl may not be installed).
fn post_json(python: &Path, url: &str, body: &str) -> String {
    let code = "import sys, urllib.request, urllib.error\n\
                req = urllib.request.Request(sys.argv[1], data=sys.stdin.buffer.read(), \
                headers={'Content-Type': 'application/json'})\n\
                try:\n    print(urllib.request.urlopen(req, timeout=60).read().decode())\n\
                except urllib.error.HTTPError as e:\n    print(e.read().decode())\n";
    let mut child = Command::new(python)
        .args(["-c", code, url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "POST {url}:\n{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for BqEmulator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- bqemulator log ---\n{}", tail(&read(&self.log), 40));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
