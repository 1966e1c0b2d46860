//! A policy's own tests, run against a compiled policy: every device of the test's source
//! must reach each `accept` destination, and none may reach any `deny` destination. Tests run
//! on lint, and (a later step) again whenever tags, groups or posture change.

use super::eval::{Compiled, host_resolver};
use super::fleet::{Device, Fleet};
use super::model::{At, Policy, PolicyTest, Pos, Principal, Proto, Target};

/// The verdict of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub name: String,
    pub pointer: String,
    pub pos: Pos,
    /// Empty when the test passes.
    pub failures: Vec<Failure>,
    /// Parts that checked nothing (no device matched); reported, but not a failure, so a new
    /// organization with no devices yet can still apply its policy.
    pub vacuous: Vec<Failure>,
}

impl TestOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub pointer: String,
    pub pos: Pos,
    pub message: String,
}

/// Run every test of `policy` over `fleet`, with `compiled` the same policy compiled over the
/// same fleet.
pub fn run_tests(policy: &Policy, fleet: &Fleet, compiled: &Compiled) -> Vec<TestOutcome> {
    policy
        .tests
        .iter()
        .map(|t| run_test(policy, fleet, compiled, t))
        .collect()
}

fn run_test(policy: &Policy, fleet: &Fleet, compiled: &Compiled, t: &PolicyTest) -> TestOutcome {
    let hosts = host_resolver(policy);
    let mut out = TestOutcome {
        name: t.name.value.clone(),
        pointer: t.pointer.clone(),
        pos: t.pos,
        failures: Vec::new(),
        vacuous: Vec::new(),
    };
    // Positions in the fleet are not slots once the compiled fleet had removals.
    let sources: Vec<(usize, &Device)> = fleet
        .devices
        .iter()
        .filter(|d| fleet.selects(&t.src.value, d, &hosts))
        .filter_map(|d| Some((compiled.device_index(&d.id)?, d)))
        .collect();
    if sources.is_empty() {
        out.vacuous.push(Failure {
            pointer: t.src.pointer.clone(),
            pos: t.src.pos,
            message: format!(
                "'{}' matches no device, so the test checks nothing",
                t.src.value
            ),
        });
        return out;
    }
    let protos: &[Proto] = if t.protos.is_empty() {
        &Proto::ALL
    } else {
        &t.protos
    };
    for (target, expect) in t
        .accept
        .iter()
        .map(|a| (a, true))
        .chain(t.deny.iter().map(|d| (d, false)))
    {
        check(
            fleet, compiled, &hosts, &sources, protos, target, expect, &mut out,
        );
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn check(
    fleet: &Fleet,
    compiled: &Compiled,
    hosts: &dyn Fn(&str) -> Option<ipnet::IpNet>,
    sources: &[(usize, &Device)],
    protos: &[Proto],
    target: &At<Target>,
    expect: bool,
    out: &mut TestOutcome,
) {
    let Target { dst, port } = &target.value;
    let mut pairs = 0;
    for &(s, src) in sources {
        for dev in &fleet.devices {
            let selected = match dst {
                Principal::SelfDevices => Fleet::same_owner(src, dev),
                p => fleet.selects(p, dev, hosts),
            };
            let Some(d) = compiled.device_index(&dev.id) else {
                continue;
            };
            if !selected || s == d {
                continue;
            }
            pairs += 1;
            let reach: Vec<Proto> = protos
                .iter()
                .copied()
                .filter(|&p| compiled.allows(s, d, p, *port))
                .collect();
            let message = if expect && reach.is_empty() {
                format!(
                    "{} cannot reach {} on port {port}, but the test expects it to",
                    src.id, dev.id
                )
            } else if !expect && !reach.is_empty() {
                format!(
                    "{} can reach {} on {}/{port}, but the test expects it to be denied",
                    src.id, dev.id, reach[0]
                )
            } else {
                continue;
            };
            out.failures.push(Failure {
                pointer: target.pointer.clone(),
                pos: target.pos,
                message,
            });
            // One counterexample per destination entry is enough to act on.
            return;
        }
    }
    if pairs == 0 {
        out.vacuous.push(Failure {
            pointer: target.pointer.clone(),
            pos: target.pos,
            message: format!("'{dst}' matches no device, so this check tests nothing"),
        });
    }
}
