//! The Firestore emulator (the Google Cloud SDK's
//! `cloud-firestore-emulator.jar`, run with Java) on a free loopback port in
//! its own process group; killed on `Drop`. [`FirestoreEmulator::start`]
//! returns `None`, after printing why, when the jar is not installed: the
//! only case in which Firestore tests skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tempfile::TempDir;

use super::{accepts_tcp, free_port, tail};

/// Where the Google Cloud SDK installs the emulator.
pub const JAR: &str = "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar";
/// The project the tests use.
pub const PROJECT: &str = "sluice-test";

/// A running emulator.
pub struct FirestoreEmulator {
    pub port: u16,
    child: Child,
    log: std::path::PathBuf,
    _tmp: TempDir,
}

impl FirestoreEmulator {
    /// The emulator, or `None` (with a message) when its jar is absent.
    pub fn start() -> Option<FirestoreEmulator> {
        if !std::path::Path::new(JAR).exists() {
            eprintln!(
                "SKIPPED: the Firestore emulator is not installed ({JAR} is absent; it ships with the Google Cloud SDK)"
            );
            return None;
        }
        let tmp = tempfile::tempdir().expect("temp dir");
        let log = tmp.path().join("firestore.log");
        for _ in 0..4 {
            let port = free_port();
            let out = std::fs::File::create(&log).expect("log file");
            let mut child = Command::new("java")
                .args([
                    "-cp",
                    JAR,
                    "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                    "start",
                ])
                .arg("--host=127.0.0.1")
                .arg(format!("--port={port}"))
                .current_dir(tmp.path())
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log file"))
                .stderr(out)
                .spawn()
                .expect("start java");
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if accepts_tcp(port)
                    && std::fs::read_to_string(&log)
                        .unwrap_or_default()
                        .contains("Dev App Server is now running")
                {
                    return Some(FirestoreEmulator {
                        port,
                        child,
                        log,
                        _tmp: tmp,
                    });
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            kill_group(&mut child);
        }
        panic!(
            "the Firestore emulator did not start; log:\n{}",
            tail(&std::fs::read_to_string(&log).unwrap_or_default(), 40)
        );
    }

    /// `host:port`, as the `emulator_host` option takes it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates or replaces the document at `path` (`users/alice`) with
    /// `fields` in Firestore's typed JSON.
    pub fn put(&self, path: &str, fields: Json) {
        let body = serde_json::json!({ "fields": fields }).to_string();
        let (status, answer) = self.http(
            "PATCH",
            &format!("/v1/projects/{PROJECT}/databases/(default)/documents/{path}"),
            &body,
        );
        assert_eq!(status, 200, "PATCH {path}: {answer}");
    }

    /// Deletes the document at `path`.
    pub fn delete(&self, path: &str) {
        let (status, answer) = self.http(
            "DELETE",
            &format!("/v1/projects/{PROJECT}/databases/(default)/documents/{path}"),
            "",
        );
        assert_eq!(status, 200, "DELETE {path}: {answer}");
    }

    /// One HTTP/1.0 request as the emulator's administrator.
    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the emulator");
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer owner\r\n\
             Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        // The emulator keeps the connection open: read up to Content-Length.
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).expect("read");
            bytes.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&bytes).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let answer = String::from_utf8_lossy(&bytes).to_string();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, answer)
    }
}

fn kill_group(child: &mut Child) {
    // The emulator may start helpers: end the whole group it leads.
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for FirestoreEmulator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "Firestore emulator log:\n{}",
                tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 40)
            );
        }
        kill_group(&mut self.child);
    }
}
