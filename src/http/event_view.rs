//! The one JSON shape an event has outside the server (DESIGN §3.5): device history today, the
//! audit log, the SSE stream and webhook payloads next. Nothing else serializes an event.

use events::Recorded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An event, as the audit log, the SSE stream and webhooks show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// The organization's own sequence number: increasing and gap-free within the organization
    /// (the SSE `id:` and the audit log's cursor). Never a position shared with other tenants.
    pub id: u64,
    /// A ULID, unique across the server.
    pub event_id: String,
    /// E.g. `device.registered`, `key.revoked`.
    #[serde(rename = "type")]
    pub r#type: String,
    /// When it was recorded: RFC 3339, UTC, never decreasing.
    pub time: String,
    pub org_id: String,
    pub actor: ActorView,
    pub subject: SubjectView,
    /// The `X-Request-ID` of the request that caused it.
    pub request_id: String,
    /// The event's own fields. Hashes of secrets are never included.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The event's link in its organization's audit chain: present in the audit log when asked
    /// for with `chain=true`, and in exports (see the README's "Verifying an export").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<crate::audit::chain::ChainLink>,
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActorView {
    /// `token`, `device`, `system`, `console` or `scim`.
    pub kind: String,
    /// The token's id, the device's id, or `system` / `console`.
    pub id: String,
    /// What to show: the token's description, the device's hostname, what the system was doing.
    pub display: String,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubjectView {
    /// `org`, `token`, `key` or `device`.
    pub kind: String,
    pub id: String,
}

impl EventView {
    pub fn of(r: &Recorded) -> EventView {
        let env = &r.envelope;
        let subject = r.event.subject();
        let (kind, id) = subject.split_once(':').unwrap_or(("", subject.as_str()));
        EventView {
            id: env.org_seq,
            event_id: env.event_id_string(),
            r#type: env.event_type.clone(),
            time: env.time_rfc3339(),
            org_id: env.org_id.clone(),
            actor: ActorView {
                kind: env.actor.kind.as_str().to_owned(),
                id: env.actor.id.clone(),
                display: env.actor.description.clone(),
            },
            subject: SubjectView {
                kind: kind.to_owned(),
                id: id.to_owned(),
            },
            request_id: env.request_id.clone(),
            data: r.event.data_json(),
            chain: None,
        }
    }
}

/// One example per event type, for the OpenAPI document: the event catalogue's samples in
/// envelopes of a made-up organization.
pub fn examples() -> Vec<serde_json::Value> {
    events::Event::TYPES
        .iter()
        .enumerate()
        .filter_map(|(i, (event_type, version))| {
            let (event, actor) = events::samples::sample(event_type)?;
            let envelope = events::Envelope {
                position: 0,
                org_seq: 1000 + i as u64,
                revision: 0,
                event_id: ulid::Ulid::from_parts(1_764_000_000_000 + i as u64, 0).to_bytes(),
                recorded_at: 1_764_000_000_000_000 + i as i64 * 1_000_000,
                stream: event.subject(),
                event_type: (*event_type).to_owned(),
                schema_version: *version,
                org_id: "org_01".into(),
                actor: events::Actor {
                    kind: actor,
                    id: format!("{}_01", actor.as_str()),
                    description: "example".into(),
                },
                request_id: "01J8Z3Q4ZP6ZK7S2M5V4W3X2Y1".into(),
                payload: Vec::new(),
                mac: [0; 32],
            };
            serde_json::to_value(EventView::of(&Recorded { envelope, event })).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_an_example_and_none_shows_a_secret_hash() {
        let examples = examples();
        assert_eq!(examples.len(), events::Event::TYPES.len());
        for (example, (event_type, _)) in examples.iter().zip(events::Event::TYPES) {
            assert_eq!(example["type"], *event_type);
            let data = example["data"].as_object().expect("data is an object");
            assert!(
                data.keys().all(|k| !k.ends_with("_hash")),
                "{event_type}: {data:?}"
            );
            let (kind, id) = (
                example["subject"]["kind"].as_str().unwrap(),
                example["subject"]["id"].as_str().unwrap(),
            );
            assert!(!kind.is_empty() && !id.is_empty(), "{example}");
        }
    }
}
