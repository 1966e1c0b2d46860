//! The accept loop: admits connections up to the cap, answers the ones past it with a `503`,
//! serves each in its own task (after its TLS handshake, when TLS is on), and at shutdown stops
//! accepting and drains.
//!
//! At the cap a new connection is accepted, answered `503` with `Retry-After` and closed, rather
//! than left in the kernel's backlog: a client learns at once that it should come back, and the
//! backlog does not fill with connections nobody will read. Those answers have their own small
//! budget; past it a connection is closed unanswered.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::conn;
use crate::state::ConnectionLimits;

/// Connections being answered `503` at once (each lasts at most a header read and a write).
const REFUSING_AT_ONCE: u32 = 256;

/// How often "at the connection limit" may be logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` (through `tls` if given) until `shutdown` resolves, then waits for
/// every connection to finish (idle ones close at once, requests in progress complete).
/// `refuse` answers the connections past `limits.max_connections`.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    refuse: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let refusals = Arc::new(Semaphore::new(REFUSING_AT_ONCE as usize));
    let (stop, stopping) = watch::channel(false);
    let mut warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        // Answers are written whole; Nagle would only delay the last segment.
        let _ = stream.set_nodelay(true);
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            let (app, tls, stopping) = (app.clone(), tls.clone(), stopping.clone());
            tokio::spawn(async move {
                serve_one(stream, peer, tls, app, limits, true, stopping).await;
                drop(slot);
            });
        } else if let Ok(slot) = refusals.clone().try_acquire_owned() {
            if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "at the connection limit: new connections get 503"
                );
                warned = Some(Instant::now());
            }
            let (refuse, tls, stopping) = (refuse.clone(), tls.clone(), stopping.clone());
            tokio::spawn(async move {
                serve_one(stream, peer, tls, refuse, limits, false, stopping).await;
                drop(slot);
            });
        }
        // Else the stream drops here: closed unanswered.
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection task holds a permit until it ends.
    let _ = slots.acquire_many(limits.max_connections).await;
    let _ = refusals.acquire_many(REFUSING_AT_ONCE).await;
}

/// Serves one connection, after its TLS handshake (given the header read timeout) if `tls`.
async fn serve_one(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    keep_alive: bool,
    stopping: watch::Receiver<bool>,
) {
    let Some(tls) = tls else {
        return conn::serve(stream, peer, app, limits, keep_alive, stopping).await;
    };
    match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => conn::serve(stream, peer, app, limits, keep_alive, stopping).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// A failed accept: a connection that died in the backlog is nobody's concern; anything else
/// (out of file descriptors) is logged and waited out, so the loop does not spin.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
