//! Start-up: open the catalog, set up authentication, the SQL session and
//! the background tasks, then accept clients until shut down.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::RandomPidSecretKeyGenerator;
use sluice_catalog::{Catalog, MasterKey};
use sluice_engine::allowed_paths::AllowedPaths;
use sluice_engine::destinations::{LocalWarehouse, display_location};
use sluice_engine::jobs::cluster::ClusterSupport;
use sluice_engine::metrics::EngineMetrics;
use sluice_engine::scheduler::SchedulerConfig;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::auth::{self, AdminAuth, SCRAM_ITERATIONS};
use crate::cluster::ServeCluster;
use crate::demo;
use crate::handler::SluiceHandlers;
use crate::listener::{self, Limits};
use crate::login::LoginPolicy;
use crate::metrics::{self, Exporter};
use crate::names::DATABASE;
use crate::namespaces::{NamespaceSetup, Namespaces};
use crate::pg_database::Databases;
use crate::session_settings::ServerDefaults;
use crate::sql_session::query_runtime_env;
use crate::startup_error::StartupError;
use crate::state::AppState;
use crate::throttle::LoginThrottle;
use crate::tls;

/// The local warehouse's directory inside the data dir.
const WAREHOUSE_DIR: &str = "warehouse";

/// How long shutdown waits for continuous CDC streams to commit and end.
const STREAM_STOP_WAIT: Duration = Duration::from_secs(10);

/// Everything `sluice serve` needs to start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    /// The warehouse location; `None` is `DATA_DIR/warehouse`.
    pub warehouse: Option<String>,
    pub user: String,
    /// From `SLUICE_PASSWORD`; when `None` a stored or generated one is used.
    pub password: Option<String>,
    /// From `SLUICE_MASTER_KEY` (64 hex digits).
    pub master_key: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not negotiate TLS.
    pub require_tls: bool,
    /// Start even when the data dir is readable by other users.
    pub allow_readable_data_dir: bool,
    pub limits: Limits,
    pub connect_timeout: Duration,
    pub retest_interval: Duration,
    /// Sample files to set up as a demo on an empty catalog.
    pub demo_dir: Option<PathBuf>,
    pub scheduler: SchedulerConfig,
    /// Finished runs kept per job.
    pub keep_runs: usize,
    /// Rows of `sluice.audit` kept.
    pub keep_audit: u64,
    /// Rows of `sluice.alert_deliveries` kept.
    pub keep_alert_deliveries: usize,
    /// Address of the Prometheus endpoint; `None` disables it.
    pub metrics_listen: Option<String>,
    /// Bytes of memory plain SQL queries share.
    pub query_memory: usize,
    /// Default `statement_timeout` of plain SQL; `None` disables it.
    pub statement_timeout: Option<Duration>,
    /// Directories whose files connection options may name; `None` is the
    /// data dir, the working directory and the demo dir.
    pub allowed_paths: Option<Vec<PathBuf>>,
    /// How long a value fetched from an external secret store is reused.
    pub secret_cache_ttl: Duration,
    /// Google credentials JSON for Secret Manager; `None` is Application
    /// Default Credentials.
    pub gcp_secret_manager_credentials: Option<PathBuf>,
    /// Where extracts run when not here (`--cluster`).
    pub cluster: Option<ServeCluster>,
}

