//! The webhooks' events: an organization's webhook destinations as operators configure them,
//! and what the server does to them on its own (disabling one that keeps failing). Part of the
//! catalogue in [`crate::event`], with the same rules: never reorder or remove a field.
//!
//! No event carries a webhook's signing secret: secrets live encrypted outside the log
//! (DESIGN §2.8). Deliveries are not events either — they would swamp the log, and a webhook
//! subscribed to its own failures would feed itself; each try is in the delivery list.

use serde::{Deserialize, Serialize};

/// `webhook.created`: a destination will receive the organization's events from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookCreated {
    pub webhook_id: String,
    pub org_id: String,
    pub url: String,
    /// The `event_type` filter (`device.*,policy.applied`); empty: every event.
    pub event_types: String,
    pub description: String,
}

/// `webhook.updated`: the destination's whole configuration after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookUpdated {
    pub webhook_id: String,
    pub org_id: String,
    pub url: String,
    pub event_types: String,
    pub description: String,
    pub enabled: bool,
}

/// `webhook.secret_rotated`: a new signing secret; the previous one still signs (beside it)
/// until `previous_valid_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSecretRotated {
    pub webhook_id: String,
    pub org_id: String,
    /// Microseconds since the epoch.
    pub previous_valid_until: i64,
}

/// `webhook.replayed`: deliver again every matching event from `since_id` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookReplayed {
    pub webhook_id: String,
    pub org_id: String,
    /// The organization's sequence number of the first event to deliver again.
    pub since_id: u64,
}

/// `webhook.disabled`: the server stopped delivering to a destination — it kept failing past
/// the retry schedule, or answered `410 Gone`. Enabling it again resumes at `event_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDisabled {
    pub webhook_id: String,
    pub org_id: String,
    pub reason: String,
    /// The event it could not deliver (the organization's sequence number).
    pub event_id: u64,
    /// When the failures began (microseconds).
    pub failing_since: i64,
}

/// `webhook.removed`: the destination and its secret are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRemoved {
    pub webhook_id: String,
    pub org_id: String,
}
