//! Serving one connection: HTTP/1.1 through hyper, with the connection's [`Watch`] closing it
//! past its deadline and a stop signal draining it gracefully.
//!
//! A response marked [`Endless`] (the SSE stream) is timed by its progress, frame by frame, and
//! ends when the server starts shutting down, so that it never holds up the drain.
//!
//! Only HTTP/1.1 (and 1.0) is served: every slow-client limit here is written against its
//! one-request-at-a-time framing, and the API's clients gain nothing from HTTP/2 multiplexing.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::ServiceExt;

use super::watch::{Watch, Watched};
use crate::state::ConnectionLimits;

/// Serves HTTP/1.1 on `io` until the client leaves, a deadline passes, or `stop` turns true
/// (then the request in progress finishes and the connection closes). `keep_alive: false`
/// closes it after one response.
pub async fn serve<IO>(
    io: IO,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    keep_alive: bool,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::new(Watch::new(limits));
    let io = TokioIo::new(Watched::new(io, watch.clone()));
    let service = Service {
        app,
        peer,
        watch: watch.clone(),
        stop: stop.clone(),
    };
    let mut http = http1::Builder::new();
    // hyper's own header timer would also start between requests; the watch keeps the idle
    // wait and the header wait apart.
    http.keep_alive(keep_alive).header_read_timeout(None);
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = watch.expired() => {
                tracing::debug!(%peer, "closing a connection past its deadline");
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A response extension: this body never ends by itself (an event stream). Its write deadline
/// counts from its last frame instead of its start, and it ends when the server shuts down.
#[derive(Debug, Clone, Copy)]
pub struct Endless;

/// The router, seen from one connection: tells the watch when a request starts and when its
/// response is done, and gives handlers the peer's address.
#[derive(Clone)]
struct Service {
    app: Router,
    peer: SocketAddr,
    watch: Arc<Watch>,
    /// Turns true when the server starts shutting down.
    stop: watch::Receiver<bool>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Tracked<axum::body::Body>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.watch.busy();
        // The rate limiter keys anonymous callers by this address.
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let app = self.app.clone();
        let watch = self.watch.clone();
        let mut stop = self.stop.clone();
        Box::pin(async move {
            let response = app.oneshot(req).await?;
            let stop: Option<Stop> = if response.extensions().get::<Endless>().is_some() {
                watch.streaming();
                Some(Box::pin(async move {
                    let _ = stop.wait_for(|stopping| *stopping).await;
                }))
            } else {
                watch.sending();
                None
            };
            Ok(response.map(|body| Tracked { body, watch, stop }))
        })
    }
}

/// Resolves when the server starts shutting down.
type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A response body that tells the watch when hyper is done with it (hyper drops a body once it
/// has taken its last frame, or gives up on it), and, for an [`Endless`] one, when it moves and
/// when it must end.
struct Tracked<B> {
    body: B,
    watch: Arc<Watch>,
    /// Only for an endless body.
    stop: Option<Stop>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Some(stop) = self.stop.as_mut()
            && stop.as_mut().poll(cx).is_ready()
        {
            // The end of the body ends the response cleanly; hyper's graceful shutdown then
            // closes the connection.
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if self.stop.is_some() && matches!(polled, Poll::Ready(Some(Ok(_)))) {
            self.watch.frame();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.watch.body_done();
    }
}
