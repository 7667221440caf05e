//! Connection names that SQL already uses for something built in are
//! refused, naming what they collide with.

use crate::common::*;

#[tokio::test]
async fn built_in_names_cannot_name_a_connection() {
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let options = "OPTIONS (host '127.0.0.1', database 'shop', user 'etl') WITH (validate = false)";
    for (name, builtin) in [
        ("warehouse", "local warehouse"),
        ("sluice", "system tables"),
        ("pg_catalog", "system catalog"),
        ("information_schema", "information_schema"),
        ("public", "default schema"),
        ("\"Warehouse\"", "local warehouse"),
    ] {
        let message = expect_err(
            &client,
            &format!("CREATE CONNECTION {name} TYPE postgres {options}"),
            "42939",
        )
        .await;
        assert!(
            message.contains("is reserved") && message.contains(builtin),
            "{name}: {message}"
        );
    }
    assert_eq!(one(&client, "SELECT count(*) FROM sluice.connections").await, "0");
    client
        .batch_execute(&format!("CREATE CONNECTION warehouse_db TYPE postgres {options}"))
        .await
        .unwrap();
}
