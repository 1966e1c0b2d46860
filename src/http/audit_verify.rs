//! `/audit-log/checkpoint` and `/audit-log/verify`: what a SIEM or an auditor needs to trust the
//! audit log, without ever seeing a global position or another organization's numbers.
//!
//! A checkpoint is the server's Ed25519 signature (the log's checkpoint key) on the
//! organization's audit chain hash at one of its events ([`events::OrgCheckpoint`]); exports end
//! with one. `verify` walks the log's HMAC chain from the first record to the head, and the
//! organization's audit chain from its first retained event, recomputed from the records and
//! compared with the hashes the server kept as it went. The walk reads the whole log, so one
//! organization runs one at a time, and the server only a few at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::State;
use events::OrgCheckpoint;
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::extract::{Json, Query};
use super::problem::Problem;
use crate::audit::chain::Hash;
use crate::audit::digests::MARK_EVERY;
use crate::audit::page::first_retained;
use crate::domain::scope::{Group, Need};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_checkpoint))
        .routes(routes!(verify))
        .layer(Extension(Verifications::default()))
}

/// Parameters of `GET /audit-log/checkpoint`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckpointQuery {
    /// The event (`id`, the organization's sequence number) whose chain hash to sign; the
    /// organization's latest by default.
    #[param(value_type = Option<u64>, minimum = 1)]
    pub id: Option<String>,
}

/// A signed organization checkpoint: the audit chain hash of event `id`, signed by the server.
/// An auditor checks `signature` (Ed25519) over `"quickztna-org-checkpoint-v1\n" ‖ org_id ‖
/// "\n" ‖ id (8 bytes, big-endian) ‖ hash (32 bytes) ‖ time (microseconds, 8 bytes,
/// big-endian)` with `public_key`, and compares `public_key` with the one the server publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub org_id: String,
    /// The event's `id`.
    pub id: u64,
    /// The audit chain hash of that event, hex (its `chain.hash` in the audit log).
    pub hash: String,
    /// When it was signed, RFC 3339.
    pub time: String,
    /// The server's checkpoint key, hex (Ed25519).
    pub public_key: String,
    /// Hex Ed25519 signature.
    pub signature: String,
}

impl From<&OrgCheckpoint> for CheckpointView {
    fn from(c: &OrgCheckpoint) -> Self {
        CheckpointView {
            org_id: c.org_id.clone(),
            id: c.id,
            hash: hex::encode(c.hash),
            time: events::format_time(c.time),
            public_key: hex::encode(c.public_key),
            signature: hex::encode(c.signature),
        }
    }
}

/// The result of `GET /audit-log/verify`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    /// Whether the log's chain and this organization's audit chain both verify.
    pub ok: bool,
    /// This organization's events whose audit chain was recomputed (those within retention).
    pub events_checked: u64,
    /// The first problem found, if any.
    pub first_failure: Option<VerifyFailure>,
    /// A signed checkpoint of the organization's latest event.
    pub checkpoint: Option<CheckpointView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyFailure {
    /// The organization's event (`id`) where the check failed; null when the log's chain
    /// breaks at a record that is not this organization's, or cannot be read.
    pub id: Option<u64>,
    pub reason: String,
}

/// A signed checkpoint of the organization's audit chain at one of its events.
#[utoipa::path(
    get, path = "/audit-log/checkpoint", tag = "audit",
    params(CheckpointQuery),
    responses((status = 200, description = "The signed checkpoint", body = CheckpointView)),
    security(("bearer" = []))
)]
async fn get_checkpoint(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<CheckpointQuery>,
) -> Result<Json<CheckpointView>, Problem> {
    principal.require(Need::read(Group::Audit))?;
    let org = principal.org_id.as_str();
    // `id=` with no value is not "the newest": the schema says integer, so it is refused.
    let wanted = match q.id.as_deref() {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .ok()
                .filter(|id| *id >= 1)
                .ok_or_else(|| Problem::invalid_argument("id must be a positive integer"))?,
        ),
    };
    let last = state.log().org_last_seq(org).map_err(Problem::internal)?;
    let id = wanted.unwrap_or(last);
    let not_found = || Problem::not_found(format!("no event {id}"));
    if id == 0 || id > last {
        return Err(not_found());
    }
    // The latest is always signed: the signature shows no event, only the chain's head.
    if wanted.is_some() && id < first_retained(&state, org)? {
        return Err(Problem::not_found(format!(
            "event {id} is older than the organization's audit retention"
        )));
    }
    let hash = state
        .audit_chain_hash(org, id)
        .await
        .map_err(Problem::internal)?
        .ok_or_else(not_found)?;
    Ok(Json(CheckpointView::from(
        &state.log().sign_org_checkpoint(org, id, hash),
    )))
}

