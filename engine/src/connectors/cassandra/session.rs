//! A driver session from a connection's options, and the driver's errors
//! classified: why connecting failed, which SQLSTATE a failed read carries.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::Consistency;
use tokio::sync::OnceCell;

use crate::contract::{
    ConnectFailure, ConnectFailureKind, ResolvedOptions, SourceError, error_chain, network_failure_kind,
};
use crate::tls::{Verify, client_config};

/// The options a session is made of, the password decrypted: kept in
/// memory only, never shown.
pub(super) struct Settings {
    /// `host:port` of each contact point.
    nodes: Vec<String>,
    pub(super) keyspace: Option<String>,
    user: Option<String>,
    password: Option<String>,
    tls: String,
    tls_ca_file: Option<String>,
    datacenter: Option<String>,
    consistency: Consistency,
}

impl From<&ResolvedOptions> for Settings {
    fn from(options: &ResolvedOptions) -> Self {
        let text = |name: &str| options.text(name).map(str::to_owned);
        let port = options.integer("port").unwrap_or(9042);
        let nodes = nodes(options.text("hosts").unwrap_or_default(), port);
        Self {
            nodes,
            keyspace: text("keyspace"),
            user: text("user"),
            password: options.secret("password").map(|s| s.expose().to_owned()),
            tls: text("tls").unwrap_or_else(|| "disable".to_owned()),
            tls_ca_file: text("tls_ca_file"),
            datacenter: text("datacenter"),
            consistency: consistency(options.text("consistency").unwrap_or("local_quorum")),
        }
    }
}

/// `host:port` of each contact point of the `hosts` option (a host
/// without a port gets `port`; IPv6 addresses are written `[::1]:9042`).
fn nodes(hosts: &str, port: i64) -> Vec<String> {
    hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            let has_port = if h.starts_with('[') {
                h.contains("]:")
            } else {
                h.matches(':').count() == 1
            };
            if has_port { h.to_owned() } else { format!("{h}:{port}") }
        })
        .collect()
}

/// The `consistency` option's value as the driver's.
fn consistency(name: &str) -> Consistency {
    match name {
        "one" => Consistency::One,
        "local_one" => Consistency::LocalOne,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        _ => Consistency::LocalQuorum,
    }
}

/// Opens a session: the driver reads the cluster's topology (system.local,
/// system.peers) but not its schema, which the source reads itself. With
/// `keyspace` set, the keyspace must exist.
pub(super) async fn connect(settings: &Settings, timeout: Duration) -> Result<Session, ConnectFailure> {
    let mut policy = DefaultPolicy::builder();
    if let Some(dc) = &settings.datacenter {
        policy = policy.prefer_datacenter(dc.clone());
    }
    let profile = ExecutionProfile::builder()
        .consistency(settings.consistency)
        .load_balancing_policy(policy.build())
        .request_timeout(Some(timeout.max(Duration::from_secs(1)) * 2))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&settings.nodes)
        .connection_timeout(timeout)
        .fetch_schema_metadata(false)
        .default_execution_profile_handle(profile.into_handle());
    if let Some(user) = &settings.user {
        builder = builder.user(user, settings.password.clone().unwrap_or_default());
    }
    if settings.tls != "disable" {
        let verify = if settings.tls == "require" {
            Verify::Nothing
        } else {
            Verify::ChainAndHost
        };
        let config = client_config(verify, settings.tls_ca_file.as_deref())?;
        builder = builder.tls_context(Some(Arc::new(config)));
    }
    if let Some(keyspace) = &settings.keyspace {
        builder = builder.use_keyspace(keyspace, true);
    }
    builder.build().await.map_err(|e| connect_failure(&e))
}

/// One connection's session, opened at first use and shared by its
/// keyspaces (the driver pools connections inside it).
pub(super) struct Connection {
    pub(super) settings: Settings,
    timeout: Duration,
    session: OnceCell<Session>,
    /// Whether the cluster's partitioner is Murmur3, read once.
    murmur3: OnceCell<bool>,
}

impl Connection {
    pub(super) fn new(options: &ResolvedOptions, timeout: Duration) -> Self {
        Self {
            settings: Settings::from(options),
            timeout,
            session: OnceCell::new(),
            murmur3: OnceCell::new(),
        }
    }

