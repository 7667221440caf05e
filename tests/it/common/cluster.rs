//! The cluster's processes under test (`sluice scheduler`, `sluice
//! executor`, the `cluster` build): each on free loopback ports with its
//! own log, killed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::sluice::sluice_binary;
use super::{accepts_tcp, free_port};

/// One `sluice scheduler` or `sluice executor` process.
pub struct ClusterProcess {
    child: Option<Child>,
    log_path: PathBuf,
    _tmp: TempDir,
}

impl ClusterProcess {
    /// `sluice scheduler` on a free port; its port.
    pub fn scheduler() -> (ClusterProcess, u16) {
        let port = free_port();
        let process = Self::spawn(
            &[
                "scheduler",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--executor-timeout",
                "8",
            ],
            &[],
        );
        process.wait_for_port(port);
        (process, port)
    }

    /// `sluice executor` named `id`, running two tasks at once, for the
    /// scheduler at `scheduler_port`, with `key_file` and `envs` (the
    /// warehouse's credentials).
    pub fn executor(id: &str, scheduler_port: u16, key_file: &Path, envs: &[(&str, &str)]) -> ClusterProcess {
        let (port, grpc_port) = (free_port(), free_port());
        let process = Self::spawn(
            &[
                "executor",
                "--scheduler",
                &format!("127.0.0.1:{scheduler_port}"),
                "--port",
                &port.to_string(),
                "--grpc-port",
                &grpc_port.to_string(),
                "--tasks",
                "2",
                "--id",
                id,
                "--heartbeat",
                "1",
                "--cluster-key-file",
                key_file.to_str().unwrap(),
            ],
            envs,
        );
        process.wait_for_port(port);
        process
    }

    fn spawn(args: &[&str], envs: &[(&str, &str)]) -> ClusterProcess {
        let tmp = tempfile::Builder::new().prefix("sluice-cluster-").tempdir().unwrap();
        let log_path = tmp.path().join("process.log");
        let log = fs::File::create(&log_path).unwrap();
        let mut command = Command::new(sluice_binary());
        command
            .args(args)
            .envs(envs.iter().copied())
            .env("SLUICE_LOG", "info")
            .current_dir(tmp.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = command.spawn().unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        ClusterProcess {
            child: Some(child),
            log_path,
            _tmp: tmp,
        }
    }

    fn wait_for_port(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !accepts_tcp(port) {
            assert!(
                Instant::now() < deadline,
                "port {port} never opened; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Kills the process with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ClusterProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster key file (mode 0600) in `dir`.
pub fn key_file(dir: &Path) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("cluster.key");
    let key: String = (0..32).map(|i| format!("{:02x}", (i * 37 + 11) as u8)).collect();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    file.write_all(key.as_bytes()).unwrap();
    path
}
