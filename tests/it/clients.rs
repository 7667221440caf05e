//! Real clients against a real sluice: psql, the Python drivers
//! (psycopg2 with SQLAlchemy 2 and pandas, psycopg 3) from the venv
//! `scripts/install-clients.sh` creates, node-postgres (installed by the
//! same script) and pgjdbc (Debian's libpostgresql-jdbc-java). Each check runs the same way
//! against the harness' PostgreSQL, and the answers are compared where
//! Sluice should answer alike.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::common;

use common::*;

/// The source table, loaded into `warehouse.t` by a snapshot job.
const TABLE: &str = "
CREATE TABLE public.t (
    id bigint PRIMARY KEY,
    name varchar(20),
    amount numeric(12,2),
    at timestamptz
);
INSERT INTO public.t VALUES
    (1, 'a', 12.50, '2024-01-01 10:00:00+00'),
    (2, 'b', NULL, '2024-06-01 23:30:00+00'),
    (3, NULL, -0.01, NULL);
";

/// PostgreSQL with `shop.public.t`, and sluice with it in `warehouse.t`.
struct Env {
    pg: PgServer,
    sluice: Sluice,
}

async fn env() -> Env {
    let pg = PgServer::start();
    pg.psql_admin(TABLE);
    let sluice = Sluice::start();
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute("CREATE ETL JOB tj FROM shop.public.t INTO warehouse.t SNAPSHOT; RUN ETL JOB tj")
        .await
        .unwrap();
    Env { pg, sluice }
}

/// The venv's python, installed once per test process.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
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
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("venv/bin/python")
        })
        .clone()
}

/// Runs `script` with `args`; its last stdout line is JSON.
fn run_python(script: &str, args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("no JSON from the script ({e}):\n{stdout}"))
}

/// `user:password@host:port/db` of each server.
fn pg_url(pg: &PgServer) -> String {
    format!("{}:{}@127.0.0.1:{}/{}", pg.user, pg.password, pg.port, pg.db)
}

fn sluice_url(sluice: &Sluice) -> String {
    format!("admin:{}@127.0.0.1:{}/sluice", sluice.password(), sluice.port)
}

/// psycopg2 + SQLAlchemy + pandas + psycopg 3, against `argv[1]` (a URL
/// without scheme) with the table in schema `argv[2]`.
const PYTHON_CHECKS: &str = r#"
import datetime, io, json, sys
import pandas as pd, psycopg, psycopg2, sqlalchemy as sa

url, schema = sys.argv[1], sys.argv[2]
out = {}

engine = sa.create_engine("postgresql+psycopg2://" + url)
with engine.connect() as c:
    out["server_version_info"] = list(c.dialect.server_version_info)
insp = sa.inspect(engine)
out["schema_listed"] = schema in insp.get_schema_names()
out["tables"] = insp.get_table_names(schema=schema)
out["columns"] = [[c["name"], str(c["type"]), c["nullable"]] for c in insp.get_columns("t", schema=schema)]
insp.get_pk_constraint("t", schema=schema)
def values(frame):
    return [[None if pd.isna(v) else str(v) for v in row] for row in frame.itertuples(index=False)]
out["read_sql_table"] = values(pd.read_sql_table("t", engine, schema=schema).sort_values("id"))
out["read_sql_query"] = values(pd.read_sql_query(f"select id, amount from {schema}.t order by id", engine))

conn = psycopg2.connect("postgresql://" + url)
conn.autocommit = True
cur = conn.cursor()
def one(sql):
    cur.execute(sql)
    return cur.fetchone()
def sqlstate(sql):
    try:
        cur.execute(sql)
    except psycopg2.Error as e:
        return e.pgcode
def copy(sql):
    buf = io.StringIO()
    cur.copy_expert(sql, buf)
    return buf.getvalue()
