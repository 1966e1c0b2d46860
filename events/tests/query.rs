//! Filtered reads of one organization (the audit log's index queries) equal a brute-force
//! filter of its events, for random histories and random queries, before and after a reopen.

mod common;

use events::event::{DeviceTagged, DeviceUntagged};
use events::query::Query;
use events::store::Direction;
use events::{Actor, AppendRequest, Event, Log, NewEvent, Recorded};
use proptest::prelude::*;

use common::{assert_sound, open};

const ORGS: [&str; 2] = ["org_a", "org_b"];
const ACTORS: [&str; 3] = ["tok_1", "tok_2", "system"];

#[derive(Debug, Clone)]
struct Op {
    org: usize,
    device: usize,
    untag: bool,
    actor: usize,
}

fn op() -> impl Strategy<Value = Op> {
    (0..2usize, 0..4usize, any::<bool>(), 0..3usize).prop_map(|(org, device, untag, actor)| Op {
        org,
        device,
        untag,
        actor,
    })
}

fn append(log: &Log, op: &Op) {
    let device_id = format!("dev_{}{}", ORGS[op.org], op.device);
    let event = if op.untag {
        Event::DeviceUntagged(DeviceUntagged {
            device_id: device_id.clone(),
            tags: vec![],
        })
    } else {
        Event::DeviceTagged(DeviceTagged {
            device_id: device_id.clone(),
            tags: vec![],
        })
    };
    let actor = match ACTORS[op.actor] {
        "system" => Actor::system("tests"),
        id => Actor {
            kind: events::ActorKind::Token,
            id: id.into(),
            description: "a token".into(),
        },
    };
    log.append_blocking(AppendRequest {
        org_id: ORGS[op.org].into(),
        actor,
        request_id: "req".into(),
        expectations: Vec::new(),
        events: vec![NewEvent::new(format!("device:{device_id}"), event)],
        idempotency: None,
    })
    .expect("appends");
}

#[derive(Debug, Clone)]
enum Q {
    All,
    Type(bool),
    Actor(usize),
    Device(usize, usize),
    And(Vec<Q>),
    Or(Vec<Q>),
}

fn q() -> impl Strategy<Value = Q> {
    let leaf = prop_oneof![
        Just(Q::All),
        any::<bool>().prop_map(Q::Type),
        (0..3usize).prop_map(Q::Actor),
        (0..2usize, 0..5usize).prop_map(|(o, d)| Q::Device(o, d)),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(Q::And),
            prop::collection::vec(inner, 1..3).prop_map(Q::Or),
        ]
    })
}

fn to_query(q: &Q) -> Query {
    match q {
        Q::All => Query::All,
        Q::Type(untag) => Query::Type(
            if *untag {
                "device.untagged"
            } else {
                "device.tagged"
            }
            .into(),
        ),
        Q::Actor(a) => Query::Actor(ACTORS[*a].into()),
        // Device 4 never exists; devices of the other organization must match nothing.
        Q::Device(o, d) => Query::Stream(format!("device:dev_{}{d}", ORGS[*o])),
        Q::And(qs) => Query::And(qs.iter().map(to_query).collect()),
        Q::Or(qs) => Query::Or(qs.iter().map(to_query).collect()),
    }
}

fn matches(q: &Q, r: &Recorded) -> bool {
    match q {
        Q::All => true,
        Q::Type(untag) => (r.envelope.event_type == "device.untagged") == *untag,
        Q::Actor(a) => r.envelope.actor.id == ACTORS[*a],
        Q::Device(o, d) => r.envelope.stream == format!("device:dev_{}{d}", ORGS[*o]),
        Q::And(qs) => qs.iter().all(|q| matches(q, r)),
        Q::Or(qs) => qs.iter().any(|q| matches(q, r)),
    }
}

fn check(log: &Log, q: &Q, org: usize, from: u64, to: u64, backward: bool, limit: usize) {
    let all = log.read_org(ORGS[org], 1, u64::MAX, usize::MAX).unwrap();
    let mut want: Vec<u64> = all
        .iter()
        .filter(|r| (from..=to).contains(&r.envelope.org_seq) && matches(q, r))
        .map(|r| r.envelope.org_seq)
        .collect();
    if backward {
        want.reverse();
    }
    want.truncate(limit);
    let direction = if backward {
        Direction::Backward
    } else {
        Direction::Forward
    };
    let got: Vec<u64> = log
        .query_org(ORGS[org], &to_query(q), from, to, direction, limit)
        .unwrap()
        .iter()
        .map(|r| r.envelope.org_seq)
        .collect();
    assert_eq!(
        got, want,
        "{q:?} on {} in {from}..={to}, backward {backward}",
        ORGS[org]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn queries_equal_a_brute_force_filter(
        ops in prop::collection::vec(op(), 1..80),
        queries in prop::collection::vec((q(), 0..2usize, 0..90u64, 0..90u64, any::<bool>(), 1..100usize), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        for o in &ops {
            append(&log, o);
        }
        for (q, org, a, b, backward, limit) in &queries {
            check(&log, q, *org, *a.min(b), *a.max(b), *backward, *limit);
        }
        assert_sound(&log);
        log.close();
        // The postings come back from the index snapshot written at close.
        let log = open(dir.path());
        for (q, org, a, b, backward, limit) in &queries {
            check(&log, q, *org, *a.min(b), *a.max(b), *backward, *limit);
        }
        assert_sound(&log);
    }
}

#[test]
fn the_first_event_at_or_after_a_time_is_found_by_binary_search() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..40 {
        append(
            &log,
            &Op {
                org: i % 2,
                device: 0,
                untag: false,
                actor: 0,
            },
        );
    }
    let events = log.read_org(ORGS[0], 1, u64::MAX, usize::MAX).unwrap();
    for r in &events {
        let seq = log
            .org_seq_at_time(ORGS[0], r.envelope.recorded_at)
            .unwrap();
        let first_same = events
            .iter()
            .find(|e| e.envelope.recorded_at == r.envelope.recorded_at)
            .unwrap();
        assert_eq!(seq, first_same.envelope.org_seq);
    }
    assert_eq!(log.org_seq_at_time(ORGS[0], i64::MIN).unwrap(), 1);
    assert_eq!(
        log.org_seq_at_time(ORGS[0], i64::MAX).unwrap(),
        events.len() as u64 + 1
    );
    assert_eq!(log.org_seq_at_time("org_none", 0).unwrap(), 1);
}
