//! Sources trust the system's certificate store: a PostgreSQL server whose
//! certificate a company CA signed is verified when that CA is installed
//! only in a system-style bundle (`SSL_CERT_FILE`), and refused without it.

use crate::common::*;

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed
/// (`server.pem`, `server.key`).
pub(crate) fn company_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Sluice Test Company CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Whether a Sluice started with `envs` can create a verified connection
/// (the default sslmode, verify-if-offered) to `pg`; the error text when not.
async fn connects(pg: &PgServer, envs: &[(&str, &str)]) -> Result<(), String> {
    let sluice = Sluice::start_with(&[], envs);
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION shop TYPE postgres OPTIONS (host '127.0.0.1', port {}, database 'shop', user 'etl', \
             password '{ETL_PASSWORD}')",
            pg.port
        ))
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_in_the_system_store_is_trusted_and_nothing_else_is() {
    let certs = tempfile::tempdir().unwrap();
    company_ca(certs.path());
    let pg = PgServer::start();
    // The server's files go where its user can read them, owned by it.
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&pg.dir).unwrap();
    for file in ["server.pem", "server.key"] {
        std::fs::copy(certs.path().join(file), pg.dir.join(file)).unwrap();
        std::os::unix::fs::chown(pg.dir.join(file), Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    pg.psql_admin(&format!(
        "ALTER SYSTEM SET ssl_cert_file = '{}'; ALTER SYSTEM SET ssl_key_file = '{}'; ALTER SYSTEM SET ssl = on;
         SELECT pg_reload_conf();",
        pg.dir.join("server.pem").display(),
        pg.dir.join("server.key").display()
    ));
    // A system-style bundle that holds the company CA and nothing else,
    // and one without it.
    let bundle = certs.path().join("system-bundle.pem");
    std::fs::copy(certs.path().join("ca.pem"), &bundle).unwrap();
    let empty_dir = tempfile::tempdir().unwrap();
    let bundle = bundle.display().to_string();
    connects(&pg, &[("SSL_CERT_FILE", &bundle)])
        .await
        .expect("the company CA is trusted");
    let empty = empty_dir.path().join("none.pem");
    std::fs::write(&empty, "").unwrap();
    let refused = connects(&pg, &[("SSL_CERT_FILE", &empty.display().to_string())])
        .await
        .expect_err("without the CA the certificate is not trusted");
    assert!(
        refused.contains("certificate") || refused.contains("Unknown"),
        "{refused}"
    );
}
