//! What happens to a webhook's deliveries: `GET /webhooks/{id}/deliveries` (every try, newest
//! kept), `POST /webhooks/{id}/test` (a signed ping, answered with the receiver's reply),
//! `POST /webhooks/{id}/replay?since_id=` (deliver again from an event) and
//! `POST /webhooks/{id}/rotate-secret` (a new secret; the old one signs too for a grace period).

use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::extract::{Json, Object, Path, Query};
use super::list::{ListSpec, Listing};
use super::pagination::Page;
use super::problem::Problem;
use super::request_id::RequestId;
use super::webhooks::{authorize, find, store_secret};
use crate::domain::scope::{Group, Need};
use crate::domain::webhooks;
use crate::execute::execute;
use crate::state::AppState;
use crate::webhooks::progress::Attempt;
use crate::webhooks::secrets::Keyring;
use crate::webhooks::sign::Secret;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deliveries))
        .routes(routes!(test_webhook))
        .routes(routes!(replay_webhook))
        .routes(routes!(rotate_secret))
}

/// One try of one delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// The event's id (the organization's sequence number); 0 for a test ping.
    pub event_id: u64,
    /// The `webhook-id` header: the same on every try of an event.
    pub message_id: String,
    pub event_type: String,
    /// When it was sent.
    pub time: String,
    /// 1 for an event's first try.
    pub attempt: u32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why there was no answer: a timeout, a refused connection, a refused destination.
    pub error: Option<String>,
    pub latency_ms: f64,
    /// `delivered`, `retrying`, `failed` (given up, or refused by the receiver with a 4xx)
    /// or `test`.
    pub outcome: String,
    /// When the next try is due, if one is.
    pub next_retry_at: Option<String>,
    /// The first kilobyte of the receiver's answer.
    pub response: String,
}

fn delivery_view(a: &Attempt) -> DeliveryView {
    DeliveryView {
        event_id: a.event_id,
        message_id: a.message_id.clone(),
        event_type: a.event_type.clone(),
        time: events::format_time(a.at),
        attempt: a.try_number,
        status: a.status,
        error: a.error.clone(),
        latency_ms: a.latency_micros as f64 / 1000.0,
        outcome: a.outcome.clone(),
        next_retry_at: a.next_retry_at.map(events::format_time),
        response: a.response.clone(),
    }
}

/// List parameters of `GET /webhooks/{id}/deliveries`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListQuery {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `key:value` terms; keys `outcome` (delivered, retrying, failed, test), `event_id`.
    pub filter: Option<String>,
    /// `time:asc|desc` (default `time:desc`, newest first).
    pub sort: Option<String>,
}

const SPEC: ListSpec = ListSpec {
    resource: "webhook_deliveries",
    filter_keys: &["outcome", "event_id"],
    sort_fields: &["time"],
    default_sort: "time:desc",
};

/// The last tries of a webhook's deliveries (the last 200 are kept): when, which event, the
/// receiver's status or the error, how long it took, and when the next try is due.
#[utoipa::path(
    get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (`wh_…`)"), DeliveryListQuery),
    responses((status = 200, description = "One page of delivery attempts", body = Page<DeliveryView>)),
    security(("bearer" = []))
)]
async fn list_deliveries(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<DeliveryListQuery>,
) -> Result<Json<Page<DeliveryView>>, Problem> {
    authorize(&state, &principal, Need::read(Group::Webhooks))?;
    let list = Listing::parse(
        &state,
        &principal.org_id,
        &SPEC,
        &q.limit,
        &q.cursor,
        &q.filter,
        &q.sort,
    )?;
    for term in list.filter.clauses.iter().flatten() {
        let ok = match term.key.as_str() {
            "outcome" => ["delivered", "retrying", "failed", "test"].contains(&term.value.as_str()),
            _ => term.value.parse::<u64>().is_ok(),
        };
        if !ok {
            return Err(Problem::invalid_argument(format!(
                "filter '{}:{}': expected {}",
                term.key,
                term.value,
                if term.key == "outcome" {
                    "delivered, retrying, failed or test"
                } else {
                    "an event id"
                }
            )));
        }
    }
    let (webhook_id, created_seq) = {
        let models = state.models().load();
        let w = find(&models.state, &principal, &id)?;
        (w.id.clone(), w.created_seq)
    };
    let live = state
        .webhooks()
        .live(&webhook_id, created_seq)
        .map_err(Problem::internal)?;
    let attempts: Vec<(String, Attempt)> = {
        let p = live.progress.lock().unwrap_or_else(|e| e.into_inner());
        p.attempts
            .iter()
            .filter(|a| {
                list.filter.matches(|key, value| match key {
                    "outcome" => a.outcome == value,
                    _ => a.event_id.to_string() == value,
                })
            })
            .map(|a| {
                (
                    format!("{:020}-{}-{}", a.at, a.event_id, a.try_number),
                    a.clone(),
                )
            })
            .collect()
    };
    Ok(Json(list.page(
        &state,
        attempts,
        |(key, _)| key.clone(),
        |(key, _)| key,
        |(_, a)| delivery_view(&a),
    )))
}

