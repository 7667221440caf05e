//! Authentication, the data directory and connection limits (issue #10,
//! sections 4 and 5), through real clients against a real server.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sluice_catalog::{Catalog, MasterKey};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.unwrap_or_default()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "openssl {args:?}: {}", text(&output.stderr));
    output
}

/// A self-signed certificate for localhost made with `algorithm`
/// (`rsa:2048`, `ed25519`); returns (cert, key) paths in `dir`.
fn certificate(dir: &Path, algorithm: &str) -> (String, String) {
    let cert = dir.join(format!("{}.crt", algorithm.replace(':', "")));
    let key = dir.join(format!("{}.key", algorithm.replace(':', "")));
    let (cert, key) = (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned());
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            algorithm,
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
        None,
    );
    (cert, key)
}

fn psql_conninfo(sluice: &Sluice, extra: &str) -> Output {
    Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=admin dbname=sluice {extra}",
            sluice.port
        ))
        .args(["-X", "-At", "-c", "SELECT 1"])
        .env("PGPASSWORD", sluice.password())
        .env_remove("PGSSLMODE")
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn data_dir_is_private_and_a_readable_one_is_refused() {
    let mut sluice = Sluice::start();
    let data = sluice.data_dir().to_owned();
    assert_eq!(mode(&data), 0o700, "data dir mode");
    for file in files_under(&data.join("catalog"))
        .iter()
        .chain([&data.join("master.key")])
    {
        assert_eq!(mode(file) & 0o077, 0, "{} is readable by others", file.display());
    }
    sluice.terminate();

    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
    let opts = SluiceOpts {
        data_dir: Some(shared.clone()),
        ..SluiceOpts::default()
    };
    let err = Sluice::try_start_opts(opts.clone())
        .err()
        .expect("a readable data dir is refused");
    assert!(
        err.contains("chmod 700") && err.contains("--allow-readable-data-dir"),
        "{err}"
    );
    let sluice = Sluice::start_opts(opts.arg("--allow-readable-data-dir"));
    assert!(
        sluice.log_contents().contains("WARNING: data dir"),
        "{}",
        sluice.log_contents()
    );
}

/// `Hi(password, salt, 4096)` and `H(HMAC(that, "Client Key"))`, by openssl.
fn salted_password_and_stored_key(password: &str, salt_hex: &str) -> (String, String) {
    let kdf = openssl(
        &[
            "kdf",
            "-keylen",
            "32",
            "-kdfopt",
            "digest:SHA256",
            "-kdfopt",
            &format!("pass:{password}"),
            "-kdfopt",
            &format!("hexsalt:{salt_hex}"),
            "-kdfopt",
            "iter:4096",
            "PBKDF2",
        ],
        None,
    );
    let salted = text(&kdf.stdout).trim().replace(':', "").to_lowercase();
    let client_key = openssl(
        &[
            "mac",
            "-digest",
            "SHA256",
            "-macopt",
            &format!("hexkey:{salted}"),
            "-binary",
            "HMAC",
        ],
        Some(b"Client Key"),
    );
    let stored = openssl(&["dgst", "-sha256", "-r"], Some(&client_key.stdout));
    let stored = text(&stored.stdout).split_whitespace().next().unwrap().to_owned();
    (salted, stored)
}

#[tokio::test]
async fn the_stored_verifier_is_not_the_salted_password() {
    let mut sluice = Sluice::start();
    sluice.client().await;
    sluice.terminate();
    let data = sluice.data_dir().to_owned();
    let key = MasterKey::load_or_create_file(&data.join("master.key")).unwrap();
    let credentials = Catalog::open(&data.join("catalog"), key)
        .unwrap()
        .admin_credentials()
        .unwrap()
        .unwrap();
    let (salted, stored_key) = salted_password_and_stored_key(&sluice.password(), &credentials.salt);
    assert_eq!(credentials.stored_key, stored_key);
    assert!(
        files_containing(&data, salted.as_bytes()).is_empty(),
        "the salted password is on disk"
    );
    // The same password still logs in after a restart.
    sluice.opts = sluice.opts.clone().env_remove("SLUICE_PASSWORD");
    sluice.opts.password = SLUICE_TEST_PASSWORD.into();
    sluice.restart();
    sluice.client().await;
}

