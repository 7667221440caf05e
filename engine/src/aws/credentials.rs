//! The AWS credential chain of a DynamoDB connection and of the AWS
//! Secrets Manager store, in this order (the first that has credentials
//! wins; `docs/sources/documents.md` and `docs/security.md` document it):
//!
//! 1. the connection's `access_key_id`, `secret_access_key` and
//!    `session_token` options (DynamoDB only);
//! 2. the server's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//!    `AWS_SESSION_TOKEN`;
//! 3. the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
//!    `~/.aws/credentials`), then the config file (`AWS_CONFIG_FILE`, else
//!    `~/.aws/config`), in the section of the connection's `profile`
//!    option (DynamoDB only), else `AWS_PROFILE`, else `default`; a profile named by the
//!    option or `AWS_PROFILE` that has no keys is an error;
//! 4. the container endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, or
//!    `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` on `169.254.170.2`, with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN`);
//! 5. the instance metadata service, IMDSv2 (a session token first) at
//!    `169.254.169.254` or `AWS_EC2_METADATA_SERVICE_ENDPOINT`, unless
//!    `AWS_EC2_METADATA_DISABLED` is `true`.
//!
//! Endpoints answer within [`ENDPOINT_TIMEOUT`]; their credentials are
//! kept until [`REFRESH_BEFORE`] their expiry. The `aws-config` crate is not
//! used: it brings the STS, SSO and OIDC SDKs for what is a few requests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use serde_json::Value as Json;
use tokio::sync::Mutex;

/// How long a container or instance metadata endpoint may take to answer.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(2);

/// Credentials from an endpoint are fetched again this long before they
/// expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The instance metadata service.
const IMDS: &str = "http://169.254.169.254";

/// The container credentials host of `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
const ECS_HOST: &str = "http://169.254.170.2";

/// The server's environment, or a test's.
pub(crate) type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment (empty values as unset).
pub(crate) fn process_env() -> Env {
    Arc::new(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// Where a connection's requests get their credentials.
#[derive(Clone)]
pub(crate) struct CredentialChain {
    /// The connection's own keys.
    explicit: Option<Credentials>,
    /// The connection's `profile` option.
    profile: Option<String>,
    env: Env,
    /// Credentials an endpoint gave, until they are due for refresh.
    cached: Arc<Mutex<Option<Credentials>>>,
}

impl CredentialChain {
    pub(crate) fn new(explicit: Option<Credentials>, profile: Option<String>, env: Env) -> Self {
        Self {
            explicit,
            profile,
            env,
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// The first credentials of the chain, or why there are none.
    pub(crate) async fn credentials(&self) -> Result<Credentials, String> {
        if let Some(explicit) = &self.explicit {
            return Ok(explicit.clone());
        }
        let env = |name: &str| (self.env)(name);
        if let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Credentials::new(
                key,
                secret,
                env("AWS_SESSION_TOKEN"),
                None,
                "environment",
            ));
        }
        if let Some(found) = self.shared_files()? {
            return Ok(found);
        }
        let mut cached = self.cached.lock().await;
        if let Some(credentials) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(credentials.clone());
        }
        let fetched = match self.container_uri() {
            Some((uri, token)) => Some(container(&uri, token.as_deref()).await?),
            None if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) => None,
            None => {
                let endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| IMDS.to_owned());
                instance_metadata(&endpoint).await.ok()
            }
        };
        match fetched {
            Some(credentials) => {
                *cached = Some(credentials.clone());
                Ok(credentials)
            }
            None => Err(
                "no AWS credentials: give a DynamoDB connection access_key_id and secret_access_key (or a \
                         profile), or give the server AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a shared \
                         credentials file, or a container or instance role"
                    .into(),
            ),
        }
    }

    /// The profile's keys in the credentials file, then the config file.
    fn shared_files(&self) -> Result<Option<Credentials>, String> {
        let env = |name: &str| (self.env)(name);
        let named = self.profile.clone().or_else(|| env("AWS_PROFILE"));
        let profile = named.clone().unwrap_or_else(|| "default".into());
        let home = env("HOME").map(PathBuf::from);
        let file = |var: &str, default: &str| {
            env(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(default)))
        };
        let files = [
            (file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"), profile.clone()),
            (
                file("AWS_CONFIG_FILE", ".aws/config"),
                if profile == "default" {
                    profile.clone()
                } else {
                    format!("profile {profile}")
                },
            ),
        ];
        for (path, section) in files {
            let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
                continue;
            };
            let Some(values) = ini_sections(&text).remove(&section) else {
                continue;
            };
            if let (Some(key), Some(secret)) = (values.get("aws_access_key_id"), values.get("aws_secret_access_key")) {
                return Ok(Some(Credentials::new(
                    key,
                    secret,
                    values.get("aws_session_token").cloned(),
                    None,
                    "profile",
                )));
            }
        }
        match named {
            Some(name) => Err(format!(
                "the AWS profile \"{name}\" has no aws_access_key_id and aws_secret_access_key in the shared \
                 credentials or config file (roles, SSO and credential_process are not read)"
            )),
            None => Ok(None),
        }
    }

    /// The container credentials URI and its authorization token.
    fn container_uri(&self) -> Option<(String, Option<String>)> {
        let env = |name: &str| (self.env)(name);
        let uri = env("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .or_else(|| env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(|path| format!("{ECS_HOST}{path}")))?;
        Some((uri, env("AWS_CONTAINER_AUTHORIZATION_TOKEN")))
    }
}

