//! Migration tools run unmodified against a real sluice: dbmate, Alembic
//! and node-pg-migrate (installed by `scripts/install-clients.sh`) each
//! apply two migrations that create a secret, a connection to the test
//! PostgreSQL and an ETL job, record them in their bookkeeping table in the
//! `public` schema, apply nothing on a second run, roll back a failing
//! migration together with its bookkeeping, and migrate down.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use tokio_postgres::Client;

use crate::common;

use common::*;

/// The clients directory `install-clients.sh` fills, installed once.
pub(crate) fn clients_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-clients.sh");
        let out = Command::new("bash")
            .arg(script)
            .output()
            .expect("run install-clients.sh");
        assert!(
            out.status.success(),
            "install-clients.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

struct Env {
    _pg: PgServer,
    sluice: Sluice,
    client: Client,
    dir: tempfile::TempDir,
    /// The SQL of each migration: a secret and a connection, then a job.
    first: String,
    second: String,
    /// A migration whose second statement fails.
    failing: String,
}

async fn env() -> Env {
    let pg = PgServer::start();
    pg.psql_admin("CREATE TABLE public.t (id bigint PRIMARY KEY); GRANT SELECT ON public.t TO etl;");
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let first = format!(
        "CREATE SECRET src_pass AS '{ETL_PASSWORD}'; \
         CREATE CONNECTION src TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', password SECRET src_pass);",
        pg.port
    );
    let second = "CREATE ETL JOB copy_t FROM src.public.t INTO warehouse.copy_t SNAPSHOT;".to_owned();
    let failing =
        "CREATE SECRET extra AS 'x'; CREATE ETL JOB bad FROM src.public.no_such_table INTO warehouse.bad SNAPSHOT;"
            .to_owned();
    Env {
        _pg: pg,
        sluice,
        client,
        dir: tempfile::tempdir().unwrap(),
        first,
        second,
        failing,
    }
}

impl Env {
    fn url(&self) -> String {
        format!(
            "postgres://admin:{}@127.0.0.1:{}/sluice",
            self.sluice.password(),
            self.sluice.port
        )
    }

    /// The names in `sluice.<view>`.
    async fn names(&self, view: &str) -> Vec<String> {
        column(&self.client, &format!("SELECT name FROM sluice.{view} ORDER BY name")).await
    }

    /// Asserts what exists after the first `n` migrations, and that the
    /// tool's `bookkeeping` table has `n` rows.
    async fn assert_applied(&self, n: usize, bookkeeping: &str) {
        self.assert_objects(n).await;
        assert_eq!(
            one(&self.client, &format!("SELECT count(*) FROM {bookkeeping}")).await,
            n.to_string()
        );
    }

    /// Asserts the objects that exist after the first `n` migrations.
    async fn assert_objects(&self, n: usize) {
        let secrets = self.names("secrets").await;
        let connections = self.names("connections").await;
        let jobs = self.names("jobs").await;
        assert_eq!(secrets, if n >= 1 { vec!["src_pass"] } else { vec![] });
        assert_eq!(connections, if n >= 1 { vec!["src"] } else { vec![] });
        assert_eq!(jobs, if n >= 2 { vec!["copy_t"] } else { vec![] });
    }
}

async fn column(client: &Client, sql: &str) -> Vec<String> {
    rows(client, sql)
        .await
        .into_iter()
        .map(|row| row[0].clone().unwrap_or_default())
        .collect()
}

/// Runs a tool; returns its output, asserting success or failure.
fn run(command: &mut Command, succeed: bool) -> Output {
    let out = command.output().expect("run the migration tool");
    assert_eq!(
        out.status.success(),
        succeed,
        "{command:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn dbmate_migrates_up_and_down_with_its_bookkeeping() {
    let env = env().await;
    let migrations = env.dir.path().join("db/migrations");
    let migration = |up: &str, down: &str| format!("-- migrate:up\n{up}\n\n-- migrate:down\n{down}\n");
    write(
        &migrations.join("20240101000000_connection.sql"),
        &migration(&env.first, "DROP CONNECTION src; DROP SECRET src_pass;"),
    );
    write(
        &migrations.join("20240102000000_job.sql"),
        &migration(&env.second, "DROP ETL JOB copy_t;"),
    );
    let dbmate = clients_dir().join("migrate/node_modules/.bin/dbmate");
    let url = format!("{}?sslmode=disable", env.url());
    let tool = |args: &[&str]| {
        let mut command = Command::new(&dbmate);
        command
            .current_dir(env.dir.path())
            .env("DATABASE_URL", &url)
            .args(["--no-dump-schema", "--migrations-dir"])
            .arg(&migrations)
            .args(args);
        command
    };

    run(&mut tool(&["migrate"]), true);
    env.assert_applied(2, "schema_migrations").await;
    let out = run(&mut tool(&["migrate"]), true);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Applying"), "{out:?}");
    env.assert_applied(2, "schema_migrations").await;

    write(
        &migrations.join("20240103000000_failing.sql"),
        &migration(&env.failing, ""),
    );
    run(&mut tool(&["migrate"]), false);
    env.assert_applied(2, "schema_migrations").await;
    assert!(!env.names("secrets").await.contains(&"extra".to_owned()));
    std::fs::remove_file(migrations.join("20240103000000_failing.sql")).unwrap();

    run(&mut tool(&["rollback"]), true);
    env.assert_applied(1, "schema_migrations").await;
    run(&mut tool(&["rollback"]), true);
    env.assert_applied(0, "schema_migrations").await;
}

const ALEMBIC_ENV: &str = r#"
import os
from alembic import context
from sqlalchemy import create_engine

engine = create_engine(os.environ["SLUICE_URL"])
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"#;

fn alembic_revision(revision: &str, down: Option<&str>, up_sql: &str, down_sql: &str) -> String {
    let down = down.map_or("None".to_owned(), |d| format!("{d:?}"));
    format!(
        "from alembic import op\nrevision = {revision:?}\ndown_revision = {down}\n\n\
         def upgrade():\n    op.execute({up_sql:?})\n\n\
         def downgrade():\n    op.execute({down_sql:?})\n"
    )
}

#[tokio::test]
async fn alembic_upgrades_and_downgrades_with_its_version_table() {
    let env = env().await;
    let root = env.dir.path();
    write(&root.join("alembic.ini"), "[alembic]\nscript_location = .\n");
    write(&root.join("env.py"), ALEMBIC_ENV);
    let connection = alembic_revision("a1", None, &env.first, "DROP CONNECTION src; DROP SECRET src_pass");
    write(&root.join("versions/a1_connection.py"), &connection);
    write(
        &root.join("versions/b2_job.py"),
        &alembic_revision("b2", Some("a1"), &env.second, "DROP ETL JOB copy_t"),
    );
    let alembic = clients_dir().join("venv/bin/alembic");
    let url = env.url().replace("postgres://", "postgresql+psycopg2://");
    let tool = |args: &[&str]| {
        let mut command = Command::new(&alembic);
        command.current_dir(root).env("SLUICE_URL", &url).args(args);
        command
    };

    let version = "SELECT string_agg(version_num, ',') FROM alembic_version";
    run(&mut tool(&["upgrade", "head"]), true);
    env.assert_objects(2).await;
    assert_eq!(one(&env.client, version).await, "b2");
    run(&mut tool(&["upgrade", "head"]), true);
    assert_eq!(one(&env.client, version).await, "b2");

    write(
        &root.join("versions/c3_failing.py"),
        &alembic_revision("c3", Some("b2"), &env.failing, ""),
    );
    run(&mut tool(&["upgrade", "head"]), false);
    assert_eq!(one(&env.client, version).await, "b2");
    env.assert_objects(2).await;
    std::fs::remove_file(root.join("versions/c3_failing.py")).unwrap();

    run(&mut tool(&["downgrade", "-1"]), true);
    assert_eq!(one(&env.client, version).await, "a1");
    env.assert_objects(1).await;
    run(&mut tool(&["downgrade", "base"]), true);
    env.assert_applied(0, "alembic_version").await;
}

#[tokio::test]
async fn node_pg_migrate_migrates_up_and_down_with_its_bookkeeping() {
    let env = env().await;
    let migrations = env.dir.path().join("migrations");
    let migration = |up: &str, down: &str| {
        format!("exports.up = (pgm) => {{ pgm.sql({up:?}); }};\nexports.down = (pgm) => {{ pgm.sql({down:?}); }};\n")
    };
    write(
        &migrations.join("1_connection.js"),
        &migration(&env.first, "DROP CONNECTION src; DROP SECRET src_pass;"),
    );
    write(
        &migrations.join("2_job.js"),
        &migration(&env.second, "DROP ETL JOB copy_t;"),
    );
    let tool_path = clients_dir().join("migrate/node_modules/.bin/node-pg-migrate");
    let tool = |args: &[&str]| {
        let mut command = Command::new(&tool_path);
        command
            .current_dir(env.dir.path())
            .env("DATABASE_URL", env.url())
            .args(args)
            .args(["-m", "migrations"]);
        command
    };

    run(&mut tool(&["up"]), true);
    env.assert_applied(2, "pgmigrations").await;
    assert_eq!(
        column(&env.client, "SELECT name FROM pgmigrations ORDER BY run_on, id").await,
        ["1_connection", "2_job"]
    );
    let out = run(&mut tool(&["up"]), true);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No migrations to run"),
        "{out:?}"
    );

    write(&migrations.join("3_failing.js"), &migration(&env.failing, ""));
    run(&mut tool(&["up"]), false);
    env.assert_applied(2, "pgmigrations").await;
    std::fs::remove_file(migrations.join("3_failing.js")).unwrap();

    run(&mut tool(&["down"]), true);
    env.assert_applied(1, "pgmigrations").await;
    run(&mut tool(&["down"]), true);
    env.assert_applied(0, "pgmigrations").await;
}