/// Opens the catalog's RocksDB directly (the server must be stopped).
fn raw_catalog(data: &Path) -> rocksdb::DB {
    let path = data.join("catalog");
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).unwrap();
    rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, families).unwrap()
}

#[tokio::test]
async fn salted_password_records_of_older_versions_migrate_and_keep_their_password() {
    let mut sluice = Sluice::start();
    sluice.terminate();
    let data = sluice.data_dir().to_owned();
    // What an older Sluice stored: record version 1 with the salted password.
    let legacy_password = "legacy password 1";
    let salt = "00112233445566778899aabbccddeeff";
    let (salted, stored_key) = salted_password_and_stored_key(legacy_password, salt);
    {
        let db = raw_catalog(&data);
        let record = serde_json::json!({
            "v": 1,
            "data": {"user": "admin", "salt": salt, "salted_password": salted, "iterations": 4096}
        });
        db.put_cf(db.cf_handle("meta").unwrap(), "admin", record.to_string())
            .unwrap();
    }
    // Restarted without SLUICE_PASSWORD: the migrated record logs in with
    // the old password (the harness's readiness probe uses it).
    sluice.opts = sluice.opts.clone().env_remove("SLUICE_PASSWORD");
    sluice.opts.password = legacy_password.into();
    sluice.restart();
    sluice.client().await;
    sluice.terminate();
    let db = raw_catalog(&data);
    let record: serde_json::Value =
        serde_json::from_slice(&db.get_cf(db.cf_handle("meta").unwrap(), "admin").unwrap().unwrap()).unwrap();
    assert_eq!(record["v"], 2, "{record}");
    assert_eq!(record["data"]["stored_key"], stored_key.as_str(), "{record}");
    assert!(!record.to_string().contains(&salted), "{record}");
}

/// Starts a SCRAM exchange as `user` on a raw socket; returns the salt the
/// server sends.
fn salt_offered_to(port: u16, user: &str) -> String {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    socket.write_all(&startup_packet(user)).unwrap();
    let sasl = read_message(&mut socket);
    assert_eq!(sasl.0, b'R');
    let first = b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(first.len() as u32).to_be_bytes());
    body.extend_from_slice(first);
    let mut message = vec![b'p'];
    message.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    message.extend(body);
    socket.write_all(&message).unwrap();
    let (kind, reply) = read_message(&mut socket);
    assert_eq!(kind, b'R', "{}", text(&reply));
    let server_first = text(&reply[4..]);
    server_first
        .split(',')
        .find_map(|a| a.strip_prefix("s="))
        .unwrap_or_else(|| panic!("no salt in {server_first}"))
        .to_owned()
}

fn read_message(socket: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 5];
    socket.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes(header[1..].try_into().unwrap()) as usize;
    let mut body = vec![0; len - 4];
    socket.read_exact(&mut body).unwrap();
    (header[0], body)
}

#[tokio::test]
async fn unknown_users_get_a_stable_salt_and_the_same_error() {
    let sluice = Sluice::start();
    let ghost = salt_offered_to(sluice.port, "ghost");
    assert_eq!(
        ghost,
        salt_offered_to(sluice.port, "ghost"),
        "an unknown user's salt is stable"
    );
    assert_ne!(ghost, salt_offered_to(sluice.port, "casper"));
    assert_ne!(ghost, salt_offered_to(sluice.port, "admin"));
    assert_eq!(
        salt_offered_to(sluice.port, "admin"),
        salt_offered_to(sluice.port, "admin")
    );
    let mut stranger = sluice.config();
    stranger.user("ghost");
    let unknown = connect(&stranger).await.expect_err("unknown user");
    let mut wrong = sluice.config();
    wrong.password("not-it");
    let wrong = connect(&wrong).await.expect_err("wrong password");
    assert_eq!(sqlstate(&unknown), "28P01");
    assert_eq!(sqlstate(&wrong), "28P01");
    assert_eq!(
        unknown.to_string().replace("ghost", "USER"),
        wrong.to_string().replace("admin", "USER")
    );
}

