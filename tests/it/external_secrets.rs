//! Secrets kept outside Sluice (`CREATE SECRET name FROM ENV | FILE | GCP
//! SECRET MANAGER | AWS SECRETS MANAGER '...'`): the catalog keeps the
//! reference, the value is fetched when a connection is tested or a run
//! starts, a missing one is a `28000` naming the reference, and a rotated
//! value is used after the cache TTL without a restart. AWS Secrets
//! Manager signs with the server's AWS credential chain, down to a profile
//! of the shared credentials file.

use std::time::Duration;

use crate::common::*;
use crate::common::{emulators, secret_manager};

/// A role of the test PostgreSQL that logs in with `password`, reading
/// `public.orders` of the `shop` database.
fn add_role(pg: &PgServer, role: &str, password: &str) {
    pg.psql_admin_db(
        "shop",
        &format!(
            "CREATE TABLE IF NOT EXISTS public.orders (id bigint PRIMARY KEY, amount numeric(10,2));
             INSERT INTO public.orders SELECT g, g FROM generate_series(1, 5) g ON CONFLICT DO NOTHING;
             CREATE ROLE {role} LOGIN PASSWORD '{password}';
             GRANT SELECT ON public.orders TO {role};"
        ),
    );
}

fn pg_options(pg: &PgServer, user: &str, secret: &str) -> String {
    format!(
        "host '127.0.0.1', port {}, database 'shop', user '{user}', password SECRET {secret}",
        pg.port
    )
}

#[tokio::test]
async fn env_and_file_secrets_are_fetched_at_use_and_never_stored() {
    const ENV_VALUE: &str = "Env-Held-Password-41";
    const FILE_VALUE: &str = "File-Held-Password-42";
    let pg = PgServer::start();
    add_role(&pg, "by_env", ENV_VALUE);
    add_role(&pg, "by_file", FILE_VALUE);
    let files = tempfile::tempdir().unwrap();
    let secret_file = files.path().join("pg.pw");
    std::fs::write(&secret_file, format!("{FILE_VALUE}\n")).unwrap();
    let sluice = Sluice::start_with(&[], &[("SLUICE_TEST_PG_PASSWORD", ENV_VALUE)]);
    let client = sluice.client().await;

    client
        .batch_execute(&format!(
            "CREATE SECRET pw_env FROM ENV 'SLUICE_TEST_PG_PASSWORD';
             CREATE SECRET pw_file FROM FILE '{}';
             CREATE CONNECTION env_pg TYPE postgres OPTIONS ({});
             CREATE CONNECTION file_pg TYPE postgres OPTIONS ({});
             TEST CONNECTION file_pg",
            secret_file.display(),
            pg_options(&pg, "by_env", "pw_env"),
            pg_options(&pg, "by_file", "pw_file"),
        ))
        .await
        .unwrap();
    let statuses = rows(&client, "SELECT name, status FROM sluice.connections ORDER BY name").await;
    assert_eq!(
        statuses,
        vec![
            vec![Some("env_pg".to_owned()), Some("ok".to_owned())],
            vec![Some("file_pg".to_owned()), Some("ok".to_owned())],
        ]
    );
    let shown = rows(&client, "SHOW SECRETS").await;
    let listed: Vec<_> = shown
        .iter()
        .map(|r| (r[0].clone(), r[3].clone(), r[4].clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                Some("pw_env".into()),
                Some("env".into()),
                Some("SLUICE_TEST_PG_PASSWORD".into())
            ),
            (
                Some("pw_file".into()),
                Some("file".into()),
                Some(secret_file.display().to_string())
            ),
        ]
    );
    let script = one(&client, "SHOW CREATE ALL").await;
    assert!(
        script.contains("CREATE SECRET pw_env FROM ENV 'SLUICE_TEST_PG_PASSWORD';"),
        "{script}"
    );

    // A missing variable or file is a 28000 naming the reference.
    client
        .batch_execute(&format!(
            "CREATE SECRET unset FROM ENV 'SLUICE_TEST_SURELY_UNSET';
             CREATE SECRET gone FROM FILE '{}'",
            files.path().join("gone.pw").display()
        ))
        .await
        .unwrap();
    let err = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION nope TYPE postgres OPTIONS ({})",
            pg_options(&pg, "etl", "unset")
        ),
        "28000",
    )
    .await;
    assert!(
        err.contains("environment variable SLUICE_TEST_SURELY_UNSET") && err.contains("does not exist"),
        "{err}"
    );
    client
        .batch_execute("ALTER CONNECTION file_pg SET (password SECRET gone) WITH (validate = false)")
        .await
        .unwrap();
    let err = expect_err(&client, "TEST CONNECTION file_pg", "28000").await;
    assert!(err.contains("gone.pw"), "{err}");

    // Files outside the allowed paths are refused like connection paths.
    let err = expect_err(&client, "CREATE SECRET outside FROM FILE '/etc/sluice-pw'", "42501").await;
    assert!(err.contains("/etc/sluice-pw"), "{err}");
    assert_eq!(
        one(&client, "SELECT count(*) FROM sluice.secrets WHERE name = 'outside'").await,
        "0"
    );

    for value in [ENV_VALUE, FILE_VALUE] {
        assert!(
            files_containing(sluice.data_dir(), value.as_bytes()).is_empty(),
            "the value is on disk"
        );
        assert!(!sluice.log_contents().contains(value), "the value is in the log");
        assert!(!err.contains(value));
    }
}

