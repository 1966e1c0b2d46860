//! The request body deadline: a body must arrive in full within the body read timeout of its
//! headers. A client that sends it slower gets a `408` problem, and its connection is closed
//! (the rest of the body is never read).
//!
//! The deadline is total, not between reads: a client trickling one byte at a time cannot
//! stretch it. Handlers read bodies through extractors that turn a failed read into their own
//! rejection; [`body_deadline`] replaces whatever they answered with the `408`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::problem::Problem;
use crate::state::AppState;

/// Gives the request's body its deadline; answers `408` if the handler's read ran past it.
pub async fn body_deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let timeout = state.settings().connections.body_read_timeout;
    let expired = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + timeout;
    let req = req.map(|body| {
        Body::new(Deadline {
            body,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            expired: expired.clone(),
        })
    });
    let response = next.run(req).await;
    if expired.load(Ordering::Acquire) {
        return too_slow(timeout);
    }
    response
}

fn too_slow(timeout: Duration) -> Response {
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body did not arrive within {} of its headers",
            crate::domain::duration::format(timeout)
        ),
    )
    // The unread rest of the body makes the connection unusable for another request.
    .with_header(header::CONNECTION, HeaderValue::from_static("close"))
    .into_response()
}

/// A request body that fails once its deadline has passed.
struct Deadline {
    body: Body,
    sleep: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct TooSlow;

impl http_body::Body for Deadline {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(Box::new(TooSlow))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