#[tokio::test]
async fn failed_logins_are_logged_and_slowed_down() {
    let sluice = Sluice::start();
    let mut wrong = sluice.config();
    wrong.password("guess");
    let mut took = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let err = connect(&wrong).await.expect_err("wrong password");
        assert_eq!(sqlstate(&err), "28P01");
        took.push(started.elapsed());
    }
    // No wait before the first failure; then 100, 200, 400 ms.
    assert!(took[0] < Duration::from_millis(300), "{took:?}");
    assert!(took[3] >= Duration::from_millis(380), "{took:?}");
    assert!(took[3] > took[1], "{took:?}");
    let log = sluice.log_contents();
    let line = log
        .lines()
        .find(|l| l.contains("login failed"))
        .unwrap_or_else(|| panic!("no failed login logged:\n{log}"));
    assert!(
        line.contains("admin") && line.contains("127.0.0.1") && line.contains("wrong password"),
        "{line}"
    );
    assert!(!log.contains("guess"), "the guessed password reached the log");
    sluice.client().await;
}

#[tokio::test]
async fn require_tls_refuses_plaintext_and_keeps_channel_binding() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "rsa:2048");
    let err = Sluice::try_start_opts(SluiceOpts::default().arg("--require-tls"))
        .err()
        .expect("--require-tls without a certificate is refused");
    assert!(err.contains("--tls-cert"), "{err}");
    let sluice = Sluice::start_opts(SluiceOpts {
        wait_for_login: false,
        ..SluiceOpts::default()
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--require-tls")
    });
    let plain = psql_conninfo(&sluice, "sslmode=disable");
    assert!(!plain.status.success());
    assert!(
        text(&plain.stderr).contains("only TLS connections"),
        "{}",
        text(&plain.stderr)
    );
    let bound = psql_conninfo(&sluice, "sslmode=require channel_binding=require");
    assert!(bound.status.success(), "{}", text(&bound.stderr));
    assert_eq!(text(&bound.stdout).trim(), "1");
    let mut wrong = Command::new("psql");
    wrong
        .arg(format!(
            "host=127.0.0.1 port={} user=admin dbname=sluice sslmode=require channel_binding=require",
            sluice.port
        ))
        .args(["-X", "-c", "SELECT 1"])
        .env("PGPASSWORD", "not-it");
    let wrong = wrong.output().unwrap();
    assert!(
        text(&wrong.stderr).contains("password authentication failed"),
        "{}",
        text(&wrong.stderr)
    );
}

#[test]
fn a_certificate_without_channel_binding_is_reported_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "ed25519");
    let sluice = Sluice::start_with(&["--tls-cert", &cert, "--tls-key", &key], &[]);
    let log = sluice.log_contents();
    assert!(
        log.contains("SCRAM-SHA-256-PLUS (channel binding) is unavailable"),
        "{log}"
    );
    let tls = psql_conninfo(&sluice, "sslmode=require");
    assert!(tls.status.success(), "{}", text(&tls.stderr));
    let bound = psql_conninfo(&sluice, "sslmode=require channel_binding=require");
    assert!(!bound.status.success());
}

