//! The command executor: the only caller of `Log::append`.
//!
//! Every write — HTTP handlers, the machine API, workers, bootstrap and offline commands — runs
//! the same steps: refuse at once after a fail-stop, load the current read models, call a pure
//! decision on them, append what it returns with its expected stream revisions, and on a typed
//! [`AppendError::Conflict`] (another writer moved a stream the decision relied on) wait for
//! the read models to catch up and decide again, a bounded number of times. Once appended, it
//! waits until the read models include the write (read-your-writes), so the caller's answer
//! and any later read reflect it. The actor and request id go into every envelope.

use std::time::Duration;

use events::{Actor, AppendError, AppendRequest, Appended, Idempotency, NewEvent};
use projections::{Models, OrgView};

use crate::domain::Decision;
use crate::state::AppState;

/// Attempts at a decision whose append lost a race; past this the conflict is the caller's.
pub const ATTEMPTS: u32 = 5;

/// Who asks, and what ties their retries together.
#[derive(Debug, Clone)]
pub struct Command {
    /// The organization every event of the decision belongs to.
    pub org_id: String,
    pub actor: Actor,
    pub request_id: String,
    /// A repeat with the same key and fingerprint answers the original append.
    pub idempotency: Option<Idempotency>,
}

impl Command {
    pub fn new(org_id: impl Into<String>, actor: Actor, request_id: impl Into<String>) -> Self {
        Command {
            org_id: org_id.into(),
            actor,
            request_id: request_id.into(),
            idempotency: None,
        }
    }

    pub fn idempotent(mut self, idempotency: Option<Idempotency>) -> Self {
        self.idempotency = idempotency;
        self
    }
}

/// What an executed command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The decision had nothing to append (the state already was as asked).
    Unchanged,
    /// Appended (or, with `replayed`, answered from an earlier identical request), and the read
    /// models include it.
    Appended(Appended),
}

impl Outcome {
    pub fn appended(&self) -> Option<Appended> {
        match self {
            Outcome::Appended(a) => Some(*a),
            Outcome::Unchanged => None,
        }
    }
}

/// Why a command did not take effect; `E` is the decision's own rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecuteError<E> {
    /// The decision refused the command.
    Rejected(E),
    /// The server stopped accepting writes after a failure of the log or the read models;
    /// nothing was appended.
    Stopped { why: Option<String> },
    /// The log refused the append (a conflict that outlived every attempt, a reused
    /// idempotency key, a full queue, shutdown); nothing was appended.
    Refused(AppendError),
    /// The write is durable, but the read models did not include it in time (`failed` says
    /// why when they have stopped for good).
    NotApplied { failed: Option<String> },
}

impl<E> ExecuteError<E> {
    /// Maps the rejection, keeping every other failure as it is.
    pub fn map_rejected<F>(self, f: impl FnOnce(E) -> F) -> ExecuteError<F> {
        match self {
            ExecuteError::Rejected(e) => ExecuteError::Rejected(f(e)),
            ExecuteError::Stopped { why } => ExecuteError::Stopped { why },
            ExecuteError::Refused(e) => ExecuteError::Refused(e),
            ExecuteError::NotApplied { failed } => ExecuteError::NotApplied { failed },
        }
    }
}

impl<E: std::fmt::Debug> std::fmt::Display for ExecuteError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecuteError::Rejected(e) => write!(f, "refused: {e:?}"),
            ExecuteError::Stopped { why } => write!(
                f,
                "the server has stopped accepting writes: {}",
                why.as_deref().unwrap_or("unknown failure")
            ),
            ExecuteError::Refused(e) => write!(f, "{e}"),
            ExecuteError::NotApplied { failed: Some(why) } => {
                write!(
                    f,
                    "the write was recorded but the read models failed: {why}"
                )
            }
            ExecuteError::NotApplied { failed: None } => {
                f.write_str("the write was recorded but the read models have not caught up yet")
            }
        }
    }
}

/// Refuses a write before anything is appended when the log or the read models have failed:
/// decisions would be taken on state the server cannot prove.
pub fn writable<E>(state: &AppState) -> Result<(), ExecuteError<E>> {
    // Two atomic reads on every write; the reasons are fetched only once something failed.
    let peers = state.peers().failure();
    if !state.log().is_failed()
        && !state.models().failed()
        && !state.chains().failed()
        && peers.is_none()
    {
        return Ok(());
    }
    let why = state
        .log()
        .failure()
        .or_else(|| state.models().failure())
        .or_else(|| state.chains().failure())
        .or(peers);
    tracing::error!(
        why = why.as_deref().unwrap_or("unknown"),
        "write refused: fail-stop"
    );
    Err(ExecuteError::Stopped { why })
}

