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

use crate::envelope::Recorded;
use crate::error::Error;
use crate::log::Log;

/// Events read from the log per page while catching up.
const PAGE: usize = 512;

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
                let reader = log.clone();
                let from = last + 1;
                let page = tokio::task::spawn_blocking(move || reader.read_forward(from, PAGE))
                    .await
                    .map_err(|e| Error::Storage(format!("reader task: {e}")))??;
                for r in page {
                    if r.position() != last + 1 {
                        Err(Error::Corrupt { position: last + 1, reason: "gap in the log".into() })?;
                    }
                    last = r.position();
                    yield r;
                }
            }
            loop {
                match live.recv().await {
                    Ok(r) if r.position() <= last => continue,
                    Ok(r) if r.position() == last + 1 => {
                        last = r.position();
                        yield r;
                    }
                    // A skipped position or a lag: what we missed is in the log.
                    Ok(_) | Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}
