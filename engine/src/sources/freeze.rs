//! A table frozen while the parts of a split scan open their snapshots,
//! for sources that cannot hand one session's snapshot to another (MySQL,
//! MariaDB, SQL Server). A coordinating session locks the table against
//! writers and holds a named lock that says the freeze is on; each part
//! starts its snapshot, checks that lock is still held (so its snapshot
//! began inside the freeze), and takes a named lock of its own (the part's
//! token, `<freeze>/<part>`). [`hold`] keeps the freeze until every part
//! has been seen holding its lock, [`FREEZE_LIMIT`] has passed, or the
//! [`SplitScan`] drops; a part that starts later is refused
//! ([`ended`]). The sources supply the SQL of each step.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::contract::{ScanPart, ScanRequest, SourceError, SplitScan, TableDescription};
use crate::sources::key_ranges::part_request;

/// The longest a table stays frozen waiting for parts to open their
/// snapshots: writers wait at most this long.
pub(crate) const FREEZE_LIMIT: Duration = Duration::from_secs(30);

/// How often the coordinator looks for the parts' locks.
const POLL: Duration = Duration::from_millis(20);

/// A new freeze's lock name.
pub(crate) fn new_name() -> String {
    format!("sluice_freeze_{}", uuid::Uuid::new_v4().simple())
}

/// Which of the parts' locks another session holds now, on the
/// coordinator's session.
pub(crate) type Watch<C> = for<'a> fn(&'a mut C, &'a [String]) -> BoxFuture<'a, Result<Vec<bool>, SourceError>>;

/// Ends the freeze named by the `String` on the coordinator's session
/// (its lock first, then the table's) and closes the session.
pub(crate) type Thaw<C> = fn(C, String) -> BoxFuture<'static, Result<(), SourceError>>;

/// The split of `request` into `conditions`, each part read inside the
/// freeze `freeze` (held by `conn`, which [`hold`] keeps until the parts
/// have joined, then thaws with `thaw` and drops).
pub(crate) fn split<C: Send + 'static>(
    conn: C,
    freeze: String,
    request: &ScanRequest,
    conditions: Vec<Option<String>>,
    watch: Watch<C>,
    thaw: Thaw<C>,
) -> SplitScan {
    let parts: Vec<ScanPart> = (conditions.into_iter().enumerate())
        .map(|(i, condition)| ScanPart {
            request: part_request(request, condition),
            snapshot: Some(format!("{freeze}/{i}")),
        })
        .collect();
    let tokens = parts.iter().filter_map(|p| p.snapshot.clone()).collect();
    let (release, released) = oneshot::channel();
    tokio::spawn(hold(conn, freeze, tokens, released, watch, thaw));
    SplitScan {
        parts,
        hold: Box::new(release),
    }
}

/// Keeps the table frozen until every part has been seen holding its lock
/// (parts run in waves on a cluster: a finished part's lock is gone, so
/// each is remembered once seen), the freeze has lasted [`FREEZE_LIMIT`],
/// or `released` fires (its sender dropped), then thaws it.
async fn hold<C>(
    mut conn: C,
    freeze: String,
    parts: Vec<String>,
    mut released: oneshot::Receiver<()>,
    watch: Watch<C>,
    thaw: Thaw<C>,
) {
    let deadline = Instant::now() + FREEZE_LIMIT;
    let mut joined = vec![false; parts.len()];
    loop {
        tokio::select! {
            _ = &mut released => break,
            () = tokio::time::sleep(POLL) => {}
        }
        if Instant::now() >= deadline {
            warn!(%freeze, parts = parts.len(), "a table freeze ended before every part had opened its snapshot");
            break;
        }
        match watch(&mut conn, &parts).await {
            Ok(held) => {
                for (seen, held) in joined.iter_mut().zip(held) {
                    *seen |= held;
                }
                if joined.iter().all(|&seen| seen) {
                    break;
                }
            }
            Err(error) => {
                warn!(%freeze, %error, "could not watch a table freeze; ending it");
                break;
            }
        }
    }
    if let Err(error) = thaw(conn, freeze.clone()).await {
        warn!(%freeze, %error, "could not end a table freeze; closing its session ends it");
    }
    debug!(%freeze, "table thawed");
}

/// The freeze a part's token names.
pub(crate) fn freeze_of(token: &str) -> Result<&str, SourceError> {
    match token.rsplit_once('/') {
        Some((freeze, _)) => Ok(freeze),
        None => Err(SourceError::Query {
            code: None,
            message: format!("\"{token}\" names no part of a table freeze"),
        }),
    }
}

/// A part that started after its freeze ended: it cannot read the run's
/// snapshot, and the run is retried.
pub(crate) fn ended(description: &TableDescription) -> SourceError {
    SourceError::Query {
        code: Some("40001".into()),
        message: format!(
            "a part of the parallel read of {} started after the table's freeze ended, so it cannot read the \
             run's snapshot (every part must start within {} s: parallelism above the task slots free at once, \
             or a part run again after a failure); the run is retried",
            description.table,
            FREEZE_LIMIT.as_secs()
        ),
    }
}

/// A part whose lock another session holds.
pub(crate) fn taken(token: &str, description: &TableDescription) -> SourceError {
    SourceError::Query {
        code: Some("40001".into()),
        message: format!(
            "part {token} of the parallel read of {} is already being read by another session",
            description.table
        ),
    }
}