out["copy_query_csv"] = copy(f"COPY (select id, name, amount from {schema}.t order by id) TO STDOUT WITH (FORMAT csv, HEADER)")
out["copy_table_text"] = sorted(copy(f"COPY {schema}.t (id, name, amount) TO STDOUT").splitlines())
out["copy_options"] = copy(f"COPY (select id, name from {schema}.t order by id) TO STDOUT WITH (FORMAT csv, DELIMITER ';', NULL 'none', QUOTE '|')")
out["copy_status"] = cur.statusmessage
cur.execute(f"select id, at from {schema}.t")
out["psycopg2_sizes"] = [c.internal_size for c in cur.description]
out["users"] = list(one("select current_user, session_user, user, current_role"))
out["login"] = conn.info.user
out["version"] = one("select version()")[0]
out["server_version_status"] = conn.get_parameter_status("server_version")
out["server_version_num"] = one("show server_version_num")[0]
out["standard_conforming_strings"] = [one("show standard_conforming_strings")[0], conn.get_parameter_status("standard_conforming_strings")]
out["client_encoding"] = [one("show client_encoding")[0], conn.get_parameter_status("client_encoding")]
out["transaction_isolation"] = one("show transaction isolation level")[0]
initial_zone = conn.get_parameter_status("TimeZone")
cur.execute("SET TimeZone TO 'America/New_York'")
out["zone"] = [one("SHOW TimeZone")[0], conn.get_parameter_status("TimeZone"), one("select current_setting('timezone')")[0]]
at = one(f"select at from {schema}.t where id = 1")[0]
out["zoned_value"] = [at.utcoffset().total_seconds(), at.astimezone(datetime.timezone.utc).isoformat()]
cur.execute("RESET TimeZone")
out["zone_reset"] = [one("SHOW TimeZone")[0] == initial_zone, conn.get_parameter_status("TimeZone") == initial_zone]
one("select set_config('application_name', 'probe', false)")
one("select 1")
out["application_name"] = [one("show application_name")[0], conn.get_parameter_status("application_name")]
cur.execute("SET DateStyle = 'SQL, DMY'")
out["datestyle"] = [one("SHOW DateStyle")[0], conn.get_parameter_status("DateStyle")]
cur.execute("SET statement_timeout = '120s'")
out["statement_timeout"] = one("SHOW statement_timeout")[0]
cur.execute("SET extra_float_digits = 2")
out["extra_float_digits"] = one("SHOW extra_float_digits")[0]
cur.execute("SET search_path = warehouse, public")
out["search_path"] = [one("SHOW search_path")[0], one("select count(*) from t")[0]]
cur.execute("SET myapp.tenant = 'seven'")
out["custom"] = one("select current_setting('myapp.tenant')")[0]
out["errors"] = [
    sqlstate("SHOW no_such_parameter"),
    sqlstate("SET no_such_parameter = 1"),
    sqlstate("SET TimeZone = 'Mars/Olympus'"),
    sqlstate("SET extra_float_digits = 9"),
    sqlstate("SET server_version = '1'"),
]
conn.close()
with_options = psycopg2.connect("postgresql://" + url, options="-c TimeZone=Asia/Tokyo -c statement_timeout=5s")
with_options.autocommit = True
options_cursor = with_options.cursor()
options_cursor.execute("select current_setting('TimeZone'), current_setting('statement_timeout')")
out["startup_options"] = list(options_cursor.fetchone()) + [with_options.get_parameter_status("TimeZone")]
with_options.close()
try:
    psycopg2.connect("postgresql://" + url.replace(":", ":wrong", 1))
except psycopg2.OperationalError as e:
    out["bad_login_names_user"] = f'for user "{out["login"]}"' in str(e)

