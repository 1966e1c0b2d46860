//! Keeping a [`Compiled`] up to date as devices and people change, without recompiling.
//!
//! A device change can only change pairs that involve the device itself: groups, tags,
//! owners, postures and `autogroup:self` of every other device stay as they were. So an
//! update re-evaluates that one device against every rule (its bit in each rule's source and
//! destination sets), refreshes its bit in the rows of the signatures holding a rule whose
//! verdict on it changed, and moves it to the signature of its new source rules. What
//! changed is then exact, not guessed: its own row before and after, and who reaches it
//! (per port class) before and after, over the signatures that could differ.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::bits::DeviceSet;
use super::eval::{Compiled, own_key, passes_rule_postures};
use super::fleet::{Device, Fleet, User};
use super::impact::impact;
use super::model::{At, Policy, Principal};

/// One device against every rule: the source rules it matches (sorted), and per rule
/// whether it is a destination.
struct Verdicts {
    src: Vec<u32>,
    dst: Vec<bool>,
}

impl Compiled {
    /// Add or replace a device (matched by id). Returns the ids of every device whose peer
    /// map may have changed: the device itself, every source whose grants to it changed (on
    /// any port), and every destination it gained or lost access to (on any port).
    pub fn upsert_device(&mut self, device: Device) -> BTreeSet<String> {
        let id = device.id.clone();
        let mut out = self.change(&id, Some(device));
        out.insert(id);
        out
    }

    /// Remove a device. Returns it and every device that reached it or that it reached;
    /// empty if it was unknown.
    pub fn remove_device(&mut self, id: &str) -> BTreeSet<String> {
        if self.device_index(id).is_none() {
            return BTreeSet::new();
        }
        let mut out = self.change(id, None);
        out.insert(id.to_owned());
        out
    }

    /// Compile another policy over the same fleet, in place. Returns the devices whose peer
    /// maps changed (a superset: a device reached on other ports by the same peers is in it).
    pub fn set_policy(&mut self, policy: Arc<Policy>) -> BTreeSet<String> {
        let next = Compiled::from_parts(policy, self.fleet.clone());
        self.replace(next)
    }

    /// Swap in a compile from scratch (a new policy, or a fleet rebuilt after a change that
    /// touches many devices at once, such as new posture requirements). Returns the devices
    /// whose peer maps changed, as [`Compiled::set_policy`] does; fleets may differ, and a
    /// device in only one of them counts as changed.
    pub fn replace(&mut self, next: Compiled) -> BTreeSet<String> {
        let mut changed: BTreeSet<String> = impact(self, &next)
            .devices()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let (old, new): (BTreeSet<&str>, BTreeSet<&str>) =
            (self.device_ids().collect(), next.device_ids().collect());
        changed.extend(old.symmetric_difference(&new).map(|id| (*id).to_owned()));
        *self = next;
        changed
    }

    /// Add or replace a person (their groups changed): re-evaluates their devices. Returns
    /// the devices whose peer maps changed.
    pub fn upsert_user(&mut self, user: User) -> BTreeSet<String> {
        let id = user.id.clone();
        match self.users.get(&id) {
            Some(&i) => self.fleet.users[i] = user,
            None => {
                self.users.insert(id.clone(), self.fleet.users.len());
                self.fleet.users.push(user);
            }
        }
        self.reevaluate_owned_by(&id)
    }

    /// Remove a person: their devices stay, but no `group:` selects them any more.
    pub fn remove_user(&mut self, id: &str) -> BTreeSet<String> {
        let Some(i) = self.users.remove(id) else {
            return BTreeSet::new();
        };
        self.fleet.users.swap_remove(i);
        if let Some(moved) = self.fleet.users.get(i) {
            self.users.insert(moved.id.clone(), i);
        }
        self.reevaluate_owned_by(id)
    }

