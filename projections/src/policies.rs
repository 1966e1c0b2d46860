//! Each organization's access policy: every version ever applied (the policy history), with
//! who applied it, when and why, and which of the current version's tests fail now.
//!
//! Texts are kept whole (a version is shown and rolled back to from here); behind `Arc`, so
//! cloning the read model per applied chunk copies pointers, not policies.

use std::sync::Arc;

use events::event::TestFailure;
use events::{Actor, Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

/// One applied version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub version: u64,
    /// `yaml` or `json`.
    pub format: String,
    pub text: String,
    pub reason: Option<String>,
    pub rollback_of: Option<u64>,
    pub actor: Actor,
    pub request_id: String,
    pub applied_at: i64,
    /// The org sequence number of its `policy.applied`.
    pub seq: u64,
}

/// An organization's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPolicy {
    /// Oldest first; `versions[i].version == i + 1`.
    pub versions: imbl::Vector<Arc<PolicyVersion>>,
    /// The current version's tests that fail now, by name, since when (org sequence number).
    pub failing: imbl::OrdMap<String, (Vec<TestFailure>, u64)>,
    /// Last revision of the `policy:<org>` stream (`None`: nothing written to it yet).
    pub revision: Option<u64>,
}

impl OrgPolicy {
    /// The version in force (`None`: no policy yet: default deny).
    pub fn current(&self) -> Option<&PolicyVersion> {
        self.versions.last().map(Arc::as_ref)
    }

    pub fn version(&self, n: u64) -> Option<&PolicyVersion> {
        let i = usize::try_from(n.checked_sub(1)?).ok()?;
        self.versions.get(i).map(Arc::as_ref)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    pub by_org: imbl::HashMap<String, OrgPolicy>,
}

impl Projection for Policies {
    const NAME: &'static str = "policies";
    const VERSION: u32 = 1;

    fn apply(&mut self, r: &Recorded) {
        let org = r.envelope.org_id.as_str();
        let at = |p: &mut Policies| {
            let o = p.by_org.entry(org.to_owned()).or_default();
            o.revision = Some(r.envelope.revision);
        };
        match &r.event {
            Event::PolicyApplied(e) => {
                at(self);
                let o = self.by_org.entry(org.to_owned()).or_default();
                o.versions.push_back(Arc::new(PolicyVersion {
                    version: e.version,
                    format: e.format.clone(),
                    text: e.text.clone(),
                    reason: e.reason.clone(),
                    rollback_of: e.rollback_of,
                    actor: r.envelope.actor.clone(),
                    request_id: r.envelope.request_id.clone(),
                    applied_at: r.envelope.recorded_at,
                    seq: r.envelope.org_seq,
                }));
                // A policy applies only if its tests pass: nothing fails under it yet.
                o.failing.clear();
            }
            Event::PolicyTestFailed(e) => {
                at(self);
                let o = self.by_org.entry(org.to_owned()).or_default();
                o.failing
                    .insert(e.test.clone(), (e.failures.clone(), r.envelope.org_seq));
            }
            Event::PolicyTestRestored(e) => {
                at(self);
                let o = self.by_org.entry(org.to_owned()).or_default();
                o.failing.remove(&e.test);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use events::event::{PolicyApplied, PolicyTestFailed, PolicyTestRestored};

    use super::*;
    use crate::testing::recorded;

    fn applied(version: u64) -> PolicyApplied {
        PolicyApplied {
            org_id: "o".into(),
            version,
            format: "yaml".into(),
            text: format!("version: 1 # {version}\n"),
            reason: None,
            rollback_of: None,
        }
    }

    #[test]
    fn versions_are_kept_in_order_and_a_new_one_clears_failing_tests() {
        let mut p = Policies::default();
        p.apply(&recorded(1, "o", "policy:o", 1, 10, applied(1)));
        p.apply(&recorded(
            2,
            "o",
            "policy:o",
            2,
            20,
            PolicyTestFailed {
                org_id: "o".into(),
                policy_version: 1,
                test: "t".into(),
                failures: vec![],
            },
        ));
        assert_eq!(p.by_org["o"].failing.len(), 1);
        p.apply(&recorded(3, "o", "policy:o", 3, 30, applied(2)));
        let o = &p.by_org["o"];
        assert!(o.failing.is_empty());
        assert_eq!(o.current().map(|v| v.version), Some(2));
        assert_eq!(o.version(1).map(|v| v.applied_at), Some(10));
        assert_eq!(o.version(0), None);
        assert_eq!(o.version(3), None);
        assert_eq!(o.revision, Some(3));
        p.apply(&recorded(
            4,
            "o",
            "policy:o",
            4,
            40,
            PolicyTestRestored {
                org_id: "o".into(),
                policy_version: 2,
                test: "t".into(),
            },
        ));
        assert_eq!(p.by_org["o"].revision, Some(4));
    }
}
