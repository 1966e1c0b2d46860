//! One builder of recorded events for the read models' unit tests: fixed envelope fields, the
//! caller's position, organization, stream, revision and time.

use events::{Actor, Envelope, Event, Recorded};

pub(crate) fn recorded(
    position: u64,
    org: &str,
    stream: &str,
    revision: u64,
    recorded_at: i64,
    event: impl Into<Event>,
) -> Recorded {
    let event = event.into();
    Recorded {
        envelope: Envelope {
            position,
            org_seq: position,
            stream: stream.to_owned(),
            revision,
            event_id: [position as u8; 16],
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            recorded_at,
            org_id: org.into(),
            actor: Actor::system("test"),
            request_id: "req".into(),
            payload: event.encode_payload(),
            mac: [0; 32],
        },
        event,
    }
}
