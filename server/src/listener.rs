//! The accept loop and the limits that keep hostile or heavy traffic from
//! starving the server: a cap on connections, a cap on connections still
//! logging in (the longest-waiting is closed to make room), a deadline and a
//! byte budget before authentication, and a pause after accept errors.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Framed, FramedParts};
use tracing::{debug, info, warn};

/// Bytes a client may send before it is authenticated (the start-up packet,
/// itself at most 10,000 bytes, and the SCRAM messages).
pub const PRE_AUTH_BYTES: usize = 16 * 1024;

/// Time from a client's first message to a completed login (PostgreSQL's
/// default `authentication_timeout`).
const LOGIN_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The first pause after a failed accept; it doubles up to a second.
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Connection limits (`--max-connections` and friends).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open client connections at most, logged in or not.
    pub max_connections: usize,
    /// Connections still logging in at most; a new one closes the oldest.
    pub max_unauthenticated: usize,
    /// Time from accept (TLS handshake included) to a client's first message.
    pub login_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 100,
            max_unauthenticated: 16,
            login_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts clients until `shutdown` completes; `handlers` makes one
/// connection's handlers.
pub async fn accept_until<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    handlers: F,
    shutdown: impl Future<Output = ()>,
) where
    H: PgWireServerHandlers + Send + Sync + 'static,
    F: Fn() -> H,
{
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let logging_in = Arc::new(PendingLogins::new(limits.max_unauthenticated));
    let mut pause = FIRST_ACCEPT_PAUSE;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => {
                pause = FIRST_ACCEPT_PAUSE;
                accepted
            }
            Err(e) => {
                // EMFILE and friends: retrying at once would spin.
                warn!(error = %e, pause = ?pause, "could not accept a client connection; pausing");
                tokio::select! {
                    () = sleep(pause) => {}
                    () = &mut shutdown => return,
                }
                pause = (pause * 2).min(MAX_ACCEPT_PAUSE);
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            debug!(%peer, "refused a connection: --max-connections reached");
            refuse(&socket, limits.max_connections);
            continue;
        };
        let login = logging_in.admit();
        let handlers = handlers();
        let tls = tls.clone();
        let timeout = limits.login_timeout;
        tokio::spawn(async move {
            match serve_client(socket, peer, tls, handlers, login, timeout, permit).await {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    info!(%peer, reason = %e, "closed a connection that did not log in");
                }
                Err(e) => debug!(%peer, error = %e, "client connection ended with an error"),
                Ok(()) => {}
            }
        });
    }
}

/// Tells a client over the connection cap why it is closed (best effort:
/// the message fits any fresh socket buffer, so this never waits).
fn refuse(socket: &TcpStream, max_connections: usize) {
    let info = ErrorInfo::new(
        "FATAL".into(),
        "53300".into(),
        format!("too many connections (--max-connections is {max_connections}); try again later"),
    );
    let mut buf = BytesMut::new();
    if PgWireBackendMessage::ErrorResponse(info.into())
        .encode(&mut buf)
        .is_ok()
    {
        let _ = socket.try_write(&buf);
    }
}

/// Runs one client connection: TLS negotiation and login under the
/// deadline, byte budget and eviction, then the session without them.
async fn serve_client<H: PgWireServerHandlers>(
    socket: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handlers: H,
    login: PendingLogin,
    timeout: Duration,
    _permit: OwnedSemaphorePermit,
) -> io::Result<()> {
    // A socket that says nothing is closed after `timeout`; once it has
    // spoken, the rest of the login (SCRAM, whose client side is slow on a
    // busy machine) gets PostgreSQL's `authentication_timeout`.
    let mut deadline = Instant::now() + timeout;
    let mut spoke = false;
    let mut login = Some(login);
    let negotiated = tokio::select! {
        negotiated = negotiate_tls(socket, tls) => negotiated?,
        () = sleep_until(deadline) => return Err(gone("login timed out")),
        () = login.as_mut().expect("set above").evicted() => return Err(gone("evicted")),
    };
    let Some(socket) = negotiated else {
        return Ok(());
    };
    let parts = socket.into_parts();
    let mut limited = FramedParts::new(PreAuthLimit::new(parts.io), parts.codec);
    limited.read_buf = parts.read_buf;
    limited.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(limited);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let message = match login.as_mut() {
            Some(pending) => tokio::select! {
                message = socket.next() => message,
                () = sleep_until(deadline) => return Err(gone("login timed out")),
                () = pending.evicted() => return Err(gone("evicted")),
            },
            None => socket.next().await,
        };
        let message = match message {
            None | Some(Ok(PgWireFrontendMessage::Terminate(_))) => return Ok(()),
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                if login.is_some() {
                    warn!(%peer, error = %e, "closed a connection that broke protocol before logging in");
                    let info = ErrorInfo::new("FATAL".into(), "08P01".into(), e.to_string());
                    let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
                }
                return Err(io::Error::other(e.to_string()));
            }
        };
        let wait_for_sync = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let handled = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut e) = handled {
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, wait_for_sync).await?;
        }
        if login.is_some() && matches!(socket.state(), PgWireConnectionState::ReadyForQuery) {
            login = None;
            socket.get_mut().lift();
        }
        if !spoke {
            spoke = true;
            deadline = Instant::now() + LOGIN_EXCHANGE_TIMEOUT;
        }
    }
}

