//! The HTTP edge of the write path ([`crate::execute`]): what a request asks (its principal as
//! a [`Command`], its `Idempotency-Key`) and what a failed command answers.
//!
//! Fail-stop: once the log or the read models have failed, nothing is appended and every write
//! answers 503 at once; `/health` says why.

use events::{Actor, AppendError, Idempotency};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::auth::Principal;
use super::problem::Problem;
use super::request_id::RequestId;
use crate::domain::Rejection;
use crate::execute::{self, Command, ExecuteError};
use crate::state::AppState;

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;

impl From<Rejection> for Problem {
    fn from(r: Rejection) -> Problem {
        match r {
            Rejection::Invalid(d) => Problem::invalid_argument(d),
            Rejection::Forbidden(d) => Problem::forbidden(d),
            Rejection::NotFound(d) => Problem::not_found(d),
            Rejection::Conflict(d) => Problem::conflict(d),
            Rejection::Unprocessable(d) => Problem::unprocessable(d),
        }
    }
}

impl From<AppendError> for Problem {
    fn from(e: AppendError) -> Problem {
        match e {
            AppendError::Conflict { .. } => Problem::conflict(
                "the resource was changed by another request at the same time; retry",
            ),
            AppendError::IdempotencyMismatch => {
                Problem::conflict("this Idempotency-Key was already used with a different request")
            }
            AppendError::DuplicateEventId(_) => {
                Problem::conflict("the request was already applied")
            }
            AppendError::Busy => Problem::unavailable("the event log is busy; retry shortly", 1),
            AppendError::Failed(why) => {
                tracing::error!(%why, "write refused: the event log has failed");
                Problem::unavailable("the server cannot accept writes right now", 30)
            }
            AppendError::Closed => Problem::unavailable("the server is shutting down", 5),
            AppendError::Invalid(why) => Problem::internal(format!("invalid append: {why}")),
        }
    }
}

/// The `Idempotency-Key` of a request, bound to a fingerprint of what was asked.
pub fn idempotency(
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &impl serde::Serialize,
) -> Result<Option<Idempotency>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY
                && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Problem::invalid_argument("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(body).map_err(Problem::internal)?);
    Ok(Some(Idempotency {
        key: key.to_owned(),
        fingerprint: h.finalize().into(),
    }))
}

/// The problem for a failed command, with the decision's rejection mapped by `rejected`.
pub fn problem<E>(e: ExecuteError<E>, rejected: impl FnOnce(E) -> Problem) -> Problem {
    match e {
        ExecuteError::Rejected(r) => rejected(r),
        ExecuteError::Refused(e) => e.into(),
        ExecuteError::Stopped { .. } => Problem::unavailable(
            "the server has stopped accepting writes after an internal failure; \
             see /api/v1/health",
            FAILED_RETRY_AFTER,
        ),
        ExecuteError::NotApplied { failed: Some(_) } => Problem::unavailable(
            "the write was recorded, but the server has stopped accepting writes after an \
             internal failure; see /api/v1/health",
            FAILED_RETRY_AFTER,
        ),
        ExecuteError::NotApplied { failed: None } => Problem::unavailable(
            "the write was recorded but the read models have not caught up yet",
            1,
        ),
    }
}

impl<E: Into<Problem>> From<ExecuteError<E>> for Problem {
    fn from(e: ExecuteError<E>) -> Problem {
        problem(e, Into::into)
    }
}

/// Refuses a write before anything is appended when the log or the read models have failed,
/// for handlers that must not even start work (registration takes a per-org lock first).
pub fn ensure_writable(state: &AppState) -> Result<(), Problem> {
    execute::writable::<Rejection>(state).map_err(Problem::from)
}

/// A fail-stop lasts until an operator restarts the server: no point retrying every second.
const FAILED_RETRY_AFTER: u64 = 30;

impl Principal {
    /// A command of this principal's organization, as this principal, for this request.
    pub fn command(&self, request_id: &RequestId) -> Command {
        Command::new(self.org_id.clone(), self.actor(), request_id.0.clone())
    }

    pub fn actor(&self) -> Actor {
        Actor {
            kind: events::ActorKind::Token,
            id: self.token_id.clone(),
            description: self.description.clone(),
        }
    }
}
