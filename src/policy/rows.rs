//! Rows per source class ("signature"): devices matched by the same set of source rules reach
//! the same destinations, so they share one row, kept per port class as accept and deny
//! destination sets. `autogroup:self` is the one part that depends on the device (its
//! owner), so a row only flags the classes a self rule accepts or denies, and a device's
//! effective row for class k is computed when read:
//!
//! `(accept[k] ∪ own if self-accept[k]) − deny[k] − (own if self-deny[k]) − {itself}`
//!
//! where `own` is its owner's untagged, unblocked devices.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::bits::DeviceSet;
use super::eval::{Compiled, CompiledRule, Grant, own_key};
use super::model::{Action, PortRange, Proto};

/// The size of a compiled policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub devices: usize,
    pub port_classes: usize,
    /// Rows: distinct sets of source rules among the devices.
    pub signatures: usize,
    /// Accept and deny destination sets over all rows.
    pub row_sets: usize,
    /// Bytes of every bitset, rows and rules.
    pub set_bytes: usize,
}

#[derive(Debug, Clone)]
pub(super) struct Sig {
    /// The source rules its devices match, sorted: the key it is found by.
    pub rules: Box<[u32]>,
    pub members: DeviceSet,
    pub count: usize,
    /// Class → destinations some accept (deny) rule of the signature names; no empty sets.
    pub accept: BTreeMap<usize, DeviceSet>,
    pub deny: BTreeMap<usize, DeviceSet>,
    /// Classes (as bits) where an accept (deny) rule names `autogroup:self`.
    pub self_accept: DeviceSet,
    pub self_deny: DeviceSet,
}

impl Sig {
    fn build(key: Box<[u32]>, rules: &[CompiledRule]) -> Sig {
        let mut sig = Sig {
            rules: key,
            members: DeviceSet::default(),
            count: 0,
            accept: BTreeMap::new(),
            deny: BTreeMap::new(),
            self_accept: DeviceSet::default(),
            self_deny: DeviceSet::default(),
        };
        for &ri in sig.rules.iter() {
            let r = &rules[ri as usize];
            let (side, flags) = match r.action {
                Action::Accept => (&mut sig.accept, &mut sig.self_accept),
                Action::Deny => (&mut sig.deny, &mut sig.self_deny),
            };
            for &k in &r.classes {
                if r.to_self {
                    flags.insert(k);
                }
                if !r.dst.is_empty() {
                    side.entry(k).or_default().union_with(&r.dst);
                }
            }
        }
        sig
    }

    fn has_self(&self) -> bool {
        !self.self_accept.is_empty() || !self.self_deny.is_empty()
    }

    /// Recompute device `x`'s bit as a destination in class `k`, from the rules' sets.
    pub fn refresh(&mut self, x: usize, k: usize, rules: &[CompiledRule]) {
        let (mut a, mut d) = (false, false);
        for &ri in self.rules.iter() {
            let r = &rules[ri as usize];
            if r.dst.contains(x) && r.classes.binary_search(&k).is_ok() {
                match r.action {
                    Action::Accept => a = true,
                    Action::Deny => d = true,
                }
            }
        }
        set_bit(&mut self.accept, k, x, a);
        set_bit(&mut self.deny, k, x, d);
    }
}

fn set_bit(side: &mut BTreeMap<usize, DeviceSet>, k: usize, x: usize, on: bool) {
    if on {
        side.entry(k).or_default().insert(x);
    } else if let Some(set) = side.get_mut(&k) {
        set.remove(x);
        if set.is_empty() {
            side.remove(&k);
        }
    }
}

/// Every signature, and which device has which.
#[derive(Debug, Clone)]
pub(super) struct Sigs {
    pub all: Vec<Option<Sig>>,
    free: Vec<usize>,
    by_rules: HashMap<Box<[u32]>, usize>,
    /// Rule → the signatures that contain it: whose rows a change of its destinations touches.
    pub of_rule: Vec<BTreeSet<usize>>,
    /// The signatures with an `autogroup:self` class: whose rows a change of who owns what
    /// touches.
    pub with_self: BTreeSet<usize>,
    /// Slot → its signature; `None` when it matches no source rule (nothing to reach).
    pub of_slot: Vec<Option<usize>>,
}

