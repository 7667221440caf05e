//! A PostgreSQL streaming replica of a harness primary.

use super::*;

impl PgServer {
    /// A hot-standby streaming replica of this server (`pg_basebackup -R`
    /// over the unix socket), started on a free port; the same users and
    /// passwords work on it. Waits until it accepts read-only sessions.
    pub fn start_replica(&self) -> PgServer {
        let tmp = server_tempdir("sluice-pg-replica-");
        let dir = tmp.path().to_path_buf();
        chown_to(&dir, "postgres");
        let out = command_as("postgres", self.bin.join("pg_basebackup"))
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "-D",
            ])
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .output()
            .expect("run pg_basebackup");
        assert!(out.status.success(), "pg_basebackup failed:\n{}", output_text(&out));
        let mut replica = PgServer {
            port: 0,
            user: self.user.clone(),
            password: self.password.clone(),
            db: self.db.clone(),
            admin_password: self.admin_password.clone(),
            dir,
            bin: self.bin.clone(),
            settings: String::new(),
            tmp: Some(tmp),
        };
        replica.start_on_free_port();
        assert_eq!(replica.psql_admin("SELECT pg_is_in_recovery()").trim(), "t");
        replica
    }

    /// Waits (up to 30 s) until this replica has replayed everything it
    /// received and `sql` answers `expected`.
    pub fn wait_for_replay(&self, sql: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let caught_up = self
                .psql_admin("SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()")
                .trim()
                == "t";
            let answer = self.psql_admin(sql);
            if caught_up && answer.trim() == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica: {sql} answers {answer:?}, not {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