/// Whether credentials are not yet due for refresh.
fn fresh(credentials: &Credentials) -> bool {
    credentials
        .expiry()
        .is_none_or(|expiry| SystemTime::now() + REFRESH_BEFORE < expiry)
}

/// The sections of an AWS shared config or credentials file: `[name]`
/// headers, `key = value` lines, `#` and `;` comments.
fn ini_sections(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            sections.entry(name.clone()).or_default();
            current = Some(name);
        } else if let (Some(section), Some((key, value))) = (&current, line.split_once('=')) {
            sections
                .entry(section.clone())
                .or_default()
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    sections
}

fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(ENDPOINT_TIMEOUT)
        .timeout(ENDPOINT_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

/// Credentials of the JSON an endpoint answers (`AccessKeyId`,
/// `SecretAccessKey`, `Token`, `Expiration` in RFC 3339).
fn parse_credentials(json: &Json, source: &'static str) -> Result<Credentials, String> {
    let text = |name: &str| json[name].as_str().map(str::to_owned);
    let (Some(key), Some(secret)) = (text("AccessKeyId"), text("SecretAccessKey")) else {
        return Err(format!("the {source} answered without AccessKeyId and SecretAccessKey"));
    };
    let expiry = text("Expiration")
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(&e).ok())
        .map(|e| SystemTime::from(e.with_timezone(&chrono::Utc)));
    Ok(Credentials::new(key, secret, text("Token"), expiry, source))
}

/// The container endpoint's credentials.
async fn container(uri: &str, token: Option<&str>) -> Result<Credentials, String> {
    let failed = |e: String| format!("the container credentials endpoint {uri} failed: {e}");
    let mut request = http().map_err(failed)?.get(uri);
    if let Some(token) = token {
        request = request.header("Authorization", token);
    }
    let response = request.send().await.map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    let json: Json = response.json().await.map_err(|e| failed(e.to_string()))?;
    parse_credentials(&json, "container credentials endpoint")
}

/// The instance role's credentials over IMDSv2: a session token (PUT),
/// the role name, then its credentials.
/// The body of a successful answer; the error as text otherwise.
async fn body_text(answer: reqwest::Result<reqwest::Response>) -> Result<String, String> {
    let answer = answer
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| e.to_string())?;
    answer.text().await.map_err(|e| e.to_string())
}