#[tokio::test]
async fn a_rotated_file_secret_is_used_after_the_cache_ttl_without_a_restart() {
    let pg = PgServer::start();
    add_role(&pg, "rotator", "Rotate-First-1");
    let files = tempfile::tempdir().unwrap();
    let secret_file = files.path().join("rotator.pw");
    std::fs::write(&secret_file, "Rotate-First-1").unwrap();
    let sluice = Sluice::start_with(&["--secret-cache-ttl", "2"], &[]);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE SECRET rotator_pw FROM FILE '{}';
             CREATE CONNECTION rot TYPE postgres OPTIONS ({});
             CREATE ETL JOB orders FROM rot.public.orders INTO warehouse.orders SNAPSHOT;
             RUN ETL JOB orders",
            secret_file.display(),
            pg_options(&pg, "rotator", "rotator_pw"),
        ))
        .await
        .unwrap();

    pg.psql_admin_db("shop", "ALTER ROLE rotator PASSWORD 'Rotate-Second-2'");
    std::fs::write(&secret_file, "Rotate-Second-2").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client.batch_execute("RUN ETL JOB orders").await.unwrap();
    let runs = rows(
        &client,
        "SELECT status FROM sluice.runs WHERE job = 'orders' ORDER BY run_id",
    )
    .await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r[0].as_deref() == Some("succeeded")), "{runs:?}");
}

#[tokio::test]
async fn gcp_secret_manager_values_come_with_application_default_credentials() {
    const FIRST: &str = "Gcp-Held-Password-1";
    const SECOND: &str = "Gcp-Held-Password-2";
    let version = "projects/p/secrets/pg/versions/latest";
    // The BigQuery fake serves the token endpoint of the service-account key.
    let google = crate::fake_bigquery::FakeBigQuery::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = google.write_key_file(keys.path());
    let manager = secret_manager::FakeSecretManager::start(crate::fake_bigquery::TOKEN);
    manager.put(version, FIRST);
    manager
        .state()
        .denied
        .insert("projects/p/secrets/locked/versions/1".into());
    let pg = PgServer::start();
    add_role(&pg, "by_gcp", FIRST);
    let sluice = Sluice::start_with(
        &["--secret-cache-ttl", "1"],
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", &key_file.display().to_string()),
            ("SLUICE_GCP_SECRET_MANAGER_ENDPOINT", &manager.url),
        ],
    );
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE SECRET pw FROM GCP SECRET MANAGER '{version}';
             CREATE CONNECTION gcp_pg TYPE postgres OPTIONS ({})",
            pg_options(&pg, "by_gcp", "pw")
        ))
        .await
        .unwrap();
    assert!(
        manager.state().requests.contains(&format!("/v1/{version}:access")),
        "{:?}",
        manager.state().requests
    );

    // A new version is used after the cache TTL, without a restart.
    manager.put(version, SECOND);
    pg.psql_admin_db("shop", &format!("ALTER ROLE by_gcp PASSWORD '{SECOND}'"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client.batch_execute("TEST CONNECTION gcp_pg").await.unwrap();

    // Missing (404) and forbidden (403) versions are 28000s naming the reference.
    client
        .batch_execute(
            "CREATE SECRET missing FROM GCP SECRET MANAGER 'projects/p/secrets/none/versions/1';
             CREATE SECRET locked FROM GCP SECRET MANAGER 'projects/p/secrets/locked/versions/1'",
        )
        .await
        .unwrap();
    for (secret, expected) in [("missing", "does not exist"), ("locked", "permission denied")] {
        let err = expect_err(
            &client,
            &format!(
                "CREATE CONNECTION c_{secret} TYPE postgres OPTIONS ({})",
                pg_options(&pg, "etl", secret)
            ),
            "28000",
        )
        .await;
        assert!(
            err.contains("GCP Secret Manager secret projects/p/secrets/") && err.contains(expected),
            "{err}"
        );
    }
    // A key file given to the server instead of Application Default Credentials.
    let mut sluice = sluice;
    sluice.opts = sluice
        .opts
        .clone()
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .arg("--gcp-secret-manager-credentials")
        .arg(&key_file.display().to_string());
    sluice.restart();
    let client = sluice.client().await;
    let requests = manager.state().requests.len();
    client.batch_execute("TEST CONNECTION gcp_pg").await.unwrap();
    assert_eq!(manager.state().requests.len(), requests + 1);

    for value in [FIRST, SECOND] {
        assert!(files_containing(sluice.data_dir(), value.as_bytes()).is_empty());
        assert!(!sluice.log_contents().contains(value));
    }
}

#[tokio::test]
async fn aws_secrets_manager_values_are_read_with_signed_requests() {
    const VALUE: &str = "Aws-Held-Password-1";
    let moto = emulators::Emulator::moto();
    let program = format!(
        "import boto3\n\
         c = boto3.client('secretsmanager', endpoint_url='{}', region_name='eu-west-1', \
         aws_access_key_id='test', aws_secret_access_key='test')\n\
         print(c.create_secret(Name='pg-password', SecretString='{VALUE}')['ARN'])",
        moto.endpoint()
    );
    let out = std::process::Command::new(emulators::python_path())
        .args(["-c", &program])
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let arn = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(arn.starts_with("arn:aws:secretsmanager:eu-west-1:"), "{arn}");
    let pg = PgServer::start();
    add_role(&pg, "by_aws", VALUE);
    let sluice = Sluice::start_with(
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("SLUICE_AWS_SECRETS_MANAGER_ENDPOINT", &moto.endpoint()),
        ],
    );
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE SECRET pw FROM AWS SECRETS MANAGER '{arn}';
             CREATE SECRET missing FROM AWS SECRETS MANAGER 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:none-AbCdEf';
             CREATE CONNECTION aws_pg TYPE postgres OPTIONS ({})",
            pg_options(&pg, "by_aws", "pw")
        ))
        .await
        .unwrap();
    assert_eq!(
        one(&client, "SELECT status FROM sluice.connections WHERE name = 'aws_pg'").await,
        "ok"
    );
    let err = expect_err(
        &client,
        &format!(
            "CREATE CONNECTION nope TYPE postgres OPTIONS ({})",
            pg_options(&pg, "etl", "missing")
        ),
        "28000",
    )
    .await;
    assert!(
        err.contains("AWS Secrets Manager secret arn:aws:secretsmanager:eu-west-1:123456789012:secret:none-AbCdEf"),
        "{err}"
    );
    assert!(files_containing(sluice.data_dir(), VALUE.as_bytes()).is_empty());
    assert!(!sluice.log_contents().contains(VALUE));
}

