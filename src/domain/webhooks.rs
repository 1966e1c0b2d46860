//! Decisions about webhook destinations: adding, changing, rotating, replaying, disabling and
//! removing them. The URL's safety (SSRF) is checked before, with DNS, in the HTTP layer; the
//! secret never reaches a decision.

use events::Expected;
use events::event::{
    WebhookCreated, WebhookDisabled, WebhookRemoved, WebhookReplayed, WebhookSecretRotated,
    WebhookUpdated,
};
use events::stream::Stream;
use projections::OrgView;
use projections::webhooks::Webhook;

use super::Rejection;
use super::decision::Decision;
use super::text::check_text;

/// Most webhooks one organization may have: each is a delivery worker and a connection.
pub const MAX_PER_ORG: usize = 25;

/// A new destination, its id already minted and its URL already checked.
#[derive(Debug, Clone)]
pub struct CreateWebhook {
    pub webhook_id: String,
    pub url: String,
    /// A canonical `event_type` filter; empty: every event.
    pub event_types: String,
    pub description: String,
}

/// A change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub event_types: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

fn find<'a>(org: OrgView<'a>, id: &str) -> Result<&'a Webhook, Rejection> {
    org.webhook(id)
        .ok_or_else(|| Rejection::NotFound(format!("no webhook '{id}'")))
}

/// The webhook's own stream, as the decision saw it.
fn expect_seen(w: &Webhook) -> Decision {
    Decision::none().expect(Stream::webhook(&w.id), Expected::Exact(w.revision))
}

pub fn create(org: OrgView<'_>, cmd: CreateWebhook) -> Result<Decision, Rejection> {
    check_text("description", &cmd.description, 0, 200)?;
    if org.webhooks().count() >= MAX_PER_ORG {
        return Err(Rejection::Conflict(format!(
            "the organization already has {MAX_PER_ORG} webhooks, the most it may have; \
             remove one first"
        )));
    }
    let stream = Stream::webhook(&cmd.webhook_id);
    Ok(Decision::none()
        .expect(stream.clone(), Expected::NoStream)
        .event(
            stream,
            WebhookCreated {
                webhook_id: cmd.webhook_id,
                org_id: org.id().to_owned(),
                url: cmd.url,
                event_types: cmd.event_types,
                description: cmd.description,
            },
        ))
}

/// Applies `change`; nothing to append when it changes nothing.
pub fn update(org: OrgView<'_>, id: &str, change: UpdateWebhook) -> Result<Decision, Rejection> {
    let w = find(org, id)?;
    if let Some(d) = &change.description {
        check_text("description", d, 0, 200)?;
    }
    let event = WebhookUpdated {
        webhook_id: w.id.clone(),
        org_id: w.org_id.clone(),
        url: change.url.unwrap_or_else(|| w.url.clone()),
        event_types: change.event_types.unwrap_or_else(|| w.event_types.clone()),
        description: change.description.unwrap_or_else(|| w.description.clone()),
        enabled: change.enabled.unwrap_or(w.enabled),
    };
    let same = event.url == w.url
        && event.event_types == w.event_types
        && event.description == w.description
        && event.enabled == w.enabled;
    if same {
        return Ok(Decision::none());
    }
    Ok(expect_seen(w).event(Stream::webhook(id), event))
}

/// Records a new secret (already stored by the caller); the previous one signs too until
/// `previous_valid_until` (microseconds).
pub fn rotate(
    org: OrgView<'_>,
    id: &str,
    previous_valid_until: i64,
) -> Result<Decision, Rejection> {
    let w = find(org, id)?;
    Ok(expect_seen(w).event(
        Stream::webhook(id),
        WebhookSecretRotated {
            webhook_id: w.id.clone(),
            org_id: w.org_id.clone(),
            previous_valid_until,
        },
    ))
}

/// Asks the webhook's worker to deliver again from event `since_id` of the organization.
pub fn replay(org: OrgView<'_>, id: &str, since_id: u64) -> Result<Decision, Rejection> {
    let w = find(org, id)?;
    let last = org.version();
    if since_id == 0 || since_id > last {
        return Err(Rejection::Invalid(format!(
            "'since_id' must be an event id from 1 to {last}, the organization's latest"
        )));
    }
    Ok(expect_seen(w).event(
        Stream::webhook(id),
        WebhookReplayed {
            webhook_id: w.id.clone(),
            org_id: w.org_id.clone(),
            since_id,
        },
    ))
}

/// The server gives up on a destination. Nothing to append when it is gone, already disabled,
/// or was enabled again after `enabled_seq` (the worker's view is then stale).
pub fn disable(
    org: OrgView<'_>,
    id: &str,
    enabled_seq: u64,
    reason: String,
    event_id: u64,
    failing_since: i64,
) -> Result<Decision, Rejection> {
    let Some(w) = org.webhook(id) else {
        return Ok(Decision::none());
    };
    if !w.enabled || w.enabled_seq != enabled_seq {
        return Ok(Decision::none());
    }
    Ok(expect_seen(w).event(
        Stream::webhook(id),
        WebhookDisabled {
            webhook_id: w.id.clone(),
            org_id: w.org_id.clone(),
            reason,
            event_id,
            failing_since,
        },
    ))
}

pub fn remove(org: OrgView<'_>, id: &str) -> Result<Decision, Rejection> {
    let w = find(org, id)?;
    Ok(expect_seen(w).event(
        Stream::webhook(id),
        WebhookRemoved {
            webhook_id: w.id.clone(),
            org_id: w.org_id.clone(),
        },
    ))
}
