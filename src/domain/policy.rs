//! Applying a policy version: the optimistic-concurrency rules of `PUT /policy`. Linting (which
//! needs the fleet and the directory) happens before; this decides whether the text becomes
//! the next version.

use events::Expected;
use events::event::PolicyApplied;
use events::stream::Stream;
use projections::OrgView;

use super::Rejection;
use super::decision::Decision;

/// `PUT /policy`, once the text linted clean.
#[derive(Debug, Clone)]
pub struct Apply {
    pub text: String,
    /// `yaml` or `json`.
    pub format: &'static str,
    pub reason: Option<String>,
    /// From `If-Match`: the version the caller last saw (0: no policy yet).
    pub if_match: Option<u64>,
}

/// Why an apply was refused before anything was appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyRefusal {
    /// `If-Match` names another version than the current one (412).
    Stale {
        current: u64,
    },
    Rejected(Rejection),
}

impl From<Rejection> for ApplyRefusal {
    fn from(r: Rejection) -> Self {
        ApplyRefusal::Rejected(r)
    }
}

/// The next version, or nothing when the text is the current version's (a repeated PUT).
pub fn apply(org: OrgView<'_>, cmd: &Apply) -> Result<Decision, ApplyRefusal> {
    let policy = org.policy();
    let current = policy.current().map_or(0, |v| v.version);
    if let Some(seen) = cmd.if_match
        && seen != current
    {
        return Err(ApplyRefusal::Stale { current });
    }
    if policy
        .current()
        .is_some_and(|v| v.text == cmd.text && v.format == cmd.format)
    {
        return Ok(Decision::none());
    }
    // A rollback is a PUT of an old version's text; the history says which.
    let rollback_of = policy
        .versions
        .iter()
        .rev()
        .find(|v| v.text == cmd.text)
        .map(|v| v.version);
    let stream = Stream::policy(org.id());
    let expected = policy.revision.map_or(Expected::NoStream, Expected::Exact);
    Ok(Decision::none().expect(stream.clone(), expected).event(
        stream,
        PolicyApplied {
            org_id: org.id().to_owned(),
            version: current + 1,
            format: cmd.format.to_owned(),
            text: cmd.text.clone(),
            reason: cmd.reason.clone(),
            rollback_of,
        },
    ))
}

/// The verdicts of the policy's tests after the fleet changed: `failing` holds every test of
/// version `policy_version` that fails now, with why. Tests that start failing get
/// `policy.test_failed`, tests that pass again `policy.test_restored`; nothing if the policy
/// moved on meanwhile (its own apply re-checked its tests).
pub fn test_verdicts(
    org: OrgView<'_>,
    policy_version: u64,
    failing: &std::collections::BTreeMap<String, Vec<events::event::TestFailure>>,
) -> Decision {
    let policy = org.policy();
    if policy.current().map(|v| v.version) != Some(policy_version) {
        return Decision::none();
    }
    let stream = Stream::policy(org.id());
    let mut d = Decision::none();
    for (test, failures) in failing {
        if !policy.failing.contains_key(test) {
            d = d.event(
                stream.clone(),
                events::event::PolicyTestFailed {
                    org_id: org.id().to_owned(),
                    policy_version,
                    test: test.clone(),
                    failures: failures.clone(),
                },
            );
        }
    }
    for test in policy.failing.keys() {
        if !failing.contains_key(test) {
            d = d.event(
                stream.clone(),
                events::event::PolicyTestRestored {
                    org_id: org.id().to_owned(),
                    policy_version,
                    test: test.clone(),
                },
            );
        }
    }
    if d.is_empty() {
        return d;
    }
    let expected = policy.revision.map_or(Expected::NoStream, Expected::Exact);
    d.expect(stream, expected)
}
