//! Catch-up subscriptions: history from the log, then live, without gap or duplicate.
//!
//! The algorithm (KurrentDB's, made simple by gap-free positions): subscribe to the live
//! broadcast *first*, then read history from the log up to the committed head, then take live
//! events, dropping any at or below the last delivered position. A live event that skips a
//! position, or a `Lagged` from the broadcast (a slow reader), sends the subscriber back to the
//! log. Memory per subscriber is one page; the broadcast ring is shared and bounded, and the
//! writer never waits for anyone.

use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::error::Error;
use crate::log::Log;
use crate::recorded::Recorded;

/// Events read from the log per page while catching up.
const PAGE: usize = 512;

/// Pages read ahead of their consumer.
const READ_AHEAD: usize = 2;

/// Reads positions `from..=to` in pages of `page` events on a thread of its own, at most
/// [`READ_AHEAD`] pages ahead of the consumer; it stops when the receiver is dropped. For async
/// consumers; [`read_ahead_blocking`] is the same for plain threads.
pub fn read_ahead(
    log: Log,
    from: u64,
    to: u64,
    page: usize,
) -> tokio::sync::mpsc::Receiver<Result<Vec<Arc<Recorded>>, Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    spawn_reader(log, from, to, page, move |p| tx.blocking_send(p).is_ok());
    rx
}

/// [`read_ahead`] for a consumer that may block (it must not be a runtime's thread).
pub fn read_ahead_blocking(
    log: Log,
    from: u64,
    to: u64,
    page: usize,
) -> std::sync::mpsc::Receiver<Result<Vec<Arc<Recorded>>, Error>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
    spawn_reader(log, from, to, page, move |p| tx.send(p).is_ok());
    rx
}

type Page = Result<Vec<Arc<Recorded>>, Error>;

/// The reader thread; `send` answers false once the consumer is gone.
fn spawn_reader(
    log: Log,
    from: u64,
    to: u64,
    page: usize,
    send: impl Fn(Page) -> bool + Send + Sync + 'static,
) {
    let send = Arc::new(send);
    let spawned = std::thread::Builder::new()
        .name("qz-read-ahead".into())
        .spawn({
            let send = send.clone();
            move || {
                let mut next = from;
                while next <= to {
                    let want = page.min((to - next + 1) as usize);
                    let read = log.read_forward(next, want);
                    let last = match &read {
                        Ok(p) => p.last().map(|r| r.position()),
                        Err(_) => None,
                    };
                    if !send(read) {
                        return;
                    }
                    match last {
                        Some(l) => next = l + 1,
                        None => return,
                    }
                }
            }
        });
    if let Err(e) = spawned {
        send(Err(Error::Io(e)));
    }
}

/// Every event with a position greater than `after`, in order, forever (until the log closes).
pub fn subscribe(log: Log, after: u64) -> impl Stream<Item = Result<Arc<Recorded>, Error>> {
    async_stream::try_stream! {
        let mut last = after;
        loop {
            let mut live = log.subscribe_live();
            loop {
                let head = log.head();
                if last >= head {
                    break;
                }
                // Pages are read and decoded on another thread while this one's consumer
                // applies the previous page: catching up uses both cores.
                let mut pages = read_ahead(log.clone(), last + 1, head, PAGE);
                while let Some(page) = pages.recv().await {
                    for r in page? {
                        if r.position() != last + 1 {
                            Err(Error::Corrupt { position: last + 1, reason: "gap in the log".into() })?;
                        }
                        last = r.position();
                        yield r;
                    }
                }
            }
            'live: loop {
                match live.recv().await {
                    Ok(group) => {
                        for r in group.iter() {
                            if r.position() <= last {
                                continue;
                            }
                            if r.position() != last + 1 {
                                // A skipped position: what we missed is in the log.
                                break 'live;
                            }
                            last = r.position();
                            yield r.clone();
                        }
                    }
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}