/// What a test ping came to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TestResult {
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
    pub delivery: DeliveryView,
}

/// Send a signed `webhook.ping` to the webhook now (also when it is disabled), and answer
/// with what the receiver said. Nothing is retried, and no event is recorded.
#[utoipa::path(
    post, path = "/webhooks/{id}/test", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (`wh_…`)")),
    responses((status = 200, description = "The ping's outcome (see `delivered`)", body = TestResult)),
    security(("bearer" = []))
)]
async fn test_webhook(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<TestResult>, Problem> {
    authorize(&state, &principal, Need::write(Group::Webhooks))?;
    let w = find(&state.models().load().state, &principal, &id)?.clone();
    let hooks = state.webhooks();
    let live = hooks
        .live(&w.id, w.created_seq)
        .map_err(Problem::internal)?;
    let ring = hooks
        .keyring(&live, &w.id, w.rotated_at)
        .map_err(Problem::internal)?;
    let message_id = ulid::Ulid::new().to_string();
    let ping = serde_json::json!({
        "id": 0,
        "event_id": message_id,
        "type": "webhook.ping",
        "time": events::format_time(events::now_micros()),
        "org_id": principal.org_id,
        "actor": {"kind": "token", "id": principal.token_id, "display": "webhook test"},
        "subject": {"kind": "webhook", "id": w.id},
        "request_id": request_id.0,
        "data": {"webhook_id": w.id, "url": w.url},
    });
    let body = serde_json::to_vec(&ping).map_err(Problem::internal)?;
    let at = events::now_micros();
    let sent = hooks
        .send(&w.url, &ring, &message_id, "webhook.ping", body)
        .await;
    let attempt = Attempt {
        event_id: 0,
        message_id,
        event_type: "webhook.ping".into(),
        at,
        try_number: 1,
        status: sent.status,
        error: sent.error,
        latency_micros: sent.latency.as_micros() as u64,
        outcome: "test".into(),
        next_retry_at: None,
        response: sent.response,
    };
    let delivery = delivery_view(&attempt);
    let snapshot = {
        let mut p = live.progress.lock().unwrap_or_else(|e| e.into_inner());
        p.record(attempt);
        p.clone()
    };
    // Kept like every other try, also across a crash.
    hooks
        .files()
        .save_off_thread(&w.id, snapshot)
        .await
        .map_err(Problem::internal)?;
    Ok(Json(TestResult {
        delivered: sent.status.is_some_and(|s| (200..300).contains(&s)),
        delivery,
    }))
}

/// Parameters of a replay.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReplayQuery {
    /// The id of the first event to deliver again (the organization's sequence number, as in
    /// the audit log).
    #[param(value_type = u64, minimum = 1)]
    pub since_id: String,
}

/// A replay accepted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplayAccepted {
    pub webhook_id: String,
    pub since_id: u64,
}

/// Deliver again every event the webhook subscribes to, from `since_id` on (in order, with
/// their original `webhook-id`). A retry in progress is dropped: the replay covers it.
#[utoipa::path(
    post, path = "/webhooks/{id}/replay", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (`wh_…`)"), ReplayQuery),
    responses(
        (status = 202, description = "Replay recorded; deliveries follow", body = ReplayAccepted),
        (status = 409, description = "The webhook changed meanwhile; try again", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn replay_webhook(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    Query(q): Query<ReplayQuery>,
) -> Result<(StatusCode, Json<ReplayAccepted>), Problem> {
    authorize(&state, &principal, Need::write(Group::Webhooks))?;
    let since_id: u64 = q.since_id.trim().parse().map_err(|_| {
        Problem::invalid_argument(format!(
            "'since_id' must be an event id (a positive integer), not '{}'",
            crate::domain::text::echo(&q.since_id)
        ))
    })?;
    execute(&state, principal.command(&request_id), |org| {
        webhooks::replay(org, &id, since_id)
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayAccepted {
            webhook_id: id,
            since_id,
        }),
    ))
}

/// A rotation's parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the previous secret keeps signing beside the new one: `30m`, `24h`… (up to
    /// `7d`; default `24h`). `0` (in any unit): stop using it at once.
    #[serde(default)]
    #[schema(example = "24h", pattern = "^[0-9]{1,12}[smhdw]?$")]
    pub grace_period: Option<String>,
}