#[tokio::test]
async fn max_connections_refuses_the_extra_client() {
    let sluice = Sluice::start_with(&["--max-connections", "2"], &[]);
    let first = sluice.client().await;
    let second = sluice.client().await;
    let err = sluice.try_client().await.expect_err("a third connection is refused");
    assert_eq!(sqlstate(&err), "53300", "{err:?}");
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("--max-connections"), "{err:?}");
    drop(first);
    second.simple_query("SELECT 1").await.unwrap();
    // The slot frees when a client leaves.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sluice.try_client().await.is_err() {
        assert!(Instant::now() < deadline, "the freed slot was not reused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Raises this process's open-file soft limit to at least `wanted`.
fn raise_open_files(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read a plain struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

fn startup_packet(user: &str) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for part in ["user", user, "database", "sluice", ""] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_and_huge_pre_auth_messages_cannot_starve_the_server() {
    raise_open_files(4096);
    let mut sluice = Sluice::start();
    let pid = sluice.pid().unwrap();
    let baseline = rss_kib(pid);

    let mut idle: Vec<TcpStream> = (0..1500)
        .map(|_| TcpStream::connect(("127.0.0.1", sluice.port)).expect("connect an idle socket"))
        .collect();

    // A client that logs in halfway and then declares a 256 MiB query.
    let port = sluice.port;
    let flood = std::thread::spawn(move || {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket.write_all(&startup_packet("admin")).unwrap();
        let size: u32 = 256 << 20;
        let mut header = vec![b'Q'];
        header.extend_from_slice(&(size + 4).to_be_bytes());
        socket.write_all(&header).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        for _ in 0..256 {
            if socket.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let sent = flood.join().unwrap();
    assert!(sent < 64 << 20, "the server read {sent} bytes before authentication");

    // Let the server drain its accept queue, then log in for real.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = sluice.client().await;
    assert_eq!(one(&client, "SELECT 1").await, "1");
    assert!(sluice.is_running());
    let grown = rss_kib(pid).saturating_sub(baseline);
    assert!(grown < 64 * 1024, "server RSS grew by {grown} KiB");

    // The idle sockets still open on the server side close within 10 s.
    let mut last = idle.pop().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let _ = last.read(&mut byte);
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());
    sluice.terminate();
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn accept_errors_back_off_instead_of_spinning() {
    let sluice = Sluice::start();
    let pid = sluice.pid().unwrap();
    let open = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    // Leave room for two more sockets, then connect more than that.
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={}:{}", open + 2, open + 2))
        .status()
        .unwrap();
    assert!(status.success());
    let _sockets: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", sluice.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    // 2 s of one core is 200 ticks; a spinning accept loop uses most of it.
    assert!(used < 50, "the server used {used} ticks in 2 s");
    assert!(
        sluice.log_contents().contains("could not accept"),
        "{}",
        sluice.log_contents()
    );
}

#[tokio::test]
async fn source_connections_verify_tls_by_default() {
    let pg = PgServer::start();
    // A self-signed certificate: it encrypts, but nobody vouches for it.
    let (cert, key) = certificate(&pg.dir, "rsa:2048");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let status = Command::new("chown")
            .args(["postgres:postgres", &cert, &key])
            .status()
            .unwrap();
        assert!(status.success());
    }
    pg.psql_admin(&format!(
        "ALTER SYSTEM SET ssl_cert_file = '{cert}';\nALTER SYSTEM SET ssl_key_file = '{key}';\nALTER SYSTEM SET ssl = on;\nSELECT pg_reload_conf();\n"
    ));
    let sluice = Sluice::start();
    let client = sluice.client().await;
    let options = format!(
        "host '127.0.0.1', port {}, database 'shop', user 'etl', password '{ETL_PASSWORD}'",
        pg.port
    );
    let message = expect_err(
        &client,
        &format!("CREATE CONNECTION unverified TYPE postgres OPTIONS ({options})"),
        "08001",
    )
    .await;
    assert!(message.contains("certificate"), "{message}");
    client
        .batch_execute(&format!(
            "CREATE CONNECTION encrypted TYPE postgres OPTIONS ({options}, sslmode 'prefer')"
        ))
        .await
        .unwrap();
    let saved = one(
        &client,
        "SELECT options FROM sluice.connections WHERE name = 'encrypted'",
    )
    .await;
    assert!(saved.contains("sslmode 'prefer'"), "{saved}");
}
