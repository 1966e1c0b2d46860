//! Helpers shared by the event log's integration tests: building requests, opening logs and
//! checking that a log is sound (gap-free, indexes 1:1, chain intact).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::Path;

use events::event::DeviceTagged;
use events::{
    Actor, AppendRequest, ChainKey, Event, Expected, Idempotency, Log, LogOptions, NewEvent,
};

/// The organization every test request belongs to.
pub const ORG: &str = "org_test";

/// A small event whose payload says which stream and which sequence number it was made for,
/// so a misplaced event is visible.
pub fn tagged(stream: &str, n: u64) -> Event {
    Event::DeviceTagged(DeviceTagged {
        device_id: stream.to_owned(),
        tags: vec![format!("tag:{n}")],
    })
}

/// A request appending `count` events to `stream`, with no expectations.
pub fn request(stream: &str, count: usize) -> AppendRequest {
    request_to(&vec![stream; count])
}

/// A request appending one event to each stream named, in order, with no expectations.
pub fn request_to(streams: &[&str]) -> AppendRequest {
    AppendRequest {
        org_id: ORG.into(),
        actor: Actor::system("tests"),
        request_id: String::from("req"),
        expectations: Vec::new(),
        events: streams
            .iter()
            .enumerate()
            .map(|(i, s)| NewEvent::new(*s, tagged(s, i as u64)))
            .collect(),
        idempotency: None,
    }
}

/// `request(stream, count)` that expects `stream` to be in the state `expected`.
pub fn request_expecting(stream: &str, expected: Expected, count: usize) -> AppendRequest {
    let mut req = request(stream, count);
    req.expectations.push((stream.to_owned(), expected));
    req
}

/// Adds an idempotency key to a request.
pub fn with_idempotency(mut req: AppendRequest, key: &str, fingerprint: u8) -> AppendRequest {
    req.idempotency = Some(Idempotency {
        key: key.to_owned(),
        fingerprint: [fingerprint; 32],
    });
    req
}

/// Options for tests: a small page cache and a fixed chain key, so reopening in any order
/// (or opening the same dir from another process) verifies with the same key.
pub fn options() -> LogOptions {
    LogOptions {
        cache_capacity: 16 * 1024 * 1024,
        chain_key: Some(test_key()),
        ..LogOptions::default()
    }
}

pub fn test_key() -> ChainKey {
    ChainKey::from_bytes([42u8; 32])
}

pub fn open(dir: &Path) -> Log {
    Log::open(dir, options()).expect("the log opens")
}

/// Asserts what must hold of every log at rest: positions are exactly `1..=head` (invariant 1),
/// the indexes match the log 1:1, and the MAC chain verifies to the head (invariant 4).
pub fn assert_sound(log: &Log) {
    let head = log.head();
    let positions: Vec<u64> = log
        .read_raw(1, usize::MAX)
        .expect("the log reads")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        positions,
        (1..=head).collect::<Vec<_>>(),
        "positions are not exactly 1..={head}"
    );
    let problems = log.check_indexes().expect("the indexes can be checked");
    assert!(problems.is_empty(), "index problems: {problems:?}");
    let report = log.verify_chain().expect("the chain can be walked");
    assert_eq!(report.first_bad, None, "chain broken: {report:?}");
    assert_eq!(report.verified, head, "chain report: {report:?}");
}
