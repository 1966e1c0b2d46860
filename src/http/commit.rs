//! The write path shared by every mutation: append the decided events, then wait until the
//! projections have applied them, so the answer and any later GET reflect the write
//! (read-your-writes).
//!
//! Fail-stop: once the log or the read models have failed, nothing is appended (decisions
//! would be taken on state the server cannot prove) and every write answers 503 at once;
//! `/health` says why.

use events::{Actor, AppendError, AppendRequest, Appended, Expected, Idempotency, NewEvent};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::auth::Principal;
use super::problem::Problem;
use super::request_id::RequestId;
use crate::domain::Rejection;
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

/// A mutation ready to append.
pub struct Mutation {
    pub expectations: Vec<(String, Expected)>,
    pub events: Vec<NewEvent>,
    pub idempotency: Option<Idempotency>,
}

/// Appends a mutation as `principal` and waits for the read models to include it.
pub async fn commit(
    state: &AppState,
    principal: &Principal,
    request_id: &RequestId,
    mutation: Mutation,
) -> Result<Appended, Problem> {
    ensure_writable(state)?;
    let appended = state
        .log()
        .append(AppendRequest {
            org_id: principal.org_id.clone(),
            actor: principal.actor(),
            request_id: request_id.0.clone(),
            expectations: mutation.expectations,
            events: mutation.events,
            idempotency: mutation.idempotency,
        })
        .await?;
    wait_applied(state, appended.last).await?;
    Ok(appended)
}

/// Refuses a write before anything is appended when the log or the read models have failed.
/// Call it before every append that does not go through [`commit`].
pub fn ensure_writable(state: &AppState) -> Result<(), Problem> {
    // Two atomic reads on every write; the reasons are fetched only once something failed.
    if !state.log().is_failed() && !state.models().failed() {
        return Ok(());
    }
    let why = state.log().failure().or_else(|| state.models().failure());
    tracing::error!(
        why = why.as_deref().unwrap_or("unknown"),
        "write refused: fail-stop"
    );
    Err(Problem::unavailable(
        "the server has stopped accepting writes after an internal failure; \
         see /api/v1/health",
        FAILED_RETRY_AFTER,
    ))
}

/// Waits until the read models have applied `position`; answers at once if they have failed.
pub async fn wait_applied(state: &AppState, position: u64) -> Result<(), Problem> {
    let timeout = state.settings().read_your_writes_timeout;
    if state.models().wait_for(position, timeout).await {
        return Ok(());
    }
    if let Some(why) = state.models().failure() {
        tracing::error!(%why, position, "write recorded, but the read models have failed");
        return Err(Problem::unavailable(
            "the write was recorded, but the server has stopped accepting writes after an \
             internal failure; see /api/v1/health",
            FAILED_RETRY_AFTER,
        ));
    }
    Err(Problem::unavailable(
        "the write was recorded but the read models have not caught up yet",
        1,
    ))
}

/// A fail-stop lasts until an operator restarts the server: no point retrying every second.
const FAILED_RETRY_AFTER: u64 = 30;

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor {
            kind: events::ActorKind::Token,
            id: self.token_id.clone(),
            description: self.description.clone(),
        }
    }
}
