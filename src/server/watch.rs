//! The deadline of one connection, which moves with what the connection is waiting for.
//!
//! A connection is always in one phase, and each phase but one has a deadline:
//!
//! | phase | from | deadline |
//! |---|---|---|
//! | waiting | accept, or the end of the previous response | header read (first request) or idle timeout |
//! | head | the first byte of a request | header read timeout |
//! | busy | the request reaching the router | none: the body deadline answers `408`, handlers bound their own waits |
//! | sending | the response being ready, until it is flushed | response write timeout |
//! | streaming | an endless response (SSE) being ready, until it ends | response write timeout from its last frame |
//!
//! [`Watched`] reports bytes read, [`Watch::busy`] and [`Watch::sending`] come from the
//! connection's service, and [`Watch::expired`] resolves once the current deadline has passed;
//! the connection task then drops the connection. The watch runs beside hyper rather than
//! inside its reads, so an idle connection is closed even while hyper is not polling it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::state::ConnectionLimits;

/// One connection's phase and deadline.
#[derive(Debug)]
pub struct Watch {
    limits: ConnectionLimits,
    state: Mutex<State>,
    /// Wakes [`Watch::expired`] when the phase, and so the deadline, changes.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Bytes were written since the last completed flush: a response is not delivered until
    /// they are in the socket.
    unflushed: bool,
    /// The response being sent is endless (an event stream): its deadline runs from the last
    /// frame hyper took, since it has no last byte. hyper takes a frame only once its write
    /// buffer has room, so a client that stops reading still runs into the deadline.
    streaming: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No byte of the next request yet; `first` until the connection has served one.
    Waiting {
        since: Instant,
        first: bool,
    },
    Head {
        since: Instant,
    },
    Busy,
    /// `body_done` once hyper has taken the whole body; the phase ends at the next flush.
    Sending {
        since: Instant,
        body_done: bool,
    },
}

impl Watch {
    /// A watch for a connection that starts now.
    pub fn new(limits: ConnectionLimits) -> Watch {
        Watch {
            limits,
            state: Mutex::new(State {
                phase: Phase::Waiting {
                    since: Instant::now(),
                    first: true,
                },
                unflushed: false,
                streaming: false,
            }),
            changed: Notify::new(),
        }
    }

    /// Bytes arrived: if the connection was waiting, a request has begun.
    pub fn bytes_read(&self) {
        let mut state = self.lock();
        if matches!(state.phase, Phase::Waiting { .. }) {
            state.phase = Phase::Head {
                since: Instant::now(),
            };
            drop(state);
            self.changed.notify_one();
        }
    }

    /// A request's headers reached the router.
    pub fn busy(&self) {
        self.set(Phase::Busy);
    }

    /// The router answered; its response is being written.
    pub fn sending(&self) {
        self.lock().streaming = false;
        self.set(Phase::Sending {
            since: Instant::now(),
            body_done: false,
        });
    }

    /// The router answered with an endless response (an event stream).
    pub fn streaming(&self) {
        self.lock().streaming = true;
        self.set(Phase::Sending {
            since: Instant::now(),
            body_done: false,
        });
    }

    /// hyper took a frame of the response: an endless response made progress. A later deadline
    /// needs no wake-up: [`Watch::expired`] looks again when the earlier one passes.
    pub fn frame(&self) {
        let mut state = self.lock();
        if state.streaming
            && let Phase::Sending {
                body_done: false, ..
            } = state.phase
        {
            state.phase = Phase::Sending {
                since: Instant::now(),
                body_done: false,
            };
        }
    }

