//! The envelope every persisted event travels in.
//!
//! Persisted with postcard (see [`crate::codec`]): fields are never reordered or removed, and no
//! serde attribute that needs a self-describing format is used.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// Who caused an event. Recorded on every envelope so the audit log can answer "who did this".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    /// Token id, device id or a fixed name for the system.
    pub id: String,
    /// The token's description, the device's hostname, or what the system was doing.
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorKind {
    /// An API token (the admin dashboard, the CLI or an automation).
    Token,
    /// A device, authenticated by its node credential.
    Device,
    /// The control plane itself (bootstrap, expiry sweeps).
    System,
    /// An operator at the server's console (offline `init`, `org set-limits`).
    Console,
    /// An identity provider through SCIM.
    Scim,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Token => "token",
            ActorKind::Device => "device",
            ActorKind::System => "system",
            ActorKind::Console => "console",
            ActorKind::Scim => "scim",
        }
    }
}

impl Actor {
    pub fn system(description: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::System,
            id: "system".into(),
            description: description.into(),
        }
    }

    pub fn console(description: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::Console,
            id: "console".into(),
            description: description.into(),
        }
    }
}

/// One persisted event: where it sits in the log and its stream, what it is, who caused it, and
/// its link in the tamper-evident chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Global position: 1, 2, 3, … without gaps. The SSE `id:` and the audit log's `id`.
    pub position: u64,
    /// The stream (aggregate) this event belongs to, e.g. `org:<id>`, `token:<id>`.
    pub stream: String,
    /// The event's index within its stream, starting at 0.
    pub revision: u64,
    /// A ULID, unique across the log.
    pub event_id: [u8; 16],
    /// Stable name, e.g. `token.created`.
    pub event_type: String,
    pub schema_version: u16,
    /// Microseconds since the Unix epoch, UTC; never decreases along the log.
    pub recorded_at: i64,
    pub org_id: String,
    pub actor: Actor,
    pub request_id: String,
    /// The event's payload, encoded by [`crate::codec::encode_payload`].
    pub payload: Vec<u8>,
    /// HMAC-SHA256(key, previous mac ‖ every field above): see [`crate::chain`].
    pub mac: [u8; 32],
}

impl Envelope {
    pub fn event_id_string(&self) -> String {
        ulid::Ulid::from_bytes(self.event_id).to_string()
    }

    pub fn time_rfc3339(&self) -> String {
        crate::format_time(self.recorded_at)
    }
}

/// An envelope together with its decoded event; what readers and subscribers receive.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub envelope: Envelope,
    pub event: Event,
}

impl Recorded {
    pub fn position(&self) -> u64 {
        self.envelope.position
    }
}

/// Shared, immutable recorded events: one decode feeds every subscriber.
pub type SharedRecorded = Arc<Recorded>;
