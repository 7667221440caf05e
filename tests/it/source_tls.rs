//! TLS to MySQL/MariaDB sources: the default `ssl_mode 'verify_if_offered'`
//! refuses a certificate nobody vouches for and says how to proceed;
//! `ssl_mode 'preferred'` encrypts without verifying; `ssl_ca` trusts the
//! server's own certificate and verifies it, host name included.

use crate::common::*;

#[tokio::test]
async fn mariadb_sources_verify_tls_by_default() {
    let maria = MariaDb::start_with_tls();
    let cert = maria.tls_cert.clone().unwrap();
    // A user that can only sign in over TLS: connecting proves encryption.
    maria.sql(&format!(
        "CREATE USER 'tls_etl'@'%' IDENTIFIED BY '{ETL_PASSWORD}' REQUIRE SSL;
         GRANT ALL PRIVILEGES ON *.* TO 'tls_etl'@'%';
         CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (7);"
    ));
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let options = format!(
        "host '127.0.0.1', port {}, database 'shop', user 'tls_etl', password '{ETL_PASSWORD}'",
        maria.port
    );

    let refused = client
        .batch_execute(&format!(
            "CREATE CONNECTION unverified TYPE mariadb OPTIONS ({options})"
        ))
        .await
        .unwrap_err();
    let db = refused.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "08001", "{db:?}");
    assert!(db.message().contains("certificate"), "{}", db.message());
    let hint = db.hint().unwrap_or_default();
    assert!(
        hint.contains("ssl_mode 'preferred'") && hint.contains("ssl_ca"),
        "the hint names the fix: {hint}"
    );
    assert!(
        rows(&client, "SELECT name FROM sluice.connections").await.is_empty(),
        "nothing saved"
    );

    let ca = cert.display();
    for (connection, tls) in [
        ("encrypted", "ssl_mode 'preferred'".to_owned()),
        ("trusted", format!("ssl_ca '{ca}'")),
        ("identified", format!("ssl_mode 'verify_identity', ssl_ca '{ca}'")),
    ] {
        client
            .batch_execute(&format!(
                "CREATE CONNECTION {connection} TYPE mariadb OPTIONS ({options}, {tls})"
            ))
            .await
            .unwrap_or_else(|e| panic!("{connection}: {e:?}"));
        assert_eq!(
            one(&client, &format!("SELECT id FROM {connection}.shop.t")).await,
            "7",
            "{connection} reads over TLS"
        );
        // One connection per server and user: make room for the next.
        client
            .batch_execute(&format!("DROP CONNECTION {connection}"))
            .await
            .unwrap();
    }
}
