//! The `sluice` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use sluice_engine::alerts::DEFAULT_KEEP_DELIVERIES;
use sluice_engine::jobs::DEFAULT_KEEP_RUNS;
use sluice_engine::scheduler::{Backoff, SchedulerConfig};

use sluice_engine::jobs::cluster::{ClusterSupport, ExecutorOptions, SchedulerOptions};

use crate::app::{self, ServeConfig};
use crate::cluster::{NOT_BUILT, ServeCluster};
use crate::listener::Limits;
use crate::privileges::DEFAULT_KEEP_AUDIT;
use crate::startup_error::StartupError;

/// Sluice: a SQL-first ETL engine that speaks the Postgres wire protocol.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Run a cluster scheduler that servers send extracts to (the
    /// `cluster` build; docs/cluster.md).
    Scheduler(SchedulerArgs),
    /// Run a cluster executor that runs extract tasks (the `cluster` build;
    /// docs/cluster.md).
    Executor(ExecutorArgs),
}

#[derive(Debug, Args)]
struct SchedulerArgs {
    /// Address executors and servers reach the scheduler at.
    #[arg(long, env = "SLUICE_SCHEDULER_LISTEN", default_value = "127.0.0.1:50050")]
    listen: SocketAddr,
    /// Host name executors call back on, if not the listening address.
    #[arg(long, env = "SLUICE_SCHEDULER_EXTERNAL_HOST")]
    external_host: Option<String>,
    /// Seconds without a heartbeat after which an executor is lost and its
    /// tasks run elsewhere.
    #[arg(long, env = "SLUICE_EXECUTOR_TIMEOUT", default_value_t = 180)]
    executor_timeout: u64,
}

