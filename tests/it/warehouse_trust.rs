//! A warehouse bucket reached over HTTPS trusts what every other TLS path
//! of Sluice trusts: an S3 endpoint (moto) whose certificate a company CA
//! signed works when that CA is in the system store (`SSL_CERT_FILE`), and
//! is refused without it.

use crate::common;
use crate::trust_store::company_ca;

use common::emulators::Emulator;
use common::*;

/// Sluice with the S3 warehouse at `endpoint` and the system store `bundle`.
fn options(endpoint: &str, bundle: &str) -> SluiceOpts {
    SluiceOpts::default()
        .arg("--warehouse")
        .arg("s3://lake/trusted")
        .env("AWS_ACCESS_KEY_ID", "sluice-test")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("SSL_CERT_FILE", bundle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_ca_in_the_system_store_is_trusted_for_warehouse_buckets() {
    let certs = tempfile::tempdir().unwrap();
    company_ca(certs.path());
    let moto = Emulator::moto_tls(&certs.path().join("server.pem"), &certs.path().join("server.key"));
    moto.create_bucket("lake");
    let pg = PgServer::start();
    pg.psql_admin_db(
        "shop",
        "CREATE TABLE things (id bigint PRIMARY KEY); INSERT INTO things SELECT generate_series(1, 10);
         GRANT SELECT ON things TO etl;",
    );
    // Without the CA, start-up cannot list the warehouse.
    let empty = certs.path().join("none.pem");
    std::fs::write(&empty, "").unwrap();
    let refused = Sluice::try_start_opts(options(&moto.endpoint(), &empty.display().to_string()))
        .err()
        .expect("without the CA the bucket's certificate is not trusted");
    assert!(refused.contains("warehouse: storage error"), "{refused}");

    let bundle = certs.path().join("ca.pem").display().to_string();
    let sluice = Sluice::start_opts(options(&moto.endpoint(), &bundle));
    let client = sluice.client().await;
    create_shop_connection(&client, &pg).await;
    client
        .batch_execute("CREATE ETL JOB t FROM shop.public.things SNAPSHOT")
        .await
        .unwrap();
    let run = rows(&client, "RUN ETL JOB t").await;
    assert_eq!(
        (run[0][1].as_deref(), run[0][2].as_deref()),
        (Some("succeeded"), Some("10")),
        "{run:?}"
    );
}
