//! A deliberately naive evaluator, written apart from [`super::eval`] so that the two can
//! only agree by both being right: for every device pair, every probe port and every rule,
//! ask the question directly. The proptest compares them on random small fleets and policies.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::model::*;
use super::{Compiled, Device, Fleet, Signals, User};

pub(super) fn in_principal(policy: &Policy, fleet: &Fleet, p: &Principal, d: &Device) -> bool {
    if d.blocked {
        return false;
    }
    let untagged = d.tags.is_empty();
    let ip = IpAddr::V4(d.ipv4);
    match p {
        Principal::Any => true,
        Principal::User(u) => {
            untagged && (d.owner_id.as_ref() == Some(u) || d.owner_email.as_ref() == Some(u))
        }
        Principal::Group(g) => {
            untagged
                && fleet
                    .users
                    .iter()
                    .any(|u| Some(&u.id) == d.owner_id.as_ref() && u.groups.contains(g))
        }
        Principal::Tag(t) => d.tags.contains(t),
        Principal::Host(h) => policy
            .hosts
            .iter()
            .any(|a| &a.name.value == h && a.net.contains(&ip)),
        Principal::Cidr(n) => n.contains(&ip),
        Principal::Member => untagged && d.owner_id.is_some(),
        Principal::Tagged => !untagged,
        Principal::SelfDevices | Principal::Token(_) => false,
    }
}

fn passes(posture: &Posture, d: &Device) -> bool {
    let s = &d.signals;
    let os_ok = match posture.min_os_version.get(&s.os) {
        None => true,
        Some(min) => matches!(&s.os_version, Some(v) if v >= min),
    };
    let client_ok = match &posture.min_client_version {
        None => true,
        Some(min) => matches!(&s.client_version, Some(v) if v >= min),
    };
    os_ok
        && client_ok
        && (posture.disk_encrypted != Some(true) || s.disk_encrypted)
        && (posture.firewall != Some(true) || s.firewall)
        && (posture.screen_lock != Some(true) || s.screen_lock)
}

fn hits(
    policy: &Policy,
    fleet: &Fleet,
    r: &Rule,
    s: &Device,
    d: &Device,
    proto: Proto,
    port: u16,
) -> bool {
    let postures = r.posture.as_ref().unwrap_or(&policy.default_posture);
    r.src
        .iter()
        .any(|p| in_principal(policy, fleet, &p.value, s))
        && postures.iter().all(|n| {
            policy
                .postures
                .iter()
                .any(|q| q.name.value == n.value && passes(q, s))
        })
        && r.dst.iter().any(|p| match p.value {
            Principal::SelfDevices => {
                !s.blocked
                    && !d.blocked
                    && s.tags.is_empty()
                    && d.tags.is_empty()
                    && s.owner_id.is_some()
                    && s.owner_id == d.owner_id
            }
            ref other => in_principal(policy, fleet, other, d),
        })
        && r.protos.contains(&proto)
        && (proto == Proto::Icmp || r.ports.iter().any(|p| p.value.contains(port)))
}

pub fn allowed(
    policy: &Policy,
    fleet: &Fleet,
    s: usize,
    d: usize,
    proto: Proto,
    port: u16,
) -> bool {
    let (src, dst) = (&fleet.devices[s], &fleet.devices[d]);
    let hit = |a: Action| {
        policy
            .rules
            .iter()
            .any(|r| r.action == a && hits(policy, fleet, r, src, dst, proto, port))
    };
    s != d && hit(Action::Accept) && !hit(Action::Deny)
}

/// Ports where a rule's verdict can change, and the extremes.
pub(super) fn probe_ports(policy: &Policy) -> BTreeSet<u16> {
    let mut out: BTreeSet<u16> = [1, 65535].into();
    for r in &policy.rules {
        for p in &r.ports {
            let (lo, hi) = (p.value.lo, p.value.hi);
            out.extend([lo.saturating_sub(1).max(1), lo, hi, hi.saturating_add(1)]);
        }
    }
    out
}

const TAGS: [&str; 3] = ["tag:a", "tag:b", "tag:c"];
const GROUPS: [&str; 3] = ["g0", "g1", "g2"];

fn at<T>(value: T) -> At<T> {
    At::new(value, "", Pos::default())
}

pub(super) fn principal(dst: bool) -> impl Strategy<Value = Principal> {
    let n = if dst { 10 } else { 9 };
    (0..n, 0usize..4, 0u8..8, 30u8..33).prop_map(|(k, i, host, len)| match k {
        0 => Principal::Any,
        1 => Principal::User(format!("u{i}")),
        2 => Principal::User(format!("u{i}@example.com")),
        3 => Principal::Group(GROUPS[i % 3].into()),
        4 => Principal::Tag(TAGS[i % 3].into()),
        5 => Principal::Host(["h0", "h1", "nowhere", "h0"][i].into()),
        6 => Principal::Cidr(
            format!("10.0.0.{host}/{len}")
                .parse::<ipnet::IpNet>()
                .unwrap()
                .trunc(),
        ),
        7 => Principal::Member,
        8 => Principal::Tagged,
        _ => Principal::SelfDevices,
    })
}

