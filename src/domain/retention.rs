//! Retention: removed devices, and pre-auth keys and API tokens that stopped working, leave the
//! read models once they have been gone longer than [`RETENTION_MICROS`]. Their events stay in
//! the log (the audit trail is the log's, not the read models'); what leaves is what every
//! request would otherwise carry in memory forever.

use events::Event;
use events::event::{DevicePurged, KeyPurged, TokenPurged};
use events::stream::Stream;
use projections::OrgView;

use super::decision::Decision;

/// How long a removed device, or a revoked or expired key or token, stays in the read models.
pub const RETENTION_MICROS: i64 = 30 * 86_400 * 1_000_000;

/// Most purges in one append: a backlog drains over several, none of them huge.
pub const BATCH: usize = 500;

/// The purges due in the organization at `now`, at most [`BATCH`]; none when nothing is due.
/// Purging what is purged already changes nothing, so a retried or repeated decision is
/// harmless (no expectations needed).
pub fn purge(org: OrgView<'_>, now: i64) -> Decision {
    let cutoff = now.saturating_sub(RETENTION_MICROS);
    let devices = org
        .removed_devices()
        .take_while(|(at, _)| *at <= cutoff)
        .map(|(_, id)| {
            let purged = DevicePurged {
                device_id: id.clone(),
            };
            (Stream::device(id.as_str()), Event::from(purged))
        });
    let keys = org
        .keys()
        .filter(|k| gone_since(k.revoked_at, k.expires_at) <= cutoff)
        .map(|k| {
            let purged = KeyPurged {
                key_id: k.id.clone(),
            };
            (Stream::key(k.id.as_str()), Event::from(purged))
        });
    let tokens = org
        .tokens()
        .filter(|t| gone_since(t.revoked_at, t.expires_at) <= cutoff)
        .map(|t| {
            let purged = TokenPurged {
                token_id: t.id.clone(),
            };
            (Stream::token(t.id.as_str()), Event::from(purged))
        });
    // Lazily: the scan stops at the batch's last purge.
    devices
        .chain(keys)
        .chain(tokens)
        .take(BATCH)
        .fold(Decision::none(), |d, (stream, event)| {
            d.event(stream, event)
        })
}

/// When a credential stopped working: revoked, or expired, whichever came first.
fn gone_since(revoked_at: Option<i64>, expires_at: i64) -> i64 {
    revoked_at.map_or(expires_at, |r| r.min(expires_at))
}

/// How long an organization's audit log is served, in days, by plan: 90 on Free, a year on
/// Business and (by default) on Workforce.
pub fn audit_retention_days(plan: events::event::Plan) -> u32 {
    match plan {
        events::event::Plan::Free => 90,
        events::event::Plan::Business | events::event::Plan::Workforce => 365,
    }
}
