//! Each organization's live devices ordered by when they were last seen, for `sort=last_seen`
//! and the `last_seen_before:`/`last_seen_after:` filters.
//!
//! A device's last-seen time is its latest heartbeat, or its creation if it never sent one.
//! Heartbeats are not events, so this order cannot live in the read models; it combines both:
//! - which devices exist comes from the organization's creation-ordered set in the read models.
//!   The index remembers the set it was last brought up to date with and, before each use,
//!   applies the difference to the current one. `imbl` skips the subtrees both share, so this
//!   costs the devices registered or removed since, not the fleet (the first use costs the
//!   fleet once);
//! - heartbeats move a device the moment they are recorded ([`LastSeenIndex::moved`]).
//!
//! Both paths take the organization's lock, and a heartbeat updates the heartbeat store before
//! moving the device, so a device added by a catch-up always gets its latest time.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use imbl::ordset::DiffItem;
use projections::device_index::IdSet;

/// A position in last-seen order: `(last_seen, id)`.
pub type BySeen = (i64, Arc<str>);

#[derive(Debug, Default)]
pub struct LastSeenIndex {
    orgs: DashMap<String, Arc<Mutex<OrgSeen>>>,
}

/// One organization's order.
#[derive(Debug, Default)]
pub struct OrgSeen {
    /// The read models' device set this order was last brought up to date with.
    synced: IdSet,
    order: BTreeSet<BySeen>,
    at: HashMap<Arc<str>, i64>,
}

impl LastSeenIndex {
    /// Brings `org_id`'s order up to date with its live devices `devices`, and lends it.
    /// `last_seen(id)` is the heartbeat store's time for a device, if any.
    pub fn with<R>(
        &self,
        org_id: &str,
        devices: &IdSet,
        last_seen: impl Fn(&str) -> Option<i64>,
        read: impl FnOnce(&OrgSeen) -> R,
    ) -> R {
        let org = self.orgs.entry(org_id.to_owned()).or_default().clone();
        let mut org = org.lock().unwrap_or_else(|e| e.into_inner());
        org.sync(devices, last_seen);
        read(&org)
    }

    /// A heartbeat at `at` from `device_id`: moves it if the organization's order holds it (a
    /// device not yet in it gets the heartbeat store's time when it is added).
    pub fn moved(&self, org_id: &str, device_id: &str, at: i64) {
        let Some(org) = self.orgs.get(org_id).map(|o| o.clone()) else {
            return;
        };
        let mut org = org.lock().unwrap_or_else(|e| e.into_inner());
        let Some((id, old)) = org
            .at
            .get_key_value(device_id)
            .map(|(k, v)| (k.clone(), *v))
        else {
            return;
        };
        org.order.remove(&(old, id.clone()));
        org.order.insert((at, id.clone()));
        org.at.insert(id, at);
    }
}

impl OrgSeen {
    fn sync(&mut self, devices: &IdSet, last_seen: impl Fn(&str) -> Option<i64>) {
        if self.synced.ptr_eq(devices) {
            return;
        }
        for change in self.synced.diff(devices) {
            match change {
                DiffItem::Add((created, id)) => {
                    let id: Arc<str> = Arc::from(id.as_str());
                    let at = last_seen(&id).unwrap_or(*created);
                    if let Some(old) = self.at.insert(id.clone(), at) {
                        self.order.remove(&(old, id.clone()));
                    }
                    self.order.insert((at, id));
                }
                DiffItem::Remove((_, id)) => {
                    if let Some((id, at)) = self.at.remove_entry(id.as_str()) {
                        self.order.remove(&(at, id));
                    }
                }
            }
        }
        self.synced = devices.clone();
    }

