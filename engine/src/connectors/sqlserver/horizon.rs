//! The commit guard's reading of a SQL Server source: its clock and the
//! transactions open in other sessions (`sys.dm_tran_active_transactions`,
//! which needs `VIEW SERVER STATE`).

use super::decode::instant_micros;
use super::endpoint::Session;
use super::metadata::rows;
use crate::contract::{CommitHorizon, OpenTransaction, SourceError, SourceInstant};

/// The clock as UTC and as the server's wall time.
const CLOCK: &str = "SELECT SYSUTCDATETIME(), SYSDATETIME()";

/// Read/write transactions of other sessions, oldest first; their start is
/// the server's wall time.
const OPEN: &str = "SELECT st.session_id, at.transaction_begin_time FROM sys.dm_tran_active_transactions at \
                    JOIN sys.dm_tran_session_transactions st ON st.transaction_id = at.transaction_id \
                    WHERE st.session_id <> @@SPID AND at.transaction_type = 1 ORDER BY at.transaction_begin_time";

/// What the source user needs to see other sessions' transactions.
const GRANT: &str = "VIEW SERVER STATE";

/// What a server without the views (a Synapse pool) needs instead.
const NO_VIEWS: &str = "a server with sys.dm_tran_active_transactions (Synapse pools have none: use LOOKBACK)";

/// Reads the commit horizon on `client`.
pub(super) async fn read(client: &mut Session) -> Result<CommitHorizon, SourceError> {
    let clock = rows(client, CLOCK, &[]).await?;
    let now = clock
        .first()
        .and_then(|row| {
            let mut cells = row.cells().map(|(_, v)| instant_micros(v));
            Some(SourceInstant {
                utc_micros: cells.next()??,
                wall_micros: cells.next()??,
            })
        })
        .ok_or_else(|| SourceError::Query {
            code: None,
            message: "the source did not tell its clock".into(),
        })?;
    let (open, blind) = match rows(client, OPEN, &[]).await {
        Ok(rows) => (rows, None),
        // No permission to see other sessions, or no such view (a
        // stand-in, or a pool without it).
        Err(SourceError::Query { code: Some(code), .. }) if code == "42501" => (Vec::new(), Some(GRANT.to_owned())),
        Err(SourceError::Query { code: Some(code), .. }) if code == "42P01" => (Vec::new(), Some(NO_VIEWS.to_owned())),
        Err(e) => return Err(e),
    };
    // The wall clock's offset from UTC now, for the transactions' starts.
    let offset = now.wall_micros - now.utc_micros;
    let open = open
        .iter()
        .filter_map(|row| {
            let mut cells = row.cells().map(|(_, v)| v);
            let holder = match cells.next()? {
                tiberius::ColumnData::I16(v) => i64::from((*v)?),
                tiberius::ColumnData::I32(v) => i64::from((*v)?),
                _ => return None,
            };
            let wall = instant_micros(cells.next()?)?;
            Some(OpenTransaction {
                holder,
                started: SourceInstant {
                    utc_micros: wall - offset,
                    wall_micros: wall,
                },
            })
        })
        .collect();
    Ok(CommitHorizon {
        now,
        open,
        replay: None,
        blind,
        uploads_in_flight: false,
    })
}