/// Runs the server until SIGINT or SIGTERM; `support` is the `cluster`
/// build's, which `--cluster` needs.
pub async fn serve(config: ServeConfig, support: Option<&dyn ClusterSupport>) -> Result<(), StartupError> {
    private_data_dir(&config.data_dir, config.allow_readable_data_dir)?;
    let key = match &config.master_key {
        Some(hex) => MasterKey::from_hex(hex)?,
        None => MasterKey::load_or_create_file(
            &config
                .master_key_file
                .clone()
                .unwrap_or_else(|| config.data_dir.join("master.key")),
        )?,
    };
    let catalog_dir = config.data_dir.join("catalog");
    let catalog = Arc::new(Catalog::open(&catalog_dir, key)?);
    let auth = admin_auth(&catalog, &config)?;
    let warehouse = match &config.warehouse {
        Some(location) => {
            info!(location = %display_location(location), "warehouse");
            LocalWarehouse::open(location)?
        }
        None => LocalWarehouse::open_dir(&config.data_dir.join(WAREHOUSE_DIR))?,
    };
    let cluster = match &config.cluster {
        Some(cluster) => {
            let handle = crate::cluster::connect(support, cluster, config.warehouse.as_deref()).await?;
            info!(scheduler = %cluster.url, "extracts run on the cluster");
            Some(handle)
        }
        None => None,
    };
    let engine_metrics = Arc::new(EngineMetrics::default());
    sluice_engine::set_sqlstate_mapping(crate::errors::engine_sqlstate);
    let setup = NamespaceSetup {
        connect_timeout: config.connect_timeout,
        retest_interval: config.retest_interval,
        allowed_paths: allowed_paths(&config),
        keep_alert_deliveries: config.keep_alert_deliveries,
        secret_cache_ttl: config.secret_cache_ttl,
        gcp_secret_manager_credentials: config.gcp_secret_manager_credentials.clone(),
        warehouse,
        metrics: engine_metrics.clone(),
        keep_runs: config.keep_runs,
        keep_audit: config.keep_audit,
        runtime: query_runtime_env(config.query_memory)?,
        scheduler: config.scheduler.clone(),
        pool: Arc::default(),
        databases: Arc::new(Databases {
            catalog: catalog.clone(),
            superuser: auth.user().to_owned(),
        }),
        cluster,
    };
    let namespaces = Arc::new(Namespaces::start(catalog.clone(), setup).await?);
    tokio::spawn(sluice_engine::memory::release_freed_periodically(
        sluice_engine::memory::RELEASE_EVERY,
    ));
    if let Some(dir) = &config.demo_dir {
        let default = namespaces.default_namespace();
        demo::set_up_if_empty(&default.connections, &default.jobs, dir).await;
    }
    let metrics_address = match &config.metrics_listen {
        Some(address) => {
            let listener = TcpListener::bind(address).await.map_err(|source| StartupError::Io {
                what: format!("cannot listen for metrics on {address} (change or empty --metrics-listen)"),
                source,
            })?;
            let bound = listener.local_addr().ok();
            let exporter = Exporter::new(&engine_metrics, namespaces.clone(), &catalog_dir);
            tokio::spawn(metrics::serve(listener, Arc::new(exporter)));
            bound
        }
        None => None,
    };

    let (tls, channel_binding) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let (acceptor, pem) = tls::acceptor(cert, key)?;
            let binding = tls::channel_binding(&pem)
                .inspect_err(|reason| {
                    println!(
                        "Warning: SCRAM-SHA-256-PLUS (channel binding) is unavailable: certificate {} cannot be bound to: {reason}",
                        cert.display()
                    );
                    warn!(certificate = %cert.display(), %reason, "SCRAM-SHA-256-PLUS (channel binding) is unavailable");
                })
                .ok();
            (Some(acceptor), binding)
        }
        (None, None) if config.require_tls => {
            return Err(StartupError::Config(
                "--require-tls needs a certificate: give --tls-cert and --tls-key".into(),
            ));
        }
        (None, None) => (None, None),
        _ => {
            return Err(StartupError::Config(
                "--tls-cert and --tls-key must be given together".into(),
            ));
        }
    };
    let wire_connections = Arc::new(pgwire::api::ConnectionManager::new());
    let session_defaults = ServerDefaults {
        statement_timeout: config.statement_timeout,
        scram_iterations: SCRAM_ITERATIONS as usize,
    };
    let login = Arc::new(LoginPolicy {
        auth,
        roles: catalog,
        throttle: LoginThrottle::default(),
        channel_binding,
        require_tls: config.require_tls,
        session_defaults,
        connections: wire_connections.clone(),
        pids: RandomPidSecretKeyGenerator::default(),
        namespaces: namespaces.clone(),
    });
    let state = Arc::new(AppState {
        namespaces: namespaces.clone(),
        login,
        wire_connections,
        advisory_locks: Default::default(),
    });

    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| StartupError::Io {
            what: format!("cannot listen on {}", config.listen),
            source,
        })?;
    let address = listener.local_addr().map_err(|source| StartupError::Io {
        what: "listener".into(),
        source,
    })?;
    announce(&config, address, tls.is_some(), &state.login.auth);
    if let Some(metrics) = metrics_address {
        println!("Metrics at http://{metrics}/metrics");
        info!(address = %metrics, "metrics endpoint listening");
    }

    listener::accept_until(
        listener,
        tls,
        config.limits.clone(),
        || SluiceHandlers::new(state.clone()),
        async {
            shutdown_signal().await;
            info!("shutting down");
        },
    )
    .await;
    // Continuous CDC streams commit what they hold and end cleanly.
    futures::future::join_all(
        namespaces
            .all()
            .iter()
            .map(|namespace| namespace.jobs.stop_streams(STREAM_STOP_WAIT)),
    )
    .await;
    Ok(())
}

