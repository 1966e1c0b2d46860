//! The policy language over a large organization (issue 12 item 11): 500 named rules over
//! 10,000 devices of 2,000 people in 200 groups, with 20 tags.
//!
//! Measured in-process (criterion) through `quickztna::policy`:
//! - `parse_yaml`: the policy text (YAML) into the positioned model;
//! - `lint`: every check, the policy's tests included (which compiles it once);
//! - `compile`: the whole reachability relation (DESIGN §4: under 1 s);
//! - `impact`: the access delta between the policy and one with a rule changed (the diff);
//! - `upsert_device_tag_change`: one server's tag changed on a compiled policy
//!   (`Compiled::upsert_device`), the incremental peer-map update (target: under 10 ms);
//! - `upsert_user_group_change`: one person moved to another group (`Compiled::upsert_user`),
//!   which re-evaluates each of their devices.
//!
//! Run: `cargo bench --bench policy`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use criterion::{Criterion, criterion_group, criterion_main};
use quickztna::policy::{
    Compiled, Device, Fleet, Format, Signals, User, Version, impact, lint, parse,
};

const DEVICES: usize = 10_000;
const USERS: usize = 2_000;
const GROUPS: usize = 200;
const TAGS: usize = 20;
const RULES: usize = 500;

/// A fixed fleet: one device in three tagged (servers), the rest owned by people; each person
/// in two groups.
fn fleet() -> Fleet {
    let users = (0..USERS)
        .map(|u| User {
            id: format!("usr_{u}"),
            email: format!("person{u}@example.com"),
            groups: [
                format!("g{}", u % GROUPS),
                format!("g{}", (u * 7 + 3) % GROUPS),
            ]
            .into_iter()
            .collect(),
        })
        .collect();
    let devices = (0..DEVICES)
        .map(|d| {
            let tagged = d % 3 == 0;
            Device {
                id: format!("dev_{d}"),
                ipv4: Ipv4Addr::from(0x6440_0000u32 + d as u32 + 1),
                tags: if tagged {
                    BTreeSet::from([format!("tag:t{}", d % TAGS)])
                } else {
                    BTreeSet::new()
                },
                owner_id: (!tagged).then(|| format!("usr_{}", d % USERS)),
                owner_email: (!tagged).then(|| format!("person{}@example.com", d % USERS)),
                signals: Signals {
                    os: if d % 2 == 0 { "linux" } else { "macos" }.into(),
                    os_version: Version::parse(if d % 5 == 0 { "5.10" } else { "6.6" }),
                    client_version: Version::parse("1.4.2"),
                    disk_encrypted: d % 7 != 0,
                    firewall: true,
                    screen_lock: d % 11 != 0,
                },
                blocked: false,
            }
        })
        .collect();
    Fleet { devices, users }
}

/// 500 rules: group → tag services, a few deny overrides, people to their own devices.
fn policy_text(variant: usize) -> String {
    let mut s = String::from("version: 1\ntag_owners:\n");
    for t in 0..TAGS {
        s.push_str(&format!("  tag:t{t}: [group:g{}]\n", t % GROUPS));
    }
    s.push_str("hosts:\n  db-subnet: 10.20.0.0/16\n");
    s.push_str(
        "postures:\n  baseline: { min_os_version: { linux: \"6.1\", macos: \"14.0\" }, disk_encrypted: true }\n",
    );
    s.push_str("rules:\n");
    s.push_str("  - { name: self, action: accept, src: [autogroup:member], dst: [autogroup:self], ports: [\"*\"] }\n");
    for r in 1..RULES {
        let (action, ports) = if r % 25 == 0 {
            ("deny", "[22]".to_owned())
        } else {
            (
                "accept",
                format!("[{}, {}-{}]", 22 + r % 3, 8000 + r, 8010 + r),
            )
        };
        let posture = if r % 4 == 0 {
            ", posture: [baseline]"
        } else {
            ""
        };
        let port_shift = if r == 1 { variant } else { 0 };
        s.push_str(&format!(
            "  - {{ name: r{r}, action: {action}, src: [group:g{}], dst: [tag:t{}], proto: tcp, ports: {ports}{posture} }}\n",
            (r + port_shift) % GROUPS,
            r % TAGS
        ));
    }
    s.push_str(
        "tests:\n  - { name: g1-reaches-t1, src: \"group:g1\", accept: [\"tag:t1:8001\"] }\n",
    );
    s
}

fn bench(c: &mut Criterion) {
    let fleet = fleet();
    let groups: BTreeSet<String> = (0..GROUPS).map(|g| format!("g{g}")).collect();
    let text = policy_text(0);
    let parsed = parse(&text, Format::Yaml).expect("the bench policy parses");
    let changed = parse(&policy_text(1), Format::Yaml).expect("the changed policy parses");
    let before = Compiled::new(&parsed.policy, &fleet);
    let after = Compiled::new(&changed.policy, &fleet);
    let delta = impact(&before, &after);
    eprintln!("policy bench: compiled {:?}", before.stats());
    eprintln!(
        "policy bench: {} rules, {} devices; a one-rule change gains {} and loses {} grants",
        parsed.policy.rules.len(),
        fleet.devices.len(),
        delta.gained.len(),
        delta.lost.len()
    );

    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.bench_function("parse_yaml", |b| {
        b.iter(|| parse(&text, Format::Yaml).expect("parses"))
    });
    g.bench_function("lint", |b| b.iter(|| lint(&parsed, &groups, &fleet)));
    g.bench_function("compile", |b| {
        b.iter(|| Compiled::new(&parsed.policy, &fleet))
    });
    g.bench_function("impact", |b| b.iter(|| impact(&before, &after)));
    // Each iteration is a real change: the server flips between two tags, the person
    // between two group pairs.
    let mut live = Compiled::new(&parsed.policy, &fleet);
    let server = fleet.devices[0].clone();
    let mut flip = false;
    let (mut by_tag, mut by_group) = (Vec::new(), Vec::new());
    g.bench_function("upsert_device_tag_change", |b| {
        b.iter(|| {
            flip = !flip;
            let mut d = server.clone();
            d.tags = BTreeSet::from([if flip { "tag:t5" } else { "tag:t0" }.to_owned()]);
            by_tag.push(live.upsert_device(d).len());
        })
    });
    let person = fleet.users[1].clone();
    let mut moved = false;
    g.bench_function("upsert_user_group_change", |b| {
        b.iter(|| {
            moved = !moved;
            let mut u = person.clone();
            if moved {
                u.groups = BTreeSet::from(["g100".to_owned(), "g101".to_owned()]);
            }
            by_group.push(live.upsert_user(u).len());
        })
    });
    eprintln!(
        "policy bench: peer maps changed per tag change {:?}..={:?}, per group change {:?}..={:?}",
        by_tag.iter().min(),
        by_tag.iter().max(),
        by_group.iter().min(),
        by_group.iter().max()
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
