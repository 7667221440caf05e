//! The first load, consistent with the binlog: one session opens a
//! consistent InnoDB snapshot and learns the binlog position that matches
//! it, then reads the table in that snapshot, so that the stream from that
//! position carries exactly the transactions the snapshot does not hold.
//!
//! MariaDB (and Percona Server) report the position of the snapshot
//! itself (`Binlog_snapshot_file`, `Binlog_snapshot_position` after
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT`), with no lock; MariaDB's
//! `BINLOG_GTID_POS` gives the GTID state there. Oracle MySQL has no such
//! status: there, `FLUSH TABLES WITH READ LOCK` holds writers while the
//! snapshot starts and `SHOW MASTER STATUS` and, with `gtid_mode = ON`,
//! `@@gtid_executed` are read (needs RELOAD; not verified here, where
//! Oracle MySQL cannot be installed).

use datafusion::execution::SendableRecordBatchStream;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::super::endpoint::query_error;
use super::super::source;
use super::MysqlChangeSource;
use super::setup::head;
use crate::contract::{Capture, CdcError, GtidState, Position, ScanRequest};

/// The error of a variable the server does not have.
const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;

/// The table's rows in a consistent snapshot, and the binlog position the
/// stream continues from, which sorts after `earlier` (the job's position
/// before a resync).
pub(super) async fn snapshot(
    changes: &MysqlChangeSource,
    capture: &Capture,
    earlier: Option<&Position>,
) -> Result<(SendableRecordBatchStream, Position), CdcError> {
    let mut conn = source::session(&changes.endpoint, changes.timeout).await?;
    let position = match start(&mut conn, earlier).await {
        Ok(position) => position,
        Err(e) => {
            let _ = conn.disconnect().await;
            return Err(e);
        }
    };
    let request = ScanRequest {
        batch_rows: Some(capture.batch_rows),
        ..ScanRequest::every_column(&capture.description)
    };
    let rows = source::scan_on(conn, &changes.endpoint, changes.timeout, &capture.description, &request).await?;
    Ok((rows, position))
}

/// Starts the snapshot transaction on `conn` and returns its position.
async fn start(conn: &mut Conn, earlier: Option<&Position>) -> Result<Position, CdcError> {
    let mut position = read_start(conn).await?;
    if let (Some(earlier), Position::MySql { file, end, shift, .. }) = (earlier, &mut position) {
        *shift = Position::shift_after(file, *end, 0, earlier);
    }
    Ok(position)
}

/// Starts the snapshot transaction on `conn` and reads its position.
async fn read_start(conn: &mut Conn) -> Result<Position, CdcError> {
    let run = async |conn: &mut Conn, sql: &str| conn.query_drop(sql).await.map_err(query_error);
    run(conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await?;
    let reported: Vec<(String, String)> = conn
        .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(query_error)?;
    if reported.is_empty() {
        // Oracle MySQL.
        run(conn, "FLUSH TABLES WITH READ LOCK").await?;
        let started = async {
            run(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await?;
            let head = head(conn).await?;
            let executed: Option<Option<String>> = match conn
                .query_first("SELECT IF(@@GLOBAL.gtid_mode = 'ON', @@GLOBAL.gtid_executed, NULL)")
                .await
            {
                // Before MySQL 5.6 there are no GTIDs.
                Err(mysql_async::Error::Server(e)) if e.code == ER_UNKNOWN_SYSTEM_VARIABLE => None,
                executed => executed.map_err(query_error)?,
            };
            Ok::<_, CdcError>((head, executed.flatten()))
        }
        .await;
        run(conn, "UNLOCK TABLES").await?;
        let ((file, position), executed) = started?;
        return Ok(Position::mysql_snapshot(file, position, gtid_state(executed)?));
    }
    run(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await?;
    let reported: Vec<(String, String)> = conn
        .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(query_error)?;
    let status = |name: &str| {
        reported
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| CdcError::Unsupported(format!("the server reports no {name}")))
    };
    let file = status("Binlog_snapshot_file")?;
    let position: u64 = status("Binlog_snapshot_position")?
        .parse()
        .map_err(|e| CdcError::Unsupported(format!("Binlog_snapshot_position: {e}")))?;
    let gtid: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.as_str(), position))
        .await
        .map_err(query_error)?;
    Ok(Position::mysql_snapshot(file, position, gtid_state(gtid.flatten())?))
}

/// The GTID state the server reported, if it has GTIDs (blank: none yet).
fn gtid_state(reported: Option<String>) -> Result<Option<GtidState>, CdcError> {
    reported
        .map(|text| GtidState::parse(&text))
        .transpose()
        .map_err(CdcError::Unsupported)
}
