//! What callers hand the log, and what it answers.

use crate::envelope::Actor;
use crate::event::Event;

/// What the caller expects of a stream before its events are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist.
    Exists,
    /// The stream's last event must have this revision.
    Exact(u64),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Any => f.write_str("any"),
            Expected::NoStream => f.write_str("no stream"),
            Expected::Exists => f.write_str("an existing stream"),
            Expected::Exact(r) => write!(f, "revision {r}"),
        }
    }
}

/// One event to append, and the stream it goes to.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub stream: String,
    pub event: Event,
}

impl NewEvent {
    pub fn new(stream: impl Into<String>, event: impl Into<Event>) -> Self {
        NewEvent {
            stream: stream.into(),
            event: event.into(),
        }
    }
}

/// An idempotency key and the fingerprint of the request it was first used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: [u8; 32],
}

/// A request to append events atomically: all of them, or none.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub org_id: String,
    pub actor: Actor,
    pub request_id: String,
    /// Checked before anything is written; streams not named here are not checked.
    pub expectations: Vec<(String, Expected)>,
    pub events: Vec<NewEvent>,
    pub idempotency: Option<Idempotency>,
}

/// Where an acknowledged request's events landed: positions `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first: u64,
    pub last: u64,
    /// True when this answers a repeat of an earlier request (same idempotency key or event
    /// ids): nothing new was written.
    pub replayed: bool,
}