fn announce(config: &ServeConfig, address: SocketAddr, tls: bool, auth: &AdminAuth) {
    println!(
        "Sluice {} listening on {address}{} (data dir {})",
        env!("CARGO_PKG_VERSION"),
        if tls { " with TLS" } else { "" },
        config.data_dir.display()
    );
    println!(
        "Connect with: psql \"host={} port={} user={} dbname={DATABASE}\"",
        address.ip(),
        address.port(),
        auth.user()
    );
    info!(%address, tls, "listening");
}

/// Sets the admin credentials from `SLUICE_PASSWORD`, or uses the stored
/// ones, or generates a password on first start and prints it once.
fn admin_auth(catalog: &Catalog, config: &ServeConfig) -> Result<AdminAuth, StartupError> {
    if catalog.role(&config.user)?.is_some() {
        return Err(StartupError::Config(format!(
            "\"{}\" is a role (CREATE ROLE) in this data dir; start the built-in user with another --user, or DROP ROLE it first",
            config.user
        )));
    }
    let credentials = match (&config.password, catalog.admin_credentials()?) {
        (Some(password), _) => {
            let credentials = auth::hash_password(&config.user, password);
            catalog.set_admin_credentials(&credentials)?;
            credentials
        }
        (None, Some(stored)) if stored.user == config.user => {
            // Rewrites a record read through a migration in the current
            // version (older ones held the salted password).
            catalog.set_admin_credentials(&stored)?;
            stored
        }
        (None, Some(stored)) => {
            return Err(StartupError::Config(format!(
                "this data dir's admin user is \"{}\"; start with --user {} or set SLUICE_PASSWORD to create \"{}\"",
                stored.user, stored.user, config.user
            )));
        }
        (None, None) => {
            let password = auth::generate_password();
            let credentials = auth::hash_password(&config.user, &password);
            catalog.set_admin_credentials(&credentials)?;
            println!(
                "Generated a password for user \"{}\": {password}\n(shown only this once; set SLUICE_PASSWORD to choose your own)",
                config.user
            );
            credentials
        }
    };
    AdminAuth::from_credentials(&credentials).ok_or_else(|| {
        StartupError::Config("stored admin credentials are unreadable; set SLUICE_PASSWORD to reset them".into())
    })
}

/// The directories connection options may name files in.
fn allowed_paths(config: &ServeConfig) -> AllowedPaths {
    match &config.allowed_paths {
        Some(dirs) => AllowedPaths::new(dirs.iter().cloned()),
        None => AllowedPaths::new(
            [config.data_dir.clone(), PathBuf::from(".")]
                .into_iter()
                .chain(config.demo_dir.clone()),
        ),
    }
}

/// Creates the data dir mode 0700 and makes every file Sluice creates
/// private (umask 077); refuses a data dir other users can read unless
/// `allow_readable` is set, then warns.
fn private_data_dir(dir: &Path, allow_readable: bool) -> Result<(), StartupError> {
    // SAFETY: umask only sets the process's file creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StartupError::Io {
            what: format!("cannot create data dir {}", dir.display()),
            source,
        })?;
    let mode = std::fs::metadata(dir)
        .map_err(|source| StartupError::Io {
            what: format!("cannot inspect data dir {}", dir.display()),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let problem = format!(
        "data dir {} is accessible by other users (mode {:o}); run chmod 700 on it",
        dir.display(),
        mode & 0o777
    );
    if !allow_readable {
        return Err(StartupError::Config(format!(
            "{problem}, or start with --allow-readable-data-dir to accept the risk"
        )));
    }
    println!("WARNING: {problem} (started anyway: --allow-readable-data-dir)");
    warn!(data_dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "data dir is accessible by other users");
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
