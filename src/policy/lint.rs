//! Lint: every problem of a policy at once, each pointing at the node that causes it.
//! Structural problems come from parsing; this adds the ones that need the whole policy,
//! the directory's group names and the fleet (for the policy's tests).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::checks::{TestOutcome, run_tests};
use super::eval::Compiled;
use super::fleet::Fleet;
use super::model::{Action, At, Policy, PortRange, Pos, Principal, Proto, Rule};
use super::parse::Parsed;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem: where (JSON pointer, line, column), in which rule, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub pointer: String,
    pub line: u32,
    pub column: u32,
    pub rule: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(pointer: &str, pos: Pos, rule: Option<String>, message: String) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            pointer: pointer.to_owned(),
            line: pos.line,
            column: pos.column,
            rule,
            message,
        }
    }

    pub fn warning(pointer: &str, pos: Pos, rule: Option<String>, message: String) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(pointer, pos, rule, message)
        }
    }
}

/// Whether a policy with these problems may be applied: only warnings.
pub fn is_clean(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().all(|d| d.severity == Severity::Warning)
}

/// Every problem of a parsed policy, in document order. `groups` are the group names the
/// directory knows (without `group:`); `fleet` holds the people `user:` must name and the
/// devices the policy's tests run against.
pub fn lint(parsed: &Parsed, groups: &BTreeSet<String>, fleet: &Fleet) -> Vec<Diagnostic> {
    let compiled = Compiled::new(&parsed.policy, fleet);
    let outcomes = run_tests(&parsed.policy, fleet, &compiled);
    lint_with(parsed, groups, fleet, &outcomes)
}

/// [`lint`], given the outcomes of the policy's tests over `fleet` (for a caller that compiled
/// the policy anyway and keeps the compile).
pub fn lint_with(
    parsed: &Parsed,
    groups: &BTreeSet<String>,
    fleet: &Fleet,
    outcomes: &[TestOutcome],
) -> Vec<Diagnostic> {
    let p = &parsed.policy;
    let mut out = parsed.diagnostics.clone();
    let mut names: BTreeMap<&str, &At<String>> = BTreeMap::new();
    for r in &p.rules {
        let rn = Some(r.name.value.clone()).filter(|n| !n.is_empty());
        if let Some(first) = names.get(r.name.value.as_str()).filter(|_| rn.is_some()) {
            let m = format!(
                "rule name '{}' is already used at line {}: names must be unique",
                r.name.value, first.pos.line
            );
            out.push(Diagnostic::error(
                &r.name.pointer,
                r.name.pos,
                rn.clone(),
                m,
            ));
        } else {
            names.insert(&r.name.value, &r.name);
        }
        for s in &r.src {
            if s.value == Principal::SelfDevices {
                let m = "autogroup:self can only be a destination".to_owned();
                out.push(Diagnostic::error(&s.pointer, s.pos, rn.clone(), m));
            }
        }
        for x in r.src.iter().chain(&r.dst) {
            token_outside_owners(x, rn.clone(), &mut out);
        }
        for name in r.posture.iter().flatten() {
            unknown_posture(p, name, rn.clone(), &mut out);
        }
        for (side, list) in [("src", &r.src), ("dst", &r.dst)] {
            if list.is_empty() {
                let m = format!("'{side}' is empty, so the rule matches nothing");
                out.push(Diagnostic::warning(&r.pointer, r.pos, rn.clone(), m));
            }
        }
        let explicit = r.ports.iter().any(|x| x.value != PortRange::ALL);
        if explicit && r.protos == [Proto::Icmp] {
            let m = "icmp has no ports: the ports of this rule are ignored".to_owned();
            out.push(Diagnostic::warning(
                &r.ports[0].pointer,
                r.ports[0].pos,
                rn.clone(),
                m,
            ));
        }
    }
    for name in &p.default_posture {
        unknown_posture(p, name, None, &mut out);
    }
    let mut test_names = BTreeSet::new();
    for t in &p.tests {
        if !t.name.value.is_empty() && !test_names.insert(t.name.value.as_str()) {
            let m = format!("test name '{}' is already used", t.name.value);
            out.push(Diagnostic::error(&t.name.pointer, t.name.pos, None, m));
        }
        if t.src.value == Principal::SelfDevices {
            let m = "autogroup:self can only be a destination".to_owned();
            out.push(Diagnostic::error(&t.src.pointer, t.src.pos, None, m));
        }
        token_outside_owners(&t.src, None, &mut out);
        for x in t.accept.iter().chain(&t.deny) {
            let dst = At::new(x.value.dst.clone(), x.pointer.clone(), x.pos);
            token_outside_owners(&dst, None, &mut out);
        }
    }
    for (principal, rule) in principals(p) {
        check_principal(p, groups, fleet, principal, rule, &mut out);
    }
    unused(p, &mut out);
    shadowed(p, &mut out);
    for outcome in outcomes {
        for f in &outcome.failures {
            let m = format!("test '{}' fails: {}", outcome.name, f.message);
            out.push(Diagnostic::error(&f.pointer, f.pos, None, m));
        }
        for f in &outcome.vacuous {
            let m = format!("test '{}': {}", outcome.name, f.message);
            out.push(Diagnostic::warning(&f.pointer, f.pos, None, m));
        }
    }
    out.sort_by_key(|d| (d.line, d.column));
    out
}

