//! The AWS credential chain of a DynamoDB connection in a real `sluice`
//! process against moto checking signatures: a profile of the shared
//! credentials file (named by the `profile` option), a profile without
//! keys, and the container credentials endpoint (a local fake).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::common::dynamodb::Dynamo;
use crate::common::{Sluice, expect_err, rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_a_profile_of_the_shared_file_or_the_container_endpoint() {
    let (dynamo, (key, secret)) = Dynamo::start_checking_keys();
    let endpoint = dynamo.endpoint().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = AKIAWRONG\naws_secret_access_key = wrong-secret\n\n\
             [etl]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n\n[sso]\nregion = eu-west-1\n"
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap().to_owned();
    let sluice = Sluice::start_with(
        &[],
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", file.as_str()),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let client = sluice.client().await;
    let create = |name: &str, extra: &str| {
        format!("CREATE CONNECTION {name} TYPE dynamodb OPTIONS (endpoint '{endpoint}'{extra})")
    };
    // The default profile's keys are used, and moto refuses them.
    let refused = expect_err(&client, &create("d0", ""), "28P01").await;
    assert!(!refused.contains("wrong-secret"), "{refused}");
    let missing = expect_err(&client, &create("d1", ", profile 'sso'"), "28P01").await;
    assert!(
        missing.contains("the AWS profile \"sso\" has no aws_access_key_id"),
        "{missing}"
    );
    client.batch_execute(&create("dyn", ", profile 'etl'")).await.unwrap();
    assert_eq!(
        rows(&client, "SHOW TABLES FROM dyn.dynamodb").await[0][1].as_deref(),
        Some("orders")
    );
    drop(client);
    drop(sluice);

    // The container endpoint, with its authorization token.
    let answer = json!({"AccessKeyId": key, "SecretAccessKey": secret, "Expiration": "2999-01-01T00:00:00Z"});
    let app = Router::new().route(
        "/creds",
        get(move |headers: axum::http::HeaderMap| {
            let answer = answer.clone();
            async move {
                match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some("container-token") => Ok(Json(answer)),
                    _ => Err(axum::http::StatusCode::UNAUTHORIZED),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/creds", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sluice = Sluice::start_with(
        &[],
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-token"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
        ],
    );
    let client = sluice.client().await;
    client.batch_execute(&create("dyn", "")).await.unwrap();
    assert_eq!(
        rows(&client, "SHOW TABLES FROM dyn.dynamodb").await[0][1].as_deref(),
        Some("orders")
    );
}