/// A new secret: the only time it is shown. (No `Debug`: it holds the secret.)
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct RotatedSecret {
    pub webhook_id: String,
    /// The new signing secret (`whsec_…`), shown exactly once.
    pub secret: String,
    /// Until when deliveries are signed with the previous secret too.
    pub previous_secret_expires_at: String,
}

/// A grace period: `0` in any unit is none; otherwise a duration up to [`MAX_GRACE`].
fn grace_period(text: Option<&str>) -> Result<Duration, Problem> {
    let Some(text) = text.map(str::trim) else {
        return Ok(Duration::from_secs(86_400));
    };
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    if !digits.is_empty()
        && digits.bytes().all(|b| b == b'0')
        && matches!(unit, "" | "s" | "m" | "h" | "d" | "w")
    {
        return Ok(Duration::ZERO);
    }
    let grace = crate::domain::duration::parse(text)
        .map_err(|e| Problem::invalid_argument(format!("field 'grace_period': {e}")))?;
    if grace > MAX_GRACE {
        return Err(Problem::invalid_argument(
            "field 'grace_period' must be at most 7d",
        ));
    }
    Ok(grace)
}

/// The body is optional: none (or only whitespace) means every default.
fn optional_body(headers: &HeaderMap, bytes: &[u8]) -> Result<RotateRequest, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(RotateRequest::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Problem::unsupported_media_type(
            "a body must be JSON (Content-Type: application/json)",
        ));
    }
    serde_json::from_slice::<Object<RotateRequest>>(bytes)
        .map(|Object(b)| b)
        .map_err(|e| Problem::invalid_argument(format!("invalid JSON body: {e}")))
}

const MAX_GRACE: Duration = Duration::from_secs(7 * 86_400);

/// Rotate a webhook's signing secret. Until the grace period ends, every delivery carries
/// both signatures (the new secret's first), so receivers can switch without losing any.
#[utoipa::path(
    post, path = "/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (`wh_…`)")),
    request_body(content = Option<RotateRequest>, description = "Optional; `{}` or no body: a 24 h grace period"),
    responses((status = 200, description = "The new secret, shown once", body = RotatedSecret)),
    security(("bearer" = []))
)]
async fn rotate_secret(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<(HeaderMap, Json<RotatedSecret>), Problem> {
    authorize(&state, &principal, Need::write(Group::Webhooks))?;
    let body = optional_body(&headers, &bytes)?;
    let hooks = state.webhooks();
    let w = find(&state.models().load().state, &principal, &id)?.clone();
    let grace = grace_period(body.grace_period.as_deref())?;
    let live = hooks
        .live(&w.id, w.created_seq)
        .map_err(Problem::internal)?;
    // Two rotations at once would each hand out a secret; only one would be stored.
    let _rotating = live.rotating.lock().await;
    let w = find(&state.models().load().state, &principal, &id)?.clone();
    // A webhook whose secret was lost (its creation answered 503 and the secret was never
    // shown) gets one here: there is no previous secret to keep.
    let old = hooks.keyring(&live, &w.id, w.rotated_at).ok();
    let now = events::now_micros();
    let until = now + grace.as_micros() as i64;
    let secret = Secret::generate();
    let ring = Keyring {
        current: secret.clone(),
        previous: old
            .as_ref()
            .filter(|_| !grace.is_zero())
            .map(|o| (o.current.clone(), until)),
    };
    store_secret(&state, &w.id, ring).await?;
    let recorded = execute(&state, principal.command(&request_id), |org| {
        webhooks::rotate(org, &id, until)
    })
    .await;
    if let Err(e) = recorded {
        if !matches!(e, crate::execute::ExecuteError::NotApplied { .. }) {
            // Not recorded, and the caller never sees the new secret: put the old one back
            // — unless the webhook was removed meanwhile, whose secret must not come back.
            let gone = find(&state.models().load().state, &principal, &id).is_err();
            if gone {
                crate::webhooks::Webhooks::forget_off_thread(&state, &w.id).await;
            } else if let Some(old) = old {
                let _ = store_secret(&state, &w.id, old).await;
            }
            // A delivery may have read the new secret meanwhile.
            live.forget_keyring();
        }
        return Err(e.into());
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((
        headers,
        Json(RotatedSecret {
            webhook_id: w.id,
            secret: secret.expose().to_owned(),
            previous_secret_expires_at: events::format_time(until),
        }),
    ))
}