    /// The devices after `after` (exclusive) within `[from, to]`, in ascending order, or before
    /// it in descending order.
    pub fn seek<'a>(
        &'a self,
        after: Option<(i64, String)>,
        (from, to): (Bound<i64>, Bound<i64>),
        descending: bool,
    ) -> Box<dyn Iterator<Item = &'a BySeen> + 'a> {
        use Bound::{Excluded, Included, Unbounded};
        // Bounds on the time alone, widened to every id at that time.
        let low: Bound<BySeen> = match from {
            Included(t) => Included((t, Arc::from(""))),
            Excluded(t) => match t.checked_add(1) {
                Some(t) => Included((t, Arc::from(""))),
                None => return Box::new(std::iter::empty()),
            },
            Unbounded => Unbounded,
        };
        let high: Bound<BySeen> = match to {
            Included(t) => match t.checked_add(1) {
                Some(t) => Excluded((t, Arc::from(""))),
                None => Unbounded,
            },
            Excluded(t) => Excluded((t, Arc::from(""))),
            Unbounded => Unbounded,
        };
        let cursor = after.map(|(t, id)| (t, Arc::<str>::from(id)));
        let (low, high) = match (cursor, descending) {
            (None, _) => (low, high),
            (Some(c), false) => (tighter_low(low, Excluded(c)), high),
            (Some(c), true) => (low, tighter_high(high, Excluded(c))),
        };
        if !in_order(&low, &high) {
            return Box::new(std::iter::empty());
        }
        let range = self.order.range((low, high));
        if descending {
            Box::new(range.rev())
        } else {
            Box::new(range)
        }
    }

    /// How many devices were last seen within the bounds, counting no further than `cap`.
    pub fn count(&self, bounds: (Bound<i64>, Bound<i64>), cap: usize) -> usize {
        self.seek(None, bounds, false).take(cap).count()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

fn start(b: &Bound<BySeen>) -> Option<(&BySeen, bool)> {
    match b {
        Bound::Included(k) => Some((k, true)),
        Bound::Excluded(k) => Some((k, false)),
        Bound::Unbounded => None,
    }
}

fn tighter_low(a: Bound<BySeen>, b: Bound<BySeen>) -> Bound<BySeen> {
    match (start(&a), start(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some((x, xi)), Some((y, _))) if x > y || (x == y && !xi) => a,
        _ => b,
    }
}

fn tighter_high(a: Bound<BySeen>, b: Bound<BySeen>) -> Bound<BySeen> {
    match (start(&a), start(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some((x, xi)), Some((y, _))) if x < y || (x == y && !xi) => a,
        _ => b,
    }
}

/// False when `BTreeSet::range` would panic: start after end, or equal and both excluded.
fn in_order(low: &Bound<BySeen>, high: &Bound<BySeen>) -> bool {
    match (start(low), start(high)) {
        (Some((l, li)), Some((h, hi))) => l < h || (l == h && li && hi),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Bound::{Excluded, Included, Unbounded};

    fn set(items: &[(i64, &str)]) -> IdSet {
        items.iter().map(|(t, id)| (*t, id.to_string())).collect()
    }

    fn ids(it: Box<dyn Iterator<Item = &BySeen> + '_>) -> Vec<String> {
        it.map(|(_, id)| id.to_string()).collect()
    }

    #[test]
    fn follows_registrations_removals_and_heartbeats() {
        let index = LastSeenIndex::default();
        let no_heartbeats = |_: &str| None;
        let v1 = set(&[(10, "a"), (20, "b"), (30, "c")]);
        let all = (Unbounded, Unbounded);
        let order = index.with("org", &v1, no_heartbeats, |o| ids(o.seek(None, all, false)));
        assert_eq!(order, ["a", "b", "c"]);
        index.moved("org", "a", 40);
        index.moved("other", "b", 99);
        let mut v2 = v1.clone();
        v2.remove(&(20, "b".to_string()));
        v2.insert((25, "d".to_string()));
        let seen = |id: &str| (id == "d").then_some(50);
        let order = index.with("org", &v2, seen, |o| ids(o.seek(None, all, false)));
        assert_eq!(
            order,
            ["c", "a", "d"],
            "b removed, d added at its heartbeat"
        );
        let page = index.with("org", &v2, no_heartbeats, |o| {
            ids(o.seek(Some((40, "a".into())), all, false))
        });
        assert_eq!(page, ["d"]);
        let back = index.with("org", &v2, no_heartbeats, |o| {
            ids(o.seek(Some((40, "a".into())), all, true))
        });
        assert_eq!(back, ["c"]);
    }

    #[test]
    fn bounds_are_exact_and_never_panic() {
        let index = LastSeenIndex::default();
        let v = set(&[(10, "a"), (20, "b"), (30, "c")]);
        let q = |bounds, after: Option<(i64, &str)>, desc| {
            index.with(
                "org",
                &v,
                |_| None,
                |o| ids(o.seek(after.map(|(t, s)| (t, s.to_owned())), bounds, desc)),
            )
        };
        assert_eq!(q((Excluded(10), Excluded(30)), None, false), ["b"]);
        assert_eq!(q((Included(10), Included(30)), None, true), ["c", "b", "a"]);
        assert_eq!(q((Excluded(20), Unbounded), Some((10, "a")), false), ["c"]);
        assert_eq!(
            q((Excluded(20), Unbounded), Some((30, "c")), true),
            Vec::<String>::new()
        );
        assert!(q((Excluded(i64::MAX), Unbounded), None, false).is_empty());
        assert!(q((Excluded(20), Excluded(20)), None, false).is_empty());
        assert!(q((Included(30), Excluded(10)), None, false).is_empty());
        assert_eq!(
            index.with(
                "org",
                &v,
                |_| None,
                |o| o.count((Unbounded, Included(20)), 1)
            ),
            1
        );
    }
}