fn token_outside_owners(x: &At<Principal>, rule: Option<String>, out: &mut Vec<Diagnostic>) {
    if let Principal::Token(_) = x.value {
        let m = format!("'{}' selects no device: tokens can only own tags", x.value);
        out.push(Diagnostic::error(&x.pointer, x.pos, rule, m));
    }
}

fn unknown_posture(p: &Policy, name: &At<String>, rule: Option<String>, out: &mut Vec<Diagnostic>) {
    if p.posture(&name.value).is_none() {
        let m = format!(
            "unknown posture '{}': define it under 'postures'",
            name.value
        );
        out.push(Diagnostic::error(&name.pointer, name.pos, rule, m));
    }
}

/// Every principal the policy names, with the rule it is in.
fn principals(p: &Policy) -> Vec<(At<Principal>, Option<String>)> {
    let mut out = Vec::new();
    for r in &p.rules {
        let rn = Some(r.name.value.clone()).filter(|n| !n.is_empty());
        for x in r.src.iter().chain(&r.dst) {
            out.push((x.clone(), rn.clone()));
        }
    }
    for o in p.tag_owners.iter().flat_map(|t| &t.owners) {
        out.push((o.clone(), None));
    }
    for t in &p.tests {
        out.push((t.src.clone(), None));
        for x in t.accept.iter().chain(&t.deny) {
            out.push((At::new(x.value.dst.clone(), x.pointer.clone(), x.pos), None));
        }
    }
    out
}

fn check_principal(
    p: &Policy,
    groups: &BTreeSet<String>,
    fleet: &Fleet,
    x: At<Principal>,
    rule: Option<String>,
    out: &mut Vec<Diagnostic>,
) {
    let message = match &x.value {
        Principal::Host(h) if p.host(h).is_none() => {
            format!("unknown host alias '{h}': define it under 'hosts'")
        }
        Principal::User(u) if !fleet.users.iter().any(|x| &x.email == u || &x.id == u) => {
            format!("unknown user 'user:{u}': nobody in the directory has this email or id")
        }
        Principal::Group(g) if !groups.contains(g) => {
            format!("unknown group 'group:{g}': the directory has no such group")
        }
        Principal::Tag(t)
            if !p.tag_owners.is_empty() && !p.tag_owners.iter().any(|o| &o.tag.value == t) =>
        {
            format!(
                "'{t}' has no owner: once 'tag_owners' is defined, only tags listed there can be used"
            )
        }
        _ => return,
    };
    out.push(Diagnostic::error(&x.pointer, x.pos, rule, message));
}

