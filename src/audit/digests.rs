//! The audit chain as a projection: each organization's chain head, and a mark every
//! [`MARK_EVERY`] events, so the hash of any event is at most `MARK_EVERY - 1` record reads
//! away. Snapshotted and fail-stop like the read models (it runs on the same runner), so a
//! restart replays only the tail.
//!
//! Memory: 32 bytes per organization per [`MARK_EVERY`] events (about 128 KB per million).

use std::time::Duration;

use events::Recorded;
use projections::{Projection, ProjectionHandle};
use serde::{Deserialize, Serialize};

use super::chain::{self, GENESIS, Hash};
use crate::http::event_view::EventView;

/// Events between two stored marks of an organization's chain.
pub const MARK_EVERY: u64 = 256;

/// Every organization's audit chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditChains {
    orgs: imbl::HashMap<String, OrgChain>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrgChain {
    /// The last sequence number folded in.
    seq: u64,
    head: Hash,
    /// `marks[i]` is the hash of event `(i + 1) × MARK_EVERY`.
    marks: imbl::Vector<Hash>,
}

impl Projection for AuditChains {
    const NAME: &'static str = "audit-chains";
    const VERSION: u32 = 1;

    fn apply(&mut self, r: &Recorded) {
        let env = &r.envelope;
        let view = EventView::of(r);
        match self.orgs.get_mut(&env.org_id) {
            Some(chain) => chain.fold(env.org_seq, &view),
            None => {
                let mut chain = OrgChain {
                    seq: 0,
                    head: GENESIS,
                    marks: imbl::Vector::new(),
                };
                chain.fold(env.org_seq, &view);
                self.orgs.insert(env.org_id.clone(), chain);
            }
        }
    }
}

impl AuditChains {
    /// The organization's last folded sequence number and its chain hash, together.
    pub fn head(&self, org: &str) -> Option<(u64, Hash)> {
        self.orgs.get(org).map(|c| (c.seq, c.head))
    }
}

impl OrgChain {
    fn fold(&mut self, seq: u64, view: &EventView) {
        assert_eq!(
            seq,
            self.seq + 1,
            "the audit chain needs every event of an organization, in order"
        );
        self.head = chain::next(&self.head, view);
        self.seq = seq;
        if seq.is_multiple_of(MARK_EVERY) {
            self.marks.push_back(self.head);
        }
    }
}

/// Where a walk to an event's hash starts: a known hash and the sequence number it is for.
fn start_for(chains: &AuditChains, org: &str, seq: u64) -> Option<(u64, Hash)> {
    let c = chains.orgs.get(org)?;
    if seq > c.seq {
        return None;
    }
    if seq == c.seq {
        return Some((seq, c.head));
    }
    let mark = (seq / MARK_EVERY) as usize;
    Some(match mark.checked_sub(1) {
        None => (0, GENESIS),
        Some(i) => ((i as u64 + 1) * MARK_EVERY, *c.marks.get(i)?),
    })
}

/// The hash the projection itself holds for `org`'s event `seq`: a mark or the head (or
/// `GENESIS` for 0), with no record read, so it survives retention's purge of the record.
pub fn kept_hash(chains: &AuditChains, org: &str, seq: u64) -> Option<Hash> {
    let c = chains.orgs.get(org)?;
    match seq {
        0 => Some(GENESIS),
        s if s == c.seq => Some(c.head),
        s if s < c.seq && s % MARK_EVERY == 0 => {
            c.marks.get((s / MARK_EVERY - 1) as usize).copied()
        }
        _ => None,
    }
}

/// The chain hash of `org`'s event `seq` (`GENESIS` for 0), waiting for the projection to reach
/// it. `None` when the organization has no such event.
pub async fn hash_at(
    handle: &ProjectionHandle<AuditChains>,
    log: &events::Log,
    org: &str,
    seq: u64,
) -> Result<Option<Hash>, events::Error> {
    if seq == 0 {
        return Ok(Some(GENESIS));
    }
    let Some(target) = log.org_record(org, seq)? else {
        // Retention purged the record (or there is none): a mark outlives it, and the first
        // retained event links on from one.
        return Ok(kept_hash(&handle.load().state, org, seq));
    };
    if !handle
        .wait_for(target.position(), Duration::from_secs(10))
        .await
    {
        return Err(events::Error::Storage(
            "the audit chain is not up to date".into(),
        ));
    }
    let applied = handle.load();
    let Some((mut at, mut hash)) = start_for(&applied.state, org, seq) else {
        return Ok(None);
    };
    while at < seq {
        let page = log.read_org(org, at + 1, seq, 256)?;
        if page.is_empty() {
            return Err(events::Error::Storage("the audit chain has a gap".into()));
        }
        hash = fold(hash, &page);
        at = page.last().map_or(at, |r| r.envelope.org_seq);
    }
    Ok(Some(hash))
}

/// The chain hash after `records` (consecutive events of one organization, oldest first),
/// starting from the hash of the event before them.
pub fn fold(mut hash: Hash, records: &[std::sync::Arc<Recorded>]) -> Hash {
    for r in records {
        hash = chain::next(&hash, &EventView::of(r));
    }
    hash
}

/// Attaches chain links to `views`, a contiguous run of one organization's events in either
/// order, given the hash of the event before the lowest one. Returns the hash of the highest.
pub fn link_run(views: &mut [EventView], before_lowest: Hash) -> Hash {
    let ascending = views.first().map(|v| v.id) <= views.last().map(|v| v.id);
    let mut hash = before_lowest;
    let mut visit = |v: &mut EventView| {
        let (link, h) = chain::link(&hash, v);
        v.chain = Some(link);
        hash = h;
    };
    if ascending {
        views.iter_mut().for_each(&mut visit);
    } else {
        views.iter_mut().rev().for_each(&mut visit);
    }
    hash
}