impl Sigs {
    pub fn new(rules: usize) -> Sigs {
        Sigs {
            all: Vec::new(),
            free: Vec::new(),
            by_rules: HashMap::new(),
            of_rule: vec![BTreeSet::new(); rules],
            with_self: BTreeSet::new(),
            of_slot: Vec::new(),
        }
    }

    pub fn live(&self) -> impl Iterator<Item = (usize, &Sig)> {
        self.all
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    pub fn of(&self, slot: usize) -> Option<&Sig> {
        let i = (*self.of_slot.get(slot)?)?;
        self.all[i].as_ref()
    }

    pub fn key(&self, slot: usize) -> &[u32] {
        self.of(slot).map_or(&[], |s| &s.rules)
    }

    /// Put `slot` in the signature of `key`, creating it (its row from the rules' current
    /// sets) if no device has it yet.
    pub fn join(&mut self, slot: usize, key: Box<[u32]>, rules: &[CompiledRule]) {
        if self.of_slot.len() <= slot {
            self.of_slot.resize(slot + 1, None);
        }
        if key.is_empty() {
            self.of_slot[slot] = None;
            return;
        }
        let i = match self.by_rules.get(&key) {
            Some(&i) => i,
            None => {
                let sig = Sig::build(key.clone(), rules);
                let i = self.free.pop().unwrap_or(self.all.len());
                for &ri in key.iter() {
                    self.of_rule[ri as usize].insert(i);
                }
                if sig.has_self() {
                    self.with_self.insert(i);
                }
                if i == self.all.len() {
                    self.all.push(Some(sig));
                } else {
                    self.all[i] = Some(sig);
                }
                self.by_rules.insert(key, i);
                i
            }
        };
        if let Some(sig) = self.all[i].as_mut() {
            sig.members.insert(slot);
            sig.count += 1;
        }
        self.of_slot[slot] = Some(i);
    }

    /// Take `slot` out of its signature, dropping the signature when it was the last.
    pub fn leave(&mut self, slot: usize) {
        let Some(i) = self.of_slot.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let Some(sig) = self.all[i].as_mut() else {
            return;
        };
        sig.members.remove(slot);
        sig.count -= 1;
        if sig.count == 0 {
            for &ri in sig.rules.iter() {
                self.of_rule[ri as usize].remove(&i);
            }
            self.by_rules.remove(&sig.rules);
            self.with_self.remove(&i);
            self.all[i] = None;
            self.free.push(i);
        }
    }
}

impl Compiled {
    /// `autogroup:self` as seen from `slot`: its owner's untagged, unblocked devices.
    pub(super) fn own(&self, slot: usize) -> Option<&DeviceSet> {
        self.owned.get(own_key(self.device(slot)?)?)
    }

    /// One source's effective row: class → destinations, empty classes absent.
    pub(super) fn row(&self, s: usize) -> BTreeMap<usize, DeviceSet> {
        let mut out = BTreeMap::new();
        let Some(sig) = self.sigs.of(s) else {
            return out;
        };
        let own = self.own(s);
        let ks: BTreeSet<usize> = sig
            .accept
            .keys()
            .copied()
            .chain(sig.self_accept.iter())
            .collect();
        for k in ks {
            let mut set = sig.accept.get(&k).cloned().unwrap_or_default();
            if let Some(own) = own {
                if sig.self_accept.contains(k) {
                    set.union_with(own);
                }
                if sig.self_deny.contains(k) {
                    set.subtract(own);
                }
            }
            if let Some(d) = sig.deny.get(&k) {
                set.subtract(d);
            }
            set.remove(s);
            if !set.is_empty() {
                out.insert(k, set);
            }
        }
        out
    }