fn unused(p: &Policy, out: &mut Vec<Diagnostic>) {
    let named: BTreeSet<Principal> = principals(p).into_iter().map(|(x, _)| x.value).collect();
    for h in &p.hosts {
        if !named.contains(&Principal::Host(h.name.value.clone())) {
            let m = format!(
                "host alias '{}' is not used by any rule or test",
                h.name.value
            );
            out.push(Diagnostic::warning(&h.name.pointer, h.name.pos, None, m));
        }
    }
    let used: BTreeSet<&str> = p
        .default_posture
        .iter()
        .chain(p.rules.iter().flat_map(|r| r.posture.iter().flatten()))
        .map(|n| n.value.as_str())
        .collect();
    for q in &p.postures {
        if !used.contains(q.name.value.as_str()) {
            let m = format!(
                "posture '{}' is not required by any rule or by default_posture",
                q.name.value
            );
            out.push(Diagnostic::warning(&q.name.pointer, q.name.pos, None, m));
        }
    }
    for t in &p.tag_owners {
        let in_rules = p.rules.iter().flat_map(|r| r.src.iter().chain(&r.dst));
        if !in_rules
            .clone()
            .any(|x| x.value == Principal::Tag(t.tag.value.clone()))
        {
            let m = format!("'{}' has owners but no rule names it", t.tag.value);
            out.push(Diagnostic::warning(&t.tag.pointer, t.tag.pos, None, m));
        }
    }
}

/// A rule another rule makes pointless: an accept inside an earlier accept, a deny inside an
/// earlier deny, or an accept inside any deny (deny overrides accept wherever it is written).
/// Judged on the text, not the fleet, so the warning does not come and go with devices.
fn shadowed(p: &Policy, out: &mut Vec<Diagnostic>) {
    for (i, r) in p.rules.iter().enumerate() {
        let by = p.rules.iter().enumerate().find(|&(j, other)| {
            j != i
                && match (other.action, r.action) {
                    (Action::Deny, Action::Accept) => true,
                    (a, b) => a == b && j < i,
                }
                && covers(p, other, r)
        });
        if let Some((_, other)) = by {
            let m = if other.action == Action::Deny {
                format!(
                    "rule '{}' can never match: deny rule '{}' covers all of it",
                    r.name.value, other.name.value
                )
            } else {
                format!(
                    "rule '{}' is redundant: rule '{}' already covers all of it",
                    r.name.value, other.name.value
                )
            };
            let rn = Some(r.name.value.clone()).filter(|n| !n.is_empty());
            out.push(Diagnostic::warning(&r.name.pointer, r.name.pos, rn, m));
        }
    }
}

/// Whether every packet `inner` matches, `outer` matches too.
pub fn covers(p: &Policy, outer: &Rule, inner: &Rule) -> bool {
    let side = |o: &[At<Principal>], i: &[At<Principal>]| {
        !i.is_empty()
            && i.iter()
                .all(|x| o.iter().any(|y| principal_covers(p, &y.value, &x.value)))
    };
    let outer_postures: BTreeSet<&str> = p
        .required_postures(outer)
        .iter()
        .map(|n| n.value.as_str())
        .collect();
    let inner_postures: BTreeSet<&str> = p
        .required_postures(inner)
        .iter()
        .map(|n| n.value.as_str())
        .collect();
    side(&outer.src, &inner.src)
        && side(&outer.dst, &inner.dst)
        && outer_postures.is_subset(&inner_postures)
        && inner.protos.iter().all(|x| outer.protos.contains(x))
        && inner.ports.iter().all(|x| {
            outer
                .ports
                .iter()
                .any(|y| y.value.lo <= x.value.lo && x.value.hi <= y.value.hi)
        })
}

/// Whether every device `inner` names, `outer` names too, whatever the fleet.
fn principal_covers(p: &Policy, outer: &Principal, inner: &Principal) -> bool {
    use Principal::*;
    let net = |x: &Principal| match x {
        Cidr(n) => Some(*n),
        Host(h) => p.host(h).map(|h| h.net),
        _ => None,
    };
    match (outer, inner) {
        _ if outer == inner => true,
        (Any, _) => true,
        (Member, User(_) | Group(_) | SelfDevices) => true,
        (Tagged, Tag(_)) => true,
        _ => match (net(outer), net(inner)) {
            (Some(o), Some(i)) => o.contains(&i),
            _ => false,
        },
    }
}
