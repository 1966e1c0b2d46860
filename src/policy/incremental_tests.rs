//! Incremental peer maps against a full recompile: random small fleets and policies, then a
//! random sequence of device and person changes (tags, owners, groups, blocked, signals).
//! After each step the updated [`Compiled`] must equal one compiled from scratch over the
//! same fleet, and every device whose grants or inbound changed must be in the returned set.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::model::*;
use super::reference::{allowed, fleet, policy, probe_ports};
use super::{Change, Compiled, Device, Impact, Signals, User, impact};

#[derive(Debug, Clone)]
enum Op {
    Device(Device),
    RemoveDevice(String),
    User(User),
    RemoveUser(String),
}

fn device() -> impl Strategy<Value = Device> {
    (
        0usize..10,
        prop::sample::subsequence(vec!["tag:a", "tag:b", "tag:c"], 0..=2),
        prop::option::of(0usize..5),
        0u8..8,
        any::<bool>(),
        prop::sample::select(vec!["6.0", "6.1", "6.2"]),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(i, tags, owner, ip, disk, ver, blocked)| Device {
            id: format!("d{i}"),
            ipv4: Ipv4Addr::new(10, 0, 0, ip),
            tags: tags.into_iter().map(str::to_owned).collect(),
            owner_id: owner.map(|o| format!("u{o}")),
            owner_email: owner.map(|o| format!("u{o}@example.com")),
            signals: Signals {
                os: "linux".into(),
                os_version: Version::parse(ver),
                disk_encrypted: disk,
                ..Signals::default()
            },
            blocked,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let user = (
        0usize..5,
        prop::sample::subsequence(vec!["g0", "g1", "g2"], 0..=3),
    )
        .prop_map(|(i, groups)| User {
            id: format!("u{i}"),
            email: format!("u{i}@example.com"),
            groups: groups.into_iter().map(str::to_owned).collect(),
        });
    prop_oneof![
        6 => device().prop_map(Op::Device),
        2 => (0usize..10).prop_map(|i| Op::RemoveDevice(format!("d{i}"))),
        3 => user.prop_map(Op::User),
        1 => (0usize..5).prop_map(|i| Op::RemoveUser(format!("u{i}"))),
    ]
}

type Grants = Vec<(String, Proto, PortRange)>;

/// Every device's grants and inbound, by id.
fn maps(c: &Compiled) -> BTreeMap<String, (Grants, Vec<String>)> {
    c.device_ids()
        .map(|id| {
            let grants = c
                .grants(id)
                .into_iter()
                .map(|g| (g.dst.to_owned(), g.proto, g.ports))
                .collect();
            let inbound = c.inbound(id).into_iter().map(str::to_owned).collect();
            (id.to_owned(), (grants, inbound))
        })
        .collect()
}

fn partial_self_rule() -> Rule {
    let at = |p: Principal| At::new(p, "", Pos::default());
    Rule {
        name: At::new("partial-self".to_owned(), "", Pos::default()),
        action: Action::Accept,
        src: vec![at(Principal::Cidr("10.0.0.0/30".parse().unwrap()))],
        dst: vec![at(Principal::SelfDevices)],
        protos: vec![Proto::Tcp],
        ports: vec![At::new(PortRange { lo: 22, hi: 22 }, "", Pos::default())],
        posture: None,
        pointer: String::new(),
        pos: Pos::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn incremental_updates_equal_a_full_recompile(
        policy in policy(),
        fleet in fleet(),
        ops in prop::collection::vec(op(), 1..12),
        candidate in policy(),
        partial_self in 0..3,
    ) {
        let mut policy = policy;
        // autogroup:self from only some of a person's devices: whether the others are
        // reached shows only in those sources' rows, not in the changed device's own; alone,
        // no other rule's change touches those rows.
        match partial_self {
            1 => policy.rules.push(partial_self_rule()),
            2 => policy.rules = vec![partial_self_rule()],
            _ => {}
        }
        let mut c = Compiled::new(&policy, &fleet);
        for op in ops {
            let before = maps(&c);
            let previous = c.clone();
            let changed = match op.clone() {
                Op::Device(d) => c.upsert_device(d),
                Op::RemoveDevice(id) => c.remove_device(&id),
                Op::User(u) => c.upsert_user(u),
                Op::RemoveUser(id) => c.remove_user(&id),
            };
            let after = maps(&c);
            prop_assert_eq!(&after, &maps(&Compiled::new(&policy, c.fleet())), "after {:?}", op);
            // The same step as a swap of whole compiles (fleets differ by the step).
            let swapped = previous.clone().replace(Compiled::new(&policy, c.fleet()));
            let ids: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            for id in ids {
                if before.get(id) != after.get(id) {
                    prop_assert!(changed.contains(id), "{} changed but was not returned after {:?}", id, op);
                    prop_assert!(swapped.contains(id), "{} changed but replace missed it after {:?}", id, op);
                }
            }
        }
        // A new policy over the live fleet reports every map it changes.
        let mut swapped = c.clone();
        let reported = swapped.set_policy(std::sync::Arc::new(candidate.clone()));
        let fresh = maps(&Compiled::new(&candidate, c.fleet()));
        prop_assert_eq!(&maps(&swapped), &fresh);
        let now = maps(&c);
        for (id, m) in &now {
            if fresh.get(id) != Some(m) {
                prop_assert!(reported.contains(id), "{} changed under the new policy", id);
            }
        }
        // A live compile (slots with holes) diffs against a fresh one by device id.
        prop_assert_eq!(impact(&c, &Compiled::new(&policy, c.fleet())), Impact::default());
        let next = Compiled::new(&candidate, c.fleet());
        let change = impact(&c, &next);
        let (now, then, touched) = (maps(&c), maps(&next), change.devices());
        for id in now.keys() {
            if now.get(id) != then.get(id) {
                prop_assert!(touched.contains(id.as_str()), "{}", id);
            }
        }
        // And the slots still answer `allows` as the brute force does.
        let f = c.fleet();
        let listed = |changes: &[Change], s: &str, d: &str, proto: Proto, port: u16| {
            changes.iter().any(|c| {
                c.src == s && c.dst == d && c.proto == proto && (proto == Proto::Icmp || c.ports.contains(port))
            })
        };
        let ports: BTreeSet<u16> = probe_ports(&policy).union(&probe_ports(&candidate)).copied().collect();
        for &port in &ports {
            for proto in Proto::ALL {
                for (s, src) in f.devices.iter().enumerate() {
                    for (d, dst) in f.devices.iter().enumerate() {
                        let (Some(si), Some(di)) = (c.device_index(&src.id), c.device_index(&dst.id)) else {
                            panic!("a device of the fleet has no slot");
                        };
                        let old = allowed(&policy, f, s, d, proto, port);
                        prop_assert_eq!(c.allows(si, di, proto, port), old);
                        let new = allowed(&candidate, f, s, d, proto, port);
                        prop_assert_eq!(listed(&change.gained, &src.id, &dst.id, proto, port), new && !old);
                        prop_assert_eq!(listed(&change.lost, &src.id, &dst.id, proto, port), old && !new);
                    }
                }
            }
        }
    }
}

#[test]
fn one_tag_change_returns_only_the_devices_whose_access_changed() {
    let text = "version: 1\nrules:\n  - { name: a, action: accept, src: [group:g0], dst: [tag:a], ports: [22] }\n  - { name: b, action: accept, src: [group:g1], dst: [tag:b], ports: [22] }\n";
    let parsed = super::parse(text, super::Format::Yaml).unwrap();
    let owned = |i: u8, o: &str| Device {
        id: format!("p{i}"),
        ipv4: Ipv4Addr::new(10, 0, 1, i),
        tags: BTreeSet::new(),
        owner_id: Some(o.into()),
        owner_email: None,
        signals: Signals::default(),
        blocked: false,
    };
    let server = |i: u8, tag: &str| Device {
        id: format!("s{i}"),
        tags: BTreeSet::from([tag.to_owned()]),
        owner_id: None,
        ..owned(i, "")
    };
    let user = |id: &str, g: &str| User {
        id: id.into(),
        email: format!("{id}@example.com"),
        groups: BTreeSet::from([g.to_owned()]),
    };
    let fleet = super::Fleet {
        devices: vec![
            owned(0, "alice"),
            owned(1, "bob"),
            owned(2, "carol"),
            server(3, "tag:a"),
            server(4, "tag:b"),
            server(5, "tag:c"),
        ],
        users: vec![user("alice", "g0"), user("bob", "g1"), user("carol", "g2")],
    };
    let mut c = Compiled::new(&parsed.policy, &fleet);
    let changed = c.upsert_device(server(5, "tag:a"));
    assert_eq!(changed, BTreeSet::from(["p0".to_owned(), "s5".to_owned()]));
    // A signal no rule looks at changes nobody's access but the device's own record.
    let mut quiet = server(4, "tag:b");
    quiet.signals.firewall = true;
    assert_eq!(c.upsert_device(quiet), BTreeSet::from(["s4".to_owned()]));
    // Bob moves from g1 to g0: he loses s4 and gains s3 and s5.
    let changed = c.upsert_user(user("bob", "g0"));
    assert_eq!(changed, ["p1", "s3", "s4", "s5"].map(str::to_owned).into());
    assert_eq!(c.inbound("s5"), vec!["p0", "p1"]);
}

#[test]
fn an_owner_change_reaches_the_old_and_new_owners_other_devices() {
    // p1 is no source of the rule, so only the others' rows say whether they reach it.
    let text = "version: 1\nrules:\n  - { name: mine, action: accept, src: [10.0.1.0/32, 10.0.1.2/32], dst: [autogroup:self] }\n";
    let parsed = super::parse(text, super::Format::Yaml).unwrap();
    let owned = |i: u8, o: &str| Device {
        id: format!("p{i}"),
        ipv4: Ipv4Addr::new(10, 0, 1, i),
        tags: BTreeSet::new(),
        owner_id: Some(o.into()),
        owner_email: None,
        signals: Signals::default(),
        blocked: false,
    };
    let fleet = super::Fleet {
        devices: vec![owned(0, "alice"), owned(1, "alice"), owned(2, "bob")],
        users: Vec::new(),
    };
    let mut c = Compiled::new(&parsed.policy, &fleet);
    assert_eq!(c.inbound("p1"), vec!["p0"]);
    let changed = c.upsert_device(owned(1, "bob"));
    assert_eq!(changed, ["p0", "p1", "p2"].map(str::to_owned).into());
    assert_eq!(c.inbound("p1"), vec!["p2"]);
    // Blocked, it leaves bob's map.
    let mut blocked = owned(1, "bob");
    blocked.blocked = true;
    assert_eq!(
        c.upsert_device(blocked),
        ["p1", "p2"].map(str::to_owned).into()
    );
    assert!(c.inbound("p1").is_empty() && c.grants("p2").is_empty());
}