#[derive(Debug, Args)]
struct ExecutorArgs {
    /// The scheduler, host:port.
    #[arg(long, env = "SLUICE_SCHEDULER")]
    scheduler: String,
    /// The cluster key's file: a copy of the server's DATA_DIR/cluster.key
    /// (SLUICE_CLUSTER_KEY, 64 hex digits, takes precedence).
    #[arg(long, env = "SLUICE_CLUSTER_KEY_FILE", default_value = "./cluster.key")]
    cluster_key_file: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "SLUICE_EXECUTOR_BIND", default_value = "127.0.0.1")]
    bind_host: String,
    /// Port of the executor's data (Arrow Flight) service.
    #[arg(long, env = "SLUICE_EXECUTOR_PORT", default_value_t = 50051)]
    port: u16,
    /// Port of the executor's task service.
    #[arg(long, env = "SLUICE_EXECUTOR_GRPC_PORT", default_value_t = 50052)]
    grpc_port: u16,
    /// Host name others reach the executor at, if not the bind address.
    #[arg(long, env = "SLUICE_EXECUTOR_EXTERNAL_HOST")]
    external_host: Option<String>,
    /// Tasks run at once (0: one per core).
    #[arg(long, env = "SLUICE_EXECUTOR_TASKS", default_value_t = 0)]
    tasks: usize,
    /// The executor's id (default: a fresh one).
    #[arg(long, env = "SLUICE_EXECUTOR_ID")]
    id: Option<String>,
    /// Directory for Ballista's intermediate files (default: a temporary one).
    #[arg(long, env = "SLUICE_EXECUTOR_WORK_DIR")]
    work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, env = "SLUICE_EXECUTOR_HEARTBEAT", default_value_t = 60)]
    heartbeat: u64,
    /// Log format on stderr (level from SLUICE_LOG, default info).
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to accept Postgres clients on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:5433")]
    listen: String,
    /// Directory for the catalog and the local warehouse.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,
    /// Where the warehouse keeps its tables: s3://bucket/prefix,
    /// az://container/prefix, gs://bucket/prefix or a local directory
    /// [default: DATA_DIR/warehouse]. Credentials come from the cloud's usual
    /// environment variables (AWS_*, AZURE_*, GOOGLE_*).
    #[arg(long, env = "SLUICE_WAREHOUSE")]
    warehouse: Option<String>,
    /// The admin user name (its password comes from SLUICE_PASSWORD, or is
    /// generated and printed on first start).
    #[arg(long, env = "SLUICE_USER", default_value = "admin")]
    user: String,
    /// Key file for secret encryption, created mode 0600 on first start
    /// [default: DATA_DIR/master.key]. SLUICE_MASTER_KEY (64 hex digits)
    /// takes precedence.
    #[arg(long, env = "SLUICE_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, env = "SLUICE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, env = "SLUICE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    // --- Authentication, data dir and connection limits ---
    /// Refuse clients that do not use TLS (needs --tls-cert and --tls-key).
    #[arg(long, env = "SLUICE_REQUIRE_TLS")]
    require_tls: bool,
    /// Start even when the data dir is readable by other users (warns);
    /// without it such a data dir is refused.
    #[arg(long, env = "SLUICE_ALLOW_READABLE_DATA_DIR")]
    allow_readable_data_dir: bool,
    /// Client connections open at once, logged in or not; more are refused
    /// with SQLSTATE 53300.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 100)]
    max_connections: usize,
    /// Connections still logging in at once; a new one closes the one that
    /// has waited longest. A login must finish within 10 seconds.
    #[arg(long, env = "SLUICE_MAX_UNAUTHENTICATED", default_value_t = 16)]
    max_unauthenticated: usize,
    // --- end of authentication, data dir and connection limits ---
    /// Seconds a live connection test may take.
    #[arg(long, env = "SLUICE_CONNECT_TIMEOUT", default_value_t = 10)]
    connect_timeout: u64,
    /// Seconds between background re-tests of every connection.
    #[arg(long, env = "SLUICE_RETEST_INTERVAL", default_value_t = 300)]
    retest_interval: u64,
    /// Directory of sample files set up as the `demo` connection and jobs
    /// when the catalog is empty; an empty value disables the demo.
    #[arg(long, env = "SLUICE_DEMO_DIR", default_value = "examples/data")]
    demo_dir: String,
    /// Scheduled runs in progress at once (manual runs are not counted).
    #[arg(long, env = "SLUICE_MAX_CONCURRENT_RUNS", default_value_t = 4)]
    max_concurrent_runs: usize,
    /// Scheduled runs in progress at once that use the same connection.
    #[arg(long, env = "SLUICE_MAX_RUNS_PER_CONNECTION", default_value_t = 2)]
    max_runs_per_connection: usize,
    /// Finished runs kept per job; older ones are deleted.
    #[arg(long, env = "SLUICE_KEEP_RUNS", default_value_t = DEFAULT_KEEP_RUNS)]
    keep_runs: usize,
    /// Rows of sluice.audit kept; older ones are deleted.
    #[arg(long, env = "SLUICE_KEEP_AUDIT", default_value_t = DEFAULT_KEEP_AUDIT)]
    keep_audit: u64,
    /// Rows of sluice.alert_deliveries kept; older ones are deleted.
    #[arg(long, env = "SLUICE_KEEP_ALERT_DELIVERIES", default_value_t = DEFAULT_KEEP_DELIVERIES)]
    keep_alert_deliveries: usize,
    /// Seconds before the first retry of a failed scheduled run; each
    /// further retry waits twice as long (with +-20% jitter).
    #[arg(long, env = "SLUICE_RETRY_DELAY", default_value_t = 30)]
    retry_delay: u64,
    /// The longest wait between retries, in seconds.
    #[arg(long, env = "SLUICE_RETRY_MAX_DELAY", default_value_t = 1800)]
    retry_max_delay: u64,
    /// Address of the Prometheus metrics endpoint; an empty value disables it.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", default_value = "127.0.0.1:9187")]
    metrics_listen: String,
    /// Log format on stderr (level from SLUICE_LOG, default info).
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    /// Memory all plain SQL queries share (K, M or G suffix); sorts and
    /// aggregations beyond it spill to disk, other queries fail with 53200.
    /// ETL jobs are not counted.
    #[arg(long, env = "SLUICE_QUERY_MEMORY", default_value = "1G", value_parser = parse_query_memory)]
    query_memory: usize,
    /// Default statement_timeout of plain SQL in seconds (a session changes
    /// it with SET statement_timeout); 0 disables it.
    #[arg(long, env = "SLUICE_STATEMENT_TIMEOUT", default_value_t = 300)]
    statement_timeout: u64,
    /// Comma-separated directories whose files connection options (path,
    /// credentials_file, sslrootcert, ssl_ca) may name [default: the data
    /// dir, the working directory and the demo dir].
    #[arg(long, env = "SLUICE_ALLOWED_PATHS", value_delimiter = ',')]
    allowed_paths: Option<Vec<PathBuf>>,
    /// Seconds a value fetched from an external secret store (CREATE
    /// SECRET ... FROM) is reused before it is fetched again; 0 fetches at
    /// every use.
    #[arg(long, env = "SLUICE_SECRET_CACHE_TTL", default_value_t = 300)]
    secret_cache_ttl: u64,
    /// A service-account key (or other Google credentials JSON) file for
    /// reading secrets FROM GCP SECRET MANAGER [default: Application
    /// Default Credentials].
    #[arg(long, env = "SLUICE_GCP_SECRET_MANAGER_CREDENTIALS")]
    gcp_secret_manager_credentials: Option<PathBuf>,
    /// A cluster scheduler (df://host:port) to run job extracts on
    /// (docs/cluster.md); needs the `cluster` build and a warehouse in a
    /// bucket.
    #[arg(long, env = "SLUICE_CLUSTER")]
    cluster: Option<String>,
    /// The key that seals connection options for executors, created mode
    /// 0600 on first start [default: DATA_DIR/cluster.key]; every executor
    /// needs a copy. SLUICE_CLUSTER_KEY (64 hex digits) takes precedence.
    #[arg(long, env = "SLUICE_CLUSTER_KEY_FILE")]
    cluster_key_file: Option<PathBuf>,
    /// Tasks of a cluster run whose job sets no parallelism.
    #[arg(long, env = "SLUICE_CLUSTER_TASKS", default_value_t = 8)]
    cluster_tasks: usize,
}

