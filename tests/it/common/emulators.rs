//! Object-store emulators for the cloud warehouse and bucket source tests:
//! S3 by moto, Azure Blob Storage by Azurite and GCS by fake-gcs-server,
//! each on a free loopback port in its own temp dir, killed on `Drop` (each
//! is a single process: moto_server is Python, azurite-blob is node,
//! fake-gcs-server is Go). The tools are installed (once, cached) by
//! `scripts/install-emulators.sh`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{accepts_tcp, free_port, output_text, tail};

/// Azurite's well-known development account and key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The directory the emulators are installed in, installing them if needed.
pub(super) fn tools() -> &'static PathBuf {
    static TOOLS: OnceLock<PathBuf> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-emulators.sh");
        let out = Command::new("bash")
            .arg(script)
            .output()
            .expect("run install-emulators.sh");
        assert!(
            out.status.success(),
            "installing the emulators failed:\n{}",
            output_text(&out)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The Python with the emulators' clients (boto3, azure-storage-blob).
pub fn python_path() -> PathBuf {
    tools().join("moto-venv/bin/python")
}

/// A running emulator.
pub struct Emulator {
    pub port: u16,
    /// `http`, or `https` for [`Emulator::moto_tls`].
    scheme: &'static str,
    child: Child,
    log: PathBuf,
    _tmp: TempDir,
}

impl Emulator {
    /// moto's S3 server; any access key and secret are accepted.
    pub fn moto() -> Emulator {
        let bin = tools().join("moto-venv/bin/moto_server");
        Self::spawn("moto", |port, _| {
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            cmd
        })
    }

    /// moto checking signatures against its IAM: creates the S3 `bucket`,
    /// a user allowed everything on S3 and Secrets Manager and one allowed
    /// nothing; returns
    /// their access keys (id, secret).
    pub fn moto_iam(bucket: &str) -> (Emulator, (String, String), (String, String)) {
        let bin = tools().join("moto-venv/bin/moto_server");
        let moto = Self::spawn("moto-iam", |port, _| {
            let mut cmd = Command::new(&bin);
            // The set-up below is the only unauthenticated traffic.
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "6");
            cmd
        });
        let out = moto.python_output(&format!(
            "import boto3, json\n\
             kw = dict(endpoint_url='{}', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b')\n\
             boto3.client('s3', **kw).create_bucket(Bucket='{bucket}')\n\
             iam = boto3.client('iam', **kw)\n\
             iam.create_user(UserName='etl')\n\
             iam.put_user_policy(UserName='etl', PolicyName='all', PolicyDocument=json.dumps({{'Version': '2012-10-17', \
             'Statement': [{{'Effect': 'Allow', 'Action': ['s3:*', 'secretsmanager:*'], 'Resource': '*'}}]}}))\n\
             etl = iam.create_access_key(UserName='etl')['AccessKey']\n\
             iam.create_user(UserName='nobody')\n\
             nobody = iam.create_access_key(UserName='nobody')['AccessKey']\n\
             print(etl['AccessKeyId'], etl['SecretAccessKey'], nobody['AccessKeyId'], nobody['SecretAccessKey'])",
            moto.endpoint()
        ));
        let keys: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
        assert_eq!(keys.len(), 4, "{out}");
        (
            moto,
            (keys[0].clone(), keys[1].clone()),
            (keys[2].clone(), keys[3].clone()),
        )
    }

    /// moto's S3 server over HTTPS with the certificate `cert` and its `key`.
    pub fn moto_tls(cert: &std::path::Path, key: &std::path::Path) -> Emulator {
        let bin = tools().join("moto-venv/bin/moto_server");
        let mut moto = Self::spawn("moto", |port, _| {
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string(), "-c"])
                .arg(cert)
                .arg("-k")
                .arg(key);
            cmd
        });
        moto.scheme = "https";
        moto
    }

    /// Azurite's blob service with the development account.
    pub fn azurite() -> Emulator {
        let bin = tools().join("azurite/node_modules/.bin/azurite-blob");
        Self::spawn("azurite", |port, dir| {
            let mut cmd = Command::new(&bin);
            cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .args([
                    "--inMemoryPersistence",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--loose",
                ])
                .current_dir(dir);
            cmd
        })
    }

    /// fake-gcs-server (GCS's JSON and XML APIs, no authentication).
    pub fn fake_gcs() -> Emulator {
        let bin = tools().join("gcs-venv/bin/fake-gcs-server");
        Self::spawn("fake-gcs", |port, dir| {
            let mut cmd = Command::new(&bin);
            cmd.args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string()])
                .args(["-public-host", &format!("127.0.0.1:{port}")])
                .args(["-backend", "memory", "-log-level", "warn"])
                .current_dir(dir);
            cmd
        })
    }

    pub(super) fn spawn(name: &str, command: impl Fn(u16, &std::path::Path) -> Command) -> Emulator {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("sluice-{name}-"))
            .tempdir()
            .unwrap();
        let log = tmp.path().join(format!("{name}.log"));
        for _ in 0..4 {
            let port = free_port();
            let file = std::fs::File::create(&log).unwrap();
            let mut child = command(port, tmp.path())
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| panic!("start {name}: {e}"));
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if accepts_tcp(port) {
                    return Emulator {
                        port,
                        scheme: "http",
                        child,
                        log,
                        _tmp: tmp,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            stop(&mut child);
        }
        panic!(
            "{name} did not start:\n{}",
            tail(&std::fs::read_to_string(&log).unwrap_or_default(), 50)
        );
    }

    /// The endpoint URL (`http://127.0.0.1:port`, `https://` with TLS).
    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// Creates an S3 bucket (moto).
    pub fn create_bucket(&self, bucket: &str) {
        self.python(&format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='a', \
             aws_secret_access_key='b', region_name='us-east-1', verify=False).create_bucket(Bucket='{bucket}')",
            self.endpoint()
        ));
    }

    /// Creates a blob container (Azurite).
    pub fn create_container(&self, container: &str) {
        self.python(&format!(
            "from azure.storage.blob import BlobServiceClient; BlobServiceClient.from_connection_string(\
             'DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
             BlobEndpoint={}/{AZURITE_ACCOUNT};').create_container('{container}')",
            self.endpoint()
        ));
    }

    /// Creates a GCS bucket (fake-gcs-server).
    pub fn create_gcs_bucket(&self, bucket: &str) {
        self.python(&format!(
            "import urllib.request, json; urllib.request.urlopen(urllib.request.Request(\
             '{}/storage/v1/b?project=test', data=json.dumps({{'name': '{bucket}'}}).encode(), \
             headers={{'Content-Type': 'application/json'}}))",
            self.endpoint()
        ));
    }

    /// Writes (or replaces) an object in moto's S3.
    pub fn put_s3(&self, bucket: &str, key: &str, data: &[u8]) {
        let file = Self::staged(data);
        self.python(&format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='a', \
             aws_secret_access_key='b', region_name='us-east-1').upload_file('{}', '{bucket}', '{key}')",
            self.endpoint(),
            file.path().display()
        ));
    }

    /// Writes (or replaces) a blob in Azurite.
    pub fn put_blob(&self, container: &str, name: &str, data: &[u8]) {
        let file = Self::staged(data);
        self.python(&format!(
            "from azure.storage.blob import BlobServiceClient; BlobServiceClient.from_connection_string(\
             'DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
             BlobEndpoint={}/{AZURITE_ACCOUNT};').get_blob_client('{container}', '{name}')\
             .upload_blob(open('{}', 'rb'), overwrite=True)",
            self.endpoint(),
            file.path().display()
        ));
    }

    /// Writes (or replaces) an object in fake-gcs-server.
    pub fn put_gcs(&self, bucket: &str, name: &str, data: &[u8]) {
        let file = Self::staged(data);
        self.python(&format!(
            "import urllib.request, urllib.parse; urllib.request.urlopen(urllib.request.Request(\
             '{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name=' + urllib.parse.quote('{name}', safe=''), \
             data=open('{}', 'rb').read(), headers={{'Content-Type': 'application/octet-stream'}}))",
            self.endpoint(),
            file.path().display()
        ));
    }

    /// `data` in a temp file, for the Python clients to upload.
    fn staged(data: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, data).unwrap();
        file
    }

    fn python(&self, code: &str) {
        self.python_output(code);
    }

    /// Runs Python with the emulators' clients; its standard output.
    fn python_output(&self, code: &str) -> String {
        let out = Command::new(tools().join("moto-venv/bin/python"))
            .args(["-c", code])
            .output()
            .unwrap();
        assert!(out.status.success(), "{code}:\n{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- emulator log {} ---\n{}",
                self.log.display(),
                tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 40)
            );
        }
        stop(&mut self.child);
    }
}
