//! Secret values never show up in output, errors, logs or the data dir.

use crate::common;

use common::*;
use tokio_postgres::SimpleQueryMessage;

const MARKER: &str = "Xq7-secret-Pw-9zz";

async fn all_text(client: &tokio_postgres::Client, sql: &str) -> String {
    let mut text = String::new();
    match client.simple_query(sql).await {
        Ok(messages) => {
            for message in messages {
                if let SimpleQueryMessage::Row(row) = message {
                    for i in 0..row.len() {
                        text.push_str(row.get(i).unwrap_or(""));
                        text.push('|');
                    }
                }
            }
        }
        Err(e) => text.push_str(&format!("{e:?}")),
    }
    text
}

#[tokio::test]
async fn passwords_never_appear_in_output_logs_or_files() {
    let pg = PgServer::start();
    pg.psql_admin(&format!("ALTER ROLE etl PASSWORD '{MARKER}'"));
    let sluice = Sluice::start_with(&[], &[("SLUICE_LOG", "debug")]);
    let client = sluice.client().await;
    let port = pg.port;
    let mut seen = String::new();
    for sql in [
        format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {port}, database 'shop', user 'etl', password '{MARKER}')"
        ),
        format!("CREATE SECRET named AS '{MARKER}'"),
        format!(
            "CREATE CONNECTION shop2 TYPE postgres OPTIONS (host 'localhost', port {port}, database 'shop', user 'etl', password SECRET named)"
        ),
        format!("ALTER CONNECTION shop SET (password '{MARKER}', connect_timeout 3)"),
        // Failing statements whose errors must not echo the secret either.
        format!(
            "CREATE CONNECTION bad TYPE postgres OPTIONS (host '127.0.0.1', port {port}, database 'nodb', user 'etl', password '{MARKER}')"
        ),
        format!(
            "CREATE CONNECTION bad2 TYPE postgres OPTIONS (host '127.0.0.1', port {port}, database 'shop', user 'nobody', password '{MARKER}')"
        ),
        format!("CREATE CONNECTION bad3 TYPE postgres OPTIONS (hots 'x', password '{MARKER}')"),
        "TEST CONNECTION shop".into(),
        "TEST CONNECTIONS".into(),
        "SHOW CONNECTIONS".into(),
        "SHOW CREATE CONNECTION shop".into(),
        "SHOW CREATE CONNECTION shop2".into(),
        "SHOW SECRETS".into(),
        "SELECT * FROM sluice.connections".into(),
        "SELECT * FROM sluice.secrets".into(),
    ] {
        seen.push_str(&all_text(&client, &sql).await);
    }
    assert!(
        seen.contains("********"),
        "redacted values are shown as ********: {seen}"
    );
    assert!(!seen.contains(MARKER), "a secret leaked into output: {seen}");
    let statuses = all_text(&client, "SELECT status FROM sluice.connections ORDER BY name").await;
    assert_eq!(statuses, "ok|ok|", "both connections really connected with the secret");
    drop(client);
    let hits = files_containing(sluice.data_dir(), MARKER.as_bytes());
    assert!(hits.is_empty(), "secret bytes found in {hits:?}");
    assert!(!sluice.log_contents().contains(MARKER), "secret in the server log");
    assert!(
        sluice.log_contents().contains("connection created"),
        "the log is being written"
    );
}
