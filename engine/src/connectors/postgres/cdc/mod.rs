//! PostgreSQL change data capture (docs/design/cdc.md 2.2): a publication
//! and a logical replication slot (`pgoutput`) per job, the first load read
//! through the scan's binary `COPY` in the snapshot the slot exports, then
//! the slot's stream (over `pgwire-replication`, parsed by `pg_walstream`)
//! decoded into change events. The slot's `confirmed_flush_lsn` moves only
//! when the caller confirms a position its destination committed.

mod layout;
mod setup;
mod stream;
mod text;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::execution::SendableRecordBatchStream;
use pgwire_replication::{Lsn, PgWireError, ReplicationClient, ReplicationConfig, TlsConfig};
use sluice_catalog::CdcState;
use tokio_postgres::config::{Host, SslMode};

use super::{Endpoint, PgConnection, parallel};
use crate::cdc::kept::KeptSession;
use crate::contract::{
    Capture, CdcError, ChangeSource, ChangeStream, ConnectFailure, ConnectFailureKind, Position, ResolvedOptions,
    Retention, ScanRequest,
};
use crate::tls::Verify;

/// Opens a PostgreSQL connection's options as a change source.
pub(super) fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn ChangeSource> {
    Arc::new(PostgresChangeSource {
        endpoint: Endpoint::new(options, timeout),
        kept: KeptSession::new(timeout, PgConnection::close),
    })
}

struct PostgresChangeSource {
    endpoint: Endpoint,
    /// The session a stream's repeated statements run on (its markers and
    /// the measurements of its slot), closed with the source.
    kept: KeptSession<PgConnection>,
}

#[async_trait]
impl ChangeSource for PostgresChangeSource {
    async fn check(&self, capture: &Capture) -> Result<Vec<String>, CdcError> {
        if let Some(id) = capture.server_id {
            return Err(CdcError::Unsupported(format!(
                "server_id {id} applies to MySQL/MariaDB sources: PostgreSQL jobs stream from a replication slot; \
                 leave out server_id"
            )));
        }
        setup::check(&self.endpoint, capture).await
    }

    async fn prepare(&self, capture: &Capture, instance: &str, state: &mut CdcState) -> Result<(), CdcError> {
        setup::prepare(&self.endpoint, capture, instance, state).await
    }

    async fn snapshot(
        &self,
        capture: &Capture,
        state: &CdcState,
    ) -> Result<(SendableRecordBatchStream, Position), CdcError> {
        let (slot, publication) = names(state)?;
        // A slot left by an interrupted first load: its snapshot died with
        // the session that exported it.
        setup::drop_slot(&self.endpoint, slot).await?;
        let mut gated = connect(&self.endpoint, slot, publication, None).await?;
        let created = gated
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT \"{slot}\" LOGICAL pgoutput EXPORT_SNAPSHOT"
            ))
            .await
            .map_err(replication_error)?;
        let cell = |i: usize| -> Result<String, CdcError> {
            created
                .first()
                .and_then(|row| row.get(i).cloned().flatten())
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .ok_or_else(|| CdcError::Unsupported("CREATE_REPLICATION_SLOT returned no row".into()))
        };
        let consistent_point = Lsn::parse(&cell(1)?)
            .map_err(|e| CdcError::Unsupported(format!("consistent point {}: {e}", cell(1).unwrap_or_default())))?;
        let snapshot = cell(2)?;
        let request = ScanRequest {
            batch_rows: Some(capture.batch_rows),
            ..ScanRequest::every_column(&capture.description)
        };
        let rows = parallel::scan_in_snapshot(
            &self.endpoint,
            Some(&snapshot),
            &capture.description,
            &request,
            capture.parallel,
        )
        .await?;
        // Every COPY has imported the snapshot: the exporting session may
        // end (the slot stays).
        drop(gated);
        Ok((rows, Position::postgres_snapshot(consistent_point.0)))
    }

    async fn stream(
        &self,
        capture: &Capture,
        state: &CdcState,
        from: &Position,
    ) -> Result<Box<dyn ChangeStream>, CdcError> {
        let (slot, publication) = names(state)?;
        let Position::Postgres { end_lsn, .. } = from else {
            return Err(CdcError::Unsupported(format!(
                "{} is not a PostgreSQL position",
                from.to_json()
            )));
        };
        // Read before the stream starts: the changes committed up to the
        // layout's position are of its definition or an older one.
        let layout = self
            .kept
            .run(
                async || Ok(self.endpoint.connect().await?),
                async |connection: &mut PgConnection| layout::Layout::read(connection, capture).await,
            )
            .await?;
        // The session of a Sluice that was killed may hold the slot
        // (`55006`) until its server process notices.
        let deadline = tokio::time::Instant::now() + setup::SLOT_RELEASE_WAIT;
        let client = loop {
            match connect(&self.endpoint, slot, publication, Some(Lsn(*end_lsn))).await {
                Err(e) if e.sqlstate() == Some("55006") && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                result => break result?,
            }
        };
        Ok(Box::new(stream::PgChangeStream::new(client, capture, layout)))
    }

    async fn release(&self, state: &CdcState) -> Result<(), CdcError> {
        setup::release(&self.endpoint, state).await
    }

    /// On one session for the source's lifetime: a stream's beats do not
    /// each open a session at the source.
    async fn mark(&self, prefix: &str) -> Result<(), CdcError> {
        self.kept
            .run(
                async || Ok(self.endpoint.connect().await?),
                async |connection: &mut PgConnection| setup::mark(connection, prefix).await,
            )
            .await
    }

    async fn retained(&self, state: &CdcState) -> Result<Option<Retention>, CdcError> {
        match &state.slot {
            Some(slot) => {
                self.kept
                    .run(
                        async || Ok(self.endpoint.connect().await?),
                        async |connection: &mut PgConnection| setup::retained(connection, slot).await,
                    )
                    .await
            }
            None => Ok(None),
        }
    }
}