/// Decides `command` on the current read models and appends the decision; see the module docs.
///
/// `decide` sees the read models as the command's organization sees them ([`OrgView`]), so a
/// decision cannot read, let alone change, another tenant's items. It may run more than once
/// (after a conflict), each time on newer read models, so it must be pure: ids, secrets and
/// the time are generated by the caller and captured.
pub async fn execute<E>(
    state: &AppState,
    command: Command,
    mut decide: impl FnMut(OrgView<'_>) -> Result<Decision, E>,
) -> Result<Outcome, ExecuteError<E>> {
    let org_id = command.org_id.clone();
    execute_across_orgs(state, command, |models| decide(models.org(&org_id))).await
}

/// Like [`execute`], but `decide` sees every organization's read models. Only the console's
/// own decisions need this (an organization's name is unique across organizations); a
/// request never does.
pub async fn execute_across_orgs<E>(
    state: &AppState,
    command: Command,
    mut decide: impl FnMut(&Models) -> Result<Decision, E>,
) -> Result<Outcome, ExecuteError<E>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        writable(state)?;
        let models = state.models().load();
        let decision = decide(&models.state).map_err(ExecuteError::Rejected)?;
        if decision.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        let request = AppendRequest {
            org_id: command.org_id.clone(),
            actor: command.actor.clone(),
            request_id: command.request_id.clone(),
            expectations: decision
                .expectations
                .into_iter()
                .map(|(stream, expected)| (stream.to_string(), expected))
                .collect(),
            events: decision
                .events
                .into_iter()
                .map(|(stream, event)| NewEvent::new(stream, event))
                .collect(),
            idempotency: command.idempotency.clone(),
        };
        match state.log().append(request).await {
            Ok(appended) => {
                wait_applied(state, appended.last).await?;
                return Ok(Outcome::Appended(appended));
            }
            Err(AppendError::Conflict { .. }) if attempt < ATTEMPTS => {
                // The stream moved on: decide again once the read models show why.
                wait_applied(state, state.log().head()).await?;
            }
            Err(e) => return Err(ExecuteError::Refused(e)),
        }
    }
}

/// Waits until the read models have applied `position`; answers at once if they have failed.
pub async fn wait_applied<E>(state: &AppState, position: u64) -> Result<(), ExecuteError<E>> {
    wait_applied_within(state, position, state.settings().read_your_writes_timeout).await
}

async fn wait_applied_within<E>(
    state: &AppState,
    position: u64,
    timeout: Duration,
) -> Result<(), ExecuteError<E>> {
    if state.models().wait_for(position, timeout).await {
        return Ok(());
    }
    let failed = state.models().failure();
    if let Some(why) = &failed {
        tracing::error!(%why, position, "write recorded, but the read models have failed");
    }
    Err(ExecuteError::NotApplied { failed })
}

impl<E: std::fmt::Debug> std::error::Error for ExecuteError<E> {}

#[cfg(test)]
mod tests {
    use events::Expected;
    use events::event::{OrgLimitsSet, Plan};
    use events::stream::Stream;

    use super::*;
    use crate::bootstrap;
    use crate::state::Settings;

    async fn org(dir: &std::path::Path) -> (AppState, String) {
        let state = AppState::open(Settings::new(dir)).await.expect("open");
        let created = bootstrap::create_org(&state, "acme", Plan::Free, Actor::console("test"))
            .await
            .expect("org");
        (state, created.org_id)
    }

    /// Raises the org's read limit by one, relying on its stream being at `revision`.
    fn raise(org_id: &str, revision: u64, read_per_min: u32) -> Decision {
        Decision::none()
            .expect(Stream::org(org_id), Expected::Exact(revision))
            .event(
                Stream::org(org_id),
                OrgLimitsSet {
                    org_id: org_id.to_owned(),
                    read_per_min,
                    write_per_min: 60,
                    register_per_min: None,
                },
            )
    }

    #[tokio::test]
    async fn a_decision_that_lost_a_race_is_decided_again_on_newer_models_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (state, org_id) = org(dir.path()).await;
        let mut calls = 0;
        let outcome = execute(
            &state,
            Command::new(&org_id, Actor::console("test"), "req_1"),
            |m| {
                calls += 1;
                let current = m.settings().unwrap().read_per_min;
                // The first attempt saw a revision another writer has since moved past.
                let seen = if calls == 1 { 7 } else { 0 };
                Ok::<_, ()>(raise(&org_id, seen, current + 1))
            },
        )
        .await
        .expect("executed");
        assert_eq!(calls, 2);
        assert!(matches!(outcome, Outcome::Appended(a) if !a.replayed));
        let models = state.models().load();
        assert_eq!(
            models.state.orgs.get(&org_id).unwrap().read_per_min,
            bootstrap::DEFAULT_READ_PER_MIN + 1,
            "the answer's read models include the write"
        );
        state.shutdown().await;
    }

    #[tokio::test]
    async fn a_conflict_that_outlives_every_attempt_is_the_callers() {
        let dir = tempfile::tempdir().unwrap();
        let (state, org_id) = org(dir.path()).await;
        let mut calls = 0;
        let result = execute(
            &state,
            Command::new(&org_id, Actor::console("test"), "req_1"),
            |_| {
                calls += 1;
                Ok::<_, ()>(raise(&org_id, 7, 1))
            },
        )
        .await;
        assert!(matches!(
            result,
            Err(ExecuteError::Refused(AppendError::Conflict { .. }))
        ));
        assert_eq!(calls, ATTEMPTS);
        state.shutdown().await;
    }

    #[tokio::test]
    async fn a_rejection_or_an_empty_decision_appends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (state, org_id) = org(dir.path()).await;
        let head = state.log().head();
        let command = Command::new(&org_id, Actor::console("test"), "req_1");
        let rejected = execute(&state, command.clone(), |_| Err::<Decision, _>("no")).await;
        assert_eq!(rejected, Err(ExecuteError::Rejected("no")));
        let unchanged = execute(&state, command, |_| Ok::<_, ()>(Decision::none())).await;
        assert_eq!(unchanged, Ok(Outcome::Unchanged));
        assert_eq!(state.log().head(), head);
        state.shutdown().await;
    }
}