with psycopg.connect("postgresql://" + url, autocommit=True) as c3:
    out["psycopg3_text"] = [list(r) for r in c3.execute(f"select id, name, amount from {schema}.t order by id").fetchall()]
    with c3.cursor(binary=True) as b:
        out["psycopg3_binary"] = [list(r) for r in b.execute(f"select id, amount, at from {schema}.t order by id").fetchall()]
    out["psycopg3_zone"] = c3.info.parameter_status("TimeZone") is not None
    described = c3.execute(f"select id, amount, at from {schema}.t where id = %s", [1]).description
    out["psycopg3_description"] = [[c.type_code, c.internal_size, c.precision, c.scale] for c in described]
    with c3.cursor().copy(f"COPY (select id, amount, at from {schema}.t order by id) TO STDOUT (FORMAT binary)") as cp:
        cp.set_types(["int8", "numeric", "timestamptz"])
        out["psycopg3_copy_binary"] = [list(r) for r in cp.rows()]
    # Settings through the extended protocol: set_config with a parameter,
    # prepared SHOW and SET, ParameterStatus after each change.
    c3.execute("select set_config('TimeZone', %s, false)", ["Asia/Tokyo"])
    c3.execute("select %s::int", [1])
    out["psycopg3_extended_settings"] = [
        c3.info.parameter_status("TimeZone"),
        c3.execute("SHOW TimeZone", prepare=True).fetchone()[0],
        c3.execute("SET DateStyle = 'SQL, DMY'", prepare=True).statusmessage,
        c3.info.parameter_status("DateStyle"),
        c3.execute("RESET DateStyle", prepare=True).statusmessage,
        c3.info.parameter_status("DateStyle"),
    ]

print(json.dumps(out, default=str))
"#;

/// What both servers must answer alike.
const SAME_KEYS: &[&str] = &[
    "schema_listed",
    "tables",
    "read_sql_table",
    "read_sql_query",
    "standard_conforming_strings",
    "client_encoding",
    "transaction_isolation",
    "zone",
    "zoned_value",
    "zone_reset",
    "application_name",
    "datestyle",
    "statement_timeout",
    "extra_float_digits",
    "search_path",
    "custom",
    "errors",
    "psycopg3_text",
    "psycopg3_binary",
    "psycopg3_zone",
    "psycopg3_copy_binary",
    "psycopg3_description",
    "psycopg3_extended_settings",
    "psycopg2_sizes",
    "bad_login_names_user",
    "startup_options",
    "copy_query_csv",
    "copy_table_text",
    "copy_options",
    "copy_status",
];

