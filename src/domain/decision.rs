//! What a decision returns: the streams it relies on, with the revision it saw each at, and the
//! events to append — all of them in one append, or none.

use events::stream::Stream;
use events::{Event, Expected};

/// The outcome of a pure decision, for the executor ([`crate::execute`]) to append.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Checked by the log before anything is written; a moved stream is a conflict, and the
    /// executor decides again on newer read models.
    pub expectations: Vec<(Stream, Expected)>,
    pub events: Vec<(Stream, Event)>,
}

impl Decision {
    /// Nothing to do: the state already is what the command asks (idempotent commands).
    pub fn none() -> Decision {
        Decision::default()
    }

    /// Expects `stream` to be as the decision saw it.
    pub fn expect(mut self, stream: Stream, expected: Expected) -> Decision {
        self.expectations.push((stream, expected));
        self
    }

    pub fn event(mut self, stream: Stream, event: impl Into<Event>) -> Decision {
        self.events.push((stream, event.into()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events alone, in order (what given/when/then compares).
    pub fn into_events(self) -> Vec<Event> {
        self.events.into_iter().map(|(_, e)| e).collect()
    }
}