    /// Whether scans may be split into ranges of Murmur3 tokens: the
    /// partitioner of `system.local` is Murmur3 (other partitioners' tokens
    /// are not 64-bit integers, and a split would miss rows).
    pub(super) async fn splits_by_token(&self) -> Result<bool, SourceError> {
        self.murmur3
            .get_or_try_init(|| async {
                let session = self.session().await?;
                let rows = session
                    .query_unpaged(super::cql::partitioner(), ())
                    .await
                    .map_err(|e| source_error(&e, "system.local"))?
                    .into_rows_result()
                    .map_err(|e| source_error(&e, "system.local"))?;
                let partitioner: Option<(Option<String>,)> = rows
                    .maybe_first_row::<(Option<String>,)>()
                    .map_err(|e| source_error(&e, "system.local"))?;
                Ok::<_, SourceError>(partitioner.and_then(|p| p.0).as_deref() == Some(super::cql::MURMUR3))
            })
            .await
            .copied()
    }

    pub(super) async fn session(&self) -> Result<&Session, SourceError> {
        self.session
            .get_or_try_init(|| async {
                connect(&self.settings, self.timeout)
                    .await
                    .map_err(SourceError::Connect)
            })
            .await
    }
}

/// Why opening a session failed.
pub(super) fn connect_failure(error: &(dyn std::error::Error + 'static)) -> ConnectFailure {
    let text = error_chain(error);
    ConnectFailure::new(failure_kind(error, &text), text)
}

fn failure_kind(error: &(dyn std::error::Error + 'static), text: &str) -> ConnectFailureKind {
    use ConnectFailureKind as K;
    let lower = text.to_ascii_lowercase();
    if lower.contains("bad credentials") || lower.contains("authentication") || lower.contains("provided username") {
        K::BadPassword
    } else if lower.contains("keyspace") && (lower.contains("does not exist") || lower.contains("unknown")) {
        K::UnknownDatabase
    } else if let Some(kind) = network_failure_kind(error) {
        kind
    } else if lower.contains("connection refused") {
        K::Refused
    } else if lower.contains("resolve") {
        K::Dns
    } else if lower.contains("tls") || lower.contains("certificate") {
        K::Tls
    } else if lower.contains("timed out") || lower.contains("timeout") {
        K::Timeout
    } else {
        K::Other
    }
}

/// A failed read of `what` (a keyspace or `keyspace.table`): network
/// trouble is transient (`08006`), a missing permission `42501`.
pub(super) fn source_error(error: &(dyn std::error::Error + 'static), what: &str) -> SourceError {
    let text = error_chain(error);
    let lower = text.to_ascii_lowercase();
    let code = if lower.contains("unauthorized") || lower.contains("has no select permission") {
        "42501"
    } else if network_failure_kind(error).is_some()
        || lower.contains("broken pipe")
        || lower.contains("connection")
        || lower.contains("timed out")
    {
        "08006"
    } else {
        "58000"
    };
    SourceError::Query {
        code: Some(code.to_owned()),
        message: format!("Cassandra refused the read of {what}: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(&'static str);

    #[test]
    fn failures_are_classified() {
        let kind = |t: &'static str| connect_failure(&E(t)).kind;
        assert_eq!(
            kind("Authentication failed: Bad credentials"),
            ConnectFailureKind::BadPassword
        );
        assert_eq!(
            kind("'USE KEYSPACE <>' request failed: Keyspace 'nope' does not exist"),
            ConnectFailureKind::UnknownDatabase
        );
        assert_eq!(kind("Connection refused (os error 111)"), ConnectFailureKind::Refused);
        assert_eq!(kind("Couldn't resolve any hostname: [\"x\"]"), ConnectFailureKind::Dns);
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(connect_failure(&io).kind, ConnectFailureKind::Refused);
        let code = |e: SourceError| match e {
            SourceError::Query { code, .. } => code.unwrap(),
            other => panic!("{other}"),
        };
        assert_eq!(code(source_error(&E("Unauthorized: no SELECT"), "ks.t")), "42501");
        assert_eq!(code(source_error(&io, "ks.t")), "08006");
        assert_eq!(code(source_error(&E("Invalid query"), "ks.t")), "58000");
    }

    #[test]
    fn contact_points_get_the_port() {
        assert_eq!(
            nodes("a, b:9043,,10.0.0.1,[::1]:7", 9044),
            ["a:9044", "b:9043", "10.0.0.1:9044", "[::1]:7"]
        );
        assert_eq!(consistency("local_quorum"), Consistency::LocalQuorum);
        assert_eq!(consistency("one"), Consistency::One);
    }
}
