//! The Prometheus endpoint: `GET /metrics` on `--metrics-listen`, in the
//! OpenMetrics text format. Run counters come from the engine; connection
//! status, jobs and catalog size are read at every scrape.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use sluice_catalog::{CatalogError, ConnectionStatus, JobView};
use sluice_engine::jobs::freshness;
use sluice_engine::metrics::EngineMetrics;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::namespace::Namespace;
use crate::namespaces::Namespaces;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    namespace: String,
    connection: String,
    table: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    namespace: String,
    job: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    namespace: String,
    connection: String,
    connection_type: String,
}

/// Everything `/metrics` reports.
pub struct Exporter {
    registry: Registry,
    namespaces: Arc<Namespaces>,
    catalog_dir: PathBuf,
    connection_up: Family<ConnectionLabels, Gauge>,
    table_ops_today: Family<TableLabels, Gauge>,
    freshness: Family<JobLabels, Gauge>,
    freshness_target: Family<JobLabels, Gauge>,
    cdc_lag_bytes: Family<JobLabels, Gauge>,
    cdc_lag_seconds: Family<JobLabels, Gauge>,
    job_count: Gauge,
    running: Gauge,
    catalog_bytes: Gauge,
}

impl Exporter {
    /// An exporter of `engine`'s metrics and the catalog's state.
    pub fn new(engine: &EngineMetrics, namespaces: Arc<Namespaces>, catalog_dir: &Path) -> Self {
        let mut registry = Registry::with_prefix("sluice");
        engine.register(&mut registry);
        let mut exporter = Self {
            registry,
            namespaces,
            catalog_dir: catalog_dir.to_owned(),
            connection_up: Family::default(),
            table_ops_today: Family::default(),
            freshness: Family::default(),
            freshness_target: Family::default(),
            cdc_lag_bytes: Family::default(),
            cdc_lag_seconds: Family::default(),
            job_count: Gauge::default(),
            running: Gauge::default(),
            catalog_bytes: Gauge::default(),
        };
        exporter.registry.register(
            "connection_up",
            "1 when the connection's last test succeeded, 0 when it failed",
            exporter.connection_up.clone(),
        );
        exporter.registry.register(
            "bq_table_ops_today",
            "Table operations spent on a BigQuery table today (UTC), of BigQuery's 1,500 per table per day",
            exporter.table_ops_today.clone(),
        );
        exporter.registry.register_with_unit(
            "job_freshness",
            "Age of the newest data the job committed to its destination",
            Unit::Seconds,
            exporter.freshness.clone(),
        );
        exporter.registry.register_with_unit(
            "job_freshness_target",
            "The job's freshness_target: beyond it the job is stale",
            Unit::Seconds,
            exporter.freshness_target.clone(),
        );
        exporter.registry.register_with_unit(
            "cdc_lag",
            "WAL a CDC job's replication slot held back after what its destination confirmed, as last measured",
            Unit::Bytes,
            exporter.cdc_lag_bytes.clone(),
        );
        exporter.registry.register_with_unit(
            "cdc_lag",
            "Time since a CDC job's destination was last known to hold everything its source had committed",
            Unit::Seconds,
            exporter.cdc_lag_seconds.clone(),
        );
        exporter
            .registry
            .register("jobs", "ETL jobs defined", exporter.job_count.clone());
        exporter
            .registry
            .register("runs_running", "Runs in progress", exporter.running.clone());
        exporter.registry.register_with_unit(
            "catalog_size",
            "Bytes of the catalog on disk",
            Unit::Bytes,
            exporter.catalog_bytes.clone(),
        );
        exporter
    }

    /// The metrics text, with the gauges read now.
    pub fn render(&self) -> Result<String, String> {
        self.connection_up.clear();
        self.table_ops_today.clear();
        self.freshness.clear();
        self.freshness_target.clear();
        self.cdc_lag_bytes.clear();
        self.cdc_lag_seconds.clear();
        let (mut job_count, mut running) = (0, 0);
        for namespace in self.namespaces.all() {
            let jobs = self.record_namespace(&namespace).map_err(|e| e.to_string())?;
            job_count += jobs;
            running += namespace.jobs.live_runs().len();
        }
        self.job_count.set(job_count as i64);
        self.running.set(running as i64);
        self.catalog_bytes.set(dir_size(&self.catalog_dir) as i64);
        let mut text = String::new();
        encode(&mut text, &self.registry).map_err(|e| e.to_string())?;
        Ok(text)
    }

    /// Sets one namespace's gauges; returns how many jobs it has.
    fn record_namespace(&self, namespace: &Namespace) -> Result<usize, CatalogError> {
        let (catalog, name) = (&namespace.catalog, namespace.name.as_str());
        for connection in catalog.connections()? {
            let up = i64::from(connection.status == ConnectionStatus::Ok);
            self.connection_up
                .get_or_create(&ConnectionLabels {
                    namespace: name.to_owned(),
                    connection: connection.name,
                    connection_type: connection.kind,
                })
                .set(up);
        }
        let today = chrono::Utc::now().date_naive();
        for count in catalog.all_table_ops()? {
            let spent = count.on(today) as i64;
            self.table_ops_today
                .get_or_create(&TableLabels {
                    namespace: name.to_owned(),
                    connection: count.connection,
                    table: count.table,
                })
                .set(spent);
        }
        let jobs = catalog.job_views()?;
        self.record_freshness(name, &jobs);
        self.record_cdc_lag(name, &jobs);
        Ok(jobs.len())
    }

    /// Sets the freshness gauges of every job that committed data, and the
    /// target of every job that has one.
    fn record_freshness(&self, namespace: &str, jobs: &[JobView]) {
        let now = chrono::Utc::now();
        for JobView { job, facts } in jobs {
            let label = JobLabels {
                namespace: namespace.to_owned(),
                job: job.name.clone(),
            };
            if let Some(age) = freshness(job, facts.watermark.as_ref(), &facts.runs, facts.cdc.as_ref(), now) {
                self.freshness.get_or_create(&label).set(age.num_seconds());
            }
            if let Some(target) = job.freshness_target_seconds {
                self.freshness_target.get_or_create(&label).set(target as i64);
            }
        }
    }

    /// Sets the lag gauges of every CDC job that measured its lag.
    fn record_cdc_lag(&self, namespace: &str, jobs: &[JobView]) {
        let now = chrono::Utc::now();
        for (job, state) in jobs.iter().filter_map(|v| Some((&v.job, v.facts.cdc.as_ref()?))) {
            let label = JobLabels {
                namespace: namespace.to_owned(),
                job: job.name.clone(),
            };
            if let Some(bytes) = state.lag_bytes {
                self.cdc_lag_bytes.get_or_create(&label).set(bytes as i64);
            }
            if let Some(seconds) = state.lag_seconds_at(now) {
                self.cdc_lag_seconds.get_or_create(&label).set(seconds as i64);
            }
        }
    }
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| match entry.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&entry.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Serves `/metrics` until the process ends.
pub async fn serve(listener: TcpListener, exporter: Arc<Exporter>) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "metrics endpoint could not accept a connection");
                continue;
            }
        };
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(exporter.clone(), request));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await
            {
                debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

async fn respond(exporter: Arc<Exporter>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_str(content_type).expect("a valid header value"),
        );
        response
    };
    if request.method() != Method::GET || request.uri().path() != "/metrics" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "Sluice serves metrics at GET /metrics\n".into(),
        ));
    }
    Ok(match exporter.render() {
        Ok(text) => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("metrics unavailable: {e}\n"),
        ),
    })
}