    fn reevaluate_owned_by(&mut self, owner: &str) -> BTreeSet<String> {
        let devices: Vec<Device> = self
            .by_owner
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|&s| self.device(s).cloned())
            .collect();
        let mut out = BTreeSet::new();
        for d in devices {
            let id = d.id.clone();
            out.append(&mut self.change(&id, Some(d)));
        }
        out
    }

    fn verdicts(&self, d: &Device) -> Verdicts {
        let hosts = super::eval::host_resolver(&self.policy);
        let user = |id: &str| self.user(id);
        let sel = |p: &Principal| Fleet::selects_with(p, d, &hosts, &user);
        let mut cache = BTreeMap::new();
        let mut out = Verdicts {
            src: Vec::new(),
            dst: Vec::with_capacity(self.policy.rules.len()),
        };
        for (ri, r) in self.policy.rules.iter().enumerate() {
            if any_of(&r.src, &mut cache, &sel) && passes_rule_postures(&self.policy, ri, d) {
                out.src.push(ri as u32);
            }
            out.dst.push(any_of(&r.dst, &mut cache, &sel));
        }
        out
    }

    /// Replace (`Some`) or remove (`None`) the device `id`; the ids of the other devices
    /// whose peer maps changed, and `id` itself if its own map changed.
    fn change(&mut self, id: &str, new: Option<Device>) -> BTreeSet<String> {
        let existing = self.device_index(id);
        let slot = existing.unwrap_or_else(|| {
            self.slots
                .free
                .last()
                .copied()
                .unwrap_or(self.slots.ids.len())
        });
        let rules = self.rules.len();
        let old_dst: Vec<bool> = (0..rules)
            .map(|r| self.rules[r].dst.contains(slot))
            .collect();
        let old_key: Box<[u32]> = self.sigs.key(slot).into();
        let old_own = existing
            .and_then(|s| self.device(s))
            .and_then(own_key)
            .map(str::to_owned);
        let new_verdicts = match &new {
            Some(d) => self.verdicts(d),
            None => Verdicts {
                src: Vec::new(),
                dst: vec![false; rules],
            },
        };
        let new_own = new.as_ref().and_then(own_key).map(str::to_owned);
        let flipped: Vec<usize> = (0..rules)
            .filter(|&r| old_dst[r] != new_verdicts.dst[r])
            .collect();
        let own_changed = old_own != new_own;
        let touched = |c: &Compiled| -> BTreeSet<usize> {
            let mut t: BTreeSet<usize> = flipped
                .iter()
                .flat_map(|&r| c.sigs.of_rule[r].iter().copied())
                .collect();
            if own_changed {
                t.extend(c.sigs.with_self.iter().copied());
            }
            t
        };
        let old_out = existing.map(|s| self.row(s)).unwrap_or_default();
        let old_in = match existing {
            Some(s) => self.inbound_by_class(s, &touched(self)),
            None => BTreeMap::new(),
        };

        // The record, the slot and the per-owner indexes.
        let old_owner = existing
            .and_then(|s| self.device(s))
            .and_then(|d| d.owner_id.clone());
        self.place(id, slot, new.clone());
        if let Some(o) = &old_owner
            && let Some(set) = self.by_owner.get_mut(o)
        {
            set.remove(&slot);
            if set.is_empty() {
                self.by_owner.remove(o);
            }
        }
        if let Some(o) = new.as_ref().and_then(|d| d.owner_id.clone()) {
            self.by_owner.entry(o).or_default().insert(slot);
        }
        if let Some(o) = &old_own
            && let Some(set) = self.owned.get_mut(o)
        {
            set.remove(slot);
            if set.is_empty() {
                self.owned.remove(o);
            }
        }
        if let Some(o) = &new_own {
            self.owned.entry(o.clone()).or_default().insert(slot);
        }

        // The rules' sets, then the rows holding a rule whose destinations changed.
        for &r in &flipped {
            self.rules[r].dst.set(slot, new_verdicts.dst[r]);
        }
        for &r in old_key.iter().chain(&new_verdicts.src) {
            self.rules[r as usize].src.remove(slot);
        }
        for &r in &new_verdicts.src {
            self.rules[r as usize].src.insert(slot);
        }
        let mut classes_of: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for &r in &flipped {
            for &i in &self.sigs.of_rule[r] {
                classes_of
                    .entry(i)
                    .or_default()
                    .extend(self.rules[r].classes.iter().copied());
            }
        }
        for (i, ks) in classes_of {
            if let Some(sig) = self.sigs.all[i].as_mut() {
                for k in ks {
                    sig.refresh(slot, k, &self.rules);
                }
            }
        }
        let new_key = new_verdicts.src.into_boxed_slice();
        if new_key != old_key || existing.is_none() {
            self.sigs.leave(slot);
            self.sigs.join(slot, new_key, &self.rules);
        }

        let (new_out, new_in) = if new.is_some() {
            (self.row(slot), self.inbound_by_class(slot, &touched(self)))
        } else {
            self.release(id, slot);
            (BTreeMap::new(), BTreeMap::new())
        };
        let out_diff = differences(&old_out, &new_out);
        let in_diff = differences(&old_in, &new_in);
        let mut diff = out_diff.clone();
        diff.union_with(&in_diff);
        let mut out: BTreeSet<String> = self.ids(&diff).into_iter().map(str::to_owned).collect();
        if existing.is_none() || new.is_none() || !out_diff.is_empty() || !in_diff.is_empty() {
            out.insert(id.to_owned());
        }
        out
    }

    /// Put the record in its slot (taking a new slot for a new device), or take it out of
    /// the dense device list; the slot itself is freed by [`Compiled::release`].
    fn place(&mut self, id: &str, slot: usize, new: Option<Device>) {
        let existing = self.slots.index.contains_key(id);
        match (existing, new) {
            (true, Some(d)) => {
                let p = self.slots.pos[slot];
                self.fleet.devices[p] = d;
            }
            (false, Some(d)) => {
                if self.slots.free.last() == Some(&slot) {
                    self.slots.free.pop();
                }
                if slot == self.slots.ids.len() {
                    self.slots.ids.push(None);
                    self.slots.pos.push(0);
                }
                self.slots.ids[slot] = Some(id.to_owned());
                self.slots.pos[slot] = self.fleet.devices.len();
                self.slots.slot_at.push(slot);
                self.slots.index.insert(id.to_owned(), slot);
                self.fleet.devices.push(d);
            }
            (true, None) => {
                let p = self.slots.pos[slot];
                self.fleet.devices.swap_remove(p);
                self.slots.slot_at.swap_remove(p);
                if let Some(&moved) = self.slots.slot_at.get(p) {
                    self.slots.pos[moved] = p;
                }
            }
            (false, None) => {}
        }
    }

    fn release(&mut self, id: &str, slot: usize) {
        self.slots.index.remove(id);
        self.slots.ids[slot] = None;
        self.slots.free.push(slot);
    }
}

/// Whether one of `ps` selects the device, each principal asked once per device.
fn any_of<'p>(
    ps: &'p [At<Principal>],
    cache: &mut BTreeMap<&'p Principal, bool>,
    sel: &dyn Fn(&Principal) -> bool,
) -> bool {
    ps.iter()
        .any(|p| *cache.entry(&p.value).or_insert_with(|| sel(&p.value)))
}

/// The slots that are in a class's set on one side and not the other.
fn differences(a: &BTreeMap<usize, DeviceSet>, b: &BTreeMap<usize, DeviceSet>) -> DeviceSet {
    let mut out = DeviceSet::default();
    let ks: BTreeSet<&usize> = a.keys().chain(b.keys()).collect();
    for k in ks {
        let mut x = a.get(k).cloned().unwrap_or_default();
        if let Some(y) = b.get(k) {
            x.toggle_with(y);
        }
        out.union_with(&x);
    }
    out
}
