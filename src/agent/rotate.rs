//! Rotating the node credential: once the saved credential is older than
//! `--rotate-credential-every` (30 days by default; `off` never), the agent exchanges it for a
//! new one (`POST /machine/rotate`) after a heartbeat, and saves the new one at once. The old
//! one stops working on the server as soon as it answers.
//!
//! The exchange runs as a task of its own that saves what the server answered, and a signal
//! stops the agent only once that task is done ([`InFlight`]): a stop never loses a credential
//! the server already switched to. If the answer itself is lost (the connection drops after
//! the server rotated), the agent still holds a credential that no longer works: its next
//! heartbeat gets a 401, which it handles as any other (registering again with `--auth-key`
//! when it has one).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{Agent, AgentState, CallError, call, save_state};

/// Locked while a rotation is between asking the server and saving its answer; the agent
/// takes it before it exits.
pub type InFlight = Arc<Mutex<()>>;

/// How often to rotate unless told otherwise.
pub const DEFAULT_EVERY: &str = "30d";

/// `--rotate-credential-every`: how old a node credential may get (`None`: `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotateEvery(pub Option<Duration>);

/// Parses `off` or a duration (`30d`, `12h`, …).
pub fn parse_every(input: &str) -> Result<RotateEvery, String> {
    if input.trim().eq_ignore_ascii_case("off") {
        return Ok(RotateEvery(None));
    }
    crate::domain::duration::parse(input).map(|d| RotateEvery(Some(d)))
}

/// Seconds since the Unix epoch: when a credential was issued, in the state file.
pub fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl Agent {
    /// Whether the saved credential is older than the rotation period.
    pub(super) fn rotation_due(&self) -> bool {
        let (Some(every), Some(issued)) = (self.rotate_every.0, self.state.credential_issued_at)
        else {
            return false;
        };
        let every = i64::try_from(every.as_secs()).unwrap_or(i64::MAX);
        now_secs().saturating_sub(issued) >= every
    }

    /// Exchanges the credential for a new one and saves it; on failure the old one stays.
    pub(super) async fn rotate_credential(&mut self) {
        let held = self.rotating.clone().lock_owned().await;
        let task = tokio::spawn(exchange(
            self.http.clone(),
            self.server.clone(),
            self.state_path.clone(),
            self.state.clone(),
            held,
        ));
        if let Ok(Some(state)) = task.await {
            self.state = state;
        }
    }
}

/// Asks `server` for a new credential and saves it in the state file; the new state, or
/// `None` when the server did not rotate. Holds `_held` throughout.
async fn exchange(
    http: reqwest::Client,
    server: String,
    path: PathBuf,
    mut state: AgentState,
    _held: OwnedMutexGuard<()>,
) -> Option<AgentState> {
    let credential = state.credential_for(&server)?.to_owned();
    let answer = match call(
        &http,
        &server,
        "/api/v1/machine/rotate",
        Some(&credential),
        &json!({}),
    )
    .await
    {
        Ok(answer) => answer,
        Err(CallError::Problem(p)) => {
            // A 401 here is the heartbeat's next 401, handled there.
            eprintln!("Rotating the node credential was refused: {p}");
            return None;
        }
        Err(CallError::Transient { message, .. }) => {
            eprintln!(
                "Rotating the node credential failed: {message}; retrying after the next \
                 heartbeat"
            );
            return None;
        }
    };
    let Some(new) = answer
        .get("node_credential")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    else {
        eprintln!("Rotating the node credential: the answer has no node_credential");
        return None;
    };
    state.node_credential = Some(new.to_owned());
    state.credential_issued_at = Some(now_secs());
    match save_state(&path, &state) {
        Ok(()) => eprintln!("Rotated the node credential"),
        // Still usable for this run; the next run finds the old one refused.
        Err(e) => eprintln!("warning: rotated the node credential, but {e}"),
    }
    Some(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_a_duration_or_off() {
        assert_eq!(
            parse_every("30d"),
            Ok(RotateEvery(Some(Duration::from_secs(30 * 86_400))))
        );
        assert_eq!(parse_every("off"), Ok(RotateEvery(None)));
        assert_eq!(parse_every("OFF"), Ok(RotateEvery(None)));
        assert!(parse_every("0s").is_err());
        assert!(parse_every("soon").is_err());
        assert_eq!(parse_every(DEFAULT_EVERY).map(|e| e.0.is_some()), Ok(true));
    }
}