fn parse_query_memory(value: &str) -> Result<usize, String> {
    match datafusion::prelude::SessionContext::parse_capacity_limit("--query-memory", value) {
        Ok(0) => Err("must be more than 0".into()),
        Ok(bytes) => Ok(bytes),
        Err(e) => Err(e.message().into_owned()),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

/// Parses the command line and runs Sluice; returns the process exit code.
/// `cluster` is the `cluster` build's support, `None` without it.
pub async fn main(cluster: Option<&dyn ClusterSupport>) -> i32 {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Scheduler(args)) => return scheduler(args, cluster).await,
        Some(Command::Executor(args)) => return executor(args, cluster).await,
        None => match Cli::parse_from(["sluice", "serve"]).command {
            Some(Command::Serve(args)) => args,
            _ => unreachable!("serve was given"),
        },
    };
    init_logging(args.log_format);
    let cluster_flags = args.cluster.clone().filter(|c| !c.is_empty()).map(|url| ServeCluster {
        url,
        key_file: (args.cluster_key_file.clone()).unwrap_or_else(|| args.data_dir.join("cluster.key")),
        tasks: args.cluster_tasks,
    });
    let config = ServeConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        warehouse: args.warehouse.filter(|w| !w.is_empty()),
        user: args.user,
        password: std::env::var("SLUICE_PASSWORD").ok().filter(|p| !p.is_empty()),
        master_key: std::env::var("SLUICE_MASTER_KEY").ok().filter(|k| !k.is_empty()),
        master_key_file: args.master_key_file,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        require_tls: args.require_tls,
        allow_readable_data_dir: args.allow_readable_data_dir,
        limits: Limits {
            max_connections: args.max_connections.max(1),
            max_unauthenticated: args.max_unauthenticated.max(1),
            ..Limits::default()
        },
        connect_timeout: Duration::from_secs(args.connect_timeout.max(1)),
        retest_interval: Duration::from_secs(args.retest_interval.max(1)),
        demo_dir: Some(PathBuf::from(args.demo_dir)).filter(|d| !d.as_os_str().is_empty()),
        scheduler: SchedulerConfig {
            max_concurrent_runs: args.max_concurrent_runs.max(1),
            max_runs_per_connection: args.max_runs_per_connection.max(1),
            backoff: Backoff {
                base: Duration::from_secs(args.retry_delay),
                max: Duration::from_secs(args.retry_max_delay.max(args.retry_delay)),
            },
        },
        keep_runs: args.keep_runs.max(1),
        keep_audit: args.keep_audit.max(1),
        keep_alert_deliveries: args.keep_alert_deliveries.max(1),
        metrics_listen: Some(args.metrics_listen).filter(|m| !m.is_empty()),
        query_memory: args.query_memory,
        statement_timeout: Some(Duration::from_secs(args.statement_timeout)).filter(|t| !t.is_zero()),
        allowed_paths: args
            .allowed_paths
            .map(|dirs| {
                dirs.into_iter()
                    .filter(|d| !d.as_os_str().is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|dirs| !dirs.is_empty()),
        secret_cache_ttl: Duration::from_secs(args.secret_cache_ttl),
        gcp_secret_manager_credentials: args
            .gcp_secret_manager_credentials
            .filter(|path| !path.as_os_str().is_empty()),
        cluster: cluster_flags,
    };
    exit_code(app::serve(config, cluster).await)
}

/// `sluice scheduler`.
async fn scheduler(args: SchedulerArgs, cluster: Option<&dyn ClusterSupport>) -> i32 {
    init_logging(LogFormat::Pretty);
    let Some(support) = cluster else {
        return exit_code(Err(StartupError::Config(NOT_BUILT.into())));
    };
    let options = SchedulerOptions {
        listen: args.listen,
        external_host: args.external_host,
        executor_timeout_seconds: args.executor_timeout.max(1),
    };
    exit_code(support.scheduler(options).await.map_err(StartupError::Config))
}

/// `sluice executor`.
async fn executor(args: ExecutorArgs, cluster: Option<&dyn ClusterSupport>) -> i32 {
    init_logging(args.log_format);
    let Some(support) = cluster else {
        return exit_code(Err(StartupError::Config(NOT_BUILT.into())));
    };
    let key = match crate::cluster::key(&args.cluster_key_file, false) {
        Ok(key) => key,
        Err(e) => return exit_code(Err(e)),
    };
    let options = ExecutorOptions {
        scheduler: args.scheduler,
        bind_host: args.bind_host,
        port: args.port,
        grpc_port: args.grpc_port,
        external_host: args.external_host,
        tasks: args.tasks,
        id: args.id,
        work_dir: args.work_dir,
        heartbeat_seconds: args.heartbeat,
    };
    exit_code(support.executor(options, key).await.map_err(StartupError::Config))
}

/// The process exit code of a command's end, its error printed.
fn exit_code(result: Result<(), StartupError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sluice: {e}");
            1
        }
    }
}

/// Libraries that log statement text, or (yup_oauth2) Google sign-in
/// requests with their refresh tokens and client secrets, at debug level.
const STATEMENT_LOGGING_TARGETS: [&str; 5] = [
    "sqlparser",
    "pgwire",
    "datafusion_postgres",
    "datafusion_pg_catalog",
    "yup_oauth2",
];

fn init_logging(format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Statement text may hold secrets (CREATE SECRET ... AS '...'), and so do
    // sign-in requests, so the libraries that log them at debug level are
    // held at info whatever the configured level is.
    for quiet in STATEMENT_LOGGING_TARGETS {
        filter = filter.add_directive(format!("{quiet}=info").parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
