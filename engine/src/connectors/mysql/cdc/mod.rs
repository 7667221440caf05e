//! MySQL/MariaDB change data capture (docs/cdc.md, docs/design/cdc.md
//! 2.2): the first load read in a consistent snapshot at known binlog
//! coordinates ([`snapshot`]), then the row-based binlog from exactly
//! there, read as a replica with its own `server_id` ([`stream`]), from
//! the GTID state of the position where it has one, so that a job follows
//! a failover to a replica ([`resume`]; an older build's state of one
//! transaction is completed first, [`whole_state`]). The source keeps nothing for a
//! job (no slot): the destination holds the position, and the binlog's
//! own retention decides how long a job may pause ([`setup::retained`]
//! reports a purged file, or a GTID state the binlog no longer holds, as
//! lost).

mod layout;
mod resume;
mod setup;
mod snapshot;
mod stream;
mod values;
mod whole_state;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::execution::SendableRecordBatchStream;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use sluice_catalog::CdcState;

use super::endpoint::Endpoint;
use super::source;
use crate::cdc::kept::KeptSession;
use crate::contract::{
    Capture, CdcError, ChangeSource, ChangeStream, ConnectFailure, ConnectFailureKind, Position, ResolvedOptions,
    Retention,
};
use resume::Resume;
use stream::{Decoder, Mark, Marks, MySqlChangeStream, binlog_error};

/// Opens a MySQL/MariaDB connection's options as a change source.
pub(super) fn open(options: &ResolvedOptions, timeout: Duration) -> Arc<dyn ChangeSource> {
    Arc::new(MysqlChangeSource {
        endpoint: Arc::new(Endpoint::new(options)),
        timeout,
        marks: Marks::default(),
        // Dropping a connection says goodbye to the server (in a task of
        // its own).
        kept: KeptSession::new(timeout, drop),
    })
}

struct MysqlChangeSource {
    endpoint: Arc<Endpoint>,
    timeout: Duration,
    /// The drain markers written, for the streams this source opened.
    marks: Marks,
    /// The session a stream's repeated statements run on (the binlog's
    /// head for each marker, the binary logs for each measurement).
    kept: KeptSession<Conn>,
}

#[async_trait]
impl ChangeSource for MysqlChangeSource {
    async fn check(&self, capture: &Capture) -> Result<Vec<String>, CdcError> {
        if let Some(publication) = &capture.publication {
            return Err(CdcError::Unsupported(format!(
                "publication '{publication}' applies to PostgreSQL sources: MySQL/MariaDB jobs read the binlog, \
                 which has no publications; leave out publication"
            )));
        }
        setup::check(self, capture).await
    }

    /// Gives the job its replica `server_id` (the job's own, or one
    /// derived from it); nothing is created at the source.
    async fn prepare(&self, capture: &Capture, instance: &str, state: &mut CdcState) -> Result<(), CdcError> {
        state.server_id = Some(
            capture
                .server_id
                .unwrap_or_else(|| setup::server_id(instance, &state.job)),
        );
        Ok(())
    }

    async fn snapshot(
        &self,
        capture: &Capture,
        state: &CdcState,
    ) -> Result<(SendableRecordBatchStream, Position), CdcError> {
        // A resync's rows sort after what the job committed before (on
        // another server, after a failover, binlog files may be numbered
        // lower): HISTORY appends them.
        let earlier = state
            .position
            .as_deref()
            .and_then(|json| Position::from_json(json).ok());
        snapshot::snapshot(self, capture, earlier.as_ref()).await
    }

    async fn stream(
        &self,
        capture: &Capture,
        state: &CdcState,
        from: &Position,
    ) -> Result<Box<dyn ChangeStream>, CdcError> {
        // Read before the stream starts: what was logged before its head
        // is of its definition or an older one.
        let layout = self
            .kept
            .run(
                async || Ok(source::session(&self.endpoint, self.timeout).await?),
                async |conn: &mut Conn| layout::Layout::read(conn, capture).await,
            )
            .await?;
        let changed = layout.differs_from_capture(capture);
        // A server_id set since the first load counts from the next stream.
        let (Position::MySql { .. }, Some(server_id)) = (from, capture.server_id.or(state.server_id)) else {
            return Err(CdcError::Unsupported(format!(
                "job \"{}\" has no binlog position and replica id yet: take its first load first",
                state.job
            )));
        };
        let mut conn = self.endpoint.connect(self.timeout).await?;
        let from = &whole_state::complete(&mut conn, from).await?;
        let resume = Resume::after(from)?;
        for statement in resume.session() {
            conn.query_drop(statement).await.map_err(binlog_error)?;
        }
        let checksums = stream::checksums(&mut conn).await.map_err(binlog_error)?;
        let decoder = Decoder::new(capture, from, resume.by_gtid(), checksums, layout)?;
        let started = async {
            let binlog = conn
                .get_binlog_stream(resume.request(server_id))
                .await
                .map_err(|e| resume.failed(&state.job, e))?;
            let mut stream = MySqlChangeStream::new(binlog, decoder, self.marks.clone(), changed);
            stream.start(|e| resume.failed(&state.job, e)).await?;
            Ok::<_, CdcError>(stream)
        };
        let stream = tokio::time::timeout(self.timeout, started).await.map_err(|_| {
            CdcError::from(ConnectFailure::new(
                ConnectFailureKind::Timeout,
                format!("the binlog stream did not start within {} s", self.timeout.as_secs()),
            ))
        })??;
        Ok(Box::new(stream))
    }

    /// Nothing to drop: a replica leaves nothing behind at the source.
    async fn release(&self, _state: &CdcState) -> Result<(), CdcError> {
        Ok(())
    }

    /// Remembers the binlog's head (read on one session for the source's
    /// lifetime: a stream's beats do not each open a session at the
    /// source): the job's streams yield the marker once they have read up
    /// to it.
    async fn mark(&self, prefix: &str) -> Result<(), CdcError> {
        let (file, position) = self
            .kept
            .run(
                async || Ok(source::session(&self.endpoint, self.timeout).await?),
                async |conn: &mut Conn| setup::head(conn).await,
            )
            .await?;
        self.marks.lock().expect("marks lock").push(Mark {
            prefix: prefix.to_owned(),
            file,
            position,
        });
        Ok(())
    }

    async fn retained(&self, state: &CdcState) -> Result<Option<Retention>, CdcError> {
        setup::retained(self, state).await
    }
}