async fn instance_metadata(endpoint: &str) -> Result<Credentials, String> {
    let endpoint = endpoint.trim_end_matches('/');
    let client = http()?;
    let token = body_text(
        client
            .put(format!("{endpoint}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
            .send()
            .await,
    )
    .await?;
    let get = |path: String| {
        client
            .get(format!("{endpoint}/latest/meta-data/iam/security-credentials/{path}"))
            .header("X-aws-ec2-metadata-token", token.as_str())
            .send()
    };
    let roles = body_text(get(String::new()).await).await?;
    let role = roles
        .lines()
        .next()
        .filter(|r| !r.is_empty())
        .ok_or("no instance role")?;
    let json: Json = get(role.to_owned())
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    parse_credentials(&json, "instance metadata service")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Arc::new(move |name| map.get(name).cloned())
    }

    fn keys(c: &Credentials) -> (String, String, Option<String>) {
        (
            c.access_key_id().to_owned(),
            c.secret_access_key().to_owned(),
            c.session_token().map(str::to_owned),
        )
    }

    /// A local HTTP server answering each request by its first line
    /// (`GET /path`), recording the requests; `None` for 404.
    async fn endpoint(answer: fn(&str) -> Option<String>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buffer = vec![0; 8192];
                let n = socket.read(&mut buffer).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buffer[..n]).into_owned();
                let line = request.lines().next().unwrap_or_default().to_owned();
                let first = line.rsplit_once(' ').map_or(line.as_str(), |(l, _)| l).to_owned();
                log.lock().unwrap().push(request.to_ascii_lowercase());
                let response = match answer(&first) {
                    Some(body) => format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()),
                    None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_owned(),
                };
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        (url, seen)
    }

    const ROLE_KEYS: &str = r#"{"AccessKeyId": "ASIAROLE", "SecretAccessKey": "role-secret", "Token": "role-token", "Expiration": "2999-01-01T00:00:00Z"}"#;

    #[tokio::test]
    async fn explicit_keys_then_the_environment() {
        let explicit = Credentials::new("AKIAOPT", "opt", None, None, "sluice");
        let environment = env(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env"),
            ("AWS_SESSION_TOKEN", "tok"),
        ]);
        let chain = CredentialChain::new(Some(explicit), None, environment.clone());
        assert_eq!(keys(&chain.credentials().await.unwrap()).0, "AKIAOPT");
        let chain = CredentialChain::new(None, None, environment);
        assert_eq!(
            keys(&chain.credentials().await.unwrap()),
            ("AKIAENV".into(), "env".into(), Some("tok".into()))
        );
    }

    #[tokio::test]
    async fn profiles_of_the_shared_files() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("credentials");
        let config = dir.path().join("config");
        writeln!(
            std::fs::File::create(&credentials).unwrap(),
            "# keys\n[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = def\n\n[etl]\n\
             aws_access_key_id=AKIAETL\naws_secret_access_key=etl\naws_session_token = etl-token\n"
        )
        .unwrap();
        writeln!(
            std::fs::File::create(&config).unwrap(),
            "[profile cfg]\nregion = eu-west-1\naws_access_key_id = AKIACFG\naws_secret_access_key = cfg\n\
             [profile sso]\nsso_start_url = https://x\n"
        )
        .unwrap();
        let files = [
            ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        let chain = |profile: Option<&str>, extra: &[(&str, &str)]| {
            let mut pairs = files.to_vec();
            pairs.extend_from_slice(extra);
            CredentialChain::new(None, profile.map(str::to_owned), env(&pairs))
        };
        assert_eq!(keys(&chain(None, &[]).credentials().await.unwrap()).0, "AKIADEF");
        assert_eq!(
            keys(&chain(Some("etl"), &[]).credentials().await.unwrap()),
            ("AKIAETL".into(), "etl".into(), Some("etl-token".into()))
        );
        assert_eq!(
            keys(&chain(None, &[("AWS_PROFILE", "cfg")]).credentials().await.unwrap()).0,
            "AKIACFG"
        );
        // The option wins over AWS_PROFILE.
        assert_eq!(
            keys(
                &chain(Some("etl"), &[("AWS_PROFILE", "cfg")])
                    .credentials()
                    .await
                    .unwrap()
            )
            .0,
            "AKIAETL"
        );
        let missing = chain(Some("sso"), &[]).credentials().await.unwrap_err();
        assert!(
            missing.contains("profile \"sso\" has no aws_access_key_id"),
            "{missing}"
        );
        // The environment's keys come before the files.
        let env_first = chain(
            Some("etl"),
            &[("AWS_ACCESS_KEY_ID", "AKIAENV"), ("AWS_SECRET_ACCESS_KEY", "e")],
        );
        assert_eq!(keys(&env_first.credentials().await.unwrap()).0, "AKIAENV");
    }

    #[tokio::test]
    async fn the_container_endpoint_with_its_token_and_a_cache() {
        let (url, seen) = endpoint(|line| (line == "GET /creds").then(|| ROLE_KEYS.to_owned())).await;
        let uri = format!("{url}/creds");
        let chain = CredentialChain::new(
            None,
            None,
            env(&[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "secret-auth"),
                ("HOME", "/nonexistent"),
            ]),
        );
        assert_eq!(
            keys(&chain.credentials().await.unwrap()),
            ("ASIAROLE".into(), "role-secret".into(), Some("role-token".into()))
        );
        chain.credentials().await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "fetched once, then cached: {seen:?}");
        assert!(seen[0].contains("authorization: secret-auth"), "{seen:?}");

        let gone = CredentialChain::new(
            None,
            None,
            env(&[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds"),
                ("HOME", "/nonexistent"),
            ]),
        );
        let error = gone.credentials().await.unwrap_err();
        assert!(error.contains("container credentials endpoint"), "{error}");
    }

    #[tokio::test]
    async fn the_instance_metadata_service_with_an_imdsv2_token() {
        let (url, seen) = endpoint(|line| match line {
            "PUT /latest/api/token" => Some("imds-token".into()),
            "GET /latest/meta-data/iam/security-credentials/" => Some("etl-role\n".into()),
            "GET /latest/meta-data/iam/security-credentials/etl-role" => Some(ROLE_KEYS.into()),
            _ => None,
        })
        .await;
        let chain = CredentialChain::new(
            None,
            None,
            env(&[
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.as_str()),
                ("HOME", "/nonexistent"),
            ]),
        );
        assert_eq!(keys(&chain.credentials().await.unwrap()).0, "ASIAROLE");
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen[0].contains("x-aws-ec2-metadata-token-ttl-seconds: 21600"),
            "{seen:?}"
        );
        assert!(
            seen[1..]
                .iter()
                .all(|r| r.contains("x-aws-ec2-metadata-token: imds-token")),
            "{seen:?}"
        );

        let disabled = CredentialChain::new(
            None,
            None,
            env(&[
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.as_str()),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("HOME", "/nonexistent"),
            ]),
        );
        let error = disabled.credentials().await.unwrap_err();
        assert!(error.starts_with("no AWS credentials"), "{error}");
    }
}