    /// hyper has taken the response's last frame (or dropped the body).
    pub fn body_done(&self) {
        let mut state = self.lock();
        if let Phase::Sending { since, .. } = state.phase {
            state.phase = if state.unflushed {
                Phase::Sending {
                    since,
                    body_done: true,
                }
            } else {
                idle()
            };
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Bytes were handed to the stream's buffers.
    pub fn wrote(&self) {
        self.lock().unflushed = true;
    }

    /// Every byte written so far is in the socket: a finished response is delivered.
    pub fn flushed(&self) {
        let mut state = self.lock();
        state.unflushed = false;
        if let Phase::Sending {
            body_done: true, ..
        } = state.phase
        {
            state.phase = idle();
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Resolves once the current phase's deadline has passed.
    pub async fn expired(&self) {
        loop {
            let changed = self.changed.notified();
            match self.deadline() {
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let l = &self.limits;
        match self.lock().phase {
            Phase::Waiting { since, first: true } => Some(since + l.header_read_timeout),
            Phase::Waiting {
                since,
                first: false,
            } => Some(since + l.idle_timeout),
            Phase::Head { since } => Some(since + l.header_read_timeout),
            Phase::Busy => None,
            Phase::Sending { since, .. } => Some(since + l.response_write_timeout),
        }
    }

    fn set(&self, to: Phase) {
        self.lock().phase = to;
        self.changed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain values: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Waiting for the next request on a connection that has served one.
fn idle() -> Phase {
    Phase::Waiting {
        since: Instant::now(),
        first: false,
    }
}

/// A connection's byte stream that tells its [`Watch`] when bytes arrive.
#[derive(Debug)]
pub struct Watched<IO> {
    io: IO,
    watch: Arc<Watch>,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, watch: Arc<Watch>) -> Self {
        Watched { io, watch }
    }
}

impl<IO> Watched<IO> {
    fn note_write(&self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.watch.wrote();
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.bytes_read();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        if matches!(polled, Poll::Ready(Ok(()))) {
            self.watch.flushed();
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            response_write_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
        }
    }

    /// Runs `step` and asserts the deadline is then `secs` after the moment it ran.
    fn after(watch: &Watch, secs: u64, step: impl FnOnce(&Watch)) -> Instant {
        let before = Instant::now();
        step(watch);
        let later = Instant::now();
        let deadline = watch.deadline().expect("a deadline");
        let span = Duration::from_secs(secs);
        assert!(
            before + span <= deadline && deadline <= later + span,
            "deadline {secs}s after the step"
        );
        deadline
    }

    #[test]
    fn each_phase_has_its_own_deadline() {
        // A new connection must send its first request within the header timeout.
        let before = Instant::now();
        let watch = Watch::new(limits());
        let first = watch.deadline().expect("a deadline");
        assert!(before + Duration::from_secs(10) <= first);
        assert!(first <= Instant::now() + Duration::from_secs(10));
        let head = after(&watch, 10, Watch::bytes_read);
        // Later bytes of the same head do not extend it.
        watch.bytes_read();
        assert_eq!(watch.deadline(), Some(head));
        watch.busy();
        assert_eq!(watch.deadline(), None, "a handler's time is its own");
        let sending = after(&watch, 20, Watch::sending);
        // A response still in the stream's buffers is not delivered yet.
        watch.wrote();
        watch.body_done();
        assert_eq!(watch.deadline(), Some(sending));
        after(&watch, 60, Watch::flushed);
        // The next request's first byte starts its header deadline.
        after(&watch, 10, Watch::bytes_read);
    }

    #[test]
    fn a_response_already_flushed_ends_with_its_body() {
        let watch = Watch::new(limits());
        watch.busy();
        watch.sending();
        watch.wrote();
        watch.flushed();
        after(&watch, 60, Watch::body_done);
    }

    #[test]
    fn an_endless_response_counts_from_its_last_frame_and_a_finite_one_from_its_start() {
        let watch = Watch::new(limits());
        watch.busy();
        let started = after(&watch, 20, Watch::sending);
        std::thread::sleep(Duration::from_millis(5));
        watch.frame();
        assert_eq!(
            watch.deadline(),
            Some(started),
            "a finite response has one deadline"
        );
        watch.busy();
        let first = after(&watch, 20, Watch::streaming);
        std::thread::sleep(Duration::from_millis(5));
        let moved = after(&watch, 20, Watch::frame);
        assert!(moved > first);
        // The next ordinary response on the connection is finite again.
        watch.body_done();
        watch.busy();
        let next = after(&watch, 20, Watch::sending);
        std::thread::sleep(Duration::from_millis(5));
        watch.frame();
        assert_eq!(watch.deadline(), Some(next));
    }

    #[tokio::test]
    async fn expired_resolves_once_the_deadline_in_force_has_passed() {
        let mut short = limits();
        short.header_read_timeout = Duration::from_millis(50);
        short.idle_timeout = Duration::from_millis(50);
        let watch = Arc::new(Watch::new(short));
        watch.busy();
        let waiter = tokio::spawn({
            let watch = watch.clone();
            async move { watch.expired().await }
        });
        // Busy has no deadline; the move to waiting wakes the waiter, which then expires.
        watch.sending();
        watch.body_done();
        tokio::time::timeout(Duration::from_secs(60), waiter)
            .await
            .expect("expired resolves")
            .unwrap();
        assert!(watch.deadline().is_some_and(|d| d <= Instant::now()));
    }
}