/// The slot and publication `prepare` named.
fn names(state: &CdcState) -> Result<(&str, &str), CdcError> {
    match (&state.slot, &state.publication) {
        (Some(slot), Some(publication)) => Ok((slot, publication)),
        _ => Err(CdcError::Unsupported(format!(
            "job \"{}\" has no replication slot yet: prepare it first",
            state.job
        ))),
    }
}

/// Opens a replication session for `slot` within the endpoint's timeout:
/// streaming from `start`, or gated (for replication commands) without
/// one. With `sslmode=verify-if-offered` it verifies like `verify-full`
/// and falls back to plaintext only when the server refuses TLS.
async fn connect(
    endpoint: &Endpoint,
    slot: &str,
    publication: &str,
    start: Option<Lsn>,
) -> Result<ReplicationClient, CdcError> {
    let config = replication_config(endpoint, slot, publication, start)?;
    let offered_only = endpoint
        .tls
        .as_ref()
        .is_some_and(|s| s.verify == Verify::ChainAndHost && endpoint.config.get_ssl_mode() == SslMode::Prefer);
    let attempt = |config: ReplicationConfig| async move {
        let mut client = match start {
            Some(_) => ReplicationClient::connect(config).await?,
            None => ReplicationClient::connect_gated(config).await?,
        };
        match start {
            Some(_) => client.wait_started().await?,
            None => drop(client.identify_system().await?),
        }
        Ok::<_, PgWireError>(client)
    };
    let connected = async {
        match attempt(config.clone()).await {
            Err(PgWireError::Tls(message)) if offered_only && message.contains("SSLRequest rejected") => {
                attempt(config.with_tls(TlsConfig::disabled())).await
            }
            result => result,
        }
    };
    tokio::time::timeout(endpoint.timeout, connected)
        .await
        .map_err(|_| timed_out(endpoint.timeout))?
        .map_err(replication_error)
}

/// The replication session of `endpoint` for `slot`, starting (and
/// reporting as applied) at `start`.
fn replication_config(
    endpoint: &Endpoint,
    slot: &str,
    publication: &str,
    start: Option<Lsn>,
) -> Result<ReplicationConfig, CdcError> {
    let config = &endpoint.config;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => return Err(CdcError::Unsupported("change data capture needs a TCP host".into())),
    };
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let tls = match &endpoint.tls {
        None => TlsConfig::disabled(),
        Some(settings) => {
            let root = settings.root_cert.as_ref().map(std::path::PathBuf::from);
            match (settings.verify, config.get_ssl_mode()) {
                (Verify::Nothing, SslMode::Prefer) => TlsConfig {
                    mode: pgwire_replication::SslMode::Prefer,
                    ..TlsConfig::disabled()
                },
                (Verify::Nothing, _) => TlsConfig::require(),
                (Verify::Chain, _) => TlsConfig::verify_ca(root),
                (Verify::ChainAndHost, _) => TlsConfig::verify_full(root),
            }
        }
    };
    let mut replication = ReplicationConfig::new(
        host,
        config.get_user().unwrap_or_default(),
        password,
        config.get_dbname().unwrap_or_default(),
        slot,
        publication,
    )
    .with_port(config.get_ports().first().copied().unwrap_or(5432))
    .with_tls(tls)
    .with_application_name("sluice")
    .with_status_interval(Duration::from_secs(1))
    .with_options(text::SESSION_OPTIONS);
    if let Some(start) = start {
        replication = replication.with_start_lsn(start).with_ack_lsn(start);
    }
    Ok(replication)
}

/// A replication-protocol failure, with the server's SQLSTATE when it sent
/// one (`... (SQLSTATE 42704)`).
fn replication_error(error: PgWireError) -> CdcError {
    let message = error.to_string();
    let code = message
        .rsplit_once("(SQLSTATE ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .filter(|code| code.len() == 5)
        .map(str::to_owned);
    match error {
        PgWireError::Io(_) | PgWireError::Tls(_) => CdcError::Source(crate::contract::SourceError::Connect(
            ConnectFailure::new(ConnectFailureKind::Other, message),
        )),
        PgWireError::Auth(_) => CdcError::Source(crate::contract::SourceError::Connect(ConnectFailure::new(
            ConnectFailureKind::BadPassword,
            message,
        ))),
        _ => CdcError::Replication { code, message },
    }
}

fn timed_out(timeout: Duration) -> CdcError {
    CdcError::from(super::timed_out(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_their_sqlstate() {
        let err = replication_error(PgWireError::Server(
            "replication slot \"x\" does not exist (SQLSTATE 42704)".into(),
        ));
        assert_eq!(err.sqlstate(), Some("42704"));
        assert!(
            err.to_string().contains("replication slot \"x\" does not exist"),
            "{err}"
        );
        let err = replication_error(PgWireError::Protocol("bad".into()));
        assert_eq!(err.sqlstate(), None);
    }
}