fn gone(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why.to_owned())
}

/// Connections still logging in, oldest first.
struct PendingLogins {
    max: usize,
    next_id: AtomicU64,
    waiting: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
}

impl PendingLogins {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            next_id: AtomicU64::new(0),
            waiting: Mutex::new(VecDeque::new()),
        }
    }

    /// Registers a new connection, closing the longest-waiting one when all
    /// slots are taken (so idle sockets cannot lock real users out).
    fn admit(self: &Arc<Self>) -> PendingLogin {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (evict, evicted) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        while waiting.len() >= self.max {
            // Dropping the sender wakes the connection, which closes.
            waiting.pop_front();
        }
        waiting.push_back((id, evict));
        PendingLogin {
            id,
            registry: self.clone(),
            evicted,
        }
    }
}

/// A connection's slot among those logging in; freed on drop.
struct PendingLogin {
    id: u64,
    registry: Arc<PendingLogins>,
    evicted: oneshot::Receiver<()>,
}

impl PendingLogin {
    /// Completes when the slot was given to a newer connection.
    async fn evicted(&mut self) {
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for PendingLogin {
    fn drop(&mut self) {
        let mut waiting = self.registry.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.retain(|(id, _)| *id != self.id);
    }
}

/// A stream that fails reads past [`PRE_AUTH_BYTES`] until lifted, so a
/// client cannot make the server buffer a huge message before logging in.
struct PreAuthLimit<S> {
    inner: S,
    remaining: Option<usize>,
}

impl<S> PreAuthLimit<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            remaining: Some(PRE_AUTH_BYTES),
        }
    }

    /// Removes the budget once the client is authenticated.
    fn lift(&mut self) {
        self.remaining = None;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PreAuthLimit<S> {
    /// Once the budget is spent, the next read fails (so at most one read
    /// buffer's worth arrives past it).
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.remaining == Some(0) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {PRE_AUTH_BYTES} bytes sent before authentication"),
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        if let Some(remaining) = self.remaining.as_mut() {
            *remaining = remaining.saturating_sub(read);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreAuthLimit<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_past_the_budget_fail_until_lifted() {
        let data = vec![0u8; PRE_AUTH_BYTES + 1];
        let mut limited = PreAuthLimit::new(&data[..]);
        let mut sink = Vec::new();
        assert!(limited.read_to_end(&mut sink).await.is_err());
        let mut lifted = PreAuthLimit::new(&data[..]);
        lifted.lift();
        sink.clear();
        assert_eq!(lifted.read_to_end(&mut sink).await.unwrap(), data.len());
    }

    #[test]
    fn a_new_login_evicts_the_oldest_when_all_slots_are_taken() {
        let registry = Arc::new(PendingLogins::new(2));
        let mut first = registry.admit();
        let mut second = registry.admit();
        let _third = registry.admit();
        assert!(
            first
                .evicted
                .try_recv()
                .is_err_and(|e| e == oneshot::error::TryRecvError::Closed)
        );
        assert!(
            second
                .evicted
                .try_recv()
                .is_err_and(|e| e == oneshot::error::TryRecvError::Empty)
        );
        drop(second);
        assert_eq!(registry.waiting.lock().unwrap().len(), 1);
    }
}
