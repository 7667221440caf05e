//! A real `redis-server` (Debian's `redis-server` package) on a free
//! loopback port in its own temp dir, without persistence; killed on
//! `Drop`. `require_password` turns on `requirepass` and adds an ACL user.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{accepts_tcp, free_port, tail};

/// The ACL user [`RedisServer::with_user`] creates, and its password.
pub const REDIS_USER: &str = "etl";
pub const REDIS_PASSWORD: &str = "redis_pw_123";

/// A running redis-server.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    log: std::path::PathBuf,
    _tmp: TempDir,
}

impl RedisServer {
    /// A server without authentication.
    pub fn start() -> RedisServer {
        Self::spawn(&[])
    }

    /// A server whose default user is off: only [`REDIS_USER`] with
    /// [`REDIS_PASSWORD`] may connect.
    pub fn with_user() -> RedisServer {
        let server = Self::spawn(&[]);
        server.cmd(&[
            "ACL",
            "SETUSER",
            REDIS_USER,
            "on",
            &format!(">{REDIS_PASSWORD}"),
            "~*",
            "+@all",
        ]);
        server.cmd(&["ACL", "SETUSER", "default", "off"]);
        server
    }

    fn spawn(extra: &[&str]) -> RedisServer {
        let bin = ["/usr/bin/redis-server", "/usr/sbin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("redis-server is not installed: apt-get install -y --no-install-recommends redis-server");
        let tmp = tempfile::tempdir().expect("temp dir");
        let log = tmp.path().join("redis.log");
        for _ in 0..4 {
            let port = free_port();
            let mut child = Command::new(bin)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args([
                    "--dir",
                    &tmp.path().to_string_lossy(),
                    "--logfile",
                    &log.to_string_lossy(),
                ])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if accepts_tcp(port) {
                    return RedisServer {
                        port,
                        child,
                        log,
                        _tmp: tmp,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "redis-server did not start; log:\n{}",
            tail(&std::fs::read_to_string(&log).unwrap_or_default(), 40)
        );
    }

    /// A connection as the admin (the default user, or [`REDIS_USER`]
    /// once the default user is off).
    pub fn connection(&self) -> redis::Connection {
        let plain = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).expect("client");
        let mut connection = plain.get_connection().expect("connect to redis-server");
        if redis::cmd("PING").query::<String>(&mut connection).is_err() {
            let client = redis::Client::open(format!(
                "redis://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{}/",
                self.port
            ))
            .expect("client");
            connection = client
                .get_connection()
                .expect("connect to redis-server as the ACL user");
        }
        connection
    }

    /// Runs one command, panicking on error; returns the reply.
    pub fn cmd(&self, args: &[&str]) -> redis::Value {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command
            .query(&mut self.connection())
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Runs commands on one connection.
    pub fn run(&self, commands: &[&[&str]]) {
        let mut connection = self.connection();
        for args in commands {
            let mut command = redis::cmd(args[0]);
            for arg in &args[1..] {
                command.arg(*arg);
            }
            command
                .query::<redis::Value>(&mut connection)
                .unwrap_or_else(|e| panic!("redis {args:?}: {e}"));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "redis-server log:\n{}",
                tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 40)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
