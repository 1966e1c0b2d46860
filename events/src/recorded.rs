//! What readers and subscribers receive: an envelope with its decoded event. Kept apart from
//! [`crate::envelope`] so the persisted types do not depend on the event catalogue (which
//! depends on the codec, which depends on the envelope).

use std::sync::Arc;

use crate::envelope::Envelope;
use crate::event::Event;

/// An envelope together with its decoded event; what readers and subscribers receive.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub envelope: Envelope,
    pub event: Event,
}

impl Recorded {
    /// The global position (internal; see [`Envelope::position`]).
    pub fn position(&self) -> u64 {
        self.envelope.position
    }

    /// The organization's own sequence number: the event's public `id`.
    pub fn org_seq(&self) -> u64 {
        self.envelope.org_seq
    }
}

/// Shared, immutable recorded events: one decode feeds every subscriber.
pub type SharedRecorded = Arc<Recorded>;
