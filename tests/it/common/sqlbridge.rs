//! pysqlbridge (PyPI: a read-only TDS server over CSV files, written by a
//! third party), the stand-in for SQL Server and Synapse: on a free loopback
//! port in a temp dir with one SQL login, killed on `Drop`. Installed (once,
//! cached) by `scripts/install-emulators.sh`.
//!
//! It serves one database (`pysqlbridge`) with one schema (`dbo`), types
//! its columns from the CSV values (int, bigint, float, bit, nvarchar,
//! datetime), encrypts the login with a self-signed certificate, and reads
//! its files once at start: [`SqlBridge::restart`] serves changed files.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::emulators::tools;
use super::{accepts_tcp, free_port, tail};

/// The SQL login the bridge admits, and its password.
pub const BRIDGE_USER: &str = "etl";
pub const BRIDGE_PASSWORD: &str = "bridge_pw_123";
/// The one database and schema the bridge serves.
pub const BRIDGE_DATABASE: &str = "pysqlbridge";

/// Writes a minimal .xlsx (sheet `events`: `id` numbers, `at` date cells).
const EVENTS_WORKBOOK: &str = r#"
import datetime, sys, zipfile
path, n = sys.argv[1], int(sys.argv[2])
start = datetime.datetime(2024, 1, 1)
rows = ['<row r="1"><c r="A1" t="inlineStr"><is><t>id</t></is></c><c r="B1" t="inlineStr"><is><t>at</t></is></c></row>']
for i in range(1, n + 1):
    at = (start + datetime.timedelta(seconds=i, milliseconds=i % 1000)).isoformat(timespec="milliseconds")
    rows.append(f'<row r="{i + 1}"><c r="A{i + 1}"><v>{i}</v></c><c r="B{i + 1}" t="d"><v>{at}</v></c></row>')
main = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
package = "http://schemas.openxmlformats.org/package/2006/relationships"
with zipfile.ZipFile(path, "w") as z:
    z.writestr("_rels/.rels", f'<Relationships xmlns="{package}"><Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
    z.writestr("xl/workbook.xml", f'<workbook {main} xmlns:r="{rel}"><sheets><sheet name="events" sheetId="1" r:id="rId1"/></sheets></workbook>')
    z.writestr("xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{package}"><Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>')
    z.writestr("xl/worksheets/sheet1.xml", f'<worksheet {main}><sheetData>{"".join(rows)}</sheetData></worksheet>')
"#;

/// A running pysqlbridge.
pub struct SqlBridge {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
    /// Whether it runs with the application-lock fake (and `id` keys).
    applocks: bool,
    /// The tables served.
    tables: Vec<String>,
}

/// One call the application-lock fake answered.
#[derive(Debug, Clone)]
pub struct LockCall {
    /// `sp_getapplock`, `sp_releaseapplock`, `APPLOCK_TEST`,
    /// `APPLOCK_MODE`, or `session closed`.
    pub call: String,
    /// The connection that made it.
    pub session: u64,
    /// The lock's name (none for `session closed`).
    pub resource: String,
    /// What the call answered.
    pub answer: serde_json::Value,
}

impl SqlBridge {
    /// Serves `tables` (name, CSV text with a header line) on a free port.
    pub fn start(tables: &[(&str, &str)]) -> SqlBridge {
        Self::start_with_events(tables, None)
    }

    /// Serves `tables` and, with `Some(n)`, the workbook table `events`
    /// (see [`Self::write_events`]): CSV text is never typed as a time, a
    /// workbook's date cells are (`datetime`).
    pub fn start_with_events(tables: &[(&str, &str)], events: Option<i64>) -> SqlBridge {
        Self::start_as(tables, events, false)
    }

    /// Serves `tables` with SQL Server's application locks added
    /// (`tests/fixtures/sqlbridge_applocks.py`), which parallel reads take,
    /// and column `id` of each as its primary key; [`Self::lock_calls`]
    /// lists every lock call made.
    pub fn start_with_applocks(tables: &[(&str, &str)]) -> SqlBridge {
        Self::start_as(tables, None, true)
    }

    fn start_as(tables: &[(&str, &str)], events: Option<i64>, applocks: bool) -> SqlBridge {
        let dir = tempfile::Builder::new().prefix("sluice-sqlbridge-").tempdir().unwrap();
        let mut entries: Vec<String> = tables
            .iter()
            .map(|(name, csv)| {
                std::fs::write(dir.path().join(format!("{name}.csv")), csv).unwrap();
                format!(r#"{{"name": "{name}", "csv": "{name}.csv"}}"#)
            })
            .collect();
        if events.is_some() {
            entries.push(r#"{"excel": "events.xlsx"}"#.to_owned());
        }
        let config = format!(
            r#"{{"logins": [{{"user": "{BRIDGE_USER}", "password": "${{env:BRIDGE_PW}}"}}], "tables": [{}]}}"#,
            entries.join(", ")
        );
        std::fs::write(dir.path().join("tables.json"), config).unwrap();
        let mut bridge = SqlBridge {
            port: free_port(),
            child: None,
            dir,
            applocks,
            tables: tables.iter().map(|(name, _)| (*name).to_owned()).collect(),
        };
        if let Some(n) = events {
            bridge.write_events(n);
        }
        bridge.spawn();
        bridge
    }

    /// Writes the workbook of table `events`: `id` 1..=n and `at` =
    /// 2024-01-01 plus `id` seconds and `id % 1000` milliseconds (served
    /// after [`Self::restart`]).
    pub fn write_events(&self, n: i64) {
        let out = Command::new(tools().join("sqlbridge-venv/bin/python"))
            .args(["-c", EVENTS_WORKBOOK])
            .arg(self.dir.path().join("events.xlsx"))
            .arg(n.to_string())
            .output()
            .expect("run python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Replaces the CSV text of table `name` (served after [`Self::restart`]).
    pub fn write_table(&self, name: &str, csv: &str) {
        std::fs::write(self.dir.path().join(format!("{name}.csv")), csv).unwrap();
    }

    /// Stops the bridge and serves the files again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = self.log_path();
        for _ in 0..50 {
            let file = std::fs::File::create(&log).unwrap();
            let mut command = if self.applocks {
                let mut python = Command::new(tools().join("sqlbridge-venv/bin/python"));
                python.arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/sqlbridge_applocks.py"
                ));
                let keys: Vec<String> = self.tables.iter().map(|t| format!("{t}.id")).collect();
                python.env("BRIDGE_PRIMARY_KEYS", keys.join(","));
                python
            } else {
                Command::new(tools().join("sqlbridge-venv/bin/pysqlbridge"))
            };
            let mut child = command
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &self.port.to_string(),
                    "--config",
                    "tables.json",
                ])
                .env("BRIDGE_PW", BRIDGE_PASSWORD)
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("start pysqlbridge");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if accepts_tcp(self.port) {
                    self.child = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            // The port may still be held by the previous process.
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("pysqlbridge did not start:\n{}", tail(&self.log(), 40));
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("bridge.log")
    }

    /// What the bridge logged (every query it received).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Every application-lock call answered so far, in order (a bridge
    /// started by [`Self::start_with_applocks`]).
    pub fn lock_calls(&self) -> Vec<LockCall> {
        let log = std::fs::read_to_string(self.dir.path().join("applocks.log")).unwrap_or_default();
        log.lines()
            .map(|line| {
                let call: serde_json::Value = serde_json::from_str(line).expect(line);
                LockCall {
                    call: call["call"].as_str().unwrap_or_default().to_owned(),
                    session: call["session"].as_u64().unwrap_or_default(),
                    resource: call["resource"].as_str().unwrap_or_default().to_owned(),
                    answer: call["answer"].clone(),
                }
            })
            .collect()
    }

    /// Whether the bridge logs a query containing `needle` within 5 s (it
    /// may log a query after it answered it).
    pub fn logged(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.log().contains(needle) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

impl Drop for SqlBridge {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- pysqlbridge log ---\n{}", tail(&self.log(), 40));
        }
        self.stop();
    }
}