    /// Who reaches device `x`, per class, counting only the signatures in `sigs` (a caller
    /// that knows only some rows changed asks about those).
    pub(super) fn inbound_by_class<'a>(
        &self,
        x: usize,
        sigs: impl IntoIterator<Item = &'a usize>,
    ) -> BTreeMap<usize, DeviceSet> {
        let mut out: BTreeMap<usize, DeviceSet> = BTreeMap::new();
        if self.device(x).is_none() {
            return out;
        }
        let empty = DeviceSet::default();
        // The sources whose `own` holds x are exactly x's owner's untagged, unblocked devices.
        let own_x = self.own(x).unwrap_or(&empty);
        for &i in sigs {
            let Some(sig) = self.sigs.all.get(i).and_then(Option::as_ref) else {
                continue;
            };
            let ks: BTreeSet<usize> = sig
                .accept
                .keys()
                .copied()
                .chain(sig.self_accept.iter())
                .collect();
            for k in ks {
                if sig.deny.get(&k).is_some_and(|d| d.contains(x)) {
                    continue;
                }
                let (sa, sd) = (sig.self_accept.contains(k), sig.self_deny.contains(k));
                let mut set = if sig.accept.get(&k).is_some_and(|a| a.contains(x)) {
                    let mut set = sig.members.clone();
                    if sd {
                        set.subtract(own_x);
                    }
                    set
                } else if sa && !sd {
                    let mut set = sig.members.clone();
                    set.intersect_with(own_x);
                    set
                } else {
                    continue;
                };
                set.remove(x);
                if !set.is_empty() {
                    out.entry(k).or_default().union_with(&set);
                }
            }
        }
        out
    }

    fn class_of(&self, proto: Proto, port: u16) -> Option<usize> {
        let port = if proto.has_ports() { port } else { 1 };
        let at = self
            .pieces
            .partition_point(|&(p, r, _)| (p, r.lo) <= (proto, port));
        let &(p, r, k) = self.pieces.get(at.checked_sub(1)?)?;
        (p == proto && r.contains(port)).then_some(k)
    }

    /// Whether the device in slot `s` may reach the one in slot `d` with `proto` on `port`
    /// (ignored for ICMP).
    pub fn allows(&self, s: usize, d: usize, proto: Proto, port: u16) -> bool {
        self.class_of(proto, port)
            .is_some_and(|k| self.allows_in(s, d, k))
    }

    fn allows_in(&self, s: usize, d: usize, k: usize) -> bool {
        let Some(sig) = self.sigs.of(s) else {
            return false;
        };
        let mine = self.own(s).is_some_and(|o| o.contains(d));
        let accepted = sig.accept.get(&k).is_some_and(|a| a.contains(d))
            || (mine && sig.self_accept.contains(k));
        let denied =
            sig.deny.get(&k).is_some_and(|a| a.contains(d)) || (mine && sig.self_deny.contains(k));
        s != d && accepted && !denied && self.device(d).is_some()
    }

