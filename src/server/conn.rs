//! Serving one connection: HTTP/1.1 through hyper, with the connection's [`Watch`] closing it
//! past its deadline and a stop signal draining it gracefully.
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

/// The router, seen from one connection: tells the watch when a request starts and when its
/// response is done, and gives handlers the peer's address.
#[derive(Clone)]
struct Service {
    app: Router,
    peer: SocketAddr,
    watch: Arc<Watch>,
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
        Box::pin(async move {
            let response = app.oneshot(req).await?;
            watch.sending();
            Ok(response.map(|body| Tracked { body, watch }))
        })
    }
}

/// A response body that tells the watch when hyper is done with it (hyper drops a body once it
/// has taken its last frame, or gives up on it).
struct Tracked<B> {
    body: B,
    watch: Arc<Watch>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
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
