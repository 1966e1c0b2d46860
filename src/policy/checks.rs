//! A policy's own tests, run against a compiled policy: every device of the test's source
//! must reach each `accept` destination, and none may reach any `deny` destination. Tests run
//! on lint, and (a later step) again whenever tags, groups or posture change.

use std::collections::HashMap;

use super::eval::{Compiled, host_resolver};
use super::fleet::{Device, Fleet, User};
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
/// same fleet (for a live compile: `run_tests(c.policy(), c.fleet(), &c)`).
pub fn run_tests(policy: &Policy, fleet: &Fleet, compiled: &Compiled) -> Vec<TestOutcome> {
    // People indexed once: a `group:` test over 10,000 devices would otherwise scan every
    // person per device.
    let users: HashMap<&str, &User> = fleet.users.iter().map(|u| (u.id.as_str(), u)).collect();
    let hosts = host_resolver(policy);
    let ctx = Ctx {
        fleet,
        compiled,
        hosts: &hosts,
        users: &users,
    };
    policy.tests.iter().map(|t| ctx.run_test(t)).collect()
}

struct Ctx<'a> {
    fleet: &'a Fleet,
    compiled: &'a Compiled,
    hosts: &'a dyn Fn(&str) -> Option<ipnet::IpNet>,
    users: &'a HashMap<&'a str, &'a User>,
}

impl<'a> Ctx<'a> {
    /// The devices `p` selects, with their slots (positions in the fleet are not slots once
    /// a live compile had removals).
    fn select(&self, p: &Principal) -> Vec<(usize, &'a Device)> {
        let user = |id: &str| self.users.get(id).copied();
        self.fleet
            .devices
            .iter()
            .filter(|d| Fleet::selects_with(p, d, self.hosts, &user))
            .filter_map(|d| Some((self.compiled.device_index(&d.id)?, d)))
            .collect()
    }

    fn run_test(&self, t: &PolicyTest) -> TestOutcome {
        let mut out = TestOutcome {
            name: t.name.value.clone(),
            pointer: t.pointer.clone(),
            pos: t.pos,
            failures: Vec::new(),
            vacuous: Vec::new(),
        };
        let sources = self.select(&t.src.value);
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
            self.check(&sources, protos, target, expect, &mut out);
        }
        out
    }

    fn check(
        &self,
        sources: &[(usize, &Device)],
        protos: &[Proto],
        target: &At<Target>,
        expect: bool,
        out: &mut TestOutcome,
    ) {
        let Target { dst, port } = &target.value;
        // `autogroup:self` depends on the source; anything else is selected once.
        let fixed = match dst {
            Principal::SelfDevices => None,
            p => Some(self.select(p)),
        };
        let mut pairs = 0;
        for &(s, src) in sources {
            let mine: Vec<(usize, &Device)>;
            let dsts: &[(usize, &Device)] = match &fixed {
                Some(d) => d,
                None => {
                    mine = self
                        .fleet
                        .devices
                        .iter()
                        .filter(|d| Fleet::same_owner(src, d))
                        .filter_map(|d| Some((self.compiled.device_index(&d.id)?, d)))
                        .collect();
                    &mine
                }
            };
            for &(d, dev) in dsts {
                if s == d {
                    continue;
                }
                pairs += 1;
                let reach: Vec<Proto> = protos
                    .iter()
                    .copied()
                    .filter(|&p| self.compiled.allows(s, d, p, *port))
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
}
