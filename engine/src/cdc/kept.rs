//! One source session a change source keeps for the small statements it
//! repeats for as long as it lives (the marker a continuous stream writes
//! every beat), instead of a new session (TCP, TLS, authentication) each
//! time.

use std::time::Duration;

use tokio::sync::Mutex;
use tracing::info;

use crate::contract::{CdcError, ConnectFailure, ConnectFailureKind};

/// A session opened on first use, reused, replaced when it fails, and
/// closed with its owner.
pub(crate) struct KeptSession<S> {
    session: Mutex<Option<S>>,
    /// How long one piece of work may take on the session.
    timeout: Duration,
    /// Ends a session politely (dropping a failed one is enough).
    close: fn(S),
}

impl<S: Send> KeptSession<S> {
    /// No session yet; each piece of work gets `timeout`, and `close` ends
    /// the session still kept when this is dropped.
    pub(crate) fn new(timeout: Duration, close: fn(S)) -> Self {
        Self {
            session: Mutex::new(None),
            timeout,
            close,
        }
    }

    /// Runs `work` on the kept session, opened with `open` when there is
    /// none. When `work` fails (or does not answer within the timeout) on
    /// a session kept from before, which the server may have ended or an
    /// idle timeout or a network drop broken meanwhile, that session is
    /// dropped and `work` runs once more on a new one; a failure there is
    /// returned, and nothing is kept. (`work` is a cloned `AsyncFnOnce`
    /// rather than an `AsyncFn`: the futures of the latter, borrowing what
    /// the closure captures, are not `Send` to the compiler.)
    pub(crate) async fn run<T>(
        &self,
        open: impl AsyncFnOnce() -> Result<S, CdcError>,
        work: impl AsyncFnOnce(&mut S) -> Result<T, CdcError> + Clone,
    ) -> Result<T, CdcError> {
        let mut kept = self.session.lock().await;
        if let Some(session) = kept.as_mut() {
            match self.bounded(work.clone()(session)).await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    info!(error = %e, "a kept source session failed; trying again on a new one");
                    *kept = None;
                }
            }
        }
        let mut session = open().await?;
        let value = self.bounded(work(&mut session)).await?;
        *kept = Some(session);
        Ok(value)
    }

    async fn bounded<T>(&self, work: impl Future<Output = Result<T, CdcError>>) -> Result<T, CdcError> {
        tokio::time::timeout(self.timeout, work).await.map_err(|_| {
            CdcError::from(ConnectFailure::new(
                ConnectFailureKind::Timeout,
                format!("no answer within {} s", self.timeout.as_secs()),
            ))
        })?
    }
}

impl<S> Drop for KeptSession<S> {
    fn drop(&mut self) {
        if let Some(session) = self.session.get_mut().take() {
            (self.close)(session);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::contract::SourceError;

    /// A session that knows its number and whether the server ended it.
    struct Fake {
        number: u32,
        ended: bool,
        closed: Arc<AtomicU32>,
    }

    fn broken() -> CdcError {
        CdcError::from(ConnectFailure::new(ConnectFailureKind::Other, "connection closed"))
    }

    struct Source {
        opened: AtomicU32,
        closed: Arc<AtomicU32>,
        kept: KeptSession<Fake>,
    }

    impl Source {
        fn new(timeout: Duration) -> Self {
            Self {
                opened: AtomicU32::new(0),
                closed: Arc::new(AtomicU32::new(0)),
                kept: KeptSession::new(timeout, |session: Fake| {
                    session.closed.fetch_add(1, Ordering::SeqCst);
                }),
            }
        }

        async fn open(&self) -> Result<Fake, CdcError> {
            Ok(Fake {
                number: self.opened.fetch_add(1, Ordering::SeqCst) + 1,
                ended: false,
                closed: self.closed.clone(),
            })
        }

        /// The number of the session the work ran on.
        async fn mark(&self) -> Result<u32, CdcError> {
            self.kept
                .run(
                    async || self.open().await,
                    async |session: &mut Fake| {
                        if session.ended {
                            Err(broken())
                        } else {
                            Ok(session.number)
                        }
                    },
                )
                .await
        }

        async fn end_session(&self) {
            self.kept.session.lock().await.as_mut().expect("a kept session").ended = true;
        }
    }

    #[tokio::test]
    async fn one_session_serves_every_mark_until_it_fails() {
        let source = Source::new(Duration::from_secs(60));
        for _ in 0..5 {
            assert_eq!(source.mark().await.unwrap(), 1);
        }
        assert_eq!(source.opened.load(Ordering::SeqCst), 1);
        // The server ends it: the next mark runs on a new one, which stays.
        source.end_session().await;
        assert_eq!(source.mark().await.unwrap(), 2);
        assert_eq!(source.mark().await.unwrap(), 2);
        assert_eq!(source.opened.load(Ordering::SeqCst), 2);
        assert_eq!(
            source.closed.load(Ordering::SeqCst),
            0,
            "a failed session is dropped, not closed"
        );
        drop(source.kept);
        assert_eq!(
            source.closed.load(Ordering::SeqCst),
            1,
            "the kept one is closed with its owner"
        );
    }

    #[tokio::test]
    async fn a_failure_on_a_new_session_is_returned_and_not_retried() {
        let source = Source::new(Duration::from_secs(60));
        let refused = || {
            CdcError::Source(SourceError::Query {
                code: Some("42501".into()),
                message: "permission denied".into(),
            })
        };
        let opened = AtomicU32::new(0);
        let err = source
            .kept
            .run(
                async || {
                    opened.fetch_add(1, Ordering::SeqCst);
                    source.open().await
                },
                async |_: &mut Fake| Err::<(), _>(refused()),
            )
            .await
            .unwrap_err();
        assert_eq!(err.sqlstate(), Some("42501"));
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        assert!(source.kept.session.lock().await.is_none(), "nothing is kept");
        // On a kept session: one more try, on a new session, then the error.
        assert_eq!(source.mark().await.unwrap(), 2);
        let err = source
            .kept
            .run(
                async || source.open().await,
                async |_: &mut Fake| Err::<(), _>(refused()),
            )
            .await
            .unwrap_err();
        assert_eq!(err.sqlstate(), Some("42501"));
        assert_eq!(source.opened.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_kept_session_that_does_not_answer_is_replaced() {
        let source = Source::new(Duration::from_millis(50));
        assert_eq!(source.mark().await.unwrap(), 1);
        let answered = source
            .kept
            .run(
                async || source.open().await,
                async |session: &mut Fake| {
                    if session.number == 1 {
                        std::future::pending::<()>().await;
                    }
                    Ok(session.number)
                },
            )
            .await
            .unwrap();
        assert_eq!(answered, 2);
        assert_eq!(source.mark().await.unwrap(), 2);
    }
}
