//! The policy's own tests against the brute-force oracle, and a guard that the random
//! fleets and policies are not trivial (a generator that only ever produced "nothing is
//! allowed" would make the equivalence proptests pass vacuously).

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use super::checks::run_tests;
use super::model::*;
use super::reference::{allowed, fleet, in_principal, policy, principal, probe_ports};
use super::{Change, Compiled, Fleet, impact};

fn at<T>(value: T) -> At<T> {
    At::new(value, "", Pos::default())
}

fn policy_test() -> impl Strategy<Value = PolicyTest> {
    let target = || (principal(true), 1u16..40).prop_map(|(dst, port)| at(Target { dst, port }));
    (
        principal(false),
        prop::sample::subsequence(Proto::ALL.to_vec(), 0..=3),
        prop::collection::vec(target(), 0..3),
        prop::collection::vec(target(), 0..3),
    )
        .prop_map(|(src, protos, accept, deny)| PolicyTest {
            name: at("t".to_owned()),
            src: at(src),
            protos,
            accept,
            deny,
            pointer: String::new(),
            pos: Pos::default(),
        })
}

/// The verdict, asked directly: every source device must reach every destination device
/// (accept) or none of them (deny); a part matching no pair checks nothing.
fn naive_passes(policy: &Policy, fleet: &Fleet, t: &PolicyTest) -> bool {
    let protos: &[Proto] = if t.protos.is_empty() {
        &Proto::ALL
    } else {
        &t.protos
    };
    let n = fleet.devices.len();
    let sources: Vec<usize> = (0..n)
        .filter(|&s| in_principal(policy, fleet, &t.src.value, &fleet.devices[s]))
        .collect();
    let targets = t
        .accept
        .iter()
        .map(|a| (a, true))
        .chain(t.deny.iter().map(|d| (d, false)));
    for (target, expect) in targets {
        for &s in &sources {
            for d in (0..n).filter(|&d| d != s) {
                let (src, dst) = (&fleet.devices[s], &fleet.devices[d]);
                let selected = match &target.value.dst {
                    Principal::SelfDevices => {
                        !src.blocked
                            && !dst.blocked
                            && src.tags.is_empty()
                            && dst.tags.is_empty()
                            && src.owner_id.is_some()
                            && src.owner_id == dst.owner_id
                    }
                    p => in_principal(policy, fleet, p, dst),
                };
                if !selected {
                    continue;
                }
                let reach = protos
                    .iter()
                    .any(|&p| allowed(policy, fleet, s, d, p, target.value.port));
                if reach != expect {
                    return false;
                }
            }
        }
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn test_verdicts_agree_with_brute_force(
        mut policy in policy(),
        fleet in fleet(),
        tests in prop::collection::vec(policy_test(), 1..4),
    ) {
        policy.tests = tests;
        let compiled = Compiled::new(&policy, &fleet);
        let outcomes = run_tests(&policy, &fleet, &compiled);
        for (t, outcome) in policy.tests.iter().zip(&outcomes) {
            prop_assert_eq!(outcome.passed(), naive_passes(&policy, &fleet, t), "{:?}", outcome);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_impact_of_a_change_is_the_difference_of_the_two_relations(
        before in policy(),
        after in policy(),
        fleet in fleet(),
    ) {
        let change = impact(&Compiled::new(&before, &fleet), &Compiled::new(&after, &fleet));
        let listed = |changes: &[Change], s: &str, d: &str, proto: Proto, port: u16| {
            changes.iter().any(|c| {
                c.src == s && c.dst == d && c.proto == proto && (proto == Proto::Icmp || c.ports.contains(port))
            })
        };
        let ports: Vec<u16> = probe_ports(&before).union(&probe_ports(&after)).copied().collect();
        for &port in &ports {
            for proto in Proto::ALL {
                for (s, src) in fleet.devices.iter().enumerate() {
                    for (d, dst) in fleet.devices.iter().enumerate() {
                        let old = allowed(&before, &fleet, s, d, proto, port);
                        let new = allowed(&after, &fleet, s, d, proto, port);
                        prop_assert_eq!(listed(&change.gained, &src.id, &dst.id, proto, port), new && !old);
                        prop_assert_eq!(listed(&change.lost, &src.id, &dst.id, proto, port), old && !new);
                    }
                }
            }
        }
    }
}

#[test]
fn the_random_cases_both_allow_and_deny_often() {
    let mut runner = TestRunner::deterministic();
    let (mut allowing, mut overridden, cases) = (0, 0, 300);
    for _ in 0..cases {
        let p = policy().new_tree(&mut runner).unwrap().current();
        let f = fleet().new_tree(&mut runner).unwrap().current();
        let n = f.devices.len();
        let mut any_allowed = false;
        let mut any_overridden = false;
        for port in probe_ports(&p) {
            for s in 0..n {
                for d in 0..n {
                    any_allowed |= allowed(&p, &f, s, d, Proto::Tcp, port);
                    // An accept matched but a deny took it away.
                    let accepts = p
                        .rules
                        .iter()
                        .filter(|r| r.action == Action::Accept)
                        .cloned()
                        .collect();
                    let only_accepts = Policy {
                        rules: accepts,
                        ..p.clone()
                    };
                    any_overridden |= s != d
                        && allowed(&only_accepts, &f, s, d, Proto::Tcp, port)
                        && !allowed(&p, &f, s, d, Proto::Tcp, port);
                }
            }
        }
        allowing += usize::from(any_allowed);
        overridden += usize::from(any_overridden);
    }
    assert!(
        allowing * 4 > cases,
        "only {allowing} of {cases} cases allow anything"
    );
    assert!(
        overridden * 30 > cases,
        "only {overridden} of {cases} cases exercise deny"
    );
}