/// Checks the log's tamper-evident chain and the organization's audit chain, names the first
/// failing event, and signs the organization's head. One at a time per organization.
#[utoipa::path(
    get, path = "/audit-log/verify", tag = "audit",
    responses((status = 200, description = "The result; `ok` is false when a check failed", body = VerifyReport)),
    security(("bearer" = []))
)]
async fn verify(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(running): Extension<Verifications>,
) -> Result<Json<VerifyReport>, Problem> {
    principal.require(Need::read(Group::Audit))?;
    let guard = running.start(&principal.org_id)?;
    let org = principal.org_id.clone();
    // A task of its own, holding the guard: a client that hangs up does not free its slot
    // while the walk it started still runs.
    let report = tokio::spawn(async move {
        let report = run_verify(&state, &org).await;
        drop(guard);
        report
    })
    .await
    .map_err(Problem::internal)??;
    Ok(Json(report))
}

async fn run_verify(state: &AppState, org: &str) -> Result<VerifyReport, Problem> {
    let log = state.log().clone();
    let walk = tokio::task::spawn_blocking(move || log.verify_chain())
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    let mut first_failure = match walk.first_bad {
        None => None,
        Some(position) => Some(own_record(state, org, position).await?),
    };
    let (events_checked, chain_failure) = walk_org_chain(state, org).await?;
    if first_failure.is_none() {
        first_failure = chain_failure;
    }
    let last = state.log().org_last_seq(org).map_err(Problem::internal)?;
    let checkpoint = match state
        .audit_chain_hash(org, last)
        .await
        .map_err(Problem::internal)?
    {
        Some(hash) if last > 0 => Some(CheckpointView::from(
            &state.log().sign_org_checkpoint(org, last, hash),
        )),
        _ => None,
    };
    Ok(VerifyReport {
        ok: first_failure.is_none(),
        events_checked,
        first_failure,
        checkpoint,
    })
}

/// The failure for the log's first bad record at `position`, in the organization's terms: its
/// event id when the record is (still recognisably) the organization's, never the position.
async fn own_record(state: &AppState, org: &str, position: u64) -> Result<VerifyFailure, Problem> {
    let log = state.log().clone();
    let record = tokio::task::spawn_blocking(move || log.get(position))
        .await
        .map_err(Problem::internal)?;
    Ok(match record {
        Ok(Some(r)) if r.envelope.org_id == org => VerifyFailure {
            id: Some(r.envelope.org_seq),
            reason: format!(
                "event {} was changed on disk after it was written: its record fails the \
                 log's MAC check",
                r.envelope.org_seq
            ),
        },
        _ => VerifyFailure {
            id: None,
            reason: "the log's MAC chain breaks at a record that is missing, unreadable or \
                     another organization's; the events after it cannot be vouched for"
                .into(),
        },
    })
}

