//! The envelope every persisted event travels in.
//!
//! Persisted with postcard (see [`crate::codec`]): fields are never reordered or removed, and no
//! serde attribute that needs a self-describing format is used.

use serde::{Deserialize, Serialize};

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
    /// A person, signed in through the organization's OpenID provider (their user id).
    User,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Token => "token",
            ActorKind::Device => "device",
            ActorKind::System => "system",
            ActorKind::Console => "console",
            ActorKind::Scim => "scim",
            ActorKind::User => "user",
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
///
/// The fields the writer assigns come first and the fields the caller knows follow, so a caller
/// can encode its part of the record before queueing it and the writer only prepends a few
/// integers and appends the MAC (see [`crate::codec`]). Never reorder or remove fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Global position: 1, 2, 3, … without gaps. Internal: it never leaves the server, because
    /// it would let a tenant watch every other tenant's write volume.
    pub position: u64,
    /// The organization's own sequence: 1, 2, 3, … without gaps within the org. This is the
    /// `id` the audit log, the SSE stream and webhooks show.
    pub org_seq: u64,
    /// The event's index within its stream, starting at 0.
    pub revision: u64,
    /// A ULID, unique across the log.
    pub event_id: [u8; 16],
    /// Microseconds since the Unix epoch, UTC; never decreases along the log.
    pub recorded_at: i64,
    /// The stream (aggregate) this event belongs to, e.g. `org:<id>`, `token:<id>`.
    pub stream: String,
    /// Stable name, e.g. `token.created`.
    pub event_type: String,
    pub schema_version: u16,
    pub org_id: String,
    pub actor: Actor,
    pub request_id: String,
    /// The event's payload, encoded by [`crate::codec::encode_payload`].
    pub payload: Vec<u8>,
    /// HMAC-SHA256(key, previous mac ‖ every field above): see [`crate::chain`].
    pub mac: [u8; 32],
}

/// The first record format's envelope, frozen: records of format 1 still decode through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EnvelopeV1 {
    pub position: u64,
    pub stream: String,
    pub revision: u64,
    pub event_id: [u8; 16],
    pub event_type: String,
    pub schema_version: u16,
    pub recorded_at: i64,
    pub org_id: String,
    pub actor: Actor,
    pub request_id: String,
    pub payload: Vec<u8>,
    pub mac: [u8; 32],
}

impl From<EnvelopeV1> for Envelope {
    /// Format 1 had no per-org sequence; 0 says "unknown" (no format-2 record has 0).
    fn from(v: EnvelopeV1) -> Envelope {
        Envelope {
            position: v.position,
            org_seq: 0,
            revision: v.revision,
            event_id: v.event_id,
            recorded_at: v.recorded_at,
            stream: v.stream,
            event_type: v.event_type,
            schema_version: v.schema_version,
            org_id: v.org_id,
            actor: v.actor,
            request_id: v.request_id,
            payload: v.payload,
            mac: v.mac,
        }
    }
}

/// A borrowed view of a record's header: what indexing and filtering need, decoded without
/// allocating (postcard decodes strings and byte slices in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct EnvelopeRef<'a> {
    pub position: u64,
    pub org_seq: u64,
    pub revision: u64,
    pub event_id: [u8; 16],
    pub recorded_at: i64,
    #[serde(borrow)]
    pub stream: &'a str,
    #[serde(borrow)]
    pub event_type: &'a str,
    pub schema_version: u16,
    #[serde(borrow)]
    pub org_id: &'a str,
    #[serde(borrow)]
    pub actor: ActorRef<'a>,
    #[serde(borrow)]
    pub request_id: &'a str,
    #[serde(borrow)]
    pub payload: &'a [u8],
    pub mac: [u8; 32],
}

/// [`Actor`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ActorRef<'a> {
    pub kind: ActorKind,
    #[serde(borrow)]
    pub id: &'a str,
    #[serde(borrow)]
    pub description: &'a str,
}

impl EnvelopeRef<'_> {
    pub fn to_owned(&self) -> Envelope {
        Envelope {
            position: self.position,
            org_seq: self.org_seq,
            revision: self.revision,
            event_id: self.event_id,
            recorded_at: self.recorded_at,
            stream: self.stream.to_owned(),
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            org_id: self.org_id.to_owned(),
            actor: Actor {
                kind: self.actor.kind,
                id: self.actor.id.to_owned(),
                description: self.actor.description.to_owned(),
            },
            request_id: self.request_id.to_owned(),
            payload: self.payload.to_vec(),
            mac: self.mac,
        }
    }
}

impl Envelope {
    pub fn event_id_string(&self) -> String {
        ulid::Ulid::from_bytes(self.event_id).to_string()
    }

    pub fn time_rfc3339(&self) -> String {
        crate::format_time(self.recorded_at)
    }
}
