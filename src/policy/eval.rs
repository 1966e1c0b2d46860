//! Compiling a policy against a fleet: for every source device, which destination devices it
//! may reach on which protocol and ports. Accept rules minus deny rules (deny overrides
//! accept), default deny; postures gate sources only; a blocked device takes part in nothing.
//!
//! # The compiled form
//! - Devices live in **slots** (dense indices that a removal does not renumber; freed slots
//!   are reused); sets of devices are bitsets ([`DeviceSet`]) over slots.
//! - Ports become **port classes**: disjoint (proto, port range) pieces cut at every rule's
//!   boundaries, merged when every rule treats them alike (atomic predicates), so a class
//!   exists only where rules disagree.
//! - Each rule compiles to its source set (after posture gating), its destination set (plus a
//!   flag for `autogroup:self`) and the classes it covers.
//! - Devices matched by the same set of source rules share one **signature** and one row
//!   ([`super::rows`]): 10,000 devices in 200 groups make a few hundred rows, not 10,000.
//!   `autogroup:self` depends on the owner, so it stays out of the shared row as a per-class
//!   flag, applied when a device's row is read.
//! - A device change re-evaluates that device against every rule, flips its bit in the rules'
//!   sets and in the rows of the signatures naming a rule whose verdict on it changed, and
//!   moves it to its new signature ([`super::incremental`]): never an all-pairs rescan.
//!
//! A device never needs the policy to reach itself, so `s → s` is never in the relation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ipnet::IpNet;

use super::bits::DeviceSet;
use super::fleet::{Device, Fleet, User};
use super::model::{Action, Policy, PortRange, Principal, Proto};
use super::rows::Sigs;

/// A port class: the (proto, range) pieces every rule treats alike.
pub(super) type Class = Vec<(Proto, PortRange)>;

/// One thing a source may reach: a destination device on a protocol and a port range
/// (`PortRange::ALL` for ICMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant<'a> {
    pub dst: &'a str,
    pub proto: Proto,
    pub ports: PortRange,
}

/// A policy compiled over a fleet it owns, kept up to date device by device.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub(super) policy: Arc<Policy>,
    /// `fleet.devices` stays dense: a removal moves the last device into the hole, so a
    /// device's position is not its slot (see [`Slots`]).
    pub(super) fleet: Fleet,
    pub(super) slots: Slots,
    /// Person id → position in `fleet.users`.
    pub(super) users: HashMap<String, usize>,
    /// Port classes that every rule treats alike, each a list of (proto, range) pieces;
    /// pieces no rule covers are left out.
    pub(super) classes: Vec<Class>,
    /// Every piece with its class, sorted, to find the class of one port.
    pub(super) pieces: Vec<(Proto, PortRange, usize)>,
    pub(super) rules: Vec<CompiledRule>,
    src_index: BTreeMap<Principal, Vec<usize>>,
    dst_index: BTreeMap<Principal, Vec<usize>>,
    pub(super) sigs: Sigs,
    /// `autogroup:self` per owner id: the owner's untagged, unblocked devices.
    pub(super) owned: HashMap<String, DeviceSet>,
    /// Every device per owner id, tagged or not: whose membership a person's groups decide.
    pub(super) by_owner: HashMap<String, BTreeSet<usize>>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Slots {
    /// Slot → device id; `None` for a free slot.
    pub ids: Vec<Option<String>>,
    /// Slot → position in `fleet.devices` (meaningful for an occupied slot).
    pub pos: Vec<usize>,
    /// Position in `fleet.devices` → slot.
    pub slot_at: Vec<usize>,
    pub free: Vec<usize>,
    pub index: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
pub(super) struct CompiledRule {
    pub action: Action,
    pub src: DeviceSet,
    pub dst: DeviceSet,
    pub to_self: bool,
    /// Sorted.
    pub classes: Vec<usize>,
}

/// Resolve a `host:` alias to its prefix.
pub fn host_resolver(policy: &Policy) -> impl Fn(&str) -> Option<IpNet> + '_ {
    |name| policy.host(name).map(|h| h.net)
}