/// Recomputes the organization's audit chain over its retained events from their records, and
/// compares it with the hashes kept as the events were written (a mark every [`MARK_EVERY`]
/// events, and the head). Returns the events walked and the first failure.
async fn walk_org_chain(
    state: &AppState,
    org: &str,
) -> Result<(u64, Option<VerifyFailure>), Problem> {
    // The end of the walk and its hash come from the projection together, so the last stretch
    // (past the last mark) is compared with the hash recorded as it was written, never with
    // one recomputed from the same records.
    let head = state.log().head();
    if !state
        .chains()
        .wait_for(head, std::time::Duration::from_secs(10))
        .await
    {
        return Err(Problem::unavailable(
            "the audit chain is catching up; retry shortly",
            5,
        ));
    }
    let Some((last, head_hash)) = state.chains().load().state.head(org) else {
        return Ok((0, None));
    };
    let from = first_retained(state, org)?
        .max(state.log().org_first(org).map_err(Problem::internal)?)
        .max(1);
    if from > last {
        return Ok((0, None));
    }
    // The walk links on from the event before the first retained one (a mark the projection
    // kept when retention purged that record); failing that, from the next mark.
    let (mut at, mut hash) = match state
        .audit_chain_hash(org, from - 1)
        .await
        .map_err(Problem::internal)?
    {
        Some(h) => (from - 1, h),
        None => {
            let mark = ((from / MARK_EVERY + 1) * MARK_EVERY).min(last);
            (mark, stored_hash(state, org, mark).await?)
        }
    };
    let from = at + 1;
    while at < last {
        let end = ((at / MARK_EVERY + 1) * MARK_EVERY).min(last);
        let (log, o, start) = (state.log().clone(), org.to_owned(), hash);
        let (folded, count) = tokio::task::spawn_blocking(move || {
            let records = log.read_org(&o, at + 1, end, (end - at) as usize)?;
            let h = crate::audit::digests::fold(start, &records);
            Ok::<_, events::Error>((h, records.len() as u64))
        })
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
        if count != end - at {
            let missing = at + count + 1;
            let failure = VerifyFailure {
                id: Some(missing),
                reason: format!("event {missing} is missing from the log"),
            };
            return Ok((at + count + 1 - from, Some(failure)));
        }
        let recorded = if end == last {
            head_hash
        } else {
            stored_hash(state, org, end).await?
        };
        if folded != recorded {
            let failure = VerifyFailure {
                id: Some(at + 1),
                reason: format!(
                    "events {} to {end} no longer hash to the audit chain recorded when they \
                     were written: one of them was changed",
                    at + 1
                ),
            };
            return Ok((end + 1 - from, Some(failure)));
        }
        hash = folded;
        at = end;
    }
    Ok((last + 1 - from, None))
}

async fn stored_hash(state: &AppState, org: &str, seq: u64) -> Result<Hash, Problem> {
    state
        .audit_chain_hash(org, seq)
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| Problem::internal(format!("no audit chain hash kept for event {seq}")))
}

/// The organizations whose verification is running.
#[derive(Clone, Default)]
struct Verifications(Arc<Mutex<HashSet<String>>>);

/// Verifications the server runs at once: each reads the whole log.
const MAX_RUNNING: usize = 2;
/// What a refused caller is told to wait, in seconds: about one walk of a large log.
const RETRY_AFTER_SECS: u32 = 10;

struct Running {
    set: Arc<Mutex<HashSet<String>>>,
    org: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.org);
        }
    }
}

impl Verifications {
    fn start(&self, org: &str) -> Result<Running, Problem> {
        let mut set = self.0.lock().map_err(|_| Problem::internal("poisoned"))?;
        if set.contains(org) {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "a verification of this organization's audit log is already running; retry \
                 when it has finished",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS)));
        }
        if set.len() >= MAX_RUNNING {
            return Err(Problem::unavailable(
                "the server is verifying other audit logs; retry shortly",
                u64::from(RETRY_AFTER_SECS),
            ));
        }
        set.insert(org.to_owned());
        Ok(Running {
            set: self.0.clone(),
            org: org.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_is_the_json_form_exports_carry() {
        let cp = events::CheckpointKey::from_bytes([3; 32]).sign_org("org_1", 5, [4; 32], 7);
        assert_eq!(
            serde_json::to_value(CheckpointView::from(&cp)).unwrap(),
            serde_json::to_value(&cp).unwrap()
        );
    }

    #[test]
    fn one_verification_per_organization_and_a_few_per_server() {
        let v = Verifications::default();
        let a = v.start("org_a").expect("first");
        assert_eq!(v.start("org_a").err().unwrap().status, 429);
        let _b = v.start("org_b").expect("another organization");
        assert_eq!(v.start("org_c").err().unwrap().status, 503);
        drop(a);
        assert!(v.start("org_a").is_ok(), "free again once finished");
    }
}