fn port_range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        1 => Just(PortRange::ALL),
        4 => (1u16..30, 0u16..10).prop_map(|(lo, w)| PortRange { lo, hi: lo + w }),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        prop::collection::vec(principal(false), 1..3),
        prop::collection::vec(principal(true), 1..3),
        prop::sample::subsequence(Proto::ALL.to_vec(), 1..=3),
        prop::collection::vec(port_range(), 1..3),
        prop_oneof![
            4 => Just(None),
            2 => prop::sample::subsequence(vec!["p0", "p1"], 0..=2).prop_map(Some),
            1 => Just(Some(vec!["ghost"])),
        ],
    )
        .prop_map(|(accept, src, dst, protos, ports, posture)| Rule {
            name: at("r".to_owned()),
            action: if accept { Action::Accept } else { Action::Deny },
            src: src.into_iter().map(at).collect(),
            dst: dst.into_iter().map(at).collect(),
            protos,
            ports: ports.into_iter().map(at).collect(),
            posture: posture.map(|ps| ps.into_iter().map(|p| at(p.to_owned())).collect()),
            pointer: String::new(),
            pos: Pos::default(),
        })
}

pub(super) fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::collection::vec(rule(), 1..7),
        prop::bool::weighted(0.25),
    )
        .prop_map(|(rules, default)| {
            let mut os = BTreeMap::new();
            os.insert("linux".to_owned(), Version::parse("6.1").unwrap());
            Policy {
                version: 1,
                hosts: vec![
                    HostAlias {
                        name: at("h0".into()),
                        net: "10.0.0.0/30".parse().unwrap(),
                    },
                    HostAlias {
                        name: at("h1".into()),
                        net: "10.0.0.6/32".parse().unwrap(),
                    },
                ],
                postures: vec![
                    Posture {
                        name: at("p0".into()),
                        disk_encrypted: Some(true),
                        ..Posture::default()
                    },
                    Posture {
                        name: at("p1".into()),
                        min_os_version: os,
                        ..Posture::default()
                    },
                ],
                default_posture: if default {
                    vec![at("p0".into())]
                } else {
                    Vec::new()
                },
                rules,
                ..Policy::default()
            }
        })
}

pub(super) fn fleet() -> impl Strategy<Value = Fleet> {
    let device = (
        prop::sample::subsequence(TAGS.to_vec(), 0..=2),
        prop::option::of(0usize..4),
        0u8..8,
        any::<bool>(),
        prop::sample::select(vec!["linux", "macos"]),
        prop::sample::select(vec!["6.0", "6.1", "6.2"]),
        prop::bool::weighted(0.1),
    );
    let user = prop::sample::subsequence(GROUPS.to_vec(), 0..=3);
    (
        prop::collection::vec(device, 1..=8),
        prop::collection::vec(user, 4),
    )
        .prop_map(|(devices, users)| Fleet {
            devices: devices
                .into_iter()
                .enumerate()
                .map(|(i, (tags, owner, ip, disk, os, ver, blocked))| Device {
                    id: format!("d{i}"),
                    ipv4: Ipv4Addr::new(10, 0, 0, ip),
                    tags: tags.into_iter().map(str::to_owned).collect(),
                    owner_id: owner.map(|o| format!("u{o}")),
                    owner_email: owner.map(|o| format!("u{o}@example.com")),
                    signals: Signals {
                        os: os.into(),
                        os_version: Version::parse(ver),
                        disk_encrypted: disk,
                        ..Signals::default()
                    },
                    blocked,
                })
                .collect(),
            users: users
                .into_iter()
                .enumerate()
                .map(|(i, groups)| User {
                    id: format!("u{i}"),
                    email: format!("u{i}@example.com"),
                    groups: groups.into_iter().map(str::to_owned).collect(),
                })
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn the_compiler_agrees_with_brute_force(policy in policy(), fleet in fleet()) {
        let compiled = Compiled::new(&policy, &fleet);
        let n = fleet.devices.len();
        for port in probe_ports(&policy) {
            for proto in Proto::ALL {
                for s in 0..n {
                    for d in 0..n {
                        prop_assert_eq!(
                            compiled.allows(s, d, proto, port),
                            allowed(&policy, &fleet, s, d, proto, port),
                            "{} -> {} {}/{}", s, d, proto, port
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn grants_list_exactly_what_is_allowed(policy in policy(), fleet in fleet()) {
        let compiled = Compiled::new(&policy, &fleet);
        for (s, src) in fleet.devices.iter().enumerate() {
            let grants = compiled.grants(&src.id);
            for port in probe_ports(&policy) {
                for proto in Proto::ALL {
                    for (d, dst) in fleet.devices.iter().enumerate() {
                        let listed = grants.iter().any(|g| {
                            g.dst == dst.id && g.proto == proto && (proto == Proto::Icmp || g.ports.contains(port))
                        });
                        prop_assert_eq!(listed, allowed(&policy, &fleet, s, d, proto, port));
                    }
                }
            }
        }
    }
}
