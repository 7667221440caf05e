//! Roles and grants (issue #15) through real clients: roles log in with
//! SCRAM, each statement needs its privilege (42501 otherwise), REVOKE
//! applies to open sessions at once, `\du` lists the roles, and
//! `sluice.audit` names who changed what.

use crate::common;

use common::*;
use tokio_postgres::Client;

const DEMO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data");

/// A Sluice with the demo connection and jobs, and roles `alice` (no
/// grant yet) and `bob`, both with password `pw-<name>`.
async fn sluice_with_roles() -> (Sluice, Client) {
    let sluice = Sluice::start_with(&[], &[("SLUICE_DEMO_DIR", DEMO_DIR)]);
    let admin = sluice.client().await;
    admin
        .batch_execute(
            "CREATE ROLE alice WITH LOGIN PASSWORD 'pw-alice'; \
             CREATE ROLE bob LOGIN PASSWORD 'pw-bob';",
        )
        .await
        .unwrap();
    (sluice, admin)
}

fn config_as(sluice: &Sluice, user: &str, password: &str) -> tokio_postgres::Config {
    let mut config = sluice.config();
    config.user(user).password(password);
    config
}

async fn login(sluice: &Sluice, user: &str) -> Client {
    connect(&config_as(sluice, user, &format!("pw-{user}"))).await.unwrap()
}

async fn login_fails(sluice: &Sluice, user: &str, password: &str) -> String {
    let err = connect(&config_as(sluice, user, password))
        .await
        .expect_err("login succeeded");
    sqlstate(&err)
}

#[tokio::test]
async fn each_privilege_allows_its_statements_and_no_more() {
    let (sluice, admin) = sluice_with_roles().await;
    let alice = login(&sluice, "alice").await;

    // No grant: session statements and pg_catalog only.
    assert_eq!(one(&alice, "SELECT 1").await, "1");
    alice.batch_execute("SET statement_timeout = '10s'").await.unwrap();
    one(&alice, "SELECT count(*) FROM pg_catalog.pg_class").await;
    let denied = expect_err(&alice, "SELECT * FROM sluice.jobs", "42501").await;
    assert!(denied.contains("USAGE on database sluice"), "{denied}");
    expect_err_extended(&alice, "SELECT * FROM warehouse.demo_orders", "42501").await;
    expect_err(&alice, "SHOW ETL JOBS", "42501").await;
    expect_err(&alice, "COPY (SELECT * FROM sluice.runs) TO STDOUT", "42501").await;

    // USAGE: reads and exploring, but no run.
    admin
        .batch_execute("GRANT USAGE ON DATABASE sluice TO alice")
        .await
        .unwrap();
    assert_eq!(one(&alice, "SELECT count(*) FROM sluice.jobs").await, "3");
    let extended = alice
        .query("SELECT name FROM sluice.jobs ORDER BY name", &[])
        .await
        .unwrap();
    assert_eq!(extended.len(), 3);
    alice.batch_execute("SHOW TABLES FROM demo").await.unwrap();
    let denied = expect_err(&alice, "RUN ETL JOB demo_orders", "42501").await;
    assert_eq!(
        denied,
        "permission denied: RUN ETL JOB needs OPERATE on database sluice (GRANT OPERATE ON DATABASE sluice TO alice)"
    );
    expect_err_extended(&alice, "RUN ETL JOB demo_orders", "42501").await;

    // OPERATE: runs, pauses, cancels, but defines nothing.
    admin
        .batch_execute("GRANT OPERATE ON DATABASE sluice TO alice")
        .await
        .unwrap();
    alice.batch_execute("RUN ETL JOB demo_orders").await.unwrap();
    assert_eq!(one(&alice, "SELECT count(*) FROM warehouse.demo_orders").await, "2000");
    alice.batch_execute("ALTER ETL JOB demo_orders PAUSE").await.unwrap();
    alice.batch_execute("ALTER ETL JOB demo_orders RESUME").await.unwrap();
    // Another folder: the demo's own is taken by `demo` (42710).
    let folder = tempfile::tempdir().unwrap();
    let connection = format!(
        "CREATE CONNECTION more TYPE local OPTIONS (path '{}')",
        folder.path().display()
    );
    let denied = expect_err(&alice, &connection, "42501").await;
    assert!(denied.contains("CREATE CONNECTION needs ADMIN"), "{denied}");
    expect_err(&alice, "CREATE SECRET s AS 'x'", "42501").await;
    expect_err(
        &alice,
        "ALTER ETL JOB demo_orders SET SCHEDULE EVERY 5 MINUTES",
        "42501",
    )
    .await;
    expect_err(&alice, "CREATE TABLE schema_migrations (version text)", "42501").await;

    // ADMIN: defines. Roles stay the superuser's.
    admin
        .batch_execute("GRANT ADMIN ON DATABASE sluice TO alice")
        .await
        .unwrap();
    alice.batch_execute(&connection).await.unwrap();
    alice.batch_execute("DROP CONNECTION more").await.unwrap();
    let denied = expect_err(&alice, "CREATE ROLE mallory LOGIN PASSWORD 'x'", "42501").await;
    assert!(denied.contains("superuser"), "{denied}");
    expect_err(&alice, "GRANT ADMIN ON DATABASE sluice TO bob", "42501").await;

    // The grants, without secrets.
    let roles = rows(
        &admin,
        "SELECT name, superuser, login, has_password, privilege FROM sluice.roles",
    )
    .await;
    let text = |r: &[Option<String>]| {
        r.iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|")
    };
    let roles: Vec<String> = roles.iter().map(|r| text(r)).collect();
    assert_eq!(roles, ["admin|t|t|t|", "alice|f|t|t|ADMIN", "bob|f|t|t|"]);
    let grants = rows(&admin, "SELECT role, privilege FROM sluice.grants ORDER BY privilege").await;
    assert_eq!(grants.len(), 3, "{grants:?}");
    let everything = rows(&admin, "SELECT * FROM sluice.roles").await;
    assert!(!format!("{everything:?}").contains("pw-"), "{everything:?}");
}