#[tokio::test]
async fn python_drivers_sqlalchemy_and_pandas_work_as_on_postgres() {
    let env = env().await;
    let pg = run_python(PYTHON_CHECKS, &[&pg_url(&env.pg), "public"]);
    let sluice = run_python(PYTHON_CHECKS, &[&sluice_url(&env.sluice), "warehouse"]);
    for key in SAME_KEYS {
        assert_eq!(sluice[key], pg[key], "{key}: sluice vs PostgreSQL");
    }

    // Identity: the login, under every name, in PostgreSQL's version forms.
    assert_eq!(sluice["users"], serde_json::json!(["admin", "admin", "admin", "admin"]));
    assert_eq!(
        pg["users"],
        serde_json::json!([pg["login"], pg["login"], pg["login"], pg["login"]])
    );
    assert_eq!(sluice["server_version_info"], serde_json::json!([16, 6]));
    let version = sluice["version"].as_str().unwrap();
    assert!(
        version.starts_with(&format!("PostgreSQL 16.6 (Sluice {})", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let status = sluice["server_version_status"].as_str().unwrap();
    assert!(
        version.starts_with(&format!("PostgreSQL {status} on ")),
        "{status} vs {version}"
    );
    assert_eq!(sluice["server_version_num"], "160006");

    // Reflection: the same columns and nullability; types, numeric
    // precision and scale included, where the warehouse keeps them (it
    // stores varchar as text).
    let columns = |v: &Value| -> Vec<(String, bool)> {
        v["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c[0].as_str().unwrap().to_owned(), c[2].as_bool().unwrap()))
            .collect()
    };
    assert_eq!(columns(&sluice), columns(&pg));
    for i in [0, 2, 3] {
        assert_eq!(sluice["columns"][i][1], pg["columns"][i][1], "type of column {i}");
    }
}

#[tokio::test]
async fn psql_sees_the_login_and_postgres_settings() {
    let env = env().await;
    let sluice = &env.sluice;
    let out = sluice.psql_args(&[
        "-At",
        "-c",
        "select current_user, session_user",
        "-c",
        "SET TimeZone = 'Asia/Tokyo'",
        "-c",
        "select at from warehouse.t where id = 1",
        "-c",
        "show timezone",
        "-c",
        "\\d warehouse.t",
        "-c",
        "\\l",
        "-c",
        "\\df",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // One psql session per -c list: the SET holds for what follows.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "admin|admin");
    assert_eq!(lines[1], "SET");
    assert!(
        lines[2].starts_with("2024-01-01 19:00:00") && lines[2].ends_with("+09"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "Asia/Tokyo");
    assert!(stdout.contains("amount|numeric(12,2)|"), "{stdout}");
    // `\l` lists the database, not the source connections (catalogs of it).
    assert!(stdout.lines().any(|l| l.starts_with("sluice|")), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("shop|")), "{stdout}");
    let pg_out = env
        .pg
        .psql_admin("SET TimeZone = 'Asia/Tokyo'; select at from public.t where id = 1;");
    assert!(
        pg_out.trim().starts_with("2024-01-01 19:00:00") && pg_out.trim().ends_with("+09"),
        "{pg_out}"
    );
}

#[tokio::test]
async fn psql_copies_out_like_postgres() {
    let env = env().await;
    let copy = |schema: &str| {
        format!("\\copy (select id, name, amount from {schema}.t order by id) to stdout with csv header\n")
    };
    let out = env.sluice.psql(&copy("warehouse"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, env.pg.psql_admin(&copy("public")));
    assert!(stdout.starts_with("id,name,amount\n1,a,12.50\n"), "{stdout}");
    // Writing a file on the server stays refused.
    let out = env.sluice.psql("COPY (select 1) TO '/tmp/sluice-copy-out.csv';");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
}

/// node-postgres (`pg`) against `argv[1]` (a URL without scheme) with the
/// table in schema `argv[2]`: simple and extended queries, the fields'
/// types and modifiers, a transaction, an error's SQLSTATE.
const NODE_CHECKS: &str = r#"
const { Client } = require("pg");
const [url, schema] = process.argv.slice(1);
(async () => {
    const out = {};
    const c = new Client({ connectionString: "postgresql://" + url });
    await c.connect();
    const rows = (r) => r.rows.map((row) => Object.values(row).map((v) => (v instanceof Date ? v.toISOString() : v)));
    out.simple = rows(await c.query(`select id, name, amount, at from ${schema}.t order by id`));
    const extended = await c.query(`select id, amount, at from ${schema}.t where id = $1`, [1]);
    out.extended = rows(extended);
    out.fields = extended.fields.map((f) => [f.name, f.dataTypeID, f.dataTypeSize, f.dataTypeModifier]);
    await c.query("BEGIN");
    out.in_transaction = rows(await c.query(`select count(*) from ${schema}.t`));
    await c.query("ROLLBACK");
    try {
        await c.query(`select * from ${schema}.no_such_table`);
    } catch (e) {
        out.error = e.code;
    }
    out.user = rows(await c.query("select current_user"))[0][0];
    await c.end();
    console.log(JSON.stringify(out));
})().catch((e) => {
    console.error(e);
    process.exit(1);
});
"#;

/// Runs a client script with `program args...`; its last stdout line is JSON.
fn run_json(program: &mut Command) -> Value {
    let out = program.output().expect("run the client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("no JSON from the client ({e}):\n{stdout}"))
}

fn run_node(url: &str, schema: &str) -> Value {
    let modules = python()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("node/node_modules");
    run_json(
        Command::new("node")
            .env("NODE_PATH", modules)
            .arg("-e")
            .arg(NODE_CHECKS)
            .args([url, schema]),
    )
}

#[tokio::test]
async fn node_postgres_works_as_on_postgres() {
    let env = env().await;
    let pg = run_node(&pg_url(&env.pg), "public");
    let sluice = run_node(&sluice_url(&env.sluice), "warehouse");
    for key in ["simple", "extended", "fields", "in_transaction", "error"] {
        assert_eq!(sluice[key], pg[key], "{key}: sluice vs PostgreSQL");
    }
    assert_eq!(sluice["user"], "admin");
}

/// pgjdbc against `args[0]` (a jdbc URL) as `args[1]`/`args[2]` with the
/// table in schema `args[3]`: a prepared statement's values and metadata,
/// `DatabaseMetaData.getColumns`, a rolled back transaction, an error's
/// SQLSTATE. Prints one JSON object.
const JAVA_CHECKS: &str = r#"
import java.sql.*;
import java.util.*;

public class Checks {
    static String q(Object v) {
        return v == null ? "null" : "\"" + v.toString().replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }
    public static void main(String[] args) throws Exception {
        String schema = args[3];
        Map<String, String> out = new LinkedHashMap<>();
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2])) {
            try (PreparedStatement p = c.prepareStatement("select id, name, amount, at from " + schema + ".t where id = ?")) {
                p.setLong(1, 1);
                try (ResultSet r = p.executeQuery()) {
                    r.next();
                    out.put("values", "[" + q(r.getLong(1)) + "," + q(r.getString(2)) + "," + q(r.getBigDecimal(3).toPlainString())
                        + "," + q(r.getTimestamp(4).toInstant()) + "]");
                    ResultSetMetaData m = r.getMetaData();
                    List<String> meta = new ArrayList<>();
                    for (int i : new int[] {1, 3, 4}) {
                        meta.add("[" + q(m.getColumnTypeName(i)) + "," + m.getPrecision(i) + "," + m.getScale(i) + "]");
                    }
                    out.put("result_metadata", meta.toString());
                }
            }
            List<String> columns = new ArrayList<>();
            try (ResultSet r = c.getMetaData().getColumns(null, schema, "t", "%")) {
                while (r.next()) {
                    if (!r.getString("COLUMN_NAME").equals("name")) {
                        columns.add("[" + q(r.getString("COLUMN_NAME")) + "," + q(r.getString("TYPE_NAME")) + ","
                            + r.getInt("COLUMN_SIZE") + "," + r.getInt("DECIMAL_DIGITS") + "," + q(r.getString("IS_NULLABLE")) + "]");
                    }
                }
            }
            out.put("get_columns", columns.toString());
            c.setAutoCommit(false);
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("select count(*) from " + schema + ".t")) {
                r.next();
                out.put("in_transaction", q(r.getLong(1)));
            }
            c.rollback();
            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                s.executeQuery("select * from " + schema + ".no_such_table");
            } catch (SQLException e) {
                out.put("error", q(e.getSQLState()));
            }
            out.put("major_version", q(c.getMetaData().getDatabaseMajorVersion()));
        }
        StringBuilder json = new StringBuilder("{");
        for (Map.Entry<String, String> e : out.entrySet()) {
            if (json.length() > 1) json.append(",");
            json.append(q(e.getKey())).append(":").append(e.getValue());
        }
        System.out.println(json.append("}"));
    }
}
"#;

fn run_java(host_port_db: &str, user: &str, password: &str, schema: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("Checks.java");
    std::fs::write(&source, JAVA_CHECKS).unwrap();
    run_json(
        Command::new("java")
            .args(["-cp", "/usr/share/java/postgresql.jar"])
            .arg(&source)
            .args([&format!("jdbc:postgresql://{host_port_db}"), user, password, schema]),
    )
}

#[tokio::test]
async fn pgjdbc_works_as_on_postgres() {
    let env = env().await;
    let pg = run_java(
        &format!("127.0.0.1:{}/{}", env.pg.port, env.pg.db),
        &env.pg.user,
        &env.pg.password,
        "public",
    );
    let sluice = run_java(
        &format!("127.0.0.1:{}/sluice", env.sluice.port),
        "admin",
        &env.sluice.password(),
        "warehouse",
    );
    for key in ["values", "result_metadata", "get_columns", "in_transaction", "error"] {
        assert_eq!(sluice[key], pg[key], "{key}: sluice vs PostgreSQL");
    }
    assert_eq!(sluice["major_version"], "16");
}
