//! Compiling a policy against a fleet: for every source device, which destination devices it
//! may reach on which protocol and ports. Accept rules minus deny rules (deny overrides
//! accept), default deny; postures gate sources only.
//!
//! # The compiled form, and why it can be updated incrementally
//! - Devices get dense indices; sets of devices are bitsets ([`DeviceSet`]).
//! - Ports become **port classes**: disjoint (proto, port range) pieces cut at every rule's
//!   boundaries, so within a piece every rule either matches all ports or none; pieces that
//!   every rule treats alike are merged into one class (atomic predicates).
//! - Each rule compiles to its source set (after posture gating), its destination set (plus a
//!   flag for `autogroup:self`) and the classes it covers.
//! - Rules are indexed by the principals they name on each side ([`Compiled::rules_naming`]):
//!   when a device's tags, owner, groups or posture change, only the rules naming its old or
//!   new principals (plus `*`, autogroups and CIDRs) can change, and only its row (as a source)
//!   and its bit in other rows (as a destination) need recomputing — never all pairs.
//! - A row is sparse over classes: `class → destinations`, empty classes absent.
//!
//! A device never needs the policy to reach itself, so `s → s` is never in the relation.
//!
//! Cost: a row costs, per rule its source matches, one n/64-word union per class the rule
//! covers; thanks to the merging, a class exists only where rules disagree.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;

use super::bits::DeviceSet;
use super::fleet::{Device, Fleet};
use super::model::{Action, Policy, PortRange, Principal, Proto};

/// One thing a source may reach: a destination device on a protocol and a port range
/// (`PortRange::ALL` for ICMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant<'a> {
    pub dst: &'a str,
    pub proto: Proto,
    pub ports: PortRange,
}

#[derive(Debug, Clone)]
pub struct Compiled {
    device_ids: Vec<String>,
    index: HashMap<String, usize>,
    /// Port classes that every rule treats alike, each a list of (proto, range) pieces;
    /// pieces no rule covers are left out.
    classes: Vec<Vec<(Proto, PortRange)>>,
    rules: Vec<CompiledRule>,
    src_index: BTreeMap<Principal, Vec<usize>>,
    dst_index: BTreeMap<Principal, Vec<usize>>,
    rows: Vec<BTreeMap<usize, DeviceSet>>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    action: Action,
    src: DeviceSet,
    dst: DeviceSet,
    to_self: bool,
    classes: Vec<usize>,
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

impl Compiled {
    pub fn new(policy: &Policy, fleet: &Fleet) -> Compiled {
        let n = fleet.devices.len();
        let hosts = host_resolver(policy);
        // Merge the pieces every rule treats alike (atomic predicates): there are only as
        // many classes as distinct sets of rules covering some port.
        let mut by_rules: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
        let mut classes: Vec<Vec<(Proto, PortRange)>> = Vec::new();
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
        let users: HashMap<&str, &super::fleet::User> =
            fleet.users.iter().map(|u| (u.id.as_str(), u)).collect();
        let user = |id: &str| users.get(id).copied();
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
        let mut rules = Vec::new();
        let mut src_index: BTreeMap<Principal, Vec<usize>> = BTreeMap::new();
        let mut dst_index: BTreeMap<Principal, Vec<usize>> = BTreeMap::new();
        for (ri, r) in policy.rules.iter().enumerate() {
            let mut src = select(&r.src);
            for (i, d) in fleet.devices.iter().enumerate() {
                if !passes_rule_postures(policy, ri, d) {
                    src.remove(i);
                }
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
        let mut compiled = Compiled {
            device_ids: fleet.devices.iter().map(|d| d.id.clone()).collect(),
            index: fleet
                .devices
                .iter()
                .enumerate()
                .map(|(i, d)| (d.id.clone(), i))
                .collect(),
            classes,
            rules,
            src_index,
            dst_index,
            rows: Vec::new(),
        };
        // autogroup:self, per owner: the owner's untagged devices, computed once.
        let mut owned: HashMap<&str, DeviceSet> = HashMap::new();
        for (i, d) in fleet.devices.iter().enumerate() {
            if let (false, Some(o)) = (d.is_tagged(), d.owner_id.as_deref()) {
                owned
                    .entry(o)
                    .or_insert_with(|| DeviceSet::empty(n))
                    .insert(i);
            }
        }
        let none = DeviceSet::empty(n);
        compiled.rows = (0..n)
            .map(|s| {
                let d = &fleet.devices[s];
                let own = match (d.is_tagged(), d.owner_id.as_deref()) {
                    (false, Some(o)) => owned.get(o).unwrap_or(&none),
                    _ => &none,
                };
                compiled.row(s, own)
            })
            .collect();
        compiled
    }

    /// One source's row: for each class, accepted destinations minus denied ones.
    fn row(&self, s: usize, own: &DeviceSet) -> BTreeMap<usize, DeviceSet> {
        let n = self.device_ids.len();
        let mut accept: BTreeMap<usize, DeviceSet> = BTreeMap::new();
        let mut deny: BTreeMap<usize, DeviceSet> = BTreeMap::new();
        for r in self.rules.iter().filter(|r| r.src.contains(s)) {
            let mut dst = r.dst.clone();
            if r.to_self {
                dst.union_with(own);
            }
            let side = match r.action {
                Action::Accept => &mut accept,
                Action::Deny => &mut deny,
            };
            for &k in &r.classes {
                side.entry(k)
                    .or_insert_with(|| DeviceSet::empty(n))
                    .union_with(&dst);
            }
        }
        accept.retain(|k, set| {
            if let Some(d) = deny.get(k) {
                set.subtract(d);
            }
            set.remove(s);
            !set.is_empty()
        });
        accept
    }

    /// The devices compiled over, by id, in index order.
    pub fn device_ids(&self) -> impl Iterator<Item = &str> {
        self.device_ids.iter().map(String::as_str)
    }

    pub fn device_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Whether source device `s` may reach `d` with `proto` on `port` (ignored for ICMP).
    pub fn allows(&self, s: usize, d: usize, proto: Proto, port: u16) -> bool {
        let Some(row) = self.rows.get(s) else {
            return false;
        };
        self.classes.iter().enumerate().any(|(k, pieces)| {
            row.get(&k).is_some_and(|set| set.contains(d))
                && pieces
                    .iter()
                    .any(|&(p, range)| p == proto && (!proto.has_ports() || range.contains(port)))
        })
    }

    /// Everything a source may reach, adjacent port classes merged, sorted.
    pub fn grants(&self, src_id: &str) -> Vec<Grant<'_>> {
        let Some(row) = self.device_index(src_id).and_then(|s| self.rows.get(s)) else {
            return Vec::new();
        };
        let mut per: BTreeMap<(usize, Proto), Vec<PortRange>> = BTreeMap::new();
        for (&k, set) in row {
            for d in set.iter() {
                for &(proto, range) in &self.classes[k] {
                    per.entry((d, proto)).or_default().push(range);
                }
            }
        }
        let mut out = Vec::new();
        for ((d, proto), mut ranges) in per {
            ranges.sort();
            let mut merged: Vec<PortRange> = Vec::new();
            for r in ranges {
                match merged.last_mut() {
                    Some(last) if u32::from(last.hi) + 1 >= u32::from(r.lo) => {
                        last.hi = last.hi.max(r.hi)
                    }
                    _ => merged.push(r),
                }
            }
            for ports in merged {
                out.push(Grant {
                    dst: &self.device_ids[d],
                    proto,
                    ports,
                });
            }
        }
        out
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
