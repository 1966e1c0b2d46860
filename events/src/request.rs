//! What callers hand the log, and what it answers.

use crate::codec;
use crate::committer::{Prepared, PreparedEvent};
use crate::envelope::{Actor, Envelope};
use crate::error::AppendError;
use crate::event::Event;

const MAX_STREAM_LEN: usize = 512;
/// Largest record accepted. Well above a 1 MiB policy document; records sled puts in blob
/// files are fsynced like the rest ([`crate::sled_store`]).
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

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

/// Encodes a request in the caller's task, so the writer thread only assigns and links.
pub(crate) fn prepare(req: AppendRequest) -> Result<Prepared, AppendError> {
    if req.events.is_empty() {
        return Err(AppendError::Invalid("no events".into()));
    }
    let mut events = Vec::with_capacity(req.events.len());
    for new in req.events {
        let stream = new.stream;
        if stream.is_empty() || stream.len() > MAX_STREAM_LEN || stream.contains('\0') {
            return Err(AppendError::Invalid(format!("bad stream id {stream:?}")));
        }
        let event = new.event;
        let payload = event.encode_payload();
        let tail = codec::encode_tail(
            &stream,
            event.event_type(),
            event.schema_version(),
            &req.org_id,
            &req.actor,
            &req.request_id,
            &payload,
        );
        if tail.len() + 64 > MAX_RECORD_BYTES {
            return Err(AppendError::Invalid(format!(
                "an event of {} bytes is over the log's limit of {MAX_RECORD_BYTES}",
                tail.len()
            )));
        }
        let envelope = Envelope {
            position: 0,
            org_seq: 0,
            revision: 0,
            event_id: [0; 16],
            recorded_at: 0,
            stream,
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            org_id: req.org_id.clone(),
            actor: req.actor.clone(),
            request_id: req.request_id.clone(),
            payload,
            mac: [0; 32],
        };
        events.push(PreparedEvent {
            tail,
            envelope,
            event,
        });
    }
    Ok(Prepared {
        org_id: req.org_id,
        expectations: req.expectations,
        events,
        idempotency: req.idempotency,
    })
}
