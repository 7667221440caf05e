//! SAVEPOINT, RELEASE SAVEPOINT and ROLLBACK TO SAVEPOINT inside a block,
//! through psycopg 3's nested transactions (which use them) and
//! tokio-postgres, against a real sluice.

use std::process::Command;

use crate::common;
use crate::migration_tools::clients_dir;

use common::*;

/// psycopg 3 against `argv[1]`: a block with a nested transaction that
/// fails (rolled back to its savepoint) and one that succeeds.
const PSYCOPG_NESTED: &str = r#"
import json, sys
import psycopg

out = {}
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    with conn.transaction():
        conn.execute("CREATE SECRET sp_outer AS 'x'")
        try:
            with conn.transaction():
                conn.execute("CREATE SECRET sp_inner AS 'y'")
                conn.execute("INSERT INTO schema_migrations VALUES ('inner')")
                conn.execute("CREATE SECRET sp_outer AS 'z'")
        except psycopg.errors.DuplicateObject:
            out["inner_failed"] = True
        with conn.transaction():
            conn.execute("INSERT INTO schema_migrations VALUES ('nested')")
        conn.execute("CREATE SECRET sp_after AS 'w'")
    out["secrets"] = [r[0] for r in conn.execute("SELECT name FROM sluice.secrets ORDER BY name")]
    out["rows"] = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
print(json.dumps(out))
"#;

#[tokio::test]
async fn psycopg_nested_transactions_roll_back_to_their_savepoint() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")
        .await
        .unwrap();
    let url = format!(
        "postgresql://admin:{}@127.0.0.1:{}/sluice",
        sluice.password(),
        sluice.port
    );
    let out = Command::new(clients_dir().join("venv/bin/python"))
        .args(["-c", PSYCOPG_NESTED, &url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psycopg failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(
        result,
        serde_json::json!({
            "inner_failed": true,
            "secrets": ["sp_after", "sp_outer"],
            "rows": ["nested"],
        })
    );
}

#[tokio::test]
async fn savepoints_follow_postgres() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    expect_err(&client, "SAVEPOINT a", "25P01").await;

    // RELEASE keeps the changes; ROLLBACK TO undoes them and keeps the savepoint.
    client
        .batch_execute(
            "BEGIN; CREATE SECRET s1 AS 'x'; SAVEPOINT a; CREATE SECRET s2 AS 'x'; RELEASE SAVEPOINT a; \
             SAVEPOINT b; CREATE SECRET s3 AS 'x'; ROLLBACK TO SAVEPOINT b; CREATE SECRET s4 AS 'x'; \
             ROLLBACK TO b; RELEASE b",
        )
        .await
        .unwrap();
    expect_err(&client, "ROLLBACK TO SAVEPOINT b", "3B001").await;
    // The error failed the block; ROLLBACK TO a savepoint would revive it,
    // but none is left: ROLLBACK.
    expect_err(&client, "SELECT 1", "25P02").await;
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.secrets").await, "0");

    client
        .batch_execute("BEGIN; CREATE SECRET s1 AS 'x'; SAVEPOINT a; CREATE SECRET s2 AS 'x'; RELEASE a; SAVEPOINT b")
        .await
        .unwrap();
    expect_err(&client, "CREATE SECRET s1 AS 'y'", "42710").await;
    expect_err(&client, "SELECT 1", "25P02").await;
    client.batch_execute("ROLLBACK TO SAVEPOINT b").await.unwrap();
    assert_eq!(one(&client, "SELECT 1").await, "1");
    client.batch_execute("CREATE SECRET s3 AS 'x'; COMMIT").await.unwrap();
    assert_eq!(
        rows(&client, "SELECT name FROM sluice.secrets ORDER BY name").await,
        [
            [Some("s1".to_owned())],
            [Some("s2".to_owned())],
            [Some("s3".to_owned())]
        ]
    );
}