/// The disjoint port classes of a policy: tcp and udp cut at every rule boundary, one ICMP
/// class.
pub fn port_classes(policy: &Policy) -> Vec<(Proto, PortRange)> {
    let mut cuts = vec![1u32, 65536];
    for r in &policy.rules {
        for p in &r.ports {
            cuts.push(u32::from(p.value.lo));
            cuts.push(u32::from(p.value.hi) + 1);
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        for w in cuts.windows(2) {
            // Both bounds are within 1..=65536 by construction.
            let lo = u16::try_from(w[0]).unwrap_or(u16::MAX);
            let hi = u16::try_from(w[1] - 1).unwrap_or(u16::MAX);
            out.push((proto, PortRange { lo, hi }));
        }
    }
    out.push((Proto::Icmp, PortRange::ALL));
    out
}

/// Whether a rule of `policy` at `rule` covers the class.
fn rule_covers(policy: &Policy, rule: usize, (proto, range): (Proto, PortRange)) -> bool {
    let r = &policy.rules[rule];
    r.protos.contains(&proto)
        && (!proto.has_ports()
            || r.ports
                .iter()
                .any(|p| p.value.lo <= range.lo && range.hi <= p.value.hi))
}

/// Whether the device passes every posture the rule requires. An unknown posture name
/// (a lint error) admits nobody: fail closed.
pub fn passes_rule_postures(policy: &Policy, rule: usize, d: &Device) -> bool {
    policy
        .required_postures(&policy.rules[rule])
        .iter()
        .all(|name| policy.posture(&name.value).is_some_and(|p| d.passes(p)))
}

/// Merge the pieces every rule treats alike: there are only as many classes as distinct
/// sets of rules covering some port. Returns the classes and, per rule, its sorted classes.
fn merged_classes(policy: &Policy) -> (Vec<Class>, Vec<Vec<usize>>) {
    let mut by_rules: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
    let mut classes: Vec<Class> = Vec::new();
    let mut rule_classes: Vec<Vec<usize>> = vec![Vec::new(); policy.rules.len()];
    for piece in port_classes(policy) {
        let covering: Vec<usize> = (0..policy.rules.len())
            .filter(|&ri| rule_covers(policy, ri, piece))
            .collect();
        if covering.is_empty() {
            continue;
        }
        let next = classes.len();
        let k = *by_rules.entry(covering.clone()).or_insert(next);
        if k == next {
            classes.push(Vec::new());
            for &ri in &covering {
                rule_classes[ri].push(k);
            }
        }
        classes[k].push(piece);
    }
    (classes, rule_classes)
}

/// The owner whose `autogroup:self` set holds the device, if any.
pub(super) fn own_key(d: &Device) -> Option<&str> {
    (!d.blocked && !d.is_tagged())
        .then_some(d.owner_id.as_deref())
        .flatten()
}

impl Compiled {
    /// Compile `policy` over a copy of `fleet`; device `i` of the fleet gets slot `i`
    /// (what [`Compiled::allows`] takes). Device ids must be unique.
    pub fn new(policy: &Policy, fleet: &Fleet) -> Compiled {
        Compiled::from_parts(Arc::new(policy.clone()), fleet.clone())
    }

    /// [`Compiled::new`] without copying: the server keeps the policy in an `Arc` and hands
    /// over the fleet it built.
    pub fn from_parts(policy: Arc<Policy>, fleet: Fleet) -> Compiled {
        let n = fleet.devices.len();
        let (classes, mut rule_classes) = merged_classes(&policy);
        let mut pieces: Vec<(Proto, PortRange, usize)> = classes
            .iter()
            .enumerate()
            .flat_map(|(k, ps)| ps.iter().map(move |&(p, r)| (p, r, k)))
            .collect();
        pieces.sort();
        let users: HashMap<String, usize> = fleet
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.id.clone(), i))
            .collect();
        let (rules, src_index, dst_index) = {
            let user = |id: &str| users.get(id).map(|&i| &fleet.users[i]);
            let hosts = host_resolver(&policy);
            // Each distinct principal is resolved once, however many rules name it.
            let mut resolved: HashMap<Principal, DeviceSet> = HashMap::new();
            let mut select = |ps: &[super::model::At<Principal>]| {
                let mut set = DeviceSet::empty(n);
                for p in ps {
                    let one = resolved.entry(p.value.clone()).or_insert_with(|| {
                        let mut one = DeviceSet::empty(n);
                        for (i, d) in fleet.devices.iter().enumerate() {
                            if Fleet::selects_with(&p.value, d, &hosts, &user) {
                                one.insert(i);
                            }
                        }
                        one
                    });
                    set.union_with(one);
                }
                set
            };
            // Likewise each distinct list of required postures.
            let mut gates: HashMap<Vec<String>, DeviceSet> = HashMap::new();
            let mut rules = Vec::new();
            let mut src_index: BTreeMap<Principal, Vec<usize>> = BTreeMap::new();
            let mut dst_index: BTreeMap<Principal, Vec<usize>> = BTreeMap::new();
            for (ri, r) in policy.rules.iter().enumerate() {
                let mut src = select(&r.src);
                let names: Vec<String> = policy
                    .required_postures(r)
                    .iter()
                    .map(|n| n.value.clone())
                    .collect();
                if !names.is_empty() {
                    let gate = gates.entry(names).or_insert_with(|| {
                        let mut gate = DeviceSet::empty(n);
                        for (i, d) in fleet.devices.iter().enumerate() {
                            if passes_rule_postures(&policy, ri, d) {
                                gate.insert(i);
                            }
                        }
                        gate
                    });
                    src.intersect_with(gate);
                }
                for p in &r.src {
                    src_index.entry(p.value.clone()).or_default().push(ri);
                }
                for p in &r.dst {
                    dst_index.entry(p.value.clone()).or_default().push(ri);
                }
                rules.push(CompiledRule {
                    action: r.action,
                    src,
                    dst: select(&r.dst),
                    to_self: r.dst.iter().any(|p| p.value == Principal::SelfDevices),
                    classes: std::mem::take(&mut rule_classes[ri]),
                });
            }
            (rules, src_index, dst_index)
        };
        let mut of_device: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (ri, r) in rules.iter().enumerate() {
            for s in r.src.iter() {
                // Rule indices fit: a policy is at most a few MiB of text.
                of_device[s].push(ri as u32);
            }
        }
        let mut sigs = Sigs::new(rules.len());
        for (s, key) in of_device.into_iter().enumerate() {
            sigs.join(s, key.into_boxed_slice(), &rules);
        }
        let mut owned: HashMap<String, DeviceSet> = HashMap::new();
        let mut by_owner: HashMap<String, BTreeSet<usize>> = HashMap::new();
        for (i, d) in fleet.devices.iter().enumerate() {
            if let Some(o) = own_key(d) {
                owned.entry(o.to_owned()).or_default().insert(i);
            }
            if let Some(o) = &d.owner_id {
                by_owner.entry(o.clone()).or_default().insert(i);
            }
        }
        let slots = Slots {
            ids: fleet.devices.iter().map(|d| Some(d.id.clone())).collect(),
            pos: (0..n).collect(),
            slot_at: (0..n).collect(),
            free: Vec::new(),
            index: fleet
                .devices
                .iter()
                .enumerate()
                .map(|(i, d)| (d.id.clone(), i))
                .collect(),
        };
        Compiled {
            policy,
            fleet,
            slots,
            users,
            classes,
            pieces,
            rules,
            src_index,
            dst_index,
            sigs,
            owned,
            by_owner,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The shared policy, to compile a changed fleet or hand to another task.
    pub fn policy_arc(&self) -> Arc<Policy> {
        Arc::clone(&self.policy)
    }

    /// The fleet as it stands after every update. Positions in `fleet().devices` are not
    /// slots once a device was removed; use [`Compiled::device_index`].
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The devices compiled over, by id, in slot order.
    pub fn device_ids(&self) -> impl Iterator<Item = &str> {
        self.slots.ids.iter().filter_map(|id| id.as_deref())
    }

    /// The slot of a device, for [`Compiled::allows`].
    pub fn device_index(&self, id: &str) -> Option<usize> {
        self.slots.index.get(id).copied()
    }

    pub(super) fn device(&self, slot: usize) -> Option<&Device> {
        self.slots.ids.get(slot)?.as_ref()?;
        self.fleet.devices.get(self.slots.pos[slot])
    }

    pub(super) fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id).map(|&i| &self.fleet.users[i])
    }

    /// The indices of the rules that name `p` as a source (`true`) or destination.
    pub fn rules_naming(&self, p: &Principal, as_source: bool) -> &[usize] {
        let index = if as_source {
            &self.src_index
        } else {
            &self.dst_index
        };
        index.get(p).map_or(&[], Vec::as_slice)
    }
}
