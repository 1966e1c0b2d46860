//! Retention: removed devices, and pre-auth keys and API tokens that stopped working, leave the
//! read models once they have been gone longer than [`RETENTION_MICROS`]. Their events stay in
//! the log (the audit trail is the log's, not the read models'); what leaves is what every
//! request would otherwise carry in memory forever.
//!
//! The audit log's own retention is by plan ([`audit_retention_days`]): events older than it are
//! not served, their index entries are dropped, and the log's prefix is dropped once every
//! organization's retention and every snapshot covers it (`workers::retention`).

use events::Event;
use events::event::Plan;
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

/// Days the audit log keeps an event on the free plan.
pub const FREE_AUDIT_DAYS: u32 = 90;
/// Days on the business plan.
pub const BUSINESS_AUDIT_DAYS: u32 = 365;
/// Days on the workforce plan until the organization chooses (`org set-retention`).
pub const WORKFORCE_DEFAULT_AUDIT_DAYS: u32 = 365;
/// What a workforce organization may choose.
pub const WORKFORCE_AUDIT_DAYS: std::ops::RangeInclusive<u32> = 30..=3650;

const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// Days the audit log of an organization on `plan` keeps an event, given its own choice
/// (`chosen`, from `org.retention_set`). Only the workforce plan honours the choice; it is kept
/// across plan changes, so an organization that leaves the workforce plan gets its plan's
/// fixed retention and gets its choice back if it returns.
pub fn audit_retention_days(plan: Plan, chosen: Option<u32>) -> u32 {
    match plan {
        Plan::Free => FREE_AUDIT_DAYS,
        Plan::Business => BUSINESS_AUDIT_DAYS,
        Plan::Workforce => chosen
            .map(|d| d.clamp(*WORKFORCE_AUDIT_DAYS.start(), *WORKFORCE_AUDIT_DAYS.end()))
            .unwrap_or(WORKFORCE_DEFAULT_AUDIT_DAYS),
    }
}

/// The oldest time still served at `now` for a retention of `days`: events recorded before it
/// are past retention.
pub fn audit_cutoff(now_micros: i64, days: u32) -> i64 {
    now_micros.saturating_sub(i64::from(days).saturating_mul(DAY_MICROS))
}

/// Why `org set-retention` refuses a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionRefused {
    /// Only the workforce plan chooses its retention.
    Plan(Plan),
    /// Outside [`WORKFORCE_AUDIT_DAYS`].
    Days(u32),
}

impl std::fmt::Display for RetentionRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetentionRefused::Plan(plan) => write!(
                f,
                "the {} plan keeps the audit log {} days; only the workforce plan chooses its \
                 retention",
                plan.as_str(),
                audit_retention_days(*plan, None)
            ),
            RetentionRefused::Days(days) => write!(
                f,
                "retention must be {} to {} days, not {days}",
                WORKFORCE_AUDIT_DAYS.start(),
                WORKFORCE_AUDIT_DAYS.end()
            ),
        }
    }
}

/// Checks a workforce organization's choice of retention.
pub fn check_retention_choice(plan: Plan, days: u32) -> Result<u32, RetentionRefused> {
    if plan != Plan::Workforce {
        return Err(RetentionRefused::Plan(plan));
    }
    if !WORKFORCE_AUDIT_DAYS.contains(&days) {
        return Err(RetentionRefused::Days(days));
    }
    Ok(days)
}

#[cfg(test)]
mod audit_tests {
    use super::*;

    #[test]
    fn each_plan_has_its_retention_and_only_workforce_chooses() {
        assert_eq!(audit_retention_days(Plan::Free, None), 90);
        assert_eq!(audit_retention_days(Plan::Free, Some(3000)), 90);
        assert_eq!(audit_retention_days(Plan::Business, Some(30)), 365);
        assert_eq!(audit_retention_days(Plan::Workforce, None), 365);
        assert_eq!(audit_retention_days(Plan::Workforce, Some(30)), 30);
        assert_eq!(audit_retention_days(Plan::Workforce, Some(3650)), 3650);
        assert!(check_retention_choice(Plan::Business, 100).is_err());
        assert_eq!(
            check_retention_choice(Plan::Free, 100)
                .unwrap_err()
                .to_string(),
            "the free plan keeps the audit log 90 days; only the workforce plan chooses its \
             retention"
        );
        assert_eq!(
            check_retention_choice(Plan::Workforce, 29),
            Err(RetentionRefused::Days(29))
        );
        assert_eq!(check_retention_choice(Plan::Workforce, 30), Ok(30));
    }

    #[test]
    fn a_plan_change_applies_the_new_plans_retention_and_keeps_the_choice() {
        // Chosen on workforce, then moved to free, then back.
        let chosen = Some(730);
        assert_eq!(audit_retention_days(Plan::Workforce, chosen), 730);
        assert_eq!(audit_retention_days(Plan::Free, chosen), 90);
        assert_eq!(audit_retention_days(Plan::Workforce, chosen), 730);
    }

    #[test]
    fn the_cutoff_is_days_before_now_and_never_overflows() {
        assert_eq!(audit_cutoff(10 * DAY_MICROS, 3), 7 * DAY_MICROS);
        assert_eq!(audit_cutoff(i64::MIN + 1, 3650), i64::MIN);
    }
}
