//! Secret rotation through a real client: `ALTER SECRET` saves the new
//! value, re-tests every connection that uses it at once and reports each
//! one that fails (a NOTICE and `sluice.connections.last_error`).

use crate::common::*;

#[tokio::test]
async fn alter_secret_saves_the_value_and_reports_each_connection_it_breaks() {
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

    // A wrong value is saved, and each connection it breaks is reported
    // (a warning NOTICE naming it, its status and last error), the value
    // itself never.
    let output = sluice.psql("ALTER SECRET shop_pw AS 'not_it';");
    let notices = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{notices}");
    for connection in ["\"shop\"", "\"shop_too\""] {
        assert!(
            notices.contains(&format!("connection {connection} fails with the new value")),
            "{notices}"
        );
    }
    assert!(!notices.contains("not_it"), "{notices}");
    let broken = rows(
        &client,
        "SELECT name, status, last_error FROM sluice.connections ORDER BY name",
    )
    .await;
    assert_eq!(broken.len(), 2);
    for row in &broken {
        assert_eq!(row[1].as_deref(), Some("failed"), "{broken:?}");
        assert!(row[2].as_deref().unwrap_or_default().contains("password"), "{broken:?}");
    }
    // The saved value is the one used.
    expect_err(&client, "TEST CONNECTION shop", "28P01").await;

    // The source's password changes to the right value: saving it repairs
    // both connections at once, and the job runs.
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
