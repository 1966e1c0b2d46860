//! Webhook destinations: each organization's webhooks as configured, folded from `webhook.*`
//! events. Where each one's deliveries stand is not here: that is the delivery workers' own
//! state, kept outside the log (`src/webhooks/`), like heartbeats.

use std::sync::Arc;

use events::{Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub org_id: String,
    pub url: String,
    /// The `event_type` filter as written; empty: every event.
    pub event_types: String,
    pub description: String,
    pub enabled: bool,
    /// Why the server disabled it, until it is enabled again.
    pub disabled_reason: Option<String>,
    /// The organization's sequence number of its `webhook.created`: it receives what follows.
    pub created_seq: u64,
    /// Microseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// When its secret was last rotated (microseconds).
    pub rotated_at: Option<i64>,
    /// Until when the previous secret also signs (microseconds).
    pub previous_valid_until: Option<i64>,
    /// The last replay asked for: (the org sequence number of the `webhook.replayed`, since_id).
    /// A delivery worker that has not yet acted on that sequence number rewinds to `since_id`.
    pub replay: Option<(u64, u64)>,
    /// The sequence number of the event it was last enabled by (its creation, or the update
    /// that enabled it): a worker stopped by a disable resumes once it sees a newer one.
    pub enabled_seq: u64,
    /// Last revision of its stream (`webhook:<id>`).
    pub revision: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhooks {
    pub by_id: imbl::HashMap<String, Arc<Webhook>>,
    /// Per organization, its webhooks ordered by `(created_at, id)`.
    pub by_org: imbl::HashMap<String, imbl::OrdSet<(i64, String)>>,
}

impl Webhooks {
    pub fn get(&self, id: &str) -> Option<&Webhook> {
        self.by_id.get(id).map(Arc::as_ref)
    }

    /// Every webhook of every organization: what the delivery supervisor runs.
    pub fn all(&self) -> impl Iterator<Item = &Webhook> {
        self.by_id.values().map(Arc::as_ref)
    }

    fn update(&mut self, id: &str, r: &Recorded, change: impl FnOnce(&mut Webhook)) {
        if let Some(w) = self.by_id.get_mut(id) {
            let w = Arc::make_mut(w);
            change(w);
            w.updated_at = r.envelope.recorded_at;
            w.revision = r.envelope.revision;
        }
    }
}

impl Projection for Webhooks {
    const NAME: &'static str = "webhooks";
    const VERSION: u32 = 1;

    fn apply(&mut self, r: &Recorded) {
        let at = r.envelope.recorded_at;
        let seq = r.envelope.org_seq;
        match &r.event {
            Event::WebhookCreated(e) => {
                self.by_id.insert(
                    e.webhook_id.clone(),
                    Arc::new(Webhook {
                        id: e.webhook_id.clone(),
                        org_id: e.org_id.clone(),
                        url: e.url.clone(),
                        event_types: e.event_types.clone(),
                        description: e.description.clone(),
                        enabled: true,
                        disabled_reason: None,
                        created_seq: seq,
                        created_at: at,
                        updated_at: at,
                        rotated_at: None,
                        previous_valid_until: None,
                        replay: None,
                        enabled_seq: seq,
                        revision: r.envelope.revision,
                    }),
                );
                self.by_org
                    .entry(e.org_id.clone())
                    .or_default()
                    .insert((at, e.webhook_id.clone()));
            }
            Event::WebhookUpdated(e) => self.update(&e.webhook_id, r, |w| {
                if e.enabled && !w.enabled {
                    w.enabled_seq = seq;
                    w.disabled_reason = None;
                }
                w.url = e.url.clone();
                w.event_types = e.event_types.clone();
                w.description = e.description.clone();
                w.enabled = e.enabled;
            }),
            Event::WebhookSecretRotated(e) => self.update(&e.webhook_id, r, |w| {
                w.rotated_at = Some(at);
                w.previous_valid_until = Some(e.previous_valid_until);
            }),
            Event::WebhookReplayed(e) => self.update(&e.webhook_id, r, |w| {
                w.replay = Some((seq, e.since_id));
            }),
            Event::WebhookDisabled(e) => self.update(&e.webhook_id, r, |w| {
                w.enabled = false;
                w.disabled_reason = Some(e.reason.clone());
            }),
            Event::WebhookRemoved(e) => {
                if let Some(w) = self.by_id.remove(&e.webhook_id)
                    && let Some(set) = self.by_org.get_mut(&w.org_id)
                {
                    set.remove(&(w.created_at, w.id.clone()));
                    if set.is_empty() {
                        self.by_org.remove(&w.org_id);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use events::event::{WebhookCreated, WebhookDisabled, WebhookRemoved, WebhookUpdated};

    use super::*;

    fn rec(seq: u64, event: impl Into<Event>) -> Recorded {
        crate::testing::recorded(seq, "org_a", "webhook:wh_1", seq - 1, seq as i64, event)
    }

    fn created() -> WebhookCreated {
        WebhookCreated {
            webhook_id: "wh_1".into(),
            org_id: "org_a".into(),
            url: "https://example.com/h".into(),
            event_types: "device.*".into(),
            description: "d".into(),
        }
    }

    #[test]
    fn a_disabled_webhook_enabled_again_remembers_since_when_and_removal_forgets_it() {
        let mut m = Webhooks::default();
        m.apply(&rec(1, created()));
        m.apply(&rec(
            2,
            WebhookDisabled {
                webhook_id: "wh_1".into(),
                org_id: "org_a".into(),
                reason: "gone".into(),
                event_id: 1,
                failing_since: 1,
            },
        ));
        let w = m.get("wh_1").unwrap();
        assert!(!w.enabled && w.disabled_reason.is_some() && w.enabled_seq == 1);
        m.apply(&rec(
            3,
            WebhookUpdated {
                webhook_id: "wh_1".into(),
                org_id: "org_a".into(),
                url: "https://example.com/h".into(),
                event_types: String::new(),
                description: "d".into(),
                enabled: true,
            },
        ));
        let w = m.get("wh_1").unwrap();
        assert!(w.enabled && w.disabled_reason.is_none());
        assert_eq!((w.enabled_seq, w.revision), (3, 2));
        m.apply(&rec(
            4,
            WebhookRemoved {
                webhook_id: "wh_1".into(),
                org_id: "org_a".into(),
            },
        ));
        assert!(m.get("wh_1").is_none() && m.by_org.is_empty());
    }
}
