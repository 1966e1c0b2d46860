//! Given/when/then for decisions: given these events (folded through the real
//! `projections::Models::apply`, as the server folds the log), when this decision runs, then
//! these events, or this rejection. The scenarios of each aggregate live beside this harness.

use std::collections::HashMap;
use std::fmt::Debug;

use events::stream::Stream;
use events::{Actor, Envelope, Event, Recorded};
use projections::{Models, OrgView, Projection};

use super::{Decision, Rejection};

mod devices;
mod directory;
mod keys;
mod tokens;

/// The organization events are recorded in unless a scenario names another.
pub const ORG: &str = "org_1";
/// The decisions' clock.
pub const NOW: i64 = 1_700_000_000_000_000;
pub const HOUR: i64 = 3_600_000_000;

/// The read models a scenario's decision runs on, and what the log would know about them.
pub struct Scenario {
    models: Models,
    /// Last revision of each stream, so given events get the revisions the log would give.
    revisions: HashMap<String, u64>,
    position: u64,
}

/// Starts a scenario with `events` recorded in [`ORG`], in order.
pub fn given(events: impl IntoIterator<Item = (Stream, Event)>) -> Scenario {
    Scenario {
        models: Models::default(),
        revisions: HashMap::new(),
        position: 0,
    }
    .and_in(ORG, events)
}

impl Scenario {
    /// Records more events, in organization `org_id`.
    pub fn and_in(
        mut self,
        org_id: &str,
        events: impl IntoIterator<Item = (Stream, Event)>,
    ) -> Self {
        for (stream, event) in events {
            self.position += 1;
            let name = stream.to_string();
            let revision = self.revisions.get(&name).map_or(0, |r| r + 1);
            self.revisions.insert(name.clone(), revision);
            let recorded = Recorded {
                envelope: Envelope {
                    position: self.position,
                    org_seq: self.position,
                    revision,
                    event_id: [0; 16],
                    recorded_at: NOW - HOUR + self.position as i64,
                    stream: name,
                    event_type: event.event_type().to_owned(),
                    schema_version: event.schema_version(),
                    org_id: org_id.to_owned(),
                    actor: Actor::system("given"),
                    request_id: String::from("req_given"),
                    payload: event.encode_payload(),
                    mac: [0; 32],
                },
                event,
            };
            self.models.apply(&recorded);
        }
        self
    }

    /// Runs the decision on the scenario's read models as [`ORG`] sees them, as the executor
    /// runs it for a command of [`ORG`].
    pub fn when<E>(self, decide: impl FnOnce(OrgView<'_>) -> Result<Decision, E>) -> Then<E> {
        Then {
            result: decide(self.models.org(ORG)),
        }
    }
}

/// A decision's answer, to be checked.
#[must_use = "a scenario checks nothing until a `then_…` runs"]
pub struct Then<E> {
    result: Result<Decision, E>,
}

impl<E: Debug> Then<E> {
    /// The decision appends exactly `expected`, in order.
    #[track_caller]
    pub fn then(self, expected: Vec<Event>) -> Decision {
        let decision = match self.result {
            Ok(d) => d,
            Err(e) => panic!("expected events {expected:?}, the command was rejected: {e:?}"),
        };
        assert_eq!(decision.clone().into_events(), expected);
        decision
    }

    /// The decision is accepted; returns it for checks beyond its events.
    #[track_caller]
    pub fn then_ok(self) -> Decision {
        match self.result {
            Ok(d) => d,
            Err(e) => panic!("expected a decision, the command was rejected: {e:?}"),
        }
    }

    /// The decision appends nothing: the state already is what the command asks.
    #[track_caller]
    pub fn then_nothing(self) {
        self.then(Vec::new());
    }

    /// The decision refuses with exactly `expected`.
    #[track_caller]
    pub fn then_rejected(self, expected: E)
    where
        E: PartialEq,
    {
        match self.result {
            Ok(d) => panic!("expected rejection {expected:?}, got {d:?}"),
            Err(e) => assert_eq!(e, expected),
        }
    }
}

impl Then<Rejection> {
    /// The decision refuses with this variant of [`Rejection`], whatever its message:
    /// `.then_refused(Rejection::NotFound)`.
    #[track_caller]
    pub fn then_refused(self, variant: fn(String) -> Rejection) {
        let expected = variant(String::new());
        match self.result {
            Ok(d) => panic!("expected a rejection like {expected:?}, got {d:?}"),
            Err(e) => assert_eq!(
                std::mem::discriminant(&e),
                std::mem::discriminant(&expected),
                "rejected as {e:?}"
            ),
        }
    }
}
