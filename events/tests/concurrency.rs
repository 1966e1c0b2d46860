//! Many writers at once: optimistic concurrency under races (invariant 2), group commit with
//! gap-free positions (invariant 1), and back-pressure when the writer's queue is full.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use events::{AppendError, Appended, Expected, LogOptions};
use tokio::sync::Barrier;

use common::{assert_sound, open, options, request, request_expecting};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_sixteen_concurrent_appends_expecting_the_same_revision_exactly_one_wins() {
    const RACERS: usize = 16;
    const ROUNDS: u64 = 25;
    const PER_WIN: u64 = 2;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let stream = "device:contested";
    for round in 0..ROUNDS {
        let expected = match round {
            0 => Expected::NoStream,
            n => Expected::Exact(n * PER_WIN - 1),
        };
        // Line the racers up so that many of them land in the same group.
        let start = Arc::new(Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|_| {
                let log = log.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    log.append(request_expecting(stream, expected, PER_WIN as usize))
                        .await
                })
            })
            .collect();
        let mut wins = Vec::new();
        for racer in racers {
            match racer.await.expect("the racer ran") {
                Ok(appended) => wins.push(appended),
                Err(AppendError::Conflict { actual, .. }) => {
                    assert_eq!(
                        actual,
                        Some((round + 1) * PER_WIN - 1),
                        "a loser saw the winner"
                    )
                }
                Err(other) => panic!("unexpected answer: {other}"),
            }
        }
        assert_eq!(
            wins.len(),
            1,
            "round {round}: exactly one racer wins: {wins:?}"
        );
        assert_eq!(
            log.stream_revision(stream).expect("reads"),
            Some((round + 1) * PER_WIN - 1)
        );
    }
    assert_eq!(log.head(), ROUNDS * PER_WIN);
    assert_sound(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_different_streams_share_group_commits_and_get_distinct_positions() {
    const WRITERS: usize = 64;
    const APPENDS: u64 = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let start = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let stream = format!("device:{w}");
                let mut acks = Vec::new();
                for i in 0..APPENDS {
                    let expected = match i {
                        0 => Expected::NoStream,
                        n => Expected::Exact(n - 1),
                    };
                    let appended = log
                        .append(request_expecting(&stream, expected, 1))
                        .await
                        .expect("an uncontended append succeeds");
                    acks.push(appended);
                }
                acks
            })
        })
        .collect();
    let mut positions = BTreeSet::new();
    for writer in writers {
        for Appended { first, last, .. } in writer.await.expect("the writer ran") {
            assert_eq!(first, last, "one event per request");
            assert!(
                positions.insert(first),
                "position {first} was handed out twice"
            );
        }
    }
    let total = WRITERS as u64 * APPENDS;
    assert_eq!(
        positions,
        (1..=total).collect::<BTreeSet<_>>(),
        "positions are 1..={total}"
    );
    assert_eq!(log.head(), total);
    let stats = log.stats();
    assert_eq!(stats.events, total);
    assert!(
        stats.groups < total,
        "{total} concurrent appends took {} groups: none were shared",
        stats.groups
    );
    assert_eq!(stats.fdatasyncs, stats.groups, "one fdatasync per group");
    assert_sound(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_busy_and_every_request_it_accepted_is_committed() {
    const APPENDERS: usize = 64;
    const MAX_ROUNDS: usize = 50;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = events::Log::open(
        dir.path(),
        LogOptions {
            queue_capacity: 1,
            max_group: 1,
            ..options()
        },
    )
    .expect("the log opens");
    let (mut busy, mut accepted) = (0usize, Vec::new());
    for _ in 0..MAX_ROUNDS {
        let start = Arc::new(Barrier::new(APPENDERS));
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|a| {
                let log = log.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    log.append(request(&format!("device:{a}"), 1)).await
                })
            })
            .collect();
        for appender in appenders {
            match appender.await.expect("the appender ran") {
                Ok(appended) => accepted.push(appended.first),
                Err(AppendError::Busy) => busy += 1,
                Err(other) => panic!("only Busy may refuse these appends, not {other}"),
            }
        }
        if busy > 0 {
            break;
        }
    }
    assert!(busy > 0, "a queue of one never answered Busy");
    // Nothing is left waiting: every request was either refused at once or committed.
    accepted.sort_unstable();
    let head = log.head();
    assert_eq!(
        accepted,
        (1..=head).collect::<Vec<_>>(),
        "accepted requests are the log"
    );
    assert_eq!(log.stats().events, head, "refused requests wrote nothing");
    assert_sound(&log);
}

#[test]
fn appending_to_a_closed_log_is_refused_as_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.append_blocking(request("device:x", 1))
        .expect("appends");
    log.close();
    assert_eq!(
        log.append_blocking(request("device:x", 1)),
        Err(AppendError::Closed)
    );
    assert_eq!(log.head(), 1);
}