    /// Everything a source may reach, adjacent port classes merged, sorted.
    pub fn grants(&self, src_id: &str) -> Vec<Grant<'_>> {
        let Some(s) = self.device_index(src_id) else {
            return Vec::new();
        };
        let mut per: BTreeMap<(usize, Proto), Vec<PortRange>> = BTreeMap::new();
        for (k, set) in self.row(s) {
            for d in set.iter() {
                for &(proto, range) in &self.classes[k] {
                    per.entry((d, proto)).or_default().push(range);
                }
            }
        }
        let mut out = Vec::new();
        for ((d, proto), ranges) in per {
            let Some(dst) = self.slots.ids[d].as_deref() else {
                continue;
            };
            for ports in merge(ranges) {
                out.push(Grant { dst, proto, ports });
            }
        }
        out.sort();
        out
    }

    /// The signature of a source, for callers that share work between its devices.
    pub(super) fn sig_index(&self, s: usize) -> Option<usize> {
        *self.sigs.of_slot.get(s)?
    }

    /// What every device of signature `i` reaches, leaving out `autogroup:self` and the
    /// source itself: destination id → (proto, ranges), ranges merged.
    pub(super) fn shared_access(&self, i: usize) -> BTreeMap<&str, Vec<(Proto, PortRange)>> {
        let Some(sig) = self.sigs.all.get(i).and_then(Option::as_ref) else {
            return BTreeMap::new();
        };
        // A flat list sorted once: tens of thousands of entries per signature.
        let mut flat: Vec<(usize, Proto, PortRange)> = Vec::new();
        for (&k, set) in &sig.accept {
            let mut set = set.clone();
            if let Some(d) = sig.deny.get(&k) {
                set.subtract(d);
            }
            for d in set.iter() {
                flat.extend(
                    self.classes[k]
                        .iter()
                        .map(|&(proto, range)| (d, proto, range)),
                );
            }
        }
        flat.sort_unstable();
        let mut out: BTreeMap<&str, Vec<(Proto, PortRange)>> = BTreeMap::new();
        for run in flat.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let (d, proto) = (run[0].0, run[0].1);
            if let Some(dst) = self.slots.ids[d].as_deref() {
                let ranges = merge(run.iter().map(|e| e.2).collect());
                let to = out.entry(dst).or_default();
                to.extend(ranges.into_iter().map(|r| (proto, r)));
            }
        }
        out
    }

    /// How big the compiled form is: for metrics and the benchmark.
    pub fn stats(&self) -> Stats {
        let (mut rows, mut sets, mut bytes) = (0, 0, 0);
        for (_, sig) in self.sigs.live() {
            rows += 1;
            for set in sig.accept.values().chain(sig.deny.values()) {
                sets += 1;
                bytes += set.bytes();
            }
        }
        for r in &self.rules {
            bytes += r.src.bytes() + r.dst.bytes();
        }
        Stats {
            devices: self.slots.index.len(),
            port_classes: self.classes.len(),
            signatures: rows,
            row_sets: sets,
            set_bytes: bytes,
        }
    }

    /// The classes (as bits) on which the device in slot `s` reaches the one in slot `d`.
    pub(super) fn classes_to(&self, s: usize, d: usize) -> DeviceSet {
        let mut ks = DeviceSet::default();
        let Some(sig) = self.sigs.of(s) else {
            return ks;
        };
        if s == d || self.device(d).is_none() {
            return ks;
        }
        // Whether `d` is in the source's own set does not depend on the class.
        let mine = self.own(s).is_some_and(|o| o.contains(d));
        let mut denied = DeviceSet::default();
        for (side, bits) in [(&sig.accept, &mut ks), (&sig.deny, &mut denied)] {
            for (&k, set) in side {
                if set.contains(d) {
                    bits.insert(k);
                }
            }
        }
        if mine {
            ks.union_with(&sig.self_accept);
            denied.union_with(&sig.self_deny);
        }
        ks.subtract(&denied);
        ks
    }

    /// The ports of a set of classes, ranges merged.
    pub(super) fn ports_of(&self, ks: &DeviceSet) -> Vec<(Proto, PortRange)> {
        let mut per: BTreeMap<Proto, Vec<PortRange>> = BTreeMap::new();
        for k in ks.iter() {
            for &(proto, range) in &self.classes[k] {
                per.entry(proto).or_default().push(range);
            }
        }
        per.into_iter()
            .flat_map(|(proto, ranges)| merge(ranges).into_iter().map(move |r| (proto, r)))
            .collect()
    }

    /// The devices that may reach `dst_id` on some port (for its agent: whose keys to
    /// accept), sorted by id.
    pub fn inbound(&self, dst_id: &str) -> Vec<&str> {
        let Some(x) = self.device_index(dst_id) else {
            return Vec::new();
        };
        let live: Vec<usize> = self.sigs.live().map(|(i, _)| i).collect();
        let mut all = DeviceSet::default();
        for set in self.inbound_by_class(x, &live).values() {
            all.union_with(set);
        }
        self.ids(&all).into_iter().collect()
    }

    /// Every device `id` may reach or be reached by: whose peer maps show it, so whose maps
    /// change when its address or key does.
    pub fn peers(&self, id: &str) -> BTreeSet<&str> {
        let mut out: BTreeSet<&str> = self.grants(id).into_iter().map(|g| g.dst).collect();
        out.extend(self.inbound(id));
        out
    }

    pub(super) fn ids(&self, set: &DeviceSet) -> BTreeSet<&str> {
        set.iter()
            .filter_map(|s| self.slots.ids.get(s)?.as_deref())
            .collect()
    }
}

/// Sorted, adjacent and overlapping ranges joined.
fn merge(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort();
    let mut merged: Vec<PortRange> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(last.hi) + 1 >= u32::from(r.lo) => last.hi = last.hi.max(r.hi),
            _ => merged.push(r),
        }
    }
    merged
}