#[tokio::test]
async fn revoke_applies_to_open_sessions_and_dropped_roles_cannot_log_in() {
    let (sluice, admin) = sluice_with_roles().await;
    admin
        .batch_execute("GRANT OPERATE ON DATABASE sluice TO bob")
        .await
        .unwrap();
    let bob = login(&sluice, "bob").await;
    let prepared = bob.prepare("SELECT count(*) FROM sluice.jobs").await.unwrap();
    bob.query(&prepared, &[]).await.unwrap();
    admin
        .batch_execute("REVOKE ALL ON DATABASE sluice FROM bob")
        .await
        .unwrap();
    expect_err(&bob, "SELECT count(*) FROM sluice.jobs", "42501").await;
    let err = bob.query(&prepared, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "{err:?}");
    expect_err(&bob, "RUN ETL JOB demo_products", "42501").await;

    assert_eq!(login_fails(&sluice, "bob", "wrong").await, "28P01");
    assert_eq!(login_fails(&sluice, "nobody", "pw-nobody").await, "28P01");
    admin.batch_execute("ALTER ROLE bob NOLOGIN").await.unwrap();
    assert_eq!(login_fails(&sluice, "bob", "pw-bob").await, "28P01");
    admin
        .batch_execute("ALTER ROLE bob WITH LOGIN PASSWORD 'new-pw'; ALTER ROLE bob RENAME TO robert")
        .await
        .unwrap();
    connect(&config_as(&sluice, "robert", "new-pw")).await.unwrap();
    admin.batch_execute("DROP ROLE robert").await.unwrap();
    assert_eq!(login_fails(&sluice, "robert", "new-pw").await, "28P01");
    admin.batch_execute("DROP ROLE IF EXISTS robert").await.unwrap();
    expect_err(&admin, "DROP ROLE robert", "42704").await;

    // The built-in user's name is taken, and other databases do not exist yet.
    expect_err(&admin, "CREATE ROLE admin LOGIN PASSWORD 'x'", "42710").await;
    expect_err(&admin, "ALTER ROLE alice RENAME TO admin", "42710").await;
    expect_err(&admin, "CREATE ROLE alice", "42710").await;
    expect_err(&admin, "GRANT USAGE ON DATABASE model_5 TO alice", "3D000").await;
    expect_err(&admin, "GRANT USAGE ON DATABASE sluice TO ghost", "42704").await;

    // Roles survive a restart.
    let mut sluice = sluice;
    sluice.restart();
    let alice = login(&sluice, "alice").await;
    expect_err(&alice, "SELECT * FROM sluice.jobs", "42501").await;
}

#[tokio::test]
async fn psql_lists_roles_with_du_and_the_audit_names_who_did_what() {
    let (sluice, admin) = sluice_with_roles().await;
    admin
        .batch_execute("GRANT OPERATE ON DATABASE sluice TO alice")
        .await
        .unwrap();
    let output = sluice.psql_args(&["-c", "\\du"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for role in ["admin", "alice", "bob"] {
        assert!(stdout.contains(role), "{stdout}");
    }
    assert!(stdout.contains("Superuser"), "{stdout}");

    let alice = login(&sluice, "alice").await;
    alice.batch_execute("RUN ETL JOB demo_products").await.unwrap();
    expect_err(&alice, "DROP ETL JOB demo_products", "42501").await;
    admin
        .batch_execute("CREATE SECRET audit_me AS 'hunter2'")
        .await
        .unwrap();
    let audit = rows(
        &admin,
        "SELECT role, statement, object, outcome FROM sluice.audit ORDER BY id",
    )
    .await;
    let audit: Vec<String> = audit
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    assert_eq!(
        audit,
        [
            "admin|CREATE ROLE|alice|ok",
            "admin|CREATE ROLE|bob|ok",
            "admin|GRANT|alice|ok",
            "alice|RUN ETL JOB|demo_products|ok",
            "alice|DROP ETL JOB|demo_products|42501",
            "admin|CREATE SECRET|audit_me|ok",
        ]
    );
    let everything = rows(&admin, "SELECT * FROM sluice.audit").await;
    assert!(!format!("{everything:?}").contains("hunter2"));
    assert!(!format!("{everything:?}").contains("pw-alice"));
}

#[tokio::test]
async fn the_audit_keeps_as_many_rows_as_configured() {
    let mut sluice = Sluice::start_with(&[], &[("SLUICE_KEEP_AUDIT", "3")]);
    let admin = sluice.client().await;
    for n in 1..=5 {
        admin
            .batch_execute(&format!("CREATE SECRET s{n} AS 'v'"))
            .await
            .unwrap();
    }
    assert_eq!(
        one(&admin, "SELECT string_agg(object, ',' ORDER BY id) FROM sluice.audit").await,
        "s3,s4,s5"
    );
    // Fewer from the next start on (the flag wins over the variable): the
    // next row deletes the older ones.
    sluice.opts = sluice.opts.clone().arg("--keep-audit").arg("1");
    sluice.restart();
    let admin = sluice.client().await;
    admin.batch_execute("DROP SECRET s1").await.unwrap();
    assert_eq!(
        one(
            &admin,
            "SELECT string_agg(statement || ' ' || object, ',') FROM sluice.audit"
        )
        .await,
        "DROP SECRET s1"
    );
}
