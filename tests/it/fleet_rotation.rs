//! Secret rotation through a real client: `ALTER SECRET` tests every
//! connection that uses the secret with the new value before saving it.

use crate::common::*;

#[tokio::test]
async fn alter_secret_saves_a_value_only_when_every_connection_works_with_it() {
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE public.orders (id bigint PRIMARY KEY); INSERT INTO public.orders VALUES (1), (2);",
    );
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE SECRET shop_pw AS '{ETL_PASSWORD}'; \
             CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {port}, database 'shop', \
                 user 'etl', password SECRET shop_pw, sslmode 'disable'); \
             CREATE CONNECTION shop_too TYPE postgres OPTIONS (host '127.0.0.1', port {port}, database 'postgres', \
                 user 'etl', password SECRET shop_pw, sslmode 'disable'); \
             CREATE ETL JOB orders FROM shop.public.orders INTO orders SNAPSHOT",
            port = pg.port
        ))
        .await
        .unwrap();

    // The source's password changes: a wrong new value is refused, naming
    // each connection, and nothing is saved.
    pg.psql_admin("ALTER ROLE etl PASSWORD 'rotated_pw_456'");
    let message = expect_err(&client, "ALTER SECRET shop_pw AS 'not_it'", "28P01").await;
    assert!(message.starts_with("secret \"shop_pw\" was not changed"), "{message}");
    for connection in ["\"shop\"", "\"shop_too\""] {
        assert!(
            message.contains(&format!("connection {connection} fails with the new value")),
            "{message}"
        );
    }
    assert!(!message.contains("not_it"), "{message}");
    // Still the old value: it works again once the source takes it back.
    pg.psql_admin(&format!("ALTER ROLE etl PASSWORD '{ETL_PASSWORD}'"));
    assert_eq!(rows(&client, "TEST CONNECTION shop").await[0][1].as_deref(), Some("ok"));

    // The right value is saved, and the connections use it at once.
    pg.psql_admin("ALTER ROLE etl PASSWORD 'rotated_pw_456'");
    let output = sluice.psql("ALTER SECRET shop_pw AS 'rotated_pw_456';");
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{notices}");
    assert!(
        notices.contains("NOTICE:  connection \"shop_too\" works with the new value of secret \"shop_pw\""),
        "{notices}"
    );
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.connections WHERE status = 'ok'").await,
        "2"
    );
    assert_eq!(
        rows(&client, "RUN ETL JOB orders").await[0][1].as_deref(),
        Some("succeeded")
    );
    expect_err(&client, "ALTER SECRET nope AS 'x'", "42704").await;
    expect_err(&client, "ALTER SECRET \"shop/password\" AS 'x'", "42704").await;
}
