//! Catch-up subscriptions (invariant 6 at library level): exactly the positions after the start
//! point, in order, with no gap or duplicate: from any start, under a concurrent writer, with a
//! stalled reader and a one-event broadcast buffer; and stalled readers never hold up the writer.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use events::{Log, LogOptions, Recorded, subscribe};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::TryRecvError;

use common::{assert_sound, open, options, request};

type Subscription = Pin<Box<dyn Stream<Item = Result<Arc<Recorded>, events::Error>> + Send>>;

fn subscription(log: &Log, after: u64) -> Subscription {
    Box::pin(subscribe(log.clone(), after))
}

/// Takes the next event and asserts it is the one at `position`, identical to the log's record.
async fn expect_next(sub: &mut Subscription, log: &Log, position: u64) {
    let got = sub
        .next()
        .await
        .unwrap_or_else(|| panic!("the subscription ended before {position}"))
        .unwrap_or_else(|e| panic!("the subscription failed before {position}: {e}"));
    assert_eq!(got.position(), position, "delivered out of order");
    let stored = log
        .get(position)
        .expect("reads")
        .expect("the position is committed");
    assert_eq!(
        got.envelope, stored.envelope,
        "delivered another event at {position}"
    );
}

/// Reads positions `from..=to` from the subscription, in order.
async fn expect_range(sub: &mut Subscription, log: &Log, from: u64, to: u64) {
    for position in from..=to {
        expect_next(sub, log, position).await;
    }
}

/// Appends `events` events in requests of one to five, one stream per request size.
async fn append_events(log: &Log, events: u64) {
    let mut left = events;
    let mut size = 1;
    while left > 0 {
        let n = size.min(left);
        log.append(request(&format!("device:{size}"), n as usize))
            .await
            .expect("appends");
        left -= n;
        size = size % 5 + 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_delivers_exactly_the_positions_after_its_start_point() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    // More than two of the subscription's history pages.
    append_events(&log, 1100).await;
    for after in [0, 537, 1100] {
        let head = log.head();
        let mut sub = subscription(&log, after);
        expect_range(&mut sub, &log, after + 1, head).await;
        // Nothing more until something is appended, and then exactly that.
        log.append(request("device:next", 1))
            .await
            .expect("appends");
        expect_next(&mut sub, &log, head + 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_stay_exact_while_writers_keep_appending() {
    const HISTORY: u64 = 50;
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 150;
    const SUBSCRIBERS: u64 = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    // A small buffer makes the readers lag and go back to the log over and over while the
    // writers run: every switch between the log and live is a chance to lose or repeat one.
    let log = Log::open(
        dir.path(),
        LogOptions {
            broadcast_capacity: 4,
            ..options()
        },
    )
    .expect("the log opens");
    append_events(&log, HISTORY).await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    let req = request(&format!("device:w{w}"), (i % 3 + 1) as usize);
                    log.append(req).await.expect("appends");
                }
            })
        })
        .collect();
    // Each writer appends 1, 2, 3, 1, 2, 3, … events.
    let written: u64 = (0..PER_WRITER).map(|i| i % 3 + 1).sum::<u64>() * WRITERS;
    let end = HISTORY + written;
    let readers: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                let after = i * HISTORY / SUBSCRIBERS;
                let mut sub = subscription(&log, after);
                expect_range(&mut sub, &log, after + 1, end).await;
                sub
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("the writer finished");
    }
    assert_eq!(log.head(), end);
    let mut subs = Vec::new();
    for reader in readers {
        subs.push(reader.await.expect("the reader finished"));
    }
    log.append(request("device:last", 1))
        .await
        .expect("appends");
    for sub in &mut subs {
        expect_next(sub, &log, end + 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_with_a_one_event_buffer_falls_back_to_the_log_and_stays_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Log::open(
        dir.path(),
        LogOptions {
            broadcast_capacity: 1,
            ..options()
        },
    )
    .expect("the log opens");
    append_events(&log, 10).await;
    let mut sub = subscription(&log, 0);
    expect_range(&mut sub, &log, 1, 10).await;
    // Live, one event at a time.
    for position in 11..=15 {
        log.append(request("device:live", 1))
            .await
            .expect("appends");
        expect_next(&mut sub, &log, position).await;
    }
    // A plain live receiver beside it shows the buffer really overflows while the reader stalls.
    let mut witness = log.subscribe_live();
    // The reader stalls while hundreds of events are appended.
    let writer = log.clone();
    tokio::spawn(async move { append_events(&writer, 400).await })
        .await
        .expect("the writer finished");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        matches!(witness.try_recv(), Err(TryRecvError::Lagged(_))),
        "the broadcast buffer did not overflow"
    );
    expect_range(&mut sub, &log, 16, 415).await;
    log.append(request("device:after", 2))
        .await
        .expect("appends");
    expect_range(&mut sub, &log, 416, 417).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_stalled_subscribers_neither_hold_up_the_writer_nor_buffer_without_bound() {
    const SUBSCRIBERS: usize = 50;
    const CAPACITY: usize = 16;
    const APPENDED: u64 = 500;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Log::open(
        dir.path(),
        LogOptions {
            broadcast_capacity: CAPACITY,
            ..options()
        },
    )
    .expect("the log opens");
    append_events(&log, 5).await;
    let mut subs = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut sub = subscription(&log, 0);
        expect_range(&mut sub, &log, 1, 5).await;
        subs.push(sub);
    }
    let mut witness = log.subscribe_live();

    // None of the subscribers is polled while the writer appends. A writer that waited for
    // them would never finish: the watchdog turns that hang into a failure.
    let writer = log.clone();
    let appending = tokio::spawn(async move { append_events(&writer, APPENDED).await });
    tokio::time::timeout(Duration::from_secs(120), appending)
        .await
        .expect("the writer was held up by stalled subscribers")
        .expect("the writer finished");
    assert_eq!(log.head(), 5 + APPENDED);

    // What a stalled receiver can still get without going to the log is bounded by the ring.
    let mut buffered = 0;
    loop {
        match witness.try_recv() {
            Ok(_) => buffered += 1,
            Err(TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    assert!(
        buffered <= CAPACITY.next_power_of_two(),
        "{buffered} events buffered for one stalled receiver"
    );

    let head = log.head();
    let readers = subs.into_iter().map(|mut sub| {
        let log = log.clone();
        async move { expect_range(&mut sub, &log, 6, head).await }
    });
    futures::future::join_all(readers).await;
    assert_sound(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_subscription_ends_when_the_log_closes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    append_events(&log, 2).await;
    let mut sub = subscription(&log, 0);
    expect_range(&mut sub, &log, 1, 2).await;
    // Caught up: the subscriber now waits for live events.
    let waiting = tokio::spawn(async move { sub.next().await.map(|r| r.map(|r| r.position())) });
    log.close();
    // A subscription that outlived the log would hold its SSE client (and a graceful
    // shutdown) forever: the watchdog turns that hang into a failure.
    let end = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the subscription still waits after the log closed")
        .expect("the subscriber ran");
    assert!(end.is_none(), "a closed log delivered {end:?}");
    let mut late = subscription(&log, 2);
    assert!(
        late.next().await.is_none(),
        "a subscription to a closed log ends at once"
    );
}
