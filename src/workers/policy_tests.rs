//! Re-running the policy's tests when the fleet changes: after tags, owners, group memberships
//! or posture change (the peer-map model reports which organizations), each test of the
//! policy in force is evaluated again over the new fleet, and a test that starts failing is
//! recorded as `policy.test_failed` — visible in the audit log, SSE and webhooks — and one
//! that passes again as `policy.test_restored`. Every organization is checked once at start,
//! so a change made just before a crash is not missed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use events::Actor;
use events::event::TestFailure;

use crate::execute::{Command, execute};
use crate::mint;
use crate::policy;
use crate::state::AppState;

/// Changes arriving within this window are checked together.
const SETTLE: Duration = Duration::from_millis(100);

/// Runs until the peer maps stop reporting changes.
pub async fn run(state: AppState) {
    let Some(mut changes) = state.peers().take_changes() else {
        return;
    };
    while let Some(first) = changes.recv().await {
        let mut orgs = BTreeSet::from([first]);
        tokio::time::sleep(SETTLE).await;
        while let Ok(more) = changes.try_recv() {
            orgs.insert(more);
        }
        for org in orgs {
            if let Err(e) = check(&state, &org).await {
                tracing::warn!(org = %org, error = %e, "re-running the policy's tests failed");
            }
        }
    }
}

/// Evaluates the tests of `org_id`'s policy over its current fleet — the peer maps' live
/// compile, so nothing is compiled again — and records transitions.
pub async fn check(state: &AppState, org_id: &str) -> Result<(), String> {
    let peers = state.peers().clone();
    let org = org_id.to_owned();
    let verdicts = tokio::task::spawn_blocking(move || {
        peers
            .with_org(&org, |o| {
                let version = o.policy_version();
                let policy = o.policy()?;
                if policy.tests.is_empty() {
                    return Some((version, BTreeMap::new()));
                }
                let c = o.compiled();
                let failing: BTreeMap<String, Vec<TestFailure>> =
                    policy::run_tests(c.policy(), c.fleet(), c)
                        .into_iter()
                        .filter(|t| !t.passed())
                        .map(|t| {
                            let failures = t
                                .failures
                                .into_iter()
                                .map(|f| TestFailure {
                                    pointer: f.pointer,
                                    message: f.message,
                                })
                                .collect();
                            (t.name, failures)
                        })
                        .collect();
                Some((version, failing))
            })
            .flatten()
    })
    .await
    .map_err(|e| format!("running the tests panicked: {e}"))?;
    let Some((version, failing)) = verdicts else {
        return Ok(());
    };
    let command = Command::new(
        org_id,
        Actor::system("policy tests: re-run after the fleet changed"),
        mint::id("req"),
    );
    execute(state, command, |org| {
        Ok::<_, std::convert::Infallible>(crate::domain::policy::test_verdicts(
            org, version, &failing,
        ))
    })
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}
