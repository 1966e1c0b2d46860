//! What the audit log still serves: an organization's first retained sequence number, by its
//! plan's retention ([`crate::domain::retention::audit_retention_days`]).
//!
//! Events are in never-decreasing time order, so the first retained event is found by a binary
//! search over the organization's sequence numbers (`Log::org_seq_at_time`, about 20 reads for
//! a million events). The
//! answer is cached per organization for [`FLOOR_TTL_MICROS`]: it is computed for the cutoff
//! at the *end* of that minute, so a cached floor never lets through an event that expired
//! during it (it hides, at most, events in their last minute of retention).

use crate::domain::retention::{audit_cutoff, audit_retention_days};
use crate::state::AppState;

/// How long a computed floor is reused.
pub const FLOOR_TTL_MICROS: i64 = 60 * 1_000_000;

/// A cached floor: for retention `days`, computed at `at`, good until `at + FLOOR_TTL_MICROS`.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    days: u32,
    at: i64,
    seq: u64,
}

impl AppState {
    /// The organization's first sequence number still served at `now_micros`: events numbered
    /// below it are past the organization's retention (or were dropped from the index) and
    /// must not be served. `org_head + 1` when every event has expired; 1 for an unknown
    /// organization.
    pub fn first_retained_seq(&self, org_id: &str, now_micros: i64) -> Result<u64, events::Error> {
        let days = self.audit_retention_days(org_id);
        if let Some(f) = self.audit_floors().get(org_id).map(|f| *f)
            && f.days == days
            && f.at <= now_micros
            && now_micros <= f.at.saturating_add(FLOOR_TTL_MICROS)
        {
            return Ok(f.seq.max(self.log().org_first(org_id)?));
        }
        let ahead = now_micros.saturating_add(FLOOR_TTL_MICROS);
        let seq = self.first_seq_at_or_after(org_id, audit_cutoff(ahead, days))?;
        self.audit_floors().insert(
            org_id.to_owned(),
            Floor {
                days,
                at: now_micros,
                seq,
            },
        );
        Ok(seq)
    }

    /// Days the organization's audit log keeps events now (its plan's, or its choice).
    pub fn audit_retention_days(&self, org_id: &str) -> u32 {
        let models = self.models().load();
        match models.state.orgs.get(org_id) {
            Some(o) => audit_retention_days(o.plan, o.audit_retention_days),
            None => audit_retention_days(events::event::Plan::Workforce, None),
        }
    }

    /// The first sequence number of `org_id` whose event was recorded at or after `cutoff`
    /// (uncached), among those the index still holds.
    pub fn first_seq_at_or_after(&self, org_id: &str, cutoff: i64) -> Result<u64, events::Error> {
        self.log().org_seq_at_time(org_id, cutoff)
    }
}