/// Secrets Manager requests signed with the keys of `AWS_PROFILE`'s section
/// of the shared credentials file (no `AWS_ACCESS_KEY_ID` in the
/// environment), against moto checking signatures: the `etl` profile's
/// keys read the secret, the `default` profile's (a user allowed nothing)
/// are refused, a profile without keys is named.
#[tokio::test]
async fn aws_secrets_manager_signs_with_a_profile_of_the_shared_credentials_file() {
    const VALUE: &str = "Profile-Held-Password-7";
    let (moto, (etl_id, etl_secret), (nobody_id, nobody_secret)) = emulators::Emulator::moto_iam("unused");
    let program = format!(
        "import boto3\n\
         c = boto3.client('secretsmanager', endpoint_url='{}', region_name='eu-west-1', \
         aws_access_key_id='{etl_id}', aws_secret_access_key='{etl_secret}')\n\
         print(c.create_secret(Name='pg-password', SecretString='{VALUE}')['ARN'])",
        moto.endpoint()
    );
    let out = std::process::Command::new(emulators::python_path())
        .args(["-c", &program])
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let arn = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = {nobody_id}\naws_secret_access_key = {nobody_secret}\n\n\
             [etl]\naws_access_key_id = {etl_id}\naws_secret_access_key = {etl_secret}\n\n[sso]\nregion = eu-west-1\n"
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap().to_owned();
    let pg = PgServer::start();
    add_role(&pg, "by_profile", VALUE);
    let endpoint = moto.endpoint();
    let start = |profile: Option<&str>| {
        let mut env = vec![
            ("AWS_SHARED_CREDENTIALS_FILE", file.as_str()),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("SLUICE_AWS_SECRETS_MANAGER_ENDPOINT", endpoint.as_str()),
        ];
        env.extend(profile.map(|p| ("AWS_PROFILE", p)));
        Sluice::start_with(&[], &env)
    };
    let create = format!(
        "CREATE SECRET pw FROM AWS SECRETS MANAGER '{arn}'; CREATE CONNECTION aws_pg TYPE postgres OPTIONS ({})",
        pg_options(&pg, "by_profile", "pw")
    );

    let sluice = start(Some("etl"));
    let client = sluice.client().await;
    client.batch_execute(&create).await.unwrap();
    assert_eq!(
        one(&client, "SELECT status FROM sluice.connections WHERE name = 'aws_pg'").await,
        "ok"
    );
    assert!(!sluice.log_contents().contains(VALUE));
    assert!(!sluice.log_contents().contains(&etl_secret));
    drop(client);
    drop(sluice);

    let sluice = start(None);
    let client = sluice.client().await;
    let refused = expect_err(&client, &create, "28000").await;
    assert!(
        refused.contains("permission denied"),
        "the default profile's user may not: {refused}"
    );
    assert!(!refused.contains(&nobody_secret), "{refused}");
    drop(client);
    drop(sluice);

    let sluice = start(Some("sso"));
    let client = sluice.client().await;
    let missing = expect_err(&client, &create, "28000").await;
    assert!(
        missing.contains("the AWS profile \"sso\" has no aws_access_key_id"),
        "{missing}"
    );
}
